//! The background WAL checkpointer of a shared ledger.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::LedgerError;

/// How often the background checkpointer copies the WAL into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// A thread with its own connection that runs `PRAGMA wal_checkpoint(PASSIVE)` every
/// [`CHECKPOINT_INTERVAL`]. Under `synchronous=NORMAL` the checkpoint is the only place SQLite
/// calls fsync; inline, it stalled one reservation in a few hundred for milliseconds. A passive
/// checkpoint never blocks the writer. Stopped and joined on drop.
#[derive(Debug)]
pub(super) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Self, LedgerError> {
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
