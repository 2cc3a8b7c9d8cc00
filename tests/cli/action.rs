//! The GitHub Action's logic, `scripts/github-action.sh`, run as GitHub would run it: a temp
//! repository built here, a fake event payload and fake `GITHUB_*` files, the built keyscope on
//! PATH. Each test checks the range chosen, the SARIF file, the job summary, the annotations, the
//! step outputs, the exit code, and that the key never reaches any of them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::{git, root};

/// A synthetic Google API key: `AIza` and 35 characters from a fixed linear congruential
/// generator, made at run time so no key-shaped string sits in the source.
pub fn synthetic_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state: u64 = 0x5eed_cafe_f00d_1234;
    let body: String = (0..35)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(ALPHABET[(state >> 58) as usize])
        })
        .collect();
    format!("AIza{body}")
}

/// The directory of the built keyscope binary, to put first on PATH.
pub fn keyscope_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_keyscope"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// PATH with the built keyscope first.
pub fn path_with_keyscope() -> std::ffi::OsString {
    let mut dirs = vec![keyscope_dir()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

/// A new repository on branch `main`.
pub fn init_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "commit.gpgsign", "false"]);
}

/// Writes `files` (path, content), stages everything and commits; returns the commit id.
pub fn commit(dir: &Path, message: &str, files: &[(&str, &str)]) -> String {
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// `src/config.py` with the key on line 3.
pub fn leaky_config() -> String {
    format!(
        "import os\n\nGOOGLE_API_KEY = \"{}\"\nTIMEOUT = 30\n",
        synthetic_key()
    )
}

/// A repository with three commits on `main`: a base, a clean change, and a commit adding
/// `src/config.py` with the key on line 3.
struct History {
    dir: tempfile::TempDir,
    base: String,
    clean: String,
    leak: String,
}

fn history() -> History {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    init_repo(repo);
    let base = commit(
        repo,
        "base",
        &[
            ("README.md", "# demo\n"),
            ("src/app.py", "print('hello')\n"),
        ],
    );
    let clean = commit(
        repo,
        "clean change",
        &[("src/app.py", "print('hello, world')\n")],
    );
    let leak = commit(
        repo,
        "add configuration",
        &[("src/config.py", &leaky_config())],
    );
    History {
        dir,
        base,
        clean,
        leak,
    }
}

/// What one run of the action script left behind.
struct ActionRun {
    code: i32,
    stdout: String,
    stderr: String,
    summary: String,
    outputs: String,
    sarif_path: PathBuf,
    _files: tempfile::TempDir,
}

impl ActionRun {
    fn output(&self, name: &str) -> Option<&str> {
        self.outputs
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
    }

    fn sarif(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.sarif_path).unwrap_or_else(|e| {
            panic!(
                "no SARIF file at {}: {e}\n{}",
                self.sarif_path.display(),
                self.describe()
            )
        });
        serde_json::from_str(&text).unwrap()
    }

    fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}\n--- summary\n{}\n--- outputs\n{}",
            self.code, self.stdout, self.stderr, self.summary, self.outputs
        )
    }

    /// Nothing the action wrote holds the key.
    fn assert_no_key(&self) {
        let key = synthetic_key();
        let sarif = std::fs::read_to_string(&self.sarif_path).unwrap_or_default();
        for (channel, text) in [
            ("stdout", &self.stdout),
            ("stderr", &self.stderr),
            ("summary", &self.summary),
            ("outputs", &self.outputs),
            ("sarif", &sarif),
        ] {
            assert!(!text.contains(&key), "the key leaked into {channel}");
            // Nor the part of it after the public prefix.
            assert!(
                !text.contains(&key[4..20]),
                "part of the key leaked into {channel}"
            );
        }
    }
}

