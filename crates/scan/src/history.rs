//! Git scans: whole-history sweeps, staged changes and commit ranges, driven through the
//! engine, with findings grouped so that one secret is one finding however often it was
//! committed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use keyscope_sources::{
    Attribution, CommitInfo, Excludes, GitError, GitObject, GitRepo, History, Introduction,
    ObjectId, Origin, RepoName, SweepOptions,
};

use crate::{Detector, Finding, Location, ScanOutcome, finding, sort_findings};

/// The result of a git scan.
#[derive(Debug, Default)]
pub struct GitOutcome {
    /// Findings (one per rule and secret, its first introduction as the location and every
    /// other place in `related`), what was read, and the time it took.
    pub outcome: ScanOutcome,
    /// Notes that do not make the scan fail (a shallow clone's incomplete history).
    pub warnings: Vec<String>,
}

/// The origin of a blob's findings until they are placed: where the blob is is known only
/// once its findings are attributed.
fn unplaced() -> Origin {
    Origin::File(PathBuf::new())
}

/// Sweeps every object of each repository and groups the findings by secret.
///
/// A location's commit is the one that first introduced the blob at that path; a blob no
/// commit contains is placed as [`Origin::Unreachable`]. Repositories are named in origins
/// when there are several.
pub fn scan_history(
    engine: &Detector,
    repos: &[GitRepo],
    options: &SweepOptions,
) -> Result<GitOutcome, GitError> {
    let started = Instant::now();
    let mut result = GitOutcome::default();
    let mut placed = Vec::new();
    for repo in repos {
        let named: Option<RepoName> = (repos.len() > 1).then(|| Arc::from(repo.path()));
        let Swept {
            history,
            blobs,
            messages,
            tags,
            summaries,
            reused: _,
        } = sweep(engine, repo, options, None)?;
        let targets: HashSet<ObjectId> = blobs.iter().map(|(id, _)| *id).collect();
        let attribution = repo.attribute(&history, &targets)?;
        let mut found = place_blobs(blobs, &attribution, &HashMap::new(), repo, named.as_ref());
        found.extend(place_messages(messages, &history, named.as_ref()));
        found.extend(place_tags(tags, named.as_ref()));
        redact_summaries(&mut found, &summaries);
        placed.extend(found);
        result.outcome.stats.absorb(history.stats);
        result.outcome.stats.skipped.extend(attribution.skipped);
        result.warnings.extend(history.warnings);
    }
    // A blob's usage findings are judged where the blob is placed (not in a README).
    crate::usage::retain_applicable(&mut placed);
    result.outcome.findings = group(placed);
    result.outcome.elapsed = started.elapsed();
    Ok(result)
}

/// What one repository's sweep found, before attribution.
pub(crate) struct Swept {
    pub(crate) history: History,
    /// Findings per blob, not yet placed.
    pub(crate) blobs: Vec<(ObjectId, Vec<Finding>)>,
    /// Findings per commit message, not yet placed.
    pub(crate) messages: Vec<(ObjectId, Vec<Finding>)>,
    /// Findings per annotated tag message (the tag's id and name), not yet placed.
    pub(crate) tags: Vec<(ObjectId, String, Vec<Finding>)>,
    /// The masked summary of every commit whose message holds a secret.
    pub(crate) summaries: HashMap<String, String>,
    /// Blobs whose findings were taken from another repository's match.
    pub(crate) reused: u64,
}

/// The blobs a sweep of several repositories has matched so far, so that a blob shared by
/// forks or vendored copies is matched once per sweep. Repositories are swept two at a time:
/// a blob that both hold is matched by the first to reach it, and the other waits for that
/// match rather than taking "nothing found" from a match still running.
#[derive(Default)]
pub(crate) struct BlobCache {
    blobs: Mutex<CachedBlobs>,
}

#[derive(Default)]
struct CachedBlobs {
    /// Blobs matched to the end.
    matched: HashSet<ObjectId>,
    /// The findings of those that held any.
    found: HashMap<ObjectId, Vec<Finding>>,
    /// Blobs being matched now, by the first repository to reach them.
    pending: HashMap<ObjectId, Arc<OnceLock<Vec<Finding>>>>,
}

