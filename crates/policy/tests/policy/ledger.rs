use std::sync::Arc;

use keyscope_policy::{
    Engine, Ledger, LedgerError, LedgerMode, Request, RequestState, Settlement, SpendGrouping,
    Timestamp, Usage,
};

use crate::common::default_engine;

const CAP: u64 = 5_000_000;
const COST: u64 = 90_000;

fn opus(id: &str) -> Request {
    let mut request = Request::new("dev-general-1", "claude-opus-4-1-20250805");
    request.time = Timestamp::parse("2026-11-22T18:00:00Z");
    request.input_tokens = 1_000;
    request.max_output_tokens = Some(1_000);
    request.request_id = Some(id.to_owned());
    request
}

#[test]
fn no_overspend_under_concurrency() {
    let engine = Arc::new(default_engine());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    Ledger::open(&path).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let engine = Arc::clone(&engine);
            let path = path.clone();
            std::thread::spawn(move || {
                // Each thread has its own connection, as separate processes would.
                let ledger = Ledger::open(&path).unwrap();
                let mut allowed = 0u64;
                for i in 0..20 {
                    let id = format!("t{t}-{i}");
                    let decision = engine
                        .decide_with_ledger(&opus(&id), &ledger, LedgerMode::Reserve)
                        .unwrap();
                    let (committed, held) =
                        ledger.window_totals("dev/general", "2026-11-22").unwrap();
                    assert!(committed + held <= CAP, "{committed} + {held} > {CAP}");
                    if decision.allowed {
                        allowed += 1;
                        let usage = Usage {
                            input_tokens: 1_000,
                            output_tokens: 1_000,
                            ..Usage::default()
                        };
                        let now = Timestamp::parse("2026-11-22T18:00:01Z").unwrap();
                        assert_eq!(
                            ledger.commit(&id, &usage, now).unwrap(),
                            Settlement::Committed { cost_micros: COST }
                        );
                        assert_eq!(
                            ledger.commit(&id, &usage, now).unwrap(),
                            Settlement::AlreadyCommitted { cost_micros: COST }
                        );
                    } else {
                        assert_eq!(decision.reason_ids(), ["over-budget"]);
                    }
                }
                allowed
            })
        })
        .collect();
    let allowed: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(
        allowed,
        CAP / COST,
        "every dollar that fits is spent, none more"
    );
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(
        ledger.window_totals("dev/general", "2026-11-22").unwrap(),
        (allowed * COST, 0)
    );
    assert_eq!(
        ledger.window_totals("acme/platform", "2026-11").unwrap(),
        (allowed * COST, 0)
    );
    let rows = ledger.spend(SpendGrouping::Scope, None).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].requests, rows[0].cost_micros),
        (allowed, allowed * COST)
    );
}

#[test]
fn two_phase_reserve_commit_release_and_ttl() {
    let engine: Engine = default_engine();
    let ledger = Ledger::open_in_memory().unwrap().with_hold_ttl(60);
    let first = engine
        .decide_with_ledger(&opus("a"), &ledger, LedgerMode::Reserve)
        .unwrap();
    let reservation = first.reservation.clone().unwrap();
    assert_eq!(
        (reservation.held_micros, reservation.existing),
        (COST, false)
    );
    assert_eq!(reservation.expires_at, "2026-11-22T18:01:00Z");
    // A retried reservation does not hold twice.
    let retry = engine
        .decide_with_ledger(&opus("a"), &ledger, LedgerMode::Reserve)
        .unwrap();
    assert!(retry.allowed && retry.reservation.unwrap().existing);
    assert_eq!(
        ledger.window_totals("dev/general", "2026-11-22").unwrap(),
        (0, COST)
    );
    let now = Timestamp::parse("2026-11-22T18:00:30Z").unwrap();
    assert_eq!(ledger.release("a", now).unwrap(), Settlement::Released);
    assert_eq!(
        ledger.window_totals("dev/general", "2026-11-22").unwrap(),
        (0, 0)
    );
    let reused = engine
        .decide_with_ledger(&opus("a"), &ledger, LedgerMode::Reserve)
        .unwrap();
    assert!(!reused.allowed);
    assert_eq!(reused.reason_ids(), ["keyscope:request-id-reused"]);

    // A hold that is never settled lapses after its TTL, at the next write.
    engine
        .decide_with_ledger(&opus("b"), &ledger, LedgerMode::Reserve)
        .unwrap();
    let mut later = opus("c");
    later.time = Timestamp::parse("2026-11-22T18:00:59Z");
    let check = engine
        .decide_with_ledger(&later, &ledger, LedgerMode::Check)
        .unwrap();
    assert_eq!(check.budgets[0].held_micros, COST);
    later.time = Timestamp::parse("2026-11-22T18:01:00Z");
    let check = engine
        .decide_with_ledger(&later, &ledger, LedgerMode::Check)
        .unwrap();
    assert_eq!(check.budgets[0].held_micros, 0);
    assert_eq!(
        ledger.request_state("b").unwrap().map(RequestState::as_str),
        Some("expired")
    );
    assert!(check.reservation.is_none());
}

