//! The ledger in SQLite (WAL): the embedded backend.
//!
//! **Running totals are kept per scope and calendar window, and every request charges its scope
//! and all its ancestors inside one `BEGIN IMMEDIATE` transaction**, so a team cap covers its
//! applications without summing rows at decision time.
//!
//! Each request's two transactions write one row each, on a small hot table: a reservation
//! inserts its row into `recent`, and the commit (or release, or expiry) settles that row in
//! place. The running totals are not rewritten by every request: each connection keeps them in
//! memory, derived from the rows of `recent` and from `totals`, into which a fold moves the
//! settled rows every few dozen requests (see [`totals`]). Folded rows go to `requests`, the
//! permanent record. When several connections write, each also appends its change to the totals
//! to `journal`, from which the others catch up.
//!
//! Durability: WAL with `synchronous=NORMAL` survives a killed process (tested); a power loss may
//! roll back the last transactions but never corrupts the file.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::{
    CommitFlags, DEFAULT_HOLD_TTL_SECONDS, LiveHold, Plan, Prior, RequestState, ScopeUsage,
    Settlement, Usage, apply_prior, leave_out, reservation, usage_cost, usage_tokens,
};
use crate::decision::Decision;
use crate::error::LedgerError;
use crate::ledger::Hold;
use crate::time::Timestamp;

mod checkpoint;
mod checksum;
mod integrity;
mod keys;
mod reports;
mod rows;
mod schema;
#[cfg(test)]
mod tests;
mod totals;
mod transfer;

use checkpoint::Checkpointer;
use rows::{RequestRow, Settled, to_i64};
use totals::{Amounts, FOLD_AT, Totals};

/// How long a connection waits for another's lock before the operation fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Puts the database `conn` has open in WAL mode, waiting up to [`BUSY_TIMEOUT`] for the other
/// connections. SQLite takes the exclusive lock this needs without calling the busy handler, so
/// processes opening a new ledger at once failed with "database is locked" while the first one
/// switched it; they now retry until it is done (a no-op then: the mode sticks to the file).
fn turn_on_wal(conn: &Connection) -> Result<(), LedgerError> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result.map(drop).map_err(LedgerError::from),
        }
    }
}

/// The ledger in one SQLite file (or in memory). Thread-safe; several processes may share one
/// file.
#[derive(Debug)]
pub(super) struct SqliteLedger {
    inner: Mutex<Inner>,
    hold_ttl_seconds: i64,
    /// Settled rows a write leaves in `recent` before folding them ([`FOLD_AT`]).
    fold_at: u64,
    /// The earliest time the next write sweeps expired holds (Unix seconds): at most one sweep
    /// per second, not one per reservation.
    next_sweep: AtomicI64,
    /// Runs the WAL checkpoints (and their fsyncs) off the reservation path; `None` for
    /// in-memory and exclusive ledgers, which checkpoint inline.
    _checkpointer: Option<Checkpointer>,
}

/// The connection and the running totals derived through it, locked together.
#[derive(Debug)]
struct Inner {
    conn: Connection,
    totals: Totals,
}

/// A transaction of the ledger: the connection, inside a transaction, and the running totals in
/// memory, which the ledger's operations keep in step with the rows they write.
pub(super) struct Txn<'c> {
    conn: &'c Connection,
    totals: &'c mut Totals,
}

