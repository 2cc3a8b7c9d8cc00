//! `keyscope policy validate|test`.

use crate::exit::Exit;

/// Policy store commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the policies, scopes and model catalog of a store.
    Validate,
}

/// Runs a policy command.
pub fn run(_command: Command) -> miette::Result<Exit> {
    miette::bail!("not implemented yet")
}
