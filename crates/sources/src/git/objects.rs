//! Enumerating the object database: each pack traversed along its delta tree, then the loose
//! objects, every object once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use gix::odb::pack;

use super::tree_index::{self, TreeIndex};
use super::{
    CommitRecord, GitError, GitRepo, History, ObjectId, SeenObjects, SweepOptions, commit_info,
};
use crate::{SkipReason, Skipped, SkippedPlace};

/// One object handed to a sweep's visitor.
#[derive(Debug, Clone, Copy)]
pub enum GitObject<'a> {
    /// A blob's whole content (binary and oversized blobs are not handed over).
    Blob {
        /// Its id.
        id: ObjectId,
        /// Its bytes.
        data: &'a [u8],
    },
    /// A commit's full message.
    CommitMessage {
        /// The commit's id ([`History::commit`] has its author and time).
        id: ObjectId,
        /// The raw message.
        message: &'a [u8],
    },
    /// An annotated tag's message.
    TagMessage {
        /// The tag object's id.
        id: ObjectId,
        /// The tag's name (`v1.0`).
        name: &'a [u8],
        /// The raw message.
        message: &'a [u8],
    },
}

/// Counters and records shared by the traversal threads.
#[derive(Default)]
struct Tally {
    blobs: AtomicU64,
    bytes: AtomicU64,
    binary: AtomicU64,
    objects: AtomicU64,
    skipped: Mutex<Vec<Skipped>>,
    commits: Mutex<Vec<(gix::ObjectId, CommitRecord)>>,
    trees: Mutex<TreeIndex>,
    /// Every object a commit, tree or tag names: each must be in the database, or the sweep
    /// missed content and says so.
    referenced: Mutex<gix::hashtable::HashSet>,
    read: Mutex<SeenObjects>,
    already_seen: AtomicU64,
    /// Commits read again for their messages only.
    revisited: Mutex<Vec<(gix::ObjectId, crate::CommitInfo)>>,
}

