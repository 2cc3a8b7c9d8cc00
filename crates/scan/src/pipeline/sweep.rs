//! Fleet sweeps: many repositories in one run, each read incrementally against a state
//! directory, a blob shared between repositories matched once, and a coverage record per
//! repository that says what was read and whether the result is complete.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Instant, SystemTime};

use keyscope_sources::{
    GitError, GitRepo, ObjectId, RepoName, SkipReason, Skipped, SkippedPlace, SweepOptions,
    WalkStats,
};
use sha2::{Digest, Sha256};

use super::state::{BlobPlaces, Place, RepoState};
use super::{FingerprintKind, Scan, ScanError, ScanResult};
use crate::Finding;
use crate::history::{self, BlobCache, Swept};

/// One repository of a sweep: what the user named it, and where its clone is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepRepo {
    /// The path or URL as given: what reports and the state call the repository.
    pub identity: String,
    /// The repository on disk (a path given, or the clone of a URL).
    pub path: PathBuf,
}

/// How one repository's sweep ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoverageStatus {
    /// Everything it holds was read.
    Complete,
    /// Something was not read (listed in the coverage record's `skipped`).
    Partial,
    /// It could not be opened or read at all.
    Failed(String),
}

/// What a sweep read of one repository.
#[derive(Debug, Clone)]
pub struct Coverage {
    /// The repository as named.
    pub repository: String,
    /// When its sweep started and ended.
    pub started: SystemTime,
    /// When its sweep ended.
    pub ended: SystemTime,
    /// Its references and their tips.
    pub refs: Vec<(String, ObjectId)>,
    /// Objects decoded by this sweep.
    pub objects_read: u64,
    /// Objects not decoded because an earlier sweep (the state) read them.
    pub objects_from_state: u64,
    /// Blobs whose match was taken from another repository of this sweep.
    pub blobs_deduplicated: u64,
    /// Bytes of text blobs matched.
    pub bytes: u64,
    /// What was not read, and why (failures and size-limit skips).
    pub skipped: Vec<Skipped>,
    /// Complete, partial or failed.
    pub status: CoverageStatus,
}

/// What a sweep covered over all its repositories: the totals its report's summary shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepSummary {
    /// Repositories swept.
    pub repositories: u64,
    /// Those read whole.
    pub complete: u64,
    /// Those with something not read.
    pub partial: u64,
    /// Those that could not be read at all.
    pub failed: u64,
    /// Objects decoded.
    pub objects_read: u64,
    /// Objects not decoded because an earlier sweep (the state) read them.
    pub objects_from_state: u64,
    /// Blobs whose match was taken from another repository of the sweep.
    pub blobs_deduplicated: u64,
}

impl SweepSummary {
    /// The totals over these repositories' coverage records.
    pub fn of(coverage: &[Coverage]) -> SweepSummary {
        let count = |f: fn(&CoverageStatus) -> bool| {
            coverage.iter().filter(|c| f(&c.status)).count() as u64
        };
        SweepSummary {
            repositories: coverage.len() as u64,
            complete: count(|s| *s == CoverageStatus::Complete),
            partial: count(|s| *s == CoverageStatus::Partial),
            failed: count(|s| matches!(s, CoverageStatus::Failed(_))),
            objects_read: coverage.iter().map(|c| c.objects_read).sum(),
            objects_from_state: coverage.iter().map(|c| c.objects_from_state).sum(),
            blobs_deduplicated: coverage.iter().map(|c| c.blobs_deduplicated).sum(),
        }
    }

    /// Adds another sweep's totals (another shard's).
    pub fn absorb(&mut self, other: SweepSummary) {
        self.repositories += other.repositories;
        self.complete += other.complete;
        self.partial += other.partial;
        self.failed += other.failed;
        self.objects_read += other.objects_read;
        self.objects_from_state += other.objects_from_state;
        self.blobs_deduplicated += other.blobs_deduplicated;
    }
}

