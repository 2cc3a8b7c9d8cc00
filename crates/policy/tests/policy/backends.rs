//! The ledger's two backends, for tests that must behave the same on both: the embedded SQLite
//! file and a real Redis (one node, or a three-master cluster) started for the test.

use std::path::PathBuf;

use keyscope_policy::{Ledger, RedisOptions};

#[path = "../../../../tests/support/redis.rs"]
pub mod redis_support;

pub use redis_support::{RedisCluster, RedisServer};

/// Where a test ledger lives; keeps its server or directory alive.
pub struct TestLedger {
    /// `sqlite`, `redis` or `redis-cluster`: named in assertion messages.
    pub name: &'static str,
    location: Location,
    _dir: Option<tempfile::TempDir>,
    _server: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
}

enum Location {
    Sqlite(PathBuf),
    Redis(String),
}

impl TestLedger {
    /// A fresh SQLite ledger file.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        Self {
            name: "sqlite",
            location: Location::Sqlite(path),
            _dir: Some(dir),
            _server: None,
            _cluster: None,
        }
    }

    /// A fresh Redis server; `None` only when skipped by hand.
    pub fn redis(test: &str) -> Option<Self> {
        if redis_support::skipped(test) {
            return None;
        }
        let server = RedisServer::start();
        Some(Self {
            name: "redis",
            location: Location::Redis(server.url()),
            _dir: None,
            _server: Some(server),
            _cluster: None,
        })
    }

    /// A fresh three-master Redis Cluster; `None` only when skipped by hand.
    pub fn redis_cluster(test: &str) -> Option<Self> {
        if redis_support::skipped(test) {
            return None;
        }
        let cluster = RedisCluster::start();
        Some(Self {
            name: "redis-cluster",
            location: Location::Redis(cluster.url()),
            _dir: None,
            _server: None,
            _cluster: Some(cluster),
        })
    }

    /// A new handle on the ledger, as another process would open it.
    pub fn open(&self) -> Ledger {
        match &self.location {
            Location::Sqlite(path) => Ledger::open(path).unwrap(),
            Location::Redis(url) => Ledger::open_redis(url, RedisOptions::default()).unwrap(),
        }
    }
}

/// SQLite and a single Redis node: the suite every ledger behaviour runs against.
pub fn both(test: &str) -> Vec<TestLedger> {
    let mut out = vec![TestLedger::sqlite()];
    out.extend(TestLedger::redis(test));
    out
}
