//! `keyscope spend`.

use crate::exit::Exit;

/// Arguments of `keyscope spend`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `keyscope spend`.
pub fn run(_args: Args) -> miette::Result<Exit> {
    miette::bail!("not implemented yet")
}
