//! Git scans (`--history`, `--staged`, `--range`) on repositories built here, one scenario per
//! test: what is found, and which commit and path it is attributed to.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::{Run, git, git_command, keyscope};

/// A synthetic Google API key: `AIza` and 35 characters from a seeded generator.
pub(crate) fn key(seed: u64) -> String {
    let alphabet: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        .chars()
        .collect();
    let mut state = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let body: String = (0..35)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            alphabet[(state >> 58) as usize]
        })
        .collect();
    format!("AIza{body}")
}

pub(crate) fn config_line(seed: u64) -> String {
    format!("GOOGLE_API_KEY = \"{}\"\n", key(seed))
}

/// A new repository with an initial commit holding `README.md`.
pub(crate) fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    commit_file(dir.path(), "README.md", "hello\n", "initial", 1);
    dir
}

/// Writes and commits one file at a fixed time (`tick` seconds after a fixed epoch); returns
/// the commit id.
pub(crate) fn commit_file(
    dir: &Path,
    path: &str,
    content: &str,
    message: &str,
    tick: u64,
) -> String {
    let file = dir.join(path);
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&file, content).unwrap();
    git(dir, &["add", path]);
    commit(dir, message, tick)
}

pub(crate) fn commit(dir: &Path, message: &str, tick: u64) -> String {
    let date = format!("@{} +0000", 1_700_000_000 + tick * 60);
    let status = git_command(dir)
        .args(["commit", "-q", "--allow-empty", "-m", message])
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .status()
        .unwrap();
    assert!(status.success());
    git(dir, &["rev-parse", "HEAD"])
}

fn scan(dir: &Path, args: &[&str]) -> (Run, Value) {
    let mut all = vec!["scan", "--format", "json"];
    all.extend_from_slice(args);
    let run = keyscope(dir, &all);
    let report = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
    (run, report)
}

fn findings(report: &Value) -> &Vec<Value> {
    report["findings"].as_array().unwrap()
}

/// The (path, commit id) of every location of a finding, primary first.
fn locations(finding: &Value) -> Vec<(String, Option<String>)> {
    let place = |v: &Value| {
        (
            v["path"].as_str().unwrap().to_owned(),
            v["commit"]["id"].as_str().map(str::to_owned),
        )
    };
    std::iter::once(place(finding))
        .chain(finding["locations"].as_array().unwrap().iter().map(place))
        .collect()
}

fn assert_no_key_shown(run: &Run, seeds: &[u64]) {
    for seed in seeds {
        let body = &key(*seed)[4..];
        assert!(!run.stdout.contains(body) && !run.stderr.contains(body));
    }
}

#[test]
fn a_key_added_then_deleted_is_attributed_to_the_commit_that_added_it() {
    let dir = repo();
    let added = commit_file(dir.path(), "config.py", &config_line(1), "add config", 2);
    git(dir.path(), &["rm", "-q", "config.py"]);
    commit(dir.path(), "remove config", 3);
    let (run, report) = scan(dir.path(), &["--history", "."]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let found = findings(&report);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["rule_id"], "google-api-key");
    assert_eq!(found[0]["line"], 1);
    assert_eq!(
        locations(&found[0]),
        vec![("config.py".to_owned(), Some(added))]
    );
    assert_eq!(found[0]["commit"]["author"], "Ada <ada@example.com>");
    assert_eq!(found[0]["commit"]["summary"], "add config");
    assert!(
        found[0]["help"]
            .as_str()
            .unwrap()
            .contains("no longer present at HEAD")
    );
    assert_no_key_shown(&run, &[1]);
}

