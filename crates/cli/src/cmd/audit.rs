//! `keyscope audit verify|query`: check the hash chain of an audit log, and read it.

use std::path::PathBuf;

use keyscope_policy::Timestamp;
use keyscope_policy::audit::{self, AuditQuery};
use keyscope_report::human::plural;
use miette::IntoDiagnostic as _;

use crate::exit::Exit;
use crate::out::outln;

/// Audit log commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Walk the chain: exit 0 when intact, 1 naming each record altered, removed or inserted.
    Verify {
        /// The audit log directory.
        dir: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print the records of one key, from a day on.
    Query {
        /// The audit log directory.
        dir: PathBuf,
        /// Only this key: its id, or its `sha256:` fingerprint.
        #[arg(long)]
        key: Option<String>,
        /// Only records from this day or time (RFC 3339) on.
        #[arg(long, value_parser = crate::cmd::policy::parse_time)]
        since: Option<Timestamp>,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

/// How the answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per record or problem.
    Human,
    /// JSON.
    Json,
}

/// Runs an audit command.
pub fn run(command: Command) -> miette::Result<Exit> {
    match command {
        Command::Verify { dir, format } => {
            let report = audit::verify(&dir).map_err(|e| miette::miette!("{e}"))?;
            if format == Format::Json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&report).into_diagnostic()?
                )?;
            } else {
                for problem in &report.problems {
                    outln!("broken: {problem}")?;
                }
                outln!(
                    "{}: {} record{} in {} file{}",
                    if report.problems.is_empty() {
                        "intact"
                    } else {
                        "tampered"
                    },
                    report.records,
                    plural(report.records),
                    report.files,
                    plural(report.files),
                )?;
            }
            Ok(if report.problems.is_empty() {
                Exit::Clean
            } else {
                Exit::ChecksFailed
            })
        }
        Command::Query {
            dir,
            key,
            since,
            format,
        } => {
            let records = audit::query(&dir, &AuditQuery { key, since })
                .map_err(|e| miette::miette!("{e}"))?;
            if format == Format::Json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&records).into_diagnostic()?
                )?;
            } else {
                for r in &records {
                    outln!(
                        "{} {} {} {} {} {}",
                        r.time,
                        r.key,
                        r.model,
                        if r.allowed { "allow" } else { "deny" },
                        r.reasons.join(","),
                        r.request_id.as_deref().unwrap_or("-")
                    )?;
                }
            }
            Ok(Exit::Clean)
        }
    }
}
