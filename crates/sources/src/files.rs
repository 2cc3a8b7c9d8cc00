//! Files and directory trees: a parallel walk (the `ignore` crate's walker, which honours
//! `.gitignore` and friends) that reads each file into a per-thread buffer.

use std::collections::HashSet;
use std::fs::File;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ignore::WalkState;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::{
    BINARY_PROBE_LEN, Blob, DEFAULT_MAX_FILE_SIZE, ExcludeError, SkipReason, Skipped, WalkStats,
    is_binary,
};

/// Builds a [`FileSource`].
#[derive(Debug, Clone)]
pub struct FileSourceBuilder {
    paths: Vec<PathBuf>,
    honor_ignore_files: bool,
    max_file_size: u64,
    threads: usize,
    /// Globs, each with the directory it is relative to (`None`: each walked root).
    excludes: Vec<(Option<PathBuf>, String)>,
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

    /// Excludes paths matching a gitignore-style glob (`vendor/**`, `*.min.js`), relative to each
    /// walked directory (the command line's `--exclude`).
    pub fn exclude(mut self, glob: impl Into<String>) -> Self {
        self.excludes.push((None, glob.into()));
        self
    }

    /// Excludes paths matching a gitignore-style glob relative to `base`, wherever the walk starts:
    /// a config file's globs are written from its own directory, as in a `.gitignore`, and keep
    /// their meaning when a scan starts in a subdirectory or names one.
    pub fn exclude_under(mut self, base: impl Into<PathBuf>, glob: impl Into<String>) -> Self {
        self.excludes.push((Some(base.into()), glob.into()));
        self
    }

    /// Builds the source, checking the exclude globs.
    pub fn build(self) -> Result<FileSource, ExcludeError> {
        let excludes = Excludes::new(&self.excludes)?;
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

/// Gitignore-style exclude globs, each relative either to the scanned root (the command line's
/// `--exclude`) or to a base directory given with it (a config file's directory).
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    /// Each set of globs with its base directory (canonical; `None`: the scanned root).
    sets: Vec<(Option<PathBuf>, Gitignore)>,
}

impl Excludes {
    /// Compiles `(base, glob)` pairs; a base must exist (it is resolved to its canonical form).
    pub fn new(globs: &[(Option<PathBuf>, String)]) -> Result<Excludes, ExcludeError> {
        let mut groups: Vec<(Option<PathBuf>, Vec<&str>)> = Vec::new();
        for (base, glob) in globs {
            let base = match base {
                None => None,
                Some(dir) => {
                    Some(
                        std::fs::canonicalize(dir).map_err(|e| ExcludeError::Exclude {
                            pattern: glob.clone(),
                            message: format!("cannot resolve `{}`: {e}", dir.display()),
                        })?,
                    )
                }
            };
            match groups.iter_mut().find(|(b, _)| *b == base) {
                Some((_, globs)) => globs.push(glob),
                None => groups.push((base, vec![glob])),
            }
        }
        let mut sets = Vec::new();
        for (base, globs) in groups {
            let mut builder = GitignoreBuilder::new("");
            for glob in &globs {
                builder
                    .add_line(None, glob)
                    .map_err(|e| ExcludeError::Exclude {
                        pattern: (*glob).to_owned(),
                        message: e.to_string(),
                    })?;
            }
            let set = builder.build().map_err(|e| ExcludeError::Exclude {
                pattern: globs.join(", "),
                message: e.to_string(),
            })?;
            sets.push((base, set));
        }
        Ok(Excludes { sets })
    }

