//! Git repositories: every object in the object database, the index, and the blobs a range of
//! commits introduces.
//!
//! The one design decision here: **a history sweep reads the object database, not the commit
//! graph**. Each pack is traversed in pack order with its delta tree (every base is inflated
//! once and its deltas applied in parallel), so every blob — on any branch, tag, stash, or
//! reachable from nothing at all — is read exactly once, at the speed of `git index-pack`.
//! The commit graph is only walked afterwards, and only to attribute the few blobs that
//! turned out to hold something: a commit *introduces* `(path, blob)` when its tree has that
//! blob at that path and none of its parents' trees do, which covers renames (the new path is
//! introduced again, the earliest introduction wins) and conflict resolutions in merges.

mod objects;
mod tree_index;
mod trees;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::{CommitInfo, DEFAULT_MAX_FILE_SIZE, SkipReason, Skipped, SkippedPlace, WalkStats};

pub use objects::GitObject;

/// A git object id, shown as full hexadecimal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ObjectId(gix::ObjectId);

impl ObjectId {
    /// Parses a full hexadecimal object id.
    pub fn from_hex(hex: &str) -> Option<ObjectId> {
        gix::ObjectId::from_hex(hex.as_bytes()).ok().map(ObjectId)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// An error opening or reading a git repository.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The path is not a git repository.
    #[error("`{path}` is not a git repository: {message}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A `--range` argument that is not `BASE..HEAD`.
    #[error("invalid range `{0}`: expected BASE..HEAD (for example `origin/main..HEAD`)")]
    RangeSyntax(String),
    /// The base of a range is not in the repository.
    #[error(
        "base revision `{base}` is not in this repository{}: fetch the history first \
         (`git fetch --unshallow`, or `fetch-depth: 0` with actions/checkout)",
        if *shallow { " (a shallow clone)" } else { "" }
    )]
    BaseNotFound {
        /// The base as given.
        base: String,
        /// Whether the repository is a shallow clone.
        shallow: bool,
    },
    /// A revision that does not resolve to a commit.
    #[error("cannot resolve `{spec}` to a commit: {message}")]
    Revision {
        /// The revision as given.
        spec: String,
        /// Why.
        message: String,
    },
    /// An object, the index or a reference could not be read.
    #[error("cannot read {what}: {message}")]
    Read {
        /// What was being read.
        what: String,
        /// Why.
        message: String,
    },
}

fn read_error(what: impl Into<String>, err: impl fmt::Display) -> GitError {
    GitError::Read {
        what: what.into(),
        message: err.to_string(),
    }
}

/// How a history sweep reads objects.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Blobs larger than this are skipped and reported as failures.
    pub max_blob_size: u64,
    /// Worker threads; `0` means one per core.
    pub threads: usize,
    /// Counts objects as they are read, for a progress display.
    pub progress: Option<Arc<AtomicU64>>,
    /// Objects an earlier sweep read: not decoded again (an incremental sweep).
    pub seen: Option<Arc<SeenObjects>>,
    /// Objects to hand over even when `seen` holds them: those that held findings before, so
    /// that a report stays complete without the state storing anything of a secret.
    pub revisit: Vec<ObjectId>,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            max_blob_size: DEFAULT_MAX_FILE_SIZE,
            threads: 0,
            progress: None,
            seen: None,
            revisit: Vec::new(),
        }
    }
}

/// What a sweep read, in the units a later sweep can skip: whole packs (by file name, which
/// git derives from the pack's content) and loose objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenObjects {
    /// Pack file names (`pack-<hash>.pack`) read to the end without error.
    pub packs: HashSet<String>,
    /// Loose objects read without error.
    pub loose: HashSet<ObjectId>,
}

/// One commit as recorded during a sweep: what attribution needs.
#[derive(Debug, Clone)]
struct CommitRecord {
    info: CommitInfo,
    tree: gix::ObjectId,
    parents: Vec<gix::ObjectId>,
}

/// What a history sweep saw.
#[derive(Debug, Default)]
pub struct History {
    /// Blobs handed over (`files`), their bytes, binary blobs, and objects that could not be
    /// read (each a failure, a [`SkippedPlace::Object`](crate::SkippedPlace::Object), or a pack file).
    pub stats: WalkStats,
    /// Objects in the database, of every kind, as counted by the packs and loose objects.
    pub objects: u64,
    /// Things the caller should tell the user that do not make the sweep fail, such as a
    /// shallow clone's incomplete history.
    pub warnings: Vec<String>,
    /// What this sweep read without error, with what [`SweepOptions::seen`] held and is still
    /// in the database: what the next incremental sweep can skip.
    pub read: SeenObjects,
    /// Objects not decoded because [`SweepOptions::seen`] held them (counted per pack's index
    /// and per loose object).
    pub already_seen: u64,
    commits: HashMap<gix::ObjectId, CommitRecord>,
    /// Commits read for their messages only ([`SweepOptions::revisit`]), not attributed.
    revisited: HashMap<gix::ObjectId, CommitInfo>,
    refs: Vec<(String, ObjectId)>,
    /// The trees the sweep decoded, for attribution.
    trees: tree_index::TreeIndex,
}

