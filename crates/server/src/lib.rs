//! `keyscope serve`: the policy decision engine as an OpenID AuthZEN 1.0 policy decision point
//! over HTTP, so a gateway in any language asks over the network and gets the same decision,
//! with its reasons, as `keyscope decide` gives.
//!
//! The one design decision: **every decision is the library's** ([`Engine`]); this crate only
//! turns HTTP into [`Request`]s and [`Decision`]s back into JSON. It is the only crate with an
//! HTTP stack (axum on tokio). Decisions run on the request's task (microseconds of CPU);
//! anything that touches the ledger (SQLite, blocking) runs on tokio's blocking pool.
//!
//! Endpoints:
//!
//! | method and path | what |
//! |---|---|
//! | `GET /.well-known/authzen-configuration` | discovery |
//! | `POST /access/v1/evaluation` | one decision |
//! | `POST /access/v1/evaluations` | a batch: defaults, order kept, `evaluations_semantic` |
//! | `POST /v1/usage/{request_id}/commit` | settle a reservation with its actual usage |
//! | `POST /v1/usage/{request_id}/release` | drop a reservation that did not run |
//! | `GET /healthz`, `GET /readyz` | liveness; readiness (store and ledger) |
//!
//! A malformed body, a missing or mistyped field or a non-JSON content type is a 400 with an
//! error body, never a decision; unknown members are ignored. `X-Request-ID` is echoed.
//!
//! ```no_run
//! use keyscope_policy::{Engine, Ledger};
//! use keyscope_server::{Service, ServiceConfig};
//!
//! let engine = Engine::load(std::path::Path::new("policies"))?;
//! let config = ServiceConfig::new(engine, Some(Ledger::open_in_memory()?));
//! let service = Service::start("127.0.0.1:0".parse()?, config)?;
//! println!("listening on {}", service.addr());
//! service.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use keyscope_policy::{Decision, Engine, Ledger, Request};
use thiserror::Error;

mod authzen;
mod usage;

/// Everything a service decides with.
#[derive(Debug)]
pub struct ServiceConfig {
    /// The decision engine, over a loaded store.
    pub engine: Engine,
    /// The budget ledger; without one, budgets apply to each request alone and reservations
    /// are denied.
    pub ledger: Option<Ledger>,
    /// The largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
}

impl ServiceConfig {
    /// A configuration with the default limits.
    pub fn new(engine: Engine, ledger: Option<Ledger>) -> Self {
        Self {
            engine,
            ledger,
            body_limit: 1 << 20,
        }
    }
}

/// Why a service could not start or stopped with an error.
#[derive(Debug, Error, miette::Diagnostic)]
pub enum ServeError {
    /// The listening socket could not be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    #[diagnostic(code(keyscope::serve::bind))]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// Anything else the system refused: the runtime, the socket, the server loop.
    #[error("the service failed: {0}")]
    #[diagnostic(code(keyscope::serve::io))]
    Io(#[from] std::io::Error),
    /// The service thread panicked.
    #[error("the service thread panicked")]
    #[diagnostic(code(keyscope::serve::panicked))]
    Panicked,
}

/// What every handler shares: immutable, behind an `Arc`.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) engine: Engine,
    pub(crate) ledger: Option<Ledger>,
}

/// A running service: its own thread and runtime, stopped on [`stop`](Self::stop) (finishing
/// the requests in flight) or by SIGTERM / Ctrl-C when [`wait`](Self::wait)ed on.
#[derive(Debug)]
pub struct Service {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl Service {
    /// Binds `addr` (port 0 picks a free port) and starts serving on a thread of its own.
    pub fn start(addr: SocketAddr, config: ServiceConfig) -> Result<Self, ServeError> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| ServeError::Bind { addr, source })?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("keyscope-serve")
            .build()?;
        let app = router(config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("keyscope-serve-main".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown_signal(stopped))
                        .await?;
                    Ok(())
                })
            })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address the service listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks until the service ends: SIGTERM or Ctrl-C, after the requests in flight finish.
    pub fn wait(mut self) -> Result<(), ServeError> {
        self.join()
    }

    /// Stops the service gracefully and waits for it.
    pub fn stop(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join()
    }

    fn join(&mut self) -> Result<(), ServeError> {
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| ServeError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.join();
    }
}

/// Resolves on [`Service::stop`], SIGTERM or Ctrl-C.
async fn shutdown_signal(stopped: tokio::sync::oneshot::Receiver<()>) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = stopped => {}
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The service's routes over `config`.
pub fn router(config: ServiceConfig) -> Router {
    let body_limit = config.body_limit;
    let state = Arc::new(State {
        engine: config.engine,
        ledger: config.ledger,
    });
    Router::new()
        .route(
            "/.well-known/authzen-configuration",
            get(authzen::configuration),
        )
        .route("/access/v1/evaluation", post(authzen::evaluation))
        .route("/access/v1/evaluations", post(authzen::evaluations))
        .route("/v1/usage/{request_id}/commit", post(usage::commit))
        .route("/v1/usage/{request_id}/release", post(usage::release))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(usage::ready))
        .layer(axum::middleware::from_fn(authzen::echo_request_id))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

impl State {
    /// Decides one parsed request: against the ledger when there is one (reserving when asked),
    /// else alone. A ledger failure denies.
    pub(crate) fn decide(&self, request: &Request, reserve: bool) -> Decision {
        let mode = if reserve {
            keyscope_policy::LedgerMode::Reserve
        } else {
            keyscope_policy::LedgerMode::Check
        };
        match (&self.ledger, reserve) {
            (Some(ledger), _) => match self.engine.decide_with_ledger(request, ledger, mode) {
                Ok(decision) => decision,
                Err(error) => authzen::ledger_denial(&self.engine, request, &error.to_string()),
            },
            (None, true) => authzen::ledger_denial(
                &self.engine,
                request,
                "this service has no budget ledger, so it cannot reserve",
            ),
            (None, false) => self.engine.decide(request),
        }
    }
}
