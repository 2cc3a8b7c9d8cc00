//! The CLI and the service on the shared Redis ledger (issue 15): the same commands with
//! `--ledger redis://...`, two `keyscope serve` replicas enforcing one cap, migration from
//! SQLite, and a denial with exit 2 when Redis is not there.

use std::sync::Arc;

use crate::redis_support::{self, RedisServer};
use crate::serve::Served;
use crate::{Run, keyscope_with_input, root};

fn keyscope(args: &[&str], stdin: &str) -> Run {
    keyscope_with_input(&root(), args, Some(stdin.as_bytes()))
}

fn json(output: &Run) -> serde_json::Value {
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", output.stdout, output.stderr))
}

/// A request of `dev-general-1` (dev/general: $5 a day) for opus, held at $0.49995.
fn half_dollar(id: &str) -> String {
    half_dollar_with(id, "")
}

/// [`half_dollar`] with more context fields (`, "reserve": true` for the service).
fn half_dollar_with(id: &str, extra: &str) -> String {
    format!(
        r#"{{"subject": {{"type": "Key", "id": "dev-general-1"}}, "action": {{"name": "invoke"}},
            "resource": {{"type": "Model", "id": "claude-opus-4-1-20250805"}},
            "context": {{"time": "2026-11-22T18:00:00Z", "input_tokens": 1000,
                         "max_output_tokens": 6466, "request_id": "{id}"{extra}}}}}"#
    )
}

#[test]
fn decide_usage_and_spend_work_on_redis_as_on_sqlite() {
    if redis_support::skipped("decide_usage_and_spend_work_on_redis") {
        return;
    }
    let server = RedisServer::start();
    let url = server.url();
    let base = ["--store", "policies", "--ledger", &url];
    let now = ["--now", "2026-11-22T18:00:00Z"];
    let decide = |id: &str| {
        keyscope(
            &[&["decide", "--reserve"][..], &now, &base].concat(),
            &half_dollar(id),
        )
    };
    let first = decide("r1");
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(
        json(&first)["context"]["reservation"]["held_micros"],
        499_950
    );
    let commit = keyscope(
        &[&["usage", "commit", "r1", "--cost-usd", "0.3"][..], &base].concat(),
        "",
    );
    assert_eq!(commit.code, 0, "{}", commit.stderr);
    assert_eq!(json(&commit)["outcome"], "committed");
    assert_eq!(json(&commit)["cost_micros"], 300_000);
    assert_eq!(json(&commit)["flags"]["exceeds_hold"], false);
    let again = keyscope(
        &[&["usage", "commit", "r1", "--cost-usd", "0.3"][..], &base].concat(),
        "",
    );
    assert_eq!(json(&again)["outcome"], "already-committed");
    let spend = keyscope(
        &[&["spend", "--by", "key", "--format", "json"][..], &base].concat(),
        "",
    );
    assert_eq!(spend.code, 0, "{}", spend.stderr);
    let rows = json(&spend)["rows"].clone();
    assert_eq!(rows[0]["group"], "dev-general-1");
    assert_eq!(rows[0]["cost_micros"], 300_000);
    // A commit far above its hold is charged (the money was spent) and flagged, in the answer
    // and in the audit log.
    assert_eq!(decide("r2").code, 0);
    let audit = tempfile::tempdir().unwrap();
    let audit_dir = audit.path().to_str().unwrap();
    let over = keyscope(
        &[
            &[
                "usage",
                "commit",
                "r2",
                "--cost-usd",
                "50",
                "--audit-log",
                audit_dir,
            ][..],
            &base,
        ]
        .concat(),
        "",
    );
    assert_eq!(over.code, 0, "{}", over.stderr);
    assert_eq!(json(&over)["flags"]["exceeds_hold"], true);
    assert_eq!(json(&over)["cost_micros"], 50_000_000);
    let logged: String = std::fs::read_dir(audit.path())
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    let line: serde_json::Value = serde_json::from_str(logged.trim()).unwrap();
    assert_eq!(line["event"], "commit");
    assert_eq!(line["flags"][0], "exceeds-hold");
    assert_eq!(line["key"], "dev-general-1");
    assert_eq!(line["scope"], "dev/general");
    let verified = keyscope(&["audit", "verify", audit_dir], "");
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
    let check = keyscope(&[&["ledger", "verify"][..], &base].concat(), "");
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
}