/// What a sweep found and read.
#[derive(Debug, Clone)]
pub struct SweepResult {
    /// The findings (the repository named in every location) and totals, as a scan's.
    pub result: ScanResult,
    /// One record per repository, in sweep order.
    pub coverage: Vec<Coverage>,
    /// `(rule id, fingerprint)` of the findings an earlier sweep already reported.
    pub previously_reported: HashSet<(String, String)>,
    /// How the fingerprints were made.
    pub fingerprints: FingerprintKind,
}

impl SweepResult {
    /// The totals over every repository.
    pub fn summary(&self) -> SweepSummary {
        SweepSummary::of(&self.coverage)
    }
}

/// What one repository contributed.
struct RepoOutcome {
    placed: Vec<Finding>,
    stats: WalkStats,
    warnings: Vec<String>,
    reported_before: HashSet<(String, String)>,
    coverage: Coverage,
}

/// How many repositories are read at once. Each one's sweep has stretches on one thread
/// (listing and indexing packs, the missing-object check, attribution's tail, saving the
/// state) that the other's pack traversal fills; more would only add memory.
const REPOS_IN_FLIGHT: usize = 2;

impl Scan {
    /// Sweeps every object of each repository (those a `state` directory records as read are
    /// skipped), calling `on_repo` as each one ends, and returns the findings of all.
    ///
    /// Two repositories are read at once (one with `threads(1)`), but each is recorded (its
    /// state saved, `on_repo` called) in the order given, after every one before it: a killed
    /// sweep has recorded a prefix of the list, as if it had read one at a time.
    pub fn sweep(
        &self,
        repos: &[SweepRepo],
        state: Option<&Path>,
        on_repo: &mut dyn FnMut(&Coverage),
    ) -> Result<SweepResult, ScanError> {
        let started = Instant::now();
        let rules = self.rules_version();
        let cache = BlobCache::default();
        let mut placed = Vec::new();
        let mut stats = WalkStats::default();
        let mut warnings = Vec::new();
        let mut coverage = Vec::new();
        let mut reported = HashSet::new();
        let mut record = |outcome: RepoOutcome| {
            on_repo(&outcome.coverage);
            placed.extend(outcome.placed);
            stats.absorb(outcome.stats);
            warnings.extend(outcome.warnings);
            reported.extend(outcome.reported_before);
            coverage.push(outcome.coverage);
        };
        let in_flight = if self.threads == 1 {
            1
        } else {
            REPOS_IN_FLIGHT.min(repos.len())
        };
        if in_flight <= 1 {
            for repo in repos {
                let read = self.read_one(repo, state, &rules, &cache);
                record(self.record_one(repo, read, state, &rules));
            }
        } else {
            self.read_overlapped(repos, state, &rules, &cache, in_flight, &mut |i, read| {
                record(self.record_one(&repos[i], read, state, &rules));
            });
        }
        let key = &self.fingerprint_key;
        let mut findings = history::group(placed);
        key.apply(&mut findings);
        let (findings, stale) = self.finish(findings);
        let previously_reported = reported
            .into_iter()
            .map(|(rule, fingerprint)| (rule, key.fingerprint(&fingerprint)))
            .collect();
        Ok(SweepResult {
            result: ScanResult {
                findings,
                stale,
                stats,
                elapsed: started.elapsed(),
                warnings,
            },
            coverage,
            previously_reported,
            fingerprints: key.kind(),
        })
    }

