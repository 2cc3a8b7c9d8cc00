//! The running totals a reservation checks, kept in memory and derived from what is stored.
//!
//! Nothing here is the truth; the tables are. The *held* part of a window is the sum of the
//! live holds in `recent`. The *committed* part is the window's row in `totals` (spend folded so
//! far) plus the committed rows of `recent` (settled since the last fold). So a reservation
//! inserts one row and its commit updates that row, both on a small hot table, and totals rows
//! are rewritten only when a fold moves [`FOLD_AT`] settled rows to `requests` at once.
//!
//! The copy in memory stays right because every transaction first reads `PRAGMA data_version`.
//! If another connection (a thread, the CLI, another service) wrote since, the copy is rebuilt
//! from `recent`, and rows of `totals` are read again when needed; a write that fails throws the
//! copy away. A rebuild reads every live hold, so once a connection sees that it shares the
//! ledger with another writer, it switches the ledger to *journaling*: from then on every write
//! also appends its changes to the totals to `journal`, and a connection catches up by reading
//! the rows appended since its own last write. A fold empties the journal and starts a new
//! generation; a connection that missed it rebuilds. A single writer never pays for the journal.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::checksum::{self, Checksum};
use super::rows::{read_row, row_columns};
use crate::error::LedgerError;
use crate::ledger::RequestState;

/// How many settled rows a write leaves in `recent` before it folds them. A fold costs a few
/// statements whatever its size; a rebuild (after another connection's fold, or before
/// journaling) reads all of `recent` again. Chosen before the journal existed, when every write
/// of another connection meant a rebuild: with two connections taking turns, 1,024 rows cut
/// throughput to 950 cycles/s, and 32 was on par with rewriting the totals in every write.
pub(super) const FOLD_AT: u64 = 32;

/// Stop caching `totals` rows past this many (one per scope and day or month looked up); the
/// cache starts again empty.
const MAX_FOLDED_ENTRIES: usize = 100_000;

/// Writes a row of `totals` with its checksum.
const UPSERT_TOTALS: &str = "
    INSERT INTO totals (scope, period, committed_micros, committed_tokens, checksum)
    VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (scope, period) DO UPDATE SET
        committed_micros = excluded.committed_micros,
        committed_tokens = excluded.committed_tokens,
        checksum = excluded.checksum";

/// Reads the row of `totals` for `scope` and `period` (zero when there is none), checking its
/// checksum.
pub(super) fn read_totals_row(
    conn: &Connection,
    scope: &str,
    period: &str,
) -> Result<Amounts, LedgerError> {
    let row = conn
        .prepare_cached(
            "SELECT committed_micros, committed_tokens, checksum FROM totals
             WHERE scope = ?1 AND period = ?2",
        )?
        .query_row([scope, period], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    let Some((micros, tokens, stored)) = row else {
        return Ok(Amounts::default());
    };
    if stored != checksum::totals_row(scope, period, micros, tokens) {
        return Err(LedgerError::Corrupt(format!(
            "the total of scope `{scope}` for `{period}` fails its checksum: it was changed \
             outside keyscope; `keyscope ledger rebuild` recomputes it from the requests"
        )));
    }
    read_amounts(micros, tokens)
}

/// Adds `amounts` to the row of `totals` for `scope` and `period`, checking the old row and
/// writing the new one's checksum.
fn add_to_totals_row(
    conn: &Connection,
    scope: &str,
    period: &str,
    amounts: Amounts,
) -> Result<(), LedgerError> {
    let total = read_totals_row(conn, scope, period)?.plus(amounts);
    write_totals_row(conn, scope, period, total)
}

/// Writes the row of `totals` for `scope` and `period`.
pub(super) fn write_totals_row(
    conn: &Connection,
    scope: &str,
    period: &str,
    total: Amounts,
) -> Result<(), LedgerError> {
    conn.prepare_cached(UPSERT_TOTALS)?.execute(params![
        scope,
        period,
        total.micros,
        total.tokens,
        checksum::totals_row(scope, period, total.micros, total.tokens)
    ])?;
    Ok(())
}

/// A journal row selected as `seq, chain, day, month, held_micros, held_tokens,
/// committed_micros, committed_tokens, settled, checksum`: its sequence number, the change and
/// its stored checksum.
fn journal_row(row: &rusqlite::Row<'_>) -> Result<(i64, Change, i64), LedgerError> {
    let change = Change {
        chain: row.get(1)?,
        day: row.get(2)?,
        month: row.get(3)?,
        held: Amounts {
            micros: row.get(4)?,
            tokens: row.get(5)?,
        },
        committed: Amounts {
            micros: row.get(6)?,
            tokens: row.get(7)?,
        },
        settled: row.get(8)?,
    };
    Ok((row.get(0)?, change, row.get(9)?))
}

/// The checksum of a journal entry.
fn journal_checksum(change: &Change) -> i64 {
    Checksum::new()
        .text(&change.chain)
        .text(&change.day)
        .text(&change.month)
        .int(change.held.micros)
        .int(change.held.tokens)
        .int(change.committed.micros)
        .int(change.committed.tokens)
        .int(change.settled)
        .finish()
}

/// Micro-dollars and tokens of one window of one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Amounts {
    pub(super) micros: i64,
    pub(super) tokens: i64,
}

