//! `keyscope serve`: the decision engine as an AuthZEN 1.0 service over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keyscope_policy::Engine;
use keyscope_server::{Event, Limits, ServeError, Service, ServiceConfig, Tls, Tokens};

use crate::cmd::policy::{ClockArgs, LedgerArgs, StoreArgs};
use crate::exit::Exit;

/// Arguments of `keyscope serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    ledger: LedgerArgs,
    /// Serve without a budget ledger: budgets apply to each request alone and reservations are
    /// denied.
    #[arg(long, conflicts_with = "ledger")]
    no_ledger: bool,
    /// Where to listen. Beyond loopback, --tokens is required.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8181")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer TOKEN` for one of the tokens in FILE: each line a token's
    /// SHA-256 in hex (`printf %s "$TOKEN" | sha256sum`) and an optional name; `#` comments.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Requests decided at once; more are answered 503 at once rather than queued.
    #[arg(long, value_name = "N", default_value_t = 512)]
    concurrency: usize,
    /// On SIGTERM or Ctrl-C, wait this long for busy connections (a request being decided, an
    /// answer a client is slow to read) before closing them: `10s`, `1m`, `0` for at once.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = grace)]
    shutdown_grace: Duration,
    #[command(flatten)]
    clock: ClockArgs,
    /// Reload the store when its files change (checked every second), besides on SIGHUP. A
    /// store that fails to load is refused and the old one keeps serving.
    #[arg(long)]
    watch: bool,
    /// Record every decision, hash-chained, in this directory; a decision that cannot be
    /// recorded is denied.
    #[arg(long, value_name = "DIR")]
    audit_log: Option<std::path::PathBuf>,
}

/// `--shutdown-grace`: a duration as `key rotate --overlap` reads one, or 0.
fn grace(text: &str) -> Result<Duration, String> {
    keyscope_policy::keys::parse_duration(text)
        .and_then(|seconds| u64::try_from(seconds).ok())
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is not a duration: use `10s`, `1m` or `0`"))
}

/// Decisions the audit writer may fall behind by before new ones are denied.
const AUDIT_QUEUE: usize = 65_536;

/// Runs `keyscope serve` until SIGTERM or Ctrl-C.
pub fn run(args: Args) -> miette::Result<Exit> {
    let tokens = match &args.tokens {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| miette::miette!("cannot read `{}`: {e}", path.display()))?;
            Some(
                Tokens::parse(&text)
                    .map_err(|e| miette::Report::new(e).wrap_err(path.display().to_string()))?,
            )
        }
        None => None,
    };
    if !args.listen.ip().is_loopback() && tokens.is_none() {
        return Err(ServeError::Unauthenticated { addr: args.listen }.into());
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::from_pem_files(cert, key)?),
        _ => None,
    };
    let engine = Engine::new(args.store.load()?).with_clock(args.clock.clock());
    let ledger = if args.no_ledger {
        None
    } else {
        Some(args.ledger.location(&args.store.store).open()?)
    };
    let mut config = ServiceConfig::new(engine, ledger);
    config.tokens = tokens;
    config.tls = tls;
    config.limits = Limits::default()
        .with_concurrency(args.concurrency)
        .with_shutdown_grace(args.shutdown_grace);
    config.store_dir = Some(args.store.store.clone());
    config.watch = args.watch.then_some(Duration::from_secs(1));
    config.audit = match &args.audit_log {
        Some(dir) => Some(
            keyscope_policy::audit::AuditLog::open(dir, AUDIT_QUEUE)
                .map_err(|e| miette::miette!("{e}"))?,
        ),
        None => None,
    };
    config.on_event = Arc::new(|event: &Event<'_>| match event {
        Event::Reloaded { policies } => {
            eprintln!("keyscope serve: reloaded the store: {policies} policies");
        }
        Event::ReloadRefused(error) => eprintln!(
            "keyscope serve: refused the changed store, the old one keeps serving: {}",
            crate::mask(error.to_string())
        ),
        Event::ConnectionsCut { connections } => eprintln!(
            "keyscope serve: closed {connections} connection(s) still busy when the shutdown \
             grace ran out"
        ),
        _ => {}
    });
    let detector = keyscope_scan::Detector::new(keyscope_rules::RuleSet::builtin()?)
        .map_err(|e| miette::miette!("{e}"))?;
    config.mask = Arc::new(move |text: &str| keyscope_scan::mask_secrets(&detector, text));
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let service = Service::start(args.listen, config).map_err(miette::Report::new)?;
    eprintln!("keyscope serve: listening on {scheme}://{}", service.addr());
    service.wait().map_err(miette::Report::new)?;
    Ok(Exit::Clean)
}
