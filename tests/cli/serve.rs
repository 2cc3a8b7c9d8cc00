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
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in `{line}`"));
        Self { child, addr }
    }

    /// Sends the service the signal `name` (`TERM`, `HUP`) with `kill`.
    pub(crate) fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} failed");
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
    // A token file with a plain token rather than its digest is refused too.
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "my-plain-token\n").unwrap();
    let run = keyscope_with_input(
        &root(),
        &[
            "serve",
            "--no-ledger",
            "--listen",
            "0.0.0.0:0",
            "--tokens",
            tokens.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("line 1"), "{}", run.stderr);
    assert!(!run.stderr.contains("my-plain-token"), "{}", run.stderr);
}

/// With a token file the service listens beyond loopback and decides only for a caller that
/// presents a token of the file.
#[test]
fn serve_with_tokens_listens_beyond_loopback() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let digest: String = sha2::Sha256::digest(b"synthetic-gateway-token")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(&tokens, format!("# the gateway\n{digest} litellm\n")).unwrap();
    let served = Served::start(&[
        "--no-ledger",
        "--listen",
        "0.0.0.0:0",
        "--tokens",
        tokens.to_str().unwrap(),
    ]);
    let addr: SocketAddr = format!("127.0.0.1:{}", served.addr.port()).parse().unwrap();
    let ask = |token: &str| {
        let body = r#"{"subject": {"type": "Key", "id": "dev-general-1"}, "action": {"name": "invoke"},
            "resource": {"type": "Model", "id": "gpt-4o-mini"}}"#;
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    assert!(ask("wrong").starts_with("HTTP/1.1 401"));
    let allowed = ask("synthetic-gateway-token");
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert!(allowed.contains("\"decision\":true"), "{allowed}");
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
    served.signal("TERM");
    let status = served.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A client that sent a large batch and stopped reading the answer cannot hold the service up
/// on SIGTERM for ever: once the shutdown grace runs out the busy connection is closed, the
/// service says so and exits 0.
#[test]
fn sigterm_does_not_wait_for_ever_on_a_client_that_stopped_reading() {
    let mut served = Served::start(&[
        "--no-ledger",
        "--listen",
        "127.0.0.1:0",
        "--shutdown-grace",
        "1s",
    ]);
    // Each item inherits everything; the answer (about 1 KB an item, over 20 MB) is far more
    // than the two sockets' buffers hold.
    let body = format!(
        r#"{{"subject": {{"type": "Key", "id": "dev-general-1"}}, "action": {{"name": "invoke"}},
            "resource": {{"type": "Model", "id": "gpt-4o-mini"}}, "evaluations": [{}]}}"#,
        vec!["{}"; 20_000].join(",")
    );
    let mut stalled = TcpStream::connect(served.addr).unwrap();
    write!(
        stalled,
        "POST /access/v1/evaluations HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        served.addr,
        body.len()
    )
    .unwrap();
    // An idle keep-alive connection does not hold the shutdown either.
    let _idle = TcpStream::connect(served.addr).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    served.signal("TERM");
    let asked = std::time::Instant::now();
    let status = loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < std::time::Duration::from_secs(30),
            "the service was still running 30 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let mut said = String::new();
    served
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert!(
        said.contains("closed 1 connection(s) still busy when the shutdown grace ran out"),
        "{said}"
    );
    // The client's connection is closed (reset, as the answer was cut short), not left hanging.
    stalled
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    match stalled.read_to_end(&mut answer) {
        Ok(_) => assert!(!answer.ends_with(b"]}"), "the whole answer arrived"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
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
        served.signal("HUP");
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
    // Batches: a short one is masked whole on its way out; a long one (16 items or more) is
    // decided and masked chunk by chunk on several threads. The key is in every item's model
    // and request id, and in the defaults' action.
    for items in [3, 40] {
        let item = format!(
            r#"{{"resource": {{"type": "Model", "id": "{key}"}}, "context": {{"request_id": "{key}"}}}}"#
        );
        let body = format!(
            r#"{{"subject": {{"type": "Key", "id": "dev-general-1"}}, "action": {{"name": "{key}"}},
                "evaluations": [{}]}}"#,
            vec![item; items].join(",")
        );
        let (status, answer) = served.post("/access/v1/evaluations", &body);
        assert_eq!(status, 200, "{answer}");
        assert!(!answer.contains(&key), "{answer}");
        let answers: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let answers = answers["evaluations"].as_array().unwrap();
        assert_eq!(answers.len(), items, "{answer}");
        for answer in answers {
            assert_eq!(answer["decision"], false, "{answer}");
            assert!(answer.to_string().contains("gsk_"), "{answer}");
        }
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
        records,
        1 + 3 + 40,
        "every decision is on record (the 400 is not a decision)"
    );
}

