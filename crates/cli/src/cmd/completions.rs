//! `keyscope completions SHELL`: the shell completion script, generated from the command line's
//! own definition so it never drifts from it.

use clap::CommandFactory as _;

use crate::exit::Exit;

/// Arguments of `keyscope completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Prints the completion script for `args.shell` to standard output.
pub fn run(args: Args) -> miette::Result<Exit> {
    let mut command = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "keyscope", &mut script);
    super::man::write_stdout(&script)
}