/// How a transaction begins: a write takes SQLite's write lock at once, so two writers never
/// both read the same totals. An inspection (the whole-ledger check and the rebuild) reads rows
/// itself, so it does not bring the totals in memory up to date first: that would fail on the
/// very damage it is there to report.
#[derive(Debug, Clone, Copy)]
enum Begin {
    Write,
    Read,
    InspectRead,
    InspectWrite,
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger at `path`, shared: other threads and processes
    /// may open it too. A single writer pays nothing for that. Once a connection sees another
    /// one write, the ledger switches to journaling: each write also appends one row with its
    /// change to the totals, and a connection that follows another's write reads the rows
    /// appended since its own last one. After a fold (every few dozen settled requests) the
    /// others rebuild their totals from the live holds instead.
    pub(super) fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::open_with(path, false)
    }

    /// Opens the ledger at `path` for this process alone (SQLite `locking_mode=EXCLUSIVE`):
    /// no file locking per transaction, so reservations are cheaper, but no other process can
    /// use the ledger until this one closes it.
    pub(super) fn open_exclusive(path: &Path) -> Result<Self, LedgerError> {
        Self::open_with(path, true)
    }

    fn open_with(path: &Path, exclusive: bool) -> Result<Self, LedgerError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if exclusive {
            let _mode: String =
                conn.query_row("PRAGMA locking_mode = EXCLUSIVE", [], |r| r.get(0))?;
        }
        // Rows are small: 1 KiB pages make every WAL frame a quarter of the default to write and
        // checksum. Only takes effect when the file is created.
        conn.execute_batch("PRAGMA page_size = 1024;")?;
        turn_on_wal(&conn)?;
        // Checkpoints are the only fsyncs under `synchronous=NORMAL`. A shared ledger leaves
        // them to a background thread and checkpoints inline only if that falls far behind;
        // an exclusive one (no second connection possible) checkpoints inline once the WAL
        // holds 50,000 pages (about 50 MB): rarely, and each hot page (totals, live holds) is
        // copied once per checkpoint however often it was rewritten.
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = 67108864;
             PRAGMA cache_size = -65536;",
        )?;
        conn.pragma_update(None, "wal_autocheckpoint", 50_000)?;
        let mut ledger = Self::init(conn)?;
        if !exclusive {
            ledger._checkpointer = Some(Checkpointer::start(path)?);
        }
        Ok(ledger)
    }

    /// A ledger that lives in memory only.
    pub(super) fn open_in_memory() -> Result<Self, LedgerError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, LedgerError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        schema::prepare(&tx)?;
        tx.commit()?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Self {
            inner: Mutex::new(Inner {
                conn,
                totals: Totals::default(),
            }),
            hold_ttl_seconds: DEFAULT_HOLD_TTL_SECONDS,
            fold_at: FOLD_AT,
            next_sweep: AtomicI64::new(i64::MIN),
            _checkpointer: None,
        })
    }

    /// Folds every `rows` settled requests instead of [`FOLD_AT`]: tests reach a fold quickly.
    #[cfg(test)]
    fn with_fold_at(mut self, rows: u64) -> Self {
        self.fold_at = rows;
        self
    }

    pub(super) fn with_hold_ttl(mut self, seconds: i64) -> Self {
        self.hold_ttl_seconds = seconds.max(1);
        self
    }

    pub(super) fn hold_ttl_seconds(&self) -> i64 {
        self.hold_ttl_seconds
    }

    /// Whether a write at `now` should sweep expired holds first: at most once per second.
    /// Skipping is conservative: a hold that expired less than a second ago still counts
    /// against the budget until the next sweep.
    fn sweep_due(&self, now: Timestamp) -> bool {
        let now = now.unix();
        let next = self.next_sweep.load(Ordering::Relaxed);
        now >= next
            && self
                .next_sweep
                .compare_exchange(
                    next,
                    now.saturating_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed when `f` succeeds.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        self.transact(Begin::Write, |txn| {
            let value = f(txn)?;
            txn.totals.write_journal(txn.conn)?;
            txn.totals.fold_if_due(txn.conn, self.fold_at)?;
            Ok(value)
        })
    }

    /// Runs `f` in one transaction of the given kind, with the running totals brought up to
    /// date first. When anything fails the transaction rolls back and the totals in memory are
    /// thrown away: the next transaction rebuilds them from the tables. `BEGIN` and `COMMIT`
    /// are prepared once, not parsed for every transaction.
    fn transact<T>(
        &self,
        begin: Begin,
        f: impl FnOnce(&mut Txn<'_>) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let mut inner = self.inner.lock().map_err(|_| LedgerError::Poisoned)?;
        let Inner { conn, totals } = &mut *inner;
        let conn = &*conn;
        let writing = matches!(begin, Begin::Write | Begin::InspectWrite);
        let inspecting = matches!(begin, Begin::InspectRead | Begin::InspectWrite);
        let begin = if writing { "BEGIN IMMEDIATE" } else { "BEGIN" };
        conn.prepare_cached(begin)?.execute([])?;
        let result = (|| {
            if inspecting {
                totals.invalidate();
            } else {
                totals.refresh(conn, writing)?;
            }
            let value = f(&mut Txn {
                conn,
                totals: &mut *totals,
            })?;
            conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(value)
        })();
        if result.is_err() {
            totals.invalidate();
            if !conn.is_autocommit() {
                // Nothing more can be done if the rollback fails too: SQLite rolls back what
                // was not committed when the connection closes.
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        result
    }

    /// See [`Ledger::reserve`](super::Ledger::reserve): one write transaction.
    pub(super) fn reserve(
        &self,
        plan: &Plan<'_>,
        mut decide: impl FnMut(&[ScopeUsage], Prior) -> Decision,
    ) -> Result<Decision, LedgerError> {
        self.write(|txn| {
            if self.sweep_due(plan.now) {
                rows::sweep(txn, plan.now)?;
            }
            let prior_row = match &plan.hold {
                Some(hold) => rows::find(txn, hold.request_id)?,
                None => None,
            };
            let prior = match (&plan.hold, &prior_row) {
                (Some(hold), Some(row)) => prior(row, hold, plan.now),
                _ => Prior::None,
            };
            let mut usage = chain_usage(txn, plan)?;
            if let (Prior::Retry { .. }, Some(row)) = (prior, &prior_row) {
                let chain: Vec<&str> = row.chain.split('\n').collect();
                let live = LiveHold {
                    chain: &chain,
                    day: &row.day,
                    month: &row.month,
                    minute: row.minute,
                    micros: u64::try_from(row.held.micros).unwrap_or(0),
                    tokens: u64::try_from(row.held.tokens).unwrap_or(0),
                };
                leave_out(&mut usage, plan, &live);
            }
            let mut decision = decide(&usage, prior);
            let Some(hold) = plan.hold.as_ref().filter(|_| decision.allowed) else {
                return Ok(decision);
            };
            if apply_prior(&mut decision, hold, prior) {
                let expires_at = plan.now.saturating_add(self.hold_ttl_seconds);
                rows::insert_hold(txn, hold, expires_at)?;
                decision.reservation =
                    Some(reservation(hold.request_id, hold.micros, expires_at, false));
            }
            Ok(decision)
        })
    }

    /// Records spend made outside a reservation: a committed request.
    pub(super) fn record(&self, hold: &Hold<'_>) -> Result<(), LedgerError> {
        self.write(|txn| rows::insert_committed(txn, hold))
    }

    pub(super) fn commit(
        &self,
        request_id: &str,
        usage: &Usage,
        now: Timestamp,
    ) -> Result<Settlement, LedgerError> {
        self.write(|txn| {
            let row = rows::find(txn, request_id)?
                .ok_or_else(|| LedgerError::UnknownRequest(request_id.to_owned()))?;
            match row.state {
                RequestState::Committed => {
                    return Ok(Settlement::AlreadyCommitted {
                        cost_micros: rows::from_i64(row.cost_micros)?,
                    });
                }
                RequestState::Released => {
                    return Err(LedgerError::AlreadyReleased(request_id.to_owned()));
                }
                RequestState::Held | RequestState::Expired => {}
            }
            let overflow = || LedgerError::Overflow(request_id.to_owned());
            let cost = usage_cost(usage, row.price).ok_or_else(overflow)?;
            let tokens = usage_tokens(usage).ok_or_else(overflow)?;
            let flags = CommitFlags::of(
                cost,
                rows::from_i64(row.held.micros)?,
                row.state == RequestState::Expired,
                row.expires_at,
                now,
            );
            if row.state == RequestState::Held {
                txn.totals
                    .hold(&row.chain, &row.day, &row.month, row.held.negated());
                txn.totals.settled();
            }
            let charged = Amounts {
                micros: to_i64(cost, request_id)?,
                tokens: to_i64(tokens, request_id)?,
            };
            // An expired request was settled already; the money was spent all the same.
            if row.recent {
                txn.totals
                    .charge_unfolded(&row.chain, &row.day, &row.month, charged);
            } else {
                txn.totals
                    .charge_folded(txn.conn, &row.chain, &row.day, &row.month, charged)?;
            }
            let settled = Settled {
                state: RequestState::Committed,
                cost_micros: charged.micros,
                input_tokens: to_i64(usage.input_tokens, request_id)?,
                cached_input_tokens: to_i64(usage.cached_input_tokens, request_id)?,
                output_tokens: to_i64(usage.output_tokens, request_id)?,
                at: now.unix(),
            };
            rows::settle(txn, &row, &settled)?;
            Ok(Settlement::Committed {
                cost_micros: cost,
                held_micros: rows::from_i64(row.held.micros)?,
                flags,
            })
        })
    }

    /// Drops the hold of `request_id`. Idempotent; a committed request cannot be released.
    pub(super) fn release(
        &self,
        request_id: &str,
        now: Timestamp,
    ) -> Result<Settlement, LedgerError> {
        self.write(|txn| {
            let row = rows::find(txn, request_id)?
                .ok_or_else(|| LedgerError::UnknownRequest(request_id.to_owned()))?;
            match row.state {
                RequestState::Committed => {
                    return Err(LedgerError::AlreadyCommitted(request_id.to_owned()));
                }
                RequestState::Released => return Ok(Settlement::AlreadyReleased),
                RequestState::Held => {
                    txn.totals
                        .hold(&row.chain, &row.day, &row.month, row.held.negated());
                    txn.totals.settled();
                }
                RequestState::Expired => {}
            }
            rows::settle(
                txn,
                &row,
                &Settled::without_cost(RequestState::Released, now),
            )?;
            Ok(Settlement::Released)
        })
    }

    /// Expires the holds whose TTL has passed at `now`; returns how many.
    pub(super) fn expire_holds(&self, now: Timestamp) -> Result<u64, LedgerError> {
        self.write(|txn| rows::sweep(txn, now))
    }
}

/// What `row`, found under the request id of `hold`, means for the reservation at `now`.
fn prior(row: &RequestRow, hold: &Hold<'_>, now: Timestamp) -> Prior {
    match row.state {
        RequestState::Held if row.expires_at <= now => Prior::Settled(RequestState::Expired),
        RequestState::Held if row.is_retried_by(hold) => Prior::Retry {
            expires_at: row.expires_at,
        },
        RequestState::Held => Prior::Conflict,
        settled => Prior::Settled(settled),
    }
}

/// The figures of every scope of `plan.chain`, in its order; scopes without caps or limits read
/// as zero.
fn chain_usage(txn: &mut Txn<'_>, plan: &Plan<'_>) -> Result<Vec<ScopeUsage>, LedgerError> {
    let (day, month) = (&plan.windows.day, &plan.windows.month);
    let figures = rows::usage(txn, plan.limited, plan.rated, plan.time, day, month)?;
    Ok(plan
        .chain
        .iter()
        .map(|scope| {
            plan.limited
                .iter()
                .position(|l| l == scope)
                .map_or_else(ScopeUsage::default, |i| figures[i])
        })
        .collect())
}