    /// Whether there are no globs.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Whether `relative`, a path under the scanned root whose canonical form is
    /// `canonical_root`, is excluded (it, or a directory above it, matches a glob). A glob with a
    /// base applies only to paths under that base.
    pub fn excludes(&self, canonical_root: &Path, relative: &Path, is_dir: bool) -> bool {
        if relative.as_os_str().is_empty() {
            return false;
        }
        self.sets.iter().any(|(base, set)| match base {
            None => set
                .matched_path_or_any_parents(relative, is_dir)
                .is_ignore(),
            Some(base) => {
                let absolute = canonical_root.join(relative);
                match absolute.strip_prefix(base) {
                    Ok(path) if !path.as_os_str().is_empty() => {
                        set.matched_path_or_any_parents(path, is_dir).is_ignore()
                    }
                    _ => false,
                }
            }
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
    excludes: Excludes,
}

/// Counters shared by the walker threads.
#[derive(Default)]
struct Tally {
    files: AtomicU64,
    bytes: AtomicU64,
    binary: AtomicU64,
    skipped: Mutex<Vec<Skipped>>,
    repositories: Mutex<Vec<PathBuf>>,
}

impl Tally {
    fn skip(&self, path: &Path, reason: SkipReason) {
        if reason == SkipReason::Binary {
            self.binary.fetch_add(1, Ordering::Relaxed);
        }
        let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        skipped.push(Skipped {
            place: path.into(),
            reason,
        });
    }

    fn into_stats(self) -> WalkStats {
        let mut skipped = self.skipped.into_inner().unwrap_or_else(|p| p.into_inner());
        skipped.sort_by(|a, b| a.place.cmp(&b.place));
        let mut repositories = self
            .repositories
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        repositories.sort();
        repositories.dedup();
        WalkStats {
            files: self.files.into_inner(),
            bytes: self.bytes.into_inner(),
            binary: self.binary.into_inner(),
            skipped,
            repositories,
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
                Ok(meta) if meta.is_file() => self.read_and_visit(path, &mut buf, &tally, &visit),
                // Opening a FIFO blocks until a writer comes, and a device may never end.
                Ok(meta) => tally.skip(
                    path,
                    SkipReason::NotAFile {
                        kind: special_kind(&meta.file_type()),
                        explicit: true,
                    },
                ),
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
        // Each root with its canonical form, to place walked paths under an exclude's base.
        let roots: Vec<(PathBuf, PathBuf)> = std::iter::once(first.to_path_buf())
            .chain(rest.iter().cloned())
            .map(|root| {
                let canonical = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
                (root, canonical)
            })
            .collect();
        let canonical_roots: Vec<PathBuf> = roots
            .iter()
            .map(|(_, canonical)| canonical.clone())
            .collect();
        let excludes = self.excludes.clone();
        let git_seen = Arc::new(AtomicBool::new(false));
        let saw_git = Arc::clone(&git_seen);
        let repositories = Arc::new(Mutex::new(Vec::new()));
        let found_repos = Arc::clone(&repositories);
        let keep = move |e: &ignore::DirEntry| {
            if e.file_name() == ".git" {
                saw_git.store(true, Ordering::Relaxed);
                // A clone inside a scanned directory: its history is not read by a walk.
                if e.depth() > 1
                    && let Some(repo) = e.path().parent()
                {
                    found_repos
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(repo.to_path_buf());
                }
                return false;
            }
            if excludes.is_empty() {
                return true;
            }
            let is_dir = e.file_type().is_some_and(|t| t.is_dir());
            let Some((canonical_root, relative)) = roots
                .iter()
                .find_map(|(root, canonical)| Some((canonical, e.path().strip_prefix(root).ok()?)))
            else {
                return true;
            };
            !excludes.excludes(canonical_root, relative, is_dir)
        };
        builder.filter_entry(keep.clone());
        let seen = Mutex::new(HashSet::new());
        let rules_seen = AtomicBool::new(false);
        let canonical_roots = &canonical_roots;
        builder.build_parallel().run(|| {
            let mut buf = Vec::new();
            let mut seen = SeenPaths::new(&seen, &rules_seen, self.honor_ignore_files);
            Box::new(move |entry| {
                match entry {
                    Ok(entry) => {
                        seen.insert(entry.path());
                        let Some(kind) = entry.file_type() else {
                            return WalkState::Continue;
                        };
                        if kind.is_file() {
                            self.read_and_visit(entry.path(), &mut buf, tally, visit);
                        } else if kind.is_symlink() {
                            skip_symlink(entry.path(), canonical_roots, tally);
                        } else if !kind.is_dir() {
                            tally.skip(
                                entry.path(),
                                SkipReason::NotAFile {
                                    kind: special_kind(&kind),
                                    explicit: false,
                                },
                            );
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
        tally
            .repositories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(&mut repositories.lock().unwrap_or_else(|p| p.into_inner()));
        // The second walk costs about a plain directory walk; skip it when no ignore rule can
        // apply: no ignore file or git directory met in the walk or above its roots, and no
        // global gitignore.
        let may_ignore = || {
            rules_seen.load(Ordering::Relaxed)
                || git_seen.load(Ordering::Relaxed)
                || ignore_rules_above(first, rest)
        };
        if self.honor_ignore_files && may_ignore() {
            let seen = seen.into_inner().unwrap_or_else(|p| p.into_inner());
            for path in ignored_paths(first, rest, keep, seen) {
                tally.skip(&path, SkipReason::Ignored);
            }
        }
    }

    fn read_and_visit<F>(&self, path: &Path, buf: &mut Vec<u8>, tally: &Tally, visit: &F)
    where
        F: Fn(Blob<'_>) + Sync,
    {
        buf.clear();
        let read = File::open(path).and_then(|file| self.read_text(file, buf));
        match read {
            Ok(ReadOutcome::TooLarge(size)) => tally.skip(
                path,
                SkipReason::TooLarge {
                    size,
                    limit: self.max_file_size,
                },
            ),
            Ok(ReadOutcome::Binary) => tally.skip(path, SkipReason::Binary),
            Ok(ReadOutcome::Text) => {
                tally.files.fetch_add(1, Ordering::Relaxed);
                tally.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
                visit(Blob { path, data: buf });
            }
            Err(e) => tally.skip(path, SkipReason::Unreadable(e.to_string())),
        }
    }

    /// Reads a file's text into `buf`: its first block decides whether it is binary before the
    /// rest is read (a 2 GB file of NULs costs 8 KiB), and UTF-16 with a byte-order mark is
    /// decoded to UTF-8, so that its keys are found.
    fn read_text(&self, file: File, buf: &mut Vec<u8>) -> std::io::Result<ReadOutcome> {
        let size = file.metadata()?.len();
        if size > self.max_file_size {
            return Ok(ReadOutcome::TooLarge(size));
        }
        // One extra byte detects a file that grew past the limit after the size check.
        let mut file = file.take(self.max_file_size.saturating_add(1));
        (&mut file).take(BINARY_PROBE_LEN as u64).read_to_end(buf)?;
        let utf16 = utf16_order(buf);
        if utf16.is_none() && is_binary(buf) {
            return Ok(ReadOutcome::Binary);
        }
        file.read_to_end(buf)?;
        if buf.len() as u64 > self.max_file_size {
            return Ok(ReadOutcome::TooLarge(buf.len() as u64));
        }
        if let Some(order) = utf16 {
            let text = decode_utf16(&buf[2..], order);
            buf.clear();
            buf.extend_from_slice(text.as_bytes());
        }
        Ok(ReadOutcome::Text)
    }
}

/// What reading a file gave.
enum ReadOutcome {
    /// Text, in the buffer.
    Text,
    /// Binary content: only its first block was read.
    Binary,
    /// Larger than the limit: this many bytes at least.
    TooLarge(u64),
}

/// UTF-16 byte order, from a byte-order mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Utf16Order {
    Little,
    Big,
}

fn utf16_order(data: &[u8]) -> Option<Utf16Order> {
    match data {
        [0xFF, 0xFE, 0, 0, ..] => None, // UTF-32 LE: not decoded.
        [0xFF, 0xFE, ..] => Some(Utf16Order::Little),
        [0xFE, 0xFF, ..] => Some(Utf16Order::Big),
        _ => None,
    }
}

/// UTF-16 text as UTF-8; unpaired surrogates and an odd last byte become U+FFFD.
fn decode_utf16(data: &[u8], order: Utf16Order) -> String {
    let units = data.chunks(2).map(|pair| match (pair, order) {
        ([a, b], Utf16Order::Little) => u16::from_le_bytes([*a, *b]),
        ([a, b], Utf16Order::Big) => u16::from_be_bytes([*a, *b]),
        _ => 0xFFFD,
    });
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// What a path that is neither a file, a directory nor a symlink is.
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// A symlink met in a walk is not followed. One that is broken, or that points outside every
/// scanned tree, is listed, so that what it points to is not lost without a word; one that
/// points inside is scanned where its target is.
fn skip_symlink(path: &Path, canonical_roots: &[PathBuf], tally: &Tally) {
    match std::fs::canonicalize(path) {
        Err(_) => tally.skip(path, SkipReason::BrokenSymlink { explicit: false }),
        Ok(target) if !canonical_roots.iter().any(|root| target.starts_with(root)) => {
            tally.skip(path, SkipReason::SymlinkOutsideTree);
        }
        Ok(_) => {}
    }
}

/// Hashes of the paths one walker thread was given, merged into the shared set when the thread's
/// visitor is dropped, so the threads do not take a lock per entry.
struct SeenPaths<'a> {
    local: Vec<u64>,
    shared: &'a Mutex<HashSet<u64>>,
    /// Set when the walk yields a `.gitignore` or `.ignore` file.
    rules_seen: &'a AtomicBool,
    enabled: bool,
}

impl<'a> SeenPaths<'a> {
    fn new(shared: &'a Mutex<HashSet<u64>>, rules_seen: &'a AtomicBool, enabled: bool) -> Self {
        SeenPaths {
            local: Vec::new(),
            shared,
            rules_seen,
            enabled,
        }
    }

    fn insert(&mut self, path: &Path) {
        if self.enabled {
            self.local.push(path_hash(path));
            if path
                .file_name()
                .is_some_and(|n| n == ".gitignore" || n == ".ignore")
            {
                self.rules_seen.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Whether ignore rules can reach the walk from outside it: an ignore file or a git directory
/// in a root or above it, or a global gitignore with rules.
fn ignore_rules_above(first: &Path, rest: &[PathBuf]) -> bool {
    let above = std::iter::once(first)
        .chain(rest.iter().map(PathBuf::as_path))
        .any(|root| {
            let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
            root.ancestors().any(|dir| {
                [".gitignore", ".ignore", ".git"]
                    .iter()
                    .any(|name| dir.join(name).exists())
            })
        });
    above || Gitignore::global().0.num_ignores() > 0
}

impl Drop for SeenPaths<'_> {
    fn drop(&mut self) {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.extend(self.local.drain(..));
    }
}

fn path_hash(path: &Path) -> u64 {
    let mut hasher = DefaultHasher::new();
    path.hash(&mut hasher);
    hasher.finish()
}

/// The topmost paths that ignore files kept out of a walk whose yielded paths hash to `seen`: a
/// second walk that honours no ignore file and stops at every entry the first did not yield, so
/// an ignored directory counts once and is not descended. It reads directories, never files.
fn ignored_paths<K>(first: &Path, rest: &[PathBuf], keep: K, seen: HashSet<u64>) -> Vec<PathBuf>
where
    K: Fn(&ignore::DirEntry) -> bool + Send + Sync + 'static,
{
    let ignored = Arc::new(Mutex::new(Vec::new()));
    let found = Arc::clone(&ignored);
    let mut builder = ignore::WalkBuilder::new(first);
    for dir in rest {
        builder.add(dir);
    }
    builder.standard_filters(false).filter_entry(move |e| {
        if !keep(e) {
            return false;
        }
        if seen.contains(&path_hash(e.path())) {
            return true;
        }
        found
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.path().to_path_buf());
        false
    });
    builder.build().for_each(drop);
    let mut ignored = std::mem::take(&mut *ignored.lock().unwrap_or_else(|p| p.into_inner()));
    ignored.sort();
    ignored
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
    use crate::SkippedPlace;

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
    fn ignored_paths_are_counted_once_each_without_descending() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), ".env\ntarget/\n").unwrap();
        std::fs::write(root.join(".env"), "A=1").unwrap();
        std::fs::write(root.join("app.py"), "x").unwrap();
        std::fs::create_dir_all(root.join("target/debug")).unwrap();
        std::fs::write(root.join("target/debug/a.txt"), "x").unwrap();
        std::fs::write(root.join("target/debug/b.txt"), "x").unwrap();
        let (seen, stats) = collect(&FileSource::builder().path(root).build().unwrap());
        assert_eq!(seen, vec![root.join(".gitignore"), root.join("app.py")]);
        let ignored: Vec<_> = stats
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::Ignored)
            .map(|s| s.place.clone())
            .collect();
        assert_eq!(
            ignored,
            vec![
                SkippedPlace::Path(root.join(".env")),
                SkippedPlace::Path(root.join("target"))
            ]
        );
        assert!(!stats.has_failures());

        let source = FileSource::builder()
            .path(root)
            .honor_ignore_files(false)
            .build()
            .unwrap();
        let (seen, stats) = collect(&source);
        assert_eq!(seen.len(), 5);
        assert!(stats.skipped.is_empty());

        // Rules from above the scanned directory count too.
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/.env"), "A=1").unwrap();
        std::fs::write(root.join("sub/app.py"), "x").unwrap();
        let (seen, stats) = collect(
            &FileSource::builder()
                .path(root.join("sub"))
                .build()
                .unwrap(),
        );
        assert_eq!(seen, vec![root.join("sub/app.py")]);
        let skipped: Vec<_> = stats.skipped.iter().map(|s| &s.place).collect();
        assert_eq!(skipped, vec![&SkippedPlace::Path(root.join("sub/.env"))]);
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

    /// Runs a walk on another thread, failing (rather than hanging the test run) if it does not
    /// end within a few seconds.
    fn collect_within(source: FileSource) -> (Vec<(PathBuf, Vec<u8>)>, WalkStats) {
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let seen = Mutex::new(Vec::new());
            let stats = source.for_each(|blob| {
                seen.lock()
                    .unwrap()
                    .push((blob.path.to_path_buf(), blob.data.to_vec()))
            });
            let _ = send.send((seen.into_inner().unwrap(), stats));
        });
        receive
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the walk ends")
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Issue #19: a FIFO named on the command line blocked the scan forever; one inside a tree
    /// was skipped without a word.
    #[test]
    fn fifos_are_never_opened_and_always_named() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        mkfifo(&fifo);
        std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
        let (_, stats) = collect_within(FileSource::builder().path(&fifo).build().unwrap());
        assert_eq!(
            stats.skipped[0].reason,
            SkipReason::NotAFile {
                kind: "FIFO",
                explicit: true
            }
        );
        assert!(stats.has_failures());
        let (seen, stats) = collect_within(FileSource::builder().path(dir.path()).build().unwrap());
        assert_eq!(seen.len(), 1);
        assert_eq!(stats.skipped.len(), 1, "{:?}", stats.skipped);
        assert_eq!(stats.skipped[0].place, SkippedPlace::Path(fifo));
        assert!(!stats.has_failures());
    }

    /// Issue #19: a symlink out of the walked tree was neither followed nor listed.
    #[test]
    fn symlinks_out_of_the_tree_are_named() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.env"), "K=1").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.env"), dir.path().join("out"))
            .unwrap();
        std::os::unix::fs::symlink(dir.path().join("a.txt"), dir.path().join("in")).unwrap();
        let (seen, stats) = collect_within(FileSource::builder().path(dir.path()).build().unwrap());
        assert_eq!(seen.len(), 1);
        assert_eq!(stats.skipped.len(), 1, "{:?}", stats.skipped);
        assert_eq!(
            stats.skipped[0].place,
            SkippedPlace::Path(dir.path().join("out"))
        );
        assert_eq!(stats.skipped[0].reason, SkipReason::SymlinkOutsideTree);
        assert!(!stats.has_failures());
    }

    /// Issue #19: UTF-16 text with a byte-order mark was called binary and skipped.
    #[test]
    fn utf16_with_a_bom_is_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let text = "KEY=\"demo_q8Zr3LwX0pVt7KcN2bYh5MfJ\" é\n";
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        std::fs::write(dir.path().join("le.txt"), le).unwrap();
        std::fs::write(dir.path().join("be.txt"), be).unwrap();
        let (seen, stats) = collect_within(FileSource::builder().path(dir.path()).build().unwrap());
        assert_eq!(stats.binary, 0);
        assert_eq!(seen.len(), 2);
        for (_, data) in seen {
            assert_eq!(data, text.as_bytes());
        }
    }

    /// Issue #19: the largest limit (`--max-file-size 18446744073709551615`) wrapped to a limit
    /// of nothing and every file was read as empty; a huge file of NULs is called binary on its
    /// first block, not read whole.
    #[test]
    fn the_largest_limit_reads_files_and_binary_is_decided_on_the_first_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
        let zeros = File::create(dir.path().join("zeros.bin")).unwrap();
        zeros.set_len(1 << 40).unwrap();
        let source = FileSource::builder()
            .path(dir.path())
            .max_file_size(u64::MAX)
            .build()
            .unwrap();
        let (seen, stats) = collect_within(source);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1, b"hello");
        assert_eq!(stats.binary, 1);
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

    /// A config file's globs are relative to its directory: they hold when the scan starts in a
    /// subdirectory, and do not reach outside that directory.
    #[test]
    fn excludes_under_a_base_hold_from_any_root() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        for file in [
            "repo/src/gen/a.py",
            "repo/src/b.py",
            "repo/gen/c.py",
            "other/src/gen/d.py",
        ] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        let scan = |root: PathBuf| {
            let source = FileSource::builder()
                .path(root)
                .exclude_under(&repo, "src/gen/**")
                .build()
                .unwrap();
            collect(&source).0
        };
        assert_eq!(scan(repo.join("src")), vec![repo.join("src/b.py")]);
        assert_eq!(
            scan(repo.clone()),
            vec![repo.join("gen/c.py"), repo.join("src/b.py")]
        );
        // A root outside the base: its own `src/gen` is not the config's.
        assert_eq!(
            scan(dir.path().join("other")),
            vec![dir.path().join("other/src/gen/d.py")]
        );
        // The base must exist.
        assert!(
            FileSource::builder()
                .exclude_under(dir.path().join("missing"), "x")
                .build()
                .is_err()
        );
    }
}