#[test]
fn an_unreachable_redis_denies_with_exit_2_and_never_prints_its_password() {
    if redis_support::skipped("an_unreachable_redis_denies") {
        return;
    }
    let port = redis_support::free_port();
    let url = format!("redis://:correct-horse-battery@127.0.0.1:{port}/0");
    for reserve in [true, false] {
        let mut args = vec!["decide", "--store", "policies", "--ledger", &url];
        if reserve {
            args.push("--reserve");
        }
        let output = keyscope(&args, &half_dollar("x"));
        assert_eq!(output.code, 2, "{}", output.stderr);
        let decision = json(&output);
        assert_eq!(decision["decision"], false);
        assert_eq!(
            decision["context"]["reasons"][0]["id"], "keyscope:ledger-unavailable",
            "{decision}"
        );
        assert_eq!(
            decision["context"]["budgets"],
            serde_json::Value::Null,
            "no figures stand in for the ledger's: {decision}"
        );
        assert!(!output.stdout.contains("correct-horse-battery"));
        assert!(
            !output.stderr.contains("correct-horse-battery"),
            "{}",
            output.stderr
        );
    }
    let spend = keyscope(&["spend", "--store", "policies", "--ledger", &url], "");
    assert_eq!(spend.code, 2);
    assert!(
        !spend.stderr.contains("correct-horse-battery"),
        "{}",
        spend.stderr
    );
}

#[test]
fn two_service_replicas_on_one_redis_admit_exactly_the_cap() {
    if redis_support::skipped("two_service_replicas_admit_exactly_the_cap") {
        return;
    }
    let server = RedisServer::start();
    let url = server.url();
    let replicas: Vec<Arc<Served>> = (0..2)
        .map(|_| {
            Arc::new(Served::start(&[
                "--store",
                "policies",
                "--ledger",
                &url,
                "--listen",
                "127.0.0.1:0",
            ]))
        })
        .collect();
    let clients: Vec<_> = (0..64)
        .map(|i| {
            let replica = Arc::clone(&replicas[i % 2]);
            std::thread::spawn(move || {
                let (status, body) = replica.post(
                    "/access/v1/evaluation",
                    &half_dollar_with(&format!("race-{i}"), r#", "reserve": true"#),
                );
                assert_eq!(status, 200, "{body}");
                serde_json::from_str::<serde_json::Value>(&body).unwrap()["decision"] == true
            })
        })
        .collect();
    let allowed = clients
        .into_iter()
        .filter(|_| true)
        .map(|c| c.join().unwrap())
        .filter(|allowed| *allowed)
        .count();
    assert_eq!(allowed, 10, "$5 cap, $0.49995 each: exactly ten fit");
    let spend = keyscope(
        &[
            "spend", "--store", "policies", "--ledger", &url, "--format", "json",
        ],
        "",
    );
    let rows = json(&spend)["rows"].clone();
    assert_eq!(rows[0]["held_requests"], 10);
    assert_eq!(rows[0]["held_micros"], 4_999_500);
}

#[test]
fn ledger_migrate_moves_a_sqlite_ledger_to_redis_once() {
    if redis_support::skipped("ledger_migrate_moves_a_sqlite_ledger_to_redis") {
        return;
    }
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.sqlite");
    let file = file.to_str().unwrap();
    let now = ["--now", "2026-11-22T18:00:00Z"];
    for id in ["m1", "m2"] {
        let output = keyscope(
            &[
                &[
                    "decide",
                    "--reserve",
                    "--store",
                    "policies",
                    "--ledger",
                    file,
                ][..],
                &now,
            ]
            .concat(),
            &half_dollar(id),
        );
        assert_eq!(output.code, 0, "{}", output.stderr);
    }
    let commit = keyscope(
        &[
            "usage",
            "commit",
            "m1",
            "--cost-usd",
            "0.2",
            "--store",
            "policies",
            "--ledger",
            file,
        ],
        "",
    );
    assert_eq!(commit.code, 0, "{}", commit.stderr);
    // A key of the registry moves too.
    let issued = keyscope(
        &[
            "key",
            "issue",
            "--scope",
            "dev/general",
            "--format",
            "json",
            "--store",
            "policies",
            "--ledger",
            file,
        ],
        "",
    );
    assert_eq!(issued.code, 0, "{}", issued.stderr);
    let key_id = json(&issued)["id"].as_str().unwrap().to_owned();
    let migrate = |format: &str| {
        keyscope(
            &[
                "ledger", "migrate", "--from", file, "--to", &url, "--format", format,
            ],
            "",
        )
    };
    let first = migrate("json");
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(json(&first)["written"], 2);
    assert_eq!(json(&first)["keys_copied"], 1);
    let shown = keyscope(
        &[
            "key", "show", &key_id, "--store", "policies", "--ledger", &url,
        ],
        "",
    );
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stdout.contains("dev/general"), "{}", shown.stdout);
    let second = migrate("human");
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stdout.contains("moved 0 of 2 requests"),
        "{}",
        second.stdout
    );
    assert!(
        second.stdout.contains("(2 already there)"),
        "{}",
        second.stdout
    );
    assert!(
        second
            .stdout
            .contains("copied 0 keys of the registry (1 already there)"),
        "{}",
        second.stdout
    );
    let spend = keyscope(
        &[
            "spend", "--store", "policies", "--ledger", &url, "--format", "json",
        ],
        "",
    );
    let rows = json(&spend)["rows"].clone();
    assert_eq!(
        (
            rows[0]["cost_micros"].clone(),
            rows[0]["held_micros"].clone()
        ),
        (200_000.into(), 499_950.into())
    );
    // The open hold moved too: it commits against Redis now.
    let commit = keyscope(
        &[
            "usage",
            "commit",
            "m2",
            "--cost-usd",
            "0.1",
            "--store",
            "policies",
            "--ledger",
            &url,
        ],
        "",
    );
    assert_eq!(json(&commit)["outcome"], "committed", "{}", commit.stderr);
}