/// Runs `scripts/github-action.sh` in `repo` for `event` with `payload`, plus `env`.
fn run_action(
    repo: &Path,
    event: &str,
    payload: &serde_json::Value,
    env: &[(&str, &str)],
) -> ActionRun {
    let files = tempfile::tempdir().unwrap();
    let event_path = files.path().join("event.json");
    std::fs::write(&event_path, serde_json::to_vec_pretty(payload).unwrap()).unwrap();
    let output_path = files.path().join("github_output");
    let summary_path = files.path().join("step_summary.md");
    let sarif_path = files.path().join("reports/keyscope.sarif");
    let mut command = Command::new("bash");
    command
        .arg(root().join("scripts/github-action.sh"))
        .current_dir(repo)
        .env("PATH", path_with_keyscope())
        .env("NO_COLOR", "1")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", event)
        .env("GITHUB_EVENT_PATH", &event_path)
        .env("GITHUB_OUTPUT", &output_path)
        .env("GITHUB_STEP_SUMMARY", &summary_path)
        .env("INPUT_SARIF_FILE", &sarif_path)
        .env_remove("INPUT_FORMAT")
        .env_remove("INPUT_ARGS")
        .env_remove("INPUT_FAIL_ON_FINDINGS")
        .env_remove("KEYSCOPE")
        .env_remove("KEYSCOPE_CONFIG");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    ActionRun {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        summary: std::fs::read_to_string(&summary_path).unwrap_or_default(),
        outputs: std::fs::read_to_string(&output_path).unwrap_or_default(),
        sarif_path,
        _files: files,
    }
}

fn pull_request(base: &str, head: &str) -> serde_json::Value {
    json!({
        "action": "synchronize",
        "number": 7,
        "pull_request": {
            "number": 7,
            "base": { "ref": "main", "sha": base },
            "head": { "ref": "feature", "sha": head },
        },
        "repository": { "default_branch": "main" },
    })
}

