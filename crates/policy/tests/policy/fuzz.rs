//! Property tests in place of fuzz targets (no nightly toolchain for cargo-fuzz here): the
//! AuthZEN request parser, the store loader, decisions and the ledger on random input. Each
//! runs `PROPTEST_CASES` cases (256 by default; CI keeps the default, a longer run sets more).
//! Cases that ever failed are kept below as plain regression tests.

use keyscope_policy::{
    Clock, Engine, Ledger, LedgerMode, Request, Store, StoreSources, Timestamp, Usage,
};
use proptest::prelude::*;

use crate::common::default_store_dir;

fn engine() -> Engine {
    Engine::new(Store::load(&default_store_dir()).unwrap()).with_clock(Clock::Fixed(
        Timestamp::parse("2026-11-22T18:00:00Z").unwrap(),
    ))
}

/// Strings that matter to the parser: valid values, near misses and noise.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("Key".to_owned()),
        Just("Model".to_owned()),
        Just("invoke".to_owned()),
        Just("dev-general-1".to_owned()),
        Just("care-notes-prod-2026-09".to_owned()),
        Just("gpt-4o-mini".to_owned()),
        Just("2026-11-22T18:00:00Z".to_owned()),
        Just("2026-11-22T18:00:00+99:99".to_owned()),
        Just("10.20.4.7".to_owned()),
        Just("::1".to_owned()),
        ".{0,40}",
        "[ -~]{200,300}",
    ]
}

/// JSON numbers and non-numbers where the parser expects a token count.
fn number() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any::<u64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        text().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ]
}

/// Requests shaped like AuthZEN, with every field sometimes missing, mistyped or extra.
fn request_json() -> impl Strategy<Value = serde_json::Value> {
    let entity =
        || (text(), text()).prop_map(|(kind, id)| serde_json::json!({"type": kind, "id": id}));
    let context = (
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(number()),
        proptest::option::of(number()),
        proptest::option::of(text()),
    )
        .prop_map(|(request_id, time, ip, input, output, extra)| {
            let mut context = serde_json::Map::new();
            let mut put = |name: &str, value: Option<serde_json::Value>| {
                if let Some(value) = value {
                    context.insert(name.to_owned(), value);
                }
            };
            put("request_id", request_id.map(Into::into));
            put("time", time.map(Into::into));
            put("source_ip", ip.map(Into::into));
            put("input_tokens", input);
            put("max_output_tokens", output);
            put("unknown", extra.map(Into::into));
            serde_json::Value::Object(context)
        });
    (entity(), text(), entity(), proptest::option::of(context)).prop_map(
        |(subject, action, resource, context)| {
            let mut request = serde_json::json!({
                "subject": subject, "action": {"name": action}, "resource": resource,
            });
            if let Some(context) = context {
                request["context"] = context;
            }
            request
        },
    )
}

proptest! {
    /// The parser never panics on any text, and what it accepts survives a round trip.
    #[test]
    fn the_request_parser_takes_any_text(text in "\\PC{0,200}") {
        if let Ok(request) = Request::from_json("<fuzz>", &text) {
            prop_assert_eq!(Request::from_value(request.to_json()).unwrap(), request);
        }
    }

    /// Random AuthZEN-shaped requests, whole or cut short: parsed or refused, never a panic; a
    /// parsed one is decided, and an allow is only ever given to a live, registered key.
    #[test]
    fn requests_are_parsed_or_refused_and_decided_closed(
        value in request_json(),
        cut in any::<prop::sample::Index>(),
    ) {
        let text = value.to_string();
        let mut end = cut.index(text.len() + 1);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let _ = Request::from_json("<fuzz>", &text[..end]);
        let Ok(request) = Request::from_json("<fuzz>", &text) else {
            return Ok(());
        };
        let engine = engine();
        let decision = engine.decide(&request);
        let shown = serde_json::to_string(&decision.to_authzen()).unwrap();
        match engine.store().scopes().key(&request.key) {
            Some(key) => {
                if decision.allowed {
                    prop_assert!(!key.revoked);
                    prop_assert!(decision.errors.is_empty());
                }
            }
            None => {
                prop_assert!(!decision.allowed);
                // An unknown subject may be a raw key sent by mistake: never echoed. (It may
                // still appear because another field holds the same text: compare with the
                // decision for a subject that cannot occur elsewhere.)
                let mut probe = request.clone();
                probe.key = "\u{1F511}probe-subject\u{1F511}".to_owned();
                let probe_shown = serde_json::to_string(&engine.decide(&probe).to_authzen()).unwrap();
                if request.key.len() >= 8 && !probe_shown.contains(&request.key) {
                    prop_assert!(!shown.contains(&request.key), "{}", shown);
                }
            }
        }
        prop_assert!(!decision.reasons.is_empty());
    }
}

