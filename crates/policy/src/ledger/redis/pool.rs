//! Connections to Redis: one node or a cluster, with timeouts, reused across calls and dropped
//! when they fail, so the next call reconnects by itself.

use std::sync::Mutex;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{Client, ConnectionLike, RedisError};

use crate::error::LedgerError;

/// Where the ledger lives.
enum Target {
    Node(Client),
    Cluster(ClusterClient),
}

/// A small pool of synchronous connections.
pub(super) struct Pool {
    target: Target,
    idle: Mutex<Vec<Box<dyn ConnectionLike + Send>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("Pool")
            .field("cluster", &matches!(self.target, Target::Cluster(_)))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The scheme of a cluster's URL: `redis-cluster://HOST:PORT[,HOST:PORT...]`.
pub(super) const CLUSTER_SCHEME: &str = "redis-cluster://";

impl Pool {
    /// A pool for `url`; nothing is connected yet.
    pub(super) fn new(url: &str, timeout: Duration) -> Result<Self, LedgerError> {
        let target = match url.strip_prefix(CLUSTER_SCHEME) {
            Some(nodes) => {
                let nodes: Vec<String> = nodes
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(|n| format!("redis://{n}"))
                    .collect();
                if nodes.is_empty() {
                    return Err(LedgerError::Redis(
                        "a cluster URL names no node: expected `redis-cluster://HOST:PORT,...`"
                            .to_owned(),
                    ));
                }
                Target::Cluster(
                    ClusterClientBuilder::new(nodes)
                        .connection_timeout(timeout)
                        .response_timeout(timeout)
                        .build()
                        .map_err(redacted)?,
                )
            }
            None => Target::Node(Client::open(url).map_err(redacted)?),
        };
        Ok(Self {
            target,
            idle: Mutex::new(Vec::new()),
            timeout,
        })
    }

    /// Whether the ledger is a cluster (where a pipeline cannot span slots).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    fn connect(&self) -> Result<Box<dyn ConnectionLike + Send>, LedgerError> {
        match &self.target {
            Target::Node(client) => {
                let conn = client
                    .get_connection_with_timeout(self.timeout)
                    .map_err(redacted)?;
                conn.set_read_timeout(Some(self.timeout))
                    .map_err(redacted)?;
                conn.set_write_timeout(Some(self.timeout))
                    .map_err(redacted)?;
                Ok(Box::new(conn))
            }
            Target::Cluster(client) => Ok(Box::new(client.get_connection().map_err(redacted)?)),
        }
    }

    /// Runs `f` on a connection. A connection that failed is dropped with every idle one (after
    /// a restart of the server they are all dead), so the next call connects afresh.
    pub(super) fn run<T>(
        &self,
        f: impl FnOnce(&mut dyn ConnectionLike) -> Result<T, RedisError>,
    ) -> Result<T, LedgerError> {
        let reused = self.idle.lock().map_err(|_| LedgerError::Poisoned)?.pop();
        let mut conn = match reused {
            Some(conn) => conn,
            None => self.connect()?,
        };
        match f(&mut *conn) {
            Ok(value) => {
                self.idle
                    .lock()
                    .map_err(|_| LedgerError::Poisoned)?
                    .push(conn);
                Ok(value)
            }
            Err(e) => {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    self.idle.lock().map_err(|_| LedgerError::Poisoned)?.clear();
                } else {
                    self.idle
                        .lock()
                        .map_err(|_| LedgerError::Poisoned)?
                        .push(conn);
                }
                Err(redacted(e))
            }
        }
    }
}

/// A Redis error as the ledger reports it: its kind and message, which never carry the URL.
pub(super) fn redacted(e: RedisError) -> LedgerError {
    LedgerError::Redis(e.to_string())
}
