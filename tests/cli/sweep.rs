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

/// Six repositories, two keys each in three of them, swept whole and in three shards.
fn swept_whole_and_in_shards(dir: &Path, format: &str) -> (Run, Vec<String>) {
    let mut names = Vec::new();
    for i in 0..6 {
        let name = format!("r{i}");
        // Two keys, each in three repositories: flat keys across shards.
        leaky_origin(dir, &name, i % 2);
        names.push(name);
    }
    std::fs::write(dir.join("repos.txt"), names.join("\n") + "\n# done\n").unwrap();
    let whole = keyscope(
        dir,
        &["sweep", "--isolated", "-f", format, "--list", "repos.txt"],
    );
    assert_eq!(whole.code, 1, "{}", whole.stderr);
    let mut shards = Vec::new();
    for k in 0..3 {
        let out = format!("shard-{k}.json");
        let shard = format!("{k}/3");
        let (run, _) = sweep(dir, &["--list", "repos.txt", "--shard", &shard, "-o", &out]);
        assert!(run.code <= 1, "{}", run.stderr);
        shards.push(out);
    }
    (whole, shards)
}

fn merge(dir: &Path, format: &str, reports: &[String]) -> Run {
    let mut args = vec!["merge", "--isolated", "-f", format];
    args.extend(reports.iter().map(String::as_str));
    keyscope(dir, &args)
}

#[test]
fn shards_merged_report_what_one_process_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, shards) = swept_whole_and_in_shards(dir.path(), "json");
    let whole = json(&whole);
    let mut args = vec!["merge", "--isolated", "-o", "org.json"];
    args.extend(shards.iter().map(String::as_str));
    let run = keyscope(dir.path(), &args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let merged: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("org.json")).unwrap())
            .unwrap();
    assert_eq!(summary_of(&merged), summary_of(&whole));
    // Not only which findings: every fact of every finding, in the same order.
    assert_eq!(merged["findings"], whole["findings"]);
    assert_eq!(merged["summary"]["repositories"], 6);
    assert_eq!(merged["summary"]["reports"], 3);
    assert!(
        summary_of(&merged)
            .iter()
            .any(|f| f.0 == "flat-key/shared-across-repos" && f.2.len() == 3)
    );
    // A merged report merges again, as one report.
    let run = merge(dir.path(), "json", &["org.json".to_owned()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(json(&run)["findings"], whole["findings"]);
}

/// Issue #17: `merge` writes every format `sweep` writes, and what it writes is what one
/// sweep of every repository writes.
#[test]
fn shards_merged_in_sarif_and_for_people_read_as_one_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, shards) = swept_whole_and_in_shards(dir.path(), "sarif");
    let run = merge(dir.path(), "sarif", &shards);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let sarif = |run: &Run| -> Value { json(run)["runs"][0].clone() };
    let (merged, whole) = (sarif(&run), sarif(&whole));
    assert_eq!(merged["results"], whole["results"]);
    assert_eq!(merged["tool"], whole["tool"]);
    assert_eq!(merged["properties"]["sweep"]["reports"], 3);
    let people = keyscope(dir.path(), &["sweep", "--isolated", "--list", "repos.txt"]);
    let run = merge(dir.path(), "human", &shards);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let findings = |text: &str| text[..text.find("\nscanned ").unwrap()].to_owned();
    assert_eq!(findings(&run.stdout), findings(&people.stdout));
    assert!(
        run.stdout
            .contains("merged 3 reports: swept 6 repositories (6 complete, 0 partial, 0 failed)"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(&key(0)) && !run.stdout.contains(&key(1)));
}