#[test]
fn reserving_needs_a_request_id() {
    let engine = default_engine();
    let ledger = Ledger::open_in_memory().unwrap();
    let mut request = opus("x");
    request.request_id = None;
    let decision = engine
        .decide_with_ledger(&request, &ledger, LedgerMode::Reserve)
        .unwrap();
    assert!(!decision.allowed);
    assert_eq!(decision.reason_ids(), ["keyscope:missing-request-id"]);
}

#[test]
fn settling_unknown_requests_is_an_error() {
    let ledger = Ledger::open_in_memory().unwrap();
    let now = Timestamp::from_unix(0);
    assert!(matches!(
        ledger.commit("nope", &Usage::default(), now),
        Err(LedgerError::UnknownRequest(_))
    ));
    assert!(matches!(
        ledger.release("nope", now),
        Err(LedgerError::UnknownRequest(_))
    ));
}

#[test]
fn spend_groups_by_scope_model_and_day() {
    let engine = default_engine();
    let ledger = Ledger::open_in_memory().unwrap();
    for (id, day) in [
        ("d1", "2026-11-21T10:00:00Z"),
        ("d2", "2026-11-22T10:00:00Z"),
        ("d3", "2026-11-22T11:00:00Z"),
    ] {
        let mut request = opus(id);
        request.time = Timestamp::parse(day);
        assert!(
            engine
                .decide_with_ledger(&request, &ledger, LedgerMode::Reserve)
                .unwrap()
                .allowed
        );
        ledger
            .commit(
                id,
                &Usage {
                    cost_micros: Some(1_000),
                    ..Usage::default()
                },
                Timestamp::from_unix(0),
            )
            .unwrap();
    }
    let by_day = ledger.spend(SpendGrouping::Day, None).unwrap();
    let days: Vec<_> = by_day
        .iter()
        .map(|r| (r.group.as_str(), r.requests, r.cost_micros))
        .collect();
    assert_eq!(days, [("2026-11-21", 1, 1_000), ("2026-11-22", 2, 2_000)]);
    let by_model = ledger
        .spend(SpendGrouping::Model, Some("2026-11-22"))
        .unwrap();
    assert_eq!(by_model.len(), 1);
    assert_eq!(
        (by_model[0].group.as_str(), by_model[0].requests),
        ("claude-opus-4-1-20250805", 2)
    );
}

#[test]
fn exclusive_ledger_is_shared_again_once_closed() {
    let engine = default_engine();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    {
        let ledger = Ledger::open_exclusive(&path).unwrap();
        assert!(
            engine
                .decide_with_ledger(&opus("x1"), &ledger, LedgerMode::Reserve)
                .unwrap()
                .allowed
        );
        let usage = Usage {
            cost_micros: Some(5),
            ..Usage::default()
        };
        ledger
            .commit("x1", &usage, Timestamp::from_unix(0))
            .unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(
        ledger
            .request_state("x1")
            .unwrap()
            .map(RequestState::as_str),
        Some("committed")
    );
}
