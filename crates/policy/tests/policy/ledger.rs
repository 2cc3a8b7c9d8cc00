//! The ledger's behaviour, run against every backend: SQLite and a real Redis (issue 15).

use std::sync::Arc;

use keyscope_policy::{
    CommitFlags, Engine, Ledger, LedgerError, LedgerMode, Request, RequestState, Settlement,
    SpendGrouping, SpendRecord, Store, Timestamp, Usage,
};

use keyscope_policy::audit::AuditRecord;

use crate::backends::{TestLedger, both};
use crate::common::{default_engine, engine_at_request_time, store_copy};

const CAP: u64 = 5_000_000;
pub(crate) const COST: u64 = 90_000;

pub(crate) fn opus(id: &str) -> Request {
    let mut request = Request::new("dev-general-1", "claude-opus-4-1-20250805");
    request.time = Timestamp::parse("2026-11-22T18:00:00Z");
    request.input_tokens = 1_000;
    request.max_output_tokens = Some(1_000);
    request.request_id = Some(id.to_owned());
    request
}

#[test]
fn no_overspend_under_concurrency() {
    for t in both("no_overspend_under_concurrency") {
        no_overspend_on(Arc::new(t));
    }
}

pub(crate) fn no_overspend_on(backend: Arc<TestLedger>) {
    let engine = Arc::new(default_engine());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let engine = Arc::clone(&engine);
            let backend = Arc::clone(&backend);
            std::thread::spawn(move || {
                // Each thread has its own connection, as separate processes would.
                let ledger = backend.open();
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
                            Settlement::Committed {
                                cost_micros: COST,
                                held_micros: COST,
                                flags: CommitFlags::default(),
                            }
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
        "{}: every dollar that fits is spent, none more",
        backend.name
    );
    let ledger = backend.open();
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
    for t in both("two_phase_reserve_commit_release_and_ttl") {
        two_phase_on(&t.open().with_hold_ttl(60));
    }
}

pub(crate) fn two_phase_on(ledger: &Ledger) {
    let engine: Engine = default_engine();
    let first = engine
        .decide_with_ledger(&opus("a"), ledger, LedgerMode::Reserve)
        .unwrap();
    let reservation = first.reservation.clone().unwrap();
    assert_eq!(
        (reservation.held_micros, reservation.existing),
        (COST, false)
    );
    assert_eq!(reservation.expires_at, "2026-11-22T18:01:00Z");
    // A retried reservation does not hold twice.
    let retry = engine
        .decide_with_ledger(&opus("a"), ledger, LedgerMode::Reserve)
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
        .decide_with_ledger(&opus("a"), ledger, LedgerMode::Reserve)
        .unwrap();
    assert!(!reused.allowed);
    assert_eq!(reused.reason_ids(), ["keyscope:request-id-reused"]);

    // A hold that is never settled lapses after its TTL, at the next write.
    engine
        .decide_with_ledger(&opus("b"), ledger, LedgerMode::Reserve)
        .unwrap();
    let mut later = opus("c");
    later.time = Timestamp::parse("2026-11-22T18:00:59Z");
    let check = engine
        .decide_with_ledger(&later, ledger, LedgerMode::Check)
        .unwrap();
    assert_eq!(check.budgets[0].held_micros, COST);
    later.time = Timestamp::parse("2026-11-22T18:01:00Z");
    let check = engine
        .decide_with_ledger(&later, ledger, LedgerMode::Check)
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
    for t in both("settling_unknown_requests_is_an_error") {
        let ledger = t.open();
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
}

#[test]
fn spend_groups_by_scope_model_key_and_day() {
    for t in both("spend_groups_by_scope_model_key_and_day") {
        spend_groups_on(&t.open());
    }
}

fn spend_groups_on(ledger: &Ledger) {
    let engine = default_engine();
    for (id, day) in [
        ("d1", "2026-11-21T10:00:00Z"),
        ("d2", "2026-11-22T10:00:00Z"),
        ("d3", "2026-11-22T11:00:00Z"),
    ] {
        let mut request = opus(id);
        request.time = Timestamp::parse(day);
        assert!(
            engine
                .decide_with_ledger(&request, ledger, LedgerMode::Reserve)
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
    let by_key = ledger.spend(SpendGrouping::Key, None).unwrap();
    let keys: Vec<_> = by_key
        .iter()
        .map(|r| (r.group.as_str(), r.requests, r.cost_micros))
        .collect();
    assert_eq!(keys, [("dev-general-1", 3, 3_000)]);
    let by_scope = ledger.spend(SpendGrouping::Scope, None).unwrap();
    assert_eq!(by_scope.len(), 1);
    assert_eq!(by_scope[0].group, "dev/general");
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

/// Spend recorded outside a reservation, charged to `scope` and its ancestors.
fn spent(ledger: &Ledger, id: &str, scope: &str, micros: u64, at: &str) {
    spent_under(&default_engine(), ledger, id, scope, micros, at);
}

fn spent_under(engine: &Engine, ledger: &Ledger, id: &str, scope: &str, micros: u64, at: &str) {
    engine
        .record_spend(
            ledger,
            &SpendRecord {
                request_id: id.to_owned(),
                scope: scope.to_owned(),
                model: "claude-opus-4-1-20250805".to_owned(),
                cost_micros: micros,
                tokens: 0,
                time: Timestamp::parse(at).unwrap(),
            },
        )
        .unwrap();
}

fn reserve_at(ledger: &Ledger, id: &str, at: &str, output_tokens: u64) -> Vec<String> {
    reserve_under(&default_engine(), ledger, id, at, output_tokens)
}

fn reserve_under(
    engine: &Engine,
    ledger: &Ledger,
    id: &str,
    at: &str,
    output_tokens: u64,
) -> Vec<String> {
    let mut request = opus(id);
    request.time = Timestamp::parse(at);
    request.max_output_tokens = Some(output_tokens);
    let decision = engine
        .decide_with_ledger(&request, ledger, LedgerMode::Reserve)
        .unwrap();
    if decision.allowed {
        vec!["allowed".to_owned()]
    } else {
        decision
            .reason_ids()
            .iter()
            .map(|r| r.to_string())
            .collect()
    }
}

#[test]
fn exactly_the_cap_is_admitted_and_a_micro_dollar_more_is_not() {
    for t in both("exactly_the_cap_is_admitted_and_a_micro_dollar_more_is_not") {
        let ledger = t.open();
        // dev/general: $5 a day. Leave exactly one request's worth ($0.09).
        spent(
            &ledger,
            "s1",
            "dev/general",
            CAP - COST,
            "2026-11-22T01:00:00Z",
        );
        assert_eq!(
            reserve_at(&ledger, "r1", "2026-11-22T18:00:00Z", 1_000),
            ["allowed"],
            "{}",
            t.name
        );
        assert_eq!(
            ledger.window_totals("dev/general", "2026-11-22").unwrap(),
            (CAP - COST, COST)
        );
        // Input alone ($0.015) no longer fits either.
        assert_eq!(
            reserve_at(&ledger, "r2", "2026-11-22T18:00:00Z", 0),
            ["over-budget"],
            "{}",
            t.name
        );
        ledger
            .release("r1", Timestamp::parse("2026-11-22T18:00:01Z").unwrap())
            .unwrap();
        assert_eq!(
            reserve_at(&ledger, "r3", "2026-11-22T18:00:02Z", 1_000),
            ["allowed"],
            "{}: a released hold gives its budget back",
            t.name
        );
    }
}

#[test]
fn an_ancestor_cap_binds_a_scope_with_room_of_its_own() {
    for t in both("an_ancestor_cap_binds_a_scope_with_room_of_its_own") {
        let ledger = t.open();
        // acme/platform: $100 a day over all its scopes. Spent elsewhere under it, bar $0.015.
        spent(
            &ledger,
            "s1",
            "staging/general",
            15_000_000,
            "2026-11-22T01:00:00Z",
        );
        spent(
            &ledger,
            "s2",
            "acme/platform",
            85_000_000 - 15_000,
            "2026-11-22T01:00:00Z",
        );
        assert_eq!(
            reserve_at(&ledger, "r1", "2026-11-22T18:00:00Z", 1_000),
            ["over-budget"],
            "{}",
            t.name
        );
        assert_eq!(
            reserve_at(&ledger, "r2", "2026-11-22T18:00:00Z", 0),
            ["allowed"],
            "{}: input alone costs exactly the $0.015 left",
            t.name
        );
        assert_eq!(
            ledger.window_totals("acme/platform", "2026-11-22").unwrap(),
            (100_000_000 - 15_000, 15_000)
        );
    }
}

#[test]
fn day_and_month_windows_roll_over_at_utc_midnight() {
    for t in both("day_and_month_windows_roll_over_at_utc_midnight") {
        let ledger = t.open();
        spent(&ledger, "s1", "dev/general", CAP, "2026-11-30T00:00:00Z");
        let last_second = "2026-11-30T23:59:59Z";
        assert_eq!(
            reserve_at(&ledger, "r1", last_second, 1_000),
            ["over-budget"]
        );
        assert_eq!(
            reserve_at(&ledger, "r2", "2026-12-01T00:00:00Z", 1_000),
            ["allowed"],
            "{}: a new day and a new month",
            t.name
        );
        // The month cap ($50) binds on the 29th after $45.01 spent on earlier days.
        let ledger = t.open();
        spent(
            &ledger,
            "m1",
            "dev/general",
            45_010_000,
            "2026-11-10T00:00:00Z",
        );
        assert_eq!(
            reserve_at(&ledger, "m2", "2026-11-29T12:00:00Z", 1_000),
            ["over-budget"],
            "{}: $45.01 + $5 spent this month, $0.09 more passes $50",
            t.name
        );
    }
}

/// The text of the default store's `scopes.toml` with its `time_zone` set to `zone`.
fn with_time_zone(text: &str, zone: &str) -> String {
    let set = text.replace("time_zone = \"UTC\"", &format!("time_zone = \"{zone}\""));
    assert_ne!(set, text, "the default store names its time zone");
    set
}

/// The default store with `time_zone = "America/New_York"` (UTC-5 in winter).
fn new_york_engine() -> Engine {
    let dir = store_copy();
    let scopes = dir.path().join("scopes.toml");
    let text = std::fs::read_to_string(&scopes).unwrap();
    std::fs::write(&scopes, with_time_zone(&text, "America/New_York")).unwrap();
    engine_at_request_time(Store::load(dir.path()).unwrap())
}

#[test]
fn day_and_month_windows_roll_over_at_the_stores_midnight() {
    for t in both("day_and_month_windows_roll_over_at_the_stores_midnight") {
        let engine = new_york_engine();
        let ledger = t.open();
        // 03:00 UTC on the 1st of December is 22:00 on the 30th of November in New York.
        spent_under(
            &engine,
            &ledger,
            "s1",
            "dev/general",
            CAP,
            "2026-12-01T03:00:00Z",
        );
        assert_eq!(
            ledger.window_totals("dev/general", "2026-11-30").unwrap(),
            (CAP, 0),
            "{}",
            t.name
        );
        assert_eq!(
            ledger.window_totals("dev/general", "2026-12-01").unwrap(),
            (0, 0)
        );
        // 23:59:59 in New York: still the spent day.
        let mut request = opus("r1");
        request.time = Timestamp::parse("2026-12-01T04:59:59Z");
        let decision = engine
            .decide_with_ledger(&request, &ledger, LedgerMode::Reserve)
            .unwrap();
        assert_eq!(decision.reason_ids(), ["over-budget"], "{}", t.name);
        let day = decision
            .budgets
            .iter()
            .find(|b| b.scope == "dev/general" && b.window == "day")
            .unwrap();
        assert_eq!(day.period, "2026-11-30");
        // Midnight in New York: a new day and a new month.
        assert_eq!(
            reserve_under(&engine, &ledger, "r2", "2026-12-01T05:00:00Z", 1_000),
            ["allowed"],
            "{}",
            t.name
        );
        assert_eq!(
            ledger.window_totals("dev/general", "2026-12-01").unwrap(),
            (0, COST)
        );
        assert_eq!(
            ledger.window_totals("dev/general", "2026-12").unwrap(),
            (0, COST)
        );
        assert_eq!(
            ledger.window_totals("dev/general", "2026-11").unwrap(),
            (CAP, 0)
        );
        // A migration keeps each request in the day it was decided in.
        let copy = TestLedger::sqlite();
        let copy = copy.open();
        copy.import(&ledger.export().unwrap()).unwrap();
        for period in ["2026-11-30", "2026-12-01", "2026-11", "2026-12"] {
            assert_eq!(
                copy.window_totals("dev/general", period).unwrap(),
                ledger.window_totals("dev/general", period).unwrap(),
                "{}: {period}",
                t.name
            );
        }
    }
}

#[test]
fn an_unknown_time_zone_is_refused_where_it_is_written() {
    let dir = store_copy();
    let scopes = dir.path().join("scopes.toml");
    let text = std::fs::read_to_string(&scopes).unwrap();
    let text = with_time_zone(&text, "Europe/Atlantis");
    let at = text.find("\"Europe/Atlantis\"").unwrap();
    std::fs::write(&scopes, text).unwrap();
    let error = Store::load(dir.path()).unwrap_err();
    assert!(error.to_string().contains("`Europe/Atlantis`"), "{error}");
    let labels: Vec<_> = miette::Diagnostic::labels(&error)
        .expect("the error points into scopes.toml")
        .map(|label| (label.label().map(str::to_owned), label.offset()))
        .collect();
    assert_eq!(
        labels,
        [(Some("unknown time zone".to_owned()), at)],
        "{error}"
    );
}

#[test]
fn commits_above_the_hold_or_after_expiry_are_charged_and_flagged() {
    for t in both("commits_above_the_hold_or_after_expiry_are_charged_and_flagged") {
        let ledger = t.open().with_hold_ttl(60);
        assert_eq!(
            reserve_at(&ledger, "big", "2026-11-22T18:00:00Z", 1_000),
            ["allowed"]
        );
        let four_dollars = Usage {
            cost_micros: Some(4_000_000),
            ..Usage::default()
        };
        let now = Timestamp::parse("2026-11-22T18:00:10Z").unwrap();
        let settlement = ledger.commit("big", &four_dollars, now).unwrap();
        let audited = AuditRecord::of_settlement(
            "big",
            ledger.request("big").unwrap().as_ref(),
            &settlement,
            now,
        );
        assert_eq!(
            (
                audited.key.as_str(),
                audited.scope.as_deref(),
                audited.model.as_str(),
                audited.event.as_deref(),
                audited.flags.clone(),
                audited.cost_micros
            ),
            (
                "dev-general-1",
                Some("dev/general"),
                "claude-opus-4-1-20250805",
                Some("commit"),
                vec!["exceeds-hold".to_owned()],
                Some(4_000_000)
            ),
            "{}: the audit record names the key, scope and model of the charge, and its flag",
            t.name
        );
        assert_eq!(
            settlement,
            Settlement::Committed {
                cost_micros: 4_000_000,
                held_micros: COST,
                flags: CommitFlags {
                    exceeds_hold: true,
                    late: false
                },
            },
            "{}",
            t.name
        );
        assert_eq!(
            ledger.window_totals("dev/general", "2026-11-22").unwrap(),
            (4_000_000, 0),
            "{}: the money was spent, so it counts",
            t.name
        );
        assert_eq!(
            reserve_at(&ledger, "late", "2026-11-23T09:00:00Z", 1_000),
            ["allowed"]
        );
        let after_ttl = Timestamp::parse("2026-11-23T09:05:00Z").unwrap();
        ledger.expire_holds(after_ttl).unwrap();
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 10,
            ..Usage::default()
        };
        let Settlement::Committed { flags, .. } = ledger.commit("late", &usage, after_ttl).unwrap()
        else {
            panic!("{}: a late commit is still a commit", t.name);
        };
        assert_eq!(
            flags,
            CommitFlags {
                exceeds_hold: false,
                late: true
            },
            "{}",
            t.name
        );
        assert_eq!(
            ledger.window_totals("dev/general", "2026-11-23").unwrap(),
            (15_750, 0)
        );
    }
}

#[test]
fn a_ledger_migrates_to_another_backend_without_counting_twice() {
    let Some(target) = TestLedger::redis("a_ledger_migrates_to_another_backend") else {
        return;
    };
    let source_file = TestLedger::sqlite();
    let source = source_file.open().with_hold_ttl(3_600);
    spent(
        &source,
        "s1",
        "dev/general",
        1_000_000,
        "2026-11-22T01:00:00Z",
    );
    assert_eq!(
        reserve_at(&source, "held", "2026-11-22T18:00:00Z", 1_000),
        ["allowed"]
    );
    assert_eq!(
        reserve_at(&source, "done", "2026-11-22T18:00:00Z", 1_000),
        ["allowed"]
    );
    assert_eq!(
        reserve_at(&source, "gone", "2026-11-22T18:00:00Z", 1_000),
        ["allowed"]
    );
    let at = Timestamp::parse("2026-11-22T18:00:05Z").unwrap();
    let usage = Usage {
        cost_micros: Some(70_000),
        ..Usage::default()
    };
    source.commit("done", &usage, at).unwrap();
    source.release("gone", at).unwrap();
    let records = source.export().unwrap();
    assert_eq!(records.len(), 4);
    let target = target.open();
    assert_eq!(target.import(&records).unwrap(), (4, 0));
    assert_eq!(
        target.import(&records).unwrap(),
        (0, 4),
        "a second run moves nothing"
    );
    for (scope, period) in [("dev/general", "2026-11-22"), ("acme/platform", "2026-11")] {
        assert_eq!(
            target.window_totals(scope, period).unwrap(),
            source.window_totals(scope, period).unwrap(),
            "{scope} {period}"
        );
    }
    assert_eq!(
        target.request_state("held").unwrap(),
        Some(RequestState::Held)
    );
    assert!(target.verify().unwrap().is_intact());
    // The moved hold is still a hold: it commits on the new ledger.
    assert!(matches!(
        target.commit("held", &usage, at).unwrap(),
        Settlement::Committed { .. }
    ));
    assert_eq!(
        target.window_totals("dev/general", "2026-11-22").unwrap(),
        (1_140_000, 0)
    );
    // And back: the SQLite ledger takes Redis's export the same way.
    let back_file = TestLedger::sqlite();
    let back = back_file.open();
    assert_eq!(back.import(&target.export().unwrap()).unwrap(), (4, 0));
    assert_eq!(
        back.window_totals("dev/general", "2026-11-22").unwrap(),
        (1_140_000, 0)
    );
    assert!(back.verify().unwrap().is_intact());
}

#[test]
fn rate_limits_are_shared_by_every_handle() {
    for t in both("rate_limits_are_shared_by_every_handle") {
        // staging/general: 60 requests a minute, whoever asks.
        let (a, b) = (t.open(), t.open());
        let engine = default_engine();
        let mut allowed = 0;
        let mut last = Vec::new();
        for i in 0..61 {
            let mut request = Request::new("staging-general-1", "gpt-4.1-2025-04-14");
            request.time = Timestamp::parse("2026-11-22T18:00:30Z");
            request.input_tokens = 10;
            request.max_output_tokens = Some(10);
            request.request_id = Some(format!("rate-{i}"));
            let ledger = if i % 2 == 0 { &a } else { &b };
            let decision = engine
                .decide_with_ledger(&request, ledger, LedgerMode::Reserve)
                .unwrap();
            allowed += u32::from(decision.allowed);
            last = decision
                .reason_ids()
                .iter()
                .map(|r| r.to_string())
                .collect();
        }
        assert_eq!(allowed, 60, "{}", t.name);
        assert_eq!(last, ["rate-limited"], "{}", t.name);
        // The next minute starts afresh.
        let mut request = Request::new("staging-general-1", "gpt-4.1-2025-04-14");
        request.time = Timestamp::parse("2026-11-22T18:01:00Z");
        request.input_tokens = 10;
        request.max_output_tokens = Some(10);
        request.request_id = Some("rate-next".to_owned());
        assert!(
            engine
                .decide_with_ledger(&request, &a, LedgerMode::Reserve)
                .unwrap()
                .allowed,
            "{}",
            t.name
        );
    }
}
