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

/// Sweeps a repository, returning its history and the ids of the blobs handed over.
fn sweep(dir: &Path) -> (keyscope_sources::History, Vec<ObjectId>) {
    let blobs = Mutex::new(Vec::new());
    let history = GitRepo::open(dir)
        .unwrap()
        .for_each_object(&SweepOptions::default(), |object| {
            if let GitObject::Blob { id, .. } = object {
                blobs.lock().unwrap().push(id);
            }
        })
        .unwrap();
    (history, blobs.into_inner().unwrap())
}

/// The reasons of a sweep's failures, as text.
fn failures(history: &keyscope_sources::History) -> Vec<String> {
    history
        .stats
        .skipped
        .iter()
        .filter(|s| s.reason.is_failure())
        .map(|s| format!("{}: {}", s.place, s.reason))
        .collect()
}

fn loose_object(dir: &Path, id: &str) -> std::path::PathBuf {
    dir.join(".git/objects").join(&id[..2]).join(&id[2..])
}

/// Issue #17: a `git clone --shared` clone keeps its history in the objects of the repository
/// it was cloned from (`objects/info/alternates`); a sweep read only its own 0 objects.
#[test]
fn objects_reached_through_alternates_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    git(&src, &["init", "-q"]);
    commit(&src, &[("a.txt", "in the origin's objects\n")], "first");
    git(&src, &["gc", "-q"]);
    git(dir.path(), &["clone", "-q", "--shared", "src", "shared"]);
    let shared = dir.path().join("shared");
    commit(
        &shared,
        &[("b.txt", "in the clone's own objects\n")],
        "second",
    );
    let (history, blobs) = sweep(&shared);
    assert!(failures(&history).is_empty(), "{:?}", failures(&history));
    assert!(blobs.contains(&blob_id(&src, "in the origin's objects\n")));
    assert!(blobs.contains(&blob_id(&shared, "in the clone's own objects\n")));
    assert_eq!(history.commit_count(), 2);
}

/// Issue #17: a blobless partial clone has commits and trees but no blobs; a sweep called
/// that clean.
#[test]
fn a_blobless_partial_clone_is_reported_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    git(&src, &["init", "-q"]);
    git(&src, &["config", "uploadpack.allowFilter", "true"]);
    commit(&src, &[("a.txt", "a\n"), ("b.txt", "b\n")], "first");
    let url = format!("file://{}", src.display());
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--no-checkout",
            "--filter=blob:none",
            &url,
            "partial",
        ],
    );
    let (history, blobs) = sweep(&dir.path().join("partial"));
    assert!(blobs.is_empty());
    let failures = failures(&history);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains("partial clone: 2 objects"),
        "{failures:?}"
    );
}

/// Issue #17: a pack whose index is gone holds objects nobody can read; the sweep said clean.
#[test]
fn a_pack_without_its_index_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    commit(dir.path(), &[("a.txt", "packed\n")], "first");
    git(dir.path(), &["gc", "-q"]);
    let pack_dir = dir.path().join(".git/objects/pack");
    for entry in std::fs::read_dir(&pack_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let (history, _) = sweep(dir.path());
    let failures = failures(&history);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains(".pack: cannot be read: pack has no index"));
}

/// Issue #17: a blob that a tree names but the database lacks is content never scanned.
#[test]
fn a_missing_blob_is_a_failure_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    commit(
        dir.path(),
        &[("a.txt", "kept\n"), ("b.txt", "lost\n")],
        "first",
    );
    let lost = blob_id(dir.path(), "lost\n");
    std::fs::remove_file(loose_object(dir.path(), &lost.to_string())).unwrap();
    let (history, blobs) = sweep(dir.path());
    assert_eq!(blobs, [blob_id(dir.path(), "kept\n")]);
    assert_eq!(
        failures(&history),
        [format!(
            "{}@{lost}: cannot be read: missing from the object database, which names it",
            dir.path().display()
        )]
    );
}

/// Issue #17: a corrupt tree (a loose object whose content is not a tree, or cannot be
/// inflated) hides the paths beneath it.
#[test]
fn a_corrupt_loose_tree_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    commit(dir.path(), &[("a.txt", "a\n")], "first");
    std::fs::write(dir.path().join("garbage"), "100644 no-id-follows").unwrap();
    let bad = git(
        dir.path(),
        &["hash-object", "-t", "tree", "--literally", "-w", "garbage"],
    );
    let broken = git(dir.path(), &["commit-tree", &bad, "-m", "broken"]);
    git(dir.path(), &["update-ref", "refs/heads/broken", &broken]);
    let (history, _) = sweep(dir.path());
    let failures = failures(&history);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains(&format!("{bad}: cannot be read: corrupt tree")));

    // A tree whose loose file is cut short cannot even be inflated.
    let tree = git(dir.path(), &["rev-parse", "main^{tree}"]);
    let path = loose_object(dir.path(), &tree);
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    #[expect(
        clippy::permissions_set_readonly_false,
        reason = "a test corrupts its own repository"
    )]
    permissions.set_readonly(false);
    std::fs::set_permissions(&path, permissions).unwrap();
    let data = std::fs::read(&path).unwrap();
    std::fs::write(&path, &data[..data.len() / 2]).unwrap();
    let (history, _) = sweep(dir.path());
    let cut = self::failures(&history);
    assert!(cut.iter().any(|f| f.contains(&tree)), "{cut:?}");
}

/// Issue #17: `--range HEAD` (no `..`) scanned nothing; it means what `git log HEAD` means.
#[test]
fn a_range_of_one_revision_is_every_commit_it_reaches() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    let first = commit(dir.path(), &[("a.txt", "a\n")], "a");
    commit(dir.path(), &[("b.txt", "b\n")], "b");
    let repo = GitRepo::open(dir.path()).unwrap();
    assert_eq!(repo.range("HEAD").unwrap().commits.len(), 2);
    assert_eq!(repo.range("HEAD").unwrap().blobs.len(), 2);
    let at_first = repo.range(&first).unwrap();
    assert_eq!(at_first.commits.len(), 1);
    assert_eq!(at_first.blobs[0].0, blob_id(dir.path(), "a\n"));
    assert!(matches!(
        repo.range("..HEAD"),
        Err(GitError::RangeSyntax(_))
    ));
}
