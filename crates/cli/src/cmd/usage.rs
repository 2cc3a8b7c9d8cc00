//! `keyscope usage commit|release`: the second phase of a reservation, for scripts.

use keyscope_policy::audit::{AuditError, AuditLog, AuditRecord};
use keyscope_policy::{Ledger, Settlement, Timestamp, Usage, parse_usd};
use miette::IntoDiagnostic as _;

use crate::cmd::policy::{LedgerArgs, StoreArgs};
use crate::exit::Exit;
use crate::out::{errln, outln};

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
    /// Record the commit (with its flags: above the hold, after expiry) in this audit log.
    #[arg(long, value_name = "DIR")]
    audit_log: Option<std::path::PathBuf>,
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
    /// Record the release in this audit log.
    #[arg(long, value_name = "DIR")]
    audit_log: Option<std::path::PathBuf>,
}

fn parse_cost(text: &str) -> Result<u64, String> {
    parse_usd(text).ok_or_else(|| format!("`{text}` is not a USD amount (up to 6 decimals)"))
}

fn open(store: &StoreArgs, ledger: &LedgerArgs) -> miette::Result<Ledger> {
    ledger.open_existing(&store.store)
}

/// Runs a usage command.
pub fn run(command: Command) -> miette::Result<Exit> {
    let (request_id, settlement, audit) = match command {
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
            let audit = audited(
                args.audit_log.as_deref(),
                &ledger,
                &args.request_id,
                &settlement,
            );
            (args.request_id, settlement, audit)
        }
        Command::Release(args) => {
            let ledger = open(&args.store, &args.ledger)?;
            let settlement = ledger
                .release(&args.request_id, Timestamp::now())
                .map_err(miette::Report::new)?;
            let audit = audited(
                args.audit_log.as_deref(),
                &ledger,
                &args.request_id,
                &settlement,
            );
            (args.request_id, settlement, audit)
        }
    };
    let mut json = serde_json::to_value(settlement).into_diagnostic()?;
    if let Some(object) = json.as_object_mut() {
        object.insert("request_id".into(), request_id.into());
    }
    // The request id is echoed, and a key pasted as one must not be.
    outln!("{}", crate::mask(json.to_string()))?;
    if let Err(error) = audit {
        // The settlement stands (the money was spent), but it is not on record: say so.
        errln!(
            "error: the settlement could not be recorded in the audit log: {}",
            crate::mask(error.to_string())
        );
        return Ok(Exit::Error);
    }
    Ok(Exit::Clean)
}

/// Appends the settlement to the audit log in `dir`, if one was asked for.
fn audited(
    dir: Option<&std::path::Path>,
    ledger: &Ledger,
    request_id: &str,
    settlement: &Settlement,
) -> Result<(), AuditError> {
    let Some(dir) = dir else {
        return Ok(());
    };
    let found = ledger.request(request_id).ok().flatten();
    let mut record =
        AuditRecord::of_settlement(request_id, found.as_ref(), settlement, Timestamp::now());
    record.request_id = record.request_id.take().map(crate::mask);
    record.hold = record.hold.take().map(crate::mask);
    let log = AuditLog::open(dir, 1)?;
    log.record(record)?;
    log.close()
}
