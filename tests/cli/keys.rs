//! Scoped keys (issue 16): the checksum rule, and `keyscope key` issuing, rotating and revoking
//! keys in the registry of both ledgers, with every decision and audit record that follows.

use std::path::{Path, PathBuf};

use keyscope_policy::keys::Secret;
use keyscope_rules::RuleSet;
use keyscope_scan::Detector;

use crate::redis_support::{self, RedisServer};
use crate::{Run, keyscope_with_input, root};

/// A copy of the default policy store in a temporary directory, with its own ledger.
pub(crate) struct TempStore {
    pub(crate) dir: tempfile::TempDir,
}

impl TempStore {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("policies");
        std::fs::create_dir_all(store.join("tests")).unwrap();
        for entry in std::fs::read_dir(root().join("policies")).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && path.extension().is_some_and(|e| e != "sqlite") {
                std::fs::copy(&path, store.join(path.file_name().unwrap())).unwrap();
            }
        }
        Self { dir }
    }

    pub(crate) fn store(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    pub(crate) fn audit(&self) -> PathBuf {
        self.dir.path().join("audit")
    }
}

/// `keyscope ARGS --store STORE [--ledger URL]` in the store's directory.
fn ks(store: &TempStore, ledger: Option<&str>, args: &[&str], stdin: Option<&str>) -> Run {
    let store_dir = store.store();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--store", store_dir.to_str().unwrap()]);
    if let Some(url) = ledger {
        all.extend(["--ledger", url]);
    }
    keyscope_with_input(store.dir.path(), &all, stdin.map(str::as_bytes))
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr))
}

/// An issued key: its id and secret.
pub(crate) struct Issued {
    pub(crate) id: String,
    pub(crate) secret: String,
}

pub(crate) fn issue(store: &TempStore, ledger: Option<&str>, scope: &str, now: &str) -> Issued {
    let audit = store.audit();
    let run = ks(
        store,
        ledger,
        &[
            "key",
            "issue",
            "--scope",
            scope,
            "--format",
            "json",
            "--now",
            now,
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let value = json(&run);
    Issued {
        id: value["id"].as_str().unwrap().to_owned(),
        secret: value["secret"].as_str().unwrap().to_owned(),
    }
}

/// A request of `subject` for gpt-4o from inside the care-notes network.
pub(crate) fn request(subject: &str, id: &str) -> String {
    format!(
        r#"{{"subject": {{"type": "Key", "id": "{subject}"}}, "action": {{"name": "invoke"}},
            "resource": {{"type": "Model", "id": "gpt-4o-2024-11-20"}},
            "context": {{"source_ip": "10.20.4.7", "input_tokens": 1000,
                         "max_output_tokens": 500, "request_id": "{id}"}}}}"#
    )
}

