//! `keyscope ledger verify|rebuild|migrate`: check a budget ledger for damage, recompute its
//! totals, and move it to another backend.

use keyscope_policy::Verification;
use keyscope_report::human::plural;
use miette::IntoDiagnostic as _;

use std::path::Path;

use crate::cmd::policy::{LedgerArgs, StoreArgs};
use crate::exit::Exit;
use crate::out::outln;

/// Ledger commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check every row against its checksum and every total against its requests; exit 0
    /// intact, 1 damaged, 2 error.
    Verify(Args),
    /// Recompute the running totals from the settled requests (after `verify` found a damaged
    /// or wrong total); refuses when request rows themselves are damaged.
    Rebuild(Args),
    /// Move every request (open holds included) from one ledger to another, e.g. from the
    /// embedded SQLite file to a shared Redis. Requests the target already has are skipped,
    /// so running it twice counts nothing twice.
    Migrate(MigrateArgs),
}

/// Arguments of `keyscope ledger migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The ledger to read: a SQLite file or a Redis URL.
    #[arg(long, value_name = "PATH|URL")]
    from: String,
    /// The ledger to write: a SQLite file (created if missing) or a Redis URL.
    #[arg(long, value_name = "PATH|URL")]
    to: String,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Human)]
    format: Format,
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
        Command::Migrate(args) => return migrate(&args),
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

fn migrate(args: &MigrateArgs) -> miette::Result<Exit> {
    let at = |location: &str| {
        LedgerArgs {
            ledger: Some(location.to_owned()),
        }
        .location(Path::new("."))
    };
    let (from, to) = (at(&args.from), at(&args.to));
    if from == to {
        miette::bail!("`--from` and `--to` name the same ledger");
    }
    let source = LedgerArgs {
        ledger: Some(args.from.clone()),
    }
    .open_existing(Path::new("."))?;
    let records = source.export().map_err(miette::Report::new)?;
    let target = to.open()?;
    let (written, skipped) = target.import(&records).map_err(miette::Report::new)?;
    let (keys_copied, keys_skipped) = target.import_keys(&source).map_err(miette::Report::new)?;
    let report = target.verify().map_err(miette::Report::new)?;
    match args.format {
        Format::Json => outln!(
            "{}",
            serde_json::json!({
                "from": from.display(),
                "to": to.display(),
                "requests": records.len(),
                "written": written,
                "skipped": skipped,
                "keys_copied": keys_copied,
                "keys_skipped": keys_skipped,
                "target": report,
            })
        )?,
        Format::Human => {
            outln!(
                "moved {written} of {} requests from `{}` to `{}` ({skipped} already there)",
                records.len(),
                from.display(),
                to.display()
            )?;
            outln!("copied {keys_copied} keys of the registry ({keys_skipped} already there)")?;
            outln!("{}", human(&report, false).trim_end())?;
        }
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
            "rebuilt {} total{} from {} request row{}\n",
            report.totals,
            plural(report.totals),
            report.rows,
            plural(report.rows)
        )
    } else if report.is_intact() {
        format!(
            "intact: {} request row{} and {} total{} checked\n",
            report.rows,
            plural(report.rows),
            report.totals,
            plural(report.totals)
        )
    } else {
        format!(
            "{} problem{} in {} request row{} and {} total{}; `keyscope ledger rebuild` \
             recomputes the totals\n",
            report.problems.len(),
            plural(report.problems.len()),
            report.rows,
            plural(report.rows),
            report.totals,
            plural(report.totals)
        )
    });
    out
}
