//! Baselines: accepted findings, so that a team adopting keyscope sees only what is new.
//!
//! An entry is a rule id and a secret's fingerprint — no path, line or time — so a baseline does
//! not churn when code moves, and a different secret on a baselined line is still new.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::Finding;

/// The baseline file format version.
const VERSION: u32 = 1;

/// An error reading a baseline.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file is not a keyscope baseline.
    #[error("invalid baseline `{path}`: {message}")]
    Invalid {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
}

/// One accepted finding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineEntry {
    /// The rule.
    pub rule_id: String,
    /// The secret's fingerprint (for usage findings, the matched code's).
    pub fingerprint: String,
    /// The redacted secret, for people reading the file.
    #[serde(default)]
    pub redacted: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaselineFile {
    version: u32,
    entries: Vec<BaselineEntry>,
}

/// A set of accepted findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baseline {
    entries: BTreeSet<BaselineEntry>,
}

impl Baseline {
    /// The baseline that accepts these findings.
    pub fn from_findings(findings: &[Finding]) -> Baseline {
        Baseline {
            entries: findings
                .iter()
                .map(|f| BaselineEntry {
                    rule_id: f.rule_id.clone(),
                    fingerprint: f.fingerprint.clone(),
                    redacted: f.redacted.clone(),
                })
                .collect(),
        }
    }

    /// Parses a baseline file; `path` names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Baseline, BaselineError> {
        let file: BaselineFile =
            serde_json::from_str(text).map_err(|e| BaselineError::Invalid {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        if file.version != VERSION {
            return Err(BaselineError::Invalid {
                path: path.to_owned(),
                message: format!(
                    "version {} is not supported (expected {VERSION})",
                    file.version
                ),
            });
        }
        Ok(Baseline {
            entries: file.entries.into_iter().collect(),
        })
    }

    /// The file text: sorted, stable, one entry per rule and secret.
    pub fn to_json(&self) -> String {
        let file = BaselineFile {
            version: VERSION,
            entries: self.entries.iter().cloned().collect(),
        };
        let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the baseline is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Splits findings into those the baseline does not accept (returned) and drops the rest;
    /// also returns the entries that matched nothing (stale: the secret is gone).
    pub fn apply(&self, findings: Vec<Finding>) -> (Vec<Finding>, Vec<BaselineEntry>) {
        // Indexed by rule, then fingerprint (whether a finding matched it): an organisation's
        // baseline holds thousands of entries and a history sweep as many findings.
        let mut index: BTreeMap<&str, BTreeMap<&str, bool>> = BTreeMap::new();
        for entry in &self.entries {
            index
                .entry(&entry.rule_id)
                .or_default()
                .insert(&entry.fingerprint, false);
        }
        let mut new = Vec::new();
        for finding in findings {
            match index
                .get_mut(finding.rule_id.as_str())
                .and_then(|by_fingerprint| by_fingerprint.get_mut(finding.fingerprint.as_str()))
            {
                Some(matched) => *matched = true,
                None => new.push(finding),
            }
        }
        let stale = self
            .entries
            .iter()
            .filter(|e| {
                index
                    .get(e.rule_id.as_str())
                    .and_then(|by_fingerprint| by_fingerprint.get(e.fingerprint.as_str()))
                    == Some(&false)
            })
            .cloned()
            .collect();
        (new, stale)
    }
}