/// The default store's files, read once.
fn default_sources() -> [(String, String); 5] {
    let dir = default_store_dir();
    [
        "schema.cedarschema",
        "scopes.toml",
        "models.toml",
        "models.cedar",
        "keys.cedar",
    ]
    .map(|name| {
        (
            name.to_owned(),
            std::fs::read_to_string(dir.join(name)).unwrap(),
        )
    })
}

/// One edit of a text: a range deleted, or noise inserted, at a char boundary.
fn mutate(text: &str, at: usize, len: usize, noise: &str, delete: bool) -> String {
    let boundary = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = boundary(at);
    if delete {
        let end = boundary(start + len);
        format!("{}{}", &text[..start], &text[end..])
    } else {
        format!("{}{noise}{}", &text[..start], &text[start..])
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    /// A store with one damaged file loads or is refused with an error whose spans lie inside
    /// the file; never a panic.
    #[test]
    fn the_store_loader_refuses_damage_cleanly(
        file in 0usize..5,
        at in 0usize..20_000,
        len in 0usize..64,
        noise in prop_oneof![Just("\"".to_owned()), Just("]".to_owned()), Just("\n[[key]]\n".to_owned()), "[ -~\n]{0,16}"],
        delete in any::<bool>(),
    ) {
        let mut files = default_sources();
        let damaged = mutate(&files[file].1, at % (files[file].1.len() + 1), len, &noise, delete);
        files[file].1 = damaged;
        let policies = [
            (files[3].0.as_str(), files[3].1.as_str()),
            (files[4].0.as_str(), files[4].1.as_str()),
        ];
        let result = Store::from_sources(StoreSources {
            schema: &files[0].1,
            policies: &policies,
            scopes: &files[1].1,
            models: &files[2].1,
        });
        if let Err(error) = result {
            let length = files.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
            let diagnostic: &dyn miette::Diagnostic = &error;
            let nested: Vec<&dyn miette::Diagnostic> = diagnostic
                .related()
                .map(|r| r.collect())
                .unwrap_or_default();
            for d in std::iter::once(diagnostic).chain(nested) {
                for label in d.labels().into_iter().flatten() {
                    prop_assert!(label.offset() + label.len() <= length, "{error:?}");
                }
            }
        }
    }

    /// Random reservations, retries under reused ids, commits and releases never hold or commit
    /// past a cap (commits stay within their holds here), and leave a ledger that verifies.
    #[test]
    fn reservations_never_overspend(
        ops in proptest::collection::vec((0u8..4, 0usize..6, 0u64..2_000_000, 0u64..120_000), 1..30),
    ) {
        let engine = engine();
        let ledger = Ledger::open_in_memory().unwrap();
        let now = Timestamp::parse("2026-11-22T18:00:00Z").unwrap();
        let mut held = std::collections::HashMap::new();
        for (op, id, input, output) in ops {
            let id = format!("r{id}");
            match op {
                0 | 1 => {
                    let mut request = Request::new("dev-general-1", "gpt-4.1-nano-2025-04-14");
                    request.request_id = Some(id.clone());
                    request.input_tokens = input;
                    request.max_output_tokens = Some(output);
                    let decision =
                        engine.decide_with_ledger(&request, &ledger, LedgerMode::Reserve).unwrap();
                    if let Some(reservation) = decision.reservation.filter(|r| !r.existing) {
                        held.insert(id, reservation.held_micros);
                    }
                }
                2 => {
                    if let Some(micros) = held.remove(&id) {
                        let usage = Usage { cost_micros: Some(micros / 2), ..Usage::default() };
                        ledger.commit(&id, &usage, now).unwrap();
                    }
                }
                _ => {
                    if held.remove(&id).is_some() {
                        ledger.release(&id, now).unwrap();
                    }
                }
            }
            let (committed, holding) = ledger.window_totals("dev/general", "2026-11-22").unwrap();
            prop_assert!(committed + holding <= 5_000_000, "{committed} + {holding}");
        }
        prop_assert!(ledger.verify().unwrap().is_intact());
    }
}
