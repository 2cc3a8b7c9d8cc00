//! Exit codes as a type: what every subcommand returns, mapped to the process status in one place.

/// How a command ended. `0` clean or allowed, `1` findings, denied or failed checks, `2` error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Nothing found, the request is allowed, or every check passed.
    Clean,
    /// Findings reported.
    Findings,
    /// The request is denied.
    Denied,
    /// Checks the user asked for failed: policy fixtures, rule examples, ledger integrity.
    ChecksFailed,
    /// Something failed or was skipped that should have been checked: never reported as clean.
    Error,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        match exit {
            Exit::Clean => std::process::ExitCode::from(0),
            Exit::Findings | Exit::Denied | Exit::ChecksFailed => std::process::ExitCode::from(1),
            Exit::Error => std::process::ExitCode::from(2),
        }
    }
}
