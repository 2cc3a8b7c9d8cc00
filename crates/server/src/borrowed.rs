//! AuthZEN evaluations read in place from a parsed JSON body: the members borrowed, and a
//! batch's top-level defaults read where they are rather than cloned into each item.
//!
//! The one design decision: this is a fast path that only ever *accepts*. It gives a request
//! exactly when the library's parser ([`Request::from_value_ignoring_unknown`]) would give the
//! same one from the same members; anything else (a member missing, not an object or mistyped,
//! a subject that is not a key, a bad time, address or request id) gives `None`, and the caller
//! asks the library, whose error the answer then quotes. The JSON itself was already parsed into
//! a `serde_json::Value` by the same parser as before, so what is valid JSON does not change. A
//! test holds the two parsers to the same requests.

use std::net::IpAddr;

use keyscope_policy::{Request, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value};

/// `subject` or `resource`; `properties` and unknown members are ignored, as the library does.
#[derive(Deserialize)]
struct Entity<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
}

/// `action`.
#[derive(Deserialize)]
struct Action<'a> {
    name: &'a str,
}

/// `context`, with the library's defaults: absent members are `None`, absent `input_tokens` 0.
#[derive(Deserialize, Default)]
struct Context<'a> {
    #[serde(borrow)]
    request_id: Option<&'a str>,
    #[serde(borrow)]
    time: Option<&'a str>,
    #[serde(borrow)]
    source_ip: Option<&'a str>,
    #[serde(default)]
    input_tokens: u64,
    max_output_tokens: Option<u64>,
}

