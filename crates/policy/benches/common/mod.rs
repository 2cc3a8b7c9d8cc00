//! A synthetic store for the benches: the default schema and policies, 1,000 scopes (one org,
//! 19 teams, 980 applications across production, staging and development) with one key each,
//! and 200 models (180 versioned, 20 aliases) from 5 providers.

use std::fmt::Write as _;
use std::path::Path;

use keyscope_policy::{Clock, Engine, Request, Store, StoreSources, Timestamp};

pub const SCOPES: usize = 1_000;
pub const MODELS: usize = 200;

fn read(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

fn models_toml() -> String {
    let mut out = String::from("prices_as_of = 2025-10-15\n");
    for p in 0..5 {
        let _ = writeln!(out, "[providers.p{p}]\nbaa = {}", p % 2 == 0);
    }
    for m in 0..180 {
        let _ = writeln!(
            out,
            "[[model]]\nid = \"model-{m}-2025-01-01\"\nprovider = \"p{}\"\nfamily = \"model-{m}\"\ninput = {}.25\noutput = {}.5\nmax_output_tokens = 16384",
            m % 5,
            m % 7,
            m % 11
        );
    }
    out.push_str("[aliases]\n");
    for a in 0..20 {
        let _ = writeln!(out, "model-{a} = \"model-{a}-2025-01-01\"");
    }
    out
}

fn scopes_toml() -> String {
    let mut out = String::new();
    out.push_str("[model_lists]\n");
    out.push_str("prod = [");
    for m in 0..40 {
        let _ = write!(out, "\"model-{m}-2025-01-01\", ");
    }
    out.push_str("]\nstaging = [\"@prod\", \"model-4*\", \"model-5*\", \"model-1\"]\n");
    out.push_str("[[scope]]\nid = \"org\"\nkind = \"org\"\nmax_key_age_days = 365\nbudget = { month_usd = 1000000000 }\n");
    for t in 0..19 {
        let _ = writeln!(
            out,
            "[[scope]]\nid = \"team-{t}\"\nkind = \"team\"\nparent = \"org\"\nbudget = {{ day_usd = 100000000, month_usd = 1000000000 }}"
        );
    }
    for a in 0..(SCOPES - 20) {
        let (environment, models) = match a % 3 {
            0 => ("production", "[\"@prod\"]"),
            1 => ("staging", "[\"@staging\"]"),
            _ => ("development", "[\"*\"]"),
        };
        let _ = writeln!(
            out,
            "[[scope]]\nid = \"app-{a}\"\nparent = \"team-{}\"\nenvironment = \"{environment}\"\nmodels = {models}\nnetworks = [\"10.{}.0.0/16\", \"192.0.2.0/24\"]\nbudget = {{ day_usd = 10000000, month_usd = 100000000 }}",
            a % 19,
            a % 250
        );
    }
    for a in 0..(SCOPES - 20) {
        let _ = writeln!(
            out,
            "[[key]]\nid = \"key-{a}\"\nscope = \"app-{a}\"\nfingerprint = \"sha256:{a:064x}\"\ncreated = 2026-11-01T00:00:00Z\nexpires = 2027-11-01T00:00:00Z"
        );
    }
    out
}

pub fn engine() -> Engine {
    let schema = read("schema.cedarschema");
    let policy_texts: Vec<(String, String)> = [
        "budget.cedar",
        "keys.cedar",
        "models.cedar",
        "network.cedar",
        "phi.cedar",
    ]
    .iter()
    .map(|n| ((*n).to_owned(), read(n)))
    .collect();
    let policies: Vec<(&str, &str)> = policy_texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let scopes = scopes_toml();
    let models = models_toml();
    let store = Store::from_sources(StoreSources {
        schema: &schema,
        policies: &policies,
        scopes: &scopes,
        models: &models,
    });
    let engine = match store {
        // The request's time, as a fixed clock: the bench's keys and budgets are dated.
        Ok(store) => Engine::new(store).with_clock(Clock::Fixed(
            Timestamp::parse("2026-11-22T18:00:00Z").unwrap_or(Timestamp::from_unix(0)),
        )),
        Err(e) => panic!("bench store: {e:?}"),
    };
    assert_eq!(engine.store().scopes().scopes().len(), SCOPES);
    assert_eq!(engine.store().catalog().models().len(), MODELS);
    engine
}

/// An allowed request: a production app, a listed versioned model, from inside its network.
pub fn request() -> Request {
    let mut request = Request::new("key-501", "model-7-2025-01-01");
    request.time = Timestamp::parse("2026-11-22T18:00:00Z");
    request.source_ip = "10.1.2.3".parse().ok();
    request.input_tokens = 1_200;
    request.max_output_tokens = Some(800);
    request.request_id = Some("bench".to_owned());
    request
}

/// The Cedar request keyscope builds for [`request`], built directly.
pub fn bare_cedar_request(engine: &Engine) -> cedar_policy::Request {
    let decision = engine.decide(&request());
    assert!(decision.allowed, "{decision:?}");
    let cost = decision.estimate.and_then(|e| e.cost_micros).unwrap_or(0);
    let context = serde_json::json!({
        "now": Timestamp::parse("2026-11-22T18:00:00Z").map(Timestamp::unix),
        "source_ip": {"__extn": {"fn": "ip", "arg": "10.1.2.3"}},
        "network_allowed": true,
        "input_tokens": 1200, "max_output_tokens": 800, "total_tokens": 2000,
        "cost_micros": cost,
        "budget_remaining_micros": 10_000_000_000_000i64 - cost as i64,
        "budget_remaining_tokens": i64::MAX,
        "rate_requests_remaining": i64::MAX, "rate_tokens_remaining": i64::MAX,
    });
    let uid = |s: &str| {
        s.parse::<cedar_policy::EntityUid>()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let context =
        cedar_policy::Context::from_json_value(context, None).unwrap_or_else(|e| panic!("{e}"));
    cedar_policy::Request::new(
        uid(r#"Key::"key-501""#),
        uid(r#"Action::"invoke""#),
        uid(r#"Model::"model-7-2025-01-01""#),
        context,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}
