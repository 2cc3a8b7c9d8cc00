//! `keyscope sweep`: the whole history of many repositories, incrementally against a state
//! directory, split into shards for a batch system, with a coverage record per repository.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use keyscope_report::{ScanReport, SweepFacts, human, json, sarif};
use keyscope_scan::pipeline::{Coverage, CoverageStatus, ScanBuilder, SweepRepo, Target};
use miette::{Context as _, IntoDiagnostic as _, miette};
use sha2::{Digest, Sha256};

use super::scan::Format;
use crate::exit::Exit;
use crate::out::errln;

/// Arguments of `keyscope sweep`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Repositories: paths, or git URLs (cloned into --cache, or STATE/clones).
    repos: Vec<String>,
    /// Also sweep the repositories listed in this file, one a line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    list: Option<PathBuf>,
    /// Record what was read here, and read only what is new on the next sweep.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Sweep only shard K of N (K from 0, as a Kubernetes Indexed Job's JOB_COMPLETION_INDEX):
    /// the repositories whose identity hashes to K.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    shard: Option<Shard>,
    /// Where URLs are cloned (mirrors, fetched again on each sweep) [default: STATE/clones].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Write the JSON-lines coverage log here [default: OUTPUT.coverage.jsonl, else
    /// STATE/coverage.jsonl, else keyscope-coverage.jsonl].
    #[arg(long, value_name = "FILE")]
    coverage: Option<PathBuf>,
    /// Read the fingerprint key from this file [default: $KEYSCOPE_FINGERPRINT_KEY; without
    /// either, fingerprints are the built-in salted ones].
    #[arg(long, value_name = "FILE")]
    fingerprint_key_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Skip (and report) blobs larger than this: bytes, or with a K, M or G suffix.
    #[arg(long, value_name = "SIZE", value_parser = keyscope_scan::config::parse_size)]
    max_file_size: Option<u64>,
    /// Read settings from this file instead of the nearest .keyscope.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Ignore config files: flags and defaults only.
    #[arg(long, conflicts_with = "config")]
    isolated: bool,
    /// Report only findings that this baseline does not accept.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Add the rules of this TOML file to the built-in ones (repeatable).
    #[arg(long = "rules", value_name = "FILE")]
    rule_files: Vec<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Before sweeping a partial clone (`git clone --filter`), fetch from its promisor remote
    /// the objects it never fetched (with the system `git`), instead of reporting it partial.
    #[arg(long)]
    fetch_missing: bool,
}

/// One shard of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: u64,
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    let bad = || format!("`{text}` is not K/N with 0 <= K < N (for example `0/4`)");
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let index: u64 = k.trim().parse().map_err(|_| bad())?;
    let count: u64 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

impl Shard {
    /// Whether a repository belongs to this shard: a hash of its identity, so that every
    /// worker agrees without a coordinator and a repository stays in its shard.
    fn holds(&self, identity: &str) -> bool {
        let digest = Sha256::digest(identity.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) % self.count == self.index
    }
}

