//! `keyscope decide`: one AuthZEN request on stdin, the decision JSON on stdout.

use std::io::Read as _;

use keyscope_policy::audit::{AuditError, AuditLog, AuditRecord};
use keyscope_policy::{
    DEFAULT_HOLD_TTL_SECONDS, Engine, LedgerMode, Reason, ReasonEffect, Request, Timestamp,
};
use miette::IntoDiagnostic as _;

use crate::cmd::policy::{ClockArgs, LedgerArgs, StoreArgs};
use crate::exit::Exit;
use crate::out::{errln, outln};

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
    #[command(flatten)]
    clock: ClockArgs,
    /// Record the decision, hash-chained, in this directory; a decision that cannot be recorded
    /// is denied.
    #[arg(long, value_name = "DIR")]
    audit_log: Option<std::path::PathBuf>,
}

/// Appends the decision to the audit log in `dir` and waits until it is written.
fn record(
    dir: &std::path::Path,
    request: &Request,
    decision: &keyscope_policy::Decision,
) -> Result<(), AuditError> {
    let log = AuditLog::open(dir, 1)?;
    let mut record = AuditRecord::of(request, decision);
    // The record quotes the model, action and request id as sent: a key pasted there is masked.
    for field in [&mut record.model, &mut record.action] {
        *field = crate::mask(std::mem::take(field));
    }
    record.request_id = record.request_id.take().map(crate::mask);
    record.errors = record.errors.drain(..).map(crate::mask).collect();
    log.record(record)?;
    log.close()
}

/// Runs `keyscope decide`.
pub fn run(args: Args) -> miette::Result<Exit> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .into_diagnostic()?;
    let request = Request::from_json("<stdin>", &text).map_err(miette::Report::new)?;
    let engine = Engine::new(args.store.load()?).with_clock(args.clock.clock());
    let location = args.ledger.location(&args.store.store);
    // Without a ledger file nothing has been spent; only a reservation creates one. A ledger
    // named on the command line must exist, though: a mistyped path would read as no spend.
    if !args.reserve && args.ledger.ledger.is_some() && !location.exists() {
        miette::bail!(
            "no budget ledger at `{}`: check the path, or reserve with `--reserve` to create it",
            location.display()
        );
    }
    let mut ledger = None;
    let mut failed = false;
    let mut decision = if args.reserve || location.exists() {
        let mode = if args.reserve {
            LedgerMode::Reserve
        } else {
            LedgerMode::Check
        };
        let outcome = location.open().and_then(|opened| {
            let opened = ledger.insert(opened.with_hold_ttl(args.hold_ttl));
            engine
                .decide_with_ledger(&request, opened, mode)
                .map_err(miette::Report::new)
        });
        match outcome {
            Ok(decision) => decision,
            Err(error) => {
                // Denied on the record, and exit 2: the ledger, not the policy, said no.
                failed = true;
                let message = format!(
                    "the budget ledger could not be used, so the request is denied: {error}"
                );
                errln!("error: {}", crate::mask(message.clone()));
                engine.deny_for_ledger(&request, &message)
            }
        }
    } else {
        engine.decide(&request)
    };
    if let Some(dir) = &args.audit_log
        && let Err(error) = record(dir, &request, &decision)
    {
        // Not on record, so not allowed; a hold it took goes back.
        if let (Some(hold), Some(ledger)) = (&decision.reservation, &ledger) {
            let _ = ledger.release(&hold.request_id, Timestamp::now());
        }
        decision.allowed = false;
        decision.reservation = None;
        decision.errors.push(error.to_string());
        decision.reasons = vec![Reason {
            id: "keyscope:audit-unavailable".to_owned(),
            effect: ReasonEffect::Engine,
            message: format!("the decision could not be recorded, so it is denied: {error}"),
        }];
    }
    let json = serde_json::to_string_pretty(&decision.to_authzen()).into_diagnostic()?;
    // The decision quotes the request (its model, action and request id), and a key pasted
    // into one of those would otherwise be echoed whole.
    outln!("{}", crate::mask(json))?;
    if failed {
        return Ok(Exit::Error);
    }
    Ok(if decision.allowed {
        Exit::Clean
    } else {
        Exit::Denied
    })
}
