//! The `keyscope` command line: parse, dispatch, map the outcome to an exit code.

mod cmd;
mod exit;
mod out;

use std::io::IsTerminal as _;

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
        Err(err) if err.use_stderr() => {
            // A mistyped command line can carry a key as an argument.
            let styled = err.render();
            let text = if std::io::stderr().is_terminal() {
                styled.ansi().to_string()
            } else {
                styled.to_string()
            };
            out::stderr(&mask(text));
            return Exit::Error.into();
        }
        Err(help) => {
            let _ = help.print();
            return Exit::Clean.into();
        }
    };
    match cmd::run(cli.command) {
        Ok(exit) => exit.into(),
        Err(report) => {
            out::errln!("{}", render(&report));
            Exit::Error.into()
        }
    }
}

/// An error report as the user sees it, with any key it quotes masked. Config files, rule files
/// and policy stores are the user's, and a key pasted into one (or given as a misspelt setting's
/// value) would otherwise reach the terminal whole, in the snippet or in the parser's message.
/// Lines are not wrapped, so a key in a message stays in one piece for the masking to find.
fn render(report: &miette::Report) -> String {
    struct Shown<'a>(&'a miette::MietteHandler, &'a dyn miette::Diagnostic);
    impl std::fmt::Debug for Shown<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            miette::ReportHandler::debug(self.0, self.1, f)
        }
    }
    let handler = miette::MietteHandlerOpts::new().wrap_lines(false).build();
    mask(format!("{:?}", Shown(&handler, report.as_ref())))
}

/// `text` with every key the built-in rules find in it masked. The detector is built once per
/// process, so masking every line of a report costs a search, not a rule compilation.
pub(crate) fn mask(text: String) -> String {
    static DETECTOR: std::sync::OnceLock<Option<keyscope_scan::Detector>> =
        std::sync::OnceLock::new();
    let detector = DETECTOR.get_or_init(|| {
        keyscope_rules::RuleSet::builtin()
            .ok()
            .and_then(|rules| keyscope_scan::Detector::new(rules).ok())
    });
    match detector {
        Some(detector) => keyscope_scan::mask_secrets(detector, &text),
        // The built-in rules are checked by the tests; without them there is nothing to mask by.
        None => text,
    }
}