/// Runs `keyscope sweep`.
pub fn run(args: Args) -> miette::Result<Exit> {
    let identities = identities(&args)?;
    let repos = locate(&identities, &args)?;
    let mut log = CoverageLog::create(&coverage_path(&args))?;
    let paths: Vec<PathBuf> = repos.iter().map(|r| r.path.clone()).collect();
    let mut builder = ScanBuilder::new(Target::History { repos: paths })
        .config(crate::cmd::config::source(
            args.config.clone(),
            args.isolated,
        ))
        .max_file_size(args.max_file_size)
        .threads(super::scan::clamp_threads(args.threads))
        .fingerprint_key(super::scan::fingerprint_key(
            args.fingerprint_key_file.as_deref(),
        )?);
    for file in &args.rule_files {
        builder = builder.rule_file(file);
    }
    if let Some(path) = &args.baseline {
        builder = builder.baseline(path);
    }
    let scan = builder.build()?;
    let mut progress = Progress::new(repos.len());
    let mut on_repo = |coverage: &Coverage| {
        progress.repo_done(coverage);
        log.write(coverage);
    };
    let swept = scan.sweep(&repos, args.state.as_deref(), &mut on_repo)?;
    progress.finish();
    log.finish()?;
    let facts = SweepFacts {
        summary: swept.summary(),
        previously_reported: swept.previously_reported,
        shard: args.shard.map(|s| (s.index, s.count)),
        merged_reports: None,
    };
    let result = super::scan::masked(scan.detector(), swept.result);
    for warning in &result.warnings {
        let warning = keyscope_scan::mask_secrets(scan.detector(), warning);
        errln!("warning: {}", human::escape_controls(&warning));
    }
    let report = ScanReport::new(
        scan.rules(),
        &result.findings,
        &result.stats,
        result.elapsed,
    )
    .with_fingerprints(swept.fingerprints)
    .with_sweep(&facts);
    write(&report, args.format, args.output.as_deref())
}

/// Renders a sweep's (or a merge's) report in `format` and writes it to `output` or standard
/// output; the exit code says whether it is complete and found anything.
pub(crate) fn write(
    report: &ScanReport<'_>,
    format: Format,
    output: Option<&Path>,
) -> miette::Result<Exit> {
    let text = match format {
        Format::Json => json::render(report).into_diagnostic()?,
        Format::Sarif => sarif::render(report).into_diagnostic()?,
        Format::Human => {
            let to_terminal = output.is_none() && std::io::stdout().is_terminal();
            super::scan::render_human(report, to_terminal)
        }
    };
    super::scan::report_failures(report.stats);
    super::scan::write_report(output, &text)?;
    Ok(if !report.complete() {
        Exit::Error
    } else if report.findings.is_empty() {
        Exit::Clean
    } else {
        Exit::Findings
    })
}