impl History {
    /// The commit with this id, if the sweep saw it.
    pub fn commit(&self, id: ObjectId) -> Option<&CommitInfo> {
        self.commits
            .get(&id.0)
            .map(|c| &c.info)
            .or_else(|| self.revisited.get(&id.0))
    }

    /// How many commits the object database holds.
    pub fn commit_count(&self) -> usize {
        self.commits.len()
    }

    /// The tips of the repository's references, `(name, commit or tag id)`, sorted by name.
    pub fn refs(&self) -> &[(String, ObjectId)] {
        &self.refs
    }
}

/// A commit that introduced a blob at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introduction {
    /// The path in that commit's tree, `/`-separated.
    pub path: String,
    /// The commit.
    pub commit: CommitInfo,
}

/// Where the blobs a sweep asked about came from.
#[derive(Debug, Default)]
pub struct Attribution {
    introductions: HashMap<ObjectId, Vec<Introduction>>,
    at_head: HashSet<ObjectId>,
    /// Trees or commits that could not be read while attributing (failures).
    pub skipped: Vec<Skipped>,
}

impl Attribution {
    /// Every commit that introduced this blob at some path, earliest first (author time, then
    /// id); empty for a blob that no commit in the database contains (an unreachable object).
    pub fn introductions(&self, blob: ObjectId) -> &[Introduction] {
        self.introductions.get(&blob).map_or(&[], Vec::as_slice)
    }

    /// Whether HEAD's tree still holds this blob (at any path).
    pub fn at_head(&self, blob: ObjectId) -> bool {
        self.at_head.contains(&blob)
    }
}

/// A file whose staged content differs from HEAD's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedChange {
    /// The path in the index, `/`-separated.
    pub path: String,
    /// The staged blob.
    pub staged: ObjectId,
    /// The blob at the same path in HEAD's tree, if there is one.
    pub head: Option<ObjectId>,
}

/// What the commits of a range introduce.
#[derive(Debug, Default)]
pub struct RangeChanges {
    /// Every blob introduced by some commit of the range, with each introduction, earliest
    /// first.
    pub blobs: Vec<(ObjectId, Vec<Introduction>)>,
    /// The range's commits with their full messages.
    pub commits: Vec<(CommitInfo, Vec<u8>)>,
}

/// An opened git repository (a work tree's or a bare one).
#[derive(Clone)]
pub struct GitRepo {
    repo: gix::ThreadSafeRepository,
    path: PathBuf,
}

impl fmt::Debug for GitRepo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitRepo").field("path", &self.path).finish()
    }
}

