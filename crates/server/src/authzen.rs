//! The AuthZEN endpoints: discovery, one evaluation, a batch of evaluations.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::{Request as HttpRequest, State as Shared};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyscope_policy::{Decision, Engine, Reason, ReasonEffect, Request};
use serde::Serialize;
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

/// Marks a response whose body was masked piece by piece where it was written (a long batch's
/// answers, each chunk in the blocking task that decided it), so [`mask_response`] does not
/// scan it a second time on an async worker. Only [`execute_all_answers`] sets it.
#[derive(Debug, Clone, Copy)]
struct Masked;

/// Masks any key in a response body ([`crate::ServiceConfig::mask`]): decisions quote the
/// model, action and request id as sent, and errors quote what failed to parse.
pub(crate) async fn mask_response(
    Shared(state): Shared<Arc<State>>,
    request: HttpRequest,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if response.extensions_mut().remove::<Masked>().is_some() {
        return response;
    }
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
/// Read in place ([`crate::borrowed::evaluation`]) when the JSON is plainly valid; otherwise by the library's
/// parser, whose error the caller gets.
fn parse_value(value: Value) -> Result<(Request, bool), String> {
    match crate::borrowed::evaluation(&value, None) {
        Some(parsed) => Ok(parsed),
        None => parse(value),
    }
}

/// An evaluation as the library parses it ([`Request::from_value_ignoring_unknown`]).
fn parse(value: Value) -> Result<(Request, bool), String> {
    let reserve = match value.pointer("/context/reserve") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(reserve)) => *reserve,
        Some(_) => return Err("`context.reserve` must be a boolean".to_owned()),
    };
    let request = Request::from_value_ignoring_unknown(value).map_err(|e| e.to_string())?;
    Ok((request, reserve))
}

/// A decision as AuthZEN JSON ([`Decision::to_authzen`]'s shape), written straight from the
/// decision rather than through a `serde_json::Value`; a hold it took is an obligation the
/// gateway must honour.
#[derive(Serialize)]
struct Answer<'d> {
    decision: bool,
    context: AnswerContext<'d>,
}

/// The decision's members, and the obligations a hold puts on the gateway.
#[derive(Serialize)]
struct AnswerContext<'d> {
    #[serde(flatten)]
    decision: &'d Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    obligations: Option<[Obligation<'d>; 1]>,
}

/// A budget hold, shaped as the AuthZEN obligations profile draft describes.
#[derive(Serialize)]
struct Obligation<'d> {
    id: &'static str,
    request_id: &'d str,
    held_micros: u64,
    expires_at: &'d str,
    existing: bool,
    settle: String,
}

impl<'d> Answer<'d> {
    fn of(decision: &'d Decision) -> Self {
        let obligations = decision.reservation.as_ref().map(|hold| {
            [Obligation {
                id: "keyscope:budget-hold",
                request_id: &hold.request_id,
                held_micros: hold.held_micros,
                expires_at: &hold.expires_at,
                existing: hold.existing,
                settle: format!("/v1/usage/{}/commit", hold.request_id),
            }]
        });
        Self {
            decision: decision.allowed,
            context: AnswerContext {
                decision,
                obligations,
            },
        }
    }
}

/// Appends the answer to `decision` to `out`.
fn write_answer(out: &mut Vec<u8>, decision: &Decision) {
    // Writing plain structs to a `Vec` cannot fail.
    let _ = serde_json::to_writer(out, &Answer::of(decision));
}

/// Appends the answer to a batch item that is not a valid evaluation: a denial with its error.
fn write_invalid(out: &mut Vec<u8>, message: &str) {
    let answer =
        json!({"decision": false, "context": {"error": {"status": 400, "message": message}}});
    let _ = serde_json::to_writer(out, &answer);
}

