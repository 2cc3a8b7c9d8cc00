//! Standard output and standard error for every command: a reader that goes away (`keyscope
//! decide | head -c 1`, `2>&-`) ends the output, not the program. `println!` panics there (exit
//! 101), after `decide --reserve` has already written the ledger.

use std::io::{ErrorKind, Write};

/// Writes `text` to standard output. A closed pipe is the reader's choice and not an error: the
/// rest of the output is dropped, and the command ends as it would have. Any other failure (a
/// full disk behind a redirection) is an error.
pub(crate) fn stdout(text: &str) -> miette::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => {
            Err(miette::miette!("cannot write to standard output: {e}"))
        }
        _ => Ok(()),
    }
}

/// Writes `text` to standard error. Standard error is where failures are told: when it is
/// closed, there is nowhere left to tell one, so nothing is.
pub(crate) fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// `println!` through [`stdout`]: evaluates to `miette::Result<()>`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` through [`stderr`].
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::stderr(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, outln};