/// The checks every run that found the leak of `history()` must pass.
fn assert_reports_the_leak(run: &ActionRun, commit: Option<&str>) {
    let context = run.describe();
    assert_eq!(run.code, 1, "{context}");
    assert_eq!(run.output("findings"), Some("1"), "{context}");
    assert_eq!(run.output("exit-code"), Some("1"), "{context}");
    assert_eq!(
        run.output("sarif-file"),
        Some(run.sarif_path.to_str().unwrap()),
        "{context}"
    );

    let sarif = run.sarif();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{context}");
    assert_eq!(results[0]["ruleId"], "google-api-key");
    let location = &results[0]["locations"][0]["physicalLocation"];
    assert!(
        location["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("src/config.py"),
        "{location}"
    );
    assert_eq!(location["region"]["startLine"], 3);

    let annotation = run
        .stdout
        .lines()
        .find(|line| line.starts_with("::error file="))
        .unwrap_or_else(|| panic!("no annotation\n{context}"));
    assert!(
        annotation.starts_with("::error file=src/config.py,line=3,col="),
        "{annotation}"
    );
    assert!(annotation.contains(",title=keyscope%3A "), "{annotation}");
    assert!(annotation.contains("::Google"), "{annotation}");

    assert!(
        run.summary.contains("## keyscope: 1 leaked key"),
        "{context}"
    );
    let row = run
        .summary
        .lines()
        .find(|line| line.contains("`src/config.py:3`"))
        .unwrap_or_else(|| panic!("no table row for the finding\n{context}"));
    assert!(
        row.starts_with("| ") && row.contains("`google-api-key`"),
        "{row}"
    );
    assert!(
        row.contains("`AIza"),
        "the redacted key is in the row: {row}"
    );
    if let Some(commit) = commit {
        assert!(row.contains(&format!("`{}`", &commit[..12])), "{row}");
    }
    run.assert_no_key();
}

fn assert_scanned_range(run: &ActionRun, base: &str, head: &str) {
    let range = format!("{base}..{head}");
    assert!(
        run.stdout
            .contains(&format!("keyscope scan --range {range}")),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.output("range"),
        Some(range.as_str()),
        "{}",
        run.describe()
    );
}

#[test]
fn a_pull_request_that_adds_a_key_fails_with_annotation_summary_and_sarif() {
    let h = history();
    let run = run_action(
        h.dir.path(),
        "pull_request",
        &pull_request(&h.base, &h.leak),
        &[],
    );
    assert_scanned_range(&run, &h.base, &h.leak);
    assert!(
        run.stdout.contains("scanning pull request #7"),
        "{}",
        run.describe()
    );
    assert_reports_the_leak(&run, Some(&h.leak));
}

#[test]
fn a_clean_pull_request_passes() {
    let h = history();
    let run = run_action(
        h.dir.path(),
        "pull_request_target",
        &pull_request(&h.base, &h.clean),
        &[],
    );
    let context = run.describe();
    assert_scanned_range(&run, &h.base, &h.clean);
    assert_eq!(run.code, 0, "{context}");
    assert_eq!(run.output("findings"), Some("0"), "{context}");
    assert_eq!(run.output("exit-code"), Some("0"), "{context}");
    assert!(!run.stdout.contains("::error"), "{context}");
    assert!(
        run.summary.contains("## keyscope: no leaked keys"),
        "{context}"
    );
    assert_eq!(
        run.sarif()["runs"][0]["results"].as_array().unwrap().len(),
        0
    );
}

#[test]
fn a_push_scans_before_to_after() {
    let h = history();
    let payload = json!({
        "ref": "refs/heads/main",
        "before": h.clean,
        "after": h.leak,
        "created": false,
        "deleted": false,
        "repository": { "default_branch": "main" },
    });
    let run = run_action(h.dir.path(), "push", &payload, &[]);
    assert_scanned_range(&run, &h.clean, &h.leak);
    assert_reports_the_leak(&run, Some(&h.leak));
}

#[test]
fn a_new_branch_push_scans_from_its_merge_base_with_the_default_branch() {
    let h = history();
    let repo = h.dir.path();
    // `main` stays at the clean commit; the leak is on a new branch `feature`.
    git(repo, &["branch", "feature", &h.leak]);
    git(repo, &["reset", "-q", "--hard", &h.clean]);
    git(repo, &["checkout", "-q", "feature"]);
    let payload = json!({
        "ref": "refs/heads/feature",
        "before": "0000000000000000000000000000000000000000",
        "after": h.leak,
        "created": true,
        "deleted": false,
        "repository": { "default_branch": "main" },
    });
    let run = run_action(repo, "push", &payload, &[]);
    assert_scanned_range(&run, &h.clean, &h.leak);
    assert!(
        run.stdout.contains("new branch refs/heads/feature"),
        "{}",
        run.describe()
    );
    assert_reports_the_leak(&run, Some(&h.leak));
}

#[test]
fn a_force_push_whose_old_tip_is_gone_scans_from_the_merge_base() {
    let h = history();
    let repo = h.dir.path();
    git(repo, &["branch", "feature", &h.leak]);
    git(repo, &["reset", "-q", "--hard", &h.clean]);
    let payload = json!({
        "ref": "refs/heads/feature",
        "before": "5eed000000000000000000000000000000c0ffee",
        "after": h.leak,
        "forced": true,
        "created": false,
        "deleted": false,
        "repository": { "default_branch": "main" },
    });
    let run = run_action(repo, "push", &payload, &[]);
    assert!(
        run.stdout.contains("note: force push"),
        "{}",
        run.describe()
    );
    assert_scanned_range(&run, &h.clean, &h.leak);
    assert_reports_the_leak(&run, Some(&h.leak));
}

#[test]
fn a_push_whose_old_tip_is_missing_without_force_fails_with_the_fetch_hint() {
    let h = history();
    let payload = json!({
        "ref": "refs/heads/main",
        "before": "5eed000000000000000000000000000000c0ffee",
        "after": h.leak,
        "forced": false,
        "repository": { "default_branch": "main" },
    });
    let run = run_action(h.dir.path(), "push", &payload, &[]);
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(run.stdout.contains("fetch-depth: 0"), "{}", run.describe());
    assert!(run.stdout.contains("5eed0000"), "{}", run.describe());
}

#[test]
fn a_push_that_deletes_a_branch_scans_nothing_and_passes() {
    let h = history();
    let payload = json!({
        "ref": "refs/heads/old",
        "before": h.leak,
        "after": "0000000000000000000000000000000000000000",
        "deleted": true,
        "repository": { "default_branch": "main" },
    });
    let run = run_action(h.dir.path(), "push", &payload, &[]);
    assert_eq!(run.code, 0, "{}", run.describe());
    assert_eq!(run.output("findings"), Some("0"), "{}", run.describe());
    assert!(run.stdout.contains("nothing to scan"), "{}", run.describe());
}

#[test]
fn a_new_branch_without_the_default_branch_falls_back_to_history_with_a_note() {
    let h = history();
    let payload = json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": h.leak,
        "created": true,
        "deleted": false,
        "repository": { "default_branch": "trunk" },
    });
    let run = run_action(h.dir.path(), "push", &payload, &[]);
    assert!(
        run.stdout.contains("keyscope scan --history"),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.contains("note: new branch"),
        "{}",
        run.describe()
    );
    assert_eq!(run.output("range"), Some(""), "{}", run.describe());
    assert_reports_the_leak(&run, Some(&h.leak));
}

