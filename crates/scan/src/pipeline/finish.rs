//! What happens to a scan's findings once every blob is read: owners named, flat-key findings
//! added, everything sorted, the baseline applied.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use keyscope_rules::RuleKind;

use super::{KeyOwners, Scan, Target};
use crate::baseline::BaselineEntry;
use crate::{Finding, Location, flatkey, sort_findings};

impl Scan {
    /// The final findings and the baseline's stale entries.
    pub(super) fn finish(&self, mut findings: Vec<Finding>) -> (Vec<Finding>, Vec<BaselineEntry>) {
        if let Some(owners) = &self.owners {
            attribute(owners.as_ref(), &mut findings);
        }
        let on_disk = matches!(self.target, Target::Files { .. });
        let roots = match &self.target {
            Target::Files { paths, .. } => paths
                .iter()
                .filter(|p| p.is_dir())
                .map(|p| p.display().to_string())
                .collect(),
            _ => Vec::new(),
        };
        let options = self.flat_key.clone().check_manifests(on_disk).roots(roots);
        let cache = RefCell::new(HashMap::new());
        let repo_of = |l: &Location| -> Option<String> {
            match &self.target {
                Target::Files { .. } => repository_of(Path::new(&l.origin.to_string()), &cache),
                Target::History { repos } if repos.len() > 1 => {
                    l.origin.repository().map(|r| r.display().to_string())
                }
                _ => None,
            }
        };
        let derived = flatkey::analyze(self.rules(), &findings, &options, &repo_of);
        findings.extend(derived);
        sort_findings(&mut findings);
        match &self.baseline {
            Some(baseline) => baseline.apply(findings),
            None => (findings, Vec::new()),
        }
    }
}

/// Names the owner of every leaked key the registry knows; a production scope's key is one
/// severity level worse.
fn attribute(owners: &dyn KeyOwners, findings: &mut [Finding]) {
    for finding in findings.iter_mut().filter(|f| f.kind == RuleKind::Secret) {
        let Some(owner) = finding.key_sha256().and_then(|sha| owners.owner(sha)) else {
            continue;
        };
        if owner.production {
            finding.severity = finding.severity.raised();
        }
        finding.owner = Some(owner);
    }
}

/// The repository a working-tree path belongs to: the nearest directory holding `.git`.
fn repository_of(path: &Path, cache: &RefCell<HashMap<PathBuf, Option<String>>>) -> Option<String> {
    let start = std::path::absolute(path).ok()?;
    let dir = start.parent()?.to_path_buf();
    if let Some(known) = cache.borrow().get(&dir) {
        return known.clone();
    }
    let found = dir
        .ancestors()
        .find(|d| d.join(".git").exists())
        .map(|d| d.display().to_string());
    cache.borrow_mut().insert(dir, found.clone());
    found
}
