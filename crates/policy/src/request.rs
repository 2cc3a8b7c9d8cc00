//! Requests in the shape of the OpenID AuthZEN 1.0 evaluation API:
//! `{"subject": {"type": "Key", "id": ...}, "action": {"name": "invoke"},
//! "resource": {"type": "Model", "id": ...}, "context": {...}}`.
//!
//! Parsed into a typed [`Request`] at the edge; the engine never looks at JSON.

use std::net::IpAddr;

use serde::Deserialize;

use crate::error::{RequestError, SourceFile};
use crate::time::Timestamp;

/// One request to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The key: its id, or `sha256:<hex>` of the raw key.
    pub key: String,
    /// The action: `invoke`, `embed`, `batch`, as declared in the schema.
    pub action: String,
    /// The requested model id, versioned or alias.
    pub model: String,
    /// Caller's request id: required to reserve budget, and the handle for commit/release.
    pub request_id: Option<String>,
    /// When the request happens; the engine's clock when absent.
    pub time: Option<Timestamp>,
    /// Where the request comes from.
    pub source_ip: Option<IpAddr>,
    /// Input tokens of the call.
    pub input_tokens: u64,
    /// Maximum output tokens the call may produce; the model's maximum when absent.
    pub max_output_tokens: Option<u64>,
}

impl Request {
    /// A request of `key` to `invoke` `model`, with no tokens and nothing else set.
    pub fn new(key: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            action: "invoke".to_owned(),
            model: model.into(),
            request_id: None,
            time: None,
            source_ip: None,
            input_tokens: 0,
            max_output_tokens: None,
        }
    }

    /// Parses an AuthZEN evaluation request. `name` labels the diagnostics (`<stdin>`).
    pub fn from_json(name: &str, text: &str) -> Result<Self, RequestError> {
        let file = SourceFile::new(name, text);
        let raw: RawRequest = serde_json::from_str(text).map_err(|e| {
            let offset = offset_of(text, e.line(), e.column());
            RequestError::Json(Box::new(file.error(
                format!("invalid request JSON: {e}"),
                Some(offset..offset),
                "here",
            )))
        })?;
        Self::from_raw(raw)
    }

    /// Parses an AuthZEN evaluation request from a JSON value, ignoring the members keyscope
    /// does not know, as AuthZEN asks of a service (`keyscope decide` and the fixtures refuse
    /// them instead, to catch typos). Known members are still checked for their types.
    pub fn from_value_ignoring_unknown(mut value: serde_json::Value) -> Result<Self, RequestError> {
        const KNOWN: [(&str, &[&str]); 4] = [
            ("subject", &["type", "id", "properties"]),
            ("action", &["name", "properties"]),
            ("resource", &["type", "id", "properties"]),
            (
                "context",
                &[
                    "request_id",
                    "time",
                    "source_ip",
                    "input_tokens",
                    "max_output_tokens",
                ],
            ),
        ];
        if let Some(top) = value.as_object_mut() {
            top.retain(|name, _| KNOWN.iter().any(|(known, _)| known == name));
            for (name, members) in KNOWN {
                if let Some(object) = top.get_mut(name).and_then(|v| v.as_object_mut()) {
                    object.retain(|member, _| members.contains(&member.as_str()));
                }
            }
        }
        Self::from_value(value)
    }

    /// Parses an AuthZEN evaluation request from a JSON value.
    pub fn from_value(value: serde_json::Value) -> Result<Self, RequestError> {
        let raw: RawRequest = serde_json::from_value(value).map_err(|e| {
            RequestError::Invalid(format!("not an AuthZEN evaluation request: {e}"))
        })?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawRequest) -> Result<Self, RequestError> {
        if raw.subject.kind != "Key" {
            return Err(RequestError::Invalid(format!(
                "subject type must be `Key`, not `{}`",
                raw.subject.kind
            )));
        }
        if raw.resource.kind != "Model" {
            return Err(RequestError::Invalid(format!(
                "resource type must be `Model`, not `{}`",
                raw.resource.kind
            )));
        }
        let context = raw.context;
        let time = match context.time {
            Some(text) => Some(Timestamp::parse(&text).ok_or_else(|| {
                RequestError::Invalid(format!(
                    "`context.time` must be an RFC 3339 date-time with offset, not `{text}`"
                ))
            })?),
            None => None,
        };
        let source_ip = match context.source_ip {
            Some(text) => Some(text.parse().map_err(|_| {
                RequestError::Invalid(format!(
                    "`context.source_ip` is not an IP address: `{text}`"
                ))
            })?),
            None => None,
        };
        if let Some(id) = &context.request_id
            && (id.is_empty() || id.len() > 256)
        {
            return Err(RequestError::Invalid(
                "`context.request_id` must be 1 to 256 characters".to_owned(),
            ));
        }
        Ok(Self {
            key: raw.subject.id,
            action: raw.action.name,
            model: raw.resource.id,
            request_id: context.request_id,
            time,
            source_ip,
            input_tokens: context.input_tokens,
            max_output_tokens: context.max_output_tokens,
        })
    }

    /// The request as AuthZEN JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let mut context = serde_json::Map::new();
        if let Some(id) = &self.request_id {
            context.insert("request_id".into(), id.clone().into());
        }
        if let Some(time) = self.time {
            context.insert("time".into(), time.to_string().into());
        }
        if let Some(ip) = self.source_ip {
            context.insert("source_ip".into(), ip.to_string().into());
        }
        context.insert("input_tokens".into(), self.input_tokens.into());
        if let Some(max) = self.max_output_tokens {
            context.insert("max_output_tokens".into(), max.into());
        }
        serde_json::json!({
            "subject": {"type": "Key", "id": self.key},
            "action": {"name": self.action},
            "resource": {"type": "Model", "id": self.model},
            "context": context,
        })
    }
}

fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(text.len())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    subject: RawEntity,
    action: RawAction,
    resource: RawEntity,
    #[serde(default)]
    context: RawContext,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "AuthZEN allows properties; keyscope takes them from the store"
    )]
    properties: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    name: String,
    #[serde(default)]
    #[expect(dead_code, reason = "AuthZEN allows properties; keyscope ignores them")]
    properties: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawContext {
    request_id: Option<String>,
    time: Option<String>,
    source_ip: Option<String>,
    #[serde(default)]
    input_tokens: u64,
    max_output_tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_authzen() {
        let text = r#"{"subject": {"type": "Key", "id": "k1"}, "action": {"name": "invoke"},
            "resource": {"type": "Model", "id": "gpt-4o"},
            "context": {"request_id": "r1", "time": "2026-11-22T18:00:00Z", "source_ip": "10.0.0.1",
                        "input_tokens": 10, "max_output_tokens": 20}}"#;
        let request = Request::from_json("<stdin>", text).unwrap();
        assert_eq!(request.key, "k1");
        assert_eq!(request.model, "gpt-4o");
        assert_eq!(request.input_tokens, 10);
        assert_eq!(request.max_output_tokens, Some(20));
        assert_eq!(Request::from_value(request.to_json()).unwrap(), request);
    }

    #[test]
    fn a_service_ignores_unknown_members_but_not_bad_types() {
        let value = serde_json::json!({
            "subject": {"type": "Key", "id": "k1", "tenant": "x"}, "action": {"name": "invoke"},
            "resource": {"type": "Model", "id": "m"}, "options": {},
            "context": {"input_tokens": 5, "reserve": true, "trace": {"a": 1}},
        });
        assert!(Request::from_value(value.clone()).is_err());
        let request = Request::from_value_ignoring_unknown(value).unwrap();
        assert_eq!((request.key.as_str(), request.input_tokens), ("k1", 5));
        let bad = serde_json::json!({
            "subject": {"type": "Key", "id": "k1"}, "action": {"name": "invoke"},
            "resource": {"type": "Model", "id": "m"}, "context": {"input_tokens": "5"},
        });
        assert!(Request::from_value_ignoring_unknown(bad).is_err());
    }

    #[test]
    fn rejects_bad_requests() {
        let bad = [
            r#"{"subject": {"type": "Key", "id": "k1"}, "action": {"name": "invoke"}"#,
            r#"{"subject": {"type": "User", "id": "k1"}, "action": {"name": "invoke"}, "resource": {"type": "Model", "id": "m"}}"#,
            r#"{"subject": {"type": "Key", "id": "k1"}, "action": {"name": "invoke"}, "resource": {"type": "Model", "id": "m"}, "context": {"input_tokens": -1}}"#,
            r#"{"subject": {"type": "Key", "id": "k1"}, "action": {"name": "invoke"}, "resource": {"type": "Model", "id": "m"}, "context": {"source_ip": "10.0.0"}}"#,
            r#"{"subject": {"type": "Key", "id": "k1"}, "action": {"name": "invoke"}, "resource": {"type": "Model", "id": "m"}, "context": {"time": "now"}}"#,
            r#"{"subject": {"type": "Key", "id": "k1"}, "action": {"name": "invoke"}, "resource": {"type": "Model", "id": "m"}, "context": {"cost": 1}}"#,
        ];
        for text in bad {
            assert!(Request::from_json("<stdin>", text).is_err(), "{text}");
        }
    }
}
