//! The ledger's tables, and the migrations that bring an older file up to date.

use rusqlite::{Connection, params};

use super::rows::{RequestRow, parse_row, row_columns};
use super::totals::{Amounts, write_totals_row};
use crate::error::LedgerError;

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
    settled_at INTEGER,
    action TEXT NOT NULL DEFAULT 'invoke',
    checksum INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"
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

#[cfg(test)]
pub(super) use {request_table, state_check, state_check_before};

pub(super) const SCHEMA: &str = concat!(
    request_table!("requests", state_check!()),
    request_table!("recent", state_check!()),
    "
CREATE TABLE IF NOT EXISTS totals (
    scope TEXT NOT NULL,
    period TEXT NOT NULL,
    committed_micros INTEGER NOT NULL DEFAULT 0,
    committed_tokens INTEGER NOT NULL DEFAULT 0,
    checksum INTEGER NOT NULL DEFAULT 0,
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
    settled INTEGER NOT NULL,
    checksum INTEGER NOT NULL DEFAULT 0
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
/// whose other writers catch up from it. Version 4 did not record a request's action, so it
/// could not tell a retried reservation from another request under the same id, and kept no
/// row checksums.
pub(super) const SCHEMA_VERSION: i64 = 5;

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

/// Brings the schema of the database `conn` has open, inside the opening transaction, to
/// [`SCHEMA_VERSION`]; refuses a newer one.
pub(super) fn prepare(conn: &Connection) -> Result<(), LedgerError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if (1..5).contains(&version) {
        add_columns(conn)?;
    }
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(super::keys::KEYS_TABLE)?;
    match version {
        1 => conn.execute_batch(MIGRATE_FROM_1)?,
        2 => conn.execute_batch(MIGRATE_FROM_2)?,
        _ => {}
    }
    if version == 1 || version == 2 {
        conn.execute_batch(MIGRATE_TOTALS)?;
    }
    if (1..5).contains(&version) {
        write_checksums(conn)?;
    }
    rewrite_state_checks(conn)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

/// From versions 1 to 4: every request table that exists gains the `action` and `checksum`
/// columns, last, as [`SCHEMA`] creates them, so rows still move between tables with
/// `SELECT *`; `totals` and `journal` gain `checksum`. Requests recorded before were all taken
/// as `invoke`.
fn add_columns(conn: &Connection) -> Result<(), LedgerError> {
    let exists = |table: &str| -> Result<bool, LedgerError> {
        Ok(conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )?)
    };
    for table in ["requests", "recent", "holds"] {
        if exists(table)? {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN action TEXT NOT NULL DEFAULT 'invoke';
                 ALTER TABLE {table} ADD COLUMN checksum INTEGER NOT NULL DEFAULT 0;"
            ))?;
        }
    }
    for table in ["totals", "journal"] {
        if exists(table)? {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN checksum INTEGER NOT NULL DEFAULT 0"
            ))?;
        }
    }
    Ok(())
}

/// From versions 1 to 4: every row gets its first checksum, taken as the row stands.
fn write_checksums(conn: &Connection) -> Result<(), LedgerError> {
    for (table, recent) in [("recent", true), ("requests", false)] {
        let rows: Vec<RequestRow> = {
            let mut statement = conn.prepare(&format!("SELECT {} FROM {table}", row_columns!()))?;
            let mut rows = statement.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(parse_row(r, 0, recent, false)?);
            }
            out
        };
        let mut update = conn.prepare(&format!(
            "UPDATE {table} SET checksum = ?2 WHERE request_id = ?1"
        ))?;
        for row in &rows {
            update.execute(params![row.request_id, row.checksum()])?;
        }
    }
    let totals: Vec<(String, String, i64, i64)> = conn
        .prepare("SELECT scope, period, committed_micros, committed_tokens FROM totals")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    for (scope, period, micros, tokens) in totals {
        write_totals_row(conn, &scope, &period, Amounts { micros, tokens })?;
    }
    // Journal entries only matter to connections running now, and none runs during a migration.
    conn.execute_batch("DELETE FROM journal")?;
    Ok(())
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
