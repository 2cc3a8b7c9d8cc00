//! What `keyscope scan` shows, made safe to show: no key in a path or an author's name, and no
//! thread count that the machine cannot run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyscope_scan::pipeline::{FingerprintKey, ScanResult};
use keyscope_scan::{Detector, Location, mask_secrets};
use keyscope_sources::{Origin, SkippedPlace};
use miette::{Context as _, IntoDiagnostic as _, miette};

use crate::out::errln;

/// The environment variable that holds the organisation's fingerprint key.
const FINGERPRINT_KEY_VAR: &str = "KEYSCOPE_FINGERPRINT_KEY";

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

/// The organisation's fingerprint key: the file's content, else the environment variable's.
pub(crate) fn fingerprint_key(file: Option<&Path>) -> miette::Result<FingerprintKey> {
    let bytes = match file {
        Some(path) => {
            let data = std::fs::read(path).into_diagnostic().wrap_err_with(|| {
                format!("cannot read the fingerprint key file `{}`", path.display())
            })?;
            // A trailing newline is the editor's, not the key's.
            let trimmed = data.trim_ascii_end().to_vec();
            if trimmed.is_empty() {
                return Err(miette!(
                    "the fingerprint key file `{}` is empty",
                    path.display()
                ));
            }
            trimmed
        }
        None => std::env::var_os(FINGERPRINT_KEY_VAR)
            .map(|v| v.into_encoded_bytes())
            .unwrap_or_default(),
    };
    Ok(FingerprintKey::keyed(bytes).unwrap_or_else(FingerprintKey::salted))
}

/// The result with every key masked in the paths, repository names, commit authors and commit
/// summaries it names: a file may be named after a key, and an author may have pasted one into
/// their name. The findings themselves never hold a key.
pub(crate) fn masked(engine: &Detector, mut result: ScanResult) -> ScanResult {
    let text = |t: &mut String| {
        let shown = mask_secrets(engine, t);
        if shown != *t {
            *t = shown;
        }
    };
    let path = |p: &Path| -> PathBuf {
        let original = p.to_string_lossy();
        let shown = mask_secrets(engine, &original);
        if shown == original {
            p.to_path_buf()
        } else {
            shown.into()
        }
    };
    let repo = |r: &mut Arc<Path>| {
        let shown = path(r);
        if *shown != **r {
            *r = Arc::from(shown.as_path());
        }
    };
    let origin = |o: &mut Origin| match o {
        Origin::File(p) => *p = path(p),
        Origin::Stdin => {}
        Origin::Index { path } => text(path),
        Origin::Commit {
            repo: r,
            path,
            commit,
        } => {
            if let Some(r) = r {
                repo(r);
            }
            text(path);
            text(&mut commit.author);
            text(&mut commit.summary);
        }
        Origin::Unreachable { repo: r, .. } => repo(r),
        Origin::CommitMessage { repo: r, commit } => {
            if let Some(r) = r {
                repo(r);
            }
            text(&mut commit.author);
            text(&mut commit.summary);
        }
        Origin::TagMessage { repo: r, name, .. } => {
            if let Some(r) = r {
                repo(r);
            }
            text(name);
        }
    };
    let location = |l: &mut Location| origin(&mut l.origin);
    for finding in &mut result.findings {
        location(&mut finding.location);
        for related in &mut finding.related {
            location(related);
        }
    }
    for skipped in &mut result.stats.skipped {
        if let SkippedPlace::Path(p) = &mut skipped.place {
            *p = path(p);
        }
    }
    result
}