impl GitRepo {
    /// Opens the repository at `path`, or the one that contains it.
    pub fn open(path: impl AsRef<Path>) -> Result<GitRepo, GitError> {
        let path = path.as_ref();
        let repo = gix::discover(path).map_err(|e| GitError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(GitRepo {
            repo: repo.into_sync(),
            path: path.to_path_buf(),
        })
    }

    /// The path the repository was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The repository's working tree in canonical form; `None` for a bare repository.
    pub fn workdir(&self) -> Option<PathBuf> {
        let local = self.repo.to_thread_local();
        std::fs::canonicalize(local.workdir()?).ok()
    }

    /// Whether the repository is a shallow clone (its history is cut off).
    pub fn is_shallow(&self) -> bool {
        self.repo.to_thread_local().is_shallow().unwrap_or(false)
    }

    fn local(&self) -> gix::Repository {
        let mut repo = self.repo.to_thread_local();
        repo.object_cache_size_if_unset(32 * 1024 * 1024);
        repo
    }

    /// Hands every blob in the object database (once, deduplicated across packs and loose
    /// objects), every commit message and every annotated tag message to `visit`, from several
    /// threads at once.
    pub fn for_each_object<F>(&self, options: &SweepOptions, visit: F) -> Result<History, GitError>
    where
        F: Fn(GitObject<'_>) + Sync,
    {
        let mut history = objects::sweep(self, options, &visit)?;
        history.refs = self.refs()?;
        if self.is_shallow() {
            history.warnings.push(format!(
                "{} is a shallow clone: history before its shallow boundary is not scanned \
                 (`git fetch --unshallow` fetches it)",
                self.path.display()
            ));
        }
        Ok(history)
    }

    /// Every reference and the object it points at, sorted by name.
    fn refs(&self) -> Result<Vec<(String, ObjectId)>, GitError> {
        let local = self.local();
        let platform = local
            .references()
            .map_err(|e| read_error("the references", e))?;
        let mut refs = Vec::new();
        for reference in platform
            .all()
            .map_err(|e| read_error("the references", e))?
        {
            let Ok(reference) = reference else { continue };
            if let Some(id) = reference.try_id() {
                refs.push((
                    reference.name().as_bstr().to_string(),
                    ObjectId(id.detach()),
                ));
            }
        }
        if let Ok(head) = local.head_id() {
            refs.push(("HEAD".to_owned(), ObjectId(head.detach())));
        }
        refs.sort();
        Ok(refs)
    }

    /// Finds, for each blob in `targets`, the commits that introduced it and at which paths,
    /// with one pass over the commits `history` recorded; and whether HEAD still holds it.
    pub fn attribute(
        &self,
        history: &History,
        targets: &HashSet<ObjectId>,
    ) -> Result<Attribution, GitError> {
        trees::attribute(self, history, targets)
    }

    /// The files whose staged blob differs from HEAD's (all of them when there is no HEAD
    /// yet). The index is `$GIT_INDEX_FILE` when that is set, as in a git hook.
    pub fn staged(&self) -> Result<Vec<StagedChange>, GitError> {
        trees::staged(self)
    }

    /// The blobs and commit messages that the commits of `BASE..HEAD` introduce; `REV` alone
    /// means every commit that `REV` reaches, as in `git log REV`.
    pub fn range(&self, spec: &str) -> Result<RangeChanges, GitError> {
        trees::range(self, spec)
    }

    /// Reads one blob.
    pub fn read_blob(&self, id: ObjectId) -> Result<Vec<u8>, GitError> {
        let repo = self.local();
        let object = repo
            .find_object(id.0)
            .map_err(|e| read_error(format!("blob {id}"), e))?;
        Ok(object.detach().data)
    }

    /// Reads blobs in parallel, handing each readable, non-binary one to `visit`; records
    /// unreadable or oversized ones as failures.
    pub fn for_each_blob<F>(&self, ids: &[ObjectId], max_blob_size: u64, visit: F) -> WalkStats
    where
        F: Fn(ObjectId, &[u8]) + Sync,
    {
        use rayon::prelude::*;
        let results: Vec<(u64, u64, Option<Skipped>)> = ids
            .par_iter()
            .map_init(
                || self.local(),
                |repo, &id| match repo.find_object(id.0) {
                    Ok(object) => {
                        if object.data.len() as u64 > max_blob_size {
                            let skip = self.skipped(
                                id,
                                SkipReason::TooLarge {
                                    size: object.data.len() as u64,
                                    limit: max_blob_size,
                                },
                            );
                            (0, 0, Some(skip))
                        } else if crate::is_binary(&object.data) {
                            (0, 0, Some(self.skipped(id, SkipReason::Binary)))
                        } else {
                            visit(id, &object.data);
                            (1, object.data.len() as u64, None)
                        }
                    }
                    Err(e) => (
                        0,
                        0,
                        Some(self.skipped(id, SkipReason::Unreadable(e.to_string()))),
                    ),
                },
            )
            .collect();
        let mut stats = WalkStats::default();
        for (files, bytes, skip) in results {
            stats.files += files;
            stats.bytes += bytes;
            if let Some(skip) = skip {
                if skip.reason == SkipReason::Binary {
                    stats.binary += 1;
                }
                stats.skipped.push(skip);
            }
        }
        stats.skipped.sort_by(|a, b| a.place.cmp(&b.place));
        stats
    }

    fn skipped(&self, id: ObjectId, reason: SkipReason) -> Skipped {
        Skipped {
            place: SkippedPlace::Object {
                repo: Arc::from(self.path.as_path()),
                id,
            },
            reason,
        }
    }
}

fn commit_info(id: gix::ObjectId, commit: &gix::objs::CommitRef<'_>) -> CommitInfo {
    let (author, time) = match commit.author() {
        Ok(sig) => (
            format!("{} <{}>", sig.name, sig.email),
            sig.time().map(|t| t.seconds).unwrap_or(0),
        ),
        Err(_) => (String::new(), 0),
    };
    CommitInfo {
        id: id.to_string(),
        author,
        time,
        summary: commit.message().summary().to_string(),
    }
}