/// Issue #17: `merge` reads keyscope's own JSON reports of sweeps, of this format version,
/// and refuses anything else with exit 2 and the reason.
#[test]
fn merge_refuses_what_is_not_a_sweeps_report() {
    let dir = tempfile::tempdir().unwrap();
    leaky_origin(dir.path(), "one", 1);
    let (run, report) = sweep(dir.path(), &["one", "-o", "one.json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(report, Value::Null);
    let text = std::fs::read_to_string(dir.path().join("one.json")).unwrap();
    let write = |name: &str, content: &str| std::fs::write(dir.path().join(name), content).unwrap();
    write("other.json", r#"{"version": 1, "runs": []}"#);
    write(
        "next.json",
        &text.replacen("\"version\": 1", "\"version\": 2", 1),
    );
    write("broken.json", &text[..text.len() / 2]);
    let scanned = keyscope(
        dir.path(),
        &[
            "scan",
            "--isolated",
            "--history",
            "-f",
            "json",
            "-o",
            "scan.json",
            "one",
        ],
    );
    assert_eq!(scanned.code, 1, "{}", scanned.stderr);
    for (file, reason) in [
        ("other.json", "not a keyscope report"),
        ("next.json", "format version `2`"),
        ("broken.json", "not JSON"),
        ("scan.json", "the report of a scan, not of a sweep"),
        ("missing.json", "cannot read the report `missing.json`"),
    ] {
        let run = merge(
            dir.path(),
            "json",
            &["one.json".to_owned(), file.to_owned()],
        );
        assert_eq!(run.code, 2, "{file}: {}", run.stderr);
        assert!(run.stderr.contains(reason), "{file}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{file}: {}", run.stdout);
    }
    // Keyed and salted fingerprints do not match, so they are not merged.
    let keyed = std::process::Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args([
            "sweep",
            "--isolated",
            "-f",
            "json",
            "-o",
            "keyed.json",
            "one",
        ])
        .current_dir(dir.path())
        .env("KEYSCOPE_FINGERPRINT_KEY", "an organisation secret")
        .output()
        .unwrap();
    assert_eq!(keyed.status.code(), Some(1));
    let run = merge(
        dir.path(),
        "json",
        &["one.json".to_owned(), "keyed.json".to_owned()],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("fingerprints were made differently"),
        "{}",
        run.stderr
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

/// A repository of `commits` commits, each adding `files` files of generated text (distinct
/// per `seed`, so that no blob is shared with another repository), built with
/// `git fast-import`; a key is added half-way and removed in the next commit.
fn generated_repository(dir: &Path, seed: u64, commits: usize, files: usize) {
    use std::io::Write as _;
    std::fs::create_dir(dir).unwrap();
    git(dir, &["init", "-q"]);
    let words = [
        "alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "paper", "metal", "glass",
        "north", "south", "ember", "frost", "lumen", "quill",
    ];
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let mut stream = Vec::new();
    let data = |stream: &mut Vec<u8>, bytes: &[u8]| {
        writeln!(stream, "data {}", bytes.len()).unwrap();
        stream.extend_from_slice(bytes);
        stream.push(b'\n');
    };
    for c in 0..commits {
        writeln!(stream, "commit refs/heads/main\nmark :{}", c + 1).unwrap();
        writeln!(
            stream,
            "committer Ada <ada@example.com> {} +0000",
            1_700_000_000 + c * 60
        )
        .unwrap();
        data(&mut stream, format!("change {c}").as_bytes());
        if c > 0 {
            writeln!(stream, "from :{c}").unwrap();
        }
        for f in 0..files {
            let text: String = (0..60)
                .map(|_| {
                    let line: Vec<&str> = (0..10).map(|_| words[next() % words.len()]).collect();
                    format!("{} = {}\n", line.join("_"), next())
                })
                .collect();
            writeln!(stream, "M 100644 inline src/m{c}/f{f}.py").unwrap();
            data(&mut stream, text.as_bytes());
        }
        if c == commits / 2 {
            writeln!(stream, "M 100644 inline config.env").unwrap();
            data(&mut stream, config_line(100 + seed).as_bytes());
        } else if c == commits / 2 + 1 {
            writeln!(stream, "D config.env").unwrap();
        }
    }
    let mut child = crate::git_command(dir)
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success());
}

/// The complete lines of a coverage log that a killed sweep may have left.
fn logged(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The identities that a state directory records as swept.
fn recorded(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.join("repos"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .map(|p| {
                    let state: Value =
                        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
                    state["identity"].as_str().unwrap().to_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The findings of a report without `from_state`, which says which sweep found them first.
fn found(report: &Value) -> Value {
    let mut findings = report["findings"].clone();
    for f in findings.as_array_mut().unwrap() {
        f.as_object_mut().unwrap().remove("from_state");
    }
    findings
}

/// Issue #17: a `--state` sweep killed (SIGKILL) in the middle of its repositories leaves a
/// state that records only repositories it swept whole; the next sweep resumes (reads the
/// recorded ones from the state, the others whole) and reports what an uninterrupted sweep
/// reports. The kill comes half a repository's sweep after the coverage log shows the first
/// one done, and the test checks that the sweep had not ended by then.
#[test]
fn a_sweep_killed_midway_resumes_and_reports_what_an_uninterrupted_one_does() {
    const REPOS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..REPOS).map(|i| format!("r{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        generated_repository(&dir.path().join(name), i as u64, 150, 12);
    }
    let mut args = vec!["sweep", "--isolated", "-f", "json"];
    args.extend(names.iter().map(String::as_str));
    let clock = std::time::Instant::now();
    let (run, uninterrupted) = sweep(dir.path(), &args[4..]);
    let per_repo = clock.elapsed() / REPOS as u32;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        uninterrupted["findings"].as_array().unwrap().len(),
        REPOS,
        "one key in each repository"
    );

    args.extend([
        "--state",
        "state",
        "--coverage",
        "cov.jsonl",
        "-o",
        "killed.json",
    ]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(&args)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = dir.path().join("cov.jsonl");
    let started = std::time::Instant::now();
    while logged(&log).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended before a repository did"
        );
        assert!(
            started.elapsed().as_secs() < 300,
            "no repository was swept in 5 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Into the middle of the next repository's sweep.
    std::thread::sleep(per_repo / 2);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed, not exited: {status:?}");
    let done: Vec<String> = logged(&log)
        .iter()
        .map(|l| l["repository"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !done.is_empty() && done.len() < REPOS,
        "killed in the middle, not after the last repository: {done:?}"
    );
    assert!(!dir.path().join("killed.json").exists());
    // Recorded: every repository the log says is done, and at most the one it was on (killed
    // after its state was renamed into place, before its log line).
    let kept = recorded(&dir.path().join("state"));
    let allowed = &names[..(done.len() + 1).min(REPOS)];
    assert!(done.iter().all(|d| kept.contains(d)), "{done:?} {kept:?}");
    assert!(
        kept.iter().all(|k| allowed.contains(k)),
        "{kept:?} beyond {allowed:?}"
    );

    args.truncate(args.len() - 2);
    let (run, resumed) = sweep(dir.path(), &args[4..]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let paths = |r: &Value| -> Vec<String> {
        let findings = r["findings"].as_array().unwrap();
        findings.iter().map(|f| f["path"].to_string()).collect()
    };
    assert_eq!(paths(&resumed), paths(&uninterrupted));
    assert_eq!(found(&resumed), found(&uninterrupted));
    assert_eq!(resumed["summary"]["complete"], true);
    assert_eq!(resumed["summary"]["repositories_complete"], REPOS as u64);
    // The recorded repositories came from the state; the others were read whole.
    let again = logged(&log);
    let again = &again[again.len() - REPOS..];
    for line in again {
        let name = line["repository"].as_str().unwrap().to_owned();
        let from_state = line["objects_from_state"].as_u64().unwrap();
        assert_eq!(from_state > 0, kept.contains(&name), "{name}: {line}");
        assert_eq!(line["status"], "complete", "{line}");
    }
    for finding in resumed["findings"].as_array().unwrap() {
        let repo = finding["repositories"][0].as_str().unwrap().to_owned();
        assert_eq!(finding["from_state"], kept.contains(&repo), "{finding}");
    }
}

/// Issue #17: a merge renders each finding with its rule (help, SARIF rule), so the rules of
/// a sweep's own rule files must be given to the merge too; without them it refuses.
#[test]
fn merge_needs_the_rules_the_sweeps_had() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acme.toml"), crate::rules_cmd::CUSTOM).unwrap();
    let origin = dir.path().join("one");
    std::fs::create_dir(&origin).unwrap();
    git(&origin, &["init", "-q"]);
    let token = format!("acme_gw_{}", "q8Zr3LwX0pVt7KcN2bYh5MfJ1sDg4TuA");
    commit_file(&origin, "app.py", &format!("T = \"{token}\"\n"), "add", 1);
    let (run, _) = sweep(
        dir.path(),
        &["one", "--rules", "acme.toml", "-o", "one.json"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let run = merge(dir.path(), "json", &["one.json".to_owned()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the rule `acme-gateway-token`, which this merge does not know"),
        "{}",
        run.stderr
    );
    let run = keyscope(
        dir.path(),
        &[
            "merge",
            "--isolated",
            "--rules",
            "acme.toml",
            "-f",
            "sarif",
            "one.json",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        json(&run)["runs"][0]["results"][0]["ruleId"],
        "acme-gateway-token"
    );
    assert!(!run.stdout.contains(&token));
}

/// Issue #17: asked to, a sweep fetches what a blobless clone never fetched, and sweeps it
/// whole; the history is then complete and the key it held is found.
#[test]
fn a_blobless_clone_is_swept_whole_when_asked_to_fetch_what_it_lacks() {
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
    let (run, _) = sweep(dir.path(), &["partial"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--fetch-missing"), "{}", run.stderr);
    let (run, report) = sweep(dir.path(), &["partial", "--fetch-missing"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(report["summary"]["complete"], true);
    assert_eq!(report["findings"][0]["path"], "partial/app.py");
    assert_eq!(report["findings"][0]["origin"]["repository"], "partial");
}

/// Issue #17: the organisation's fingerprint key applies to `scan` as to `sweep`, so that a
/// secret found by a scan of a checkout and by the nightly sweep has one fingerprint.
#[test]
fn a_scan_and_a_sweep_give_a_secret_the_same_keyed_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    leaky_origin(dir.path(), "one", 1);
    std::fs::write(dir.path().join("checkout.env"), config_line(1)).unwrap();
    let with_key = |args: &[&str]| -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyscope"))
            .args(args)
            .current_dir(dir.path())
            .env("KEYSCOPE_FINGERPRINT_KEY", "an organisation secret")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let fingerprint = |r: &Value| r["findings"][0]["fingerprint"].as_str().unwrap().to_owned();
    let swept = with_key(&["sweep", "--isolated", "-f", "json", "one"]);
    let history = with_key(&["scan", "--isolated", "--history", "-f", "json", "one"]);
    let checkout = with_key(&["scan", "--isolated", "-f", "json", "checkout.env"]);
    for report in [&history, &checkout] {
        assert_eq!(report["summary"]["fingerprints"], "hmac-sha256");
        assert_eq!(fingerprint(report), fingerprint(&swept));
    }
    let run = keyscope(
        dir.path(),
        &["scan", "--isolated", "-f", "json", "checkout.env"],
    );
    let salted = json(&run);
    assert_eq!(salted["summary"]["fingerprints"], "salted-sha256");
    assert_ne!(fingerprint(&salted), fingerprint(&checkout));
    std::fs::write(dir.path().join("org.key"), "an organisation secret\n").unwrap();
    let run = keyscope(
        dir.path(),
        &[
            "scan",
            "--isolated",
            "-f",
            "json",
            "--fingerprint-key-file",
            "org.key",
            "checkout.env",
        ],
    );
    assert_eq!(fingerprint(&json(&run)), fingerprint(&checkout));
}