/// `GET path` on `served`: the status.
fn get_status(served: &Served, path: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(served.addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        served.addr
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_service_denies_while_redis_is_down_and_recovers_by_itself() {
    if redis_support::skipped("the_service_denies_while_redis_is_down") {
        return;
    }
    let mut server = RedisServer::start();
    let url = server.url();
    let served = Served::start(&[
        "--store",
        "policies",
        "--ledger",
        &url,
        "--listen",
        "127.0.0.1:0",
    ]);
    let ask = |id: &str| {
        let (status, body) = served.post(
            "/access/v1/evaluation",
            &half_dollar_with(id, r#", "reserve": true"#),
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    assert_eq!(get_status(&served, "/readyz"), 200);
    assert_eq!(ask("up-1")["decision"], true);
    server.kill();
    assert_eq!(get_status(&served, "/readyz"), 503);
    let down = ask("down-1");
    assert_eq!(down["decision"], false);
    assert_eq!(
        down["context"]["reasons"][0]["id"], "keyscope:ledger-unavailable",
        "{down}"
    );
    server.restart();
    assert_eq!(
        get_status(&served, "/readyz"),
        200,
        "the service reconnects by itself"
    );
    assert_eq!(ask("up-2")["decision"], true);
}

#[test]
fn ledger_migrate_never_prints_a_key_pasted_into_a_path() {
    if redis_support::skipped("ledger_migrate_never_prints_a_key_pasted_into_a_path") {
        return;
    }
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let secret = crate::git::key(41);
    let file = dir.path().join(format!("{secret}.sqlite"));
    let file = file.to_str().unwrap();
    let reserved = keyscope(
        &[
            "decide",
            "--reserve",
            "--store",
            "policies",
            "--ledger",
            file,
        ],
        &half_dollar("k1"),
    );
    assert_eq!(reserved.code, 0, "{}", reserved.stderr);
    for format in ["human", "json"] {
        let moved = keyscope(
            &[
                "ledger", "migrate", "--from", file, "--to", &url, "--format", format,
            ],
            "",
        );
        assert_eq!(moved.code, 0, "{}", moved.stderr);
        assert!(!moved.stdout.contains(&secret), "{}", moved.stdout);
        assert!(moved.stdout.contains("sqlite"), "{}", moved.stdout);
    }
}
