//! The scan pipeline: everything between what a user asked for and the findings a report shows.
//!
//! The one design decision here: **a scan is one library call that returns exactly what the
//! command line prints**. A [`ScanBuilder`] takes a typed [`Target`] and options, loads the
//! configuration, rules and baseline once ([`ScanBuilder::build`]), and [`Scan::run`] reads the
//! target, attributes leaked keys to their owners, adds flat-key findings, sorts and applies the
//! baseline. Who owns a key is passed in ([`KeyOwners`]), so this crate knows nothing of policy
//! stores.
//!
//! ```
//! use keyscope_scan::pipeline::{ConfigSource, ScanBuilder, Target};
//!
//! let dir = tempfile::tempdir()?;
//! let key = format!("gsk_{}", "q8Zr3LwX0pVt7KcN2bYh5MfJ1sDg4TuA9eRo6WiL".repeat(2)[..52].to_owned());
//! std::fs::write(dir.path().join("app.py"), format!("GROQ_API_KEY = \"{key}\"\n"))?;
//! let scan = ScanBuilder::new(Target::paths([dir.path()]))
//!     .config(ConfigSource::Isolated)
//!     .build()?;
//! let result = scan.run()?;
//! assert_eq!(result.findings.len(), 1);
//! assert_eq!(result.findings[0].rule_id, "groq-api-key");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod fingerprint;
mod finish;
mod merge;
mod setup;
mod state;
mod sweep;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use keyscope_rules::RuleSet;
use keyscope_sources::{Excludes, FileSource, GitRepo, Origin, SweepOptions, WalkStats};

use crate::baseline::{Baseline, BaselineEntry};
use crate::config::Config;
use crate::flatkey::FlatKeyOptions;
use crate::{Detector, Finding, GitOutcome, KeyOwner, ScanOutcome};

pub use fingerprint::{FingerprintKey, FingerprintKind};
pub use setup::{RuleFileCheck, ScanError, check_rule_files, load_rules};
pub use sweep::{Coverage, CoverageStatus, SweepRepo, SweepResult, SweepSummary};

/// What a scan reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Files and directory trees, and the bytes of standard input when given.
    Files {
        /// The files and directories.
        paths: Vec<PathBuf>,
        /// Standard input's content, scanned as `-`.
        stdin: Option<Vec<u8>>,
    },
    /// What the next commit of a repository would add: its index against HEAD.
    Staged {
        /// The repository (or a path inside it).
        repo: PathBuf,
        /// Also report secrets that HEAD's version of a file already holds.
        all: bool,
    },
    /// What the commits of `BASE..HEAD` (or every commit `REV` reaches) introduce.
    Range {
        /// The repository (or a path inside it).
        repo: PathBuf,
        /// `BASE..HEAD`, or `REV` alone: every commit it reaches (as in `git log REV`).
        spec: String,
    },
    /// Every object in the databases of these repositories.
    History {
        /// The repositories.
        repos: Vec<PathBuf>,
    },
}

impl Target {
    /// Files and directory trees.
    pub fn paths<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> Target {
        Target::Files {
            paths: paths.into_iter().map(Into::into).collect(),
            stdin: None,
        }
    }

    /// Where the configuration is looked for: the first path named.
    fn start(&self) -> &Path {
        let first = match self {
            Target::Files { paths, .. } => paths.first(),
            Target::Staged { repo, .. } | Target::Range { repo, .. } => Some(repo),
            Target::History { repos } => repos.first(),
        };
        first.map_or(Path::new("."), PathBuf::as_path)
    }
}

/// Where a scan's configuration comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ConfigSource {
    /// The nearest `.keyscope.toml` at or above the first scanned path, if any.
    #[default]
    Discover,
    /// This file.
    File(PathBuf),
    /// No file: options and defaults only (reproducible CI runs).
    Isolated,
}

impl ConfigSource {
    /// The configuration for a scan that starts at `start`.
    pub fn load(&self, start: &Path) -> Result<Config, crate::config::ConfigError> {
        let path = match self {
            ConfigSource::Isolated => return Ok(Config::default()),
            ConfigSource::File(path) => Some(path.clone()),
            ConfigSource::Discover => Config::discover(start),
        };
        match path {
            Some(path) => Config::load(&path),
            None => Ok(Config::default()),
        }
    }
}

