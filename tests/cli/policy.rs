//! End-to-end tests of `keyscope policy|decide|usage|spend` against the default store.

use std::path::PathBuf;

use crate::{Run, keyscope_with_input, root};

fn store() -> PathBuf {
    root().join("policies")
}

/// Runs `keyscope ARGS` in the repository root with `stdin` as standard input.
fn keyscope(args: &[&str], stdin: &str) -> Run {
    keyscope_with_input(&root(), args, Some(stdin.as_bytes()))
}

fn stdout(output: &Run) -> String {
    output.stdout.clone()
}

fn stderr(output: &Run) -> String {
    output.stderr.clone()
}

fn json(output: &Run) -> serde_json::Value {
    serde_json::from_str(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", output.stdout))
}

fn request(key: &str, model: &str, extra: &str) -> String {
    format!(
        r#"{{"subject": {{"type": "Key", "id": "{key}"}}, "action": {{"name": "invoke"}},
            "resource": {{"type": "Model", "id": "{model}"}},
            "context": {{"time": "2026-11-22T18:00:00Z", "input_tokens": 1000, "max_output_tokens": 1000{extra}}}}}"#
    )
}

#[test]
fn validate_the_default_store() {
    let store = store();
    let output = keyscope(
        &["policy", "validate", "--store", store.to_str().unwrap()],
        "",
    );
    assert_eq!(Some(output.code), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("is valid"), "{}", stdout(&output));
}

/// Runs `policy validate` on a copy of the default store whose `scopes.toml` went through `edit`.
fn validate_edited_scopes(edit: impl FnOnce(String) -> String) -> Run {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "schema.cedarschema",
        "models.toml",
        "scopes.toml",
        "models.cedar",
    ] {
        std::fs::copy(store().join(name), dir.path().join(name)).unwrap();
    }
    let scopes = std::fs::read_to_string(dir.path().join("scopes.toml")).unwrap();
    std::fs::write(dir.path().join("scopes.toml"), edit(scopes)).unwrap();
    keyscope(
        &[
            "policy",
            "validate",
            "--store",
            dir.path().to_str().unwrap(),
        ],
        "",
    )
}

#[test]
fn validate_reports_a_broken_store_with_its_span() {
    let output =
        validate_edited_scopes(|scopes| scopes.replace("\"10.20.0.0/16\"", "\"10.20.0.0/99\""));
    assert_eq!(Some(output.code), Some(2));
    let err = stderr(&output);
    assert!(err.contains("invalid network `10.20.0.0/99`"), "{err}");
    assert!(err.contains("scopes.toml"), "{err}");
}

/// A raw key registered where its fingerprint belongs is refused, and the error does not print it.
#[test]
fn a_key_pasted_as_a_fingerprint_is_not_printed() {
    // Synthetic, Groq-shaped.
    let key = format!(
        "gsk_{}",
        "kD7DPxW3TuKgyEQRgbpgRGXhsNsEehcGaWthZRKb2Vz4apm0wpmd"
    );
    let output = validate_edited_scopes(|scopes| {
        let (before, after) = scopes.split_once("fingerprint = \"sha256:").unwrap();
        let (_, rest) = after.split_once('"').unwrap();
        format!("{before}fingerprint = \"{key}\"{rest}")
    });
    assert_eq!(Some(output.code), Some(2));
    let err = stderr(&output);
    assert!(err.contains("invalid fingerprint"), "{err}");
    assert!(err.contains("gsk_****"), "{err}");
    assert!(!err.contains(&key), "{err}");
}

#[test]
fn policy_test_runs_every_fixture() {
    let store = store();
    let output = keyscope(&["policy", "test", "--store", store.to_str().unwrap()], "");
    assert_eq!(
        Some(output.code),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let out = stdout(&output);
    let summary = out.lines().last().unwrap();
    assert!(summary.ends_with(" passed, 0 failed"), "{out}");
    let passed: usize = summary.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 50, "{out}");
}

