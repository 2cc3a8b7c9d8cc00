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
//! | `POST /access/v1/search/subject\|resource\|action` | the keys, models or actions allowed now, paged |
//! | `POST /v1/usage/{request_id}/commit` | settle a reservation with its actual usage |
//! | `POST /v1/usage/{request_id}/release` | drop a reservation that did not run |
//! | `GET /healthz`, `GET /readyz` | liveness; readiness (store revision, ledger, audit log) |
//! | `GET /metrics` | Prometheus metrics |
//!
//! A malformed body, a missing or mistyped field or a non-JSON content type is a 400 with an
//! error body, never a decision; unknown members are ignored. `X-Request-ID` is echoed.
//!
//! Cross-cutting concerns are tower layers around the routes, outermost first: the request id;
//! bearer tokens ([`Tokens`], required beyond loopback); load shedding at the concurrency limit
//! (503); the body read within its timeout and size ([`Limits`], 408 and 413); masking of keys
//! in every answer. The header read timeout and TLS ([`Tls`]) belong to the connection.
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
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use std::time::Instant;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use keyscope_policy::audit::{AuditLog, AuditRecord};
use keyscope_policy::{Clock, Decision, Engine, Ledger, Request, Store, StoreError, Timestamp};
use thiserror::Error;
use tower::ServiceBuilder;

mod auth;
mod authzen;
mod borrowed;
mod limits;
mod metrics;
mod net;
mod search;
mod usage;

pub use auth::{TokenError, Tokens};
pub use limits::Limits;
pub use net::{Tls, TlsError};

use metrics::{LedgerOp, Metrics};