/// SIGTERM in the middle of a burst of reserve+commit cycles from eight clients: the service
/// finishes what it has accepted and exits 0, and every commit it acknowledged is in the
/// ledger, as is every hold it granted.
#[test]
fn sigterm_mid_burst_loses_no_acknowledged_commit() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let mut served = Served::start(&[
        "--ledger",
        ledger.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--now",
        "2026-11-22T18:00:00Z",
    ]);
    let addr = served.addr;
    let started = std::sync::Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let started = std::sync::Arc::clone(&started);
            std::thread::spawn(move || burst(addr, client, &started))
        })
        .collect();
    while !started.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    served.signal("TERM");
    assert_eq!(served.child.wait().unwrap().code(), Some(0));
    let (mut held, mut committed) = (Vec::new(), Vec::new());
    for client in clients {
        let (h, c) = client.join().unwrap();
        held.extend(h);
        committed.extend(c);
    }
    assert!(
        committed.len() >= 8,
        "{} commits before SIGTERM",
        committed.len()
    );
    let ledger = keyscope_policy::Ledger::open(&ledger).unwrap();
    for id in &committed {
        assert_eq!(
            ledger.request_state(id).unwrap(),
            Some(keyscope_policy::RequestState::Committed),
            "{id}"
        );
    }
    for id in &held {
        assert!(ledger.request_state(id).unwrap().is_some(), "{id}");
    }
}

/// Reserves and commits until the service stops answering: the request ids whose hold was
/// granted, and those whose commit was acknowledged.
fn burst(
    addr: SocketAddr,
    client: usize,
    started: &std::sync::atomic::AtomicBool,
) -> (Vec<String>, Vec<String>) {
    let (mut held, mut committed) = (Vec::new(), Vec::new());
    for n in 0.. {
        let id = format!("burst-{client}-{n}");
        let reserve = format!(
            r#"{{"subject": {{"type": "Key", "id": "dev-general-1"}}, "action": {{"name": "invoke"}},
                "resource": {{"type": "Model", "id": "gpt-4o-mini"}},
                "context": {{"request_id": "{id}", "reserve": true, "input_tokens": 10}}}}"#
        );
        let Some((200, body)) = exchange(addr, "/access/v1/evaluation", &reserve) else {
            break;
        };
        assert!(body.contains("\"decision\":true"), "{body}");
        held.push(id.clone());
        started.store(true, std::sync::atomic::Ordering::SeqCst);
        let path = format!("/v1/usage/{id}/commit");
        match exchange(addr, &path, r#"{"input_tokens": 8}"#) {
            Some((200, body)) if body.contains("\"committed\"") => committed.push(id),
            Some((status, body)) => panic!("{status}: {body}"),
            None => break,
        }
    }
    (held, committed)
}

