//! `keyscope usage commit|release`: the second phase of a reservation, for scripts.

use keyscope_policy::{Ledger, Timestamp, Usage, parse_usd};
use miette::IntoDiagnostic as _;

use crate::cmd::policy::{LedgerArgs, StoreArgs};
use crate::exit::Exit;
use crate::out::outln;

/// Usage commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Replace the hold of a reserved request with its actual usage (idempotent).
    Commit(CommitArgs),
    /// Drop the hold of a reserved request that did not run (idempotent).
    Release(ReleaseArgs),
}

/// Arguments of `keyscope usage commit`.
#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// The `context.request_id` of the reserved request.
    request_id: String,
    /// Uncached input tokens used.
    #[arg(long, default_value_t = 0)]
    input_tokens: u64,
    /// Cached input tokens used.
    #[arg(long, default_value_t = 0)]
    cached_input_tokens: u64,
    /// Output tokens produced.
    #[arg(long, default_value_t = 0)]
    output_tokens: u64,
    /// The actual cost in USD (`0.0123`), instead of computing it from the tokens.
    #[arg(long, value_name = "USD", value_parser = parse_cost)]
    cost_usd: Option<u64>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    ledger: LedgerArgs,
}

/// Arguments of `keyscope usage release`.
#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The `context.request_id` of the reserved request.
    request_id: String,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    ledger: LedgerArgs,
}

fn parse_cost(text: &str) -> Result<u64, String> {
    parse_usd(text).ok_or_else(|| format!("`{text}` is not a USD amount (up to 6 decimals)"))
}

fn open(store: &StoreArgs, ledger: &LedgerArgs) -> miette::Result<Ledger> {
    ledger.open_existing(&store.store)
}

/// Runs a usage command.
pub fn run(command: Command) -> miette::Result<Exit> {
    let (request_id, settlement) = match command {
        Command::Commit(args) => {
            let ledger = open(&args.store, &args.ledger)?;
            let usage = Usage {
                input_tokens: args.input_tokens,
                cached_input_tokens: args.cached_input_tokens,
                output_tokens: args.output_tokens,
                cost_micros: args.cost_usd,
            };
            let settlement = ledger
                .commit(&args.request_id, &usage, Timestamp::now())
                .map_err(miette::Report::new)?;
            (args.request_id, settlement)
        }
        Command::Release(args) => {
            let ledger = open(&args.store, &args.ledger)?;
            let settlement = ledger
                .release(&args.request_id, Timestamp::now())
                .map_err(miette::Report::new)?;
            (args.request_id, settlement)
        }
    };
    let mut json = serde_json::to_value(settlement).into_diagnostic()?;
    if let Some(object) = json.as_object_mut() {
        object.insert("request_id".into(), request_id.into());
    }
    // The request id is echoed, and a key pasted as one must not be.
    outln!("{}", crate::mask(json.to_string()))?;
    Ok(Exit::Clean)
}