/// `keyscope decide --reserve --now NOW` of `subject`: the exit code and the decision.
pub(crate) fn decide(
    store: &TempStore,
    ledger: Option<&str>,
    subject: &str,
    id: &str,
    now: &str,
) -> (i32, serde_json::Value) {
    let run = ks(
        store,
        ledger,
        &["decide", "--reserve", "--now", now],
        Some(&request(subject, id)),
    );
    assert!(
        run.code == 0 || run.code == 1,
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    (run.code, json(&run))
}

pub(crate) fn reasons(decision: &serde_json::Value) -> Vec<String> {
    decision["context"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn events(audit: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(audit)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    format!(
                        "{} {}",
                        v["event"].as_str().unwrap_or("decision"),
                        v["key"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_checksum_rule_reports_every_issued_key_and_no_lookalike() {
    let detector = Detector::new(RuleSet::builtin().unwrap()).unwrap();
    let mut issued = String::new();
    for _ in 0..2_000 {
        let secret = Secret::generate(None).unwrap();
        issued.push_str(&format!("KEYSCOPE_KEY={}\n", secret.expose()));
    }
    let found = detector
        .scan(issued.as_bytes())
        .into_iter()
        .filter(|m| detector.rules().rules()[m.rule].id() == "keyscope-scoped-key")
        .count();
    assert_eq!(found, 2_000, "every issued key is reported");

    // A million strings of the right shape whose last six characters are not the checksum,
    // through the rule alone (the other rules cannot report a `ksk_` string, and skipping them
    // keeps a debug build quick).
    let mut only = RuleSet::builtin().unwrap();
    let others: Vec<String> = only
        .rules()
        .iter()
        .map(|r| r.id().to_owned())
        .filter(|id| id != "keyscope-scoped-key")
        .collect();
    for id in others {
        only.get_mut(&id).unwrap().set_enabled(false);
    }
    let detector = Detector::new(only).unwrap();
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ALPHABET[(state % 62) as usize] as char
    };
    let mut reported = 0;
    for _ in 0..100 {
        let mut blob = String::with_capacity(10_000 * 56);
        for _ in 0..10_000 {
            let mut candidate = String::from("k=ksk_prod_");
            for _ in 0..36 {
                candidate.push(next());
            }
            if Secret::parse(&candidate[2..]).is_ok() {
                continue; // a right checksum by chance (one in 62^6): not a look-alike
            }
            blob.push_str(&candidate);
            blob.push('\n');
        }
        reported += detector
            .scan(blob.as_bytes())
            .into_iter()
            .filter(|m| detector.rules().rules()[m.rule].id() == "keyscope-scoped-key")
            .count();
    }
    assert_eq!(reported, 0, "a wrong checksum is never a key");
}

/// Issue, decide, rotate with an overlap, revoke, list and audit: the same on both ledgers.
fn lifecycle(ledger: Option<&str>) {
    let store = TempStore::new();
    let t0 = "2026-12-01T09:00:00Z";
    let a = issue(&store, ledger, "prod/care-notes-summarization", t0);
    let b = issue(&store, ledger, "prod/care-notes-summarization", t0);
    assert!(a.secret.starts_with("ksk_prod_") && a.id.starts_with("k-"));

    // By secret, by id and by fingerprint: the same key.
    let fingerprint = format!("sha256:{}", Secret::parse(&a.secret).unwrap().hash());
    for (n, subject) in [&a.secret, &a.id, &fingerprint].into_iter().enumerate() {
        let (code, decision) = decide(
            &store,
            ledger,
            subject,
            &format!("a{n}"),
            "2026-12-01T09:10:00Z",
        );
        assert_eq!(code, 0, "{decision}");
        assert_eq!(decision["context"]["key"], a.id.as_str());
        assert!(
            !decision.to_string().contains(&a.secret),
            "a decision never echoes the secret"
        );
    }
    // A typo is refused before any lookup, and not echoed.
    let mut typo = a.secret.clone();
    typo.replace_range(20..21, if &typo[20..21] == "A" { "B" } else { "A" });
    let (code, decision) = decide(&store, ledger, &typo, "typo", "2026-12-01T09:10:00Z");
    assert_eq!(
        (code, reasons(&decision)),
        (1, vec!["keyscope:malformed-key".to_owned()])
    );
    assert!(!decision.to_string().contains(&typo[12..]));

    // Rotation with a one-hour overlap: the old key works inside it, not after.
    let audit = store.audit();
    let rotated = ks(
        &store,
        ledger,
        &[
            "key",
            "rotate",
            &a.id,
            "--overlap",
            "1h",
            "--format",
            "json",
            "--now",
            "2026-12-01T10:00:00Z",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    let successor = json(&rotated);
    let successor_secret = successor["secret"].as_str().unwrap();
    let (code, _) = decide(
        &store,
        ledger,
        &a.secret,
        "a-overlap",
        "2026-12-01T10:30:00Z",
    );
    assert_eq!(code, 0, "inside the overlap the old key still works");
    let (code, decision) = decide(&store, ledger, &a.secret, "a-after", "2026-12-01T11:00:01Z");
    assert_eq!(
        (code, reasons(&decision)),
        (1, vec!["keyscope:key-superseded".to_owned()])
    );
    let message = decision["context"]["reasons"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("2026-12-01T11:00:00Z")
            && message.contains(successor["id"].as_str().unwrap()),
        "{message}"
    );
    let (code, _) = decide(
        &store,
        ledger,
        successor_secret,
        "successor",
        "2026-12-01T11:00:01Z",
    );
    assert_eq!(code, 0, "the successor works");

    // Revocation takes effect at the next decision, whatever its time, and says when and why.
    let revoked = ks(
        &store,
        ledger,
        &[
            "key",
            "revoke",
            &b.id,
            "--reason",
            "leaked",
            "--now",
            "2026-12-01T12:00:00Z",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    let (code, decision) = decide(&store, ledger, &b.secret, "b-after", "2026-12-01T11:59:00Z");
    assert_eq!(
        (code, reasons(&decision)),
        (1, vec!["keyscope:key-revoked".to_owned()])
    );
    let message = decision["context"]["reasons"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("2026-12-01T12:00:00Z") && message.contains("leaked"),
        "{message}"
    );

    // Bad input: a clear error, exit 2, nothing changed.
    let list = || {
        ks(
            &store,
            ledger,
            &[
                "key",
                "list",
                "--format",
                "json",
                "--now",
                "2026-12-01T12:00:00Z",
            ],
            None,
        )
    };
    let before = list();
    for (args, needle) in [
        (
            vec!["key", "revoke", &b.id, "--reason", "leaked"],
            "already revoked",
        ),
        (vec!["key", "rotate", &b.id], "only an active key"),
        (
            vec!["key", "revoke", "k-doesnotexist", "--reason", "x"],
            "no key with id",
        ),
        (vec!["key", "show", "k-doesnotexist"], "no key with id"),
        (vec!["key", "rotate", &a.id], "only an active key"),
        (
            vec!["key", "issue", "--scope", "no/such/scope"],
            "unknown scope",
        ),
    ] {
        let mut args = args.clone();
        args.extend(["--now", "2026-12-01T12:00:00Z"]);
        let run = ks(&store, ledger, &args, None);
        assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
    let after = list();
    assert_eq!(
        before.stdout, after.stdout,
        "a refused command changes nothing"
    );

    // The listing knows every state; settling it records the supersession once.
    let states: Vec<(String, String)> = json(&after)
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&(a.id.clone(), "superseded".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&(b.id.clone(), "revoked".into())),
        "{states:?}"
    );
    let listed = ks(
        &store,
        ledger,
        &[
            "key",
            "list",
            "--state",
            "superseded",
            "--now",
            "2026-12-01T12:00:00Z",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stdout.contains(&a.id) && !listed.stdout.contains(&b.id),
        "{}",
        listed.stdout
    );
    let successor_id = successor["id"].as_str().unwrap();
    assert_eq!(
        events(&audit),
        [
            format!("key-issued {}", a.id),
            format!("key-issued {}", b.id),
            format!("key-rotated {}", a.id),
            format!("key-issued {successor_id}"),
            format!("key-revoked {}", b.id),
            format!("key-superseded {}", a.id),
        ]
    );
    let verify = keyscope_with_input(
        store.dir.path(),
        &["audit", "verify", audit.to_str().unwrap()],
        None,
    );
    assert_eq!(verify.code, 0, "{}", verify.stdout);

    // Nothing shows a whole secret: not the listing, not the record.
    let shown = ks(&store, ledger, &["key", "show", &a.id], None);
    for text in [&after.stdout, &shown.stdout, &shown.stderr] {
        for secret in [&a.secret, &b.secret] {
            assert!(!text.contains(&secret[9..]), "{text}");
        }
    }
    assert!(shown.stdout.contains("superseded"), "{}", shown.stdout);
}

#[test]
fn keys_live_and_die_in_the_sqlite_registry() {
    lifecycle(None);
}

#[test]
fn keys_live_and_die_in_the_redis_registry() {
    if redis_support::skipped("keys_live_and_die_in_the_redis_registry") {
        return;
    }
    let server = RedisServer::start();
    lifecycle(Some(&server.url()));
}

/// `--until-idle`: the old key stays valid while it is used, and retires once it was not used
/// for the given time.
fn drained(ledger: Option<&str>) {
    let store = TempStore::new();
    let old = issue(
        &store,
        ledger,
        "prod/care-notes-summarization",
        "2026-12-01T09:00:00Z",
    );
    let (code, _) = decide(&store, ledger, &old.secret, "u1", "2026-12-01T09:30:00Z");
    assert_eq!(code, 0);
    let rotated = ks(
        &store,
        ledger,
        &[
            "key",
            "rotate",
            &old.id,
            "--until-idle",
            "1h",
            "--now",
            "2026-12-01T10:00:00Z",
        ],
        None,
    );
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    // Used 40 minutes in: the hour counts from there.
    for (id, at) in [
        ("u2", "2026-12-01T10:40:00Z"),
        ("u3", "2026-12-01T11:30:00Z"),
    ] {
        let (code, decision) = decide(&store, ledger, &old.secret, id, at);
        assert_eq!(code, 0, "{at}: {decision}");
    }
    let (code, decision) = decide(&store, ledger, &old.secret, "u4", "2026-12-01T12:30:01Z");
    assert_eq!(
        (code, reasons(&decision)),
        (1, vec!["keyscope:key-superseded".to_owned()])
    );
    let message = decision["context"]["reasons"][0]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("2026-12-01T12:30:00Z"), "{message}");
}

#[test]
fn a_usage_drained_rotation_waits_for_the_old_key_to_go_idle() {
    drained(None);
}

#[test]
fn a_usage_drained_rotation_works_on_the_redis_registry() {
    if redis_support::skipped("a_usage_drained_rotation_works_on_the_redis_registry") {
        return;
    }
    let server = RedisServer::start();
    drained(Some(&server.url()));
}

/// `keyscope usage commit ID --cost-usd USD` against the store's ledger.
fn commit(store: &TempStore, request_id: &str, usd: &str) {
    let run = ks(
        store,
        None,
        &["usage", "commit", request_id, "--cost-usd", usd],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// The loop closed: keys for two scopes make decisions and commits, one leaks into a
/// repository, a history sweep with `--respond --revoke` names it with its scope, the leaking
/// commit and the spend since that commit (to the micro-dollar), revokes it, and the next
/// decision for it denies; the other key is untouched.
#[test]
fn a_history_sweep_responds_to_a_leaked_key_and_revokes_it() {
    let store = TempStore::new();
    let leaked = issue(
        &store,
        None,
        "prod/care-notes-summarization",
        "2026-10-01T00:00:00Z",
    );
    let other = issue(&store, None, "dev/general", "2026-10-01T00:00:00Z");
    // Before the leak (not counted), and after it (counted).
    for (key, id, at, usd) in [
        (&leaked, "l-before", "2026-10-01T10:00:00Z", "0.5"),
        (&leaked, "l-after-1", "2026-10-02T12:00:00Z", "0.012345"),
        (&leaked, "l-after-2", "2026-10-03T08:00:00Z", "0.2"),
        (&other, "o-after", "2026-10-03T09:00:00Z", "0.75"),
    ] {
        let (code, decision) = decide(&store, None, &key.secret, id, at);
        assert_eq!(code, 0, "{decision}");
        commit(&store, id, usd);
    }

    let repo = store.dir.path().join("app");
    std::fs::create_dir_all(&repo).unwrap();
    crate::git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("README.md"), "the app\n").unwrap();
    crate::git(&repo, &["add", "."]);
    crate::git(&repo, &["commit", "-q", "-m", "start"]);
    std::fs::write(
        repo.join("app.env"),
        format!("KEYSCOPE_KEY={}\n", leaked.secret),
    )
    .unwrap();
    crate::git(&repo, &["add", "."]);
    let status = crate::git_command(&repo)
        .env("GIT_AUTHOR_DATE", "2026-10-02T09:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-10-02T09:00:00Z")
        .args(["commit", "-q", "-m", "configure the gateway key"])
        .status()
        .unwrap();
    assert!(status.success());
    let leak_commit = crate::git(&repo, &["rev-parse", "HEAD"]);

    let audit = store.audit();
    let run = ks(
        &store,
        None,
        &[
            "scan",
            "--history",
            repo.to_str().unwrap(),
            "--respond",
            "--revoke",
            "--format",
            "json",
            "--now",
            "2026-10-05T00:00:00Z",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains(&leaked.secret[9..]) && !run.stderr.contains(&leaked.secret[9..]));
    let response = &json(&run)["responses"][0];
    assert_eq!(response["key"], "keyscope key");
    assert_eq!(response["key_id"], leaked.id.as_str());
    assert_eq!(
        response["ownership"]["scope"],
        "prod/care-notes-summarization"
    );
    assert_eq!(response["ownership"]["phi"], true);
    assert_eq!(
        response["exposure"]["first_commit"]["id"],
        leak_commit.as_str()
    );
    assert_eq!(response["exposure"]["at_head"], true);
    assert_eq!(response["exposure"]["remote_configured"], false);
    assert_eq!(response["exposure"]["refs"], serde_json::json!(["main"]));
    let used = &response["use_since"];
    assert_eq!(used["since"], "2026-10-02T09:00:00Z");
    assert_eq!(used["requests"], 2);
    assert_eq!(
        used["committed_micros"], 212_345,
        "exactly the commits after the leak"
    );
    assert_eq!(used["models"], serde_json::json!({"gpt-4o-2024-11-20": 2}));
    assert_eq!(used["last_use"], "2026-10-03T08:00:00Z");
    assert!(
        response["reach"]["models"]
            .as_array()
            .unwrap()
            .contains(&"gpt-4o-2024-11-20".into()),
        "{response}"
    );
    assert_eq!(
        response["reach"]["networks"],
        serde_json::json!(["10.20.0.0/16"])
    );
    assert_eq!(response["action"]["revoked"], "2026-10-05T00:00:00Z");

    // The next decision for the leaked key denies, with when and why; the other key works.
    let (code, decision) = decide(
        &store,
        None,
        &leaked.secret,
        "l-next",
        "2026-10-05T00:01:00Z",
    );
    assert_eq!(
        (code, reasons(&decision)),
        (1, vec!["keyscope:key-revoked".to_owned()])
    );
    let message = decision["context"]["reasons"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("2026-10-05T00:00:00Z") && message.contains("leaked"),
        "{message}"
    );
    let (code, decision) = decide(
        &store,
        None,
        &other.secret,
        "o-next",
        "2026-10-05T00:01:00Z",
    );
    assert_eq!(code, 0, "{decision}");
    assert_eq!(
        events(&audit).last().unwrap(),
        &format!("key-revoked {}", leaked.id)
    );

    // The same from a saved report, as an incident record: nothing changes twice.
    let report = store.dir.path().join("findings.json");
    let run = ks(
        &store,
        None,
        &[
            "scan",
            "--history",
            repo.to_str().unwrap(),
            "--format",
            "json",
            "-o",
            report.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let run = ks(
        &store,
        None,
        &[
            "respond",
            report.to_str().unwrap(),
            "--revoke",
            "--format",
            "markdown",
            "--repo",
            repo.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("# Leaked key incident record"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&leaked.id) && run.stdout.contains("already revoked"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&leak_commit[..12]), "{}", run.stdout);
    assert!(!run.stdout.contains(&leaked.secret[9..]));

    // A file that is not a keyscope report: exit 2, nothing done.
    let foreign = store.dir.path().join("gitleaks.json");
    std::fs::write(
        &foreign,
        r#"[{"RuleID": "generic-api-key", "Secret": "x"}]"#,
    )
    .unwrap();
    let run = ks(
        &store,
        None,
        &["respond", foreign.to_str().unwrap(), "--revoke"],
        None,
    );
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("not a keyscope JSON report"),
        "{}",
        run.stderr
    );
}

/// Revokes a key while `keyscope serve` decides for it under load: no request sent after the
/// revocation was acknowledged is allowed (after `propagation` on a shared ledger).
fn revoke_under_load(ledger: Option<&str>, propagation: std::time::Duration) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let store = TempStore::new();
    let now = keyscope_policy::Timestamp::now().to_string();
    let key = issue(&store, ledger, "prod/care-notes-summarization", &now);
    let store_dir = store.store();
    let mut args = vec![
        "--store",
        store_dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    if let Some(url) = ledger {
        args.extend(["--ledger", url]);
    }
    let served = Arc::new(crate::serve::Served::start(&args));
    let search = || {
        let (status, answer) = served.post(
            "/access/v1/search/subject",
            r#"{"subject": {"type": "Key"}, "action": {"name": "invoke"},
                "resource": {"type": "Model", "id": "gpt-4o-2024-11-20"},
                "context": {"source_ip": "10.20.4.7"}}"#,
        );
        assert_eq!(status, 200, "{answer}");
        answer
    };
    assert!(
        search().contains(&key.id),
        "the subject search finds the issued key"
    );
    let body = Arc::new(request(&key.secret, "unused").replace(r#", "request_id": "unused""#, ""));
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (served, body, stop, answers, dropped) = (
                Arc::clone(&served),
                Arc::clone(&body),
                Arc::clone(&stop),
                Arc::clone(&answers),
                Arc::clone(&dropped),
            );
            std::thread::spawn(move || {
                let mut client = KeepAlive::default();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    // A connection the busy machine drops is no answer, not an allow: skip it.
                    let Some((status, answer)) =
                        client.post(&served, "/access/v1/evaluation", &body)
                    else {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    assert!(status == 200 || status == 503, "{status}: {answer}");
                    let allowed = status == 200 && answer.contains(r#""decision":true"#);
                    answers.lock().unwrap().push((sent, allowed));
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let revoked = ks(
        &store,
        ledger,
        &["key", "revoke", &key.id, "--reason", "leaked"],
        None,
    );
    let acknowledged = Instant::now();
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    // Enough answers to requests sent once the revocation must hold: a loaded machine (the
    // whole test suite on two cores) may take seconds to answer a few dozen.
    let settled = acknowledged + propagation;
    let deadline = settled + std::time::Duration::from_secs(30);
    while Instant::now() < deadline
        && answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(sent, _)| *sent >= settled)
            .count()
            < 40
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let answers = answers.lock().unwrap();
    let before = answers
        .iter()
        .filter(|(sent, allowed)| *sent < acknowledged && *allowed)
        .count();
    let late_allows = answers
        .iter()
        .filter(|(sent, allowed)| *sent >= acknowledged + propagation && *allowed)
        .count();
    let after = answers
        .iter()
        .filter(|(sent, _)| *sent >= acknowledged + propagation)
        .count();
    assert!(before > 0, "the key was allowed before the revocation");
    assert!(
        after > 0,
        "no request sent after the revocation was answered within 30 s ({} connections dropped)",
        dropped.load(Ordering::Relaxed)
    );
    assert_eq!(
        late_allows, 0,
        "{late_allows} of {after} requests allowed after the revocation"
    );
}

#[test]
fn a_revocation_holds_at_once_for_a_running_service_on_sqlite() {
    revoke_under_load(None, std::time::Duration::ZERO);
}

#[test]
fn a_revocation_reaches_a_running_service_on_redis_within_a_second() {
    if redis_support::skipped("a_revocation_reaches_a_running_service_on_redis") {
        return;
    }
    let server = RedisServer::start();
    revoke_under_load(Some(&server.url()), std::time::Duration::from_secs(1));
}

/// A synthetic Groq-shaped key from `seed`: the shape the scanner knows, in no provider's books.
fn groq_key(seed: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut state = seed | 1;
    let mut key = String::from("gsk_");
    for _ in 0..52 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        key.push(ALPHABET[(state % 62) as usize] as char);
    }
    key
}

/// A registered provider key is quarantined, an unregistered one gets the playbook, a keyscope
/// key is revoked and replaced; the audit log names where the keyscope key was used from.
#[test]
fn respond_quarantines_provider_keys_and_replaces_keyscope_keys() {
    let store = TempStore::new();
    let registered = groq_key(0x1234_5678_9abc_def1);
    let unregistered = groq_key(0x0fed_cba9_8765_4321);
    let scopes = store.store().join("scopes.toml");
    let mut text = std::fs::read_to_string(&scopes).unwrap();
    text.push_str(&format!(
        "\n[[key]]\nid = \"groq-shared\"\nscope = \"prod/care-notes-summarization\"\n\
         fingerprint = \"{}\"\ncreated = 2026-05-01T00:00:00Z\n",
        keyscope_policy::fingerprint(&registered)
    ));
    std::fs::write(&scopes, text).unwrap();
    let scoped = issue(
        &store,
        None,
        "prod/care-notes-summarization",
        "2026-05-01T00:00:00Z",
    );
    let audit = store.audit();
    let audited = |subject: &str, id: &str| {
        let run = ks(
            &store,
            None,
            &[
                "decide",
                "--reserve",
                "--now",
                "2026-06-01T00:00:00Z",
                "--audit-log",
                audit.to_str().unwrap(),
            ],
            Some(&request(subject, id)),
        );
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    };
    audited(&scoped.secret, "s1");
    let provider_fingerprint = keyscope_policy::fingerprint(&registered);
    audited(&provider_fingerprint, "p1");

    let repo = store.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    crate::git(&repo, &["init", "-q"]);
    std::fs::write(
        repo.join("settings.env"),
        format!(
            "GROQ_API_KEY={registered}\nGROQ_FALLBACK={unregistered}\nKEYSCOPE_KEY={}\n",
            scoped.secret
        ),
    )
    .unwrap();
    crate::git(&repo, &["add", "."]);
    crate::git(&repo, &["commit", "-q", "-m", "settings"]);
    crate::git(
        &repo,
        &[
            "remote",
            "add",
            "origin",
            "https://git.example/acme/app.git",
        ],
    );

    let run = ks(
        &store,
        None,
        &[
            "scan",
            "--history",
            repo.to_str().unwrap(),
            "--respond",
            "--revoke",
            "--rotate",
            "--format",
            "json",
            "--now",
            "2026-06-02T00:00:00Z",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    for secret in [&registered, &unregistered, &scoped.secret] {
        assert!(
            !run.stdout.contains(&secret[8..]),
            "a leaked key is printed: {}",
            run.stdout
        );
    }
    let value = json(&run);
    let responses = value["responses"].as_array().unwrap();
    let by_kind = |kind: &str| {
        responses
            .iter()
            .find(|r| r["key"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {value}"))
    };
    let provider = by_kind("registered provider key");
    assert_eq!(provider["key_id"], "groq-shared");
    assert_eq!(provider["action"]["quarantined"], "2026-06-02T00:00:00Z");
    assert_eq!(provider["exposure"]["remote_configured"], true);
    let steps = provider["action"]["steps"].to_string();
    assert!(
        steps.contains("rotate the groq key at the provider"),
        "{steps}"
    );
    let stray = by_kind("unregistered provider key");
    assert!(
        stray["action"]["steps"]
            .to_string()
            .contains("cannot be attributed"),
        "{stray}"
    );
    assert!(stray["action"]["quarantined"].is_null() && stray["action"]["revoked"].is_null());
    let keyscope_key = by_kind("keyscope key");
    assert_eq!(keyscope_key["key_id"], scoped.id.as_str());
    assert_eq!(
        keyscope_key["use_since"]["source_ips"],
        serde_json::json!(["10.20.4.7"])
    );
    assert_eq!(keyscope_key["action"]["revoked"], "2026-06-02T00:00:00Z");
    let successor = keyscope_key["action"]["successor_secret"].as_str().unwrap();
    assert!(
        Secret::parse(successor).is_ok(),
        "the successor is a valid key"
    );

    // Quarantined: every decision for the provider key denies as compromised.
    let run = ks(
        &store,
        None,
        &["decide", "--now", "2026-06-02T00:01:00Z"],
        Some(&request(&provider_fingerprint, "p2")),
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(reasons(&json(&run)), ["keyscope:key-compromised"]);
    let (code, decision) = decide(&store, None, successor, "succ", "2026-06-02T00:01:00Z");
    assert_eq!(code, 0, "{decision}");
    let recorded = events(&audit);
    assert!(
        recorded.contains(&"key-quarantined groq-shared".to_owned()),
        "{recorded:?}"
    );
    assert!(
        recorded.contains(&format!("key-revoked {}", scoped.id)),
        "{recorded:?}"
    );
}

/// Expiry and the scope's maximum age: due for rotation first, then expired, and the expiry
/// is an audit record.
#[test]
fn an_expiring_key_is_due_then_expired_and_audited() {
    let store = TempStore::new();
    let audit = store.audit();
    let run = ks(
        &store,
        None,
        &[
            "key",
            "issue",
            "--scope",
            "prod/care-notes-summarization",
            "--expires",
            "30d",
            "--format",
            "json",
            "--now",
            "2026-03-01T00:00:00Z",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let key = json(&run);
    let (id, secret) = (key["id"].as_str().unwrap(), key["secret"].as_str().unwrap());
    let list = |now: &str| {
        let run = ks(
            &store,
            None,
            &[
                "key",
                "list",
                "--format",
                "json",
                "--now",
                now,
                "--audit-log",
                audit.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        json(&run)[0].clone()
    };
    assert_eq!(list("2026-03-20T00:00:00Z")["due_for_rotation"], false);
    assert_eq!(list("2026-03-29T00:00:00Z")["due_for_rotation"], true);
    let (code, decision) = decide(&store, None, secret, "late", "2026-03-31T00:00:01Z");
    assert_eq!(
        (code, reasons(&decision)),
        (1, vec!["expired-key".to_owned()])
    );
    let expired = list("2026-03-31T00:00:01Z");
    assert_eq!(expired["state"], "expired");
    assert_eq!(events(&audit), [format!("key-expired {id}")]);
    list("2026-04-02T00:00:00Z");
    assert_eq!(events(&audit).len(), 1, "an expiry is recorded once");
}

/// A client that keeps its connection open between requests, as a gateway does. Opening one
/// connection per request leaves every closed one in TIME-WAIT: a few seconds of load exhaust
/// the machine's ephemeral ports, and every later request fails before it is sent.
#[derive(Default)]
struct KeepAlive {
    stream: Option<std::io::BufReader<std::net::TcpStream>>,
}

impl KeepAlive {
    /// POSTs `body` to `path` of `served`; `None` when the connection fails or closes
    /// unanswered (the next request opens a new one).
    fn post(
        &mut self,
        served: &crate::serve::Served,
        path: &str,
        body: &str,
    ) -> Option<(u16, String)> {
        let answer = self.exchange(served, path, body);
        if answer.is_none() {
            self.stream = None;
            // A refused connection returns at once: do not spin on it.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        answer
    }

    fn exchange(
        &mut self,
        served: &crate::serve::Served,
        path: &str,
        body: &str,
    ) -> Option<(u16, String)> {
        use std::io::{BufRead as _, Read as _, Write as _};
        if self.stream.is_none() {
            let stream = std::net::TcpStream::connect(served.addr).ok()?;
            self.stream = Some(std::io::BufReader::new(stream));
        }
        let reader = self.stream.as_mut()?;
        write!(
            reader.get_mut(),
            "POST {path} HTTP/1.1\r\nHost: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            served.addr,
            body.len()
        )
        .ok()?;
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let status = line.split(' ').nth(1)?.parse().ok()?;
        let (mut length, mut close) = (None, false);
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':')?;
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "connection" => close = value.trim().eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut answer = vec![0; length?];
        reader.read_exact(&mut answer).ok()?;
        if close {
            self.stream = None;
        }
        Some((status, String::from_utf8(answer).ok()?))
    }
}