    /// Reads the repositories on `in_flight` threads, each taking the next one as it ends,
    /// and hands each read to `record` in the order given.
    fn read_overlapped(
        &self,
        repos: &[SweepRepo],
        state: Option<&Path>,
        rules: &str,
        cache: &BlobCache,
        in_flight: usize,
        record: &mut dyn FnMut(usize, RepoRead),
    ) {
        let next = AtomicUsize::new(0);
        let (sender, receiver) = mpsc::channel::<(usize, RepoRead)>();
        std::thread::scope(|scope| {
            for _ in 0..in_flight {
                let sender = sender.clone();
                let next = &next;
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(repo) = repos.get(i) else { break };
                        let read = self.read_one(repo, state, rules, cache);
                        if sender.send((i, read)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(sender);
            // Reads that end before an earlier one wait here for their turn.
            let mut waiting = BTreeMap::new();
            let mut turn = 0;
            for (i, read) in receiver {
                waiting.insert(i, read);
                while let Some(read) = waiting.remove(&turn) {
                    record(turn, read);
                    turn += 1;
                }
            }
        });
    }

    /// What the state's records depend on: the rules, the size limit and this code's version.
    fn rules_version(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(env!("CARGO_PKG_VERSION"));
        hasher.update(format!("{:?}\0{}", self.rules(), self.max_file_size));
        hasher.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Reads one repository, against its state from an earlier sweep.
    fn read_one(
        &self,
        repo: &SweepRepo,
        state: Option<&Path>,
        rules: &str,
        cache: &BlobCache,
    ) -> RepoRead {
        let started = SystemTime::now();
        let prior = state.and_then(|dir| RepoState::load(dir, &repo.identity, rules));
        let read = self.read_repo(repo, prior.as_ref(), cache);
        RepoRead {
            started,
            prior,
            read,
        }
    }

    /// Records one repository's read: its state saved, its coverage.
    fn record_one(
        &self,
        repo: &SweepRepo,
        read: RepoRead,
        state: Option<&Path>,
        rules: &str,
    ) -> RepoOutcome {
        match read.read {
            Ok((done, next)) => {
                self.record(repo, done, next, state, rules, read.prior, read.started)
            }
            Err(e) => failed(repo, read.started, &e),
        }
    }
}

/// One repository read, not yet recorded.
struct RepoRead {
    started: SystemTime,
    prior: Option<RepoState>,
    read: Result<(Read, RepoState), GitError>,
}

/// A repository's sweep, its findings placed.
struct Read {
    placed: Vec<Finding>,
    stats: WalkStats,
    warnings: Vec<String>,
    refs: Vec<(String, ObjectId)>,
    objects: u64,
    already_seen: u64,
    /// Blobs whose findings were taken from another repository's match.
    reused: u64,
}

impl Scan {
    /// Sweeps one repository and places its findings; returns the state to record.
    fn read_repo(
        &self,
        repo: &SweepRepo,
        prior: Option<&RepoState>,
        cache: &BlobCache,
    ) -> Result<(Read, RepoState), GitError> {
        let git = GitRepo::open(&repo.path)?;
        let options = SweepOptions {
            max_blob_size: self.max_file_size,
            threads: self.threads,
            progress: self.progress.clone(),
            seen: prior.map(|p| Arc::new(p.seen())),
            revisit: prior.map(RepoState::revisit).unwrap_or_default(),
        };
        let Swept {
            history,
            blobs,
            messages,
            tags,
            summaries,
            reused,
        } = history::sweep(&self.engine, &git, &options, Some(cache))?;
        let known = prior.map(RepoState::places).unwrap_or_default();
        let targets: HashSet<ObjectId> = blobs.iter().map(|(id, _)| *id).collect();
        let attribution = git.attribute(&history, &targets)?;
        let mut next = RepoState::new(&repo.identity, "");
        next.set_seen(&history.read);
        next.blobs = blob_places(&blobs, &attribution, &known, &summaries);
        next.messages = messages
            .iter()
            .map(|(id, _)| id.to_string())
            .chain(tags.iter().map(|(id, _, _)| id.to_string()))
            .collect();
        let named: Option<RepoName> = Some(Arc::from(Path::new(&repo.identity)));
        let mut placed = history::place_blobs(blobs, &attribution, &known, &git, named.as_ref());
        placed.extend(history::place_messages(messages, &history, named.as_ref()));
        placed.extend(history::place_tags(tags, named.as_ref()));
        history::redact_summaries(&mut placed, &summaries);
        // A blob's usage findings are judged where the blob is placed (not in a README or a
        // commit message), as `scan --history` judges them.
        crate::usage::retain_applicable(&mut placed);
        let refs = history.refs().to_vec();
        let mut stats = history.stats;
        stats.skipped.extend(attribution.skipped);
        Ok((
            Read {
                placed,
                stats,
                warnings: history.warnings,
                refs,
                objects: history.objects,
                already_seen: history.already_seen,
                reused,
            },
            next,
        ))
    }

    /// The repository's coverage, and its new state saved when its sweep was complete.
    #[expect(
        clippy::too_many_arguments,
        reason = "one repository's sweep, told whole"
    )]
    fn record(
        &self,
        repo: &SweepRepo,
        read: Read,
        mut next: RepoState,
        state: Option<&Path>,
        rules: &str,
        prior: Option<RepoState>,
        started: SystemTime,
    ) -> RepoOutcome {
        let complete = !read.stats.has_failures();
        let mut warnings = read.warnings;
        next.rules = rules.to_owned();
        next.reported = read
            .placed
            .iter()
            .map(|f| (f.rule_id.clone(), f.fingerprint.clone()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        next.reported.sort();
        // A partial sweep records nothing: the next one reads (and reports) it all again.
        if complete
            && let Some(dir) = state
            && let Err(e) = next.save(dir)
        {
            warnings.push(format!(
                "cannot record the state of `{}` in `{}`: {e} (the next sweep reads it whole)",
                repo.identity,
                dir.display()
            ));
        }
        let skipped: Vec<Skipped> = read
            .stats
            .skipped
            .iter()
            .filter(|s| s.reason != SkipReason::Binary)
            .cloned()
            .collect();
        RepoOutcome {
            coverage: Coverage {
                repository: repo.identity.clone(),
                started,
                ended: SystemTime::now(),
                refs: read.refs,
                objects_read: read.objects,
                objects_from_state: read.already_seen,
                blobs_deduplicated: read.reused,
                bytes: read.stats.bytes,
                skipped,
                status: if complete {
                    CoverageStatus::Complete
                } else {
                    CoverageStatus::Partial
                },
            },
            reported_before: prior.map(|p| p.reported()).unwrap_or_default(),
            placed: read.placed,
            stats: read.stats,
            warnings,
        }
    }
}

/// Where each blob that holds findings was introduced, summaries masked, for the state.
fn blob_places(
    blobs: &[(ObjectId, Vec<Finding>)],
    attribution: &keyscope_sources::Attribution,
    known: &HashMap<ObjectId, Vec<keyscope_sources::Introduction>>,
    summaries: &HashMap<String, String>,
) -> Vec<BlobPlaces> {
    let mut out: Vec<BlobPlaces> = blobs
        .iter()
        .map(|(id, _)| {
            let mut places: Vec<Place> = attribution
                .introductions(*id)
                .iter()
                .chain(known.get(id).into_iter().flatten())
                .map(|intro| {
                    let mut intro = intro.clone();
                    if let Some(summary) = summaries.get(&intro.commit.id) {
                        intro.commit.summary.clone_from(summary);
                    }
                    Place::new(&intro)
                })
                .collect();
            places.sort_by(|a, b| a.key().cmp(&b.key()));
            places.dedup_by(|a, b| a.key() == b.key());
            BlobPlaces {
                id: id.to_string(),
                places,
            }
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    out
}

/// A repository that could not be swept: a failure in the totals, and its coverage.
fn failed(repo: &SweepRepo, started: SystemTime, error: &GitError) -> RepoOutcome {
    let skip = Skipped {
        place: SkippedPlace::Path(PathBuf::from(&repo.identity)),
        reason: SkipReason::Unreadable(error.to_string()),
    };
    RepoOutcome {
        placed: Vec::new(),
        stats: WalkStats {
            skipped: vec![skip.clone()],
            ..WalkStats::default()
        },
        warnings: Vec::new(),
        reported_before: HashSet::new(),
        coverage: Coverage {
            repository: repo.identity.clone(),
            started,
            ended: SystemTime::now(),
            refs: Vec::new(),
            objects_read: 0,
            objects_from_state: 0,
            blobs_deduplicated: 0,
            bytes: 0,
            skipped: vec![skip],
            status: CoverageStatus::Failed(error.to_string()),
        },
    }
}
