//! A process's copy of the key registry, kept in step with the ledger by its revision counter:
//! decisions look keys up in memory, and a change anywhere (a revocation by the CLI, another
//! replica) is seen at the next decision on SQLite and within a quarter of a second on Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::LedgerError;
use crate::keys::KeyRecord;

/// The registry as last read.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    by_id: HashMap<String, Arc<KeyRecord>>,
    by_hash: HashMap<String, Arc<KeyRecord>>,
}

impl Snapshot {
    fn of(records: Vec<KeyRecord>) -> Self {
        let mut snapshot = Self::default();
        for record in records.into_iter().map(Arc::new) {
            if let Some(hash) = &record.hash {
                snapshot.by_hash.insert(hash.clone(), Arc::clone(&record));
            }
            snapshot.by_id.insert(record.id.clone(), record);
        }
        snapshot
    }

    /// The record with id `id`.
    pub(crate) fn by_id(&self, id: &str) -> Option<&Arc<KeyRecord>> {
        self.by_id.get(id)
    }

    /// The record whose secret hashes to `hash` (lowercase hex).
    pub(crate) fn by_hash(&self, hash: &str) -> Option<&Arc<KeyRecord>> {
        self.by_hash.get(hash)
    }
}

/// The cached snapshot and when its revision was last checked.
#[derive(Debug)]
pub(super) struct Cache {
    /// How long a checked revision is trusted: zero re-checks at every lookup.
    trust: Duration,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    revision: Option<u64>,
    checked: Option<Instant>,
    snapshot: Arc<Snapshot>,
}

impl Cache {
    pub(super) fn new(trust: Duration) -> Self {
        Self {
            trust,
            state: Mutex::new(CacheState::default()),
        }
    }

    /// The snapshot, read again when the ledger's revision moved.
    pub(super) fn get(
        &self,
        revision: impl FnOnce() -> Result<u64, LedgerError>,
        records: impl FnOnce() -> Result<Vec<KeyRecord>, LedgerError>,
    ) -> Result<Arc<Snapshot>, LedgerError> {
        let mut state = self.state.lock().map_err(|_| LedgerError::Poisoned)?;
        let fresh = state
            .checked
            .is_some_and(|at| !self.trust.is_zero() && at.elapsed() < self.trust);
        if fresh {
            return Ok(Arc::clone(&state.snapshot));
        }
        let now = revision()?;
        if state.revision != Some(now) {
            state.snapshot = Arc::new(if now == 0 {
                Snapshot::default()
            } else {
                Snapshot::of(records()?)
            });
            state.revision = Some(now);
        }
        state.checked = Some(Instant::now());
        Ok(Arc::clone(&state.snapshot))
    }

    /// Forgets the snapshot: the next lookup reads the registry again.
    pub(super) fn invalidate(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.revision = None;
            state.checked = None;
        }
    }
}