/// A key registry: names the owner of a key from the plain SHA-256 of the key (hex).
pub trait KeyOwners: Send + Sync {
    /// The owner of the key whose SHA-256 is `key_sha256`, if the registry knows it.
    fn owner(&self, key_sha256: &str) -> Option<KeyOwner>;
}

impl<F> KeyOwners for F
where
    F: Fn(&str) -> Option<KeyOwner> + Send + Sync,
{
    fn owner(&self, key_sha256: &str) -> Option<KeyOwner> {
        self(key_sha256)
    }
}

/// Builds a [`Scan`]: the target, then any options, then [`ScanBuilder::build`].
pub struct ScanBuilder {
    target: Target,
    config: ConfigSource,
    rule_files: Vec<PathBuf>,
    exclude: Vec<String>,
    honor_ignore_files: bool,
    max_file_size: Option<u64>,
    threads: usize,
    baseline: Option<PathBuf>,
    owners: Option<Box<dyn KeyOwners>>,
    progress: Option<Arc<AtomicU64>>,
    fingerprint_key: FingerprintKey,
}

impl ScanBuilder {
    /// A scan of `target` with the nearest config file and default options.
    pub fn new(target: Target) -> ScanBuilder {
        ScanBuilder {
            target,
            config: ConfigSource::Discover,
            rule_files: Vec::new(),
            exclude: Vec::new(),
            honor_ignore_files: true,
            max_file_size: None,
            threads: 0,
            baseline: None,
            owners: None,
            progress: None,
            fingerprint_key: FingerprintKey::salted(),
        }
    }

    /// Where the configuration comes from.
    pub fn config(mut self, source: ConfigSource) -> Self {
        self.config = source;
        self
    }

    /// Adds the rules of this TOML file to the built-in ones.
    pub fn rule_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.rule_files.push(path.into());
        self
    }

    /// Skips paths matching this gitignore-style glob, relative to each scanned directory (for
    /// git targets, the working tree).
    pub fn exclude(mut self, glob: impl Into<String>) -> Self {
        self.exclude.push(glob.into());
        self
    }

    /// Whether `.gitignore` and `.ignore` files exclude what they name (default: yes).
    pub fn honor_ignore_files(mut self, yes: bool) -> Self {
        self.honor_ignore_files = yes;
        self
    }

    /// Skips (and reports) files larger than this; `None` takes the config's limit.
    pub fn max_file_size(mut self, bytes: Option<u64>) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// Worker threads; `0` means one per core.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Reports only findings this baseline file does not accept.
    pub fn baseline(mut self, path: impl Into<PathBuf>) -> Self {
        self.baseline = Some(path.into());
        self
    }

    /// Names the owner of every leaked key this registry knows.
    pub fn key_owners(mut self, owners: impl KeyOwners + 'static) -> Self {
        self.owners = Some(Box::new(owners));
        self
    }

    /// Counts objects as a history sweep reads them, for a progress display.
    pub fn progress(mut self, counter: Arc<AtomicU64>) -> Self {
        self.progress = Some(counter);
        self
    }

    /// Makes fingerprints with this key (default: the built-in salted ones), so that a scan
    /// and a sweep of one organisation give a secret the same fingerprint.
    pub fn fingerprint_key(mut self, key: FingerprintKey) -> Self {
        self.fingerprint_key = key;
        self
    }

    /// Loads the configuration, rules and baseline, and compiles the rules.
    pub fn build(self) -> Result<Scan, ScanError> {
        let config = self.config.load(self.target.start())?;
        let rules = setup::rules(&self.rule_files, &config)?;
        let baseline = self.baseline.as_deref().map(setup::baseline).transpose()?;
        let flat_key = FlatKeyOptions::new(&config.environments.value, &config.services.value)?;
        let engine = Detector::new(rules)?;
        let excludes = setup::exclude_globs(&config, &self.exclude);
        Ok(Scan {
            max_file_size: self.max_file_size.unwrap_or(config.max_file_size.value),
            target: self.target,
            honor_ignore_files: self.honor_ignore_files,
            threads: self.threads,
            owners: self.owners,
            progress: self.progress,
            fingerprint_key: self.fingerprint_key,
            config,
            engine,
            baseline,
            flat_key,
            excludes,
        })
    }
}

