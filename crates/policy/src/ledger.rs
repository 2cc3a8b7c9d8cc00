//! The budget ledger: durable two-phase spending in SQLite (WAL).
//!
//! The one design decision: **running totals are kept per scope and calendar window, and every
//! request charges its scope and all its ancestors inside one `BEGIN IMMEDIATE` transaction**.
//! A reservation reads the totals of the scope chain, decides, and adds its worst-case hold in the
//! same write transaction, so two processes or threads can never both spend the last dollar, and
//! a team cap covers its applications without summing rows at decision time. A commit replaces
//! the hold with the actual cost, a release drops it, and a hold past its TTL is swept by the next
//! write. Windows are UTC calendar days (`2026-11-22`) and months (`2026-11`), keyed by date, so
//! nothing has to reset them. Rate limits count requests and tokens per calendar minute in the
//! same database.
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
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use serde::Serialize;

use crate::catalog::Price;
use crate::error::LedgerError;
use crate::money::token_cost;
use crate::time::Timestamp;

mod totals;

use totals::{Amounts, FOLD_AT, Totals, read_amounts};

/// How long a hold lives when neither committed nor released, by default: 15 minutes.
pub const DEFAULT_HOLD_TTL_SECONDS: i64 = 15 * 60;

/// A request row: `recent` (live holds, and requests settled since the last fold) and `requests`
/// (folded) have the same columns in the same order, so a row moves between them with
/// `SELECT *`. `$check` constrains `state`.
macro_rules! request_table {
    ($name:literal, $check:expr) => {
        concat!(
            "CREATE TABLE IF NOT EXISTS ",
            $name,
            " (
    request_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    chain TEXT NOT NULL,
    model TEXT NOT NULL,
    day TEXT NOT NULL,
    month TEXT NOT NULL,
    minute INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (",
            $check,
            "),
    held_micros INTEGER NOT NULL,
    held_tokens INTEGER NOT NULL,
    cost_micros INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    cached_input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    price_input INTEGER,
    price_output INTEGER,
    price_cached_input INTEGER,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    settled_at INTEGER
) WITHOUT ROWID;
"
        )
    };
}

/// `INSERT INTO <table>` of a new request row.
macro_rules! insert_request_sql {
    ($name:literal) => {
        concat!(
            "INSERT INTO ",
            $name,
            " (request_id, key_id, scope, chain, model, day, month, minute, state,
            held_micros, held_tokens, cost_micros, input_tokens, price_input, price_output,
            price_cached_input, created_at, expires_at, settled_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        )
    };
}

/// The states a request row can be in, as a `CHECK` expression. Written as comparisons joined by
/// `OR`: SQLite evaluates `state IN (...)` with three or more values by building a temporary
/// table in every statement that writes a row, which cost a sixth of a reserve+commit cycle.
macro_rules! state_check {
    () => {
        "state = 'held' OR state = 'committed' OR state = 'released' OR state = 'expired'"
    };
}

/// How ledgers up to schema version 4 wrote [`state_check!`]; [`Ledger::open`] rewrites it.
macro_rules! state_check_before {
    () => {
        "state IN ('held', 'committed', 'released', 'expired')"
    };
}

const SCHEMA: &str = concat!(
    request_table!("requests", state_check!()),
    request_table!("recent", state_check!()),
    "
CREATE TABLE IF NOT EXISTS totals (
    scope TEXT NOT NULL,
    period TEXT NOT NULL,
    committed_micros INTEGER NOT NULL DEFAULT 0,
    committed_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, period)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    chain TEXT NOT NULL,
    day TEXT NOT NULL,
    month TEXT NOT NULL,
    held_micros INTEGER NOT NULL,
    held_tokens INTEGER NOT NULL,
    committed_micros INTEGER NOT NULL,
    committed_tokens INTEGER NOT NULL,
    settled INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rates (
    scope TEXT NOT NULL,
    minute INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, minute)
) WITHOUT ROWID;
"
);

/// The schema version [`SCHEMA`] writes. Version 1 kept live holds in `requests`, found through
/// a partial index on their expiry; version 2 kept them in a table `holds` and moved each row
/// to `requests` when settled. Both stored held amounts in `totals` and rewrote its rows in every
/// transaction. Version 3 had no journal: a build that knows none must not write to a ledger
/// whose other writers catch up from it.
const SCHEMA_VERSION: i64 = 4;

/// From version 1: live holds move from `requests` to `recent`.
const MIGRATE_FROM_1: &str = "
INSERT INTO recent SELECT * FROM requests WHERE state = 'held';
DELETE FROM requests WHERE state = 'held';
DROP INDEX IF EXISTS requests_live_holds;
";

/// From version 2: live holds move from `holds` to `recent`.
const MIGRATE_FROM_2: &str = "
INSERT INTO recent SELECT * FROM holds;
DROP TABLE holds;
";

/// From versions 1 and 2: held amounts are summed from `recent`, not stored; the committed ones
/// stay.
const MIGRATE_TOTALS: &str = "
ALTER TABLE totals DROP COLUMN held_micros;
ALTER TABLE totals DROP COLUMN held_tokens;
";

/// The durable budget ledger. Thread-safe; several processes may share one file.
///
/// A reservation ([`Engine::decide_with_ledger`](crate::Engine::decide_with_ledger) with
/// [`LedgerMode::Reserve`](crate::LedgerMode::Reserve)) reads the day and month totals of the
/// request's scope and all its ancestors, decides, and holds the worst-case cost against all of
/// them in one `BEGIN IMMEDIATE` transaction, so two threads or processes never both spend the
/// last dollar. [`commit`](Self::commit) replaces the hold with the actual cost,
/// [`release`](Self::release) drops it, and a hold past its TTL expires. Every operation is
/// idempotent by request id. Windows are UTC calendar days and months, keyed by date.
///
/// Storage: SQLite in WAL mode with `synchronous=NORMAL`, which survives a killed process. Each
/// of a request's two transactions writes one row; each connection keeps the running totals in
/// memory. Once two connections write to one file, every write also appends its change to a
/// journal that the other connections catch up from.
#[derive(Debug)]
pub struct Ledger {
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
pub(crate) struct Txn<'c> {
    conn: &'c Connection,
    totals: &'c mut Totals,
}