#[test]
fn policy_test_fails_on_a_wrong_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("wrong.json");
    let case = format!(
        r#"{{"cases": [{{"name": "wrong", "request": {}, "expect": {{"decision": false, "reasons": []}}}}]}}"#,
        request("dev-general-1", "gpt-4o-mini", "")
    );
    std::fs::write(&cases, case).unwrap();
    let store = store();
    let output = keyscope(
        &[
            "policy",
            "test",
            "--store",
            store.to_str().unwrap(),
            cases.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(Some(output.code), Some(1));
    assert!(stdout(&output).contains("FAIL"), "{}", stdout(&output));
    std::fs::write(&cases, "{\"cases\": [").unwrap();
    let output = keyscope(
        &[
            "policy",
            "test",
            "--store",
            store.to_str().unwrap(),
            cases.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(Some(output.code), Some(2));
}

/// The fixtures that need no ledger setup, decided one by one through `keyscope decide`.
#[test]
fn fixtures_through_decide() {
    let store = store();
    // The default ledger of the store; a `--ledger` that does not exist is an error.
    let ledger = store.join("ledger.sqlite");
    assert!(!ledger.exists());
    let mut count = 0;
    for entry in std::fs::read_dir(store.join("tests")).unwrap() {
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        for case in file["cases"].as_array().unwrap() {
            if case.get("spent").is_some() || case.get("before").is_some() {
                continue;
            }
            count += 1;
            let now = case["request"]["context"]["time"].as_str().unwrap();
            let output = keyscope(
                &["decide", "--store", store.to_str().unwrap(), "--now", now],
                &case["request"].to_string(),
            );
            let expected = case["expect"]["decision"].as_bool().unwrap();
            assert_eq!(
                Some(output.code),
                Some(if expected { 0 } else { 1 }),
                "{}: {}",
                case["name"],
                stderr(&output)
            );
            let decision = json(&output);
            assert_eq!(decision["decision"], expected, "{}", case["name"]);
            let reasons: Vec<_> = decision["context"]["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].clone())
                .collect();
            assert_eq!(
                serde_json::Value::Array(reasons),
                case["expect"]["reasons"],
                "{}",
                case["name"]
            );
        }
    }
    assert!(count >= 30, "{count}");
    assert!(
        !ledger.exists(),
        "deciding without --reserve must not create a ledger"
    );
}

#[test]
fn malformed_request_is_an_error() {
    let store = store();
    let output = keyscope(
        &["decide", "--store", store.to_str().unwrap()],
        "{\"subject\": ",
    );
    assert_eq!(Some(output.code), Some(2));
    assert!(
        stderr(&output).contains("invalid request JSON"),
        "{}",
        stderr(&output)
    );
    let output = keyscope(
        &["decide", "--store", store.to_str().unwrap()],
        r#"{"subject": {"type": "User", "id": "x"}, "action": {"name": "invoke"}, "resource": {"type": "Model", "id": "m"}}"#,
    );
    assert_eq!(Some(output.code), Some(2));
}

#[test]
fn unknown_key_is_a_deny_with_an_error() {
    let store = store();
    let output = keyscope(
        &["decide", "--store", store.to_str().unwrap()],
        &request("nobody", "gpt-4o", ""),
    );
    assert_eq!(Some(output.code), Some(1));
    let decision = json(&output);
    assert_eq!(
        decision["context"]["reasons"][0]["id"],
        "keyscope:unknown-key"
    );
    assert!(!decision["context"]["errors"].as_array().unwrap().is_empty());
}

#[test]
fn reserve_commit_release_and_spend() {
    let store = store();
    let store = store.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let ledger = ledger.to_str().unwrap();
    let base = ["--store", store, "--ledger", ledger];
    let decide = |id: &str| {
        keyscope(
            &[
                &["decide", "--reserve", "--now", "2026-11-22T18:00:00Z"][..],
                &base,
            ]
            .concat(),
            &request(
                "dev-general-1",
                "gpt-4o-mini",
                &format!(r#", "request_id": "{id}""#),
            ),
        )
    };

    let output = decide("r1");
    assert_eq!(Some(output.code), Some(0), "{}", stderr(&output));
    let decision = json(&output);
    assert_eq!(decision["context"]["reservation"]["request_id"], "r1");
    // 1,000 x $0.15/M + 1,000 x $0.60/M
    assert_eq!(decision["context"]["reservation"]["held_micros"], 750);

    let commit = |id: &str| {
        keyscope(
            &[
                &[
                    "usage",
                    "commit",
                    id,
                    "--input-tokens",
                    "800",
                    "--output-tokens",
                    "100",
                ][..],
                &base,
            ]
            .concat(),
            "",
        )
    };
    let output = commit("r1");
    assert_eq!(Some(output.code), Some(0), "{}", stderr(&output));
    assert_eq!(json(&output)["outcome"], "committed");
    assert_eq!(json(&output)["cost_micros"], 180);
    let output = commit("r1");
    assert_eq!(
        json(&output)["outcome"],
        "already-committed",
        "a retried commit is not charged twice"
    );
    let output = keyscope(&[&["usage", "release", "r1"][..], &base].concat(), "");
    assert_eq!(Some(output.code), Some(2));
    assert!(
        stderr(&output).contains("was committed"),
        "{}",
        stderr(&output)
    );

    assert_eq!(Some(decide("r2").code), Some(0));
    let output = keyscope(&[&["usage", "release", "r2"][..], &base].concat(), "");
    assert_eq!(json(&output)["outcome"], "released");
    let output = keyscope(&[&["usage", "commit", "unknown"][..], &base].concat(), "");
    assert_eq!(Some(output.code), Some(2));

    let output = keyscope(&[&["spend", "--by", "scope"][..], &base].concat(), "");
    assert_eq!(Some(output.code), Some(0), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("dev/general") && l.contains("0.000180")),
        "{table}"
    );
    let output = keyscope(
        &[&["spend", "--by", "model", "--format", "json"][..], &base].concat(),
        "",
    );
    let report = json(&output);
    assert_eq!(report["rows"][0]["group"], "gpt-4o-mini-2024-07-18");
    assert_eq!(report["rows"][0]["cost_micros"], 180);
    let output = keyscope(
        &[
            &[
                "spend",
                "--by",
                "day",
                "--since",
                "2026-11-23",
                "--format",
                "json",
            ][..],
            &base,
        ]
        .concat(),
        "",
    );
    assert_eq!(json(&output)["rows"], serde_json::json!([]));
    let output = keyscope(
        &[&["spend", "--since", "yesterday"][..], &base].concat(),
        "",
    );
    assert_eq!(Some(output.code), Some(2));
}

#[test]
fn spend_without_a_ledger_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("missing.sqlite");
    let output = keyscope(&["spend", "--ledger", ledger.to_str().unwrap()], "");
    assert_eq!(Some(output.code), Some(2));
    assert!(
        stderr(&output).contains("no budget ledger"),
        "{}",
        stderr(&output)
    );
}

/// A mistyped `--ledger` must not read as "nothing spent" (issue 15).
#[test]
fn decide_with_a_missing_ledger_is_an_error() {
    let store = store();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledgr.sqlite");
    let output = keyscope(
        &[
            "decide",
            "--store",
            store.to_str().unwrap(),
            "--ledger",
            ledger.to_str().unwrap(),
        ],
        &request("dev-general-1", "gpt-4o-mini", ""),
    );
    assert_eq!(output.code, 2, "{}", output.stdout);
    assert!(
        output.stderr.contains("no budget ledger"),
        "{}",
        output.stderr
    );
    assert!(output.stdout.is_empty());
    assert!(!ledger.exists());
}

/// `ledger verify` finds a total changed behind keyscope's back, decisions on that ledger fail
/// closed (exit 2), and `ledger rebuild` restores it.
#[test]
fn ledger_verify_and_rebuild() {
    let store = store();
    let store = store.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let ledger = path.to_str().unwrap();
    let base = ["--store", store, "--ledger", ledger];
    for i in 0..40 {
        let id = format!("r{i}");
        let output = keyscope(
            &[
                &["decide", "--reserve", "--now", "2026-11-22T18:00:00Z"][..],
                &base,
            ]
            .concat(),
            &request(
                "dev-general-1",
                "gpt-4o-mini",
                &format!(r#", "request_id": "{id}""#),
            ),
        );
        assert_eq!(output.code, 0, "{}", output.stderr);
        let output = keyscope(
            &[&["usage", "commit", &id, "--cost-usd", "0.001"][..], &base].concat(),
            "",
        );
        assert_eq!(output.code, 0, "{}", output.stderr);
    }
    let verify = || keyscope(&[&["ledger", "verify"][..], &base].concat(), "");
    let output = verify();
    assert_eq!(output.code, 0, "{}{}", output.stdout, output.stderr);
    assert!(
        output.stdout.starts_with("intact: 40 request rows"),
        "{}",
        output.stdout
    );

    let conn_sql = "UPDATE totals SET committed_micros = 0 WHERE scope = 'dev/general' AND length(period) = 10";
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()",
            ledger,
            conn_sql,
        ])
        .status()
        .unwrap();
    assert!(status.success());

    let output = verify();
    assert_eq!(output.code, 1, "{}{}", output.stdout, output.stderr);
    assert!(
        output
            .stdout
            .contains("damaged: the total of `dev/general`"),
        "{}",
        output.stdout
    );
    let output = keyscope(
        &[&["decide", "--now", "2026-11-22T18:00:00Z"][..], &base].concat(),
        &request("dev-general-1", "gpt-4o-mini", ""),
    );
    assert_eq!(output.code, 2, "a damaged ledger denies: {}", output.stdout);
    assert!(
        output.stderr.contains("fails its checksum"),
        "{}",
        output.stderr
    );

    let output = keyscope(&[&["ledger", "rebuild"][..], &base].concat(), "");
    assert_eq!(output.code, 0, "{}{}", output.stdout, output.stderr);
    assert_eq!(verify().code, 0);
    let output = keyscope(
        &[&["decide", "--now", "2026-11-22T18:00:00Z"][..], &base].concat(),
        &request("dev-general-1", "gpt-4o-mini", ""),
    );
    assert_eq!(output.code, 0, "{}", output.stderr);
}

/// A case file with no cases, or a store with no case files, tests nothing: never a pass.
#[test]
fn policy_test_with_no_cases_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("empty.json");
    std::fs::write(&cases, r#"{"cases": []}"#).unwrap();
    let store = store();
    let store = store.to_str().unwrap();
    let output = keyscope(
        &["policy", "test", "--store", store, cases.to_str().unwrap()],
        "",
    );
    assert_eq!(output.code, 1, "{}", output.stdout);
    assert!(output.stdout.contains("has no cases"), "{}", output.stdout);
    assert!(
        output.stdout.ends_with("0 passed, 1 failed\n"),
        "{}",
        output.stdout
    );

    let bare = tempfile::tempdir().unwrap();
    for name in [
        "schema.cedarschema",
        "models.toml",
        "scopes.toml",
        "models.cedar",
    ] {
        std::fs::copy(root().join("policies").join(name), bare.path().join(name)).unwrap();
    }
    std::fs::create_dir(bare.path().join("tests")).unwrap();
    let output = keyscope(
        &["policy", "test", "--store", bare.path().to_str().unwrap()],
        "",
    );
    assert_eq!(output.code, 2, "{}{}", output.stdout, output.stderr);
    assert!(
        output.stderr.contains("nothing was tested"),
        "{}",
        output.stderr
    );
}

/// `decide --audit-log` puts each decision on record; `audit verify` finds an edited record and
/// `audit query` reads them back; a log that cannot be written turns the decision into a deny.
#[test]
fn decisions_go_on_record_and_a_tampered_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit");
    let log = log.to_str().unwrap();
    let store = store();
    let store = store.to_str().unwrap();
    for id in ["a1", "a2"] {
        let output = keyscope(
            &[
                "decide",
                "--store",
                store,
                "--now",
                "2026-11-22T18:00:00Z",
                "--audit-log",
                log,
            ],
            &request(
                "dev-general-1",
                "gpt-4o-mini",
                &format!(r#", "request_id": "{id}""#),
            ),
        );
        assert_eq!(output.code, 0, "{}", output.stderr);
    }
    let output = keyscope(&["audit", "verify", log], "");
    assert_eq!(output.code, 0, "{}{}", output.stdout, output.stderr);
    assert!(
        output.stdout.contains("intact: 2 records in 1 file"),
        "{}",
        output.stdout
    );
    let output = keyscope(
        &[
            "audit",
            "query",
            log,
            "--key",
            "dev-general-1",
            "--format",
            "json",
        ],
        "",
    );
    let records = json(&output);
    assert_eq!(records.as_array().unwrap().len(), 2, "{records}");
    assert_eq!(records[1]["request_id"], "a2");

    let file = std::path::Path::new(log).join("audit-2026-11-22-000.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replacen("\"allowed\":true", "\"allowed\":false", 1),
    )
    .unwrap();
    let output = keyscope(&["audit", "verify", log], "");
    assert_eq!(output.code, 1, "{}", output.stdout);
    assert!(
        output.stdout.contains("record 1 was altered"),
        "{}",
        output.stdout
    );

    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::os::unix::fs::symlink("/dev/full", full.join("audit-2026-11-22-000.jsonl")).unwrap();
    let output = keyscope(
        &[
            "decide",
            "--store",
            store,
            "--now",
            "2026-11-22T18:00:00Z",
            "--audit-log",
            full.to_str().unwrap(),
        ],
        &request("dev-general-1", "gpt-4o-mini", ""),
    );
    assert_eq!(
        output.code, 1,
        "never an allow off the record: {}",
        output.stdout
    );
    assert_eq!(
        json(&output)["context"]["reasons"][0]["id"],
        "keyscope:audit-unavailable"
    );
}