/// A scan ready to run: its configuration loaded and its rules compiled.
pub struct Scan {
    target: Target,
    config: Config,
    engine: Detector,
    baseline: Option<Baseline>,
    flat_key: FlatKeyOptions,
    excludes: Vec<(Option<PathBuf>, String)>,
    honor_ignore_files: bool,
    max_file_size: u64,
    threads: usize,
    owners: Option<Box<dyn KeyOwners>>,
    progress: Option<Arc<AtomicU64>>,
    fingerprint_key: FingerprintKey,
}

/// How many nested repositories a warning names before it counts the rest.
const REPOSITORIES_NAMED: usize = 5;

/// The note for a directory scan that met git repositories below its roots: a walk reads
/// their working files, not their histories, and a user who scans a directory of clones
/// expects the clones' histories to have been searched.
fn unswept_histories(repositories: &[PathBuf]) -> Option<String> {
    if repositories.is_empty() {
        return None;
    }
    let mut named: Vec<String> = repositories
        .iter()
        .take(REPOSITORIES_NAMED)
        .map(|r| format!("`{}`", r.display()))
        .collect();
    if repositories.len() > REPOSITORIES_NAMED {
        named.push(format!(
            "and {} more",
            repositories.len() - REPOSITORIES_NAMED
        ));
    }
    let (count, its, history) = match repositories.len() {
        1 => ("1 git repository".to_owned(), "its", "history was"),
        n => (format!("{n} git repositories"), "their", "histories were"),
    };
    Some(format!(
        "the scan met {count} ({}): {its} working files were scanned, but {its} {history} not; \
         `keyscope sweep DIR...` (or `keyscope scan --history DIR...`) sweeps every commit",
        named.join(", ")
    ))
}

/// What a scan found and read.
#[derive(Debug, Clone, Default)]
pub struct ScanResult {
    /// The findings the baseline does not accept, flat-key findings included, sorted by
    /// location, then rule.
    pub findings: Vec<Finding>,
    /// The baseline's entries that matched nothing (the secret is gone).
    pub stale: Vec<BaselineEntry>,
    /// What was scanned and skipped.
    pub stats: WalkStats,
    /// How long reading and matching took.
    pub elapsed: Duration,
    /// Notes that do not make the scan fail (a shallow clone's incomplete history).
    pub warnings: Vec<String>,
}

impl ScanResult {
    /// Whether everything that should have been scanned was.
    pub fn complete(&self) -> bool {
        !self.stats.has_failures()
    }
}

impl Scan {
    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The rules the scan applies.
    pub fn rules(&self) -> &RuleSet {
        self.engine.rules()
    }

    /// The compiled rules: what masks keys in anything the scan shows.
    pub fn detector(&self) -> &Detector {
        &self.engine
    }

    /// How the scan makes fingerprints.
    pub fn fingerprints(&self) -> FingerprintKind {
        self.fingerprint_key.kind()
    }

    /// Reads the target and returns the final findings.
    pub fn run(&self) -> Result<ScanResult, ScanError> {
        let GitOutcome { outcome, warnings } = self.read()?;
        let ScanOutcome {
            findings,
            stats,
            elapsed,
        } = outcome;
        let mut findings = findings;
        self.fingerprint_key.apply(&mut findings);
        let (findings, stale) = self.finish(findings);
        Ok(ScanResult {
            findings,
            stale,
            stats,
            elapsed,
            warnings,
        })
    }

    fn read(&self) -> Result<GitOutcome, ScanError> {
        let engine = &self.engine;
        Ok(match &self.target {
            Target::Files { paths, stdin } => {
                let outcome = self.read_files(paths, stdin.as_deref())?;
                let warnings = unswept_histories(&outcome.stats.repositories)
                    .into_iter()
                    .collect();
                GitOutcome { outcome, warnings }
            }
            Target::Staged { repo, all } => {
                let repo = GitRepo::open(repo)?;
                crate::scan_staged(engine, &repo, *all, &Excludes::new(&self.excludes)?)?
            }
            Target::Range { repo, spec } => {
                let repo = GitRepo::open(repo)?;
                let excludes = Excludes::new(&self.excludes)?;
                crate::scan_range(engine, &repo, spec, self.max_file_size, &excludes)?
            }
            Target::History { repos } => {
                let repos = repos
                    .iter()
                    .map(GitRepo::open)
                    .collect::<Result<Vec<_>, _>>()?;
                let options = SweepOptions {
                    max_blob_size: self.max_file_size,
                    threads: self.threads,
                    progress: self.progress.clone(),
                    ..SweepOptions::default()
                };
                crate::scan_history(engine, &repos, &options)?
            }
        })
    }

