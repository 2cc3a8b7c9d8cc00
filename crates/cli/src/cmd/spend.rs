//! `keyscope spend`: the chargeback and audit view of the budget ledger.

use keyscope_policy::{SpendGrouping, Timestamp, format_usd};
use miette::IntoDiagnostic as _;

use crate::cmd::policy::{LedgerArgs, StoreArgs};
use crate::exit::Exit;
use crate::out::outln;

/// Grouping of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// By the scope the request was made in.
    Scope,
    /// By resolved, versioned model.
    Model,
    /// By the key that made the request.
    Key,
    /// By day, in the time zone of the store that decided the request.
    Day,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table.
    Table,
    /// JSON rows, amounts in micro-dollars.
    Json,
}

/// Arguments of `keyscope spend`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Group rows by scope, model, key or day.
    #[arg(long, value_enum, default_value_t = By::Scope)]
    by: By,
    /// Only spend on or after this day (`2026-11-01`), in the store's time zone.
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    since: Option<String>,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    ledger: LedgerArgs,
}

fn parse_day(text: &str) -> Result<String, String> {
    match Timestamp::parse(text) {
        Some(t) if text.len() == 10 => Ok(t.day_key()),
        _ => Err(format!("`{text}` is not a date like 2026-11-01")),
    }
}

/// Runs `keyscope spend`.
pub fn run(args: Args) -> miette::Result<Exit> {
    let ledger = args.ledger.open_existing(&args.store.store)?;
    let by = match args.by {
        By::Scope => SpendGrouping::Scope,
        By::Model => SpendGrouping::Model,
        By::Key => SpendGrouping::Key,
        By::Day => SpendGrouping::Day,
    };
    let rows = ledger
        .spend(by, args.since.as_deref())
        .map_err(miette::Report::new)?;
    match args.format {
        Format::Json => {
            let json = serde_json::json!({"by": by, "since": args.since, "rows": rows});
            let text = serde_json::to_string_pretty(&json).into_diagnostic()?;
            outln!("{}", crate::mask(text))?;
        }
        Format::Table => {
            let header = match args.by {
                By::Scope => "SCOPE",
                By::Model => "MODEL",
                By::Key => "KEY",
                By::Day => "DAY",
            };
            let width = rows
                .iter()
                .map(|r| r.group.len())
                .chain([header.len(), 5])
                .max()
                .unwrap_or(5);
            outln!(
                "{header:<width$}  {:>8}  {:>16}  {:>12}  {:>12}  {:>14}",
                "REQUESTS",
                "COST USD",
                "INPUT TOK",
                "OUTPUT TOK",
                "HELD USD"
            )?;
            let (mut requests, mut cost, mut input, mut output, mut held) =
                (0u64, 0u64, 0u64, 0u64, 0u64);
            for row in &rows {
                outln!(
                    "{:<width$}  {:>8}  {:>16}  {:>12}  {:>12}  {:>14}",
                    // A model id recorded as sent may carry a pasted key.
                    crate::mask(row.group.clone()),
                    row.requests,
                    format_usd(row.cost_micros),
                    row.input_tokens,
                    row.output_tokens,
                    format_usd(row.held_micros)
                )?;
                requests = requests.saturating_add(row.requests);
                cost = cost.saturating_add(row.cost_micros);
                input = input.saturating_add(row.input_tokens);
                output = output.saturating_add(row.output_tokens);
                held = held.saturating_add(row.held_micros);
            }
            outln!(
                "{:<width$}  {requests:>8}  {:>16}  {input:>12}  {output:>12}  {:>14}",
                "TOTAL",
                format_usd(cost),
                format_usd(held)
            )?;
        }
    }
    Ok(Exit::Clean)
}
