//! `keyscope serve` as a process: the same decisions as `keyscope decide`, fixture by fixture.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use crate::{keyscope_with_input, root};

/// A `keyscope serve` child, killed when dropped.
pub(crate) struct Served {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Served {
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyscope"))
            .arg("serve")
            .args(args)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in `{line}`"));
        Self { child, addr }
    }

    /// POSTs `body` to `path`; the status and the body of the answer.
    pub(crate) fn post(&self, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every fixture that needs no ledger setup, through the service and through `keyscope decide`,
/// at the fixture's time: the same decision, reasons and figures, to the byte of JSON.
#[test]
fn the_service_decides_every_fixture_as_decide_does() {
    let store = root().join("policies");
    let mut by_time: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for entry in std::fs::read_dir(store.join("tests")).unwrap() {
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        for case in file["cases"].as_array().unwrap() {
            if case.get("spent").is_some() || case.get("before").is_some() {
                continue;
            }
            let time = case["request"]["context"]["time"]
                .as_str()
                .unwrap()
                .to_owned();
            by_time.entry(time).or_default().push(case.clone());
        }
    }
    let mut compared = 0;
    for (time, cases) in &by_time {
        let served = Served::start(&["--no-ledger", "--listen", "127.0.0.1:0", "--now", time]);
        for case in cases {
            let request = case["request"].to_string();
            let (status, body) = served.post("/access/v1/evaluation", &request);
            assert_eq!(status, 200, "{}: {body}", case["name"]);
            let served_json: serde_json::Value = serde_json::from_str(&body).unwrap();
            let decided = keyscope_with_input(
                &root(),
                &["decide", "--now", time],
                Some(request.as_bytes()),
            );
            let decided_json: serde_json::Value = serde_json::from_str(&decided.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", decided.stdout));
            assert_eq!(served_json, decided_json, "{}", case["name"]);
            assert_eq!(
                served_json["decision"], case["expect"]["decision"],
                "{}",
                case["name"]
            );
            compared += 1;
        }
    }
    assert!(compared >= 30, "{compared}");
}

#[test]
fn serve_refuses_a_public_address_without_tokens() {
    let run = keyscope_with_input(
        &root(),
        &["serve", "--no-ledger", "--listen", "0.0.0.0:0"],
        None,
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("not a loopback address"),
        "{}",
        run.stderr
    );
}

/// SIGTERM ends the service cleanly (exit 0).
#[test]
fn serve_stops_on_sigterm() {
    let mut served = Served::start(&["--no-ledger", "--listen", "127.0.0.1:0"]);
    let (status, _) = served.post(
        "/access/v1/evaluation",
        r#"{"subject": {"type": "Key", "id": "dev-general-1"}, "action": {"name": "invoke"},
            "resource": {"type": "Model", "id": "gpt-4o-mini"}}"#,
    );
    assert_eq!(status, 200);
    let killed = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = served.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// SIGHUP reloads the store; a store that fails to load is refused and the old one keeps
/// deciding.
#[test]
fn serve_reloads_on_sighup_and_refuses_a_broken_store() {
    let store = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, store.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let served = Served::start(&[
        "--store",
        store.path().to_str().unwrap(),
        "--no-ledger",
        "--listen",
        "127.0.0.1:0",
        "--now",
        "2026-11-22T18:00:00Z",
    ]);
    let request = r#"{"subject": {"type": "Key", "id": "dev-general-1"}, "action": {"name": "invoke"},
        "resource": {"type": "Model", "id": "gpt-4o-mini"}}"#;
    let decision = |served: &Served| {
        let (status, body) = served.post("/access/v1/evaluation", request);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["decision"].clone()
    };
    assert_eq!(decision(&served), true);
    let scopes = store.path().join("scopes.toml");
    let text = std::fs::read_to_string(&scopes).unwrap();
    let revoked = text.replace(
        "id = \"dev-general-1\"\nscope = \"dev/general\"",
        "id = \"dev-general-1\"\nscope = \"dev/general\"\nrevoked = true",
    );
    assert_ne!(text, revoked);
    let hangup = |served: &Served| {
        let sent = Command::new("kill")
            .args(["-HUP", &served.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    std::fs::write(&scopes, revoked).unwrap();
    hangup(&served);
    assert_eq!(decision(&served), false);
    std::fs::write(&scopes, "[[scope]]\nid = ").unwrap();
    hangup(&served);
    assert_eq!(
        decision(&served),
        false,
        "the last good store keeps deciding"
    );
}

/// The gateway example of docs/gateway.md, standard-library Python, against a real service:
/// reserve and commit, a revoked key denied, a spent request id denied, an unreachable service
/// denied (fail closed).
#[test]
fn the_python_gateway_example_reserves_commits_and_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let served = Served::start(&[
        "--ledger",
        ledger.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--now",
        "2026-11-22T18:00:00Z",
    ]);
    let url = format!("http://{}", served.addr);
    let gate = |key: &str, request_id: &str, url: &str| {
        let output = Command::new("python3")
            .arg(root().join("examples/gateway/keyscope_gate.py"))
            .args([url, key, "gpt-4o-mini", request_id])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, out) = gate("dev-general-1", "g1", &url);
    assert_eq!(code, Some(0), "{out}");
    // 100 in + 100 out at $0.15/$0.60 per M held; 80 in + 20 out committed.
    assert_eq!(out.trim(), "allowed: held 75 micro-dollars, committed 24");
    let (code, out) = gate("dev-general-1", "g1", &url);
    assert_eq!(
        (code, out.trim()),
        (Some(1), "denied: keyscope:request-id-reused")
    );
    let (code, out) = gate("care-notes-prod-2026-09", "g2", &url);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("revoked-key"), "{out}");
    drop(served);
    let (code, out) = gate("dev-general-1", "g3", &url);
    assert_eq!(
        (code, out.trim()),
        (Some(1), "denied: keyscope-unreachable")
    );
}

/// A key pasted into the model id, the action or the request id is never echoed whole: not in
/// the decision, not in an error, not in the audit log.
#[test]
fn serve_never_echoes_a_key_a_caller_pasted() {
    // Synthetic, Groq-shaped.
    let key = format!(
        "gsk_{}",
        "kD7DPxW3TuKgyEQRgbpgRGXhsNsEehcGaWthZRKb2Vz4apm0wpmd"
    );
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit");
    let served = Served::start(&[
        "--no-ledger",
        "--listen",
        "127.0.0.1:0",
        "--audit-log",
        audit.to_str().unwrap(),
    ]);
    for body in [
        format!(
            r#"{{"subject": {{"type": "Key", "id": "dev-general-1"}}, "action": {{"name": "{key}"}},
                "resource": {{"type": "Model", "id": "{key}"}}, "context": {{"request_id": "{key}"}}}}"#
        ),
        format!(
            r#"{{"subject": {{"type": "Key", "id": "dev-general-1"}}, "action": {{"name": "invoke"}},
                "resource": {{"type": "Model", "id": "gpt-4o-mini"}}, "context": {{"input_tokens": "{key}"}}}}"#
        ),
    ] {
        let (status, answer) = served.post("/access/v1/evaluation", &body);
        assert!(status == 200 || status == 400, "{status}");
        assert!(!answer.contains(&key), "{answer}");
        assert!(answer.contains("gsk_"), "{answer}");
    }
    // The writer flushes each batch as it comes; give it a moment before the process goes.
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(served);
    let mut records = 0;
    for entry in std::fs::read_dir(&audit).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(&key), "{text}");
        records += text.lines().count();
    }
    assert_eq!(
        records, 1,
        "the decision is on record (the 400 is not a decision)"
    );
}
