//! Issue #17: git content a scan missed or misreported, and fleet sweeps (`keyscope sweep`,
//! `keyscope merge`) over repositories built here.

use std::path::Path;

use serde_json::Value;

use crate::git::{commit_file, config_line, key, repo};
use crate::{Run, git, keyscope};

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stderr))
}

/// A repository with a key committed and removed, and a file:// URL clones can be made from.
fn leaky_origin(parent: &Path, name: &str, seed: u64) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    git(&dir, &["init", "-q"]);
    git(&dir, &["config", "uploadpack.allowFilter", "true"]);
    commit_file(&dir, "README.md", "hello\n", "initial", 1);
    commit_file(&dir, "app.py", &config_line(seed), "add config", 2);
    commit_file(&dir, "app.py", "nothing here\n", "remove the key", 3);
    dir
}

#[test]
fn a_shared_clone_is_swept_through_its_alternates() {
    let dir = tempfile::tempdir().unwrap();
    leaky_origin(dir.path(), "origin", 1);
    git(dir.path(), &["clone", "-q", "--shared", "origin", "shared"]);
    let run = keyscope(
        dir.path(),
        &["scan", "--isolated", "--history", "-f", "json", "shared"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(json(&run)["findings"][0]["path"], "app.py");
}

#[test]
fn a_blobless_clone_exits_2_saying_the_history_is_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let origin = leaky_origin(dir.path(), "origin", 1);
    let url = format!("file://{}", origin.display());
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--filter=blob:none",
            "--no-checkout",
            &url,
            "partial",
        ],
    );
    let run = keyscope(
        dir.path(),
        &["scan", "--isolated", "--history", "-f", "json", "partial"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("a partial clone"), "{}", run.stderr);
    assert_eq!(json(&run)["summary"]["complete"], false);
}

#[test]
fn range_of_one_revision_scans_every_commit_it_reaches() {
    let dir = repo();
    commit_file(dir.path(), "app.py", &config_line(4), "add config", 2);
    commit_file(dir.path(), "app.py", "clean\n", "remove it", 3);
    for spec in ["HEAD", "main"] {
        let run = keyscope(
            dir.path(),
            &["scan", "--isolated", "--range", spec, "-f", "json"],
        );
        assert_eq!(run.code, 1, "{spec}: {}", run.stderr);
        assert_eq!(json(&run)["findings"][0]["path"], "app.py");
    }
    let run = keyscope(dir.path(), &["scan", "--isolated", "--range", "HEAD..HEAD"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_directory_of_clones_says_their_histories_were_not_swept() {
    let dir = tempfile::tempdir().unwrap();
    leaky_origin(dir.path(), "one", 1);
    leaky_origin(dir.path(), "two", 2);
    let run = keyscope(dir.path(), &["scan", "--isolated", "."]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("2 git repositories (`./one`, `./two`)")
            && run.stderr.contains("keyscope sweep"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&key(1)));
}
