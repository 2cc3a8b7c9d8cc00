//! `keyscope man`: the manual page (roff), generated from the command line's own definition.

use std::io::Write as _;

use clap::CommandFactory as _;
use miette::IntoDiagnostic as _;

use crate::exit::Exit;

/// Arguments of `keyscope man`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Prints `keyscope.1` to standard output (`keyscope man > keyscope.1`, `keyscope man | man -l -`).
pub fn run(_args: Args) -> miette::Result<Exit> {
    let mut page = Vec::new();
    clap_mangen::Man::new(crate::Cli::command())
        .render(&mut page)
        .into_diagnostic()?;
    write_stdout(&page)
}

/// Writes generated text to standard output; a reader that closes the pipe early is no error.
pub(crate) fn write_stdout(text: &[u8]) -> miette::Result<Exit> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).into_diagnostic(),
        _ => Ok(Exit::Clean),
    }
}
