//! The keyscope detection engine: finds leaked LLM provider keys in bytes.
//!
//! The one design decision here: **the cost of a scan is one multi-pattern keyword pass over
//! every byte, and nothing else for bytes that hold no keyword**. Every rule names rare literal
//! keywords; one Aho-Corasick automaton finds all of them (and their base64-encoded forms) in a
//! single pass, and a rule's regex runs only in a small window around its own keywords' hits.
//! Candidates then pass boundary, entropy, placeholder and context checks before they become
//! [`Finding`]s, which carry a redacted form and a salted fingerprint but never the secret.
//!
//! A whole scan as the command line runs it (configuration, rules, git targets, key owners,
//! flat-key analysis, baseline) is one call: [`pipeline::ScanBuilder`] builds a
//! [`pipeline::Scan`], whose `run` returns the findings every report shows.
//!
//! ```
//! use keyscope_rules::RuleSet;
//! use keyscope_scan::{Detector, scan_blob};
//!
//! let engine = Detector::new(RuleSet::builtin()?)?;
//! // A synthetic key, built so that this file holds no key-shaped literal.
//! let key = format!("gsk_{}", "q8Zr3LwX0pVt7KcN2bYh5MfJ1sDg4TuA9eRo6WiL".repeat(2)[..52].to_owned());
//! let findings = scan_blob(&engine, "app.py", format!("GROQ_API_KEY = \"{key}\"\n").as_bytes());
//! assert_eq!(findings[0].rule_id, "groq-api-key");
//! assert_eq!(findings[0].location.line, 1);
//! assert!(!findings[0].redacted.contains(&key));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod baseline;
mod checks;
pub mod config;
mod detector;
mod encoding;
mod finding;
pub mod flatkey;
mod history;
pub mod pipeline;
mod prefilter;
mod usage;

pub use detector::{Detector, DetectorError, Match};
pub use finding::{
    Correlation, Finding, KeyOwner, Location, Snippet, mask_secrets, redact, salted_fingerprint,
};
pub use history::{GitOutcome, scan_history, scan_range, scan_staged};

use std::sync::Mutex;
use std::time::{Duration, Instant};

use keyscope_sources::{FileSource, Origin, SkippedPlace, WalkStats};

/// The result of scanning a source.
#[derive(Debug, Clone, Default)]
pub struct ScanOutcome {
    /// Every finding, sorted by path, line and column.
    pub findings: Vec<Finding>,
    /// What was scanned and skipped.
    pub stats: WalkStats,
    /// Wall-clock time of the scan.
    pub elapsed: Duration,
}

/// Scans one blob; its findings are placed at `origin` (a path is a file's).
pub fn scan_blob(engine: &Detector, origin: impl Into<Origin>, data: &[u8]) -> Vec<Finding> {
    let matches = engine.scan(data);
    if matches.is_empty() {
        return Vec::new();
    }
    finding::findings(engine.rules().rules(), &origin.into(), data, &matches)
}

/// Scans every file of a source, in parallel. A key in a file's name is a finding too, and
/// no path in the outcome shows one: paths are masked as [`mask_secrets`] masks text.
pub fn scan_files(engine: &Detector, source: &FileSource) -> ScanOutcome {
    let started = Instant::now();
    let findings = Mutex::new(Vec::new());
    let mut stats = source.for_each(|blob| {
        let matches = engine.scan(blob.data);
        let in_name = name_findings(engine, blob.path);
        if matches.is_empty() && in_name.is_empty() {
            return;
        }
        let origin = Origin::File(masked_path(engine, blob.path));
        let found = finding::findings(engine.rules().rules(), &origin, blob.data, &matches);
        let mut findings = findings.lock().unwrap_or_else(|p| p.into_inner());
        findings.extend(found);
        findings.extend(in_name);
    });
    let mut findings = findings.into_inner().unwrap_or_else(|p| p.into_inner());
    // A path that was not read can still be named after a key (a key typed as a path).
    for skipped in &mut stats.skipped {
        if let SkippedPlace::Path(path) = &mut skipped.place {
            findings.extend(name_findings(engine, path));
            *path = masked_path(engine, path);
        }
    }
    sort_findings(&mut findings);
    ScanOutcome {
        findings,
        stats,
        elapsed: started.elapsed(),
    }
}

/// Sorts findings by location, then rule.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| (&a.location, &a.rule_id).cmp(&(&b.location, &b.rule_id)));
}

/// The findings of the keys in a file's name (its last component), placed at the masked path;
/// their line and column are those of the name.
fn name_findings(engine: &Detector, path: &std::path::Path) -> Vec<Finding> {
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    let matches: Vec<Match> = engine
        .scan(name.as_bytes())
        .into_iter()
        .filter(|m| engine.rules().rules()[m.rule].kind() == keyscope_rules::RuleKind::Secret)
        .collect();
    if matches.is_empty() {
        return Vec::new();
    }
    let origin = Origin::File(masked_path(engine, path));
    finding::findings(engine.rules().rules(), &origin, name.as_bytes(), &matches)
}

/// `path` with any key in it masked; the path itself when it holds none.
fn masked_path(engine: &Detector, path: &std::path::Path) -> std::path::PathBuf {
    let text = path.to_string_lossy();
    let shown = mask_secrets(engine, &text);
    if shown == text {
        path.to_path_buf()
    } else {
        shown.into()
    }
}

/// A rule example that does not behave as its rule file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleFailure {
    /// The rule.
    pub rule_id: String,
    /// 1-based index of the example in its list.
    pub index: usize,
    /// True for an example that was not found, false for a negative example that was.
    pub missed: bool,
}

impl std::fmt::Display for ExampleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.missed {
            write!(
                f,
                "rule `{}`: example {} is not found",
                self.rule_id, self.index
            )
        } else {
            write!(
                f,
                "rule `{}`: negative example {} is found",
                self.rule_id, self.index
            )
        }
    }
}

/// Checks every rule's examples (each must produce a finding of its rule) and negative
/// examples (none may), each scanned on its own with all the rules loaded. Rules that are off
/// by default are switched on for the check, so their examples are held to the same bar.
pub fn check_examples(
    rules: &keyscope_rules::RuleSet,
) -> Result<Vec<ExampleFailure>, DetectorError> {
    let mut rules = rules.clone();
    let ids: Vec<String> = rules.rules().iter().map(|r| r.id().to_owned()).collect();
    for id in &ids {
        if let Some(rule) = rules.get_mut(id) {
            rule.set_enabled(true);
        }
    }
    let engine = &Detector::new(rules)?;
    let mut failures = Vec::new();
    for rule in engine.rules().rules() {
        let found = |text: &str| {
            scan_blob(engine, "example", text.as_bytes())
                .iter()
                .any(|f| f.rule_id == rule.id())
        };
        for (i, example) in rule.examples().iter().enumerate() {
            if !found(example) {
                failures.push(ExampleFailure {
                    rule_id: rule.id().to_owned(),
                    index: i + 1,
                    missed: true,
                });
            }
        }
        for (i, example) in rule.negative_examples().iter().enumerate() {
            if found(example) {
                failures.push(ExampleFailure {
                    rule_id: rule.id().to_owned(),
                    index: i + 1,
                    missed: false,
                });
            }
        }
    }
    Ok(failures)
}