#[test]
fn a_renamed_file_keeps_its_first_path_and_lists_the_new_one() {
    let dir = repo();
    let added = commit_file(dir.path(), "old/settings.py", &config_line(2), "add", 2);
    git(dir.path(), &["mv", "old/settings.py", "new_settings.py"]);
    let renamed = commit(dir.path(), "rename", 3);
    let (run, report) = scan(dir.path(), &["--history"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let found = findings(&report);
    assert_eq!(found.len(), 1, "one secret, one finding");
    assert_eq!(
        locations(&found[0]),
        vec![
            ("old/settings.py".to_owned(), Some(added)),
            ("new_settings.py".to_owned(), Some(renamed)),
        ]
    );
    assert!(
        found[0]["help"]
            .as_str()
            .unwrap()
            .contains("still present at HEAD")
    );
}

#[test]
fn a_key_only_on_an_unmerged_branch_is_found() {
    let dir = repo();
    git(dir.path(), &["checkout", "-q", "-b", "feature"]);
    let on_branch = commit_file(dir.path(), "feature.py", &config_line(3), "wip", 2);
    git(dir.path(), &["checkout", "-q", "main"]);
    let (run, report) = scan(dir.path(), &["--history"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        locations(&findings(&report)[0]),
        vec![("feature.py".to_owned(), Some(on_branch))]
    );
}

#[test]
fn a_key_only_reachable_from_a_tag_is_found() {
    let dir = repo();
    git(dir.path(), &["checkout", "-q", "-b", "release"]);
    let tagged = commit_file(dir.path(), "deploy/env.txt", &config_line(4), "release", 2);
    git(dir.path(), &["tag", "-a", "v1", "-m", "v1"]);
    git(dir.path(), &["checkout", "-q", "main"]);
    git(dir.path(), &["branch", "-q", "-D", "release"]);
    git(dir.path(), &["gc", "-q"]);
    let (run, report) = scan(dir.path(), &["--history"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        locations(&findings(&report)[0]),
        vec![("deploy/env.txt".to_owned(), Some(tagged))]
    );
}

/// A conflict between two branches, resolved in the merge by writing a key.
fn merge_with_resolution(dir: &Path, seed: u64) -> String {
    commit_file(dir, "app.cfg", "token = none\n", "base", 2);
    git(dir, &["checkout", "-q", "-b", "other"]);
    commit_file(dir, "app.cfg", "token = theirs\n", "theirs", 3);
    git(dir, &["checkout", "-q", "main"]);
    commit_file(dir, "app.cfg", "token = ours\n", "ours", 4);
    let merge = git_command(dir)
        .args(["merge", "-q", "other"])
        .output()
        .unwrap();
    assert!(!merge.status.success(), "the merge conflicts");
    std::fs::write(dir.join("app.cfg"), config_line(seed)).unwrap();
    git(dir, &["add", "app.cfg"]);
    commit(dir, "merge other", 5)
}

#[test]
fn a_key_introduced_only_by_a_merge_resolution_is_attributed_to_the_merge() {
    let dir = repo();
    let merge = merge_with_resolution(dir.path(), 5);
    let (run, report) = scan(dir.path(), &["--history"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        locations(&findings(&report)[0]),
        vec![("app.cfg".to_owned(), Some(merge))]
    );
}

#[test]
fn amended_away_and_dangling_objects_are_still_found() {
    let dir = repo();
    let amended = commit_file(dir.path(), "keys.env", &config_line(6), "add keys", 2);
    std::fs::write(dir.path().join("keys.env"), "GOOGLE_API_KEY=from-vault\n").unwrap();
    git(dir.path(), &["add", "keys.env"]);
    git(
        dir.path(),
        &["commit", "-q", "--amend", "-m", "add keys (from the vault)"],
    );
    git(dir.path(), &["reflog", "expire", "--expire=now", "--all"]);
    // A blob no commit refers to at all.
    std::fs::write(dir.path().join("loose.txt"), config_line(7)).unwrap();
    let blob = git(dir.path(), &["hash-object", "-w", "loose.txt"]);
    std::fs::remove_file(dir.path().join("loose.txt")).unwrap();

    let (run, report) = scan(dir.path(), &["--history"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let found = findings(&report);
    assert_eq!(found.len(), 2, "{found:#?}");
    let all: Vec<_> = found.iter().flat_map(locations).collect();
    assert!(
        all.contains(&("keys.env".to_owned(), Some(amended))),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|(path, commit)| path.ends_with(&format!("@{blob}")) && commit.is_none()),
        "{all:?}"
    );
}

#[test]
fn a_key_in_a_commit_message_is_found() {
    let dir = repo();
    let id = commit(dir.path(), &format!("debug: use {}", key(8)), 2);
    let (run, report) = scan(dir.path(), &["--history"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        locations(&findings(&report)[0]),
        vec![("(commit message)".to_owned(), Some(id))]
    );
    assert_no_key_shown(&run, &[8]);
}

#[test]
fn a_key_in_an_annotated_tag_message_is_found() {
    let dir = repo();
    git(
        dir.path(),
        &[
            "tag",
            "-a",
            "v1.0",
            "-m",
            &format!("release with {}", key(9)),
        ],
    );
    let (run, report) = scan(dir.path(), &["--history"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        locations(&findings(&report)[0]),
        vec![("(tag v1.0)".to_owned(), None)]
    );
    assert_no_key_shown(&run, &[9]);
}

#[test]
fn a_corrupt_object_is_reported_the_rest_is_scanned_and_the_exit_is_2() {
    let dir = repo();
    commit_file(dir.path(), "a.py", &config_line(9), "key", 2);
    std::fs::write(dir.path().join("b.txt"), "some other content\n").unwrap();
    let blob = git(dir.path(), &["hash-object", "-w", "b.txt"]);
    let object = dir
        .path()
        .join(".git/objects")
        .join(&blob[..2])
        .join(&blob[2..]);
    let bytes = std::fs::read(&object).unwrap();
    std::fs::write(&object, &bytes[..bytes.len() / 2]).unwrap();
    let (run, report) = scan(dir.path(), &["--history"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&blob[2..]), "{}", run.stderr);
    assert_eq!(findings(&report).len(), 1, "the key is still found");
    assert_eq!(report["summary"]["complete"], false);
}

#[test]
fn a_shallow_clone_warns_that_history_is_incomplete() {
    let dir = repo();
    commit_file(dir.path(), "old.py", &config_line(10), "old key", 2);
    git(dir.path(), &["rm", "-q", "old.py"]);
    commit(dir.path(), "drop", 3);
    let head = commit_file(dir.path(), "new.py", &config_line(11), "new key", 4);
    let clones = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    git(
        clones.path(),
        &["clone", "-q", "--depth", "1", &url, "shallow"],
    );
    let shallow = clones.path().join("shallow");
    let (run, report) = scan(&shallow, &["--history"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("shallow clone"), "{}", run.stderr);
    // Only HEAD's tree is there: the deleted key is beyond the boundary.
    assert_eq!(
        locations(&findings(&report)[0]),
        vec![("new.py".to_owned(), Some(head))]
    );
    assert_eq!(findings(&report).len(), 1);
}

#[test]
fn a_bare_repository_is_swept() {
    let dir = repo();
    let added = commit_file(dir.path(), "x/y.py", &config_line(12), "add", 2);
    let clones = tempfile::tempdir().unwrap();
    git(
        clones.path(),
        &[
            "clone",
            "-q",
            "--bare",
            dir.path().to_str().unwrap(),
            "bare.git",
        ],
    );
    let (run, report) = scan(clones.path(), &["--history", "bare.git"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        locations(&findings(&report)[0]),
        vec![("x/y.py".to_owned(), Some(added))]
    );
}

#[test]
fn several_repositories_in_one_run_prefix_their_paths() {
    let one = repo();
    commit_file(one.path(), "a.py", &config_line(13), "a", 2);
    let two = repo();
    commit_file(two.path(), "b.py", &config_line(14), "b", 2);
    let (run, report) = scan(
        one.path(),
        &["--history", ".", two.path().to_str().unwrap()],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let paths: Vec<String> = findings(&report)
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths.len(), 2);
    assert!(paths.iter().any(|p| p.ends_with("/a.py")), "{paths:?}");
    assert!(paths.iter().any(|p| p.ends_with("/b.py")), "{paths:?}");
}

#[test]
fn staged_reports_only_keys_the_commit_would_add() {
    let dir = repo();
    commit_file(dir.path(), "app.py", &config_line(15), "old key", 2);
    let mut content = config_line(15);
    content.push_str(&config_line(16));
    std::fs::write(dir.path().join("app.py"), &content).unwrap();
    std::fs::write(dir.path().join("new.py"), config_line(17)).unwrap();
    // An unstaged key in the work tree is not what the commit adds.
    std::fs::write(dir.path().join("unstaged.py"), config_line(18)).unwrap();
    git(dir.path(), &["add", "app.py", "new.py"]);

    let (run, report) = scan(dir.path(), &["--staged"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let mut found: Vec<(String, u64)> = findings(&report)
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(found, vec![("app.py".into(), 2), ("new.py".into(), 1)]);

    let (run, report) = scan(dir.path(), &["--staged", "--all"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(findings(&report).len(), 3);

    // Only the key already in HEAD staged again: nothing new.
    git(dir.path(), &["reset", "-q"]);
    std::fs::write(
        dir.path().join("app.py"),
        format!("# moved\n{}", config_line(15)),
    )
    .unwrap();
    git(dir.path(), &["add", "app.py"]);
    let (run, report) = scan(dir.path(), &["--staged"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(findings(&report).is_empty());
}

/// The config's `exclude` globs hold in the pre-commit and pull-request modes: a fixture key
/// under an excluded directory neither blocks a commit nor fails a range, alone or next to a
/// real one; and a key committed both inside and outside is placed only outside.
#[test]
fn staged_and_range_honor_the_config_excludes() {
    let dir = repo();
    let base = commit_file(
        dir.path(),
        ".keyscope.toml",
        "exclude = [\"fixtures/**\"]\n",
        "config",
        2,
    );
    std::fs::create_dir_all(dir.path().join("fixtures")).unwrap();
    std::fs::write(dir.path().join("fixtures/keys.env"), config_line(30)).unwrap();
    git(dir.path(), &["add", "fixtures/keys.env"]);
    let (run, report) = scan(dir.path(), &["--staged"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(findings(&report).is_empty());

    std::fs::write(dir.path().join("app.py"), config_line(31)).unwrap();
    std::fs::write(dir.path().join("copy.py"), config_line(30)).unwrap();
    git(dir.path(), &["add", "app.py", "copy.py"]);
    let (run, report) = scan(dir.path(), &["--staged"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let mut paths: Vec<&str> = findings(&report)
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    paths.sort_unstable();
    assert_eq!(paths, ["app.py", "copy.py"]);

    let head = commit(dir.path(), "fixtures and app", 3);
    let (run, report) = scan(dir.path(), &["--range", &format!("{base}..HEAD")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let mut places: Vec<Vec<(String, Option<String>)>> =
        findings(&report).iter().map(locations).collect();
    places.sort();
    assert_eq!(
        places,
        vec![
            vec![("app.py".to_owned(), Some(head.clone()))],
            vec![("copy.py".to_owned(), Some(head))],
        ]
    );
    // Without the config, the fixture is found too.
    let (_, report) = scan(
        dir.path(),
        &["--isolated", "--range", &format!("{base}..HEAD")],
    );
    let all: usize = findings(&report).iter().map(|f| locations(f).len()).sum();
    assert_eq!(all, 3);
}

#[test]
fn staged_honors_git_index_file() {
    let dir = repo();
    std::fs::write(dir.path().join("new.py"), config_line(19)).unwrap();
    let index = dir.path().join("other-index");
    let status = git_command(dir.path())
        .args(["add", "new.py"])
        .env("GIT_INDEX_FILE", &index)
        .status()
        .unwrap();
    assert!(status.success());
    let (run, _) = scan(dir.path(), &["--staged"]);
    assert_eq!(
        run.code, 0,
        "the default index has nothing staged: {}",
        run.stderr
    );
    let run = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["scan", "--staged", "--format", "json"])
        .current_dir(dir.path())
        .env("GIT_INDEX_FILE", &index)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
}

#[test]
fn range_finds_keys_reached_through_a_merges_second_parent_and_resolutions() {
    let dir = repo();
    let base = commit_file(dir.path(), "main.py", "print(1)\n", "main work", 2);
    git(dir.path(), &["checkout", "-q", "-b", "feature"]);
    let on_branch = commit_file(dir.path(), "feature.py", &config_line(20), "feature", 3);
    git(dir.path(), &["checkout", "-q", "main"]);
    commit_file(dir.path(), "main2.py", "print(2)\n", "more main work", 4);
    git(
        dir.path(),
        &["merge", "-q", "--no-ff", "-m", "merge feature", "feature"],
    );
    // A key already in BASE is not reported by the range.
    let (run, report) = scan(dir.path(), &["--range", &format!("{base}..HEAD")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        locations(&findings(&report)[0]),
        vec![("feature.py".to_owned(), Some(on_branch.clone()))]
    );
    let (run, report) = scan(dir.path(), &["--range", "HEAD..HEAD"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(findings(&report).is_empty());
    let (run, _) = scan(dir.path(), &["--range", &format!("{on_branch}..HEAD")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn range_attributes_a_merge_resolution_to_the_merge() {
    let dir = repo();
    let base = git(dir.path(), &["rev-parse", "HEAD"]);
    let merge = merge_with_resolution(dir.path(), 21);
    let (run, report) = scan(dir.path(), &["--range", &format!("{base}..HEAD")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        locations(&findings(&report)[0]),
        vec![("app.cfg".to_owned(), Some(merge))]
    );
}

#[test]
fn range_with_a_base_missing_from_a_shallow_clone_fails_with_how_to_fetch() {
    let dir = repo();
    let base = commit_file(dir.path(), "a.py", "a = 1\n", "a", 2);
    commit_file(dir.path(), "b.py", &config_line(22), "b", 3);
    let clones = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    git(
        clones.path(),
        &["clone", "-q", "--depth", "1", &url, "shallow"],
    );
    let (run, _) = scan(
        &clones.path().join("shallow"),
        &["--range", &format!("{base}..HEAD")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    // The message is wrapped to the terminal width: compare words, not lines.
    let words = run
        .stderr
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(words.contains("git fetch --unshallow"), "{words}");
    assert!(words.contains("fetch-depth: 0"), "{words}");
    assert!(words.contains("(a shallow clone)"), "{words}");
    let (run, _) = scan(dir.path(), &["--range", "no-such-branch..HEAD"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no-such-branch"), "{}", run.stderr);
}
