//! The second phase of a reservation over HTTP, and readiness.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as Shared};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keyscope_policy::{LedgerError, Settlement, Usage};
use serde::Deserialize;
use serde_json::json;

use crate::State;
use crate::authzen::{error, json_body};
use crate::metrics::LedgerOp;

/// The body of a commit: what the call actually used.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CommitBody {
    input_tokens: u64,
    cached_input_tokens: u64,
    output_tokens: u64,
    /// The actual cost in micro-dollars, when the gateway knows it.
    cost_micros: Option<u64>,
}

/// `POST /v1/usage/{request_id}/commit`: idempotent.
pub(crate) async fn commit(
    Shared(state): Shared<Arc<State>>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let usage = if body.is_empty() {
        CommitBody::default()
    } else {
        let value = match json_body(&headers, &body) {
            Ok(value) => value,
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
        };
        match serde_json::from_value::<CommitBody>(value) {
            Ok(usage) => usage,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid usage: {e}")),
        }
    };
    let usage = Usage {
        input_tokens: usage.input_tokens,
        cached_input_tokens: usage.cached_input_tokens,
        output_tokens: usage.output_tokens,
        cost_micros: usage.cost_micros,
    };
    let now = state.engine().clock().now();
    settle(state, request_id, LedgerOp::Commit, move |ledger, id| {
        ledger.commit(id, &usage, now)
    })
    .await
}

/// `POST /v1/usage/{request_id}/release`: idempotent.
pub(crate) async fn release(
    Shared(state): Shared<Arc<State>>,
    Path(request_id): Path<String>,
) -> Response {
    let now = state.engine().clock().now();
    settle(state, request_id, LedgerOp::Release, move |ledger, id| {
        ledger.release(id, now)
    })
    .await
}

/// Runs a settlement on the blocking pool and answers with its outcome.
async fn settle(
    state: Arc<State>,
    request_id: String,
    op: LedgerOp,
    f: impl FnOnce(&keyscope_policy::Ledger, &str) -> Result<Settlement, LedgerError> + Send + 'static,
) -> Response {
    if state.ledger.is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "this service has no budget ledger: nothing was reserved",
        );
    }
    let id = request_id.clone();
    let outcome = tokio::task::spawn_blocking(move || match &state.ledger {
        Some(ledger) => {
            let started = std::time::Instant::now();
            let settled = f(ledger, &id);
            state.metrics.ledger(op, started.elapsed());
            let recorded = match &settled {
                Ok(settlement) => state.record_settlement(&id, settlement),
                Err(_) => Ok(()),
            };
            settled.map(|s| (s, recorded))
        }
        None => Err(LedgerError::UnknownRequest(id)),
    })
    .await;
    match outcome {
        Ok(Ok((settlement, recorded))) => {
            let mut body = serde_json::to_value(settlement).unwrap_or_else(|_| json!({}));
            if let Some(object) = body.as_object_mut() {
                object.insert("request_id".to_owned(), request_id.into());
                // Settled all the same (the money was spent), but the record is missing: say so.
                if let Err(error) = recorded {
                    object.insert("audit_error".to_owned(), error.to_string().into());
                }
            }
            axum::Json(body).into_response()
        }
        Ok(Err(e @ LedgerError::UnknownRequest(_))) => error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e @ (LedgerError::AlreadyCommitted(_) | LedgerError::AlreadyReleased(_)))) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the settlement task failed",
        ),
    }
}

/// `GET /readyz`: the store deciding now (its revision and policy count), whether the ledger
/// answers (and how fast) and whether the audit log still writes. 503 unless all are well.
pub(crate) async fn ready(Shared(state): Shared<Arc<State>>) -> Response {
    let mut body = json!({
        "ready": true,
        "revision": state.revision().as_deref(),
        "policies": state.engine().store().policies().count(),
        "ledger": "none",
    });
    let mut ready = true;
    if let Err(e) = state.audit_health() {
        body["audit"] = json!(e.to_string());
        ready = false;
    }
    if state.ledger.is_some() {
        let shared = Arc::clone(&state);
        let probe = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let answered = shared.ledger.as_ref().map(keyscope_policy::Ledger::ping);
            (answered, started.elapsed())
        })
        .await;
        match probe {
            Ok((Some(Ok(_)), took)) => {
                body["ledger"] = json!("ok");
                body["ledger_micros"] = json!(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            }
            Ok((Some(Err(e)), _)) => {
                body["ledger"] = json!("unreachable");
                body["ledger_error"] = json!(e.to_string());
                ready = false;
            }
            _ => {
                body["ledger"] = json!("unreachable");
                ready = false;
            }
        }
    }
    body["ready"] = json!(ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
