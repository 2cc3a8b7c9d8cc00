//! The git source on repositories built here: each object handed over once, attribution to
//! the introducing commits, staged changes and ranges.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use keyscope_sources::{GitError, GitObject, GitRepo, ObjectId, SweepOptions};

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn commit(dir: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (path, content) in files {
        std::fs::write(dir.join(path), content).unwrap();
        git(dir, &["add", path]);
    }
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

fn blob_id(dir: &Path, content: &str) -> ObjectId {
    std::fs::write(dir.join(".probe"), content).unwrap();
    let id = git(dir, &["hash-object", ".probe"]);
    std::fs::remove_file(dir.join(".probe")).unwrap();
    ObjectId::from_hex(&id).unwrap()
}

#[test]
fn each_blob_is_handed_over_once_packed_or_loose_and_attributed_to_each_introduction() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    let first = commit(
        dir.path(),
        &[("a.txt", "shared content\n"), ("b.txt", "other\n")],
        "first",
    );
    git(dir.path(), &["gc", "-q"]);
    // The same content at a second path, in a loose object's commit.
    let second = commit(dir.path(), &[("c.txt", "shared content\n")], "second");

    let blobs = Mutex::new(Vec::new());
    let messages = Mutex::new(Vec::new());
    let repo = GitRepo::open(dir.path()).unwrap();
    let history = repo
        .for_each_object(&SweepOptions::default(), |object| match object {
            GitObject::Blob { id, .. } => blobs.lock().unwrap().push(id),
            GitObject::CommitMessage { message, .. } => messages
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(message).trim().to_owned()),
            GitObject::TagMessage { .. } => {}
        })
        .unwrap();
    let blobs = blobs.into_inner().unwrap();
    assert_eq!(blobs.len(), 2, "two distinct contents: {blobs:?}");
    assert_eq!(history.stats.files, 2);
    assert_eq!(history.commit_count(), 2);
    let mut messages = messages.into_inner().unwrap();
    messages.sort();
    assert_eq!(messages, ["first", "second"]);
    assert!(!history.stats.has_failures());

    let shared = blob_id(dir.path(), "shared content\n");
    let attribution = repo.attribute(&history, &HashSet::from([shared])).unwrap();
    let places: Vec<(&str, &str)> = attribution
        .introductions(shared)
        .iter()
        .map(|i| (i.path.as_str(), i.commit.id.as_str()))
        .collect();
    assert_eq!(places.len(), 2);
    assert!(places.contains(&("a.txt", first.as_str())));
    assert!(places.contains(&("c.txt", second.as_str())));
    assert!(attribution.at_head(shared));
}

#[test]
fn annotated_tag_messages_are_handed_over_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    commit(dir.path(), &[("a.txt", "content\n")], "first");
    git(dir.path(), &["tag", "-a", "v1.0", "-m", "release notes"]);
    let tags = Mutex::new(Vec::new());
    let repo = GitRepo::open(dir.path()).unwrap();
    let history = repo
        .for_each_object(&SweepOptions::default(), |object| {
            if let GitObject::TagMessage { name, message, .. } = object {
                tags.lock().unwrap().push((
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(message).trim().to_owned(),
                ));
            }
        })
        .unwrap();
    assert!(!history.stats.has_failures());
    assert_eq!(
        tags.into_inner().unwrap(),
        [("v1.0".to_owned(), "release notes".to_owned())]
    );
}

#[test]
fn staged_changes_name_the_head_blob_they_replace() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    commit(
        dir.path(),
        &[("kept.txt", "same\n"), ("edit.txt", "v1\n")],
        "one",
    );
    std::fs::write(dir.path().join("edit.txt"), "v2\n").unwrap();
    std::fs::write(dir.path().join("new.txt"), "new\n").unwrap();
    git(dir.path(), &["add", "edit.txt", "new.txt"]);
    let repo = GitRepo::open(dir.path()).unwrap();
    let mut changes = repo.staged().unwrap();
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let summary: Vec<(&str, bool)> = changes
        .iter()
        .map(|c| (c.path.as_str(), c.head.is_some()))
        .collect();
    assert_eq!(summary, [("edit.txt", true), ("new.txt", false)]);
    assert_eq!(changes[0].head, Some(blob_id(dir.path(), "v1\n")));
    assert_eq!(repo.read_blob(changes[0].staged).unwrap(), b"v2\n");
}

#[test]
fn a_range_lists_introduced_blobs_and_a_missing_base_is_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    let base = commit(dir.path(), &[("a.txt", "a\n")], "a");
    let tip = commit(dir.path(), &[("b.txt", "b\n")], "b");
    let repo = GitRepo::open(dir.path()).unwrap();
    let changes = repo.range(&format!("{base}..HEAD")).unwrap();
    assert_eq!(changes.blobs.len(), 1);
    assert_eq!(changes.blobs[0].0, blob_id(dir.path(), "b\n"));
    assert_eq!(changes.blobs[0].1[0].path, "b.txt");
    assert_eq!(changes.blobs[0].1[0].commit.id, tip);
    assert_eq!(changes.commits.len(), 1);

    match repo.range("0123456789012345678901234567890123456789..HEAD") {
        Err(GitError::BaseNotFound { shallow: false, .. }) => {}
        other => panic!("expected BaseNotFound, got {other:?}"),
    }
    assert!(matches!(repo.range("a...b"), Err(GitError::RangeSyntax(_))));
}

#[test]
fn of_two_introductions_in_the_same_second_the_ancestor_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    let date = [
        ("GIT_AUTHOR_DATE", "@1700000000 +0000"),
        ("GIT_COMMITTER_DATE", "@1700000000 +0000"),
    ];
    let mut ids = Vec::new();
    for (from, to) in [
        ("", "a.txt"),
        ("a.txt", "b.txt"),
        ("b.txt", "c.txt"),
        ("c.txt", "d.txt"),
    ] {
        if from.is_empty() {
            std::fs::write(dir.path().join(to), "moving content\n").unwrap();
            git(dir.path(), &["add", to]);
        } else {
            git(dir.path(), &["mv", from, to]);
        }
        let status = Command::new("git")
            .args(["-c", "commit.gpgsign=false", "commit", "-q", "-m", to])
            .current_dir(dir.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Ada")
            .env("GIT_AUTHOR_EMAIL", "ada@example.com")
            .env("GIT_COMMITTER_NAME", "Ada")
            .env("GIT_COMMITTER_EMAIL", "ada@example.com")
            .envs(date)
            .status()
            .unwrap();
        assert!(status.success());
        ids.push(git(dir.path(), &["rev-parse", "HEAD"]));
    }
    let repo = GitRepo::open(dir.path()).unwrap();
    let history = repo
        .for_each_object(&SweepOptions::default(), |_| {})
        .unwrap();
    let blob = blob_id(dir.path(), "moving content\n");
    let attribution = repo.attribute(&history, &HashSet::from([blob])).unwrap();
    let order: Vec<(&str, &str)> = attribution
        .introductions(blob)
        .iter()
        .map(|i| (i.path.as_str(), i.commit.id.as_str()))
        .collect();
    let expected: Vec<(&str, &str)> = ["a.txt", "b.txt", "c.txt", "d.txt"]
        .into_iter()
        .zip(ids.iter().map(String::as_str))
        .collect();
    assert_eq!(order, expected);
    let changes = repo.range(&format!("{}..HEAD", ids[0])).unwrap();
    let paths: Vec<&str> = changes.blobs[0].1.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["b.txt", "c.txt", "d.txt"]);
}
