use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyscope_policy::{
    Engine, Ledger, LedgerMode, Request, RequestState, SpendGrouping, Timestamp, Usage,
};

use crate::common::default_engine;

const LEDGER_ENV: &str = "KEYSCOPE_CRASH_TEST_LEDGER";
const COST: u64 = 7;

/// The child: reserves and commits forever, printing each request id once its commit returned.
/// Only runs when the parent test starts it.
#[test]
#[ignore = "started by killed_writer_loses_nothing_committed"]
fn child_writer() {
    let Ok(path) = std::env::var(LEDGER_ENV) else {
        return;
    };
    let engine: Engine = default_engine();
    let ledger = Ledger::open(std::path::Path::new(&path)).unwrap();
    let round = std::process::id();
    for i in 0.. {
        let id = format!("{round}-{i}");
        let mut request = Request::new("research-local-1", "llama-3.3-70b-instruct");
        request.time = Timestamp::parse("2026-11-22T18:00:00Z");
        request.request_id = Some(id.clone());
        let decision = engine
            .decide_with_ledger(&request, &ledger, LedgerMode::Reserve)
            .unwrap();
        assert!(decision.allowed, "{decision:?}");
        let usage = Usage {
            cost_micros: Some(COST),
            input_tokens: 10,
            ..Usage::default()
        };
        ledger
            .commit(
                &id,
                &usage,
                Timestamp::parse("2026-11-22T18:00:01Z").unwrap(),
            )
            .unwrap();
        println!("committed {id}");
    }
}

#[test]
fn killed_writer_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let mut reported = Vec::new();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::child_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(LEDGER_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(id) = line.strip_prefix("committed ") {
                    let _ = sender.send(id.to_owned());
                }
            }
        });
        // Wait for some progress however slow the machine is, then kill the child in the
        // middle of whatever it is doing.
        let wanted = 20 + 15 * round;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ids = Vec::new();
        while ids.len() < wanted {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(id) => ids.push(id),
                Err(e) => panic!("round {round}: {} commits before {e}", ids.len()),
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        ids.extend(receiver.try_iter());
        reported.extend(ids);
    }
    let ledger = Ledger::open(&path).unwrap();
    for id in &reported {
        assert_eq!(
            ledger.request_state(id).unwrap().map(RequestState::as_str),
            Some("committed"),
            "{id}"
        );
    }
    // The running totals agree with the rows, whatever instant the kills hit.
    let rows = ledger.spend(SpendGrouping::Scope, None).unwrap();
    let committed: u64 = rows.iter().map(|r| r.cost_micros).sum();
    let held: u64 = rows.iter().map(|r| r.held_micros).sum();
    assert!(committed >= reported.len() as u64 * COST);
    let totals = ledger
        .window_totals("research/local-models", "2026-11-22")
        .unwrap();
    assert_eq!(totals, (committed, held));
}