/// Everything a service decides with.
pub struct ServiceConfig {
    /// The decision engine, over a loaded store.
    pub engine: Engine,
    /// The budget ledger; without one, budgets apply to each request alone and reservations
    /// are denied.
    pub ledger: Option<Ledger>,
    /// Requests in flight, header and body timeouts, body size.
    pub limits: Limits,
    /// The bearer tokens a caller must present (all paths but `/healthz` and `/readyz`);
    /// required to listen beyond loopback.
    pub tokens: Option<Tokens>,
    /// Serve HTTPS with this identity instead of plain HTTP.
    pub tls: Option<Tls>,
    /// The store directory to reload from (SIGHUP, [`Service::reload`], `watch`); `None` serves
    /// the engine it was given, for good.
    pub store_dir: Option<PathBuf>,
    /// How often to look for a changed store and reload it; `None` reloads on SIGHUP only.
    pub watch: Option<Duration>,
    /// Told of reloads, refused reloads and other events: the binary logs them.
    pub on_event: Arc<dyn Fn(&Event<'_>) + Send + Sync>,
    /// Where every decision is recorded; a decision that cannot be recorded is denied.
    pub audit: Option<AuditLog>,
    /// Masks any key in text the service shows: every response body and every audit record
    /// pass through it, since a caller may paste a key into a model id, an action or a request
    /// id, and errors quote what was sent. The binary supplies the scanner's masker; the
    /// default shows text as it is.
    pub mask: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("engine", &self.engine)
            .field("ledger", &self.ledger)
            .field("limits", &self.limits)
            .field("tokens", &self.tokens)
            .field("tls", &self.tls)
            .field("store_dir", &self.store_dir)
            .field("watch", &self.watch)
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

impl ServiceConfig {
    /// A configuration with the default limits, no reloading and no event sink.
    pub fn new(engine: Engine, ledger: Option<Ledger>) -> Self {
        Self {
            engine,
            ledger,
            limits: Limits::default(),
            tokens: None,
            tls: None,
            store_dir: None,
            watch: None,
            on_event: Arc::new(|_| {}),
            audit: None,
            mask: Arc::new(str::to_owned),
        }
    }
}

/// Something the service did that its operator should hear of.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A new store was validated and now decides every request.
    Reloaded {
        /// How many policies it holds.
        policies: usize,
    },
    /// A new store failed to load; the old one keeps deciding.
    ReloadRefused(&'a StoreError),
    /// The shutdown's grace ([`Limits::shutdown_grace`]) ran out with connections still busy
    /// (a request being decided, or an answer its client did not read); they were closed.
    ConnectionsCut {
        /// How many.
        connections: usize,
    },
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
    /// A non-loopback address without bearer tokens: anyone who can reach it could ask.
    #[error(
        "`{addr}` is not a loopback address: a service reachable from other machines needs \
         bearer tokens"
    )]
    #[diagnostic(
        code(keyscope::serve::unauthenticated),
        help("give a token file (--tokens), or listen on 127.0.0.1 or [::1]")
    )]
    Unauthenticated {
        /// The address asked for.
        addr: SocketAddr,
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

/// What every handler shares, behind an `Arc`. The engine is swapped whole on a reload: a
/// request decides on the engine it took at its start, never on a half-loaded store.
pub(crate) struct State {
    engine: RwLock<Arc<Engine>>,
    /// The SHA-256 of the store's files the engine was loaded from, when it came from a
    /// directory.
    revision: RwLock<Option<Arc<str>>>,
    /// The clock a reloaded engine keeps.
    clock: Clock,
    pub(crate) ledger: Option<Ledger>,
    store_dir: Option<PathBuf>,
    on_event: Arc<dyn Fn(&Event<'_>) + Send + Sync>,
    pub(crate) limits: Limits,
    pub(crate) tokens: Option<Tokens>,
    audit: Option<AuditLog>,
    pub(crate) mask: Arc<dyn Fn(&str) -> String + Send + Sync>,
    pub(crate) metrics: Metrics,
}

/// A running service: its own thread and runtime, stopped on [`stop`](Self::stop) (finishing
/// the requests in flight) or by SIGTERM / Ctrl-C when [`wait`](Self::wait)ed on.
pub struct Service {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl Service {
    /// Binds `addr` (port 0 picks a free port) and starts serving on a thread of its own.
    ///
    /// A non-loopback `addr` without [`ServiceConfig::tokens`] is refused.
    pub fn start(addr: SocketAddr, config: ServiceConfig) -> Result<Self, ServeError> {
        if !addr.ip().is_loopback() && config.tokens.is_none() {
            return Err(ServeError::Unauthenticated { addr });
        }
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| ServeError::Bind { addr, source })?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("keyscope-serve")
            .build()?;
        let watch = config.watch;
        let tls = config.tls.clone();
        let state = State::new(config);
        let app = router_over(Arc::clone(&state));
        let on_event = Arc::clone(&state.on_event);
        let (header_timeout, grace) = (state.limits.header_timeout, state.limits.shutdown_grace);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Signal handlers are in place before `start` returns, so a SIGTERM or SIGHUP sent as
        // soon as the caller says it listens is handled, never the default action.
        let shutdown = {
            let _runtime = runtime.enter();
            state.spawn_reloaders(watch);
            state.spawn_key_settler();
            shutdown_signal(stopped)
        };
        let thread = std::thread::Builder::new()
            .name("keyscope-serve-main".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let cut = net::serve(listener, app, tls, header_timeout, grace, shutdown).await;
                    if cut > 0 {
                        (on_event)(&Event::ConnectionsCut { connections: cut });
                    }
                    Ok(())
                })
            })?;
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Reloads the store from its directory, validated first: on success every new request is
    /// decided by the new store; on failure the old one keeps deciding and the error comes back.
    pub fn reload(&self) -> Result<usize, StoreError> {
        self.state.reload()
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

/// Resolves on [`Service::stop`], SIGTERM or Ctrl-C. The signal handlers are installed when
/// this is called (inside the runtime), not when the future is first polled: a SIGTERM that
/// arrives before the accept loop first looks must stop the service gracefully, not kill it
/// with the default action.
fn shutdown_signal(stopped: tokio::sync::oneshot::Receiver<()>) -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let (terminate, interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let received = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = stopped => {}
                () = received(terminate) => {}
                () = received(interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = stopped => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The service's routes over `config`, with every layer but the connection's (header timeout,
/// TLS).
pub fn router(config: ServiceConfig) -> Router {
    router_over(State::new(config))
}

fn router_over(state: Arc<State>) -> Router {
    let shedding = Arc::clone(&state);
    let limit = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |e: tower::BoxError| {
            let response = limits::refused(&shedding, &e);
            async move { response }
        }))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            state.limits.concurrency,
        ));
    Router::new()
        .route(
            "/.well-known/authzen-configuration",
            get(authzen::configuration),
        )
        .route("/access/v1/evaluation", post(authzen::evaluation))
        .route("/access/v1/evaluations", post(authzen::evaluations))
        .route("/access/v1/search/subject", post(search::subject))
        .route("/access/v1/search/resource", post(search::resource))
        .route("/access/v1/search/action", post(search::action))
        .route("/v1/usage/{request_id}/commit", post(usage::commit))
        .route("/v1/usage/{request_id}/release", post(usage::release))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(usage::ready))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(state.limits.body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            authzen::mask_response,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            limits::read_body_in_time,
        ))
        .layer(limit)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn(authzen::echo_request_id))
        .with_state(state)
}

