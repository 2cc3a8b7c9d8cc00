//! `keyscope usage commit|release`.

use crate::exit::Exit;

/// Usage commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Commit the actual usage of a reserved request.
    Commit,
}

/// Runs a usage command.
pub fn run(_command: Command) -> miette::Result<Exit> {
    miette::bail!("not implemented yet")
}
