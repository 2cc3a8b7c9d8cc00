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
mod front_end;
mod git;
mod hardening;
mod hooks;
mod keys;
mod policy;
mod redis;
#[path = "../support/redis.rs"]
mod redis_support;
mod rules_cmd;
mod scan_fixtures;
mod serve;
mod snapshots;
mod sweep;

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

/// Gives `command` a fixed git identity and date, independent of the machine's git config.
pub fn with_git_identity(command: &mut Command) -> &mut Command {
    command
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@keyscope.invalid")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@keyscope.invalid")
        .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05Z")
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_WORK_TREE")
}

/// A `git` command in `dir` with a fixed identity and none of the machine's git configuration.
pub fn git_command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    with_git_identity(&mut command);
    command
}

/// Runs `git ARGS` in `dir`, panics on failure, returns trimmed standard output.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_command(dir).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
