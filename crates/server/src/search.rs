//! The AuthZEN search endpoints: which models may this key call now, which keys may call this
//! model, what may this key do with this model. Each candidate is decided exactly as an
//! evaluation is (against the ledger's spend when there is one, reserving nothing), so a search
//! never promises what an evaluation would refuse.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::State;
use crate::authzen::{error, json_body};

/// Results a page holds unless the caller asks for fewer.
const DEFAULT_LIMIT: usize = 100;
/// Results a page holds at most.
const MAX_LIMIT: usize = 1_000;

/// What a search varies.
#[derive(Debug, Clone, Copy)]
enum Searched {
    Subject,
    Resource,
    Action,
}

/// `POST /access/v1/search/subject`: the keys that may do `action` on `resource` now.
pub(crate) async fn subject(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    search(&state, &headers, &body, Searched::Subject).await
}

/// `POST /access/v1/search/resource`: the models `subject` may call with `action` now.
pub(crate) async fn resource(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    search(&state, &headers, &body, Searched::Resource).await
}

/// `POST /access/v1/search/action`: the actions `subject` may take on `resource` now.
pub(crate) async fn action(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    search(&state, &headers, &body, Searched::Action).await
}

async fn search(
    state: &Arc<State>,
    headers: &HeaderMap,
    body: &Bytes,
    searched: Searched,
) -> Response {
    let value = match json_body(headers, body) {
        Ok(value) => value,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let Some(query) = value.as_object().cloned() else {
        return error(StatusCode::BAD_REQUEST, "the body must be a JSON object");
    };
    let (start, limit) = match page(&query) {
        Ok(page) => page,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let engine = state.engine();
    let store = engine.store();
    let mut candidates: Vec<String> = match searched {
        Searched::Subject => {
            let mut keys: Vec<String> =
                store.scopes().keys().iter().map(|k| k.id.clone()).collect();
            // The keys keyscope issued, from the ledger's registry: each is decided below like
            // any other, so a revoked or superseded one is not found.
            if let Some(ledger) = &state.ledger {
                match ledger.keys() {
                    Ok(records) => keys.extend(
                        records
                            .into_iter()
                            .filter(|r| r.kind == keyscope_policy::keys::KeyKind::Scoped)
                            .map(|r| r.id),
                    ),
                    Err(e) => {
                        return error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("the key registry could not be read: {e}"),
                        );
                    }
                }
            }
            keys
        }
        Searched::Resource => store
            .catalog()
            .models()
            .iter()
            .map(|m| m.id.clone())
            .collect(),
        Searched::Action => store.actions().map(str::to_owned).collect(),
    };
    candidates.sort();
    let shared = Arc::clone(state);
    let found = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        let mut next = None;
        for (index, candidate) in candidates.iter().enumerate().skip(start) {
            if results.len() == limit {
                next = Some(index);
                break;
            }
            let Ok(request) = keyscope_policy::Request::from_value_ignoring_unknown(evaluation(
                &query, searched, candidate,
            )) else {
                return Err("the search is not a valid evaluation once completed".to_owned());
            };
            if shared.decide_unrecorded(&request, false).allowed {
                results.push(result(searched, candidate));
            }
        }
        Ok((results, next))
    })
    .await;
    match found {
        Ok(Ok((results, next))) => axum::Json(json!({
            "results": results,
            "page": {"next_token": next.map(|n| n.to_string()).unwrap_or_default()},
        }))
        .into_response(),
        Ok(Err(message)) => error(StatusCode::BAD_REQUEST, message),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the search task failed"),
    }
}

/// The start and size of the page asked for: `page.token` is where the last page stopped.
fn page(query: &Map<String, Value>) -> Result<(usize, usize), String> {
    let page = query.get("page");
    let start = match page.and_then(|p| p.get("token")) {
        None | Some(Value::Null) => 0,
        Some(Value::String(t)) if t.is_empty() => 0,
        Some(Value::String(t)) => t
            .parse()
            .map_err(|_| "`page.token` is not a token this service gave".to_owned())?,
        Some(_) => return Err("`page.token` must be a string".to_owned()),
    };
    let limit = match page.and_then(|p| p.get("limit")) {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        Some(v) => v
            .as_u64()
            .filter(|l| *l > 0)
            .ok_or_else(|| "`page.limit` must be a positive integer".to_owned())?
            .min(MAX_LIMIT as u64) as usize,
    };
    Ok((start, limit))
}

/// The evaluation of one candidate: the query with the searched entity filled in.
fn evaluation(query: &Map<String, Value>, searched: Searched, candidate: &str) -> Value {
    let mut request = query.clone();
    request.remove("page");
    match searched {
        Searched::Subject => {
            request.insert("subject".into(), json!({"type": "Key", "id": candidate}));
        }
        Searched::Resource => {
            request.insert("resource".into(), json!({"type": "Model", "id": candidate}));
        }
        Searched::Action => {
            request.insert("action".into(), json!({"name": candidate}));
        }
    }
    Value::Object(request)
}

fn result(searched: Searched, candidate: &str) -> Value {
    match searched {
        Searched::Subject => json!({"type": "Key", "id": candidate}),
        Searched::Resource => json!({"type": "Model", "id": candidate}),
        Searched::Action => json!({"name": candidate}),
    }
}