impl Tally {
    fn lock_read(&self) -> std::sync::MutexGuard<'_, SeenObjects> {
        self.read.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A pack's file name, `pack-<hash>.pack`, from its index's path.
fn pack_name(idx_path: &Path) -> String {
    idx_path
        .with_extension("pack")
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Hands over objects an earlier sweep read, by id: those that held findings.
fn revisit<F>(repo: &gix::Repository, ids: &[ObjectId], handler: &Handler<'_, F>)
where
    F: Fn(GitObject<'_>) + Sync,
{
    for id in ids {
        // Gone since (pruned after a history rewrite): nothing left to report there.
        let Ok(object) = repo.find_object(id.0) else {
            continue;
        };
        if object.kind != gix::objs::Kind::Commit {
            handler.handle(id.0, object.kind, &object.data);
            continue;
        }
        // Only the message: recorded for attribution, an old commit read alone would seem to
        // introduce its whole tree.
        if let Ok(commit) = gix::objs::CommitRef::from_bytes(&object.data, handler.hash) {
            (handler.visit)(GitObject::CommitMessage {
                id: *id,
                message: commit.message,
            });
            handler
                .tally
                .revisited
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((id.0, commit_info(id.0, &commit)));
        }
    }
}

impl Tally {
    fn skip(&self, place: impl Into<SkippedPlace>, reason: SkipReason) {
        if reason == SkipReason::Binary {
            self.binary.fetch_add(1, Ordering::Relaxed);
        }
        self.skipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Skipped {
                place: place.into(),
                reason,
            });
    }
}

/// Handles one decoded object, wherever it came from.
struct Handler<'a, F> {
    repo: &'a GitRepo,
    options: &'a SweepOptions,
    tally: &'a Tally,
    visit: &'a F,
    hash: gix::hash::Kind,
}

impl<F> Handler<'_, F>
where
    F: Fn(GitObject<'_>) + Sync,
{
    fn handle(&self, id: gix::ObjectId, kind: gix::objs::Kind, data: &[u8]) {
        self.tally.objects.fetch_add(1, Ordering::Relaxed);
        if let Some(progress) = &self.options.progress {
            progress.fetch_add(1, Ordering::Relaxed);
        }
        match kind {
            gix::objs::Kind::Blob => self.blob(id, data),
            gix::objs::Kind::Commit => self.commit(id, data),
            gix::objs::Kind::Tree => self.tree(id, data),
            gix::objs::Kind::Tag => self.tag(id, data),
        }
    }

    fn blob(&self, id: gix::ObjectId, data: &[u8]) {
        let size = data.len() as u64;
        if size > self.options.max_blob_size {
            self.tally.skip(
                self.object_path(id),
                SkipReason::TooLarge {
                    size,
                    limit: self.options.max_blob_size,
                },
            );
        } else if crate::is_binary(data) {
            self.tally.binary.fetch_add(1, Ordering::Relaxed);
        } else {
            self.tally.blobs.fetch_add(1, Ordering::Relaxed);
            self.tally.bytes.fetch_add(size, Ordering::Relaxed);
            (self.visit)(GitObject::Blob {
                id: ObjectId(id),
                data,
            });
        }
    }

    fn tree(&self, id: gix::ObjectId, data: &[u8]) {
        let Some(parsed) = tree_index::parse(data, self.hash) else {
            // The fast parser refuses unusual modes too; only what git's own parser refuses
            // is corrupt, and a corrupt tree hides the paths (and maybe blobs) beneath it.
            let corrupt = gix::objs::TreeRefIter::from_bytes(data, self.hash).find_map(Result::err);
            if let Some(e) = corrupt {
                self.tally.skip(
                    self.object_path(id),
                    SkipReason::Unreadable(format!("corrupt tree: {e}")),
                );
            } else {
                self.refer(
                    gix::objs::TreeRefIter::from_bytes(data, self.hash).filter_map(|e| {
                        e.ok()
                            .filter(|e| !e.mode.is_commit())
                            .map(|e| e.oid.to_owned())
                    }),
                );
            }
            return;
        };
        self.refer(parsed.references().copied());
        self.tally
            .trees
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, parsed);
    }

    /// Records objects that an object names (a submodule's commit is another repository's).
    fn refer(&self, ids: impl IntoIterator<Item = gix::ObjectId>) {
        self.tally
            .referenced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ids);
    }

    fn commit(&self, id: gix::ObjectId, data: &[u8]) {
        match gix::objs::CommitRef::from_bytes(data, self.hash) {
            Ok(commit) => {
                let record = CommitRecord {
                    info: commit_info(id, &commit),
                    tree: commit.tree(),
                    parents: commit.parents().collect(),
                };
                self.refer([record.tree]);
                (self.visit)(GitObject::CommitMessage {
                    id: ObjectId(id),
                    message: commit.message,
                });
                self.tally
                    .commits
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((id, record));
            }
            Err(e) => self.tally.skip(
                self.object_path(id),
                SkipReason::Unreadable(format!("corrupt commit: {e}")),
            ),
        }
    }

    fn tag(&self, id: gix::ObjectId, data: &[u8]) {
        match gix::objs::TagRef::from_bytes(data, self.hash) {
            Ok(tag) => {
                self.refer([tag.target()]);
                (self.visit)(GitObject::TagMessage {
                    id: ObjectId(id),
                    name: tag.name,
                    message: tag.message,
                });
            }
            Err(e) => self.tally.skip(
                self.object_path(id),
                SkipReason::Unreadable(format!("corrupt tag: {e}")),
            ),
        }
    }

    fn object_path(&self, id: gix::ObjectId) -> SkippedPlace {
        SkippedPlace::Object {
            repo: std::sync::Arc::from(self.repo.path.as_path()),
            id: ObjectId(id),
        }
    }
}

pub(super) fn sweep<F>(
    repo: &GitRepo,
    options: &SweepOptions,
    visit: &F,
) -> Result<History, GitError>
where
    F: Fn(GitObject<'_>) + Sync,
{
    let local = repo.repo.to_thread_local();
    let hash = local.object_hash();
    let tally = Tally::default();
    let handler = Handler {
        repo,
        options,
        tally: &tally,
        visit,
        hash,
    };
    let dirs = object_dirs(repo)?;
    let mut packs: Vec<pack::index::File> = Vec::new();
    let mut promisor = is_partial_clone(&local);
    for dir in &dirs {
        let files = pack_files(dir)?;
        promisor |= files.promisor;
        for pack in files.without_index {
            tally.skip(
                pack,
                SkipReason::Unreadable(
                    "pack has no index (.idx), so its objects cannot be read \
                     (`git index-pack` rebuilds it)"
                        .into(),
                ),
            );
        }
        for idx_path in files.indexes {
            let name = pack_name(&idx_path);
            if options
                .seen
                .as_ref()
                .is_some_and(|s| s.packs.contains(&name))
            {
                // Read by an earlier sweep: its index still answers what the database holds.
                if let Ok(index) = pack::index::File::at(&idx_path, hash) {
                    tally
                        .already_seen
                        .fetch_add(u64::from(index.num_objects()), Ordering::Relaxed);
                    tally.lock_read().packs.insert(name);
                    packs.push(index);
                    continue;
                }
            }
            if let Some(index) = sweep_pack(&idx_path, &packs, &handler, options) {
                packs.push(index);
            }
        }
    }
    let mut loose_ids = gix::hashtable::HashSet::default();
    for dir in &dirs {
        loose(repo, dir, hash, &packs, &mut loose_ids, &handler);
    }
    revisit(&local, &options.revisit, &handler);
    let present = |id: &gix::ObjectId| {
        loose_ids.contains(id) || packs.iter().any(|idx| idx.lookup(id).is_some())
    };
    let missing = missing_objects(&tally, present);
    report_missing(repo, &tally, missing, promisor);
    Ok(tally.into_history())
}

/// The repository's object directory, then each alternate (`objects/info/alternates`, as a
/// `git clone --shared` writes), whose objects the repository's history is made of too.
fn object_dirs(repo: &GitRepo) -> Result<Vec<PathBuf>, GitError> {
    let own = repo.repo.objects_dir().to_path_buf();
    let cwd = std::env::current_dir().unwrap_or_default();
    let alternates = gix::odb::alternate::resolve(own.clone(), &cwd)
        .map_err(|e| super::read_error(format!("the alternates of `{}`", own.display()), e))?;
    Ok(std::iter::once(own).chain(alternates).collect())
}

/// Whether the repository is a partial clone: a promisor remote may hold objects it never
/// fetched. Git names it in `extensions.partialClone`, or (since git 2.x writes no extension)
/// marks the remote `remote.NAME.promisor`.
fn is_partial_clone(repo: &gix::Repository) -> bool {
    let config = repo.config_snapshot();
    config.string("extensions.partialClone").is_some()
        || repo.remote_names().iter().any(|name| {
            config
                .boolean(format!("remote.{name}.promisor").as_str())
                .unwrap_or(false)
        })
}

/// The pack files of one object directory.
#[derive(Default)]
struct PackFiles {
    /// The `.idx` files, in name order.
    indexes: Vec<PathBuf>,
    /// `.pack` files with no `.idx`: git cannot read them either, but their objects are lost
    /// to the sweep.
    without_index: Vec<PathBuf>,
    /// Whether a pack came from a promisor remote (a partial clone).
    promisor: bool,
}

fn pack_files(objects_dir: &Path) -> Result<PackFiles, GitError> {
    let dir = objects_dir.join("pack");
    let paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(super::read_error(dir.display().to_string(), e)),
    };
    let has = |p: &Path, ext: &str| p.extension().is_some_and(|x| x == ext);
    let mut files = PackFiles {
        promisor: paths.iter().any(|p| has(p, "promisor")),
        ..PackFiles::default()
    };
    for path in &paths {
        if has(path, "idx") {
            files.indexes.push(path.clone());
        } else if has(path, "pack") && !path.with_extension("idx").exists() {
            files.without_index.push(path.clone());
        }
    }
    files.indexes.sort();
    files.without_index.sort();
    Ok(files)
}

/// The objects that some object names but that no pack or loose object holds, in id order.
fn missing_objects(tally: &Tally, present: impl Fn(&gix::ObjectId) -> bool) -> Vec<gix::ObjectId> {
    let referenced = tally.referenced.lock().unwrap_or_else(|p| p.into_inner());
    let mut missing: Vec<gix::ObjectId> = referenced
        .iter()
        .filter(|id| !present(id))
        .copied()
        .collect();
    missing.sort();
    missing
}

/// How many missing objects are named one by one; beyond that, one entry counts them.
const MISSING_LISTED: usize = 20;

/// Records missing objects as failures: the content they hold was not scanned.
fn report_missing(repo: &GitRepo, tally: &Tally, missing: Vec<gix::ObjectId>, promisor: bool) {
    if missing.is_empty() {
        return;
    }
    if promisor {
        tally.skip(
            repo.path.clone(),
            SkipReason::Unreadable(format!(
                "a partial clone: {} objects its commits and trees name were never fetched, so \
                 the history is incomplete (clone it without --filter, or sweep it with \
                 `keyscope sweep --fetch-missing`, to sweep it whole)",
                missing.len()
            )),
        );
        return;
    }
    let more = missing.len().saturating_sub(MISSING_LISTED);
    for id in missing.into_iter().take(MISSING_LISTED) {
        tally.skip(
            SkippedPlace::Object {
                repo: std::sync::Arc::from(repo.path.as_path()),
                id: ObjectId(id),
            },
            SkipReason::Unreadable("missing from the object database, which names it".into()),
        );
    }
    if more > 0 {
        tally.skip(
            repo.path.clone(),
            SkipReason::Unreadable(format!(
                "{more} more objects are missing from the object database"
            )),
        );
    }
}

/// Hands every object of one pack, not already in an `earlier` pack, to the handler; returns
/// the pack's index, or `None` (the pack named as skipped) when it cannot be opened.
fn sweep_pack<F>(
    idx_path: &Path,
    earlier: &[pack::index::File],
    handler: &Handler<'_, F>,
    options: &SweepOptions,
) -> Option<pack::index::File>
where
    F: Fn(GitObject<'_>) + Sync,
{
    let bundle = match pack::Bundle::at(idx_path, handler.hash) {
        Ok(bundle) => bundle,
        Err(e) => {
            handler.tally.skip(
                idx_path.to_path_buf(),
                SkipReason::Unreadable(e.to_string()),
            );
            return None;
        }
    };
    let processor = |kind: gix::objs::Kind,
                     data: &[u8],
                     entry: &pack::index::Entry,
                     _: &dyn gix::Progress|
     -> gix::error::Result {
        // An object also in an earlier pack was handled there.
        if earlier.iter().all(|idx| idx.lookup(entry.oid).is_none()) {
            handler.handle(entry.oid, kind, data);
        }
        Ok(())
    };
    let traversal = bundle.index.traverse(
        &bundle.pack,
        &mut gix::progress::Discard,
        &AtomicBool::new(false),
        processor,
        pack::index::traverse::Options {
            traversal: pack::index::traverse::Algorithm::DeltaTreeLookup,
            thread_limit: (options.threads > 0).then_some(options.threads),
            check: pack::index::traverse::SafetyCheck::SkipFileAndObjectChecksumVerification,
            alloc_limit_bytes: None,
            make_pack_lookup_cache: || pack::cache::Never,
        },
    );
    match traversal {
        Ok(_) => {
            handler.tally.lock_read().packs.insert(pack_name(idx_path));
        }
        Err(e) => handler.tally.skip(
            bundle.pack.path().to_path_buf(),
            SkipReason::Unreadable(format!("pack could not be fully read: {e}")),
        ),
    }
    Some(bundle.index)
}

impl Tally {
    /// What the sweep found, as a [`History`].
    fn into_history(self) -> History {
        let commits: HashMap<gix::ObjectId, CommitRecord> = self
            .commits
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_iter()
            .collect();
        let mut skipped = self.skipped.into_inner().unwrap_or_else(|p| p.into_inner());
        skipped.sort_by(|a, b| a.place.cmp(&b.place));
        History {
            stats: crate::WalkStats {
                files: self.blobs.into_inner(),
                bytes: self.bytes.into_inner(),
                binary: self.binary.into_inner(),
                skipped,
                repositories: Vec::new(),
            },
            objects: self.objects.into_inner(),
            warnings: Vec::new(),
            read: self.read.into_inner().unwrap_or_else(|p| p.into_inner()),
            already_seen: self.already_seen.into_inner(),
            revisited: self
                .revisited
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .into_iter()
                .collect(),
            refs: Vec::new(),
            commits,
            trees: self.trees.into_inner().unwrap_or_else(|p| p.into_inner()),
        }
    }
}

/// Loose objects not also in a pack, read in parallel.
fn loose<F>(
    repo: &GitRepo,
    objects_dir: &std::path::Path,
    hash: gix::hash::Kind,
    packs: &[pack::index::File],
    seen: &mut gix::hashtable::HashSet,
    handler: &Handler<'_, F>,
) where
    F: Fn(GitObject<'_>) + Sync,
{
    use rayon::prelude::*;
    let store = gix::odb::loose::Store::at(objects_dir, hash);
    let known = handler.options.seen.as_deref();
    let mut ids = Vec::new();
    for id in store.iter() {
        match id {
            // An object also in a pack, or in an earlier object directory, was handled there.
            Ok(id) if packs.iter().all(|idx| idx.lookup(id).is_none()) && seen.insert(id) => {
                if known.is_some_and(|k| k.loose.contains(&ObjectId(id))) {
                    handler.tally.already_seen.fetch_add(1, Ordering::Relaxed);
                    handler.tally.lock_read().loose.insert(ObjectId(id));
                } else {
                    ids.push(id);
                }
            }
            Ok(_) => {}
            Err(e) => handler.tally.skip(
                objects_dir.to_path_buf(),
                SkipReason::Unreadable(e.to_string()),
            ),
        }
    }
    ids.par_iter()
        .for_each_init(Vec::new, |buf, &id| match store.try_find(&id, buf) {
            Ok(Some(object)) => {
                handler.handle(id, object.kind, object.data);
                handler.tally.lock_read().loose.insert(ObjectId(id));
            }
            Ok(None) => handler.tally.skip(
                loose_path(objects_dir, id),
                SkipReason::Unreadable("object vanished while reading".into()),
            ),
            Err(e) => handler.tally.skip(
                loose_path(objects_dir, id),
                SkipReason::Unreadable(format!(
                    "corrupt object {id} in {}: {e}",
                    repo.path.display()
                )),
            ),
        });
}

fn loose_path(objects_dir: &std::path::Path, id: gix::ObjectId) -> PathBuf {
    let hex = id.to_string();
    objects_dir.join(&hex[..2]).join(&hex[2..])
}
