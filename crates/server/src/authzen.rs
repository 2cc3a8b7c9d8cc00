//! The AuthZEN endpoints: discovery, one evaluation, a batch of evaluations.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request as HttpRequest, State as Shared};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyscope_policy::{Decision, Engine, Reason, ReasonEffect, Request};
use serde_json::{Map, Value, json};

use crate::State;

/// The header a caller correlates requests with; echoed on every response.
const REQUEST_ID: &str = "x-request-id";

/// An error answer: the status and `{"error": {"status": ..., "message": ...}}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"error": {"status": status.as_u16(), "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

/// The largest response body the masking reads; answers are far smaller.
const MASKED_BODY_LIMIT: usize = 64 << 20;

/// Masks any key in a response body ([`crate::ServiceConfig::mask`]): decisions quote the
/// model, action and request id as sent, and errors quote what failed to parse.
pub(crate) async fn mask_response(
    Shared(state): Shared<Arc<State>>,
    request: HttpRequest,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MASKED_BODY_LIMIT).await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the answer could not be read",
        );
    };
    let shown = match std::str::from_utf8(&bytes) {
        Ok(text) => (state.mask)(text).into_bytes(),
        // Every body this service writes is JSON or text.
        Err(_) => bytes.to_vec(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(shown))
}

/// Echoes the caller's `X-Request-ID` on the response.
pub(crate) async fn echo_request_id(request: HttpRequest, next: Next) -> Response {
    let id = request.headers().get(REQUEST_ID).cloned();
    let mut response = next.run(request).await;
    if let Some(id) = id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}

/// `GET /.well-known/authzen-configuration`: where the endpoints are, relative to the host the
/// caller reached.
pub(crate) async fn configuration(headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    let base = format!("http://{host}");
    axum::Json(json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
        "search_subject_endpoint": format!("{base}/access/v1/search/subject"),
        "search_resource_endpoint": format!("{base}/access/v1/search/resource"),
        "search_action_endpoint": format!("{base}/access/v1/search/action"),
    }))
    .into_response()
}

/// The JSON body of a POST, or why it is not one (a 400).
pub(crate) fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, String> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        });
    if !json_type {
        return Err("the body must be JSON, sent with `Content-Type: application/json`".to_owned());
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))
}

/// An evaluation parsed from AuthZEN JSON: the request, and whether it asks to reserve.
fn parse(value: Value) -> Result<(Request, bool), String> {
    let reserve = match value.pointer("/context/reserve") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(reserve)) => *reserve,
        Some(_) => return Err("`context.reserve` must be a boolean".to_owned()),
    };
    let request = Request::from_value_ignoring_unknown(value).map_err(|e| e.to_string())?;
    Ok((request, reserve))
}

/// A decision as AuthZEN JSON; a hold it took is an obligation the gateway must honour.
fn answer(decision: &Decision) -> Value {
    let mut value = decision.to_authzen();
    if let (Some(hold), Some(context)) = (
        &decision.reservation,
        value.get_mut("context").and_then(Value::as_object_mut),
    ) {
        context.insert(
            "obligations".to_owned(),
            json!([{
                "id": "keyscope:budget-hold",
                "request_id": hold.request_id,
                "held_micros": hold.held_micros,
                "expires_at": hold.expires_at,
                "existing": hold.existing,
                "settle": format!("/v1/usage/{}/commit", hold.request_id),
            }]),
        );
    }
    value
}

/// Decides one evaluation, off the async workers when it touches the ledger.
async fn decide(state: &Arc<State>, request: Request, reserve: bool) -> Decision {
    if state.ledger.is_none() {
        return state.decide(&request, reserve);
    }
    let shared = Arc::clone(state);
    let fallback = request.clone();
    match tokio::task::spawn_blocking(move || shared.decide(&request, reserve)).await {
        Ok(decision) => decision,
        Err(_) => ledger_denial(&state.engine(), &fallback, "the decision task failed"),
    }
}

/// A denial because the ledger could not be used: never an allow.
pub(crate) fn ledger_denial(engine: &Engine, request: &Request, message: &str) -> Decision {
    engine.deny_for_ledger(
        request,
        &format!("the budget ledger could not be used, so the request is denied: {message}"),
    )
}

/// A denial by the service itself (`reason`), with the request's figures as the engine sees
/// them.
pub(crate) fn denial(engine: &Engine, request: &Request, reason: &str, message: &str) -> Decision {
    let mut decision = engine.decide(request);
    decision.allowed = false;
    decision.reservation = None;
    decision.errors.push(message.to_owned());
    decision.reasons = vec![Reason {
        id: reason.to_owned(),
        effect: ReasonEffect::Engine,
        message: message.to_owned(),
    }];
    decision
}

