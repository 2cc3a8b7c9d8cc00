//! The `keyscope` command line: parse, dispatch, map the outcome to an exit code.

mod cmd;
mod exit;

use clap::Parser;

use crate::exit::Exit;

/// Find leaked LLM provider keys and flat-key usage; decide scoped-key requests with Cedar.
#[derive(Debug, Parser)]
#[command(name = "keyscope", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                Exit::Error
            } else {
                Exit::Clean
            }
            .into();
        }
    };
    match cmd::run(cli.command) {
        Ok(exit) => exit.into(),
        Err(report) => {
            eprintln!("{report:?}");
            Exit::Error.into()
        }
    }
}
