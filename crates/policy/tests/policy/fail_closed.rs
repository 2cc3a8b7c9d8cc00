use keyscope_policy::{Engine, Request, RequestError, Store, Timestamp};

use crate::common::{default_engine, engine_at_request_time, store_copy};

fn request() -> Request {
    let mut request = Request::new("dev-general-1", "gpt-4o-mini");
    request.time = Timestamp::parse("2026-11-22T18:00:00Z");
    request
}

#[test]
fn a_forbid_that_errors_denies_instead_of_being_skipped() {
    let dir = store_copy();
    std::fs::write(
        dir.path().join("zz-broken.cedar"),
        "@id(\"broken-forbid\")\n@message(\"overflows at run time\")\n\
         forbid (principal, action, resource) when { context.now + 9223372036854775807 > 0 };\n",
    )
    .unwrap();
    let engine = engine_at_request_time(Store::load(dir.path()).unwrap());
    // The same request is allowed without the broken policy: Cedar alone would allow it.
    assert!(default_engine().decide(&request()).allowed);
    let decision = engine.decide(&request());
    assert!(!decision.allowed);
    assert_eq!(decision.reason_ids(), ["broken-forbid"]);
    assert!(decision.reasons[0].message.contains("fail closed"));
    assert_eq!(decision.errors.len(), 1);
    assert!(
        decision.errors[0].contains("broken-forbid"),
        "{:?}",
        decision.errors
    );
}

#[test]
fn nothing_permits_says_so() {
    let decision = default_engine().decide(&Request {
        model: "o3".into(),
        key: "internal-search-prod-1".into(),
        source_ip: "10.30.0.1".parse().ok(),
        ..request()
    });
    assert!(!decision.allowed);
    assert_eq!(decision.reasons.len(), 1);
    assert_eq!(
        decision.reasons[0].message,
        "no policy permits `invoke` of `o3` by key `internal-search-prod-1` in scope `prod/internal-search`"
    );
}

#[test]
fn unknown_subject_is_never_echoed() {
    let raw = "raw-key-material-pasted-by-mistake";
    let decision = default_engine().decide(&Request {
        key: raw.into(),
        ..request()
    });
    assert!(!decision.allowed);
    let json = decision.to_authzen().to_string();
    assert!(!json.contains(raw), "{json}");
    assert!(json.contains(&keyscope_policy::fingerprint(raw)), "{json}");
}

#[test]
fn malformed_requests_are_errors() {
    let error = Request::from_json("<stdin>", "{\"subject\": ").unwrap_err();
    assert!(matches!(error, RequestError::Json(_)));
    let error = Request::from_json("<stdin>", r#"{"subject": {"type": "Key", "id": "k"}, "action": {"name": "invoke"}, "resource": {"type": "Model", "id": "m"}, "context": {"max_output_tokens": 1e3}}"#).unwrap_err();
    assert!(matches!(error, RequestError::Json(_)));
}

#[test]
fn overflowing_estimates_deny() {
    let decision = default_engine().decide(&Request {
        input_tokens: u64::MAX,
        ..request()
    });
    assert!(!decision.allowed);
    assert_eq!(decision.reason_ids(), ["keyscope:overflow"]);
}

#[test]
fn decision_json_has_the_authzen_shape() {
    let json = default_engine().decide(&request()).to_authzen();
    assert_eq!(json["decision"], true);
    assert_eq!(json["context"]["reasons"][0]["id"], "allowlisted-model");
    assert_eq!(json["context"]["reasons"][0]["effect"], "permit");
    assert_eq!(json["context"]["scope"], "dev/general");
    assert_eq!(json["context"]["resolved_model"], "gpt-4o-mini-2024-07-18");
    assert!(
        json["context"]["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["scope"] == "acme/platform")
    );
    assert_eq!(json["context"]["errors"], serde_json::json!([]));
}

#[test]
fn engine_and_ledger_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<keyscope_policy::Ledger>();
}

/// With the budget policies deleted, the engine's own backstops still refuse to overspend or
/// to let a budgeted scope use a model it cannot price.
#[test]
fn budget_backstops_hold_without_budget_policies() {
    let dir = store_copy();
    std::fs::remove_file(dir.path().join("budget.cedar")).unwrap();
    let engine = engine_at_request_time(Store::load(dir.path()).unwrap());
    let mut expensive = Request::new("dev-general-1", "claude-opus-4-1-20250805");
    expensive.time = Timestamp::parse("2026-11-22T18:00:00Z");
    expensive.input_tokens = 1_000_000;
    let decision = engine.decide(&expensive);
    assert!(!decision.allowed);
    assert_eq!(decision.reason_ids(), ["keyscope:over-budget"]);
    let unpriced = engine.decide(&Request {
        model: "llama-3.3-70b-instruct".into(),
        ..request()
    });
    assert!(!unpriced.allowed);
    assert_eq!(unpriced.reason_ids(), ["keyscope:unpriced-model"]);
    assert!(engine.decide(&request()).allowed);
}
