//! Trees: what a commit introduces relative to its parents, the staged changes against HEAD,
//! and the blobs of a range of commits.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use rayon::prelude::*;

use super::{
    Attribution, CommitRecord, GitError, GitRepo, History, Introduction, ObjectId, RangeChanges,
    StagedChange, commit_info, read_error,
};
use crate::{CommitInfo, SkipReason, Skipped, SkippedPlace};

/// What a tree entry points at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Tree,
    Blob,
    /// Symlinks and submodules: no content of their own to scan.
    Other,
}

/// One entry of a decoded tree, borrowing its name from the tree's data.
struct Entry<'a> {
    name: &'a [u8],
    id: gix::ObjectId,
    kind: EntryKind,
}

fn load_tree(repo: &gix::Repository, id: gix::ObjectId) -> Result<Vec<u8>, GitError> {
    Ok(repo
        .find_object(id)
        .map_err(|e| read_error(format!("tree {id}"), e))?
        .detach()
        .data)
}

fn parse_tree<'a>(
    data: &'a [u8],
    id: gix::ObjectId,
    hash: gix::hash::Kind,
) -> Result<Vec<Entry<'a>>, GitError> {
    let mut entries = Vec::new();
    for entry in gix::objs::TreeRefIter::from_bytes(data, hash) {
        let entry = entry.map_err(|e| read_error(format!("tree {id}"), e))?;
        let kind = if entry.mode.is_tree() {
            EntryKind::Tree
        } else if entry.mode.is_blob() {
            EntryKind::Blob
        } else {
            EntryKind::Other
        };
        entries.push(Entry {
            name: entry.filename,
            id: entry.oid.to_owned(),
            kind,
        });
    }
    Ok(entries)
}

/// Git's tree order: names compared as if a tree's name ended in `/`.
fn tree_order(a: &Entry<'_>, b: &Entry<'_>) -> std::cmp::Ordering {
    let suffix = |e: &Entry<'_>| (e.kind == EntryKind::Tree).then_some(b'/');
    a.name
        .iter()
        .copied()
        .chain(suffix(a))
        .cmp(b.name.iter().copied().chain(suffix(b)))
}

/// The entry of a sorted tree with the same name and kind as `entry`, if any.
fn find_same<'a, 'b>(tree: &'b [Entry<'a>], entry: &Entry<'_>) -> Option<&'b Entry<'a>> {
    tree.binary_search_by(|probe| tree_order(probe, entry))
        .ok()
        .map(|i| &tree[i])
}

/// Which trees can hold a wanted blob: everything, for `range` and `staged`.
type MayHold<'a> = &'a dyn Fn(&gix::Repository, gix::ObjectId) -> bool;