/// One POST, or `None` when the service did not answer (it is gone or going).
fn exchange(addr: SocketAddr, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The LiteLLM version the hook is tested with: the newest whose `proxy` extra resolves on PyPI
/// (1.110's names a `litellm-proxy` release that was never published).
const LITELLM: &str = "litellm[proxy]==1.108.7";

/// A Python with LiteLLM's proxy installed: `KEYSCOPE_LITELLM_PYTHON`, or a virtualenv made once
/// under the target directory (pip, from PyPI). The test fails, never passes, without one.
fn litellm_python() -> std::path::PathBuf {
    if let Some(python) = std::env::var_os("KEYSCOPE_LITELLM_PYTHON") {
        return python.into();
    }
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("litellm-venv");
    let python = venv.join("bin/python");
    let ready = venv.join("installed");
    if !ready.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success(), "python3 -m venv failed");
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", LITELLM])
            .status()
            .unwrap();
        assert!(
            installed.success(),
            "pip install {LITELLM} failed: set KEYSCOPE_LITELLM_PYTHON to a python that has it"
        );
        std::fs::write(&ready, LITELLM).unwrap();
    }
    python
}

/// A LiteLLM proxy child, killed when dropped.
struct LiteLlm(Child);

impl Drop for LiteLlm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The LiteLLM hook of docs/gateway.md in a real LiteLLM proxy (its model mocked) in front of a
/// real `keyscope serve`: an allowed call is answered and its usage committed in the ledger; a
/// revoked key is refused with 403 and its reasons, and nothing is held for it.
#[test]
fn the_litellm_hook_reserves_commits_and_denies() {
    let python = litellm_python();
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
    let hook = dir.path().join("hook");
    std::fs::create_dir(&hook).unwrap();
    for file in ["keyscope_gate.py", "litellm/keyscope_litellm.py"] {
        let from = root().join("examples/gateway").join(file);
        std::fs::copy(&from, hook.join(from.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        hook.join("config.yaml"),
        "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      \
         model: openai/gpt-4o-mini\n      api_key: not-used-the-model-is-mocked\n      \
         mock_response: a mocked answer\n\
         general_settings:\n  custom_auth: keyscope_litellm.user_api_key_auth\n\
         litellm_settings:\n  callbacks: keyscope_litellm.settle\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _proxy = LiteLlm(
        Command::new(&python)
            .args([
                "-m",
                "litellm.proxy.proxy_cli",
                "--host",
                "127.0.0.1",
                "--port",
            ])
            .arg(port.to_string())
            .arg("--config")
            .arg(hook.join("config.yaml"))
            .env("KEYSCOPE_URL", format!("http://{}", served.addr))
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_TELEMETRY", "False")
            // LiteLLM refuses to start without a master key; the hook never uses it.
            .env("LITELLM_MASTER_KEY", master_key(&dir))
            .current_dir(&hook)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while exchange_get(proxy, "/health/liveliness") != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "LiteLLM did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let chat = |key: &str, request_id: &str| {
        chat_completion(proxy, key, request_id).unwrap_or_else(|| panic!("no answer from LiteLLM"))
    };
    let (status, body) = chat("dev-general-1", "litellm-1");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("a mocked answer"), "{body}");
    let ledger = keyscope_policy::Ledger::open(&ledger).unwrap();
    let committed = (0..100).any(|_| {
        let state = ledger.request_state("litellm-1").unwrap();
        if state == Some(keyscope_policy::RequestState::Committed) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    });
    assert!(committed, "{:?}", ledger.request_state("litellm-1"));
    let (status, body) = chat("care-notes-prod-2026-09", "litellm-2");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("revoked-key"), "{body}");
    assert_eq!(ledger.request_state("litellm-2").unwrap(), None);
}

/// A throwaway master key for the LiteLLM proxy, made at test time.
fn master_key(dir: &tempfile::TempDir) -> String {
    use sha2::Digest as _;
    let seed = format!("{:?}{:?}", dir.path(), std::time::SystemTime::now());
    let digest: String = sha2::Sha256::digest(seed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sk-{digest}")
}

fn exchange_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split(' ').nth(1)?.parse().ok()
}

fn chat_completion(addr: SocketAddr, key: &str, request_id: &str) -> Option<(u16, String)> {
    let body = r#"{"model": "gpt-4o-mini", "max_tokens": 100,
                   "messages": [{"role": "user", "content": "Say hello."}]}"#;
    let mut stream = TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {key}\r\nX-Request-ID: {request_id}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_owned()))
}
