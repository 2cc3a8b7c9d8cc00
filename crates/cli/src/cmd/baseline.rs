//! `keyscope baseline create`: accept today's findings, so that scans report only new ones.

use crate::cmd::scan;
use crate::exit::Exit;

/// Baseline commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Scan (with every `scan` option) and write the findings as a baseline to `-o FILE`
    /// (default `.keyscope-baseline.json`): rule ids and fingerprints only, sorted, so the file
    /// does not change when code moves.
    Create(scan::Args),
}

/// Runs a baseline command.
pub fn run(command: Command) -> miette::Result<Exit> {
    match command {
        Command::Create(mut args) => {
            args.write_baseline = true;
            scan::run(args)
        }
    }
}