impl Amounts {
    pub(super) fn negated(self) -> Self {
        Self {
            micros: -self.micros,
            tokens: -self.tokens,
        }
    }

    pub(super) fn plus(self, other: Self) -> Self {
        Self {
            micros: self.micros.saturating_add(other.micros),
            tokens: self.tokens.saturating_add(other.tokens),
        }
    }
}

/// A map keyed by scope ids or periods: short strings from the store and the clock, not from
/// requests, hashed with foldhash instead of the standard library's DoS-resistant SipHash (a
/// dozen lookups per reserve+commit cycle).
type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Amounts by period (`YYYY-MM-DD` or `YYYY-MM`), then scope: lookups by `&str` without
/// building a key.
#[derive(Debug, Default)]
struct Windows(Map<Map<Amounts>>);

impl Windows {
    fn get(&self, scope: &str, period: &str) -> Option<Amounts> {
        self.0.get(period)?.get(scope).copied()
    }

    /// Sets the amounts of one window.
    fn set(&mut self, scope: &str, period: &str, amounts: Amounts) {
        match self.0.get_mut(period) {
            Some(scopes) => {
                scopes.insert(scope.to_owned(), amounts);
            }
            None => {
                let mut scopes = Map::default();
                scopes.insert(scope.to_owned(), amounts);
                self.0.insert(period.to_owned(), scopes);
            }
        }
    }

    /// Adds `amounts` to the day and the month of every scope of `chain` (newline-separated, as
    /// stored). An entry back at zero stays until [`prune`](Self::prune): a hold and its commit
    /// would otherwise remove and re-create the same entries in every cycle.
    fn add_chain(&mut self, chain: &str, day: &str, month: &str, amounts: Amounts) {
        if amounts == Amounts::default() {
            return;
        }
        for period in [day, month] {
            match self.0.get_mut(period) {
                Some(scopes) => add_to_chain(scopes, chain, amounts),
                None => {
                    let mut scopes = Map::default();
                    add_to_chain(&mut scopes, chain, amounts);
                    self.0.insert(period.to_owned(), scopes);
                }
            }
        }
    }

    /// Drops the entries back at zero, so the map follows the live holds only.
    fn prune(&mut self) {
        self.0.retain(|_, scopes| {
            scopes.retain(|_, amounts| *amounts != Amounts::default());
            !scopes.is_empty()
        });
    }

    fn entries(&self) -> impl Iterator<Item = (&str, &str, Amounts)> {
        self.0.iter().flat_map(|(period, scopes)| {
            scopes
                .iter()
                .map(move |(scope, amounts)| (scope.as_str(), period.as_str(), *amounts))
        })
    }
}

fn add_to_chain(scopes: &mut Map<Amounts>, chain: &str, amounts: Amounts) {
    for scope in chain.split('\n') {
        match scopes.get_mut(scope) {
            Some(entry) => *entry = entry.plus(amounts),
            None => {
                scopes.insert(scope.to_owned(), amounts);
            }
        }
    }
}

/// The in-memory running totals of one connection.
#[derive(Debug, Default)]
pub(super) struct Totals {
    /// `PRAGMA data_version` when the copy was built; `None` before that and after a failed write.
    version: Option<i64>,
    /// Sums of the live holds.
    held: Windows,
    /// Sums of the committed rows of `recent`.
    unfolded: Windows,
    /// How many rows of `recent` are settled (committed, released or expired).
    settled_rows: u64,
    /// Rows of `totals` read so far; a window without a row is cached as zero.
    folded: Windows,
    folded_entries: usize,
    /// Whether writers append their changes to `journal` (`meta` row `journal`).
    journaling: bool,
    /// The journal generation the copy includes (`meta` row `generation`, bumped by folds).
    generation: i64,
    /// The last journal row the copy includes.
    seen_seq: i64,
    /// This transaction's changes, for the journal; only kept while journaling.
    pending: Vec<Change>,
    /// Whether this connection has seen another connection write: its next write turns
    /// journaling on. Survives rebuilds.
    other_writer: bool,
    /// How many times the copy was rebuilt: tests tell catching up from rebuilding.
    #[cfg(test)]
    pub(super) rebuilds: u64,
}