/// `POST /access/v1/evaluation`.
pub(crate) async fn evaluation(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match json_body(&headers, &body) {
        Ok(value) => single(&state, value).await,
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// One evaluation's answer, or the 400 that says why it is not one.
async fn single(state: &Arc<State>, value: Value) -> Response {
    match parse(value) {
        Ok((request, reserve)) => {
            axum::Json(answer(&decide(state, request, reserve).await)).into_response()
        }
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// How a batch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

/// `POST /access/v1/evaluations`: each item inherits the top-level `subject`, `action`,
/// `resource` and `context` it does not set itself; answers come back in order. Under
/// `execute_all` an item that is not a valid evaluation is a denial with its error, not a failed
/// batch; the short-circuit semantics stop after the first deny or permit.
pub(crate) async fn evaluations(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let value = match json_body(&headers, &body) {
        Ok(value) => value,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let Some(top) = value.as_object() else {
        return error(StatusCode::BAD_REQUEST, "the body must be a JSON object");
    };
    let semantic = match top
        .get("options")
        .and_then(|o| o.get("evaluations_semantic"))
    {
        None | Some(Value::Null) => Semantic::ExecuteAll,
        Some(Value::String(s)) if s == "execute_all" => Semantic::ExecuteAll,
        Some(Value::String(s)) if s == "deny_on_first_deny" => Semantic::DenyOnFirstDeny,
        Some(Value::String(s)) if s == "permit_on_first_permit" => Semantic::PermitOnFirstPermit,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "`options.evaluations_semantic` must be execute_all, deny_on_first_deny or \
                     permit_on_first_permit, not {other}"
                ),
            );
        }
    };
    let items = match top.get("evaluations") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        // No batch: the request is one evaluation and is answered as one (AuthZEN 1.0, 7.1).
        None | Some(Value::Array(_)) => {
            let mut one = top.clone();
            one.remove("evaluations");
            one.remove("options");
            return single(&state, Value::Object(one)).await;
        }
        Some(_) => return error(StatusCode::BAD_REQUEST, "`evaluations` must be an array"),
    };
    let defaults: Map<String, Value> = ["subject", "action", "resource", "context"]
        .into_iter()
        .filter_map(|name| top.get(name).map(|v| (name.to_owned(), v.clone())))
        .collect();
    let merged = items
        .iter()
        .map(|item| match item.as_object() {
            Some(own) => {
                let mut whole = defaults.clone();
                whole.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
                Value::Object(whole)
            }
            None => item.clone(),
        })
        .collect();
    evaluation_answers(&state, merged, semantic).await
}

/// Batches at least this long under `execute_all` are decided on several threads.
const PARALLEL_BATCH: usize = 16;

/// The answer to one batch item: the decision, or a denial carrying its error.
fn item_answer(state: &State, item: Value) -> (bool, Value) {
    match parse(item) {
        Ok((request, reserve)) => {
            let decision = state.decide(&request, reserve);
            (decision.allowed, answer(&decision))
        }
        Err(message) => (
            false,
            json!({"decision": false, "context": {"error": {"status": 400, "message": message}}}),
        ),
    }
}

/// `execute_all` over a long batch: the items in contiguous chunks, one blocking task per core,
/// answers in the items' order. A chunk whose task failed is denied item by item.
async fn parallel_answers(state: &Arc<State>, items: Vec<Value>) -> Response {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    let per_chunk = items.len().div_ceil(threads);
    let mut chunks = Vec::with_capacity(threads);
    let mut rest = items.into_iter();
    loop {
        let chunk: Vec<Value> = rest.by_ref().take(per_chunk).collect();
        if chunk.is_empty() {
            break;
        }
        let count = chunk.len();
        let shared = Arc::clone(state);
        let task = tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .map(|item| item_answer(&shared, item).1)
                .collect::<Vec<Value>>()
        });
        chunks.push((count, task));
    }
    let mut answers = Vec::new();
    for (count, task) in chunks {
        match task.await {
            Ok(decided) => answers.extend(decided),
            Err(_) => answers.extend((0..count).map(|_| {
                json!({"decision": false, "context": {"error": {"status": 500,
                       "message": "the decision task failed"}}})
            })),
        }
    }
    axum::Json(json!({"evaluations": answers})).into_response()
}

async fn evaluation_answers(state: &Arc<State>, items: Vec<Value>, semantic: Semantic) -> Response {
    if semantic == Semantic::ExecuteAll && items.len() >= PARALLEL_BATCH {
        return parallel_answers(state, items).await;
    }
    let mut answers = Vec::with_capacity(items.len());
    for item in items {
        let (allowed, answer) = match parse(item) {
            Ok((request, reserve)) => {
                let decision = decide(state, request, reserve).await;
                (decision.allowed, answer(&decision))
            }
            Err(message) => (
                false,
                json!({"decision": false, "context": {"error": {"status": 400, "message": message}}}),
            ),
        };
        answers.push(answer);
        let stop = match semantic {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !allowed,
            Semantic::PermitOnFirstPermit => allowed,
        };
        if stop {
            break;
        }
    }
    axum::Json(json!({"evaluations": answers})).into_response()
}
