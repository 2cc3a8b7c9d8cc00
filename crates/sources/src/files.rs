//! Files and directory trees: a parallel walk (the `ignore` crate's walker, which honours
//! `.gitignore` and friends) that reads each file into a per-thread buffer.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ignore::WalkState;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::{Blob, DEFAULT_MAX_FILE_SIZE, SkipReason, Skipped, SourceError, WalkStats, is_binary};

/// Builds a [`FileSource`].
#[derive(Debug, Clone)]
pub struct FileSourceBuilder {
    paths: Vec<PathBuf>,
    honor_ignore_files: bool,
    max_file_size: u64,
    threads: usize,
    excludes: Vec<String>,
}

impl Default for FileSourceBuilder {
    fn default() -> Self {
        FileSourceBuilder {
            paths: Vec::new(),
            honor_ignore_files: true,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            threads: 0,
            excludes: Vec::new(),
        }
    }
}

impl FileSourceBuilder {
    /// Adds a file or directory to scan.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.paths.push(path.into());
        self
    }

    /// Whether `.gitignore`, `.ignore` and git's exclude files are honoured (default: yes).
    pub fn honor_ignore_files(mut self, yes: bool) -> Self {
        self.honor_ignore_files = yes;
        self
    }

    /// Files larger than this are skipped and reported (default [`DEFAULT_MAX_FILE_SIZE`]).
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// Worker threads; `0` (the default) means one per core.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Excludes paths matching a gitignore-style glob (`vendor/**`, `*.min.js`).
    pub fn exclude(mut self, glob: impl Into<String>) -> Self {
        self.excludes.push(glob.into());
        self
    }

    /// Builds the source, checking the exclude globs.
    pub fn build(self) -> Result<FileSource, SourceError> {
        // Excludes are gitignore lines matched against paths relative to the walked root.
        let mut excludes = GitignoreBuilder::new("");
        for glob in &self.excludes {
            excludes
                .add_line(None, glob)
                .map_err(|e| SourceError::Exclude {
                    pattern: glob.clone(),
                    message: e.to_string(),
                })?;
        }
        let excludes = excludes.build().map_err(|e| SourceError::Exclude {
            pattern: self.excludes.join(", "),
            message: e.to_string(),
        })?;
        let paths = if self.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            self.paths.clone()
        };
        Ok(FileSource {
            paths,
            honor_ignore_files: self.honor_ignore_files,
            max_file_size: self.max_file_size,
            threads: self.threads,
            excludes,
        })
    }
}

/// Files and directory trees to scan.
#[derive(Debug, Clone)]
pub struct FileSource {
    paths: Vec<PathBuf>,
    honor_ignore_files: bool,
    max_file_size: u64,
    threads: usize,
    excludes: Gitignore,
}

/// Counters shared by the walker threads.
#[derive(Default)]
struct Tally {
    files: AtomicU64,
    bytes: AtomicU64,
    binary: AtomicU64,
    skipped: Mutex<Vec<Skipped>>,
}

impl Tally {
    fn skip(&self, path: &Path, reason: SkipReason) {
        if reason == SkipReason::Binary {
            self.binary.fetch_add(1, Ordering::Relaxed);
        }
        let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        skipped.push(Skipped {
            path: path.to_path_buf(),
            reason,
        });
    }

    fn into_stats(self) -> WalkStats {
        let mut skipped = self.skipped.into_inner().unwrap_or_else(|p| p.into_inner());
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        WalkStats {
            files: self.files.into_inner(),
            bytes: self.bytes.into_inner(),
            binary: self.binary.into_inner(),
            skipped,
        }
    }
}

impl FileSource {
    /// Starts building a source.
    pub fn builder() -> FileSourceBuilder {
        FileSourceBuilder::default()
    }

    /// Calls `visit` once for every readable, non-binary file, from several threads at once,
    /// and returns what was seen and skipped.
    pub fn for_each<F>(&self, visit: F) -> WalkStats
    where
        F: Fn(Blob<'_>) + Sync,
    {
        let tally = Tally::default();
        let mut dirs = Vec::new();
        let mut buf = Vec::new();
        for path in &self.paths {
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => dirs.push(path.clone()),
                Ok(_) => self.read_and_visit(path, &mut buf, &tally, &visit),
                Err(e) => {
                    let reason = match std::fs::symlink_metadata(path) {
                        Ok(_) => SkipReason::BrokenSymlink { explicit: true },
                        Err(_) if e.kind() == std::io::ErrorKind::NotFound => SkipReason::NotFound,
                        Err(_) => SkipReason::Unreadable(e.to_string()),
                    };
                    tally.skip(path, reason);
                }
            }
        }
        if let Some((first, rest)) = dirs.split_first() {
            self.walk(first, rest, &tally, &visit);
        }
        tally.into_stats()
    }