    fn read_files(
        &self,
        paths: &[PathBuf],
        stdin: Option<&[u8]>,
    ) -> Result<ScanOutcome, ScanError> {
        let mut outcome = ScanOutcome::default();
        if !paths.is_empty() {
            let mut builder = FileSource::builder()
                .honor_ignore_files(self.honor_ignore_files)
                .max_file_size(self.max_file_size)
                .threads(self.threads);
            for path in paths {
                builder = builder.path(path);
            }
            for (base, glob) in &self.excludes {
                builder = match base {
                    Some(base) => builder.exclude_under(base, glob),
                    None => builder.exclude(glob),
                };
            }
            outcome = crate::scan_files(&self.engine, &builder.build()?);
        }
        if let Some(data) = stdin {
            outcome.stats.files += 1;
            outcome.stats.bytes += data.len() as u64;
            outcome
                .findings
                .extend(crate::scan_blob(&self.engine, Origin::Stdin, data));
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use keyscope_rules::Severity;

    use super::*;

    /// A synthetic Groq key.
    fn key() -> String {
        format!(
            "gsk_{}",
            &"q8Zr3LwX0pVt7KcN2bYh5MfJ1sDg4TuA9eRo6WiL".repeat(2)[..52]
        )
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.py"), format!("KEY = \"{}\"\n", key())).unwrap();
        dir
    }

    fn scan(builder: ScanBuilder) -> ScanResult {
        builder
            .config(ConfigSource::Isolated)
            .build()
            .unwrap()
            .run()
            .unwrap()
    }

    #[test]
    fn a_registered_key_names_its_owner_and_a_production_key_is_worse() {
        let dir = tree();
        let plain = scan(ScanBuilder::new(Target::paths([dir.path()])));
        assert_eq!(plain.findings[0].severity, Severity::High);
        assert_eq!(plain.findings[0].owner, None);
        let owner = KeyOwner {
            key_id: "k1".into(),
            scope: "prod/app".into(),
            production: true,
        };
        let known = plain.findings[0].key_sha256().unwrap().to_owned();
        let registry = move |sha: &str| (sha == known).then(|| owner.clone());
        let owned = scan(ScanBuilder::new(Target::paths([dir.path()])).key_owners(registry));
        assert_eq!(owned.findings[0].severity, Severity::Critical);
        assert_eq!(owned.findings[0].owner.as_ref().unwrap().key_id, "k1");
    }

    #[test]
    fn standard_input_is_its_own_origin() {
        let target = Target::Files {
            paths: Vec::new(),
            stdin: Some(format!("{}\n", key()).into_bytes()),
        };
        let result = scan(ScanBuilder::new(target));
        assert_eq!(result.stats.files, 1);
        assert_eq!(result.findings[0].location.origin, Origin::Stdin);
    }

    #[test]
    fn a_baseline_accepts_what_it_lists_and_names_what_is_gone() {
        let dir = tree();
        let first = scan(ScanBuilder::new(Target::paths([dir.path()])));
        let path = dir.path().join("baseline.json");
        std::fs::write(&path, Baseline::from_findings(&first.findings).to_json()).unwrap();
        let again =
            scan(ScanBuilder::new(Target::paths([dir.path().join("app.py")])).baseline(&path));
        assert!(again.findings.is_empty() && again.stale.is_empty());
        std::fs::write(dir.path().join("app.py"), "nothing\n").unwrap();
        let gone =
            scan(ScanBuilder::new(Target::paths([dir.path().join("app.py")])).baseline(&path));
        assert!(gone.findings.is_empty());
        assert_eq!(gone.stale.len(), 1);
    }
}
