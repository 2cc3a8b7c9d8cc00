//! `keyscope baseline create`: accept today's findings, so that scans report only new ones.

use std::path::PathBuf;

use keyscope_scan::baseline::Baseline;
use miette::{Context as _, IntoDiagnostic as _};

use crate::cmd::scan;
use crate::exit::Exit;

/// Where `keyscope baseline create` writes without `-o`.
const DEFAULT_BASELINE: &str = ".keyscope-baseline.json";

/// Baseline commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Scan (with every `scan` option) and write the findings as a baseline to `-o FILE`
    /// (default `.keyscope-baseline.json`): rule ids and fingerprints only, sorted, so the file
    /// does not change when code moves.
    #[command(
        mut_arg("respond", |a| a.hide(true)),
        mut_arg("revoke", |a| a.hide(true)),
        mut_arg("rotate", |a| a.hide(true)),
        mut_arg("audit_log", |a| a.hide(true)),
        mut_arg("now", |a| a.hide(true))
    )]
    Create(scan::Args),
}

/// Runs a baseline command.
pub fn run(command: Command) -> miette::Result<Exit> {
    match command {
        Command::Create(args) => create(&args),
    }
}

/// Scans, then writes the findings as a baseline file, not a report.
fn create(args: &scan::Args) -> miette::Result<Exit> {
    if args.respond || args.respond_args.revoke || args.respond_args.audit_log.is_some() {
        miette::bail!(
            "a baseline records findings; to respond to leaked keys use `keyscope scan --respond`"
        );
    }
    let (_, result) = scan::scan(args)?;
    scan::report_failures(&result.stats);
    if !result.complete() {
        miette::bail!("the scan is incomplete, so no baseline was written");
    }
    let baseline = Baseline::from_findings(&result.findings);
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BASELINE));
    std::fs::write(&path, baseline.to_json())
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write the baseline to `{}`", path.display()))?;
    eprintln!(
        "wrote {} entr{} to {}",
        baseline.len(),
        if baseline.len() == 1 { "y" } else { "ies" },
        path.display()
    );
    Ok(Exit::Clean)
}