/// The evaluation `item` (a batch item inheriting the members of `defaults` it does not set
/// itself, or a single evaluation with no defaults) and whether it asks to reserve; `None`
/// when only the library's parser can say what is wrong with it.
pub(crate) fn evaluation(
    item: &Value,
    defaults: Option<&Map<String, Value>>,
) -> Option<(Request, bool)> {
    let item = item.as_object()?;
    // An item's own member replaces the default whole, as merging the JSON did.
    let member = |name: &str| item.get(name).or_else(|| defaults?.get(name));
    // Objects only: the library would also read an array as a struct, field by field, and
    // that rare shape is left to it.
    let object = |name: &str| member(name).filter(|value| value.is_object());
    let subject = Entity::deserialize(object("subject")?).ok()?;
    let action = Action::deserialize(object("action")?).ok()?;
    let resource = Entity::deserialize(object("resource")?).ok()?;
    let (context, reserve) = match member("context") {
        None => (Context::default(), false),
        Some(value) => {
            let reserve = match value.as_object()?.get("reserve") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(reserve)) => *reserve,
                Some(_) => return None,
            };
            (Context::deserialize(value).ok()?, reserve)
        }
    };
    if subject.kind != "Key" || resource.kind != "Model" {
        return None;
    }
    let time = match context.time {
        Some(text) => Some(Timestamp::parse(text)?),
        None => None,
    };
    let source_ip = match context.source_ip {
        Some(text) => Some(text.parse::<IpAddr>().ok()?),
        None => None,
    };
    if context
        .request_id
        .is_some_and(|id| id.is_empty() || id.len() > 256)
    {
        return None;
    }
    let request = Request {
        key: subject.id.to_owned(),
        action: action.name.to_owned(),
        model: resource.id.to_owned(),
        request_id: context.request_id.map(str::to_owned),
        time,
        source_ip,
        input_tokens: context.input_tokens,
        max_output_tokens: context.max_output_tokens,
    };
    Some((request, reserve))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What the library makes of `value`, with `context.reserve` read as the service did.
    fn library(value: Value) -> Option<(Request, bool)> {
        let reserve = match value.pointer("/context/reserve") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(reserve)) => *reserve,
            Some(_) => return None,
        };
        Request::from_value_ignoring_unknown(value)
            .ok()
            .map(|request| (request, reserve))
    }

    /// Asserts that reading `value` in place gives what the library gives, or leaves it to the
    /// library; and that a valid request (`fast`) is read in place.
    fn agrees(value: &Value, fast: bool) {
        let borrowed = evaluation(value, None);
        if let Some(read) = &borrowed {
            assert_eq!(Some(read), library(value.clone()).as_ref(), "{value}");
        }
        assert_eq!(borrowed.is_some(), fast, "{value}");
    }

    #[test]
    fn every_fixture_request_is_read_in_place_as_the_library_reads_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/tests");
        let mut requests = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let fixture: Value = serde_json::from_str(&text).unwrap();
            for case in fixture["cases"].as_array().unwrap() {
                let request = &case["request"];
                let valid = library(request.clone()).is_some();
                agrees(request, valid);
                requests += 1;
            }
        }
        assert!(requests > 20, "{requests}");
    }

    #[test]
    fn anything_unusual_is_left_to_the_library() {
        let base = json!({
            "subject": {"type": "Key", "id": "k1", "properties": {"a": [1]}, "tenant": "x"},
            "action": {"name": "invoke", "properties": null},
            "resource": {"type": "Model", "id": "m"},
            "options": {},
            "context": {"input_tokens": 5, "max_output_tokens": 7, "reserve": true,
                        "request_id": "r-1", "time": "2026-11-22T18:00:00+01:00",
                        "source_ip": "::1", "trace": {"a": 1}},
        });
        agrees(&base, true);
        let changed = |pointer: &str, to: Value| {
            let mut value = base.clone();
            *value.pointer_mut(pointer).unwrap() = to;
            value
        };
        let removed = |member: &str| {
            let mut value = base.clone();
            value.as_object_mut().unwrap().remove(member);
            value
        };
        agrees(&removed("context"), true);
        agrees(&changed("/context/reserve", Value::Null), true);
        agrees(&changed("/context/request_id", Value::Null), true);
        agrees(&changed("/context/input_tokens", json!(0)), true);
        for (pointer, to) in [
            ("/subject", json!(["Key", "k1"])),
            ("/subject", Value::Null),
            ("/subject/type", json!("Model")),
            ("/subject/id", json!(7)),
            ("/resource/type", json!("Key")),
            ("/action", json!("invoke")),
            ("/action/name", Value::Null),
            ("/context", Value::Null),
            ("/context", json!([])),
            ("/context/reserve", json!("yes")),
            ("/context/input_tokens", Value::Null),
            ("/context/input_tokens", json!(-1)),
            ("/context/input_tokens", json!(5.0)),
            ("/context/input_tokens", json!("5")),
            ("/context/max_output_tokens", json!(1.5)),
            ("/context/time", json!("tomorrow")),
            ("/context/time", json!(12)),
            ("/context/source_ip", json!("10.0.0.300")),
            ("/context/request_id", json!("")),
            ("/context/request_id", json!("r".repeat(257))),
        ] {
            agrees(&changed(pointer, to), false);
        }
        agrees(&removed("subject"), false);
        agrees(&removed("action"), false);
        agrees(&json!([1, 2]), false);
    }

    #[test]
    fn an_item_inherits_each_default_it_does_not_set_whole() {
        let defaults = json!({
            "action": {"name": "invoke"},
            "resource": {"type": "Model", "id": "m"},
            "context": {"input_tokens": 5, "reserve": true, "request_id": "r-1"},
        });
        let defaults = defaults.as_object().unwrap();
        let item = json!({"subject": {"type": "Key", "id": "k1"}, "context": {"input_tokens": 9}});
        let (request, reserve) = evaluation(&item, Some(defaults)).unwrap();
        assert_eq!((request.model.as_str(), request.input_tokens), ("m", 9));
        assert_eq!((request.request_id, reserve), (None, false));
        let bare = json!({"subject": {"type": "Key", "id": "k1"}});
        let (request, reserve) = evaluation(&bare, Some(defaults)).unwrap();
        assert_eq!(
            (request.request_id.as_deref(), reserve),
            (Some("r-1"), true)
        );
        // A member set to null replaces the default and is left to the library to refuse.
        let null = json!({"subject": {"type": "Key", "id": "k1"}, "context": null});
        assert!(evaluation(&null, Some(defaults)).is_none());
    }
}