/// One write's change to the totals of one chain, day and month: a journal row.
#[derive(Debug)]
struct Change {
    chain: String,
    day: String,
    month: String,
    held: Amounts,
    committed: Amounts,
    /// Rows of `recent` that stopped being live holds.
    settled: i64,
}

/// Amounts read from a row, which keyscope never writes negative.
pub(super) fn read_amounts(micros: i64, tokens: i64) -> Result<Amounts, LedgerError> {
    super::rows::from_i64(micros)?;
    super::rows::from_i64(tokens)?;
    Ok(Amounts { micros, tokens })
}

impl Totals {
    /// Forgets the copy: the next transaction rebuilds it.
    pub(super) fn invalidate(&mut self) {
        self.version = None;
        self.pending.clear();
    }

    /// Brings the copy up to date if another connection wrote since it was built: from the
    /// journal when it can, else by rebuilding it. Runs first in every transaction:
    /// `PRAGMA data_version` starts the read and reports the state it sees. A `writing`
    /// transaction that finds another writer turns journaling on.
    pub(super) fn refresh(&mut self, conn: &Connection, writing: bool) -> Result<(), LedgerError> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if self.version == Some(version) {
            if writing && self.other_writer && !self.journaling {
                self.start_journaling(conn)?;
            }
            return Ok(());
        }
        let other_writer = self.version.is_some() || self.other_writer;
        let (journaling, generation): (Option<i64>, Option<i64>) = conn
            .prepare_cached(
                "SELECT (SELECT value FROM meta WHERE key = 'journal'),
                        (SELECT value FROM meta WHERE key = 'generation')",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let journaling = journaling.unwrap_or(0) != 0;
        let generation = generation.unwrap_or(0);
        if other_writer && self.journaling && journaling && generation == self.generation {
            self.catch_up(conn)?;
            self.version = Some(version);
            return Ok(());
        }
        self.rebuild(conn)?;
        self.journaling = journaling;
        self.generation = generation;
        self.other_writer = other_writer;
        if other_writer && writing && !journaling {
            self.start_journaling(conn)?;
        }
        self.version = Some(version);
        Ok(())
    }

