//! The service on a real socket (port 0), asked over HTTP/1.1 by a plain client.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyscope_policy::{Clock, Engine, Ledger, Store, Timestamp};
use keyscope_server::{Service, ServiceConfig};
use serde_json::{Value, json};

fn store_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn engine_at(store: &Path, time: &str) -> Engine {
    Engine::new(Store::load(store).unwrap())
        .with_clock(Clock::Fixed(Timestamp::parse(time).unwrap()))
}

fn start(ledger: Option<Ledger>) -> Service {
    let engine = engine_at(&store_dir(), "2026-11-22T18:00:00Z");
    Service::start(
        "127.0.0.1:0".parse().unwrap(),
        ServiceConfig::new(engine, ledger),
    )
    .unwrap()
}

/// One HTTP/1.1 exchange: status, headers (lower-cased names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // A refused body may be answered and the connection closed before all of it is sent.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> Answer {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn request(key: &str, model: &str, context: Value) -> Value {
    json!({
        "subject": {"type": "Key", "id": key}, "action": {"name": "invoke"},
        "resource": {"type": "Model", "id": model}, "context": context,
    })
}

fn reasons(decision: &Value) -> Vec<String> {
    decision["context"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_evaluation_is_the_library_decision() {
    let service = start(None);
    let body = request(
        "care-notes-prod-2026-10",
        "gpt-4o",
        json!({"source_ip": "10.20.1.7", "input_tokens": 1200, "max_output_tokens": 800}),
    );
    let answer = post(service.addr(), "/access/v1/evaluation", &body);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let engine = engine_at(&store_dir(), "2026-11-22T18:00:00Z");
    let expected = engine
        .decide(&keyscope_policy::Request::from_value(body).unwrap())
        .to_authzen();
    assert_eq!(answer.json(), expected);
    assert_eq!(
        reasons(&answer.json()),
        ["versioned-model-in-patient-facing-production"]
    );
    service.stop().unwrap();
}

#[test]
fn malformed_requests_get_400_never_a_decision() {
    let service = start(None);
    let addr = service.addr();
    let json_header = [("Content-Type", "application/json")];
    for (name, headers, body) in [
        ("not JSON", &json_header[..], "{\"subject\": ".to_owned()),
        (
            "no content type",
            &[][..],
            request("dev-general-1", "gpt-4o-mini", json!({})).to_string(),
        ),
        (
            "text content type",
            &[("Content-Type", "text/plain")][..],
            request("dev-general-1", "gpt-4o-mini", json!({})).to_string(),
        ),
        (
            "missing resource",
            &json_header[..],
            json!({"subject": {"type": "Key", "id": "k"}, "action": {"name": "invoke"}})
                .to_string(),
        ),
        (
            "mistyped tokens",
            &json_header[..],
            request(
                "dev-general-1",
                "gpt-4o-mini",
                json!({"input_tokens": "many"}),
            )
            .to_string(),
        ),
        (
            "mistyped reserve",
            &json_header[..],
            request("dev-general-1", "gpt-4o-mini", json!({"reserve": "yes"})).to_string(),
        ),
        ("an array", &json_header[..], "[]".to_owned()),
    ] {
        let answer = http(
            addr,
            "POST",
            "/access/v1/evaluation",
            headers,
            body.as_bytes(),
        );
        assert_eq!(answer.status, 400, "{name}: {}", answer.body);
        let json = answer.json();
        assert!(json.get("decision").is_none(), "{name}: {json}");
        assert_eq!(json["error"]["status"], 400, "{name}");
    }
    // Unknown members are ignored, as AuthZEN asks.
    let mut body = request("dev-general-1", "gpt-4o-mini", json!({"trace_id": "t1"}));
    body["subject"]["tenant"] = json!("acme");
    body["extension"] = json!({"x": 1});
    let answer = post(addr, "/access/v1/evaluation", &body);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["decision"], true);
    // Too large a body: 413.
    let big = vec![b' '; 2 << 20];
    let answer = http(addr, "POST", "/access/v1/evaluation", &json_header, &big);
    assert_eq!(answer.status, 413);
    service.stop().unwrap();
}

#[test]
fn the_request_id_header_is_echoed_and_discovery_names_the_endpoints() {
    let service = start(None);
    let body = request("dev-general-1", "gpt-4o-mini", json!({}));
    let answer = http(
        service.addr(),
        "POST",
        "/access/v1/evaluation",
        &[
            ("Content-Type", "application/json"),
            ("X-Request-ID", "req-42"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(answer.header("x-request-id"), Some("req-42"));
    let answer = http(
        service.addr(),
        "GET",
        "/.well-known/authzen-configuration",
        &[],
        b"",
    );
    assert_eq!(answer.status, 200);
    let config = answer.json();
    let base = format!("http://{}", service.addr());
    assert_eq!(config["policy_decision_point"], base);
    assert_eq!(
        config["access_evaluations_endpoint"],
        format!("{base}/access/v1/evaluations")
    );
    assert_eq!(
        http(service.addr(), "GET", "/healthz", &[], b"").status,
        200
    );
    let ready = http(service.addr(), "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["ledger"], "none");
    service.stop().unwrap();
}

#[test]
fn a_long_batch_is_decided_on_several_threads_in_order() {
    let service = start(None);
    let addr = service.addr();
    // 101 items, long enough to be split into more chunks than a few cores take at once: a
    // pattern of allowed, unknown model and malformed.
    let items: Vec<Value> = (0..101)
        .map(|i| match i % 3 {
            0 => json!({"resource": {"type": "Model", "id": "gpt-4o-mini"}}),
            1 => json!({"resource": {"type": "Model", "id": format!("no-such-model-{i}")}}),
            _ => json!({"resource": {"type": "Model"}}),
        })
        .collect();
    let body = json!({
        "subject": {"type": "Key", "id": "dev-general-1"},
        "action": {"name": "invoke"},
        "context": {"input_tokens": 10},
        "evaluations": items,
    });
    let answer = post(addr, "/access/v1/evaluations", &body);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answers = answer.json()["evaluations"].as_array().unwrap().clone();
    assert_eq!(answers.len(), 101);
    for (i, item) in answers.iter().enumerate() {
        match i % 3 {
            0 => assert_eq!(item["decision"], true, "item {i}: {item}"),
            1 => {
                assert_eq!(
                    reasons(item),
                    ["keyscope:unknown-model"],
                    "item {i}: {item}"
                );
                assert!(
                    item.to_string().contains(&format!("no-such-model-{i}`")),
                    "item {i} answers its own request: {item}"
                );
            }
            _ => assert_eq!(item["context"]["error"]["status"], 400, "item {i}: {item}"),
        }
    }
    service.stop().unwrap();
}

#[test]
fn a_batch_keeps_order_inherits_defaults_and_short_circuits() {
    let service = start(None);
    let addr = service.addr();
    let batch = |semantic: Option<&str>| {
        let mut body = json!({
            "subject": {"type": "Key", "id": "dev-general-1"},
            "action": {"name": "invoke"},
            "context": {"input_tokens": 10},
            "evaluations": [
                {"resource": {"type": "Model", "id": "gpt-4o-mini"}},
                {"resource": {"type": "Model", "id": "no-such-model"}},
                {"resource": {"type": "Model"}},
                {"subject": {"type": "Key", "id": "care-notes-prod-2026-09"},
                 "resource": {"type": "Model", "id": "gpt-4o-2024-11-20"}},
                {"resource": {"type": "Model", "id": "gpt-4o-mini"}},
            ],
        });
        if let Some(semantic) = semantic {
            body["options"] = json!({"evaluations_semantic": semantic});
        }
        let answer = post(addr, "/access/v1/evaluations", &body);
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()["evaluations"].as_array().unwrap().clone()
    };
    let all = batch(None);
    let decisions: Vec<bool> = all
        .iter()
        .map(|e| e["decision"].as_bool().unwrap())
        .collect();
    assert_eq!(decisions, [true, false, false, false, true]);
    assert_eq!(reasons(&all[1]), ["keyscope:unknown-model"]);
    assert_eq!(
        all[2]["context"]["error"]["status"], 400,
        "a bad item is a deny"
    );
    assert!(reasons(&all[3]).contains(&"revoked-key".to_owned()));
    assert_eq!(batch(Some("execute_all")).len(), 5);
    assert_eq!(batch(Some("deny_on_first_deny")).len(), 2);
    assert_eq!(batch(Some("permit_on_first_permit")).len(), 1);

    let answer = post(
        addr,
        "/access/v1/evaluations",
        &json!({"evaluations": [], "options": {"evaluations_semantic": "sometimes"}}),
    );
    assert_eq!(answer.status, 400);
    let answer = post(addr, "/access/v1/evaluations", &json!({"evaluations": {}}));
    assert_eq!(answer.status, 400);
    // Without `evaluations`, the body is one evaluation, answered as one.
    let answer = post(
        addr,
        "/access/v1/evaluations",
        &request("dev-general-1", "gpt-4o-mini", json!({})),
    );
    assert_eq!(answer.json()["decision"], true);
    service.stop().unwrap();
}

/// A copy of the default store whose `dev/general` scope has a $1.00 daily cap.
fn one_dollar_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(store_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let scopes = std::fs::read_to_string(dir.path().join("scopes.toml")).unwrap();
    let capped = scopes.replace(
        "budget = { day_usd = 5, month_usd = 50,",
        "budget = { day_usd = 1, month_usd = 50,",
    );
    assert_ne!(scopes, capped);
    std::fs::write(dir.path().join("scopes.toml"), capped).unwrap();
    dir
}

/// 64 concurrent clients each reserve $0.10 against a $1.00 cap: exactly 10 are allowed, and
/// what is held and committed never passes the cap. Commits and releases are idempotent.
#[test]
fn sixty_four_clients_race_for_a_one_dollar_cap() {
    let store = one_dollar_store();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let service = Service::start(
        "127.0.0.1:0".parse().unwrap(),
        ServiceConfig::new(
            engine_at(store.path(), "2026-11-22T18:00:00Z"),
            Some(Ledger::open(&path).unwrap()),
        ),
    )
    .unwrap();
    let addr = service.addr();
    // $0.10: 1,000,000 input tokens of gpt-4.1-nano at $0.10/M, no output.
    let clients: Vec<_> = (0..64)
        .map(|i| {
            std::thread::spawn(move || {
                let body = request(
                    "dev-general-1",
                    "gpt-4.1-nano-2025-04-14",
                    json!({"request_id": format!("race-{i}"), "reserve": true,
                           "input_tokens": 1_000_000, "max_output_tokens": 0}),
                );
                post(addr, "/access/v1/evaluation", &body).json()
            })
        })
        .collect();
    let answers: Vec<Value> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let allowed: Vec<&Value> = answers.iter().filter(|a| a["decision"] == true).collect();
    assert_eq!(allowed.len(), 10, "{answers:#?}");
    for answer in &allowed {
        let obligation = &answer["context"]["obligations"][0];
        assert_eq!(obligation["id"], "keyscope:budget-hold");
        assert_eq!(obligation["held_micros"], 100_000);
    }
    for answer in answers.iter().filter(|a| a["decision"] == false) {
        assert_eq!(reasons(answer), ["over-budget"], "{answer}");
    }
    let ledger = Arc::new(Ledger::open(&path).unwrap());
    assert_eq!(
        ledger.window_totals("dev/general", "2026-11-22").unwrap(),
        (0, 1_000_000)
    );
    let id = allowed[0]["context"]["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let commit = |id: &str| {
        post(
            addr,
            &format!("/v1/usage/{id}/commit"),
            &json!({"input_tokens": 500_000, "output_tokens": 0}),
        )
    };
    let first = commit(&id);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["outcome"], "committed");
    assert_eq!(first.json()["cost_micros"], 50_000);
    assert_eq!(commit(&id).json()["outcome"], "already-committed");
    let release = http(addr, "POST", &format!("/v1/usage/{id}/release"), &[], b"");
    assert_eq!(release.status, 409);
    assert_eq!(commit("never-reserved").status, 404);
    assert_eq!(
        ledger.window_totals("dev/general", "2026-11-22").unwrap(),
        (50_000, 900_000)
    );
    let ready = http(addr, "GET", "/readyz", &[], b"");
    assert_eq!(ready.json()["ledger"], "ok");
    service.stop().unwrap();
}

#[test]
fn a_reservation_without_a_ledger_is_denied() {
    let service = start(None);
    let body = request(
        "dev-general-1",
        "gpt-4o-mini",
        json!({"request_id": "r1", "reserve": true}),
    );
    let answer = post(service.addr(), "/access/v1/evaluation", &body).json();
    assert_eq!(answer["decision"], false);
    assert_eq!(reasons(&answer), ["keyscope:ledger-unavailable"]);
    service.stop().unwrap();
}

/// Reloads in a loop while four clients decide without pause: no request fails, every answer
/// comes from a whole store (the old one or the new), a valid change takes effect and an
/// invalid store is refused while the old one keeps deciding.
#[test]
fn reloads_under_load_fail_no_request() {
    let store = one_dollar_store();
    let scopes_path = store.path().join("scopes.toml");
    let valid = std::fs::read_to_string(&scopes_path).unwrap();
    let revoked = valid.replace(
        "id = \"dev-general-1\"\nscope = \"dev/general\"",
        "id = \"dev-general-1\"\nscope = \"dev/general\"\nrevoked = true",
    );
    assert_ne!(valid, revoked);
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let mut config = ServiceConfig::new(engine_at(store.path(), "2026-11-22T18:00:00Z"), None);
    config.store_dir = Some(store.path().to_owned());
    config.on_event = Arc::new(move |event| {
        sink.lock().unwrap().push(format!("{event:?}"));
    });
    let service = Service::start("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let addr = service.addr();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let body = request("dev-general-1", "gpt-4o-mini", json!({}));
                let mut seen = (0u32, 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let answer = post(addr, "/access/v1/evaluation", &body);
                    assert_eq!(answer.status, 200, "{}", answer.body);
                    let json = answer.json();
                    match json["decision"].as_bool().unwrap() {
                        true => seen.0 += 1,
                        false => {
                            assert_eq!(reasons(&json), ["revoked-key"], "{json}");
                            seen.1 += 1;
                        }
                    }
                }
                seen
            })
        })
        .collect();
    for round in 0..20 {
        let text = if round % 2 == 0 { &revoked } else { &valid };
        std::fs::write(&scopes_path, text).unwrap();
        service.reload().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A broken store is refused; the last good one (not revoked) keeps deciding.
    std::fs::write(&scopes_path, "[[scope]]\nid = ").unwrap();
    assert!(service.reload().is_err());
    let body = request("dev-general-1", "gpt-4o-mini", json!({}));
    assert_eq!(
        post(addr, "/access/v1/evaluation", &body).json()["decision"],
        true
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (allowed, denied) = clients
        .into_iter()
        .map(|c| c.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert!(
        allowed > 0 && denied > 0,
        "{allowed} allowed, {denied} denied"
    );
    let events = events.lock().unwrap();
    assert_eq!(
        events.iter().filter(|e| e.starts_with("Reloaded")).count(),
        20
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("ReloadRefused"))
            .count(),
        1
    );
    service.stop().unwrap();
}

/// An audit directory on a disk that refuses writes makes decisions deny, never allow.
#[test]
fn a_full_audit_disk_denies() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("audit-2026-11-22-000.jsonl")).unwrap();
    let mut config = ServiceConfig::new(engine_at(&store_dir(), "2026-11-22T18:00:00Z"), None);
    config.audit = Some(keyscope_policy::audit::AuditLog::open(dir.path(), 16).unwrap());
    let service = Service::start("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let body = request("dev-general-1", "gpt-4o-mini", json!({}));
    let mut denied = None;
    for _ in 0..100 {
        let answer = post(service.addr(), "/access/v1/evaluation", &body).json();
        if answer["decision"] == false {
            denied = Some(answer);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let denied = denied.expect("the failing disk turns decisions into denials");
    assert_eq!(reasons(&denied), ["keyscope:audit-unavailable"]);
    // The records lost with the disk are counted, and the service says it is not ready.
    let ready = http(service.addr(), "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 503);
    let audit = ready.json()["audit"].as_str().unwrap().to_owned();
    assert!(audit.contains("could not be written"), "{audit}");
    for _ in 0..5 {
        let answer = post(service.addr(), "/access/v1/evaluation", &body).json();
        assert_eq!(answer["decision"], false, "{answer}");
    }
    service.stop().unwrap();
}

/// The three searches give exactly what evaluations would allow, in pages that add up.
#[test]
fn searches_list_what_evaluations_allow() {
    let service = start(None);
    let addr = service.addr();
    let engine = engine_at(&store_dir(), "2026-11-22T18:00:00Z");
    let context = json!({"source_ip": "10.20.1.7", "input_tokens": 1000, "max_output_tokens": 500});
    let allowed = |key: &str, model: &str, action: &str| {
        let mut body = request(key, model, context.clone());
        body["action"] = json!({"name": action});
        engine
            .decide(&keyscope_policy::Request::from_value(body).unwrap())
            .allowed
    };
    let ids = |answer: &Value, field: &str| -> Vec<String> {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[field].as_str().unwrap().to_owned())
            .collect()
    };

    let key = "care-notes-prod-2026-10";
    let query = json!({"subject": {"type": "Key", "id": key}, "action": {"name": "invoke"},
                       "resource": {"type": "Model"}, "context": context});
    let answer = post(addr, "/access/v1/search/resource", &query).json();
    let models = ids(&answer, "id");
    let mut expected: Vec<String> = engine
        .store()
        .catalog()
        .models()
        .iter()
        .map(|m| m.id.clone())
        .filter(|m| allowed(key, m, "invoke"))
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(models, expected);
    assert!(
        models.iter().all(|m| m != "gpt-4o"),
        "no aliases in production: {models:?}"
    );

    // Pages of two add up to the whole list.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let mut page = query.clone();
        page["page"] = json!({"token": token, "limit": 2});
        let answer = post(addr, "/access/v1/search/resource", &page).json();
        paged.extend(ids(&answer, "id"));
        token = answer["page"]["next_token"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, expected);

    let query = json!({"subject": {"type": "Key"}, "action": {"name": "invoke"},
                       "resource": {"type": "Model", "id": "gpt-4o-mini"}, "context": context});
    let keys = ids(
        &post(addr, "/access/v1/search/subject", &query).json(),
        "id",
    );
    let mut expected: Vec<String> = engine
        .store()
        .scopes()
        .keys()
        .iter()
        .map(|k| k.id.clone())
        .filter(|k| allowed(k, "gpt-4o-mini", "invoke"))
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    assert!(
        !keys.contains(&"care-notes-prod-2026-09".to_owned()),
        "revoked"
    );

    let query = json!({"subject": {"type": "Key", "id": "dev-general-1"},
                       "resource": {"type": "Model", "id": "gpt-4o-mini"}, "context": context});
    let actions = ids(
        &post(addr, "/access/v1/search/action", &query).json(),
        "name",
    );
    assert!(actions.contains(&"invoke".to_owned()), "{actions:?}");

    let mut bad = query.clone();
    bad["page"] = json!({"token": "not-ours"});
    assert_eq!(post(addr, "/access/v1/search/action", &bad).status, 400);
    service.stop().unwrap();
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    http(addr, "GET", path, &[], b"")
}

/// The value of one sample line of a Prometheus exposition, by its whole name and labels.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// `/metrics` counts decisions by outcome and reason, their latency, the ledger's latency by
/// operation, reloads, and the audit backlog; no key id or model a caller sent is a label.
#[test]
fn metrics_count_decisions_ledger_calls_reloads_and_the_audit_backlog() {
    let store = one_dollar_store();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServiceConfig::new(
        engine_at(store.path(), "2026-11-22T18:00:00Z"),
        Some(Ledger::open(&dir.path().join("ledger.sqlite")).unwrap()),
    );
    config.store_dir = Some(store.path().to_owned());
    config.audit =
        Some(keyscope_policy::audit::AuditLog::open(&dir.path().join("audit"), 16).unwrap());
    let service = Service::start("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let addr = service.addr();
    let reserve = request(
        "dev-general-1",
        "gpt-4o-mini",
        json!({"request_id": "m1", "reserve": true, "input_tokens": 10}),
    );
    assert_eq!(
        post(addr, "/access/v1/evaluation", &reserve).json()["decision"],
        true
    );
    let revoked = request("care-notes-prod-2026-09", "gpt-4o-2024-11-20", json!({}));
    assert_eq!(
        post(addr, "/access/v1/evaluation", &revoked).json()["decision"],
        false
    );
    assert_eq!(
        post(addr, "/v1/usage/m1/commit", &json!({"input_tokens": 5})).status,
        200
    );
    service.reload().unwrap();

    let answer = get(addr, "/metrics");
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = answer.body;
    let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}\n{text}"));
    assert_eq!(value("keyscope_decisions_total{outcome=\"allow\"}"), 1.0);
    assert_eq!(value("keyscope_decisions_total{outcome=\"deny\"}"), 1.0);
    assert_eq!(
        value("keyscope_decision_reasons_total{outcome=\"deny\",reason=\"revoked-key\"}"),
        1.0
    );
    assert_eq!(value("keyscope_decision_seconds_count"), 2.0);
    assert_eq!(value("keyscope_decision_seconds_bucket{le=\"+Inf\"}"), 2.0);
    assert_eq!(value("keyscope_ledger_seconds_count{op=\"decide\"}"), 2.0);
    assert_eq!(value("keyscope_ledger_seconds_count{op=\"commit\"}"), 1.0);
    assert_eq!(value("keyscope_ledger_seconds_count{op=\"release\"}"), 0.0);
    assert_eq!(value("keyscope_reloads_total"), 1.0);
    assert_eq!(value("keyscope_reloads_refused_total"), 0.0);
    assert!(value("keyscope_audit_backlog") <= 2.0);
    assert_eq!(value("keyscope_audit_healthy"), 1.0);
    for sent in ["dev-general-1", "care-notes", "gpt-4o", "m1"] {
        assert!(!text.contains(sent), "`{sent}` in a label:\n{text}");
    }
    service.stop().unwrap();
}

/// Sends a request's headers, announcing a body it never sends: the request holds its slot
/// until the body timeout.
fn stalled(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /access/v1/evaluation HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"subject\""
    )
    .unwrap();
    stream
}

fn status_of(stream: &mut TcpStream) -> u16 {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.split(' ')
        .nth(1)
        .unwrap_or_else(|| panic!("no status in `{text}`"))
        .parse()
        .unwrap()
}

/// At the concurrency limit one more request is shed with 503 at once, not queued; a body that
/// does not arrive in time is a 408 that frees the slot.
#[test]
fn at_the_concurrency_limit_requests_are_shed_and_slow_bodies_time_out() {
    let mut config = ServiceConfig::new(engine_at(&store_dir(), "2026-11-22T18:00:00Z"), None);
    config.limits = keyscope_server::Limits::default()
        .with_concurrency(2)
        .with_timeouts(
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(3),
        );
    let service = Service::start("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let addr = service.addr();
    let mut slow = [stalled(addr), stalled(addr)];
    // The second trickles its body, a byte at a time: the timeout is for the whole body.
    let mut trickle = slow[1].try_clone().unwrap();
    std::thread::spawn(move || {
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(250));
            if trickle.write_all(b" ").is_err() {
                break;
            }
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let body = request("dev-general-1", "gpt-4o-mini", json!({}));
    let started = std::time::Instant::now();
    let shed = post(addr, "/access/v1/evaluation", &body);
    assert_eq!(shed.status, 503, "{}", shed.body);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "shed at once"
    );
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(shed.json()["error"]["status"], 503);
    for stream in &mut slow {
        assert_eq!(status_of(stream), 408);
    }
    assert_eq!(post(addr, "/access/v1/evaluation", &body).status, 200);
    let metrics = get(addr, "/metrics").body;
    assert_eq!(sample(&metrics, "keyscope_requests_shed_total"), Some(1.0));
    assert_eq!(
        sample(&metrics, "keyscope_requests_timed_out_total"),
        Some(2.0)
    );
    service.stop().unwrap();
}

/// A client that does not finish its headers in time is disconnected without an answer.
#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let mut config = ServiceConfig::new(engine_at(&store_dir(), "2026-11-22T18:00:00Z"), None);
    config.limits = keyscope_server::Limits::default().with_timeouts(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(5),
    );
    let service = Service::start("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let mut stream = TcpStream::connect(service.addr()).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    assert!(
        read.is_ok(),
        "closed by the service, not by the read timeout: {read:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert!(!String::from_utf8_lossy(&raw).contains(" 200 "));
    service.stop().unwrap();
}

/// SHA-256 of the synthetic token `test`.
const TEST_TOKEN_DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Beyond loopback a service needs tokens or refuses to start; with tokens, a request without
/// one or with a wrong one is a 401, the right one is decided, and probes need none.
#[test]
fn bearer_tokens_guard_every_path_but_the_probes() {
    let engine = || engine_at(&store_dir(), "2026-11-22T18:00:00Z");
    let refused = Service::start(
        "0.0.0.0:0".parse().unwrap(),
        ServiceConfig::new(engine(), None),
    );
    assert!(
        matches!(
            refused,
            Err(keyscope_server::ServeError::Unauthenticated { .. })
        ),
        "{refused:?}"
    );
    let mut config = ServiceConfig::new(engine(), None);
    config.tokens = Some(keyscope_server::Tokens::parse(TEST_TOKEN_DIGEST).unwrap());
    let service = Service::start("0.0.0.0:0".parse().unwrap(), config).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", service.addr().port())
        .parse()
        .unwrap();
    let body = request("dev-general-1", "gpt-4o-mini", json!({})).to_string();
    let ask = |authorization: Option<&str>| {
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend(authorization.map(|a| ("Authorization", a)));
        http(
            addr,
            "POST",
            "/access/v1/evaluation",
            &headers,
            body.as_bytes(),
        )
    };
    let without = ask(None);
    assert_eq!(without.status, 401, "{}", without.body);
    assert_eq!(without.header("www-authenticate"), Some("Bearer"));
    assert!(without.json().get("decision").is_none());
    assert_eq!(ask(Some("Bearer tesT")).status, 401);
    assert_eq!(ask(Some("Basic dGVzdA==")).status, 401);
    let allowed = ask(Some("Bearer test"));
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.json()["decision"], true);
    assert_eq!(get(addr, "/healthz").status, 200);
    assert_eq!(get(addr, "/readyz").status, 200);
    assert_eq!(get(addr, "/metrics").status, 401);
    let metrics = http(
        addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer test")],
        b"",
    );
    assert_eq!(
        sample(&metrics.body, "keyscope_requests_unauthorized_total"),
        Some(4.0)
    );
    service.stop().unwrap();
}

/// With a certificate (made by the test) the service speaks HTTPS, and only HTTPS.
#[test]
fn tls_serves_decisions_over_https() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let mut config = ServiceConfig::new(engine_at(&store_dir(), "2026-11-22T18:00:00Z"), None);
    config.tls = Some(keyscope_server::Tls::from_pem_files(&cert, &key).unwrap());
    let service = Service::start("127.0.0.1:0".parse().unwrap(), config).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connection =
        rustls::ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, TcpStream::connect(service.addr()).unwrap());
    let body = request("dev-general-1", "gpt-4o-mini", json!({})).to_string();
    write!(
        tls,
        "POST /access/v1/evaluation HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"decision\":true"), "{text}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(service.addr()).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let _ = plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(!String::from_utf8_lossy(&raw).contains("HTTP/1.1 200"));

    assert!(matches!(
        keyscope_server::Tls::from_pem_files(&key, &key),
        Err(keyscope_server::TlsError::Pem { .. })
    ));
    service.stop().unwrap();
}

/// `/readyz` names the store's revision: a hash of its files that changes with them on reload
/// and comes back when they do.
#[test]
fn readiness_names_the_store_revision() {
    let store = one_dollar_store();
    let mut config = ServiceConfig::new(engine_at(store.path(), "2026-11-22T18:00:00Z"), None);
    config.store_dir = Some(store.path().to_owned());
    let service = Service::start("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let revision = || {
        let ready = get(service.addr(), "/readyz").json();
        assert_eq!(ready["ready"], true, "{ready}");
        ready["revision"].as_str().unwrap().to_owned()
    };
    let first = revision();
    assert_eq!(first.len(), 64);
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
    let scopes = store.path().join("scopes.toml");
    let text = std::fs::read_to_string(&scopes).unwrap();
    std::fs::write(&scopes, format!("{text}\n# edited\n")).unwrap();
    service.reload().unwrap();
    let second = revision();
    assert_ne!(first, second);
    std::fs::write(&scopes, "[[scope]]\nid = ").unwrap();
    assert!(service.reload().is_err());
    assert_eq!(
        revision(),
        second,
        "a refused store does not change the revision"
    );
    std::fs::write(&scopes, text).unwrap();
    service.reload().unwrap();
    assert_eq!(revision(), first);
    service.stop().unwrap();
}

#[test]
fn a_commit_above_its_hold_is_charged_and_flagged_in_the_answer_and_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let audit_dir = dir.path().join("audit");
    let mut config = ServiceConfig::new(
        engine_at(&store_dir(), "2026-11-22T18:00:00Z"),
        Some(Ledger::open(&dir.path().join("ledger.sqlite")).unwrap()),
    );
    config.audit = Some(keyscope_policy::audit::AuditLog::open(&audit_dir, 16).unwrap());
    let service = Service::start("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let addr = service.addr();
    let reserve = request(
        "dev-general-1",
        "gpt-4o-mini",
        json!({"request_id": "over", "reserve": true, "input_tokens": 10, "max_output_tokens": 10}),
    );
    let decision = post(addr, "/access/v1/evaluation", &reserve).json();
    assert_eq!(decision["decision"], true, "{decision}");
    let commit = post(
        addr,
        "/v1/usage/over/commit",
        &json!({"cost_micros": 50_000_000}),
    );
    assert_eq!(commit.status, 200, "{}", commit.body);
    let answer = commit.json();
    assert_eq!(answer["outcome"], "committed");
    assert_eq!(answer["cost_micros"], 50_000_000);
    assert_eq!(answer["flags"]["exceeds_hold"], true, "{answer}");
    drop(service);
    let records =
        keyscope_policy::audit::query(&audit_dir, &keyscope_policy::audit::AuditQuery::default())
            .unwrap();
    let commit = records
        .iter()
        .find(|r| r.event.as_deref() == Some("commit"))
        .unwrap_or_else(|| panic!("no commit record in {records:#?}"));
    assert_eq!(commit.flags, ["exceeds-hold"]);
    assert_eq!(
        (
            commit.key.as_str(),
            commit.scope.as_deref(),
            commit.cost_micros
        ),
        ("dev-general-1", Some("dev/general"), Some(50_000_000))
    );
    assert!(
        keyscope_policy::audit::verify(&audit_dir)
            .unwrap()
            .problems
            .is_empty()
    );
}
