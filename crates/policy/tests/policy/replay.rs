//! Attacks on the decision: replayed request ids and caller-controlled clocks must never turn a
//! deny into an allow (issue 19).

use keyscope_policy::{
    Clock, Engine, Ledger, LedgerMode, Request, RequestState, Store, Timestamp, Usage,
};

use crate::common::{default_store_dir, engine_at_request_time, store_copy};

const NOW: &str = "2026-11-22T18:00:00Z";

fn now() -> Timestamp {
    Timestamp::parse(NOW).unwrap()
}

/// The default store on a fixed clock at [`NOW`].
fn engine() -> Engine {
    Engine::new(Store::load(&default_store_dir()).unwrap()).with_clock(Clock::Fixed(now()))
}

/// An allowed production request (inside its networks, an allowlisted versioned model).
fn good(id: &str) -> Request {
    let mut request = Request::new("care-notes-prod-2026-10", "gpt-4o-2024-11-20");
    request.request_id = Some(id.to_owned());
    request.source_ip = "10.20.4.7".parse().ok();
    request.input_tokens = 1_000;
    request.max_output_tokens = Some(500);
    request
}

fn reserve(engine: &Engine, ledger: &Ledger, request: &Request) -> keyscope_policy::Decision {
    engine
        .decide_with_ledger(request, ledger, LedgerMode::Reserve)
        .unwrap()
}

/// Every request that is denied on its own is denied under a request id that an allowed
/// request holds: as a conflict when it is another request (key, action, model or a larger
/// amount), and by its own reasons when it is the same request from elsewhere.
#[test]
fn a_held_request_id_does_not_allow_another_request() {
    let engine = engine();
    let mut revoked = good("r1");
    revoked.key = "care-notes-prod-2026-09".into();
    let mut off_list = good("r1");
    off_list.model = "claude-opus-4-1-20250805".into();
    let mut outside = good("r1");
    outside.source_ip = "203.0.113.9".parse().ok();
    let mut over_budget = good("r1");
    over_budget.input_tokens = 10_000_000;
    let mut sandbox = good("r1");
    sandbox.key = "dev-sandbox-1".into();
    sandbox.model = "gpt-4o-mini".into();
    let mut embed = good("r1");
    embed.action = "embed".into();
    let conflict = "keyscope:request-id-conflict";
    for (name, bad, reason) in [
        ("revoked key", revoked, conflict),
        ("model off the allowlist", off_list, conflict),
        (
            "source outside the networks",
            outside,
            "source-outside-networks",
        ),
        ("10M tokens over budget", over_budget, conflict),
        ("unbudgeted development scope", sandbox, conflict),
        ("another action", embed, conflict),
    ] {
        let ledger = Ledger::open_in_memory().unwrap();
        assert!(
            !engine.decide(&bad).allowed || name == "another action",
            "{name}: denied on its own"
        );
        assert!(reserve(&engine, &ledger, &good("r1")).allowed, "{name}");
        let replay = reserve(&engine, &ledger, &bad);
        assert!(!replay.allowed, "{name}: {:?}", replay.reason_ids());
        assert!(replay.reservation.is_none(), "{name}");
        assert_eq!(replay.reason_ids(), [reason], "{name}");
        assert_eq!(replay.errors.is_empty(), reason != conflict, "{name}");
    }
}

/// A retry of the same request is decided again: a key revoked since the first attempt is denied
/// on the retry, and its hold is not reported as a reservation.
#[test]
fn a_retry_is_decided_again() {
    let ledger = Ledger::open_in_memory().unwrap();
    assert!(reserve(&engine(), &ledger, &good("r1")).allowed);

    let dir = store_copy();
    let scopes = std::fs::read_to_string(dir.path().join("scopes.toml")).unwrap();
    let revoked = scopes.replace(
        "description = \"care notes summarizer, production\"",
        "description = \"care notes summarizer, production\"\nrevoked = true",
    );
    assert_ne!(scopes, revoked);
    std::fs::write(dir.path().join("scopes.toml"), revoked).unwrap();
    let reloaded = Engine::new(Store::load(dir.path()).unwrap()).with_clock(Clock::Fixed(now()));
    let retry = reserve(&reloaded, &ledger, &good("r1"));
    assert!(!retry.allowed);
    assert_eq!(retry.reason_ids(), ["revoked-key"]);
    assert!(retry.reservation.is_none());
}

/// A retry of an allowed request keeps its one hold, even when that hold took the last of the
/// budget: the retry is not counted against itself.
#[test]
fn a_retry_at_the_cap_keeps_its_hold_and_holds_nothing_more() {
    let engine = engine();
    let ledger = Ledger::open_in_memory().unwrap();
    let mut request = Request::new("dev-general-1", "gpt-4.1-nano-2025-04-14");
    request.request_id = Some("big".into());
    // $5/day cap; 1M input x $0.10/M + 10,000 output x $0.40/M = $0.104; spend the rest first.
    request.input_tokens = 1_000_000;
    request.max_output_tokens = Some(10_000);
    let mut filler = request.clone();
    let mut allowed = 0;
    for i in 0.. {
        filler.request_id = Some(format!("fill-{i}"));
        if !reserve(&engine, &ledger, &filler).allowed {
            break;
        }
        allowed += 1;
    }
    assert!(allowed > 0);
    ledger.release("fill-0", now()).unwrap();
    let first = reserve(&engine, &ledger, &request);
    assert!(first.allowed, "{:?}", first.reason_ids());
    let held = ledger.window_totals("dev/general", "2026-11-22").unwrap();
    let retry = reserve(&engine, &ledger, &request);
    assert!(retry.allowed, "{:?}", retry.reason_ids());
    assert!(retry.reservation.as_ref().unwrap().existing);
    assert!(
        retry
            .reason_ids()
            .contains(&"keyscope:existing-reservation")
    );
    assert_eq!(
        ledger.window_totals("dev/general", "2026-11-22").unwrap(),
        held
    );
}