#[test]
fn a_merge_group_scans_base_to_head() {
    let h = history();
    let payload = json!({
        "action": "checks_requested",
        "merge_group": {
            "base_sha": h.base,
            "head_sha": h.leak,
            "head_ref": "refs/heads/gh-readonly-queue/main/pr-7",
            "base_ref": "refs/heads/main",
        },
        "repository": { "default_branch": "main" },
    });
    let run = run_action(h.dir.path(), "merge_group", &payload, &[]);
    assert_scanned_range(&run, &h.base, &h.leak);
    assert_reports_the_leak(&run, Some(&h.leak));
}

#[test]
fn a_shallow_checkout_without_the_base_fails_and_says_to_fetch_history() {
    let h = history();
    let clones = tempfile::tempdir().unwrap();
    let url = format!("file://{}", h.dir.path().display());
    git(
        clones.path(),
        &["clone", "-q", "--depth", "1", &url, "shallow"],
    );
    let shallow = clones.path().join("shallow");
    assert_eq!(git(&shallow, &["rev-parse", "HEAD"]), h.leak);
    let run = run_action(
        &shallow,
        "pull_request",
        &pull_request(&h.base, &h.leak),
        &[],
    );
    let context = run.describe();
    assert_eq!(run.code, 2, "{context}");
    assert!(run.stdout.contains("fetch-depth: 0"), "{context}");
    assert!(run.stdout.contains("::error title=keyscope::"), "{context}");
    assert!(
        run.stdout.contains(&h.base),
        "names the missing base: {context}"
    );
    assert!(run.summary.contains("fetch-depth: 0"), "{context}");
    assert_eq!(run.output("exit-code"), Some("2"), "{context}");
    run.assert_no_key();
}

#[test]
fn an_event_without_commits_scans_the_working_tree() {
    let h = history();
    let run = run_action(
        h.dir.path(),
        "workflow_dispatch",
        &json!({ "inputs": {} }),
        &[],
    );
    assert!(
        run.stdout
            .contains("scanning working tree (event `workflow_dispatch`): keyscope scan ."),
        "{}",
        run.describe()
    );
    assert_eq!(run.output("range"), Some(""), "{}", run.describe());
    assert_reports_the_leak(&run, None);
}

#[test]
fn fail_on_findings_false_reports_but_passes() {
    let h = history();
    let run = run_action(
        h.dir.path(),
        "schedule",
        &json!({ "schedule": "0 0 * * *" }),
        &[
            ("INPUT_FAIL_ON_FINDINGS", "false"),
            ("INPUT_FORMAT", "none"),
        ],
    );
    let context = run.describe();
    assert_eq!(run.code, 0, "{context}");
    assert_eq!(run.output("findings"), Some("1"), "{context}");
    assert_eq!(run.output("exit-code"), Some("1"), "{context}");
    assert!(
        run.stdout.contains("::error file=src/config.py,line=3,"),
        "{context}"
    );
    run.assert_no_key();
}

#[test]
fn annotation_properties_escape_commas_colons_and_percents() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    init_repo(repo);
    commit(repo, "odd name", &[("conf/a,b:c%d.env", &leaky_config())]);
    let run = run_action(repo, "workflow_dispatch", &json!({}), &[]);
    assert!(
        run.stdout
            .contains("::error file=conf/a%2Cb%3Ac%25d.env,line=3,"),
        "{}",
        run.describe()
    );
    run.assert_no_key();
}