    fn walk<F>(&self, first: &Path, rest: &[PathBuf], tally: &Tally, visit: &F)
    where
        F: Fn(Blob<'_>) + Sync,
    {
        let mut builder = ignore::WalkBuilder::new(first);
        for dir in rest {
            builder.add(dir);
        }
        builder
            .standard_filters(self.honor_ignore_files)
            // Dotfiles (`.env`, `.npmrc`) are where keys live: never skip them for being hidden.
            .hidden(false)
            .require_git(false)
            .threads(self.threads);
        let roots: Vec<PathBuf> = std::iter::once(first.to_path_buf())
            .chain(rest.iter().cloned())
            .collect();
        let excludes = self.excludes.clone();
        builder.filter_entry(move |e| {
            if e.file_name() == ".git" {
                return false;
            }
            if excludes.is_empty() {
                return true;
            }
            let is_dir = e.file_type().is_some_and(|t| t.is_dir());
            let relative = roots
                .iter()
                .find_map(|root| e.path().strip_prefix(root).ok())
                .unwrap_or(e.path());
            relative.as_os_str().is_empty()
                || !excludes
                    .matched_path_or_any_parents(relative, is_dir)
                    .is_ignore()
        });
        builder.build_parallel().run(|| {
            let mut buf = Vec::new();
            Box::new(move |entry| {
                match entry {
                    Ok(entry) => {
                        let Some(kind) = entry.file_type() else {
                            return WalkState::Continue;
                        };
                        if kind.is_file() {
                            self.read_and_visit(entry.path(), &mut buf, tally, visit);
                        } else if kind.is_symlink() && std::fs::metadata(entry.path()).is_err() {
                            tally.skip(entry.path(), SkipReason::BrokenSymlink { explicit: false });
                        }
                    }
                    Err(err) => {
                        let path = error_path(&err).unwrap_or_else(|| PathBuf::from("."));
                        tally.skip(&path, SkipReason::Unreadable(io_message(&err)));
                    }
                }
                WalkState::Continue
            })
        });
    }

    fn read_and_visit<F>(&self, path: &Path, buf: &mut Vec<u8>, tally: &Tally, visit: &F)
    where
        F: Fn(Blob<'_>) + Sync,
    {
        buf.clear();
        let read = File::open(path).and_then(|file| {
            let size = file.metadata()?.len();
            if size > self.max_file_size {
                return Ok(Some(size));
            }
            // One extra byte detects a file that grew past the limit after the size check.
            file.take(self.max_file_size + 1).read_to_end(buf)?;
            Ok(None)
        });
        match read {
            Ok(Some(size)) => tally.skip(
                path,
                SkipReason::TooLarge {
                    size,
                    limit: self.max_file_size,
                },
            ),
            Ok(None) if buf.len() as u64 > self.max_file_size => tally.skip(
                path,
                SkipReason::TooLarge {
                    size: buf.len() as u64,
                    limit: self.max_file_size,
                },
            ),
            Ok(None) if is_binary(buf) => tally.skip(path, SkipReason::Binary),
            Ok(None) => {
                tally.files.fetch_add(1, Ordering::Relaxed);
                tally.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
                visit(Blob { path, data: buf });
            }
            Err(e) => tally.skip(path, SkipReason::Unreadable(e.to_string())),
        }
    }
}

fn error_path(err: &ignore::Error) -> Option<PathBuf> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        _ => None,
    }
}

fn io_message(err: &ignore::Error) -> String {
    match err {
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => io_message(err),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(source: &FileSource) -> (Vec<PathBuf>, WalkStats) {
        let seen = Mutex::new(Vec::new());
        let stats = source.for_each(|blob| seen.lock().unwrap().push(blob.path.to_path_buf()));
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        (seen, stats)
    }

    #[test]
    fn walks_dotfiles_honours_gitignore_and_skips_git_dir() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(".env"), "A=1").unwrap();
        std::fs::write(root.join(".gitignore"), "ignored.txt\n").unwrap();
        std::fs::write(root.join("ignored.txt"), "x").unwrap();
        std::fs::create_dir(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/config"), "x").unwrap();
        let (seen, stats) = collect(&FileSource::builder().path(root).build().unwrap());
        assert_eq!(seen, vec![root.join(".env"), root.join(".gitignore")]);
        assert!(!stats.has_failures());

        let source = FileSource::builder()
            .path(root)
            .honor_ignore_files(false)
            .build()
            .unwrap();
        let (seen, _) = collect(&source);
        assert!(seen.contains(&root.join("ignored.txt")));
        assert!(!seen.contains(&root.join(".git/config")));
    }

    #[test]
    fn binary_and_large_files_are_skipped_and_only_large_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blob.bin"), b"\x7fELF\0\0\x01").unwrap();
        let (_, stats) = collect(&FileSource::builder().path(dir.path()).build().unwrap());
        assert_eq!(stats.binary, 1);
        assert!(!stats.has_failures());

        std::fs::write(dir.path().join("big.txt"), vec![b'a'; 100]).unwrap();
        let source = FileSource::builder()
            .path(dir.path())
            .max_file_size(50)
            .build()
            .unwrap();
        let (seen, stats) = collect(&source);
        assert!(seen.is_empty());
        assert!(stats.has_failures());
        assert!(stats.skipped.iter().any(|s| matches!(
            s.reason,
            SkipReason::TooLarge {
                size: 100,
                limit: 50
            }
        )));
    }

    #[test]
    fn missing_and_broken_paths_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        let source = FileSource::builder()
            .path(dir.path().join("absent"))
            .path(&link)
            .build()
            .unwrap();
        let (_, stats) = collect(&source);
        let reasons: Vec<_> = stats.skipped.iter().map(|s| s.reason.clone()).collect();
        assert!(reasons.contains(&SkipReason::NotFound));
        assert!(reasons.contains(&SkipReason::BrokenSymlink { explicit: true }));
        assert!(stats.has_failures());

        // Inside a walked directory a dangling link is listed, but loses no content.
        let (_, stats) = collect(&FileSource::builder().path(dir.path()).build().unwrap());
        assert_eq!(
            stats.skipped[0].reason,
            SkipReason::BrokenSymlink { explicit: false }
        );
        assert!(!stats.has_failures());
    }

    #[test]
    fn excludes_apply_to_walked_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("vendor")).unwrap();
        std::fs::write(dir.path().join("vendor/a.js"), "x").unwrap();
        std::fs::write(dir.path().join("b.js"), "x").unwrap();
        let source = FileSource::builder()
            .path(dir.path())
            .exclude("vendor/**")
            .build()
            .unwrap();
        let (seen, _) = collect(&source);
        assert_eq!(seen, vec![dir.path().join("b.js")]);
    }
}
