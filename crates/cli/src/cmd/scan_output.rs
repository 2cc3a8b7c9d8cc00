//! What `keyscope scan` shows, made safe to show: no key in a path or an author's name, and no
//! thread count that the machine cannot run.

use std::path::PathBuf;

use keyscope_scan::{Engine, Location, ScanOutcome, mask_secrets};

use crate::out::errln;

/// Worker threads are capped at this many per CPU: more only queue for the same cores, and
/// tens of thousands of threads took minutes to start (or failed to).
const THREADS_PER_CPU: usize = 4;
/// And at this many in all.
const MAX_THREADS: usize = 256;

/// The thread count to use for `--threads N`, with a warning when `N` is capped.
pub(crate) fn clamp_threads(threads: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let max = cpus.saturating_mul(THREADS_PER_CPU).clamp(1, MAX_THREADS);
    if threads > max {
        errln!(
            "warning: --threads {threads} is more than this machine can use; using {max} \
             ({THREADS_PER_CPU} per CPU, at most {MAX_THREADS})"
        );
        max
    } else {
        threads
    }
}

/// The outcome with every key masked in the paths, commit authors and commit summaries it
/// names: a file may be named after a key, and an author may have pasted one into their name.
/// The findings themselves never hold a key.
pub(crate) fn masked(engine: &Engine, outcome: &ScanOutcome) -> ScanOutcome {
    let mask = |text: &str| mask_secrets(engine, text);
    let location = |l: &Location| {
        let mut l = l.clone();
        l.path = mask(&l.path);
        if let Some(commit) = &mut l.commit {
            commit.author = mask(&commit.author);
            commit.summary = mask(&commit.summary);
        }
        l
    };
    let mut masked = outcome.clone();
    for finding in &mut masked.findings {
        finding.location = location(&finding.location);
        finding.related = finding.related.iter().map(location).collect();
    }
    for skipped in &mut masked.stats.skipped {
        let text = skipped.path.to_string_lossy();
        let shown = mask(&text);
        if shown != text {
            skipped.path = PathBuf::from(shown);
        }
    }
    masked
}