impl BlobCache {
    /// The findings of `data`, matched now or taken from another repository's match (then
    /// counted in `reused`).
    fn findings(
        &self,
        engine: &Detector,
        id: ObjectId,
        data: &[u8],
        reused: &AtomicU64,
    ) -> Vec<Finding> {
        let cell = {
            let mut blobs = lock(&self.blobs);
            if blobs.matched.contains(&id) {
                reused.fetch_add(1, Ordering::Relaxed);
                return blobs.found.get(&id).cloned().unwrap_or_default();
            }
            Arc::clone(blobs.pending.entry(id).or_default())
        };
        let mut matched_here = false;
        let found = cell
            .get_or_init(|| {
                matched_here = true;
                let matches = engine.scan(data);
                if matches.is_empty() {
                    return Vec::new();
                }
                finding::findings(engine.rules().rules(), &unplaced(), data, &matches)
            })
            .clone();
        if matched_here {
            let mut blobs = lock(&self.blobs);
            blobs.pending.remove(&id);
            blobs.matched.insert(id);
            if !found.is_empty() {
                blobs.found.insert(id, found.clone());
            }
        } else {
            reused.fetch_add(1, Ordering::Relaxed);
        }
        found
    }
}

/// Reads every object of a repository, matching blobs, commit messages and tag messages on many threads.
pub(crate) fn sweep(
    engine: &Detector,
    repo: &GitRepo,
    options: &SweepOptions,
    cache: Option<&BlobCache>,
) -> Result<Swept, GitError> {
    let rules = engine.rules().rules();
    let blobs = Mutex::new(Vec::new());
    let messages = Mutex::new(Vec::new());
    let tags = Mutex::new(Vec::new());
    let summaries = Mutex::new(HashMap::new());
    let reused = AtomicU64::new(0);
    let history = repo.for_each_object(options, |object| match object {
        GitObject::Blob { id, data } if cache.is_some() => {
            let found = cache
                .map(|c| c.findings(engine, id, data, &reused))
                .unwrap_or_default();
            if !found.is_empty() {
                lock(&blobs).push((id, found));
            }
        }
        GitObject::Blob { id, data } => {
            let matches = engine.scan(data);
            if !matches.is_empty() {
                let found = finding::findings(rules, &unplaced(), data, &matches);
                lock(&blobs).push((id, found));
            }
        }
        GitObject::CommitMessage { id, message } => {
            let matches = engine.scan(message);
            if !matches.is_empty() {
                let found = finding::findings(rules, &unplaced(), message, &matches);
                let summary = redacted_summary(engine, message, &matches);
                lock(&messages).push((id, found));
                lock(&summaries).insert(id.to_string(), summary);
            }
        }
        GitObject::TagMessage { id, name, message } => {
            let matches = engine.scan(message);
            if !matches.is_empty() {
                let found = finding::findings(rules, &unplaced(), message, &matches);
                let name = String::from_utf8_lossy(name).into_owned();
                lock(&tags).push((id, name, found));
            }
        }
    })?;
    Ok(Swept {
        history,
        blobs: into_inner(blobs),
        messages: into_inner(messages),
        tags: into_inner(tags),
        summaries: into_inner(summaries),
        reused: reused.into_inner(),
    })
}

/// Each blob's findings at every place a commit introduced the blob (as attributed, and as
/// `known` from an earlier sweep), or as unreachable.
pub(crate) fn place_blobs(
    blobs: Vec<(ObjectId, Vec<Finding>)>,
    attribution: &Attribution,
    known: &HashMap<ObjectId, Vec<Introduction>>,
    repo: &GitRepo,
    named: Option<&RepoName>,
) -> Vec<Finding> {
    let mut placed = Vec::new();
    for (blob, found) in blobs {
        let mut intros = attribution.introductions(blob).to_vec();
        intros.extend(known.get(&blob).into_iter().flatten().cloned());
        let intros = &intros;
        let at_head = attribution.at_head(blob);
        for f in found {
            if intros.is_empty() {
                let mut f = f.clone();
                f.location.origin = Origin::Unreachable {
                    repo: Arc::from(repo.path()),
                    blob,
                };
                f.at_head = Some(false);
                placed.push(f);
            }
            for intro in intros {
                let mut f = f.clone();
                f.location.origin = Origin::Commit {
                    repo: named.cloned(),
                    path: intro.path.clone(),
                    commit: intro.commit.clone(),
                };
                f.at_head = Some(at_head);
                placed.push(f);
            }
        }
    }
    placed
}

/// Each annotated tag message's findings, placed in their tag.
pub(crate) fn place_tags(
    tags: Vec<(ObjectId, String, Vec<Finding>)>,
    named: Option<&RepoName>,
) -> Vec<Finding> {
    let mut placed = Vec::new();
    for (id, name, found) in tags {
        for mut f in found {
            f.location.origin = Origin::TagMessage {
                repo: named.cloned(),
                name: name.clone(),
                id,
            };
            placed.push(f);
        }
    }
    placed
}

