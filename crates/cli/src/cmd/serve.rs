//! `keyscope serve`: the decision engine as an AuthZEN 1.0 service over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyscope_policy::Engine;
use keyscope_server::{Event, Service, ServiceConfig};

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
    /// Where to listen. Loopback only: put the service behind the gateway that calls it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8181")]
    listen: SocketAddr,
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

/// Decisions the audit writer may fall behind by before new ones are denied.
const AUDIT_QUEUE: usize = 65_536;

/// Runs `keyscope serve` until SIGTERM or Ctrl-C.
pub fn run(args: Args) -> miette::Result<Exit> {
    if !args.listen.ip().is_loopback() {
        miette::bail!(
            "`{}` is not a loopback address: a service reachable from other machines needs \
             bearer tokens, which this keyscope does not have yet; listen on 127.0.0.1 or [::1]",
            args.listen
        );
    }
    let engine = Engine::new(args.store.load()?).with_clock(args.clock.clock());
    let ledger = if args.no_ledger {
        None
    } else {
        Some(args.ledger.location(&args.store.store).open()?)
    };
    let mut config = ServiceConfig::new(engine, ledger);
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
        _ => {}
    });
    let detector = keyscope_scan::Detector::new(keyscope_rules::RuleSet::builtin()?)
        .map_err(|e| miette::miette!("{e}"))?;
    config.mask = Arc::new(move |text: &str| keyscope_scan::mask_secrets(&detector, text));
    let service = Service::start(args.listen, config).map_err(miette::Report::new)?;
    eprintln!("keyscope serve: listening on http://{}", service.addr());
    service.wait().map_err(miette::Report::new)?;
    Ok(Exit::Clean)
}