/// Pushes every `(path, blob)` of `tree` that none of the `parents` trees has at the same path,
/// and that `wanted` accepts. Subtrees identical to a parent's are not read, nor those that
/// `may_hold` rules out.
fn introduced(
    repo: &gix::Repository,
    tree: gix::ObjectId,
    parents: &[gix::ObjectId],
    prefix: &mut Vec<u8>,
    wanted: &dyn Fn(&gix::oid) -> bool,
    may_hold: MayHold<'_>,
    out: &mut Vec<(String, gix::ObjectId)>,
) -> Result<(), GitError> {
    if parents.contains(&tree) || !may_hold(repo, tree) {
        return Ok(());
    }
    let hash = repo.object_hash();
    let data = load_tree(repo, tree)?;
    let entries = parse_tree(&data, tree, hash)?;
    let parent_data = parents
        .iter()
        .map(|&p| load_tree(repo, p).map(|d| (p, d)))
        .collect::<Result<Vec<_>, _>>()?;
    let parent_entries = parent_data
        .iter()
        .map(|(p, d)| parse_tree(d, *p, hash))
        .collect::<Result<Vec<_>, _>>()?;
    for entry in &entries {
        if entry.kind == EntryKind::Other {
            continue;
        }
        let same: Vec<&Entry<'_>> = parent_entries
            .iter()
            .filter_map(|p| find_same(p, entry))
            .collect();
        if same.iter().any(|p| p.id == entry.id) {
            continue;
        }
        let len = prefix.len();
        if len > 0 {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(entry.name);
        match entry.kind {
            EntryKind::Tree => {
                let subtrees: Vec<gix::ObjectId> = same.iter().map(|p| p.id).collect();
                introduced(repo, entry.id, &subtrees, prefix, wanted, may_hold, out)?;
            }
            EntryKind::Blob if wanted(&entry.id) => {
                out.push((String::from_utf8_lossy(prefix).into_owned(), entry.id));
            }
            EntryKind::Blob | EntryKind::Other => {}
        }
        prefix.truncate(len);
    }
    Ok(())
}

/// Every blob of a tree, with its path.
fn flatten(
    repo: &gix::Repository,
    tree: gix::ObjectId,
    wanted: &dyn Fn(&gix::oid) -> bool,
    may_hold: MayHold<'_>,
) -> Result<Vec<(String, gix::ObjectId)>, GitError> {
    let mut out = Vec::new();
    introduced(repo, tree, &[], &mut Vec::new(), wanted, may_hold, &mut out)?;
    Ok(out)
}

/// Which trees contain (at any depth) one of the target blobs. Attribution diffs every commit
/// against its parents, but only the paths that lead to a target matter; with a handful of
/// findings in a long history, most commits then need no tree read at all. The sweep's
/// [`tree_index`](super::tree_index) answers for the trees it decoded; any other tree is read
/// here, once for the whole history.
struct Holders<'t> {
    targets: &'t HashSet<ObjectId>,
    index: super::tree_index::Holders<'t>,
    memo: std::sync::Mutex<HashMap<gix::ObjectId, bool>>,
}

impl Holders<'_> {
    fn holds(&self, repo: &gix::Repository, tree: gix::ObjectId) -> bool {
        if let Some(known) = self.index.may_hold(&tree) {
            return known;
        }
        if let Some(&known) = self.memo.lock().ok().as_ref().and_then(|m| m.get(&tree)) {
            return known;
        }
        // A tree that cannot be read "may hold" a target: the diff then reads it and reports
        // the error for the commits that change it, as without this shortcut.
        let entries = load_tree(repo, tree).and_then(|data| {
            Ok(parse_tree(&data, tree, repo.object_hash())?
                .iter()
                .map(|e| (e.id, e.kind))
                .collect::<Vec<_>>())
        });
        let holds = match entries {
            Ok(entries) => entries.iter().any(|&(id, kind)| match kind {
                EntryKind::Blob => self.targets.contains(&ObjectId(id)),
                EntryKind::Tree => self.holds(repo, id),
                EntryKind::Other => false,
            }),
            Err(_) => true,
        };
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert(tree, holds);
        }
        holds
    }
}

/// Orders introductions earliest first: by author time, then by `rank` (a commit's depth in
/// the graph, so that of two commits made in the same second the ancestor comes first).
fn sort_introductions(list: &mut [Introduction], rank: &dyn Fn(&str) -> u32) {
    list.sort_by(|a, b| {
        (a.commit.time, rank(&a.commit.id), &a.commit.id, &a.path).cmp(&(
            b.commit.time,
            rank(&b.commit.id),
            &b.commit.id,
            &b.path,
        ))
    });
}

/// Each commit's generation: 1 for a root (or a commit whose parents are not in the
/// database), else one more than its highest parent.
fn generations(commits: &HashMap<gix::ObjectId, CommitRecord>) -> HashMap<gix::ObjectId, u32> {
    let mut generation: HashMap<gix::ObjectId, u32> = HashMap::with_capacity(commits.len());
    let mut stack = Vec::new();
    for &start in commits.keys() {
        stack.push(start);
        while let Some(&id) = stack.last() {
            if generation.contains_key(&id) {
                stack.pop();
                continue;
            }
            let mut highest = 0;
            let mut ready = true;
            for parent in commits.get(&id).map_or(&[][..], |c| c.parents.as_slice()) {
                if !commits.contains_key(parent) {
                    continue;
                }
                match generation.get(parent) {
                    Some(g) => highest = highest.max(*g),
                    None => {
                        ready = false;
                        stack.push(*parent);
                    }
                }
            }
            if ready {
                generation.insert(id, highest + 1);
                stack.pop();
            }
        }
    }
    generation
}

