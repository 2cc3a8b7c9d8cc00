//! The key registry in SQLite: one row per key, its record as JSON, and a revision counter in
//! `meta` that every change bumps, so a reader knows when its cached copy is stale.

use rusqlite::{OptionalExtension as _, TransactionBehavior, params};

use super::SqliteLedger;
use crate::error::LedgerError;
use crate::keys::KeyRecord;
use crate::time::Timestamp;

/// The table, created on open.
pub(super) const KEYS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    hash TEXT UNIQUE,
    record TEXT NOT NULL
) WITHOUT ROWID;
";

const REVISION: &str = "keys_revision";

fn decode(id: &str, json: &str) -> Result<KeyRecord, LedgerError> {
    serde_json::from_str(json)
        .map_err(|e| LedgerError::Corrupt(format!("the registry entry of key `{id}`: {e}")))
}

fn encode(record: &KeyRecord) -> Result<String, LedgerError> {
    serde_json::to_string(record).map_err(|e| LedgerError::Corrupt(e.to_string()))
}

impl SqliteLedger {
    /// Adds `record`; an id or hash the registry has already is refused.
    pub(in crate::ledger) fn key_insert(&self, record: &KeyRecord) -> Result<(), LedgerError> {
        let json = encode(record)?;
        let mut inner = self.inner.lock().map_err(|_| LedgerError::Poisoned)?;
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let added = tx.execute(
            "INSERT OR IGNORE INTO keys (id, hash, record) VALUES (?1, ?2, ?3)",
            params![record.id, record.hash, json],
        )?;
        if added == 0 {
            return Err(LedgerError::DuplicateKey(record.id.clone()));
        }
        bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces the record of `record.id`.
    pub(in crate::ledger) fn key_update(&self, record: &KeyRecord) -> Result<(), LedgerError> {
        let json = encode(record)?;
        let mut inner = self.inner.lock().map_err(|_| LedgerError::Poisoned)?;
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE keys SET record = ?2 WHERE id = ?1",
            params![record.id, json],
        )?;
        if changed == 0 {
            return Err(LedgerError::UnknownKey(record.id.clone()));
        }
        bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// The record of key `id`.
    pub(in crate::ledger) fn key(&self, id: &str) -> Result<Option<KeyRecord>, LedgerError> {
        let inner = self.inner.lock().map_err(|_| LedgerError::Poisoned)?;
        let json: Option<String> = inner
            .conn
            .prepare_cached("SELECT record FROM keys WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        json.map(|json| decode(id, &json)).transpose()
    }

    /// Every record.
    pub(in crate::ledger) fn keys(&self) -> Result<Vec<KeyRecord>, LedgerError> {
        let inner = self.inner.lock().map_err(|_| LedgerError::Poisoned)?;
        let mut statement = inner.conn.prepare_cached("SELECT id, record FROM keys")?;
        let rows =
            statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut keys = Vec::new();
        for row in rows {
            let (id, json) = row?;
            keys.push(decode(&id, &json)?);
        }
        Ok(keys)
    }

    /// The registry's revision: it changes whenever a record does.
    pub(in crate::ledger) fn keys_revision(&self) -> Result<u64, LedgerError> {
        let inner = self.inner.lock().map_err(|_| LedgerError::Poisoned)?;
        let revision: Option<i64> = inner
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([REVISION], |r| r.get(0))
            .optional()?;
        Ok(revision.map_or(0, |r| r.unsigned_abs()))
    }

    /// Notes a request made with key `id` at `at`, when later than the last one noted. Does not
    /// change the revision: only a usage-drained rotation reads it, from the row itself.
    pub(in crate::ledger) fn key_touch(&self, id: &str, at: Timestamp) -> Result<(), LedgerError> {
        let mut inner = self.inner.lock().map_err(|_| LedgerError::Poisoned)?;
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let json: Option<String> = tx
            .query_row("SELECT record FROM keys WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        let Some(json) = json else {
            return Ok(());
        };
        let mut record = decode(id, &json)?;
        if record.last_used.is_some_and(|used| used >= at) {
            return Ok(());
        }
        record.last_used = Some(at);
        tx.execute(
            "UPDATE keys SET record = ?2 WHERE id = ?1",
            params![id, encode(&record)?],
        )?;
        tx.commit()?;
        Ok(())
    }
}

fn bump(tx: &rusqlite::Transaction<'_>) -> Result<(), LedgerError> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, 1)
         ON CONFLICT (key) DO UPDATE SET value = value + 1",
        [REVISION],
    )?;
    Ok(())
}
