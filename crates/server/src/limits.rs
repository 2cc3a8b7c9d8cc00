//! What one caller may hold of the service: requests in flight (more are shed with 503 rather
//! than queued without bound), the time to send the body (408), its size (413).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request as HttpRequest, State as Shared};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use crate::State;
use crate::authzen::error;

/// The service's limits; [`Limits::default`] suits a gateway on the same host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Requests decided at once; one more is answered 503 with `Retry-After` at once, so a
    /// gateway falls back (denies or retries) instead of waiting in an unbounded queue.
    pub concurrency: usize,
    /// The time a connection has to send a request's headers (and finish a TLS handshake);
    /// then it is closed.
    pub header_timeout: Duration,
    /// The time a request has to send its whole body once its headers are in; then 408.
    pub body_timeout: Duration,
    /// The largest request body accepted, in bytes; larger ones get 413.
    pub body_bytes: usize,
    /// How long a shutdown waits for the connections still busy (a request being decided, or
    /// an answer a client is slow to read); then they are closed and the service ends.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrency: 512,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            body_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// These limits with at most `concurrency` requests in flight.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// These limits with these header and body timeouts.
    pub fn with_timeouts(mut self, header: Duration, body: Duration) -> Self {
        self.header_timeout = header;
        self.body_timeout = body;
        self
    }

    /// These limits with a shutdown that waits at most `grace` for busy connections.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// These limits with bodies of at most `bytes`.
    pub fn with_body_bytes(mut self, bytes: usize) -> Self {
        self.body_bytes = bytes;
        self
    }
}

/// Reads the whole body within the body timeout and the size limit, so a handler never waits
/// on a slow client and a client that trickles its body holds its slot for a bounded time.
pub(crate) async fn read_body_in_time(
    Shared(state): Shared<Arc<State>>,
    request: HttpRequest,
    next: Next,
) -> Response {
    let limits = state.limits;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.body_bytes as u64) {
        return too_large(limits.body_bytes);
    }
    let (parts, body) = request.into_parts();
    let read = Limited::new(body, limits.body_bytes).collect();
    let bytes = match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(limits.body_bytes);
        }
        Ok(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        }
        Err(_) => {
            state.metrics.timed_out();
            let mut late = error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} ms",
                    limits.body_timeout.as_millis()
                ),
            );
            late.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return late;
        }
    };
    next.run(HttpRequest::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// The answer to a request the tower layers refused: 503 at the concurrency limit.
pub(crate) fn refused(state: &State, error_: &tower::BoxError) -> Response {
    if error_.is::<tower::load_shed::error::Overloaded>() {
        state.metrics.shed();
        let mut busy = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service is at its concurrency limit; retry shortly",
        );
        busy.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return busy;
    }
    error(StatusCode::INTERNAL_SERVER_ERROR, "the request failed")
}