pub(super) fn attribute(
    repo: &GitRepo,
    history: &History,
    targets: &HashSet<ObjectId>,
) -> Result<Attribution, GitError> {
    let mut attribution = Attribution::default();
    if targets.is_empty() {
        return Ok(attribution);
    }
    let wanted = |id: &gix::oid| targets.contains(&ObjectId(id.to_owned()));
    let holders = Holders {
        targets,
        index: history.trees.holders(targets),
        memo: std::sync::Mutex::new(HashMap::new()),
    };
    let may_hold = |repo: &gix::Repository, tree: gix::ObjectId| holders.holds(repo, tree);
    let mut commits: Vec<(&gix::ObjectId, &CommitRecord)> = history.commits.iter().collect();
    // Neighbours in time share most trees: in this order a parent's trees are usually still
    // in the object cache when its children are diffed against them.
    commits.sort_by_key(|(id, record)| (record.info.time, **id));
    let found: Vec<Result<Vec<(ObjectId, Introduction)>, Skipped>> = commits
        .par_iter()
        .with_min_len(256)
        .map_init(
            || repo.local(),
            |local, (id, record)| {
                // A parent the sweep did not read (an incremental sweep skipped its pack) is
                // read here; one outside the database (beyond a shallow boundary) counts as
                // absent.
                let parent_trees: Vec<gix::ObjectId> = record
                    .parents
                    .iter()
                    .filter_map(|p| match history.commits.get(p) {
                        Some(c) => Some(c.tree),
                        None => Some(local.find_commit(*p).ok()?.tree_id().ok()?.detach()),
                    })
                    .collect();
                let mut out = Vec::new();
                introduced(
                    local,
                    record.tree,
                    &parent_trees,
                    &mut Vec::new(),
                    &wanted,
                    &may_hold,
                    &mut out,
                )
                .map_err(|e| Skipped {
                    place: SkippedPlace::Object {
                        repo: std::sync::Arc::from(repo.path.as_path()),
                        id: ObjectId(**id),
                    },
                    reason: SkipReason::Unreadable(e.to_string()),
                })?;
                Ok(out
                    .into_iter()
                    .map(|(path, blob)| {
                        (
                            ObjectId(blob),
                            Introduction {
                                path,
                                commit: record.info.clone(),
                            },
                        )
                    })
                    .collect())
            },
        )
        .collect();
    for result in found {
        match result {
            Ok(list) => {
                for (blob, intro) in list {
                    attribution
                        .introductions
                        .entry(blob)
                        .or_default()
                        .push(intro);
                }
            }
            Err(skip) => attribution.skipped.push(skip),
        }
    }
    let generation = generations(&history.commits);
    let rank = |id: &str| {
        gix::ObjectId::from_hex(id.as_bytes())
            .ok()
            .and_then(|id| generation.get(&id).copied())
            .unwrap_or(0)
    };
    for list in attribution.introductions.values_mut() {
        sort_introductions(list, &rank);
    }
    let local = repo.local();
    if let Ok(head) = local.head_tree_id() {
        for (_, blob) in flatten(&local, head.detach(), &wanted, &may_hold)? {
            attribution.at_head.insert(ObjectId(blob));
        }
    }
    Ok(attribution)
}

pub(super) fn staged(repo: &GitRepo) -> Result<Vec<StagedChange>, GitError> {
    let local = repo.local();
    let index_path = match std::env::var_os("GIT_INDEX_FILE") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => local.index_path(),
    };
    let index = gix::index::File::at(
        &index_path,
        local.object_hash(),
        true,
        gix::index::decode::Options::default(),
    )
    .map_err(|e| read_error(format!("the index `{}`", index_path.display()), e))?;
    let head: HashMap<String, gix::ObjectId> = match local.head_tree_id() {
        Ok(tree) => flatten(&local, tree.detach(), &|_| true, &|_, _| true)?
            .into_iter()
            .collect(),
        // No commit yet: everything staged is new.
        Err(_) => HashMap::new(),
    };
    let mut changes = Vec::new();
    for entry in index.entries() {
        if entry.stage_raw() != 0 || !entry.mode.to_tree_entry_mode().is_some_and(|m| m.is_blob()) {
            continue;
        }
        let path = entry.path(&index).to_string();
        let head_blob = head.get(&path).copied();
        if head_blob != Some(entry.id) {
            changes.push(StagedChange {
                path,
                staged: ObjectId(entry.id),
                head: head_blob.map(ObjectId),
            });
        }
    }
    Ok(changes)
}

