//! `keyscope scan --history | --staged | --range`: git repositories instead of files.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use keyscope_scan::{Engine, GitOutcome, scan_history, scan_range, scan_staged};
use keyscope_sources::{Excludes, GitRepo, SweepOptions};
use miette::IntoDiagnostic as _;

use super::{Args, emit};
use crate::exit::Exit;
use crate::out::errln;

/// The git modes of `keyscope scan`.
#[derive(Debug, Clone, clap::Args)]
pub struct GitArgs {
    /// Scan every object in each repository's database (the paths name repositories): all
    /// branches, tags, stashes and unreachable objects, and every commit message.
    #[arg(long, conflicts_with_all = ["staged", "range"])]
    history: bool,
    /// Scan what the next commit would add: the index (`$GIT_INDEX_FILE` when set), for
    /// pre-commit hooks.
    #[arg(long, conflicts_with = "range")]
    staged: bool,
    /// Scan what the commits of `BASE..HEAD` introduce, merges included (for CI).
    #[arg(long, value_name = "BASE..HEAD")]
    range: Option<String>,
    /// With --staged: also report secrets that HEAD's version of the file already holds.
    #[arg(long, requires = "staged")]
    all: bool,
}

impl GitArgs {
    /// Whether a git mode was asked for.
    pub fn is_git(&self) -> bool {
        self.history || self.staged || self.range.is_some()
    }
}

/// Runs a git scan and reports it like any other.
pub fn run(args: &Args, engine: &Engine) -> miette::Result<Exit> {
    let outcome = if args.git.history {
        let repos = args
            .paths
            .iter()
            .map(GitRepo::open)
            .collect::<Result<Vec<_>, _>>()
            .into_diagnostic()?;
        let progress = Arc::new(AtomicU64::new(0));
        let options = SweepOptions {
            max_blob_size: args.max_file_size,
            threads: args.threads,
            progress: Some(Arc::clone(&progress)),
        };
        with_progress(&progress, || scan_history(engine, &repos, &options))
    } else {
        let repo = GitRepo::open(args.paths.first().map_or(".".as_ref(), |p| p.as_path()))
            .into_diagnostic()?;
        let excludes = Excludes::new(&super::exclude_globs(args)).into_diagnostic()?;
        match &args.git.range {
            Some(spec) => scan_range(engine, &repo, spec, args.max_file_size, &excludes),
            None => scan_staged(engine, &repo, args.git.all, &excludes),
        }
    }
    .into_diagnostic()?;
    let GitOutcome { outcome, warnings } = outcome;
    for warning in &warnings {
        // A warning names the repository path the user gave, which may hold anything.
        let warning = keyscope_scan::mask_secrets(engine, warning);
        errln!(
            "warning: {}",
            keyscope_report::human::escape_controls(&warning)
        );
    }
    emit(args, engine, &outcome)
}

/// Shows a count of objects read on standard error while `work` runs, when standard error is
/// a terminal.
fn with_progress<T>(count: &AtomicU64, work: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let mut stderr = std::io::stderr().lock();
                let _ = write!(
                    stderr,
                    "\rscanning git history: {} objects",
                    count.load(Ordering::Relaxed)
                );
                let _ = stderr.flush();
            }
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        result
    })
}
