//! Where a piece of content came from, as a value: a file, a blob at a path in a commit, a blob
//! no commit holds, a commit message, the index, standard input. Nothing downstream builds a
//! place into a string and parses it back; it asks the origin.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{CommitInfo, ObjectId};

/// A repository as a scan of several names it: the path it was opened with.
pub type RepoName = Arc<Path>;

/// Where content was read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A file on disk, as given or as found under a given directory.
    File(PathBuf),
    /// Standard input.
    Stdin,
    /// A file in the index (what the next commit would hold), `/`-separated.
    Index {
        /// The path in the index.
        path: String,
    },
    /// A blob at a path in the tree of the commit that introduced it there.
    Commit {
        /// The repository, when the scan covered several (`None`: the only one).
        repo: Option<RepoName>,
        /// The path in the commit's tree, `/`-separated.
        path: String,
        /// The commit.
        commit: CommitInfo,
    },
    /// A blob that no commit in the repository holds (amended away, dangling, stashed loose).
    Unreachable {
        /// The repository.
        repo: RepoName,
        /// The blob.
        blob: ObjectId,
    },
    /// The message of a commit.
    CommitMessage {
        /// The repository, when the scan covered several (`None`: the only one).
        repo: Option<RepoName>,
        /// The commit.
        commit: CommitInfo,
    },
    /// The message of an annotated tag.
    TagMessage {
        /// The repository, when the scan covered several (`None`: the only one).
        repo: Option<RepoName>,
        /// The tag's name.
        name: String,
        /// The tag object.
        id: ObjectId,
    },
}

/// What a commit message is called where a path would be.
const COMMIT_MESSAGE: &str = "(commit message)";

impl Origin {
    /// The commit this content was introduced in, if it came from one.
    pub fn commit(&self) -> Option<&CommitInfo> {
        match self {
            Origin::Commit { commit, .. } | Origin::CommitMessage { commit, .. } => Some(commit),
            _ => None,
        }
    }

    /// The commit, to update its recorded facts (a masked summary).
    pub fn commit_mut(&mut self) -> Option<&mut CommitInfo> {
        match self {
            Origin::Commit { commit, .. } | Origin::CommitMessage { commit, .. } => Some(commit),
            _ => None,
        }
    }

    /// The repository this content came from, when the scan named it.
    pub fn repository(&self) -> Option<&Path> {
        match self {
            Origin::Commit { repo, .. }
            | Origin::CommitMessage { repo, .. }
            | Origin::TagMessage { repo, .. } => repo.as_deref(),
            Origin::Unreachable { repo, .. } => Some(repo),
            Origin::File(_) | Origin::Stdin | Origin::Index { .. } => None,
        }
    }
}

/// The place as a path: `src/app.py`, `-` for standard input, `(commit message)`, `(tag v1.0)`
/// for an annotated tag's message, `repo/src/app.py` or `repo/(commit message)` in a scan of
/// several repositories, `repo@<blob id>` for an
/// unreachable blob.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_repo = |f: &mut fmt::Formatter<'_>, repo: &Option<RepoName>, path: &str| match repo {
            Some(repo) => write!(f, "{}/{path}", repo.display()),
            None => f.write_str(path),
        };
        match self {
            Origin::File(path) => {
                let text = path.to_string_lossy();
                f.write_str(text.strip_prefix("./").unwrap_or(&text))
            }
            Origin::Stdin => f.write_str("-"),
            Origin::Index { path } => f.write_str(path),
            Origin::Commit { repo, path, .. } => in_repo(f, repo, path),
            Origin::Unreachable { repo, blob } => write!(f, "{}@{blob}", repo.display()),
            Origin::CommitMessage { repo, .. } => in_repo(f, repo, COMMIT_MESSAGE),
            Origin::TagMessage { repo, name, .. } => in_repo(f, repo, &format!("(tag {name})")),
        }
    }
}

impl From<&str> for Origin {
    fn from(path: &str) -> Self {
        Origin::File(PathBuf::from(path))
    }
}

impl From<&Path> for Origin {
    fn from(path: &Path) -> Self {
        Origin::File(path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit() -> CommitInfo {
        CommitInfo {
            id: "c0ffee".into(),
            author: "Ada <ada@example.com>".into(),
            time: 0,
            summary: "add".into(),
        }
    }

    #[test]
    fn origins_show_as_the_paths_reports_have_always_used() {
        let repo: RepoName = Arc::from(Path::new("a"));
        let blob = ObjectId::from_hex("3a6dfd3600773760cc7ebd268a88d4eb23e56547").unwrap();
        for (origin, shown) in [
            (Origin::File("./src/app.py".into()), "src/app.py"),
            (Origin::Stdin, "-"),
            (
                Origin::Index {
                    path: "x.py".into(),
                },
                "x.py",
            ),
            (
                Origin::Commit {
                    repo: None,
                    path: "x.py".into(),
                    commit: commit(),
                },
                "x.py",
            ),
            (
                Origin::Commit {
                    repo: Some(repo.clone()),
                    path: "x.py".into(),
                    commit: commit(),
                },
                "a/x.py",
            ),
            (
                Origin::CommitMessage {
                    repo: Some(repo.clone()),
                    commit: commit(),
                },
                "a/(commit message)",
            ),
            (
                Origin::TagMessage {
                    repo: None,
                    name: "v1.0".into(),
                    id: blob,
                },
                "(tag v1.0)",
            ),
            (
                Origin::Unreachable { repo, blob },
                "a@3a6dfd3600773760cc7ebd268a88d4eb23e56547",
            ),
        ] {
            assert_eq!(origin.to_string(), shown);
        }
    }
}