/// A `200 OK` with a JSON body already written.
fn json_response(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
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
    match parse_value(value) {
        Ok((request, reserve)) => {
            let mut body = Vec::with_capacity(1024);
            write_answer(&mut body, &decide(state, request, reserve).await);
            json_response(body)
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
    let mut top = match json_body(&headers, &body) {
        Ok(Value::Object(top)) => top,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let semantic = match semantic(&top) {
        Ok(semantic) => semantic,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let items = match top.remove("evaluations") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        // No batch: the request is one evaluation and is answered as one (AuthZEN 1.0, 7.1).
        None | Some(Value::Array(_)) => {
            top.remove("options");
            return single(&state, Value::Object(top)).await;
        }
        Some(_) => return error(StatusCode::BAD_REQUEST, "`evaluations` must be an array"),
    };
    let defaults = DEFAULTED
        .into_iter()
        .filter_map(|name| top.remove(name).map(|value| (name.to_owned(), value)))
        .collect();
    let batch = Arc::new(Batch { defaults, items });
    evaluation_answers(&state, batch, semantic).await
}

/// A batch's items and the top-level members they inherit, read in place by every chunk.
struct Batch {
    /// The top-level `subject`, `action`, `resource` and `context` the batch sets.
    defaults: Map<String, Value>,
    items: Vec<Value>,
}

impl Batch {
    /// Item `index` as an evaluation with its defaults, or why it is not one. Read in place when
    /// it is plainly valid; otherwise merged with its defaults as JSON and given to the
    /// library's parser, whose error the answer quotes.
    fn parse(&self, index: usize) -> Result<(Request, bool), String> {
        let Some(item) = self.items.get(index) else {
            return Err("the item was not decided".to_owned());
        };
        if let Some(parsed) = crate::borrowed::evaluation(item, Some(&self.defaults)) {
            return Ok(parsed);
        }
        let merged = match item.clone() {
            Value::Object(mut own) => {
                for (name, default) in &self.defaults {
                    if !own.contains_key(name) {
                        own.insert(name.clone(), default.clone());
                    }
                }
                Value::Object(own)
            }
            other => other,
        };
        parse(merged)
    }
}

/// The members of a batch's top level that each item inherits unless it sets them itself.
const DEFAULTED: [&str; 4] = ["subject", "action", "resource", "context"];

/// The batch's `options.evaluations_semantic`, `execute_all` when absent.
fn semantic(top: &Map<String, Value>) -> Result<Semantic, String> {
    match top
        .get("options")
        .and_then(|o| o.get("evaluations_semantic"))
    {
        None | Some(Value::Null) => Ok(Semantic::ExecuteAll),
        Some(Value::String(s)) if s == "execute_all" => Ok(Semantic::ExecuteAll),
        Some(Value::String(s)) if s == "deny_on_first_deny" => Ok(Semantic::DenyOnFirstDeny),
        Some(Value::String(s)) if s == "permit_on_first_permit" => {
            Ok(Semantic::PermitOnFirstPermit)
        }
        Some(other) => Err(format!(
            "`options.evaluations_semantic` must be execute_all, deny_on_first_deny or \
             permit_on_first_permit, not {other}"
        )),
    }
}

/// The answers to batch items `range` under `execute_all`, comma-separated: each item decided
/// (a denial with its error when it is not a valid evaluation), all recorded in the audit log
/// with one hand-over.
fn execute_all(state: &State, batch: &Batch, range: std::ops::Range<usize>) -> Vec<u8> {
    let parsed: Vec<Result<(Request, bool), String>> = range.map(|i| batch.parse(i)).collect();
    let requests: Vec<(&Request, bool)> = parsed
        .iter()
        .filter_map(|item| {
            item.as_ref()
                .ok()
                .map(|(request, reserve)| (request, *reserve))
        })
        .collect();
    let mut decisions = state.decide_all(&requests).into_iter();
    let mut out = Vec::with_capacity(parsed.len() * 1024);
    for (index, item) in parsed.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        match item.as_ref().map(|_| decisions.next()) {
            Ok(Some(decision)) => write_answer(&mut out, &decision),
            Ok(None) => write_invalid(&mut out, "the item was not decided"),
            Err(message) => write_invalid(&mut out, message),
        }
    }
    out
}

/// Items per chunk of a long batch under `execute_all`. The threads deciding a batch take its
/// chunks in turn until none is left, so a thread the host preempts leaves its share to the
/// others rather than holding the whole answer back (with one fixed half per core, a batch took
/// as long as its slower half); a chunk is still long enough that its task and its mask cost
/// little beside its decisions.
const CHUNK: usize = 16;

/// `execute_all` over a batch: a batch of one chunk on the async worker unless it touches the
/// ledger; otherwise in chunks of at most [`CHUNK`] items taken in turn by blocking tasks, one
/// per core, answers in the items' order. A chunk whose task failed is denied item by item.
async fn execute_all_answers(state: &Arc<State>, batch: Arc<Batch>) -> Response {
    let len = batch.items.len();
    let chunks = len.div_ceil(CHUNK).max(1);
    if chunks == 1 && state.ledger.is_none() {
        return batch_response(&[execute_all(state, &batch, 0..len)]);
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    let threads = cores.min(chunks);
    let per_chunk = len.div_ceil(chunks);
    let range_of = move |chunk: usize| chunk * per_chunk..((chunk + 1) * per_chunk).min(len);
    let next = Arc::new(AtomicUsize::new(0));
    let take = move |state: &State, batch: &Batch, next: &AtomicUsize| {
        let mut done = Vec::new();
        loop {
            let chunk = next.fetch_add(1, Ordering::Relaxed);
            if chunk >= chunks {
                return done;
            }
            let answers = execute_all(state, batch, range_of(chunk));
            done.push((chunk, masked(state, &answers)));
        }
    };
    let mut tasks = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (shared, batch, next) = (Arc::clone(state), Arc::clone(&batch), Arc::clone(&next));
        tasks.push(tokio::task::spawn_blocking(move || {
            take(&shared, &batch, &next)
        }));
    }
    let mut answers: Vec<Option<Vec<u8>>> = vec![None; chunks];
    for task in tasks {
        // A task that failed leaves the chunks it took empty; the others took the rest.
        for (chunk, text) in task.await.unwrap_or_default() {
            answers[chunk] = Some(text);
        }
    }
    let answers: Vec<Vec<u8>> = answers
        .into_iter()
        .enumerate()
        .map(|(chunk, text)| text.unwrap_or_else(|| failed_chunk(range_of(chunk).len())))
        .collect();
    // Each chunk's answers were masked in its task (the fallback quotes nothing the caller
    // sent): every answer is masked as it would be on its own, and the cores share the work
    // rather than one async worker scanning the whole body after them.
    let mut response = batch_response(&answers);
    response.extensions_mut().insert(Masked);
    response
}

/// The answers to `count` items whose decision task failed: each a denial with a 500 error.
fn failed_chunk(count: usize) -> Vec<u8> {
    let failed = json!({"decision": false, "context": {"error": {"status": 500,
                        "message": "the decision task failed"}}})
    .to_string();
    vec![failed.as_bytes(); count].join(&b","[..])
}

/// `answers` (JSON this service wrote, so UTF-8) with every key in them masked.
fn masked(state: &State, answers: &[u8]) -> Vec<u8> {
    (state.mask)(&String::from_utf8_lossy(answers)).into_bytes()
}

/// `{"evaluations": [...]}` from the comma-separated answers of consecutive chunks.
fn batch_response(chunks: &[Vec<u8>]) -> Response {
    let mut body = Vec::with_capacity(chunks.iter().map(Vec::len).sum::<usize>() + 32);
    body.extend_from_slice(br#"{"evaluations":["#);
    for (index, chunk) in chunks.iter().filter(|c| !c.is_empty()).enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(chunk);
    }
    body.extend_from_slice(b"]}");
    json_response(body)
}

async fn evaluation_answers(state: &Arc<State>, batch: Arc<Batch>, semantic: Semantic) -> Response {
    if semantic == Semantic::ExecuteAll {
        return execute_all_answers(state, batch).await;
    }
    let mut answers = Vec::with_capacity(batch.items.len() * 1024);
    for index in 0..batch.items.len() {
        if !answers.is_empty() {
            answers.push(b',');
        }
        let allowed = match batch.parse(index) {
            Ok((request, reserve)) => {
                let decision = decide(state, request, reserve).await;
                write_answer(&mut answers, &decision);
                decision.allowed
            }
            Err(message) => {
                write_invalid(&mut answers, &message);
                false
            }
        };
        let stop = match semantic {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !allowed,
            Semantic::PermitOnFirstPermit => allowed,
        };
        if stop {
            break;
        }
    }
    batch_response(&[answers])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The items of a chunk whose task failed are each denied with a 500 error, none left out
    /// and none allowed.
    #[test]
    fn a_failed_chunk_denies_each_of_its_items() {
        for count in [0, 1, 3] {
            let text = format!("[{}]", String::from_utf8(failed_chunk(count)).unwrap());
            let answers: Vec<Value> = serde_json::from_str(&text).unwrap();
            assert_eq!(answers.len(), count, "{text}");
            for answer in answers {
                assert_eq!(answer["decision"], false, "{text}");
                assert_eq!(answer["context"]["error"]["status"], 500, "{text}");
            }
        }
    }

    /// The answer written straight from a decision is the library's AuthZEN JSON
    /// ([`Decision::to_authzen`]), member for member and in order, with the hold as an
    /// obligation.
    #[test]
    fn an_answer_is_the_library_authzen_with_the_hold_as_an_obligation() {
        let store = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let engine = Engine::load(&store).unwrap();
        let mut request = Request::new("dev-general-1", "gpt-4o-mini");
        request.request_id = Some("r-1".to_owned());
        let mut decision = engine.decide(&request);
        for reservation in [
            None,
            Some(keyscope_policy::Reservation {
                request_id: "r-1".to_owned(),
                held_micros: 1_500,
                expires_at: "2026-11-22T18:05:00Z".to_owned(),
                existing: false,
            }),
        ] {
            decision.reservation = reservation;
            let mut written = Vec::new();
            write_answer(&mut written, &decision);
            let mut expected = decision.to_authzen();
            if let Some(hold) = &decision.reservation {
                expected["context"]["obligations"] = json!([{
                    "id": "keyscope:budget-hold",
                    "request_id": hold.request_id,
                    "held_micros": hold.held_micros,
                    "expires_at": hold.expires_at,
                    "existing": hold.existing,
                    "settle": "/v1/usage/r-1/commit",
                }]);
            }
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&expected).unwrap()
            );
        }
    }
}
