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

fn sweep(dir: &Path, args: &[&str]) -> (Run, Value) {
    let mut all = vec!["sweep", "--isolated", "--format", "json"];
    all.extend_from_slice(args);
    let run = keyscope(dir, &all);
    let report = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
    (run, report)
}

/// `(rule id, fingerprint, sorted repositories, from_state)` of each finding.
fn summary_of(report: &Value) -> Vec<(String, String, Vec<String>, bool)> {
    let mut out: Vec<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let mut repos: Vec<String> = f["repositories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect();
            repos.sort();
            (
                f["rule_id"].as_str().unwrap().to_owned(),
                f["fingerprint"].as_str().unwrap().to_owned(),
                repos,
                f["from_state"].as_bool().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn coverage_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_second_sweep_reads_only_new_objects_and_still_reports_old_findings() {
    let dir = tempfile::tempdir().unwrap();
    let one = leaky_origin(dir.path(), "one", 1);
    let (run, first) = sweep(dir.path(), &["one", "--state", "state"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(first["summary"]["objects_from_state"], 0);
    assert!(!summary_of(&first)[0].3);

    commit_file(&one, "later.py", &config_line(2), "another key", 4);
    let (run, second) = sweep(dir.path(), &["one", "--state", "state"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let read = second["summary"]["objects_read"].as_u64().unwrap();
    let known = second["summary"]["objects_from_state"].as_u64().unwrap();
    // The new commit, its tree and blob, and the one blob and commit that held findings.
    assert!(read <= 6 && known >= 9, "read {read}, from state {known}");
    let found = summary_of(&second);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found.iter().filter(|f| f.3).count(), 1, "{found:?}");
    assert!(!run.stdout.contains(&key(1)) && !run.stdout.contains(&key(2)));
    let places: Vec<&str> = second["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(places.contains(&"one/app.py") && places.contains(&"one/later.py"));
    let log = coverage_lines(&dir.path().join("state/coverage.jsonl"));
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["status"], "complete");
    assert_eq!(log[1]["repository"], "one");
    assert!(log[1]["refs"]["refs/heads/main"].is_string());

    // Other rules (here: another size limit) make the state's records worthless.
    let (_, third) = sweep(
        dir.path(),
        &["one", "--state", "state", "--max-file-size", "1M"],
    );
    assert_eq!(third["summary"]["objects_from_state"], 0);
}

#[test]
fn a_partial_repository_exits_2_and_is_not_recorded_as_read() {
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
    let args = [
        "origin",
        "partial",
        "--state",
        "state",
        "--coverage",
        "cov.jsonl",
    ];
    let (run, report) = sweep(dir.path(), &args);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(report["summary"]["repositories_partial"], 1);
    assert_eq!(report["summary"]["complete"], false);
    let log = coverage_lines(&dir.path().join("cov.jsonl"));
    let status: Vec<(&str, &str)> = log
        .iter()
        .map(|l| {
            (
                l["repository"].as_str().unwrap(),
                l["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(status, [("origin", "complete"), ("partial", "partial")]);
    let (run, again) = sweep(dir.path(), &args);
    assert_eq!(run.code, 2);
    let log = coverage_lines(&dir.path().join("cov.jsonl"));
    assert_eq!(log[3]["objects_from_state"], 0, "{:?}", log[3]);
    assert!(log[2]["objects_from_state"].as_u64().unwrap() > 0);
    assert_eq!(again["summary"]["repositories_partial"], 1);
}

#[test]
fn shards_merged_report_what_one_process_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for i in 0..6 {
        let name = format!("r{i}");
        // Two keys, each in three repositories: flat keys across shards.
        leaky_origin(dir.path(), &name, i % 2);
        names.push(name);
    }
    std::fs::write(
        dir.path().join("repos.txt"),
        names.join("\n") + "\n# done\n",
    )
    .unwrap();
    let (run, whole) = sweep(dir.path(), &["--list", "repos.txt"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let mut shards = Vec::new();
    for k in 0..3 {
        let out = format!("shard-{k}.json");
        let shard = format!("{k}/3");
        let (run, _) = sweep(
            dir.path(),
            &["--list", "repos.txt", "--shard", &shard, "-o", &out],
        );
        assert!(run.code <= 1, "{}", run.stderr);
        shards.push(out);
    }
    let mut args = vec!["merge", "-o", "org.json"];
    args.extend(shards.iter().map(String::as_str));
    let run = keyscope(dir.path(), &args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let merged: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("org.json")).unwrap())
            .unwrap();
    assert_eq!(summary_of(&merged), summary_of(&whole));
    assert_eq!(merged["summary"]["repositories"], 6);
    assert!(
        summary_of(&merged)
            .iter()
            .any(|f| f.0 == "flat-key/shared-across-repos" && f.2.len() == 3)
    );
}

#[test]
fn fingerprints_are_keyed_when_an_organisation_key_is_given() {
    let dir = tempfile::tempdir().unwrap();
    leaky_origin(dir.path(), "one", 1);
    std::fs::write(dir.path().join("org.key"), "an organisation secret\n").unwrap();
    let (_, salted) = sweep(dir.path(), &["one"]);
    let (_, keyed) = sweep(dir.path(), &["one", "--fingerprint-key-file", "org.key"]);
    assert_eq!(salted["summary"]["fingerprints"], "salted-sha256");
    assert_eq!(keyed["summary"]["fingerprints"], "hmac-sha256");
    let fingerprint = |r: &Value| r["findings"][0]["fingerprint"].as_str().unwrap().to_owned();
    assert_ne!(fingerprint(&salted), fingerprint(&keyed));
    let by_env = std::process::Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["sweep", "--isolated", "-f", "json", "one"])
        .current_dir(dir.path())
        .env("KEYSCOPE_FINGERPRINT_KEY", "an organisation secret")
        .output()
        .unwrap();
    let by_env: Value = serde_json::from_slice(&by_env.stdout).unwrap();
    assert_eq!(fingerprint(&by_env), fingerprint(&keyed));
    assert!(!keyed.to_string().contains("an organisation secret"));
}

#[test]
fn a_url_is_cloned_into_the_cache_and_named_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let origin = leaky_origin(dir.path(), "origin", 1);
    let url = format!("file://{}", origin.display());
    let (run, report) = sweep(dir.path(), &[&url, "--state", "state"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(report["findings"][0]["repositories"][0], url.as_str());
    commit_file(&origin, "more.txt", "more\n", "more", 5);
    let (run, again) = sweep(dir.path(), &[&url, "--state", "state"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(again["summary"]["objects_from_state"].as_u64().unwrap() > 0);
    let run = keyscope(dir.path(), &["sweep", &url]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("give --cache DIR or --state DIR"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_damaged_state_means_a_full_sweep_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    leaky_origin(dir.path(), "one", 1);
    let (run, _) = sweep(dir.path(), &["one", "--state", "state"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let states: Vec<_> = std::fs::read_dir(dir.path().join("state/repos"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        states.len(),
        1,
        "one state file, no temporary left: {states:?}"
    );
    let text = std::fs::read_to_string(&states[0]).unwrap();
    assert!(!text.contains(&key(1)));
    std::fs::write(&states[0], &text[..text.len() / 2]).unwrap();
    let (run, report) = sweep(dir.path(), &["one", "--state", "state"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(report["summary"]["objects_from_state"], 0);
    let (_, again) = sweep(dir.path(), &["one", "--state", "state"]);
    assert!(again["summary"]["objects_from_state"].as_u64().unwrap() > 0);
}

/// A commit message that talks about a usage rule is no usage finding, in a sweep as in
/// `scan --history` (found on keyscope's own history after the merge of issues 13 and 17).
#[test]
fn a_sweep_judges_usage_findings_where_they_are_placed() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("talk");
    std::fs::create_dir(&origin).unwrap();
    git(&origin, &["init", "-q"]);
    commit_file(
        &origin,
        "NOTES.md",
        "notes\n",
        "client-exposed: new OpenAI({ apiKey, dangerouslyAllowBrowser: true }) is flagged",
        1,
    );
    let origin = origin.to_str().unwrap();
    let (history, report) = {
        let run = keyscope(
            dir.path(),
            &[
                "scan",
                "--isolated",
                "--format",
                "json",
                "--history",
                origin,
            ],
        );
        let report: Value = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
        (run, report)
    };
    assert_eq!(history.code, 0, "{}", history.stdout);
    assert_eq!(report["findings"], serde_json::json!([]));
    let (run, report) = sweep(dir.path(), &[origin]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(report["findings"], serde_json::json!([]));
}
