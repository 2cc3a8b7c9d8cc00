//! Merging sweeps: the findings of several sweeps' reports (the shards of one sweep) as one
//! sweep of all their repositories reports them.
//!
//! A sweep's report holds each secret once, at the place it was first introduced, with every
//! other place in `related`, and the flat-key findings that its own repositories show. Merging
//! unfolds every finding into its places, groups them again over all reports (so the first
//! place over all repositories leads), and runs the flat-key analysis again over all places:
//! a key in repositories of different shards is a `flat-key/shared-across-repos` finding, as
//! it is in one process.

use keyscope_rules::RuleKind;

use super::Scan;
use crate::baseline::BaselineEntry;
use crate::{Finding, Location, flatkey, history, sort_findings};

impl Scan {
    /// The findings of several sweeps' reports, fingerprinted alike, as one sweep of all their
    /// repositories reports them; this scan's rules and flat-key settings judge the
    /// correlations, and its baseline applies. Also returns the baseline's stale entries.
    pub fn merge(&self, findings: Vec<Finding>) -> (Vec<Finding>, Vec<BaselineEntry>) {
        let placed: Vec<Finding> = findings
            .into_iter()
            // The correlations of each report saw only its own repositories.
            .filter(|f| f.kind != RuleKind::Correlation)
            .flat_map(unfold)
            .collect();
        let mut findings = history::group(placed);
        let repo_of = |l: &Location| l.origin.repository().map(|r| r.display().to_string());
        let derived = flatkey::analyze(self.rules(), &findings, &self.flat_key, &repo_of);
        findings.extend(derived);
        sort_findings(&mut findings);
        match &self.baseline {
            Some(baseline) => baseline.apply(findings),
            None => (findings, Vec::new()),
        }
    }
}

/// A finding as the places it was found at: itself at its first place, then a copy at each
/// other place. Each report's first place is the earliest of its places, so a copy never
/// leads a group, and the snippet (which only the first place has) stays with it.
fn unfold(mut finding: Finding) -> Vec<Finding> {
    let related = std::mem::take(&mut finding.related);
    let mut places = Vec::with_capacity(related.len() + 1);
    for location in related {
        let mut copy = finding.clone();
        copy.location = location;
        places.push(copy);
    }
    places.insert(0, finding);
    places
}
