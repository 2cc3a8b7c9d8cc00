//! The state of an incremental sweep: per repository, which packs and loose objects a sweep
//! read under which rules, and where the objects that held findings were introduced.
//!
//! The one design decision here: **the state stores no finding, only where to find it
//! again**. The few objects that held findings are read and matched again on the next sweep
//! (a handful of objects, against the thousands a sweep skips), so the state holds nothing
//! derived from a secret but the salted fingerprints every report already shows, and a
//! finding is always rebuilt by today's code. A state file is written whole to a temporary
//! file and renamed over the old one, and only after its repository's sweep completed: a
//! killed sweep leaves the last complete state, never a record of something not scanned.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use keyscope_sources::{CommitInfo, Introduction, ObjectId, SeenObjects};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The state file format; another version is ignored (a full sweep rewrites it).
const FORMAT: u32 = 1;

/// What one repository's last complete sweep recorded.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct RepoState {
    format: u32,
    /// The rule set and options the objects were matched under; another means a full sweep.
    pub(super) rules: String,
    pub(super) identity: String,
    pub(super) packs: Vec<String>,
    pub(super) loose: Vec<String>,
    /// Blobs that held findings, and every place a commit introduced each.
    pub(super) blobs: Vec<BlobPlaces>,
    /// Commits and annotated tags whose messages held findings.
    pub(super) messages: Vec<String>,
    /// `(rule id, salted fingerprint)` of every finding the sweep reported.
    pub(super) reported: Vec<(String, String)>,
}

/// A blob that held findings and where it was introduced.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct BlobPlaces {
    pub(super) id: String,
    pub(super) places: Vec<Place>,
}

/// A path in a commit.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Place {
    path: String,
    commit: String,
    author: String,
    time: i64,
    /// With any secret in it masked.
    summary: String,
}

impl Place {
    pub(super) fn new(intro: &Introduction) -> Place {
        Place {
            path: intro.path.clone(),
            commit: intro.commit.id.clone(),
            author: intro.commit.author.clone(),
            time: intro.commit.time,
            summary: intro.commit.summary.clone(),
        }
    }

    /// What tells two places apart: the commit and the path.
    pub(super) fn key(&self) -> (&str, &str) {
        (&self.commit, &self.path)
    }

    fn introduction(&self) -> Introduction {
        Introduction {
            path: self.path.clone(),
            commit: CommitInfo {
                id: self.commit.clone(),
                author: self.author.clone(),
                time: self.time,
                summary: self.summary.clone(),
            },
        }
    }
}

/// Where a repository's state lives in the state directory: named by a hash of its
/// identity, so that any URL or path makes a valid file name.
pub(super) fn path(dir: &Path, identity: &str) -> PathBuf {
    let digest = Sha256::digest(identity.as_bytes());
    let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    dir.join("repos").join(format!("{name}.json"))
}

impl RepoState {
    /// The state recorded for `identity` under `rules`, or `None` (a full sweep) when there is
    /// none, it is unreadable, or it was made under other rules.
    pub(super) fn load(dir: &Path, identity: &str, rules: &str) -> Option<RepoState> {
        let text = std::fs::read_to_string(path(dir, identity)).ok()?;
        let state: RepoState = serde_json::from_str(&text).ok()?;
        (state.format == FORMAT && state.rules == rules && state.identity == identity)
            .then_some(state)
    }

    /// A new state for `identity`.
    pub(super) fn new(identity: &str, rules: &str) -> RepoState {
        RepoState {
            format: FORMAT,
            rules: rules.to_owned(),
            identity: identity.to_owned(),
            ..RepoState::default()
        }
    }

    /// What the sweep can skip.
    pub(super) fn seen(&self) -> SeenObjects {
        SeenObjects {
            packs: self.packs.iter().cloned().collect(),
            loose: self
                .loose
                .iter()
                .filter_map(|id| ObjectId::from_hex(id))
                .collect(),
        }
    }

    /// The objects to read again: those that held findings.
    pub(super) fn revisit(&self) -> Vec<ObjectId> {
        self.blobs
            .iter()
            .map(|b| b.id.as_str())
            .chain(self.messages.iter().map(String::as_str))
            .filter_map(ObjectId::from_hex)
            .collect()
    }

    /// Where each blob that held findings was introduced.
    pub(super) fn places(&self) -> HashMap<ObjectId, Vec<Introduction>> {
        self.blobs
            .iter()
            .filter_map(|b| {
                let id = ObjectId::from_hex(&b.id)?;
                Some((id, b.places.iter().map(Place::introduction).collect()))
            })
            .collect()
    }

    /// The findings the last sweep reported.
    pub(super) fn reported(&self) -> HashSet<(String, String)> {
        self.reported.iter().cloned().collect()
    }

    /// Records what was read.
    pub(super) fn set_seen(&mut self, seen: &SeenObjects) {
        self.packs = seen.packs.iter().cloned().collect();
        self.packs.sort();
        self.loose = seen.loose.iter().map(ObjectId::to_string).collect();
        self.loose.sort();
    }

    /// Writes the state: a temporary file, flushed to disk, renamed over the old one.
    pub(super) fn save(&self, dir: &Path) -> std::io::Result<()> {
        let path = path(dir, &self.identity);
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent)?;
        let mut temp = tempfile_in(parent)?;
        temp.1.write_all(serde_json::to_string(self)?.as_bytes())?;
        temp.1.sync_all()?;
        std::fs::rename(&temp.0, &path)
    }
}

/// A new file beside the state files, named after this process so that two sweeps sharing a
/// state directory never write the same temporary file.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!(
        ".tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}