/// `GET /metrics`: the Prometheus text exposition.
async fn metrics_text(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let gauges = metrics::Gauges {
        audit_backlog: state.audit.as_ref().map(AuditLog::backlog),
        audit_healthy: state.audit_health().is_ok(),
        policies: state.engine().store().policies().count(),
    };
    let text = state.metrics.render(&gauges, &*state.mask);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

impl State {
    fn new(config: ServiceConfig) -> Arc<Self> {
        let revision = config
            .engine
            .store()
            .dir()
            .or(config.store_dir.as_deref())
            .and_then(store_revision);
        Arc::new(Self {
            clock: config.engine.clock(),
            engine: RwLock::new(Arc::new(config.engine)),
            revision: RwLock::new(revision),
            ledger: config.ledger,
            store_dir: config.store_dir,
            on_event: config.on_event,
            limits: config.limits,
            tokens: config.tokens,
            audit: config.audit,
            mask: config.mask,
            metrics: Metrics::default(),
        })
    }

    /// The revision of the store deciding now.
    pub(crate) fn revision(&self) -> Option<Arc<str>> {
        match self.revision.read() {
            Ok(revision) => revision.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether the audit log, if there is one, still writes.
    pub(crate) fn audit_health(&self) -> Result<(), keyscope_policy::audit::AuditError> {
        self.audit.as_ref().map_or(Ok(()), AuditLog::health)
    }

    /// The engine deciding now.
    pub(crate) fn engine(&self) -> Arc<Engine> {
        match self.engine.read() {
            Ok(engine) => Arc::clone(&engine),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Loads and validates the store again, then swaps it in.
    fn reload(&self) -> Result<usize, StoreError> {
        let Some(dir) = &self.store_dir else {
            return Ok(self.engine().store().policies().count());
        };
        match load_with_revision(dir) {
            Ok((store, revision)) => {
                let engine = Engine::new(store).with_clock(self.clock);
                let policies = engine.store().policies().count();
                let fresh = Arc::new(engine);
                match self.engine.write() {
                    Ok(mut current) => *current = fresh,
                    Err(poisoned) => *poisoned.into_inner() = fresh,
                }
                match self.revision.write() {
                    Ok(mut current) => *current = revision,
                    Err(poisoned) => *poisoned.into_inner() = revision,
                }
                self.metrics.reloaded(true);
                (self.on_event)(&Event::Reloaded { policies });
                Ok(policies)
            }
            Err(error) => {
                self.metrics.reloaded(false);
                (self.on_event)(&Event::ReloadRefused(&error));
                Err(error)
            }
        }
    }

    /// Every second, records the key lifecycle transitions that time made (overlaps that
    /// ended, drained keys, expiries) in the audit log, each once across replicas of a shared
    /// ledger as far as the registry's record of them allows. Decisions do not wait on it: the
    /// engine denies a superseded key by its record whether or not this has run.
    fn spawn_key_settler(self: &Arc<Self>) {
        if self.audit.is_none() || self.ledger.is_none() {
            return;
        }
        let state = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let state = Arc::clone(&state);
                let _ = tokio::task::spawn_blocking(move || state.settle_keys()).await;
            }
        });
    }

    /// One pass of [`spawn_key_settler`](Self::spawn_key_settler).
    fn settle_keys(&self) {
        let (Some(audit), Some(ledger)) = (&self.audit, &self.ledger) else {
            return;
        };
        let engine = self.engine();
        let registry = keyscope_policy::keys::Registry::new(engine.store(), ledger);
        // A failure here (the ledger unreachable) is retried next second; decisions deny on
        // their own when the ledger is down.
        if let Ok(events) = registry.settle(engine.clock().now()) {
            for event in &events {
                let _ = audit.record(AuditRecord::of_key_event(event));
            }
        }
    }

    /// SIGHUP reloads; with `watch`, so does a change of the store's files.
    fn spawn_reloaders(self: &Arc<Self>, watch: Option<Duration>) {
        if self.store_dir.is_none() {
            return;
        }
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            // Installed now, before the service answers: a SIGHUP must never kill it.
            if let Ok(mut hangups) = signal(SignalKind::hangup()) {
                let state = Arc::clone(self);
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        let state = Arc::clone(&state);
                        let _ = tokio::task::spawn_blocking(move || state.reload()).await;
                    }
                });
            }
        }
        if let Some(every) = watch {
            let state = Arc::clone(self);
            tokio::spawn(async move {
                let mut seen = state.store_stamp();
                loop {
                    tokio::time::sleep(every).await;
                    let now = state.store_stamp();
                    if now != seen {
                        seen = now;
                        let state = Arc::clone(&state);
                        let _ = tokio::task::spawn_blocking(move || state.reload()).await;
                    }
                }
            });
        }
    }

    /// Names, sizes and modification times of the store's files: what `watch` compares.
    fn store_stamp(&self) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
        let Some(dir) = &self.store_dir else {
            return Vec::new();
        };
        let mut stamp: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let meta = entry.metadata().ok()?;
                meta.is_file()
                    .then(|| (entry.path(), meta.len(), meta.modified().ok()))
            })
            .collect();
        stamp.sort();
        stamp
    }

    /// Decides one parsed request and records it in the audit log. A decision that cannot be
    /// recorded is denied, and a hold it took is released.
    pub(crate) fn decide(&self, request: &Request, reserve: bool) -> Decision {
        let mut decisions = self.decide_all(&[(request, reserve)]);
        match decisions.pop() {
            Some(decision) => decision,
            None => authzen::denial(
                &self.engine(),
                request,
                "keyscope:audit-unavailable",
                "the decision was not made",
            ),
        }
    }

    /// Decides parsed requests (each with whether it reserves) in order, and records them all in
    /// the audit log with one hand-over to its writer. Decisions that cannot be recorded are
    /// denied, and the holds they took released.
    pub(crate) fn decide_all(&self, requests: &[(&Request, bool)]) -> Vec<Decision> {
        let started = Instant::now();
        let mut decisions: Vec<Decision> = requests
            .iter()
            .map(|(request, reserve)| self.decide_unrecorded(request, *reserve))
            .collect();
        if let Some(audit) = &self.audit {
            let records = requests
                .iter()
                .zip(&decisions)
                .map(|((request, _), decision)| self.audit_record(request, decision))
                .collect();
            if let Err(error) = audit.record_all(records) {
                decisions = requests
                    .iter()
                    .zip(decisions)
                    .map(|((request, _), decision)| self.unrecorded(request, &decision, &error))
                    .collect();
            }
        }
        let took = started.elapsed() / u32::try_from(requests.len().max(1)).unwrap_or(u32::MAX);
        for decision in &decisions {
            self.metrics.decided(decision, took);
        }
        decisions
    }

    /// The audit record of a decision, with everything the caller sent masked: a caller may
    /// paste a key into a model id, an action or a request id, and errors quote what was sent.
    fn audit_record(&self, request: &Request, decision: &Decision) -> AuditRecord {
        let mut record = AuditRecord::of(request, decision);
        for field in [&mut record.model, &mut record.action] {
            *field = (self.mask)(field);
        }
        if let Some(id) = &mut record.request_id {
            *id = (self.mask)(id);
        }
        for error in &mut record.errors {
            *error = (self.mask)(error);
        }
        record
    }

    /// The denial of a decision that could not be recorded; a hold it took is released.
    fn unrecorded(
        &self,
        request: &Request,
        decision: &Decision,
        error: &keyscope_policy::audit::AuditError,
    ) -> Decision {
        if let (Some(hold), Some(ledger)) = (&decision.reservation, &self.ledger) {
            let _ = ledger.release(&hold.request_id, Timestamp::now());
        }
        authzen::denial(
            &self.engine(),
            request,
            "keyscope:audit-unavailable",
            &error.to_string(),
        )
    }

    /// Records a settlement in the audit log, with the key, scope and model of the charge and
    /// a commit's flags. The settlement stands either way (the money was spent); a record that
    /// cannot be written is an error for the caller to report.
    pub(crate) fn record_settlement(
        &self,
        request_id: &str,
        settlement: &keyscope_policy::Settlement,
    ) -> Result<(), keyscope_policy::audit::AuditError> {
        let (Some(audit), Some(ledger)) = (&self.audit, &self.ledger) else {
            return Ok(());
        };
        let found = ledger.request(request_id).ok().flatten();
        let mut record = AuditRecord::of_settlement(
            request_id,
            found.as_ref(),
            settlement,
            self.engine().clock().now(),
        );
        for field in [&mut record.model, &mut record.action] {
            *field = (self.mask)(field);
        }
        record.request_id = record.request_id.take().map(|id| (self.mask)(&id));
        record.hold = record.hold.take().map(|id| (self.mask)(&id));
        audit.record(record)
    }

    /// Decides one parsed request: against the ledger when there is one (reserving when asked),
    /// else alone. A ledger failure denies.
    pub(crate) fn decide_unrecorded(&self, request: &Request, reserve: bool) -> Decision {
        let engine = self.engine();
        let mode = if reserve {
            keyscope_policy::LedgerMode::Reserve
        } else {
            keyscope_policy::LedgerMode::Check
        };
        match (&self.ledger, reserve) {
            (Some(ledger), _) => {
                let started = Instant::now();
                let decided = engine.decide_with_ledger(request, ledger, mode);
                self.metrics.ledger(LedgerOp::Decide, started.elapsed());
                match decided {
                    Ok(decision) => decision,
                    Err(error) => authzen::ledger_denial(&engine, request, &error.to_string()),
                }
            }
            (None, true) => authzen::ledger_denial(
                &engine,
                request,
                "this service has no budget ledger, so it cannot reserve",
            ),
            (None, false) => engine.decide(request),
        }
    }
}

/// Loads the store in `dir` with the revision of the files it was loaded from. The files are
/// hashed before and after the load; if they changed in between, the load is tried again (three
/// times), so a revision never names a store other than the one loaded.
fn load_with_revision(dir: &Path) -> Result<(Store, Option<Arc<str>>), StoreError> {
    let mut before = store_revision(dir);
    for _ in 0..3 {
        let store = Store::load(dir)?;
        let after = store_revision(dir);
        if after == before {
            return Ok((store, after));
        }
        before = after;
    }
    // Still changing under the load: serve the store, with no revision rather than a wrong one.
    Ok((Store::load(dir)?, None))
}

/// The SHA-256 (hex) of the regular files in a store directory, names and contents, in name
/// order: the same files give the same revision on any machine.
fn store_revision(dir: &Path) -> Option<Arc<str>> {
    use sha2::{Digest as _, Sha256};
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    for path in files {
        let name = path.file_name()?.to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).ok()?;
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    let digest = hash.finalize();
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into(),
    )
}