/// How a transaction begins: a write takes SQLite's write lock at once, so two writers never
/// both read the same totals.
#[derive(Debug, Clone, Copy)]
enum Begin {
    Write,
    Read,
}

/// How often the background checkpointer copies the WAL into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// A thread with its own connection that runs `PRAGMA wal_checkpoint(PASSIVE)` every
/// [`CHECKPOINT_INTERVAL`]. Under `synchronous=NORMAL` the checkpoint is the only place SQLite
/// calls fsync; inline, it stalled one reservation in a few hundred for milliseconds. A passive
/// checkpoint never blocks the writer. Stopped and joined on drop.
#[derive(Debug)]
struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, LedgerError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("keyscope-ledger-checkpoint".to_owned())
            .spawn(move || {
                let (lock, wake) = &*flag;
                let Ok(mut stopped) = lock.lock() else { return };
                while !*stopped {
                    stopped = match wake.wait_timeout(stopped, CHECKPOINT_INTERVAL) {
                        Ok((guard, _)) => guard,
                        Err(_) => return,
                    };
                    // A failed checkpoint is retried at the next tick; the writer's own
                    // (large) autocheckpoint threshold still bounds the WAL.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .map_err(|e| LedgerError::Thread(e.to_string()))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        if let Ok(mut stopped) = lock.lock() {
            *stopped = true;
        }
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Rewrites the `state` check of request tables created before [`state_check!`] into the
/// equivalent `OR` form. A check constraint does not change how rows are stored, so this is
/// SQLite's documented in-place schema edit (`writable_schema`, then a new `schema_version`),
/// not a copy of the table. Runs inside the opening transaction; a ledger without the old form
/// is left untouched. Older builds of the same schema version read the rewritten tables as
/// before.
fn rewrite_state_checks(conn: &Connection) -> Result<(), LedgerError> {
    let old: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, sql FROM sqlite_schema
             WHERE type = 'table' AND name IN ('recent', 'requests') AND instr(sql, ?1) > 0",
        )?
        .query_map([state_check_before!()], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    if old.is_empty() {
        return Ok(());
    }
    let schema_version: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA writable_schema = ON")?;
    let rewritten = (|| {
        for (name, sql) in &old {
            conn.execute(
                "UPDATE sqlite_schema SET sql = ?1 WHERE type = 'table' AND name = ?2",
                params![sql.replace(state_check_before!(), state_check!()), name],
            )?;
        }
        conn.pragma_update(None, "schema_version", schema_version + 1)
    })();
    conn.execute_batch("PRAGMA writable_schema = OFF")?;
    rewritten?;
    Ok(())
}

/// Actual usage reported when committing a reservation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Cached input tokens, billed at the cached price.
    pub cached_input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// The actual cost, when the caller knows it; otherwise computed from the reserved prices.
    pub cost_micros: Option<u64>,
}

/// What a commit or release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Settlement {
    /// The hold was replaced by the actual cost.
    Committed {
        /// The cost charged.
        cost_micros: u64,
    },
    /// A retried commit: the first one stands, nothing charged twice.
    AlreadyCommitted {
        /// The cost charged by the first commit.
        cost_micros: u64,
    },
    /// The hold was dropped.
    Released,
    /// A retried release.
    AlreadyReleased,
}

/// Spend of one window of one scope, as the ledger holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WindowUsage {
    pub(crate) committed_micros: u64,
    pub(crate) held_micros: u64,
    pub(crate) committed_tokens: u64,
    pub(crate) held_tokens: u64,
}

/// Spend of one scope in the day, month and minute of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScopeUsage {
    pub(crate) day: WindowUsage,
    pub(crate) month: WindowUsage,
    pub(crate) minute_requests: u64,
    pub(crate) minute_tokens: u64,
}

/// A new hold, written by a reservation.
#[derive(Debug, Clone)]
pub(crate) struct Hold<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) key_id: &'a str,
    pub(crate) chain: &'a [&'a str],
    /// The scopes of the chain with a rate limit: only they count requests per minute (a limit
    /// added by a reload starts counting at its first minute).
    pub(crate) rated: &'a [&'a str],
    pub(crate) model: &'a str,
    pub(crate) time: Timestamp,
    pub(crate) micros: u64,
    pub(crate) tokens: u64,
    pub(crate) price: Option<Price>,
}

/// How `keyscope spend` groups rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpendGrouping {
    /// By the scope a request was made in (not its ancestors): the chargeback view.
    Scope,
    /// By resolved (versioned) model.
    Model,
    /// By UTC day.
    Day,
}

/// One row of a spend report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendRow {
    /// The scope, model or day.
    pub group: String,
    /// Requests committed.
    pub requests: u64,
    /// Committed cost, micro-dollars.
    pub cost_micros: u64,
    /// Committed input tokens, cached included.
    pub input_tokens: u64,
    /// Committed output tokens.
    pub output_tokens: u64,
    /// Requests still held.
    pub held_requests: u64,
    /// Micro-dollars still held.
    pub held_micros: u64,
}

fn to_i64(value: u64, request_id: &str) -> Result<i64, LedgerError> {
    i64::try_from(value).map_err(|_| LedgerError::Overflow(request_id.to_owned()))
}