#[test]
fn a_keyscope_error_fails_the_step_even_without_fail_on_findings() {
    let h = history();
    let run = run_action(
        h.dir.path(),
        "workflow_dispatch",
        &json!({}),
        &[
            ("INPUT_FAIL_ON_FINDINGS", "false"),
            ("INPUT_ARGS", "--rules does-not-exist.toml"),
        ],
    );
    let context = run.describe();
    assert_eq!(run.code, 2, "{context}");
    assert_eq!(run.output("exit-code"), Some("2"), "{context}");
    assert!(run.stdout.contains("::error title=keyscope::"), "{context}");
}

#[test]
fn the_synthetic_key_is_one_keyscope_finds() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.py"), leaky_config()).unwrap();
    let run = crate::keyscope(dir.path(), &["scan", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["findings"][0]["rule_id"], "google-api-key");
    assert_eq!(report["findings"][0]["line"], 3);
}

/// The JSON report the run left at its `report-file` output.
fn report_of(run: &ActionRun) -> serde_json::Value {
    let path = run
        .output("report-file")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| panic!("no report-file output\n{}", run.describe()));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Issue 18: on `workflow_dispatch` and `schedule` the working tree is scanned, and a SARIF file
/// written into it was scanned by the next run. A report inside the tree is now excluded.
#[test]
fn issue_18_a_rerun_does_not_scan_the_reports_of_the_run_before() {
    let h = history();
    let env = [("INPUT_SARIF_FILE", "keyscope.sarif")];
    let first = run_action(h.dir.path(), "workflow_dispatch", &json!({}), &env);
    assert_eq!(first.code, 1, "{}", first.describe());
    assert!(h.dir.path().join("keyscope.sarif").is_file());
    let second = run_action(h.dir.path(), "workflow_dispatch", &json!({}), &env);
    let context = second.describe();
    assert_eq!(second.output("findings"), Some("1"), "{context}");
    let (before, after) = (report_of(&first), report_of(&second));
    assert_eq!(
        before["summary"]["files_scanned"], after["summary"]["files_scanned"],
        "the second run scanned more files: {context}"
    );
    assert!(
        !after.to_string().contains("keyscope.sarif"),
        "the SARIF file was scanned: {context}"
    );
}

/// Issue 18: by default the reports go to `$RUNNER_TEMP`, outside the scanned tree.
#[test]
fn issue_18_reports_go_to_runner_temp_and_leave_the_workspace_clean() {
    let h = history();
    let temp = tempfile::tempdir().unwrap();
    let run = run_action(
        h.dir.path(),
        "schedule",
        &json!({}),
        &[
            ("INPUT_SARIF_FILE", ""),
            ("RUNNER_TEMP", temp.path().to_str().unwrap()),
        ],
    );
    let context = run.describe();
    assert_eq!(run.code, 1, "{context}");
    let sarif = run.output("sarif-file").unwrap();
    assert!(
        Path::new(sarif).starts_with(temp.path()) && Path::new(sarif).is_file(),
        "{context}"
    );
    let report = run.output("report-file").unwrap();
    assert!(Path::new(report).starts_with(temp.path()), "{context}");
    assert_eq!(
        git(h.dir.path(), &["status", "--porcelain"]),
        "",
        "{context}"
    );
}

/// Issue 18: a run that fails before writing SARIF (a shallow checkout) named the missing file
/// in `sarif-file`, and the documented upload step failed with "Path does not exist". The output
/// is now empty, so the upload is skipped, and the summary says so.
#[test]
fn issue_18_a_run_that_fails_before_its_sarif_leaves_the_output_empty() {
    let h = history();
    let clones = tempfile::tempdir().unwrap();
    let url = format!("file://{}", h.dir.path().display());
    git(
        clones.path(),
        &["clone", "-q", "--depth", "1", &url, "shallow"],
    );
    let run = run_action(
        &clones.path().join("shallow"),
        "pull_request",
        &pull_request(&h.base, &h.leak),
        &[],
    );
    let context = run.describe();
    assert_eq!(run.code, 2, "{context}");
    assert_eq!(run.output("sarif-file"), Some(""), "{context}");
    assert_eq!(run.output("report-file"), Some(""), "{context}");
    assert!(!run.sarif_path.exists(), "{context}");
    assert!(
        run.summary.contains("No SARIF report was written"),
        "{context}"
    );
}