/// Each commit message's findings, placed in their commit.
pub(crate) fn place_messages(
    messages: Vec<(ObjectId, Vec<Finding>)>,
    history: &History,
    named: Option<&RepoName>,
) -> Vec<Finding> {
    let mut placed = Vec::new();
    for (id, found) in messages {
        // The sweep records every commit whose message it hands over.
        let Some(commit) = history.commit(id) else {
            continue;
        };
        for mut f in found {
            f.location.origin = Origin::CommitMessage {
                repo: named.cloned(),
                commit: commit.clone(),
            };
            placed.push(f);
        }
    }
    placed
}

/// Whether a repository path is excluded by `excludes` (relative to the working tree, or to their
/// bases). A bare repository has no working tree for a base to be under: only globs without a
/// base apply.
fn excluded(excludes: &Excludes, workdir: Option<&Path>, path: &str) -> bool {
    excludes.excludes(workdir.unwrap_or(Path::new("")), Path::new(path), false)
}

/// Scans what the index would commit: each staged file whose blob differs from HEAD's. Unless
/// `all` is set, a secret that HEAD's version of the same path already holds is not reported.
/// Paths that `excludes` names are not read.
pub fn scan_staged(
    engine: &Detector,
    repo: &GitRepo,
    all: bool,
    excludes: &Excludes,
) -> Result<GitOutcome, GitError> {
    let started = Instant::now();
    let mut result = GitOutcome::default();
    let workdir = repo.workdir();
    for change in repo.staged()? {
        if excluded(excludes, workdir.as_deref(), &change.path) {
            continue;
        }
        let data = match repo.read_blob(change.staged) {
            Ok(data) => data,
            Err(e) => {
                result
                    .outcome
                    .stats
                    .skipped
                    .push(keyscope_sources::Skipped {
                        place: change.path.clone().into(),
                        reason: keyscope_sources::SkipReason::Unreadable(e.to_string()),
                    });
                continue;
            }
        };
        if keyscope_sources::is_binary(&data) {
            result.outcome.stats.binary += 1;
            continue;
        }
        result.outcome.stats.files += 1;
        result.outcome.stats.bytes += data.len() as u64;
        let origin = Origin::Index {
            path: change.path.clone(),
        };
        let mut found = crate::scan_blob(engine, origin.clone(), &data);
        if found.is_empty() {
            continue;
        }
        if !all && let Some(head) = change.head {
            let before = repo.read_blob(head)?;
            let known: HashSet<(String, String)> = crate::scan_blob(engine, origin, &before)
                .into_iter()
                .map(|f| (f.rule_id, f.fingerprint))
                .collect();
            found.retain(|f| !known.contains(&(f.rule_id.clone(), f.fingerprint.clone())));
        }
        result.outcome.findings.extend(found);
    }
    sort_findings(&mut result.outcome.findings);
    result.outcome.elapsed = started.elapsed();
    Ok(result)
}

/// Scans the blobs and commit messages that the commits of `BASE..HEAD` introduce. A blob is
/// placed only at the paths `excludes` does not name, and not read if it names them all.
pub fn scan_range(
    engine: &Detector,
    repo: &GitRepo,
    spec: &str,
    max_blob_size: u64,
    excludes: &Excludes,
) -> Result<GitOutcome, GitError> {
    let started = Instant::now();
    let changes = repo.range(spec)?;
    let workdir = repo.workdir();
    let intros: HashMap<ObjectId, Vec<&keyscope_sources::Introduction>> = changes
        .blobs
        .iter()
        .map(|(id, list)| {
            let kept: Vec<_> = list
                .iter()
                .filter(|intro| !excluded(excludes, workdir.as_deref(), &intro.path))
                .collect();
            (*id, kept)
        })
        .filter(|(_, kept)| !kept.is_empty())
        .collect();
    let ids: Vec<ObjectId> = changes
        .blobs
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| intros.contains_key(id))
        .collect();
    let placed = Mutex::new(Vec::new());
    let stats = repo.for_each_blob(&ids, max_blob_size, |id, data| {
        let matches = engine.scan(data);
        if matches.is_empty() {
            return;
        }
        let found = finding::findings(engine.rules().rules(), &unplaced(), data, &matches);
        let mut out = Vec::new();
        for f in found {
            for intro in intros.get(&id).map_or(&[][..], Vec::as_slice) {
                let mut f = f.clone();
                f.location.origin = Origin::Commit {
                    repo: None,
                    path: intro.path.clone(),
                    commit: intro.commit.clone(),
                };
                out.push(f);
            }
        }
        lock(&placed).extend(out);
    });
    let mut placed = into_inner(placed);
    let (messages, summaries) = scan_messages(engine, &changes.commits);
    placed.extend(messages);
    redact_summaries(&mut placed, &summaries);
    let mut result = GitOutcome::default();
    result.outcome.stats = stats;
    // A blob's usage findings are judged where the blob is placed (not in a README).
    crate::usage::retain_applicable(&mut placed);
    result.outcome.findings = group(placed);
    result.outcome.elapsed = started.elapsed();
    Ok(result)
}

