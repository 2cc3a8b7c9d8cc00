//! End-to-end tests of the `keyscope` binary: one test binary, one module per area.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

mod action;
mod bad_input;
mod config_and_baseline;
mod git;
mod hardening;
mod hooks;
mod policy;
mod rules_cmd;
mod scan_fixtures;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture directory.
pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

/// The result of one run of the binary.
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Runs `keyscope ARGS` in `dir`, with no standard input.
pub fn keyscope(dir: &Path, args: &[&str]) -> Run {
    keyscope_with_input(dir, args, None)
}

/// Runs `keyscope ARGS` in `dir`, feeding `input` on standard input.
pub fn keyscope_with_input(dir: &Path, args: &[&str], input: Option<&[u8]>) -> Run {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(args)
        .current_dir(dir)
        .env_remove("KEYSCOPE_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the keyscope binary runs");
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}
