//! Bad input gets a clear error and loses nothing: a scan that skipped content never exits 0.

use crate::{keyscope, root};

fn google_key() -> String {
    format!("AIza{}", "Xq3vB7nT0kLm9PzR2sWd5YhC8jFg1uEaZoK".to_owned())
}

#[test]
fn a_path_that_does_not_exist_is_an_error() {
    let run = keyscope(&root(), &["scan", "no/such/path"]);
    assert_eq!(run.code, 2);
    // Issue #19: skipped files are named on standard error, as the README says.
    assert!(
        run.stderr
            .contains("not scanned: no/such/path: no such file"),
        "{}",
        run.stderr
    );
    let run = keyscope(&root(), &["scan", "--format", "json", "no/such/path"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no/such/path"), "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["summary"]["complete"], false);
}

#[test]
fn broken_symlinks_are_errors_when_named_and_listed_when_found() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("link")).unwrap();
    let run = keyscope(dir.path(), &["scan", "link"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stderr.contains("broken symlink"));
    let run = keyscope(dir.path(), &["scan", "--format", "json", "."]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["skipped"][0]["reason"], "broken symlink");
    assert_eq!(report["skipped"][0]["failure"], false);
}

#[test]
fn binary_files_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    data.extend_from_slice(google_key().as_bytes());
    std::fs::write(dir.path().join("logo.png"), data).unwrap();
    let run = keyscope(dir.path(), &["scan", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["summary"]["binary_files_skipped"], 1);
    assert_eq!(report["summary"]["complete"], true);
}

#[test]
fn a_file_over_the_size_limit_is_named_and_fails_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dump.sql"), "x".repeat(4096)).unwrap();
    std::fs::write(dir.path().join("small.txt"), "hello").unwrap();
    let run = keyscope(dir.path(), &["scan", "--max-file-size", "1K"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("dump.sql"), "{}", run.stderr);
    assert!(run.stderr.contains("--max-file-size"), "{}", run.stderr);
    let run = keyscope(dir.path(), &["scan", "--max-file-size", "8K"]);
    assert_eq!(run.code, 0);
}

#[test]
fn invalid_utf8_is_scanned_not_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = b"caf\xe9 \xff\xfe key=\"".to_vec();
    data.extend_from_slice(google_key().as_bytes());
    data.extend_from_slice(b"\" \xc3\x28\n");
    std::fs::write(dir.path().join("latin1.txt"), data).unwrap();
    let run = keyscope(dir.path(), &["scan", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["findings"][0]["rule_id"], "google-api-key");
}

#[test]
fn an_unreadable_file_fails_the_scan() {
    // Root reads any file whatever its mode; /proc/self/mem is a regular file that nobody can
    // read from offset 0, so it stands in for an unreadable file for every user.
    let run = keyscope(&root(), &["scan", "/proc/self/mem"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("cannot be read"), "{}", run.stderr);
}

#[test]
fn bad_arguments_exit_2_and_help_exits_0() {
    assert_eq!(keyscope(&root(), &["scan", "--format", "xml"]).code, 2);
    assert_eq!(
        keyscope(&root(), &["scan", "--max-file-size", "lots"]).code,
        2
    );
    assert_eq!(keyscope(&root(), &["frobnicate"]).code, 2);
    assert_eq!(keyscope(&root(), &["--help"]).code, 0);
    assert_eq!(keyscope(&root(), &["--version"]).code, 0);
}

#[test]
fn an_unwritable_output_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("missing-dir/report.json");
    let run = keyscope(dir.path(), &["scan", "-o", out.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot write the report"),
        "{}",
        run.stderr
    );
}