/// The findings of commit messages, and the masked summary of each commit whose message holds
/// a secret.
fn scan_messages(
    engine: &Detector,
    commits: &[(CommitInfo, Vec<u8>)],
) -> (Vec<Finding>, HashMap<String, String>) {
    let mut found = Vec::new();
    let mut summaries = HashMap::new();
    for (info, message) in commits {
        let matches = engine.scan(message);
        if matches.is_empty() {
            continue;
        }
        summaries.insert(info.id.clone(), redacted_summary(engine, message, &matches));
        let origin = Origin::CommitMessage {
            repo: None,
            commit: info.clone(),
        };
        found.extend(finding::findings(
            engine.rules().rules(),
            &origin,
            message,
            &matches,
        ));
    }
    (found, summaries)
}

/// A commit message's first line with every secret in it masked: commit summaries are shown
/// wherever the commit is named.
fn redacted_summary(engine: &Detector, message: &[u8], matches: &[crate::Match]) -> String {
    let rules = engine.rules().rules();
    let mut text = String::new();
    let mut at = 0;
    for m in matches {
        if m.span.start < at {
            continue;
        }
        text.push_str(&String::from_utf8_lossy(&message[at..m.span.start]));
        text.push_str(&crate::redact(&m.secret, rules[m.rule].prefix()));
        at = m.span.end;
    }
    text.push_str(&String::from_utf8_lossy(&message[at..]));
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_owned()
}

/// Replaces the summaries of commits whose messages hold a secret by their masked form.
pub(crate) fn redact_summaries(placed: &mut [Finding], summaries: &HashMap<String, String>) {
    if summaries.is_empty() {
        return;
    }
    for p in placed {
        if let Some(commit) = p.location.origin.commit_mut()
            && let Some(summary) = summaries.get(&commit.id)
        {
            commit.summary.clone_from(summary);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn into_inner<T>(mutex: Mutex<T>) -> T {
    mutex.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Orders locations by when they were introduced: earliest commit first, then locations with
/// no commit (unreachable objects).
fn location_order(location: &Location) -> (bool, i64, String, String, usize, usize) {
    let (no_commit, time, id) = match location.commit() {
        Some(CommitInfo { time, id, .. }) => (false, *time, id.clone()),
        None => (true, 0, String::new()),
    };
    (
        no_commit,
        time,
        id,
        location.origin.to_string(),
        location.line,
        location.column,
    )
}

/// One finding per (rule, secret): the earliest location first, every other in `related`.
pub(crate) fn group(placed: Vec<Finding>) -> Vec<Finding> {
    let mut groups: BTreeMap<(String, String), Vec<Finding>> = BTreeMap::new();
    for p in placed {
        groups
            .entry((p.rule_id.clone(), p.fingerprint.clone()))
            .or_default()
            .push(p);
    }
    let mut findings = Vec::new();
    for (_, mut members) in groups {
        members.sort_by_cached_key(|m| location_order(&m.location));
        let at_head = members
            .iter()
            .filter_map(|m| m.at_head)
            .reduce(|a, b| a || b);
        let mut members = members.into_iter();
        let Some(first) = members.next() else {
            continue;
        };
        let mut finding = first;
        let mut seen: HashSet<Location> = HashSet::from([finding.location.clone()]);
        for m in members {
            if seen.insert(m.location.clone()) {
                finding.related.push(m.location);
            }
        }
        finding.at_head = at_head;
        findings.push(finding);
    }
    sort_findings(&mut findings);
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::tests::{KEY, engine};

    /// Issue #17: repositories swept at once ask for the same blob at once; each gets its
    /// findings (the other's match is waited for, not read as "nothing found"), and the blob
    /// is matched once.
    #[test]
    fn a_blob_two_repositories_reach_at_once_is_matched_once_and_found_by_both() {
        let engine = engine();
        let cache = BlobCache::default();
        let id = ObjectId::from_hex("0123456789abcdef0123456789abcdef01234567").unwrap();
        let data = format!("key = \"{KEY}\"\n").repeat(2_000);
        let reused = AtomicU64::new(0);
        let found: Vec<usize> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| cache.findings(&engine, id, data.as_bytes(), &reused).len())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(found.iter().all(|&n| n == found[0] && n > 0), "{found:?}");
        assert_eq!(reused.into_inner(), 7);
        assert!(lock(&cache.blobs).pending.is_empty());
    }
}
