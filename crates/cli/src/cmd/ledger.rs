//! `keyscope ledger verify|rebuild`: check a budget ledger for damage, and recompute its totals.

use keyscope_policy::Verification;
use miette::IntoDiagnostic as _;

use crate::cmd::policy::{LedgerArgs, StoreArgs};
use crate::exit::Exit;

/// Ledger commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check every row against its checksum and every total against its requests; exit 0
    /// intact, 1 damaged, 2 error.
    Verify(Args),
    /// Recompute the running totals from the settled requests (after `verify` found a damaged
    /// or wrong total); refuses when request rows themselves are damaged.
    Rebuild(Args),
}

/// Arguments of the ledger commands.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    ledger: LedgerArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// How the report is written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Human,
    Json,
}

/// Runs a ledger command.
pub fn run(command: Command) -> miette::Result<Exit> {
    let (args, rebuild) = match command {
        Command::Verify(args) => (args, false),
        Command::Rebuild(args) => (args, true),
    };
    let ledger = args.ledger.open_existing(&args.store.store)?;
    let report = if rebuild {
        ledger.rebuild_totals()
    } else {
        ledger.verify()
    }
    .map_err(miette::Report::new)?;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).into_diagnostic()?
        ),
        Format::Human => print!("{}", human(&report, rebuild)),
    }
    Ok(if report.is_intact() {
        Exit::Clean
    } else {
        Exit::ChecksFailed
    })
}

fn human(report: &Verification, rebuilt: bool) -> String {
    let mut out = String::new();
    for problem in &report.problems {
        out.push_str(&format!("damaged: {problem}\n"));
    }
    out.push_str(&if rebuilt {
        format!(
            "rebuilt {} totals from {} request rows\n",
            report.totals, report.rows
        )
    } else if report.is_intact() {
        format!(
            "intact: {} request rows and {} totals checked\n",
            report.rows, report.totals
        )
    } else {
        format!(
            "{} problems in {} request rows and {} totals; `keyscope ledger rebuild` recomputes \
             the totals\n",
            report.problems.len(),
            report.rows,
            report.totals
        )
    });
    out
}
