//! `keyscope decide`: one AuthZEN request on stdin, the decision JSON on stdout.

use std::io::Read as _;

use keyscope_policy::{DEFAULT_HOLD_TTL_SECONDS, Engine, Ledger, LedgerMode, Request};
use miette::IntoDiagnostic as _;

use crate::cmd::policy::{LedgerArgs, StoreArgs};
use crate::exit::Exit;

/// Arguments of `keyscope decide`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    ledger: LedgerArgs,
    /// Hold the worst-case cost in the ledger when allowed (needs `context.request_id`);
    /// settle it later with `keyscope usage commit|release`.
    #[arg(long)]
    reserve: bool,
    /// How long a reservation holds its budget unless committed or released.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_HOLD_TTL_SECONDS)]
    hold_ttl: i64,
}

/// Runs `keyscope decide`.
pub fn run(args: Args) -> miette::Result<Exit> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .into_diagnostic()?;
    let request = Request::from_json("<stdin>", &text).map_err(miette::Report::new)?;
    let engine = Engine::new(args.store.load()?);
    let path = args.ledger.path(&args.store.store);
    // Without a ledger file nothing has been spent; only a reservation creates one.
    let decision = if args.reserve || path.exists() {
        let ledger = Ledger::open(&path)
            .map_err(miette::Report::new)?
            .with_hold_ttl(args.hold_ttl);
        let mode = if args.reserve {
            LedgerMode::Reserve
        } else {
            LedgerMode::Check
        };
        engine
            .decide_with_ledger(&request, &ledger, mode)
            .map_err(miette::Report::new)?
    } else {
        engine.decide(&request)
    };
    let json = serde_json::to_string_pretty(&decision.to_authzen()).into_diagnostic()?;
    println!("{json}");
    Ok(if decision.allowed {
        Exit::Clean
    } else {
        Exit::Denied
    })
}
