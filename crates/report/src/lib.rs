//! Renders keyscope scan results: versioned JSON, SARIF 2.1.0 for code-scanning services, and
//! miette diagnostics for people.
//!
//! The one design decision here: **every renderer takes the same [`ScanReport`] and none can
//! reach a secret**. Findings arrive already redacted (`keyscope-scan` never stores a secret in
//! a finding), so no output format can leak one, whatever it chooses to show. The JSON report
//! also reads back ([`json::read`]) into the values it was rendered from, so reports of several
//! sweeps merge and render again through the same renderers.
//!
//! ```
//! use keyscope_report::{ScanReport, json};
//! use keyscope_rules::RuleSet;
//!
//! let rules = RuleSet::builtin()?;
//! let stats = keyscope_sources::WalkStats::default();
//! let report = ScanReport::new(&rules, &[], &stats, std::time::Duration::ZERO);
//! let value: serde_json::Value = serde_json::from_str(&json::render(&report)?)?;
//! assert_eq!(value["version"], 1);
//! assert_eq!(value["summary"]["findings"], 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod human;
pub mod json;
pub mod prose;
pub mod rule_list;
pub mod sarif;

use std::collections::HashSet;
use std::time::Duration;

use keyscope_rules::RuleSet;
use keyscope_scan::Finding;
use keyscope_scan::pipeline::{FingerprintKind, SweepSummary};
use keyscope_sources::WalkStats;

/// Everything a renderer needs about one scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanReport<'a> {
    /// The rules the scan applied (SARIF lists them).
    pub rules: &'a RuleSet,
    /// The findings, in report order.
    pub findings: &'a [Finding],
    /// What was scanned and skipped.
    pub stats: &'a WalkStats,
    /// How long the scan took.
    pub elapsed: Duration,
    /// How the findings' fingerprints were made.
    pub fingerprints: FingerprintKind,
    /// For a fleet sweep, or a merge of sweeps: what it covered.
    pub sweep: Option<&'a SweepFacts>,
}

/// What a fleet sweep, or a merge of several sweeps' reports, adds to its report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepFacts {
    /// The totals over every repository.
    pub summary: SweepSummary,
    /// `(rule id, fingerprint)` of the findings that an earlier sweep already reported.
    pub previously_reported: HashSet<(String, String)>,
    /// For one shard's sweep: the shard, `(K, N)` for shard K of N.
    pub shard: Option<(u64, u64)>,
    /// For a merge: how many reports it combined.
    pub merged_reports: Option<u64>,
}

impl SweepFacts {
    /// Whether an earlier sweep already reported this finding.
    pub fn reported_before(&self, finding: &Finding) -> bool {
        self.previously_reported
            .contains(&(finding.rule_id.clone(), finding.fingerprint.clone()))
    }
}

impl<'a> ScanReport<'a> {
    /// Bundles a scan's results for rendering.
    pub fn new(
        rules: &'a RuleSet,
        findings: &'a [Finding],
        stats: &'a WalkStats,
        elapsed: Duration,
    ) -> ScanReport<'a> {
        ScanReport {
            rules,
            findings,
            stats,
            elapsed,
            fingerprints: FingerprintKind::Salted,
            sweep: None,
        }
    }

    /// The report, its fingerprints made as `kind` says.
    pub fn with_fingerprints(self, kind: FingerprintKind) -> ScanReport<'a> {
        ScanReport {
            fingerprints: kind,
            ..self
        }
    }

    /// The report of a fleet sweep, or of a merge of sweeps.
    pub fn with_sweep(self, sweep: &'a SweepFacts) -> ScanReport<'a> {
        ScanReport {
            sweep: Some(sweep),
            ..self
        }
    }

    /// Whether everything that should have been scanned was.
    pub fn complete(&self) -> bool {
        !self.stats.has_failures()
    }

    /// How many skipped paths ignore files excluded (an ignored directory counts once).
    pub fn ignored_paths(&self) -> u64 {
        self.stats
            .skipped
            .iter()
            .filter(|s| s.reason == keyscope_sources::SkipReason::Ignored)
            .count() as u64
    }
}

/// The repositories a finding's places are in, in the order of its places, each once.
pub fn repositories(finding: &Finding) -> Vec<String> {
    let mut repos: Vec<String> = Vec::new();
    for location in std::iter::once(&finding.location).chain(&finding.related) {
        if let Some(repo) = location.origin.repository() {
            let name = repo.display().to_string();
            if !repos.contains(&name) {
                repos.push(name);
            }
        }
    }
    repos
}

/// An error rendering a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Serialisation failed (not expected for well-formed findings).
    #[error("cannot serialise the report: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// The tool's version, as reported in every format.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