    /// Turns journaling on for every writer of the ledger.
    fn start_journaling(&mut self, conn: &Connection) -> Result<(), LedgerError> {
        conn.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('journal', 1)
             ON CONFLICT (key) DO UPDATE SET value = 1",
        )?
        .execute([])?;
        self.journaling = true;
        Ok(())
    }

    /// Applies the journal rows other connections appended since this copy's last one.
    fn catch_up(&mut self, conn: &Connection) -> Result<(), LedgerError> {
        let mut statement = conn.prepare_cached(
            "SELECT seq, chain, day, month, held_micros, held_tokens, committed_micros,
                    committed_tokens, settled, checksum
             FROM journal WHERE seq > ?1 ORDER BY seq",
        )?;
        let mut rows = statement.query([self.seen_seq])?;
        while let Some(row) = rows.next()? {
            let (seq, change, stored) = journal_row(row)?;
            if stored != journal_checksum(&change) {
                return Err(LedgerError::Corrupt(format!(
                    "journal entry {seq} fails its checksum: it was changed outside keyscope"
                )));
            }
            let Change {
                chain,
                day,
                month,
                held,
                committed,
                settled,
            } = change;
            self.held.add_chain(&chain, &day, &month, held);
            self.unfolded.add_chain(&chain, &day, &month, committed);
            self.settled_rows = self.settled_rows.saturating_add_signed(settled);
            self.seen_seq = seq;
        }
        Ok(())
    }

    /// Rebuilds the copy from `recent`; the journal rows so far are included by construction.
    fn rebuild(&mut self, conn: &Connection) -> Result<(), LedgerError> {
        #[cfg(test)]
        let rebuilds = self.rebuilds + 1;
        *self = Self::default();
        #[cfg(test)]
        {
            self.rebuilds = rebuilds;
        }
        self.seen_seq = conn
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM journal")?
            .query_row([], |r| r.get(0))?;
        // Every row is read and checked: a damaged hold must not count as less than it is.
        let mut statement =
            conn.prepare_cached(concat!("SELECT ", row_columns!(), " FROM recent"))?;
        let mut rows = statement.query([])?;
        while let Some(r) = rows.next()? {
            let row = read_row(r, 0, true)?;
            match row.state {
                RequestState::Held => self
                    .held
                    .add_chain(&row.chain, &row.day, &row.month, row.held),
                RequestState::Committed => {
                    self.unfolded
                        .add_chain(&row.chain, &row.day, &row.month, row.committed());
                }
                RequestState::Released | RequestState::Expired => {}
            }
            if row.state != RequestState::Held {
                self.settled_rows += 1;
            }
        }
        Ok(())
    }

    fn record(&mut self, chain: &str, day: &str, month: &str, held: Amounts, committed: Amounts) {
        if self.journaling {
            self.pending.push(Change {
                chain: chain.to_owned(),
                day: day.to_owned(),
                month: month.to_owned(),
                held,
                committed,
                settled: 0,
            });
        }
    }

    /// Appends this transaction's changes to the journal, when journaling. Runs at the end of
    /// every write, before the fold.
    /// The sequence numbers of the journal entries that fail their checksums.
    pub(super) fn damaged_journal_entries(
        &self,
        conn: &Connection,
    ) -> Result<Vec<i64>, LedgerError> {
        let mut statement = conn.prepare(
            "SELECT seq, chain, day, month, held_micros, held_tokens, committed_micros,
                    committed_tokens, settled, checksum FROM journal ORDER BY seq",
        )?;
        let mut rows = statement.query([])?;
        let mut damaged = Vec::new();
        while let Some(row) = rows.next()? {
            let (seq, change, stored) = journal_row(row)?;
            if stored != journal_checksum(&change) {
                damaged.push(seq);
            }
        }
        Ok(damaged)
    }

    pub(super) fn write_journal(&mut self, conn: &Connection) -> Result<(), LedgerError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut insert = conn.prepare_cached(
            "INSERT INTO journal (chain, day, month, held_micros, held_tokens, committed_micros,
                                  committed_tokens, settled, checksum)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for change in self.pending.drain(..) {
            insert.execute(params![
                change.chain,
                change.day,
                change.month,
                change.held.micros,
                change.held.tokens,
                change.committed.micros,
                change.committed.tokens,
                change.settled,
                journal_checksum(&change),
            ])?;
        }
        self.seen_seq = conn.last_insert_rowid();
        Ok(())
    }

    /// Starts a new journal generation after the totals rows changed (a fold, a late charge):
    /// other connections rebuild instead of catching up.
    fn new_generation(&mut self, conn: &Connection) -> Result<(), LedgerError> {
        if !self.journaling {
            return Ok(());
        }
        conn.execute_batch(
            "DELETE FROM journal;
             INSERT INTO meta (key, value) VALUES ('generation', 1)
             ON CONFLICT (key) DO UPDATE SET value = value + 1;",
        )?;
        self.generation = conn
            .prepare_cached("SELECT value FROM meta WHERE key = 'generation'")?
            .query_row([], |r| r.get(0))?;
        self.seen_seq = 0;
        Ok(())
    }

    /// Micro-dollars and tokens held by live reservations of `scope` (and its descendants) in
    /// `period`.
    pub(super) fn held(&self, scope: &str, period: &str) -> Amounts {
        self.held.get(scope, period).unwrap_or_default()
    }

    /// Micro-dollars and tokens committed by `scope` (and its descendants) in `period`.
    pub(super) fn committed(
        &mut self,
        conn: &Connection,
        scope: &str,
        period: &str,
    ) -> Result<Amounts, LedgerError> {
        let folded = match self.folded.get(scope, period) {
            Some(folded) => folded,
            None => {
                let folded = read_totals_row(conn, scope, period)?;
                if self.folded_entries >= MAX_FOLDED_ENTRIES {
                    self.folded = Windows::default();
                    self.folded_entries = 0;
                }
                self.folded.set(scope, period, folded);
                self.folded_entries += 1;
                folded
            }
        };
        Ok(folded.plus(self.unfolded.get(scope, period).unwrap_or_default()))
    }

    /// Counts a new hold (`amounts`) or the end of one (`amounts.negated()`) against the day and
    /// month of every scope of `chain`. The caller writes or settles the row in `recent`.
    pub(super) fn hold(&mut self, chain: &str, day: &str, month: &str, amounts: Amounts) {
        self.held.add_chain(chain, day, month, amounts);
        self.record(chain, day, month, amounts, Amounts::default());
    }

    /// Counts a row of `recent` that stopped being a live hold toward the next fold.
    pub(super) fn settled(&mut self) {
        self.settled_rows += 1;
        if !self.journaling {
            return;
        }
        match self.pending.last_mut() {
            Some(change) => change.settled += 1,
            None => self.pending.push(Change {
                chain: String::new(),
                day: String::new(),
                month: String::new(),
                held: Amounts::default(),
                committed: Amounts::default(),
                settled: 1,
            }),
        }
    }

    /// Charges spend that a row of `recent` records as committed to the day and month of every
    /// scope of `chain`. The caller writes the row.
    pub(super) fn charge_unfolded(
        &mut self,
        chain: &str,
        day: &str,
        month: &str,
        amounts: Amounts,
    ) {
        self.unfolded.add_chain(chain, day, month, amounts);
        self.record(chain, day, month, Amounts::default(), amounts);
    }

    /// Charges spend committed on a row already folded into `requests` (a request that expired
    /// before its commit arrived) to `totals` directly: rare, so one upsert per window is fine.
    pub(super) fn charge_folded(
        &mut self,
        conn: &Connection,
        chain: &str,
        day: &str,
        month: &str,
        amounts: Amounts,
    ) -> Result<(), LedgerError> {
        for period in [day, month] {
            for scope in chain.split('\n') {
                add_to_totals_row(conn, scope, period, amounts)?;
                self.add_to_cached_fold(scope, period, amounts);
            }
        }
        // Every other connection rebuilds: this transaction's own changes need no journal row.
        self.pending.clear();
        self.new_generation(conn)
    }

    fn add_to_cached_fold(&mut self, scope: &str, period: &str, amounts: Amounts) {
        if let Some(folded) = self.folded.0.get_mut(period).and_then(|s| s.get_mut(scope)) {
            *folded = folded.plus(amounts);
        }
    }

    /// Folds once `recent` holds `fold_at` settled rows: their committed spend goes into
    /// `totals` (one upsert per scope and window), and the rows move to `requests`. The sums do
    /// not change.
    pub(super) fn fold_if_due(
        &mut self,
        conn: &Connection,
        fold_at: u64,
    ) -> Result<(), LedgerError> {
        if self.settled_rows < fold_at {
            return Ok(());
        }
        for (scope, period, amounts) in self.unfolded.entries() {
            add_to_totals_row(conn, scope, period, amounts)?;
        }
        conn.prepare_cached("INSERT INTO requests SELECT * FROM recent WHERE state != 'held'")?
            .execute([])?;
        conn.prepare_cached("DELETE FROM recent WHERE state != 'held'")?
            .execute([])?;
        let unfolded = std::mem::take(&mut self.unfolded);
        for (scope, period, amounts) in unfolded.entries() {
            self.add_to_cached_fold(scope, period, amounts);
        }
        self.settled_rows = 0;
        self.held.prune();
        self.new_generation(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_counts_in_both_windows_and_pruning_leaves_no_empty_entries() {
        let mut windows = Windows::default();
        let amounts = Amounts {
            micros: 5,
            tokens: 1,
        };
        windows.add_chain("team/app\nteam", "2026-11-22", "2026-11", amounts);
        for (scope, period) in [
            ("team/app", "2026-11-22"),
            ("team", "2026-11-22"),
            ("team/app", "2026-11"),
            ("team", "2026-11"),
        ] {
            assert_eq!(
                windows.get(scope, period),
                Some(amounts),
                "{scope} {period}"
            );
        }
        assert_eq!(windows.get("team", "2026-11-21"), None);
        windows.add_chain("team/app\nteam", "2026-11-22", "2026-11", amounts.negated());
        assert_eq!(windows.get("team", "2026-11"), Some(Amounts::default()));
        windows.add_chain("other", "2026-11-22", "2026-11", amounts);
        windows.prune();
        assert_eq!(windows.get("team", "2026-11"), None);
        assert_eq!(windows.get("other", "2026-11"), Some(amounts));
        windows.add_chain("other", "2026-11-22", "2026-11", amounts.negated());
        windows.prune();
        assert!(windows.0.is_empty(), "{windows:?}");
    }
}