fn resolve(local: &gix::Repository, spec: &str) -> Result<gix::ObjectId, String> {
    let id = local
        .rev_parse_single(spec)
        .map_err(|e| e.to_string())?
        .detach();
    let object = local.find_object(id).map_err(|e| e.to_string())?;
    let commit = object.peel_to_commit().map_err(|e| e.to_string())?;
    Ok(commit.id)
}

pub(super) fn range(repo: &GitRepo, spec: &str) -> Result<RangeChanges, GitError> {
    let local = repo.local();
    let (base, tip) = match spec.split_once("..") {
        Some((_, tip)) if tip.starts_with('.') => {
            return Err(GitError::RangeSyntax(spec.to_owned()));
        }
        Some(("", _)) => return Err(GitError::RangeSyntax(spec.to_owned())),
        Some((base, tip)) => (Some(base), if tip.is_empty() { "HEAD" } else { tip }),
        // As in `git log REV`: every commit REV reaches.
        None => (None, spec),
    };
    let base_id = base
        .map(|base| {
            resolve(&local, base).map_err(|_| GitError::BaseNotFound {
                base: base.to_owned(),
                shallow: repo.is_shallow(),
            })
        })
        .transpose()?;
    let tip_id = resolve(&local, tip).map_err(|message| GitError::Revision {
        spec: tip.to_owned(),
        message,
    })?;
    let walk = local
        .rev_walk([tip_id])
        .with_hidden(base_id)
        .all()
        .map_err(|e| read_error(format!("the commits of `{spec}`"), e))?;
    let mut commit_ids = Vec::new();
    for info in walk {
        let info = info.map_err(|e| read_error(format!("the commits of `{spec}`"), e))?;
        commit_ids.push(info.id);
    }
    // The walk lists descendants before their ancestors.
    let order: HashMap<String, u32> = commit_ids
        .iter()
        .rev()
        .enumerate()
        .map(|(i, id)| (id.to_string(), u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();
    let rank = |id: &str| order.get(id).copied().unwrap_or(0);
    let mut blobs: HashMap<gix::ObjectId, Vec<Introduction>> = HashMap::new();
    let mut commits: Vec<(CommitInfo, Vec<u8>)> = Vec::new();
    let shallow = repo.is_shallow();
    for id in commit_ids {
        let object = local
            .find_object(id)
            .map_err(|e| read_error(format!("commit {id}"), e))?;
        let commit = gix::objs::CommitRef::from_bytes(&object.data, local.object_hash())
            .map_err(|e| read_error(format!("commit {id}"), e))?;
        let info = commit_info(id, &commit);
        let mut parent_trees = Vec::new();
        for parent in commit.parents() {
            let parent = match local.find_commit(parent) {
                Ok(parent) => parent,
                // A parent beyond a shallow clone's boundary counts as absent, as in a sweep.
                Err(_) if shallow => continue,
                Err(e) => return Err(read_error(format!("commit {parent}"), e)),
            };
            parent_trees.push(
                parent
                    .tree_id()
                    .map_err(|e| read_error(format!("commit {}", parent.id), e))?
                    .detach(),
            );
        }
        let mut out = Vec::new();
        introduced(
            &local,
            commit.tree(),
            &parent_trees,
            &mut Vec::new(),
            &|_| true,
            &|_, _| true,
            &mut out,
        )?;
        for (path, blob) in out {
            blobs.entry(blob).or_default().push(Introduction {
                path,
                commit: info.clone(),
            });
        }
        commits.push((info, commit.message.to_vec()));
    }
    let mut blobs: Vec<(ObjectId, Vec<Introduction>)> = blobs
        .into_iter()
        .map(|(blob, mut list)| {
            sort_introductions(&mut list, &rank);
            (ObjectId(blob), list)
        })
        .collect();
    blobs.sort_by_key(|a| a.0);
    Ok(RangeChanges { blobs, commits })
}
