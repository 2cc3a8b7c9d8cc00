//! What keyscope scans: files and directory trees, and git objects, delivered as
//! blobs of bytes to a caller-supplied function on many threads.
//!
//! The one design decision here: **a source never decides what is a secret, and never loses
//! anything silently**. It hands every readable blob to the caller and records everything it
//! did not hand over — binaries, files over the size limit, unreadable paths, broken symlinks —
//! as a [`Skipped`] entry whose [`SkipReason::is_failure`] tells the caller whether the scan
//! can still be called complete.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("a.txt"), "hello")?;
//! let source = keyscope_sources::FileSource::builder().path(dir.path()).build()?;
//! let bytes = AtomicUsize::new(0);
//! let stats = source.for_each(|blob| {
//!     bytes.fetch_add(blob.data.len(), Ordering::Relaxed);
//! });
//! assert_eq!(stats.files, 1);
//! assert_eq!(bytes.into_inner(), 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod files;
mod git;
mod origin;

pub use files::{Excludes, FileSource, FileSourceBuilder};
pub use git::{
    Attribution, GitError, GitObject, GitRepo, History, Introduction, ObjectId, RangeChanges,
    SeenObjects, StagedChange, SweepOptions,
};
pub use origin::{Origin, RepoName};

use std::fmt;
use std::path::{Path, PathBuf};

/// Default largest file scanned: large enough for real source files and minified bundles.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// How many leading bytes are checked for a NUL byte to call a file binary (as git does).
const BINARY_PROBE: usize = 8 * 1024;

/// One blob handed to the caller: where it came from and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Blob<'a> {
    /// The file path, as given or as found under a given directory.
    pub path: &'a Path,
    /// The whole content.
    pub data: &'a [u8],
}

/// The commit a blob is attributed to: where a secret in git history came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitInfo {
    /// Full hexadecimal commit id.
    pub id: String,
    /// Author name and email, `Name <email>`.
    pub author: String,
    /// Author time, seconds since the Unix epoch (UTC).
    pub time: i64,
    /// First line of the commit message.
    pub summary: String,
}

/// Why a path was not scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The content looks binary (a NUL byte near the start).
    Binary,
    /// The file is larger than the size limit.
    TooLarge {
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The path exists but could not be read.
    Unreadable(String),
    /// A symlink whose target does not exist.
    BrokenSymlink {
        /// Whether the user named this path directly (then it is an error).
        explicit: bool,
    },
    /// A path the user named does not exist.
    NotFound,
    /// A `.gitignore`, `.ignore` or git exclude file excludes this path (a directory counts once).
    Ignored,
    /// Not a regular file: a FIFO, a socket or a device, which can block a read forever or
    /// never end. It is not opened.
    NotAFile {
        /// What it is (`FIFO`, `socket`, `device`).
        kind: &'static str,
        /// Whether the user named this path directly (then it is an error).
        explicit: bool,
    },
    /// A symlink in a walked directory that points outside every scanned tree: not followed,
    /// so its target is not scanned (name the target to scan it).
    SymlinkOutsideTree,
}

impl SkipReason {
    /// Whether skipping this loses content that should have been scanned, so that the scan
    /// must not be reported as clean.
    pub fn is_failure(&self) -> bool {
        match self {
            SkipReason::Binary | SkipReason::Ignored => false,
            SkipReason::BrokenSymlink { explicit } | SkipReason::NotAFile { explicit, .. } => {
                *explicit
            }
            SkipReason::SymlinkOutsideTree => false,
            SkipReason::TooLarge { .. } | SkipReason::Unreadable(_) | SkipReason::NotFound => true,
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Binary => f.write_str("binary file"),
            SkipReason::TooLarge { size, limit } => write!(
                f,
                "file is {size} bytes, over the {limit}-byte limit (raise it with --max-file-size)"
            ),
            SkipReason::Unreadable(e) => write!(f, "cannot be read: {e}"),
            SkipReason::BrokenSymlink { .. } => f.write_str("broken symlink"),
            SkipReason::NotFound => f.write_str("no such file or directory"),
            SkipReason::Ignored => {
                f.write_str("excluded by an ignore file (scan it with --no-ignore)")
            }
            SkipReason::NotAFile { kind, .. } => write!(f, "not a regular file ({kind}): not read"),
            SkipReason::SymlinkOutsideTree => {
                f.write_str("symlink to outside the scanned tree: not followed")
            }
        }
    }
}

/// What was not scanned: a path on disk, or an object of a repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkippedPlace {
    /// A file or directory, a file in the index, or a pack or object file of a repository.
    Path(PathBuf),
    /// An object of a repository: a blob over the size limit, a commit or tree that cannot be
    /// read.
    Object {
        /// The repository, as it was opened.
        repo: RepoName,
        /// The object.
        id: ObjectId,
    },
}

/// A path as it was given or found; an object as `<repository>@<object id>`.
impl fmt::Display for SkippedPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkippedPlace::Path(path) => write!(f, "{}", path.display()),
            SkippedPlace::Object { repo, id } => write!(f, "{}@{id}", repo.display()),
        }
    }
}

impl<P: Into<PathBuf>> From<P> for SkippedPlace {
    fn from(path: P) -> Self {
        SkippedPlace::Path(path.into())
    }
}

/// Something that was not scanned, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// What.
    pub place: SkippedPlace,
    /// Why.
    pub reason: SkipReason,
}

/// What a walk saw.
#[derive(Debug, Clone, Default)]
pub struct WalkStats {
    /// Blobs handed to the caller.
    pub files: u64,
    /// Bytes handed to the caller.
    pub bytes: u64,
    /// Binary files skipped (also listed in `skipped`).
    pub binary: u64,
    /// Everything not scanned, in path order.
    pub skipped: Vec<Skipped>,
    /// Git repositories met below a scanned directory (not a scanned directory itself):
    /// their working files were scanned, their histories were not. In path order.
    pub repositories: Vec<PathBuf>,
}

impl WalkStats {
    /// Adds what another walk (another repository, another shard) scanned and skipped.
    pub fn absorb(&mut self, other: WalkStats) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.binary += other.binary;
        self.skipped.extend(other.skipped);
        self.repositories.extend(other.repositories);
    }

    /// Whether anything that should have been scanned was not.
    pub fn has_failures(&self) -> bool {
        self.skipped.iter().any(|s| s.reason.is_failure())
    }
}

/// How many leading bytes [`is_binary`] looks at: a reader can decide on this much of a file
/// before reading the rest.
pub const BINARY_PROBE_LEN: usize = BINARY_PROBE;

/// Whether content looks binary: a NUL byte in its first few kilobytes.
pub fn is_binary(data: &[u8]) -> bool {
    memchr::memchr(0, &data[..data.len().min(BINARY_PROBE)]).is_some()
}

/// An error building a source.
#[derive(Debug, thiserror::Error)]
pub enum ExcludeError {
    /// An exclude glob does not parse.
    #[error("invalid exclude pattern `{pattern}`: {message}")]
    Exclude {
        /// The glob.
        pattern: String,
        /// Why.
        message: String,
    },
}
