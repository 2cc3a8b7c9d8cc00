//! A real Redis for the tests, started on free loopback ports and stopped when dropped.
//!
//! `redis-server` is Debian's package. When it is missing the harness installs it (as root, with
//! `apt-get`), and when it still cannot start one the test fails: a test that needs Redis never
//! passes without it. Only `KEYSCOPE_SKIP_REDIS=1`, set by hand, skips such tests, with a line on
//! stderr that says so.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a test harness: a failure to start Redis fails the test"
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` process.
pub struct RedisServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    _temp: Option<tempfile::TempDir>,
}

/// Whether Redis tests were skipped by hand; prints why.
pub fn skipped(test: &str) -> bool {
    if std::env::var_os("KEYSCOPE_SKIP_REDIS").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: KEYSCOPE_SKIP_REDIS=1 is set, so no Redis was started");
        return true;
    }
    false
}

/// Makes sure `redis-server` and `redis-cli` exist, installing Debian's package when not.
fn ensure_installed() {
    let present = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // Tests run on many threads: one installs, the others wait for it.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if present("redis-server") && present("redis-cli") {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "redis-server"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // A fresh machine has no package lists yet.
    if !install() {
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .stdout(Stdio::null())
            .status();
        install();
    }
    assert!(
        present("redis-server") && present("redis-cli"),
        "redis-server is not installed and `apt-get install redis-server` failed: install it \
         (Debian package `redis-server`), or set KEYSCOPE_SKIP_REDIS=1 to skip these tests"
    );
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl RedisServer {
    /// A fresh server with no persistence.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"], None)
    }

    /// A server that writes every command to its append-only file before answering, in `dir`
    /// (kept across restarts).
    pub fn start_durable(dir: &Path) -> Self {
        Self::start_with(
            &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            Some(dir),
        )
    }

    /// Starts `redis-server` with `args` on a free port; in `dir`, or a temporary directory.
    pub fn start_with(args: &[&str], dir: Option<&Path>) -> Self {
        ensure_installed();
        let temp = dir
            .is_none()
            .then(|| tempfile::tempdir().expect("temp dir"));
        let dir = dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| temp.as_ref().expect("temp dir").path().to_path_buf());
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        for _ in 0..5 {
            let port = free_port();
            let child = spawn(port, &dir, &args);
            let mut server = Self {
                child,
                port,
                dir: dir.clone(),
                args: args.clone(),
                _temp: None,
            };
            if server.wait_ready() {
                server._temp = temp;
                return server;
            }
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        panic!("redis-server did not start on a free loopback port after 5 tries");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server with SIGKILL: no shutdown, no final write.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and directory, after [`kill`](Self::kill).
    pub fn restart(&mut self) {
        self.child = spawn(self.port, &self.dir, &self.args);
        assert!(self.wait_ready(), "redis-server did not come back");
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if self.cli(&["ping"]) == "PONG" {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn spawn(port: u16, dir: &Path, args: &[String]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters on loopback, made with `redis-cli --cluster create`.
pub struct RedisCluster {
    /// The masters.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(
                    &[
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                    ],
                    None,
                )
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes
            .iter()
            .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "the cluster never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { nodes }
    }

    /// `redis-cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis-cluster://{}", nodes.join(","))
    }
}