/// Issue 18: flat-key usage findings were counted as leaked keys in the job summary.
#[test]
fn issue_18_usage_findings_are_counted_apart_from_leaked_keys() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    init_repo(repo);
    commit(
        repo,
        "app",
        &[
            ("src/config.py", &leaky_config()),
            (
                "src/client.py",
                "import httpx\nfrom openai import OpenAI\n\n\
                 client = OpenAI(http_client=httpx.Client(verify=False))\n",
            ),
        ],
    );
    let run = run_action(repo, "workflow_dispatch", &json!({}), &[]);
    let context = run.describe();
    let report = report_of(&run);
    let usage = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] != "secret")
        .count();
    assert!(usage >= 1, "the fixture has a usage finding: {context}");
    assert_eq!(run.output("keys"), Some("1"), "{context}");
    assert_eq!(
        run.output("usage-findings"),
        Some(usage.to_string().as_str()),
        "{context}"
    );
    let noun = if usage == 1 { "finding" } else { "findings" };
    assert!(
        run.summary.contains(&format!(
            "## keyscope: 1 leaked key, {usage} usage {noun}\n"
        )),
        "{context}"
    );
}

/// Issue 18: a `.env` that `.gitignore` excludes was skipped without a word.
#[test]
fn issue_18_a_gitignored_env_is_named_in_the_summary_with_how_to_scan_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    init_repo(repo);
    commit(
        repo,
        "base",
        &[(".gitignore", ".env\n"), ("app.py", "x = 1\n")],
    );
    std::fs::write(repo.join(".env"), leaky_config()).unwrap();
    let run = run_action(repo, "workflow_dispatch", &json!({}), &[]);
    let context = run.describe();
    assert_eq!(run.code, 0, "{context}");
    assert!(run.summary.contains("1 path was not scanned"), "{context}");
    assert!(run.summary.contains("`.env`"), "{context}");
    assert!(run.summary.contains("--no-ignore"), "{context}");

    let included = run_action(
        repo,
        "workflow_dispatch",
        &json!({}),
        &[("INPUT_ARGS", "--no-ignore")],
    );
    assert_eq!(
        included.output("keys"),
        Some("1"),
        "{}",
        included.describe()
    );
    included.assert_no_key();
}

/// `count` distinct synthetic Google keys, one assignment a line.
fn many_keys(count: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state: u64 = 0x0dd5_eed5_1234_5678;
    let mut text = String::new();
    for i in 0..count {
        let body: String = (0..35)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                char::from(ALPHABET[(state >> 58) as usize])
            })
            .collect();
        text.push_str(&format!("GOOGLE_API_KEY_{i} = \"AIza{body}\"\n"));
    }
    text
}