/// A committed request id is spent: replaying it is denied, for the same request too.
#[test]
fn a_committed_request_id_is_not_allowed_again() {
    let engine = engine();
    let ledger = Ledger::open_in_memory().unwrap();
    assert!(reserve(&engine, &ledger, &good("r1")).allowed);
    ledger.commit("r1", &Usage::default(), now()).unwrap();
    let replay = reserve(&engine, &ledger, &good("r1"));
    assert!(!replay.allowed);
    assert_eq!(replay.reason_ids(), ["keyscope:request-id-reused"]);
    assert_eq!(
        ledger.request_state("r1").unwrap(),
        Some(RequestState::Committed)
    );
}

/// By default the engine's clock decides; a request's `context.time` moves nothing: not the
/// key's validity, not the budget window, not the hold's expiry.
#[test]
fn the_caller_does_not_control_the_clock() {
    let engine = engine();
    // Revoked keys aside, the care-notes key expires on 2027-01-01: a request dated after that
    // is still decided now, and allowed.
    let mut late = good("late");
    late.time = Timestamp::parse("2027-06-01T00:00:00Z");
    let decision = engine.decide(&late);
    assert!(decision.allowed, "{:?}", decision.reason_ids());
    assert_eq!(decision.time, now());
    // A key created on 2026-11-01 asked about on 2026-10-01 is still valid now.
    let mut early = Request::new("dev-general-1", "gpt-4o-mini");
    early.time = Timestamp::parse("2026-10-01T00:00:00Z");
    assert!(engine.decide(&early).allowed);

    // Reservations dated 20 minutes apart all land in today's window, under one daily cap.
    let ledger = Ledger::open_in_memory().unwrap().with_hold_ttl(60);
    let mut request = Request::new("dev-general-1", "gpt-4.1-nano-2025-04-14");
    request.input_tokens = 1_000_000;
    request.max_output_tokens = Some(10_000);
    let start = now().unix();
    let mut allowed = 0u64;
    for i in 0..36 {
        request.request_id = Some(format!("d{i}"));
        request.time = Some(Timestamp::from_unix(start + i * 20 * 60));
        let decision = reserve(&engine, &ledger, &request);
        if decision.allowed {
            allowed += 1;
            let reservation = decision.reservation.unwrap();
            assert_eq!(reservation.expires_at, "2026-11-22T18:01:00Z");
        }
    }
    let (committed, held) = ledger.window_totals("dev/general", "2026-11-22").unwrap();
    assert_eq!(committed, 0);
    assert!(held <= 5_000_000, "{held}");
    assert_eq!(held, allowed * 104_000);
    assert_eq!(
        ledger.window_totals("dev/general", "2026-11-23").unwrap(),
        (0, 0)
    );
}

/// A trusted request time is used within its skew, refused beyond it, and never dates a hold's
/// expiry.
#[test]
fn a_trusted_request_time_stays_within_its_skew() {
    let engine = Engine::new(Store::load(&default_store_dir()).unwrap()).with_clock(
        Clock::TrustRequestTime {
            max_skew_seconds: 300,
        },
    );
    let system = Timestamp::now();
    let mut request = Request::new("dev-general-1", "gpt-4o-mini");
    request.time = Some(system.saturating_add(-120));
    let decision = engine.decide(&request);
    assert_eq!(decision.time, system.saturating_add(-120));

    request.time = Some(system.saturating_add(3_600));
    let decision = engine.decide(&request);
    assert!(!decision.allowed);
    assert_eq!(decision.reason_ids(), ["keyscope:request-time-skew"]);
    assert!(!decision.errors.is_empty());

    let ledger = Ledger::open_in_memory().unwrap().with_hold_ttl(60);
    request.time = Some(system.saturating_add(-290));
    request.request_id = Some("t1".into());
    let decision = reserve(&engine, &ledger, &request);
    let expires = Timestamp::parse(&decision.reservation.unwrap().expires_at).unwrap();
    assert!(
        expires.unix() >= system.unix() + 59,
        "a hold expires by the engine's clock: {expires} vs {system}"
    );
}

/// Decision fixtures and tests replay requests at their own time only through the explicit
/// test clock.
#[test]
fn request_time_is_the_clock_only_when_asked() {
    let mut late = good("late");
    late.time = Timestamp::parse("2027-06-01T00:00:00Z");
    let replay = engine_at_request_time(Store::load(&default_store_dir()).unwrap());
    assert!(replay.decide(&late).reason_ids().contains(&"expired-key"));
    assert!(engine().decide(&late).allowed);
}