fn from_i64(value: i64) -> Result<u64, LedgerError> {
    u64::try_from(value).map_err(|_| LedgerError::Corrupt(format!("negative amount {value}")))
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`, shared: other threads and processes
    /// (the CLI's `usage commit`, another service) may open it too. A single writer pays
    /// nothing for that. Once a connection sees another one write, the ledger switches to
    /// journaling: each write also appends one row with its change to the totals, and a
    /// connection that follows another's write reads the rows appended since its own last one.
    /// After a fold (every few dozen settled requests) the others rebuild their totals from the
    /// live holds instead.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::open_with(path, false)
    }

    /// Opens the ledger at `path` for this process alone (SQLite `locking_mode=EXCLUSIVE`):
    /// no file locking per transaction, so reservations are cheaper, but no other process can
    /// use the ledger until this one closes it. For a service that owns its ledger.
    pub fn open_exclusive(path: &Path) -> Result<Self, LedgerError> {
        Self::open_with(path, true)
    }

    fn open_with(path: &Path, exclusive: bool) -> Result<Self, LedgerError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        if exclusive {
            let _mode: String =
                conn.query_row("PRAGMA locking_mode = EXCLUSIVE", [], |r| r.get(0))?;
        }
        // Rows are small: 1 KiB pages make every WAL frame a quarter of the default to write and
        // checksum. Only takes effect when the file is created.
        conn.execute_batch("PRAGMA page_size = 1024;")?;
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
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

    /// A ledger that lives in memory only: fixtures and tests.
    pub fn open_in_memory() -> Result<Self, LedgerError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, LedgerError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(LedgerError::NewerSchema {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        tx.execute_batch(SCHEMA)?;
        match version {
            1 => tx.execute_batch(MIGRATE_FROM_1)?,
            2 => tx.execute_batch(MIGRATE_FROM_2)?,
            _ => {}
        }
        if version == 1 || version == 2 {
            tx.execute_batch(MIGRATE_TOTALS)?;
        }
        rewrite_state_checks(&tx)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
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

    /// Sets how long an unsettled hold lives.
    pub fn with_hold_ttl(mut self, seconds: i64) -> Self {
        self.hold_ttl_seconds = seconds.max(1);
        self
    }

    /// Whether a write at `now` should sweep expired holds first: at most once per second of
    /// request time. Skipping is conservative: a hold that expired less than a second ago still
    /// counts against the budget until the next sweep.
    pub(crate) fn sweep_due(&self, now: Timestamp) -> bool {
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

    /// How long an unsettled hold lives, in seconds.
    pub fn hold_ttl_seconds(&self) -> i64 {
        self.hold_ttl_seconds
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed when `f` succeeds.
    pub(crate) fn write<T>(
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
        let writing = matches!(begin, Begin::Write);
        let begin = if writing { "BEGIN IMMEDIATE" } else { "BEGIN" };
        conn.prepare_cached(begin)?.execute([])?;
        let result = (|| {
            totals.refresh(conn, writing)?;
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

    /// Replaces the hold of `request_id` with its actual cost. Idempotent: a retried commit
    /// returns [`Settlement::AlreadyCommitted`] and charges nothing. A hold that expired is still
    /// charged: the money was spent.
    pub fn commit(
        &self,
        request_id: &str,
        usage: &Usage,
        now: Timestamp,
    ) -> Result<Settlement, LedgerError> {
        self.write(|txn| {
            let row = find(txn, request_id)?
                .ok_or_else(|| LedgerError::UnknownRequest(request_id.to_owned()))?;
            match row.state.as_str() {
                "committed" => {
                    return Ok(Settlement::AlreadyCommitted {
                        cost_micros: row.cost_micros,
                    });
                }
                "released" => return Err(LedgerError::AlreadyReleased(request_id.to_owned())),
                _ => {}
            }
            let overflow = || LedgerError::Overflow(request_id.to_owned());
            let cost = match (usage.cost_micros, row.price) {
                (Some(cost), _) => cost,
                (None, Some(price)) => token_cost(usage.input_tokens, price.input)
                    .zip(token_cost(usage.cached_input_tokens, price.cached_input))
                    .zip(token_cost(usage.output_tokens, price.output))
                    .and_then(|((a, b), c)| a.checked_add(b)?.checked_add(c))
                    .ok_or_else(overflow)?,
                (None, None) => 0,
            };
            let tokens = usage
                .input_tokens
                .checked_add(usage.cached_input_tokens)
                .and_then(|t| t.checked_add(usage.output_tokens))
                .ok_or_else(overflow)?;
            if row.state == "held" {
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
                state: "committed",
                cost_micros: charged.micros,
                input_tokens: to_i64(usage.input_tokens, request_id)?,
                cached_input_tokens: to_i64(usage.cached_input_tokens, request_id)?,
                output_tokens: to_i64(usage.output_tokens, request_id)?,
                at: now.unix(),
            };
            settle(txn, request_id, row.recent, &settled)?;
            Ok(Settlement::Committed { cost_micros: cost })
        })
    }

    /// Drops the hold of `request_id`. Idempotent; a committed request cannot be released.
    pub fn release(&self, request_id: &str, now: Timestamp) -> Result<Settlement, LedgerError> {
        self.write(|txn| {
            let row = find(txn, request_id)?
                .ok_or_else(|| LedgerError::UnknownRequest(request_id.to_owned()))?;
            match row.state.as_str() {
                "committed" => return Err(LedgerError::AlreadyCommitted(request_id.to_owned())),
                "released" => return Ok(Settlement::AlreadyReleased),
                "held" => {
                    txn.totals
                        .hold(&row.chain, &row.day, &row.month, row.held.negated());
                    txn.totals.settled();
                }
                _ => {}
            }
            settle(
                txn,
                request_id,
                row.recent,
                &Settled::without_cost("released", now),
            )?;
            Ok(Settlement::Released)
        })
    }

    /// Expires the holds whose TTL has passed at `now`; returns how many.
    pub fn expire_holds(&self, now: Timestamp) -> Result<u64, LedgerError> {
        self.write(|txn| sweep(txn, now))
    }

    /// Committed spend (and live holds) grouped by scope, model or day, from `since` (a UTC day
    /// `YYYY-MM-DD`, inclusive) on.
    pub fn spend(
        &self,
        by: SpendGrouping,
        since: Option<&str>,
    ) -> Result<Vec<SpendRow>, LedgerError> {
        let column = match by {
            SpendGrouping::Scope => "scope",
            SpendGrouping::Model => "model",
            SpendGrouping::Day => "day",
        };
        let fields = "scope, model, day, state, cost_micros, input_tokens, cached_input_tokens,
                      output_tokens, held_micros";
        let sql = format!(
            "SELECT {column},
                    SUM(state = 'committed'),
                    COALESCE(SUM(CASE WHEN state = 'committed' THEN cost_micros END), 0),
                    COALESCE(SUM(CASE WHEN state = 'committed' THEN input_tokens + cached_input_tokens END), 0),
                    COALESCE(SUM(CASE WHEN state = 'committed' THEN output_tokens END), 0),
                    SUM(state = 'held'),
                    COALESCE(SUM(CASE WHEN state = 'held' THEN held_micros END), 0)
             FROM (SELECT {fields} FROM requests WHERE day >= ?1 AND state = 'committed'
                   UNION ALL SELECT {fields} FROM recent
                   WHERE day >= ?1 AND state IN ('held', 'committed'))
             GROUP BY {column} ORDER BY {column}"
        );
        let inner = self.inner.lock().map_err(|_| LedgerError::Poisoned)?;
        let mut statement = inner.conn.prepare(&sql)?;
        let rows = statement.query_map([since.unwrap_or("")], |r| {
            Ok((
                r.get::<_, String>(0)?,
                [
                    r.get::<_, i64>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ],
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (group, n) = row?;
            out.push(SpendRow {
                group,
                requests: from_i64(n[0])?,
                cost_micros: from_i64(n[1])?,
                input_tokens: from_i64(n[2])?,
                output_tokens: from_i64(n[3])?,
                held_requests: from_i64(n[4])?,
                held_micros: from_i64(n[5])?,
            });
        }
        Ok(out)
    }

    /// The running totals of `scope` (the scope and everything under it) in `period`
    /// (`YYYY-MM-DD` or `YYYY-MM`): committed and held micro-dollars.
    pub fn window_totals(&self, scope: &str, period: &str) -> Result<(u64, u64), LedgerError> {
        self.transact(Begin::Read, |txn| {
            let committed = txn.totals.committed(txn.conn, scope, period)?;
            let held = txn.totals.held(scope, period);
            Ok((from_i64(committed.micros)?, from_i64(held.micros)?))
        })
    }

    /// The state of a request: `held`, `committed`, `released` or `expired`.
    pub fn request_state(&self, request_id: &str) -> Result<Option<String>, LedgerError> {
        let inner = self.inner.lock().map_err(|_| LedgerError::Poisoned)?;
        Ok(inner
            .conn
            .query_row(
                "SELECT state FROM recent WHERE request_id = ?1
                 UNION ALL SELECT state FROM requests WHERE request_id = ?1",
                [request_id],
                |r| r.get(0),
            )
            .optional()?)
    }
}

#[derive(Debug)]
pub(crate) struct RequestRow {
    pub(crate) state: String,
    /// Whether the row is in `recent` (else in `requests`, folded).
    recent: bool,
    /// The scope and its ancestors, newline-separated as stored.
    chain: String,
    day: String,
    month: String,
    held: Amounts,
    cost_micros: u64,
    price: Option<Price>,
    pub(crate) expires_at: i64,
}

pub(crate) fn find(txn: &Txn<'_>, request_id: &str) -> Result<Option<RequestRow>, LedgerError> {
    // A live hold or a recently settled request, else a folded one: one statement, which stops
    // at the first row.
    macro_rules! find_in {
        ($recent:literal, $name:literal) => {
            concat!(
                "SELECT ",
                $recent,
                ", state, chain, day, month, held_micros, held_tokens, cost_micros,
                        price_input, price_output, price_cached_input, expires_at
                 FROM ",
                $name,
                " WHERE request_id = ?1"
            )
        };
    }
    let raw = txn
        .conn
        .prepare_cached(concat!(
            find_in!("1", "recent"),
            " UNION ALL ",
            find_in!("0", "requests"),
            " LIMIT 1"
        ))?
        .query_row([request_id], |r| {
            Ok((
                r.get::<_, bool>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                [r.get::<_, i64>(5)?, r.get(6)?, r.get(7)?],
                [r.get::<_, Option<i64>>(8)?, r.get(9)?, r.get(10)?],
                r.get::<_, i64>(11)?,
            ))
        })
        .optional()?;
    let Some((recent, state, chain, day, month, amounts, prices, expires_at)) = raw else {
        return Ok(None);
    };
    let price = match prices {
        [Some(input), Some(output), Some(cached)] => Some(Price {
            input: from_i64(input)?,
            output: from_i64(output)?,
            cached_input: from_i64(cached)?,
        }),
        _ => None,
    };
    Ok(Some(RequestRow {
        state,
        recent,
        chain,
        day,
        month,
        held: read_amounts(amounts[0], amounts[1])?,
        cost_micros: from_i64(amounts[2])?,
        price,
        expires_at,
    }))
}

/// `?a, ?b, ...` for `count` parameters numbered from `first`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Expires every hold whose TTL has passed.
pub(crate) fn sweep(txn: &mut Txn<'_>, now: Timestamp) -> Result<u64, LedgerError> {
    // `recent` is short: the live holds and at most a fold's worth of settled rows.
    let expired: Vec<(String, String, String, String, i64, i64)> = txn
        .conn
        .prepare_cached(
            "SELECT request_id, chain, day, month, held_micros, held_tokens FROM recent
             WHERE state = 'held' AND expires_at <= ?1",
        )?
        .query_map([now.unix()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    for (request_id, chain, day, month, micros, tokens) in &expired {
        let held = read_amounts(*micros, *tokens)?;
        txn.totals.hold(chain, day, month, held.negated());
        txn.totals.settled();
        settle(
            txn,
            request_id,
            true,
            &Settled::without_cost("expired", now),
        )?;
    }
    Ok(expired.len() as u64)
}

/// Spend of each of `scopes` in the windows of `time`, in the order given. Requests and tokens
/// per minute are read only for the scopes in `rated` (those with a rate limit).
pub(crate) fn usage(
    txn: &mut Txn<'_>,
    scopes: &[&str],
    rated: &[&str],
    time: Timestamp,
    day: &str,
    month: &str,
) -> Result<Vec<ScopeUsage>, LedgerError> {
    let mut out = Vec::with_capacity(scopes.len());
    for scope in scopes {
        let mut window = |period: &str| -> Result<WindowUsage, LedgerError> {
            let committed = txn.totals.committed(txn.conn, scope, period)?;
            let held = txn.totals.held(scope, period);
            Ok(WindowUsage {
                committed_micros: from_i64(committed.micros)?,
                held_micros: from_i64(held.micros)?,
                committed_tokens: from_i64(committed.tokens)?,
                held_tokens: from_i64(held.tokens)?,
            })
        };
        out.push(ScopeUsage {
            day: window(day)?,
            month: window(month)?,
            ..ScopeUsage::default()
        });
    }
    if rated.is_empty() {
        return Ok(out);
    }
    let position = |scope: &str| scopes.iter().position(|s| *s == scope);
    let sql = format!(
        "SELECT scope, requests, tokens FROM rates WHERE minute = ?1 AND scope IN ({})",
        placeholders(2, rated.len())
    );
    let mut values = vec![Value::Integer(time.minute_key())];
    values.extend(rated.iter().map(|s| Value::Text((*s).to_owned())));
    let mut statement = txn.conn.prepare_cached(&sql)?;
    let mut rows = statement.query(params_from_iter(values))?;
    while let Some(row) = rows.next()? {
        let scope: String = row.get(0)?;
        if let Some(i) = position(&scope) {
            out[i].minute_requests = from_i64(row.get(1)?)?;
            out[i].minute_tokens = from_i64(row.get(2)?)?;
        }
    }
    Ok(out)
}

/// How a request was settled, for [`settle`].
struct Settled {
    state: &'static str,
    cost_micros: i64,
    input_tokens: i64,
    cached_input_tokens: i64,
    output_tokens: i64,
    at: i64,
}

impl Settled {
    fn without_cost(state: &'static str, now: Timestamp) -> Self {
        Self {
            state,
            cost_micros: 0,
            input_tokens: 0,
            cached_input_tokens: 0,
            output_tokens: 0,
            at: now.unix(),
        }
    }
}

/// Records how a request was settled, in place, in `recent` or (a request that expired and was
/// folded) in `requests`. The caller keeps the running totals in step.
fn settle(
    txn: &Txn<'_>,
    request_id: &str,
    recent: bool,
    settled: &Settled,
) -> Result<(), LedgerError> {
    macro_rules! settle_in {
        ($name:literal) => {
            concat!(
                "UPDATE ",
                $name,
                " SET state = ?2, cost_micros = ?3, input_tokens = ?4,
                 cached_input_tokens = ?5, output_tokens = ?6, settled_at = ?7
                 WHERE request_id = ?1"
            )
        };
    }
    let sql = if recent {
        settle_in!("recent")
    } else {
        settle_in!("requests")
    };
    txn.conn.prepare_cached(sql)?.execute(params![
        request_id,
        settled.state,
        settled.cost_micros,
        settled.input_tokens,
        settled.cached_input_tokens,
        settled.output_tokens,
        settled.at
    ])?;
    Ok(())
}

/// What [`insert_request`] stored: the chain, day and month as the totals key them, and the
/// amount.
struct Written {
    chain: String,
    day: String,
    month: String,
    amounts: Amounts,
}

/// Writes the row of a new request into `recent`, held or (spend recorded outside a reservation)
/// committed.
fn insert_request(
    txn: &Txn<'_>,
    hold: &Hold<'_>,
    state: &str,
    expires_at: Timestamp,
) -> Result<Written, LedgerError> {
    let id = hold.request_id;
    let price = |f: fn(&Price) -> u64| hold.price.as_ref().map(|p| to_i64(f(p), id)).transpose();
    let micros = to_i64(hold.micros, id)?;
    let tokens = to_i64(hold.tokens, id)?;
    let committed = state == "committed";
    let chain = hold.chain.join("\n");
    let day = hold.time.day_key();
    let month = hold.time.month_key();
    txn.conn
        .prepare_cached(insert_request_sql!("recent"))?
        .execute(params![
            id,
            hold.key_id,
            hold.chain.first().copied().unwrap_or_default(),
            chain,
            hold.model,
            day,
            month,
            hold.time.minute_key(),
            state,
            micros,
            tokens,
            if committed { micros } else { 0 },
            if committed { tokens } else { 0 },
            price(|p| p.input)?,
            price(|p| p.output)?,
            price(|p| p.cached_input)?,
            hold.time.unix(),
            expires_at.unix(),
            committed.then_some(hold.time.unix()),
        ])?;
    Ok(Written {
        chain,
        day,
        month,
        amounts: Amounts { micros, tokens },
    })
}

/// Writes a hold and charges it to the whole chain, day, month and minute.
pub(crate) fn insert_hold(
    txn: &mut Txn<'_>,
    hold: &Hold<'_>,
    ttl: i64,
) -> Result<Timestamp, LedgerError> {
    let expires_at = hold.time.saturating_add(ttl);
    let Written {
        chain,
        day,
        month,
        amounts,
    } = insert_request(txn, hold, "held", expires_at)?;
    txn.totals.hold(&chain, &day, &month, amounts);
    if hold.rated.is_empty() {
        return Ok(expires_at);
    }
    let rows: Vec<String> = (0..hold.rated.len())
        .map(|i| format!("(?{}, ?1, 1, ?2)", 3 + i))
        .collect();
    let sql = format!(
        "INSERT INTO rates (scope, minute, requests, tokens) VALUES {}
         ON CONFLICT (scope, minute) DO UPDATE SET
            requests = requests + 1, tokens = tokens + excluded.tokens",
        rows.join(", ")
    );
    let mut values = vec![
        Value::Integer(hold.time.minute_key()),
        Value::Integer(amounts.tokens),
    ];
    values.extend(hold.rated.iter().map(|s| Value::Text((*s).to_owned())));
    txn.conn
        .prepare_cached(&sql)?
        .execute(params_from_iter(values))?;
    Ok(expires_at)
}

/// Records spend that happened outside a reservation (imports, fixtures): a committed request.
pub(crate) fn insert_committed(txn: &mut Txn<'_>, hold: &Hold<'_>) -> Result<(), LedgerError> {
    if find(txn, hold.request_id)?.is_some() {
        return Err(LedgerError::DuplicateRequest(hold.request_id.to_owned()));
    }
    let Written {
        chain,
        day,
        month,
        amounts,
    } = insert_request(txn, hold, "committed", hold.time)?;
    txn.totals.charge_unfolded(&chain, &day, &month, amounts);
    txn.totals.settled();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold<'a>(id: &'a str, chain: &'a [&'a str], micros: u64) -> Hold<'a> {
        Hold {
            request_id: id,
            key_id: "k",
            chain,
            rated: chain,
            model: "m",
            time: Timestamp::parse("2026-11-22T12:00:00Z").unwrap(),
            micros,
            tokens: 100,
            price: Some(Price {
                input: 1_000_000,
                output: 2_000_000,
                cached_input: 500_000,
            }),
        }
    }

    #[test]
    fn two_phase_charges_the_chain_once() {
        let ledger = Ledger::open_in_memory().unwrap();
        let chain = ["team/app", "team"];
        let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
        ledger
            .write(|txn| insert_hold(txn, &hold("r1", &chain, 500), 60))
            .unwrap();
        assert_eq!(
            ledger.window_totals("team", "2026-11-22").unwrap(),
            (0, 500)
        );
        assert_eq!(
            ledger.window_totals("team/app", "2026-11").unwrap(),
            (0, 500)
        );
        let usage = Usage {
            input_tokens: 100,
            cached_input_tokens: 100,
            output_tokens: 100,
            cost_micros: None,
        };
        assert_eq!(
            ledger.commit("r1", &usage, now).unwrap(),
            Settlement::Committed { cost_micros: 350 }
        );
        assert_eq!(
            ledger.commit("r1", &usage, now).unwrap(),
            Settlement::AlreadyCommitted { cost_micros: 350 }
        );
        assert_eq!(
            ledger.window_totals("team", "2026-11-22").unwrap(),
            (350, 0)
        );
        assert!(matches!(
            ledger.release("r1", now),
            Err(LedgerError::AlreadyCommitted(_))
        ));
        assert!(matches!(
            ledger.commit("nope", &usage, now),
            Err(LedgerError::UnknownRequest(_))
        ));
        let rows = ledger.spend(SpendGrouping::Scope, None).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].requests, rows[0].cost_micros, rows[0].input_tokens),
            (1, 350, 200)
        );
    }

    /// Also when every settled request is folded at once (`fold_at` 1): a commit that arrives
    /// after its hold expired and was folded is charged to `totals` directly.
    #[test]
    fn release_and_expiry_drop_holds() {
        for fold_at in [1, FOLD_AT] {
            let ledger = Ledger::open_in_memory().unwrap().with_fold_at(fold_at);
            let chain = ["a"];
            let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
            ledger
                .write(|txn| insert_hold(txn, &hold("r1", &chain, 500), 60))
                .unwrap();
            ledger
                .write(|txn| insert_hold(txn, &hold("r2", &chain, 700), 60))
                .unwrap();
            assert_eq!(ledger.release("r1", now).unwrap(), Settlement::Released);
            assert_eq!(
                ledger.release("r1", now).unwrap(),
                Settlement::AlreadyReleased
            );
            assert_eq!(ledger.window_totals("a", "2026-11-22").unwrap(), (0, 700));
            assert_eq!(ledger.expire_holds(now.saturating_add(59)).unwrap(), 0);
            assert_eq!(ledger.expire_holds(now.saturating_add(60)).unwrap(), 1);
            assert_eq!(ledger.window_totals("a", "2026-11-22").unwrap(), (0, 0));
            assert_eq!(
                ledger.request_state("r2").unwrap().as_deref(),
                Some("expired")
            );
            let usage = Usage {
                cost_micros: Some(42),
                ..Usage::default()
            };
            assert_eq!(
                ledger.commit("r2", &usage, now).unwrap(),
                Settlement::Committed { cost_micros: 42 }
            );
            assert_eq!(ledger.window_totals("a", "2026-11").unwrap(), (42, 0));
            assert!(matches!(
                ledger.commit("r1", &usage, now),
                Err(LedgerError::AlreadyReleased(_))
            ));
            assert_totals_match_rows(&[&ledger], &chain);
        }
    }

    #[test]
    fn spend_recorded_twice_under_one_id_is_refused() {
        let ledger = Ledger::open_in_memory().unwrap().with_fold_at(1);
        let chain = ["a"];
        let record = hold("import-1", &chain, 300);
        ledger.write(|txn| insert_committed(txn, &record)).unwrap();
        // Folded into `requests` by now; still found.
        let again = ledger.write(|txn| insert_committed(txn, &record));
        assert!(
            matches!(again, Err(LedgerError::DuplicateRequest(ref id)) if id == "import-1"),
            "{again:?}"
        );
        assert_eq!(ledger.window_totals("a", "2026-11").unwrap(), (300, 0));
        assert_totals_match_rows(&[&ledger], &chain);
    }

    /// The background thread copies the WAL into the database file without any write asking
    /// for it (the writer's own threshold is 50,000 pages, far above what this test writes).
    #[test]
    fn shared_ledgers_checkpoint_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let ledger = Ledger::open(&path).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        let chain = ["a", "a/b"];
        let ids: Vec<String> = (0..200).map(|i| format!("request-{i}")).collect();
        for id in &ids {
            ledger
                .write(|txn| insert_hold(txn, &hold(id, &chain, 10), 60))
                .unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint reached the database file"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(ledger); // joins the thread
        assert_eq!(
            Ledger::open(&path)
                .unwrap()
                .window_totals("a", "2026-11-22")
                .unwrap(),
            (0, 2_000)
        );
    }

    /// The totals every handle reports, checked against the rows themselves.
    fn assert_totals_match_rows(ledgers: &[&Ledger], scopes: &[&str]) {
        let rows = ledgers[0].spend(SpendGrouping::Scope, None).unwrap();
        let committed: u64 = rows.iter().map(|r| r.cost_micros).sum();
        let held: u64 = rows.iter().map(|r| r.held_micros).sum();
        for ledger in ledgers {
            for scope in scopes {
                for period in ["2026-11-22", "2026-11"] {
                    assert_eq!(
                        ledger.window_totals(scope, period).unwrap(),
                        (committed, held),
                        "{scope} {period}"
                    );
                }
            }
        }
    }

    /// Reserves requests `r0`, `r1`, ... through one handle and settles each through the other
    /// with `settle(handle, i, id)`, the handles swapping roles every request (as two processes
    /// taking turns). After every step both must report what the rows say.
    fn take_turns(
        handles: [&Ledger; 2],
        requests: usize,
        chain: &[&str],
        settle: impl Fn(&Ledger, usize, &str),
    ) {
        for i in 0..requests {
            let id = format!("r{i}");
            let (writer, other) = (handles[i % 2], handles[(i + 1) % 2]);
            writer
                .write(|txn| insert_hold(txn, &hold(&id, chain, 1_000), 3_600))
                .unwrap();
            assert_totals_match_rows(&[writer, other], chain);
            settle(other, i, &id);
            assert_totals_match_rows(&[writer, other], chain);
        }
    }

    /// Settled requests stay in `recent` and are folded into `totals` and `requests` every few
    /// rows; two handles on one file (as two processes) each fold in turn, and both always
    /// report what the rows say, also after reopening.
    #[test]
    fn folded_and_unfolded_commits_add_up_across_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let first = Ledger::open(&path).unwrap().with_fold_at(3);
        let second = Ledger::open(&path).unwrap().with_fold_at(3);
        let chain = ["team/app", "team"];
        let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
        take_turns([&first, &second], 11, &chain, |other, i, id| {
            let usage = Usage {
                cost_micros: Some(100 + i as u64),
                ..Usage::default()
            };
            other.commit(id, &usage, now).unwrap();
        });
        let (recent, requests, folded): (i64, i64, i64) = first
            .inner
            .lock()
            .unwrap()
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM recent), (SELECT count(*) FROM requests),
                        (SELECT committed_micros FROM totals
                         WHERE scope = 'team' AND period = '2026-11')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((recent, requests), (2, 9), "11 commits, folded every 3");
        assert_eq!(folded, (100..109).sum::<i64>());
        drop((first, second));
        assert_totals_match_rows(&[&Ledger::open(&path).unwrap()], &chain);
    }

    /// Two writers on one file: the first write that follows the other's turns journaling on,
    /// and from then on each catches up from the journal instead of rebuilding from `recent`
    /// (which holds live holds that a rebuild would read). Both stay exact all along.
    #[test]
    fn a_second_writer_turns_journaling_on_and_both_catch_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let first = Ledger::open(&path).unwrap().with_fold_at(1_000);
        let second = Ledger::open(&path).unwrap().with_fold_at(1_000);
        let chain = ["team/app", "team"];
        let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
        let live: Vec<String> = (0..5).map(|i| format!("live-{i}")).collect();
        for id in &live {
            first
                .write(|txn| insert_hold(txn, &hold(id, &chain, 7), 3_600))
                .unwrap();
        }
        take_turns([&first, &second], 12, &chain, |other, i, id| {
            if i % 3 == 0 {
                other.release(id, now).unwrap();
            } else {
                let usage = Usage {
                    cost_micros: Some(10 * i as u64),
                    ..Usage::default()
                };
                other.commit(id, &usage, now).unwrap();
            }
        });
        let journaling: i64 = first
            .inner
            .lock()
            .unwrap()
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'journal'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(journaling, 1);
        for ledger in [&first, &second] {
            let rebuilds = ledger.inner.lock().unwrap().totals.rebuilds;
            // Opening, seeing the other writer, and seeing journaling turned on; without the
            // journal there would be one for each of the other's 20-odd writes.
            assert!(
                rebuilds <= 3,
                "{rebuilds} rebuilds: the journal was not used"
            );
        }
        drop((first, second));
        assert_totals_match_rows(&[&Ledger::open(&path).unwrap()], &chain);
    }

    /// A write that fails rolls back, and the totals in memory forget what it did.
    #[test]
    fn a_failed_write_leaves_the_totals_as_they_were() {
        let ledger = Ledger::open_in_memory().unwrap();
        let chain = ["a"];
        let failed = ledger.write(|txn| {
            insert_hold(txn, &hold("r1", &chain, 500), 60)?;
            Err::<(), _>(LedgerError::Overflow("r1".to_owned()))
        });
        assert!(matches!(failed, Err(LedgerError::Overflow(_))));
        assert_eq!(ledger.window_totals("a", "2026-11-22").unwrap(), (0, 0));
        assert_eq!(ledger.request_state("r1").unwrap(), None);
    }

    /// The tables of schema versions 1 and 2 that version 3 changed: `totals` also stored held
    /// amounts, and there was no journal.
    const TOTALS_V2: &str = "
        CREATE TABLE totals (
            scope TEXT NOT NULL,
            period TEXT NOT NULL,
            committed_micros INTEGER NOT NULL DEFAULT 0,
            held_micros INTEGER NOT NULL DEFAULT 0,
            committed_tokens INTEGER NOT NULL DEFAULT 0,
            held_tokens INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, period)
        ) WITHOUT ROWID;
        INSERT INTO totals (scope, period, committed_micros, held_micros) VALUES
            ('a', '2026-11-22', 300, 500), ('a', '2026-11', 300, 500);";

    /// An older ledger opens migrated: in version 1 live holds sat in `requests`, found through
    /// an index; in versions 1 and 2 `totals` also stored held amounts. The holds are still
    /// counted, reported and committable, and the committed totals are kept.
    #[test]
    fn older_ledgers_keep_their_holds_and_totals() {
        for version in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("old.sqlite");
            {
                let conn = Connection::open(&path).unwrap();
                conn.execute_batch(request_table!("requests", state_check_before!()))
                    .unwrap();
                conn.execute_batch(TOTALS_V2).unwrap();
                let held_in = if version == 1 {
                    conn.execute_batch(
                        "CREATE INDEX requests_live_holds ON requests (expires_at)
                         WHERE state = 'held'",
                    )
                    .unwrap();
                    "requests"
                } else {
                    conn.execute_batch(request_table!("holds", "state IN ('held')"))
                        .unwrap();
                    "holds"
                };
                let values = "('k', 'a', 'a', 'm', '2026-11-22', '2026-11', 0";
                let columns = "(key_id, scope, chain, model, day, month, minute, request_id, state,
                    held_micros, held_tokens, cost_micros, price_input, price_output,
                    price_cached_input, created_at, expires_at)";
                conn.execute_batch(&format!(
                    "INSERT INTO {held_in} {columns} VALUES {values}, 'old-held', 'held', 500, 10,
                         0, 1, 1, 1, 1795348800, 1795352400);
                     INSERT INTO requests {columns} VALUES {values}, 'old-done', 'committed', 300,
                         10, 300, 1, 1, 1, 1795348800, 1795352400);
                     PRAGMA user_version = {version};"
                ))
                .unwrap();
            }
            let ledger = Ledger::open(&path).unwrap();
            assert_eq!(
                ledger.request_state("old-held").unwrap().as_deref(),
                Some("held")
            );
            assert_eq!(ledger.window_totals("a", "2026-11-22").unwrap(), (300, 500));
            let rows = ledger.spend(SpendGrouping::Scope, None).unwrap();
            assert_eq!(
                (
                    rows[0].requests,
                    rows[0].cost_micros,
                    rows[0].held_requests,
                    rows[0].held_micros
                ),
                (1, 300, 1, 500)
            );
            let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
            let usage = Usage {
                cost_micros: Some(100),
                ..Usage::default()
            };
            assert_eq!(
                ledger.commit("old-held", &usage, now).unwrap(),
                Settlement::Committed { cost_micros: 100 }
            );
            assert_eq!(ledger.window_totals("a", "2026-11-22").unwrap(), (400, 0));
            assert_eq!(ledger.window_totals("a", "2026-11").unwrap(), (400, 0));
            drop(ledger);
            let conn = Connection::open(&path).unwrap();
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
            let leftovers: i64 = conn
                .query_row(
                    "SELECT (SELECT count(*) FROM sqlite_schema WHERE name = 'requests_live_holds')
                          + (SELECT count(*) FROM pragma_table_info('totals')
                             WHERE name LIKE 'held%')",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(leftovers, 0);
        }
    }

    /// A ledger written before the `state` check became an `OR` chain (schema version 4 and
    /// older) is rewritten in place when opened: its rows stay, and a state outside the four is
    /// still refused.
    #[test]
    fn the_old_state_check_is_rewritten_and_still_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            let old = SCHEMA.replace(state_check!(), state_check_before!());
            assert_ne!(old, SCHEMA);
            conn.execute_batch(&old).unwrap();
            conn.pragma_update(None, "user_version", 4).unwrap();
        }
        let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
        let hold = |id| Hold {
            request_id: id,
            key_id: "k",
            chain: &["a"],
            rated: &[],
            model: "m",
            time: now,
            micros: 500,
            tokens: 10,
            price: None,
        };
        {
            // Written by the old schema through a ledger that does not rewrite it yet.
            let conn = Connection::open(&path).unwrap();
            let mut totals = Totals::default();
            let txn = Txn {
                conn: &conn,
                totals: &mut totals,
            };
            insert_request(&txn, &hold("before"), "held", now).unwrap();
        }
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(
            ledger.request_state("before").unwrap().as_deref(),
            Some("held")
        );
        let usage = Usage {
            cost_micros: Some(100),
            ..Usage::default()
        };
        assert_eq!(
            ledger.commit("before", &usage, now).unwrap(),
            Settlement::Committed { cost_micros: 100 }
        );
        drop(ledger);
        let conn = Connection::open(&path).unwrap();
        let old_checks: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE instr(sql, ?1) > 0",
                [state_check_before!()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old_checks, 0);
        conn.execute("INSERT INTO requests SELECT * FROM recent", [])
            .unwrap();
        for table in ["recent", "requests"] {
            let refused = conn
                .execute(&format!("UPDATE {table} SET state = 'spent'"), [])
                .unwrap_err();
            assert!(
                refused.to_string().contains("CHECK constraint failed"),
                "{table}: {refused}"
            );
        }
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    /// Writing a request row builds no temporary table: SQLite does for a `CHECK` over an
    /// `IN` list of three or more values, and it cost a sixth of every reserve+commit cycle.
    #[test]
    fn writing_a_request_row_builds_no_temporary_table() {
        let ledger = Ledger::open_in_memory().unwrap();
        let inner = ledger.inner.lock().unwrap();
        for sql in [
            insert_request_sql!("recent"),
            insert_request_sql!("requests"),
            "UPDATE recent SET state = ?2 WHERE request_id = ?1",
            "INSERT INTO requests SELECT * FROM recent WHERE state != 'held'",
        ] {
            let mut explain = inner.conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let unbound = std::iter::repeat_n(rusqlite::types::Null, explain.parameter_count());
            let opcodes: Vec<String> = explain
                .query_map(params_from_iter(unbound), |r| r.get(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                opcodes.iter().all(|op| op != "OpenEphemeral"),
                "{sql}: {opcodes:?}"
            );
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("newer.sqlite");
        drop(Ledger::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Ledger::open(&path).unwrap_err();
        assert!(
            matches!(
                err,
                LedgerError::NewerSchema {
                    found: 5,
                    supported: 4
                }
            ),
            "{err}"
        );
    }
}