/// Issue 18: 26,000 keys gave 25,997 annotations (GitHub shows 10), a SARIF run over code
/// scanning's 25,000-result limit and a 1.8 MB job summary (GitHub refuses over 1 MiB). Each is
/// capped with a line saying how much is not shown; the counts and the JSON report stay whole.
#[test]
fn issue_18_annotations_sarif_and_summary_are_capped_but_the_counts_are_whole() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    init_repo(repo);
    std::fs::write(repo.join("keys.py"), many_keys(25_100)).unwrap();
    let run = run_action(
        repo,
        "workflow_dispatch",
        &json!({}),
        &[("INPUT_FORMAT", "none")],
    );
    let context = format!(
        "exit {}\n{}",
        run.code,
        &run.stdout[..run.stdout.len().min(4000)]
    );
    assert_eq!(run.code, 1, "{context}");
    let total = report_of(&run)["findings"].as_array().unwrap().len();
    assert!(total > 25_000, "{total} findings: {context}");
    assert_eq!(
        run.output("findings"),
        Some(total.to_string().as_str()),
        "{context}"
    );

    let annotations = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("::error file="))
        .count();
    assert_eq!(annotations, 10, "{context}");
    let more = run
        .stdout
        .lines()
        .find(|l| l.starts_with("::warning title=keyscope::"))
        .unwrap_or_else(|| panic!("no 'more not shown' warning: {context}"));
    assert!(
        more.contains(&format!(
            "{} more findings not shown",
            thousands(total - 10)
        )),
        "{more}"
    );

    let sarif = run.sarif();
    assert_eq!(
        sarif["runs"][0]["results"].as_array().unwrap().len(),
        25_000
    );
    let notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"].to_string();
    assert!(
        notes.contains(&format!("{} more results not shown", total - 25_000)),
        "{notes}"
    );

    assert!(
        run.summary.len() < 1024 * 1024,
        "{} bytes",
        run.summary.len()
    );
    assert!(
        run.summary.contains("more findings not shown here"),
        "{}",
        &run.summary[run.summary.len().saturating_sub(2000)..]
    );
    assert!(
        run.summary
            .starts_with(&format!("## keyscope: {} leaked keys", thousands(total))),
        "{}",
        &run.summary[..200]
    );
}

/// `12345` as `12,345`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The container Action's entrypoint (docker/action.yml) outside a container: GitHub passes
/// `INPUT_SARIF-FILE`-style names there, and the reports stay in the workspace (`.keyscope/`,
/// the container does not share `$RUNNER_TEMP`), excluded from the scan and named relative to
/// it so the next step finds them.
#[test]
fn issue_18_the_container_entrypoint_maps_inputs_and_keeps_reports_out_of_the_scan() {
    let h = history();
    let home = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let output_path = files.path().join(format!("{name}-output"));
        let summary_path = files.path().join(format!("{name}-summary.md"));
        let output = Command::new("bash")
            .arg(root().join("docker/entrypoint.sh"))
            .current_dir(h.dir.path())
            .env("HOME", home.path())
            .env("PATH", path_with_keyscope())
            .env("NO_COLOR", "1")
            .env("GITHUB_WORKSPACE", h.dir.path())
            .env("GITHUB_EVENT_NAME", "workflow_dispatch")
            .env("GITHUB_EVENT_PATH", files.path().join("none.json"))
            .env("GITHUB_OUTPUT", &output_path)
            .env("GITHUB_STEP_SUMMARY", &summary_path)
            .env("KEYSCOPE_OUT_DIR", ".keyscope")
            .env(
                "KEYSCOPE_ACTION_SCRIPT",
                root().join("scripts/github-action.sh"),
            )
            .env("INPUT_FORMAT", "none")
            .env("INPUT_FAIL-ON-FINDINGS", "false")
            .env_remove("INPUT_SARIF_FILE")
            .env_remove("INPUT_FAIL_ON_FINDINGS")
            .env_remove("RUNNER_TEMP")
            .env_remove("KEYSCOPE_CONFIG")
            .output()
            .unwrap();
        let outputs = std::fs::read_to_string(output_path).unwrap_or_default();
        (output.status.code().unwrap(), outputs)
    };
    let (code, outputs) = run("first");
    assert_eq!(code, 0, "fail-on-findings false came through: {outputs}");
    assert!(outputs.contains("findings=1\n"), "{outputs}");
    assert!(
        outputs.contains("sarif-file=.keyscope/keyscope.sarif\n"),
        "{outputs}"
    );
    assert!(h.dir.path().join(".keyscope/keyscope.sarif").is_file());
    let files_scanned = || {
        let text = std::fs::read_to_string(h.dir.path().join(".keyscope/keyscope.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["summary"]["files_scanned"]
            .clone()
    };
    let before = files_scanned();
    let (_, again) = run("second");
    assert!(again.contains("findings=1\n"), "{again}");
    assert_eq!(
        files_scanned(),
        before,
        "the reports of the first run were scanned"
    );
    let git_config = std::fs::read_to_string(home.path().join(".gitconfig")).unwrap();
    assert!(git_config.contains("safe"), "{git_config}");
}
