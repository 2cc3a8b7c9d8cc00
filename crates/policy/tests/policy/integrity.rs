//! A ledger damaged outside keyscope (SQLite keeps no page checksums) is refused, never decided
//! on; `verify` names the damage and `rebuild_totals` recomputes what can be (issue 19).

use keyscope_policy::{Clock, Engine, Ledger, LedgerError, LedgerMode, Request, Timestamp, Usage};

use crate::common::default_engine;

const DAY: &str = "2026-11-22";

fn engine() -> Engine {
    default_engine().with_clock(Clock::Fixed(
        Timestamp::parse("2026-11-22T18:00:00Z").unwrap(),
    ))
}

fn request(id: &str) -> Request {
    let mut request = Request::new("dev-general-1", "gpt-4o-mini");
    request.request_id = Some(id.to_owned());
    request.input_tokens = 1_000;
    request.max_output_tokens = Some(1_000);
    request
}

/// A file ledger with 40 committed requests (a fold moved them into `totals`) and one live hold.
fn ledger_with_history() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let engine = engine();
    let ledger = Ledger::open(&path).unwrap();
    let now = Timestamp::parse("2026-11-22T18:00:00Z").unwrap();
    for i in 0..40 {
        let id = format!("c{i}");
        let decision = engine
            .decide_with_ledger(&request(&id), &ledger, LedgerMode::Reserve)
            .unwrap();
        assert!(decision.allowed);
        let usage = Usage {
            cost_micros: Some(1_000),
            ..Usage::default()
        };
        ledger.commit(&id, &usage, now).unwrap();
    }
    assert!(
        engine
            .decide_with_ledger(&request("live"), &ledger, LedgerMode::Reserve)
            .unwrap()
            .allowed
    );
    assert!(ledger.verify().unwrap().is_intact());
    (dir, path)
}

fn tamper(path: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    assert!(conn.execute(sql, []).unwrap() > 0, "{sql}");
}

fn check(engine: &Engine, ledger: &Ledger) -> Result<bool, LedgerError> {
    engine
        .decide_with_ledger(&request("next"), ledger, LedgerMode::Check)
        .map(|d| d.allowed)
}

#[test]
fn a_changed_total_is_refused_then_rebuilt() {
    let (_dir, path) = ledger_with_history();
    let engine = engine();
    let ledger = Ledger::open(&path).unwrap();
    let before = ledger.window_totals("dev/general", DAY).unwrap();
    // Spend in the day window drops from $0.04 to nothing: one flipped number.
    tamper(
        &path,
        "UPDATE totals SET committed_micros = 0 WHERE scope = 'dev/general' AND period = '2026-11-22'",
    );
    let err = check(&engine, &ledger).unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("dev/general"), "{err}");

    let report = ledger.verify().unwrap();
    assert!(!report.is_intact());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("`dev/general` for `2026-11-22` fails its checksum")),
        "{:?}",
        report.problems
    );
    let rebuilt = ledger.rebuild_totals().unwrap();
    assert!(rebuilt.totals > 0);
    assert!(ledger.verify().unwrap().is_intact());
    assert!(check(&engine, &ledger).unwrap());
    assert_eq!(ledger.window_totals("dev/general", DAY).unwrap(), before);
}

#[test]
fn a_total_rewritten_with_a_valid_looking_row_disagrees_with_its_requests() {
    let (_dir, path) = ledger_with_history();
    let ledger = Ledger::open(&path).unwrap();
    // A whole row deleted: no checksum fails, but the requests still sum to spend.
    tamper(
        &path,
        "DELETE FROM totals WHERE scope = 'dev/general' AND period = '2026-11-22'",
    );
    let report = ledger.verify().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("have no total")),
        "{:?}",
        report.problems
    );
    ledger.rebuild_totals().unwrap();
    assert!(ledger.verify().unwrap().is_intact());
}

#[test]
fn a_changed_hold_is_refused_and_cannot_be_rebuilt() {
    let (_dir, path) = ledger_with_history();
    let engine = engine();
    let ledger = Ledger::open(&path).unwrap();
    tamper(
        &path,
        "UPDATE recent SET held_micros = 1 WHERE request_id = 'live'",
    );
    let err = check(&engine, &ledger).unwrap_err();
    assert!(err.to_string().contains("`live`"), "{err}");
    let report = ledger.verify().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("`live`")),
        "{:?}",
        report.problems
    );
    assert!(matches!(
        ledger.rebuild_totals(),
        Err(LedgerError::Corrupt(_))
    ));
    // Still refused: nothing was decided on the damaged row.
    assert!(check(&engine, &ledger).is_err());
}

#[test]
fn a_changed_committed_request_is_named() {
    let (_dir, path) = ledger_with_history();
    let ledger = Ledger::open(&path).unwrap();
    tamper(
        &path,
        "UPDATE requests SET cost_micros = 1 WHERE request_id = 'c3'",
    );
    let report = ledger.verify().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("`c3`")),
        "{:?}",
        report.problems
    );
}
