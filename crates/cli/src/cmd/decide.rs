//! `keyscope decide`.

use crate::exit::Exit;

/// Arguments of `keyscope decide`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `keyscope decide`.
pub fn run(_args: Args) -> miette::Result<Exit> {
    miette::bail!("not implemented yet")
}