/// The repositories named on the command line and in `--list`, in order, each once, then
/// those of this shard.
fn identities(args: &Args) -> miette::Result<Vec<String>> {
    let mut all = args.repos.clone();
    if let Some(list) = &args.list {
        let text = std::fs::read_to_string(list)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read the repository list `{}`", list.display()))?;
        all.extend(
            text.lines()
                .map(|l| l.split_once('#').map_or(l, |(before, _)| before).trim())
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    let mut seen = std::collections::HashSet::new();
    all.retain(|r| seen.insert(r.clone()));
    if all.is_empty() {
        return Err(miette!(
            "no repositories to sweep: name them, or list them with --list FILE"
        ));
    }
    Ok(match args.shard {
        Some(shard) => all.into_iter().filter(|r| shard.holds(r)).collect(),
        None => all,
    })
}

/// Whether a repository is named by a URL rather than a path.
fn is_url(identity: &str) -> bool {
    identity.contains("://")
        || (identity.contains(':') && identity.contains('@') && !Path::new(identity).exists())
}

/// Each repository on disk: a path as it is, a URL cloned (or fetched) into the cache.
fn locate(identities: &[String], args: &Args) -> miette::Result<Vec<SweepRepo>> {
    let cache = args
        .cache
        .clone()
        .or_else(|| args.state.as_ref().map(|s| s.join("clones")));
    let mut repos = Vec::new();
    for identity in identities {
        let path = if is_url(identity) {
            let cache = cache.as_deref().ok_or_else(|| {
                miette!("`{identity}` is a URL: give --cache DIR or --state DIR to clone it into")
            })?;
            fetch(identity, cache)
        } else {
            PathBuf::from(identity)
        };
        if args.fetch_missing {
            fetch_missing(identity, &path);
        }
        repos.push(SweepRepo {
            identity: identity.clone(),
            path,
        });
    }
    Ok(repos)
}

/// A mirror clone of `url` under `cache`, fetched again when it is already there. A failed
/// clone or fetch leaves the repository to fail (or be partial) in the sweep, which records
/// it, rather than stopping the other repositories.
fn fetch(url: &str, cache: &Path) -> PathBuf {
    let digest = Sha256::digest(url.as_bytes());
    let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let dir = cache.join(name);
    let status = if dir.join("HEAD").exists() {
        Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(["remote", "update", "--prune"])
            .output()
    } else {
        let _ = std::fs::create_dir_all(cache);
        Command::new("git")
            .args(["clone", "--quiet", "--mirror", "--", url])
            .arg(&dir)
            .output()
    };
    match status {
        Ok(out) if out.status.success() => {}
        Ok(out) => errln!(
            "warning: git could not fetch `{url}`: {}",
            human::escape_controls(String::from_utf8_lossy(&out.stderr).trim())
        ),
        Err(e) => errln!("warning: cannot run git to fetch `{url}`: {e}"),
    }
    dir
}

/// Fetches the objects that a partial clone's commits and trees name but that it never
/// fetched, from its promisor remote, as git fetches them on demand. A failure is a warning:
/// the sweep then finds the objects missing and reports the repository partial.
fn fetch_missing(identity: &str, repo: &Path) {
    // Not a partial clone (or not a repository, which the sweep reports): nothing to fetch.
    let Some(remote) = promisor_remote(repo) else {
        return;
    };
    let fetched = missing_objects(repo).and_then(|missing| {
        if missing.is_empty() {
            return Ok(());
        }
        let fetch = [
            "-c",
            "fetch.negotiationAlgorithm=noop",
            "fetch",
            "--quiet",
            &remote,
            "--no-tags",
            "--no-write-fetch-head",
            "--recurse-submodules=no",
            "--filter=blob:none",
            "--stdin",
        ];
        git_with_input(repo, &fetch, missing.concat().as_bytes()).map(|_| ())
    });
    if let Err(e) = fetched {
        errln!(
            "warning: cannot fetch the objects `{identity}` lacks from `{remote}`: {}",
            human::escape_controls(&crate::mask(e))
        );
    }
}

/// A partial clone's promisor remote: the one `extensions.partialClone` names, or the first
/// marked `remote.NAME.promisor` (what git writes since 2.x).
fn promisor_remote(repo: &Path) -> Option<String> {
    let named = git_with_input(repo, &["config", "--get", "extensions.partialClone"], b"").ok();
    if let Some(name) = named.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) {
        return Some(name);
    }
    let marked = [
        "config",
        "--bool",
        "--get-regexp",
        r"^remote\..*\.promisor$",
    ];
    git_with_input(repo, &marked, b"")
        .ok()?
        .lines()
        .filter_map(|line| line.strip_suffix(" true"))
        .find_map(|key| key.strip_prefix("remote.")?.strip_suffix(".promisor"))
        .map(str::to_owned)
}

/// The objects that the repository's history names and that it lacks, one id and newline each.
fn missing_objects(repo: &Path) -> Result<Vec<String>, String> {
    let listed = git_with_input(
        repo,
        &[
            "rev-list",
            "--objects",
            "--all",
            "--reflog",
            "--missing=print",
        ],
        b"",
    )?;
    Ok(listed
        .lines()
        .filter_map(|l| l.strip_prefix('?'))
        .map(|id| format!("{id}\n"))
        .collect())
}

/// Runs `git -C REPO ARGS` with `input` on its standard input: its standard output, or what
/// went wrong.
fn git_with_input(repo: &Path, args: &[&str], input: &[u8]) -> Result<String, String> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| format!("cannot write to git: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("git failed: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn coverage_path(args: &Args) -> PathBuf {
    if let Some(path) = &args.coverage {
        return path.clone();
    }
    if let Some(output) = &args.output {
        let mut name = output.as_os_str().to_owned();
        name.push(".coverage.jsonl");
        return name.into();
    }
    match &args.state {
        Some(state) => state.join("coverage.jsonl"),
        None => PathBuf::from("keyscope-coverage.jsonl"),
    }
}

/// The coverage log: one JSON line per repository, written as each one ends, so that a
/// killed sweep's log still says what it covered.
struct CoverageLog {
    path: PathBuf,
    file: std::fs::File,
    error: Option<std::io::Error>,
}

impl CoverageLog {
    fn create(path: &Path) -> miette::Result<CoverageLog> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot open the coverage log `{}`", path.display()))?;
        Ok(CoverageLog {
            path: path.to_path_buf(),
            file,
            error: None,
        })
    }

    fn write(&mut self, coverage: &Coverage) {
        let line = format!("{}\n", coverage_json(coverage));
        if self.error.is_none()
            && let Err(e) = self
                .file
                .write_all(line.as_bytes())
                .and_then(|()| self.file.sync_data())
        {
            self.error = Some(e);
        }
    }

    fn finish(self) -> miette::Result<()> {
        match self.error {
            None => Ok(()),
            Some(e) => Err(miette!(
                "cannot write the coverage log `{}`: {e}",
                self.path.display()
            )),
        }
    }
}

/// One coverage record as a JSON line.
fn coverage_json(c: &Coverage) -> serde_json::Value {
    let (status, error) = match &c.status {
        CoverageStatus::Complete => ("complete", None),
        CoverageStatus::Partial => ("partial", None),
        CoverageStatus::Failed(e) => ("failed", Some(e.clone())),
    };
    let refs: serde_json::Map<String, serde_json::Value> = c
        .refs
        .iter()
        .map(|(name, id)| (name.clone(), id.to_string().into()))
        .collect();
    let skipped: Vec<serde_json::Value> = c
        .skipped
        .iter()
        .map(|s| {
            serde_json::json!({
                "object": s.place.to_string(),
                "reason": s.reason.to_string(),
                "failure": s.reason.is_failure(),
            })
        })
        .collect();
    let text = serde_json::json!({
        "repository": c.repository,
        "started": rfc3339(c.started),
        "ended": rfc3339(c.ended),
        "status": status,
        "error": error,
        "refs": refs,
        "objects_read": c.objects_read,
        "objects_from_state": c.objects_from_state,
        "blobs_deduplicated": c.blobs_deduplicated,
        "bytes": c.bytes,
        "skipped": skipped,
    })
    .to_string();
    // A repository's path or an author can hold a key; the log is an output like any other.
    serde_json::from_str(&crate::mask(text)).unwrap_or_default()
}

/// A time as RFC 3339 in UTC, to the millisecond.
fn rfc3339(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// A progress bar on standard error while repositories are swept, when it is a terminal.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    objects: u64,
    bytes: u64,
    started: std::time::Instant,
}

impl Progress {
    fn new(total: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            let style = indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} repositories, {msg} [{elapsed}, {eta} left]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar
        });
        Progress {
            bar,
            objects: 0,
            bytes: 0,
            started: std::time::Instant::now(),
        }
    }

    fn repo_done(&mut self, coverage: &Coverage) {
        let Some(bar) = &self.bar else { return };
        self.objects += coverage.objects_read;
        self.bytes += coverage.bytes;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{} objects, {}/s",
            self.objects,
            indicatif::HumanBytes((self.bytes as f64 / secs) as u64)
        ));
        bar.inc(1);
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_repositories_between_them_once_each() {
        let repos: Vec<String> = (0..100).map(|i| format!("file:///repos/r{i}")).collect();
        let shards: Vec<Shard> = (0..4)
            .map(|k| parse_shard(&format!("{k}/4")).unwrap())
            .collect();
        for repo in &repos {
            assert_eq!(shards.iter().filter(|s| s.holds(repo)).count(), 1);
        }
        assert!(shards.iter().all(|s| repos.iter().any(|r| s.holds(r))));
        for bad in ["4/4", "1/0", "x/2", "2"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc_3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_208_650_123);
        assert_eq!(rfc3339(t), "2026-12-02T10:50:50.123Z");
    }
}
