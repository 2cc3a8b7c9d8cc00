//! `keyscope scan`: find leaked keys in files, directories, standard input or git repositories.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use keyscope_policy::Scopes;
use keyscope_report::{ScanReport, human, json, sarif};
use keyscope_scan::KeyOwner;
use keyscope_scan::pipeline::{KeyOwners, Scan, ScanBuilder, ScanResult, Target};
use keyscope_sources::WalkStats;
use miette::{Context as _, IntoDiagnostic as _};

use crate::exit::Exit;
use crate::out::errln;

#[path = "scan_output.rs"]
mod scan_output;

pub(crate) use scan_output::{clamp_threads, fingerprint_key, masked};

/// The policy store used when `--store` is not given, if it exists.
const DEFAULT_STORE: &str = "policies";

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Diagnostics for people, with the secret masked.
    Human,
    /// Versioned JSON (schema: crates/report/report-v1.schema.json).
    Json,
    /// SARIF 2.1.0, for GitHub code scanning.
    Sarif,
}

/// Arguments of `keyscope scan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files and directories to scan; `-` reads standard input.
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Scan files that .gitignore and .ignore files exclude.
    #[arg(long)]
    no_ignore: bool,
    /// Skip (and report) files larger than this: bytes, or with a K, M or G suffix
    /// [default: 64M, or the config's max_file_size].
    #[arg(long, value_name = "SIZE", value_parser = keyscope_scan::config::parse_size)]
    max_file_size: Option<u64>,
    /// Read settings from this file instead of the nearest .keyscope.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Ignore config files: flags and defaults only (for reproducible CI runs).
    #[arg(long, conflicts_with = "config")]
    isolated: bool,
    /// Report only findings that this baseline does not accept, and list its stale entries.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// The policy store whose key registry names the scope of a leaked key [default:
    /// ./policies, when it exists].
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// The budget ledger whose key registry names keyscope keys [default: the store's
    /// `ledger.sqlite`, when it exists]: a SQLite file or a Redis URL.
    #[arg(long, value_name = "PATH|URL")]
    ledger: Option<String>,
    /// After the scan, respond to every leaked key (as `keyscope respond` does) instead of
    /// reporting the findings: whose key, its use since the leak, its reach, what to do.
    #[arg(long)]
    pub(crate) respond: bool,
    #[command(flatten)]
    pub(crate) respond_args: crate::cmd::respond::RespondArgs,
    /// Exclude paths matching this gitignore-style glob, relative to each scanned directory
    /// (repeatable). The config file's `exclude` globs are relative to the config file.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Add the rules of this TOML file to the built-in ones (repeatable).
    #[arg(long = "rules", value_name = "FILE")]
    rule_files: Vec<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Make fingerprints with the key in this file [default: $KEYSCOPE_FINGERPRINT_KEY;
    /// without either, the built-in salted ones], as `keyscope sweep` does.
    #[arg(long, value_name = "FILE")]
    fingerprint_key_file: Option<PathBuf>,
    #[command(flatten)]
    git: GitArgs,
}

/// The git modes of `keyscope scan`.
#[derive(Debug, Clone, clap::Args)]
struct GitArgs {
    /// Scan every object in each repository's database (the paths name repositories): all
    /// branches, tags, stashes and unreachable objects, and every commit and tag message.
    #[arg(long, conflicts_with_all = ["staged", "range"])]
    history: bool,
    /// Scan what the next commit would add: the index (`$GIT_INDEX_FILE` when set), for
    /// pre-commit hooks.
    #[arg(long, conflicts_with = "range")]
    staged: bool,
    /// Scan what the commits of `BASE..HEAD` introduce, merges included (for CI); `REV` alone
    /// means every commit it reaches, as in `git log REV`.
    #[arg(long, value_name = "BASE..HEAD")]
    range: Option<String>,
    /// With --staged: also report secrets that HEAD's version of the file already holds.
    #[arg(long, requires = "staged")]
    all: bool,
}

/// Runs `keyscope scan`.
pub fn run(args: Args) -> miette::Result<Exit> {
    if !args.respond && (args.respond_args.revoke || args.respond_args.audit_log.is_some()) {
        miette::bail!("--revoke, --rotate and --audit-log act on a response: add --respond");
    }
    if args.respond && args.format == Format::Sarif {
        miette::bail!("a response is human, JSON or (with `keyscope respond`) Markdown, not SARIF");
    }
    let (scan, result) = scan(&args)?;
    let result = scan_output::masked(scan.detector(), result);
    if args.respond {
        return respond(&args, &result);
    }
    for entry in &result.stale {
        errln!(
            "note: baseline entry no longer found: {} {} ({})",
            entry.rule_id,
            entry.redacted,
            entry.fingerprint
        );
    }
    let report = ScanReport::new(
        scan.rules(),
        &result.findings,
        &result.stats,
        result.elapsed,
    )
    .with_fingerprints(scan.fingerprints());
    let to_terminal = args.output.is_none() && std::io::stdout().is_terminal();
    let text = match args.format {
        Format::Json => json::render(&report).into_diagnostic()?,
        Format::Sarif => sarif::render(&report).into_diagnostic()?,
        Format::Human => render_human(&report, to_terminal),
    };
    // Skips that lost content are errors, and errors go to standard error in every format
    // (before the summary, which points up at them).
    report_failures(&result.stats);
    write_report(args.output.as_deref(), &text)?;
    Ok(if !result.complete() {
        Exit::Error
    } else if result.findings.is_empty() {
        Exit::Clean
    } else {
        Exit::Findings
    })
}

/// Responds to the leaks a scan found; an incomplete scan is still exit 2.
fn respond(args: &Args, result: &ScanResult) -> miette::Result<Exit> {
    use crate::cmd::respond::{self, Responder};
    report_failures(&result.stats);
    let store_dir = args
        .store
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE));
    let engine = keyscope_policy::Engine::load(&store_dir).map_err(miette::Report::new)?;
    let ledger = match &args.ledger {
        Some(url) if keyscope_policy::Ledger::is_redis_url(url) => {
            crate::cmd::policy::LedgerLocation::Redis(url.clone())
        }
        Some(path) => crate::cmd::policy::LedgerLocation::File(PathBuf::from(path)),
        None => {
            crate::cmd::policy::LedgerLocation::File(store_dir.join(keyscope_policy::LEDGER_FILE))
        }
    }
    .open()?;
    let repo = args.git.history.then(|| args.paths.first()).flatten();
    let responder = Responder::new(
        &engine,
        &ledger,
        &args.respond_args,
        repo.map(PathBuf::as_path),
    );
    let format = match args.format {
        Format::Json => respond::Format::Json,
        _ => respond::Format::Human,
    };
    let leaks = respond::leaks_of(&result.findings);
    let exit = respond::respond_and_print(&responder, &leaks, format, args.output.as_deref())?;
    Ok(if result.complete() { exit } else { Exit::Error })
}

/// Runs the scan that `args` describe, showing progress and warnings on standard error.
pub fn scan(args: &Args) -> miette::Result<(Scan, ScanResult)> {
    let mut builder = ScanBuilder::new(target(args)?)
        .config(crate::cmd::config::source(
            args.config.clone(),
            args.isolated,
        ))
        .honor_ignore_files(!args.no_ignore)
        .max_file_size(args.max_file_size)
        .threads(scan_output::clamp_threads(args.threads))
        .fingerprint_key(fingerprint_key(args.fingerprint_key_file.as_deref())?);
    for glob in &args.exclude {
        builder = builder.exclude(glob);
    }
    for file in &args.rule_files {
        builder = builder.rule_file(file);
    }
    if let Some(path) = &args.baseline {
        builder = builder.baseline(path);
    }
    if let Some(owners) = key_owners(args.store.as_deref(), args.ledger.as_deref())? {
        builder = builder.key_owners(owners);
    }
    let progress = Arc::new(AtomicU64::new(0));
    if args.git.history {
        builder = builder.progress(Arc::clone(&progress));
    }
    let scan = builder.build()?;
    let result = if args.git.history {
        with_progress(&progress, || scan.run())
    } else {
        scan.run()
    }?;
    for warning in &result.warnings {
        // A warning can name a path the user typed, and that may be a key.
        let warning = keyscope_scan::mask_secrets(scan.detector(), warning);
        errln!("warning: {}", human::escape_controls(&warning));
    }
    Ok((scan, result))
}

/// What the arguments name: a git mode's repositories, or files and standard input.
fn target(args: &Args) -> miette::Result<Target> {
    let first = || args.paths.first().cloned().unwrap_or_else(|| ".".into());
    let git = &args.git;
    Ok(if git.history {
        Target::History {
            repos: args.paths.clone(),
        }
    } else if let Some(spec) = &git.range {
        Target::Range {
            repo: first(),
            spec: spec.clone(),
        }
    } else if git.staged {
        Target::Staged {
            repo: first(),
            all: git.all,
        }
    } else {
        let (stdin, paths): (Vec<PathBuf>, Vec<PathBuf>) = args
            .paths
            .iter()
            .cloned()
            .partition(|p| p.as_os_str() == "-");
        let stdin = match stdin.is_empty() {
            true => None,
            false => Some(read_stdin(
                args.max_file_size
                    .unwrap_or(keyscope_sources::DEFAULT_MAX_FILE_SIZE),
            )?),
        };
        Target::Files { paths, stdin }
    })
}

/// Standard input, up to `limit` bytes: more is an error, not memory filled.
fn read_stdin(limit: u64) -> miette::Result<Vec<u8>> {
    let mut data = Vec::new();
    // One byte past the limit tells that there is more, without reading all of it.
    std::io::stdin()
        .take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .into_diagnostic()
        .wrap_err("cannot read standard input")?;
    if data.len() as u64 > limit {
        miette::bail!(
            "standard input is over the {limit}-byte limit (raise it with --max-file-size)"
        );
    }
    Ok(data)
}

/// The key registries, which name the owner of a leaked key: the store's `scopes.toml`
/// (provider keys by fingerprint) and the ledger's (keyscope keys by hash).
fn key_owners(
    store: Option<&Path>,
    ledger: Option<&str>,
) -> miette::Result<Option<impl KeyOwners + 'static>> {
    let dir = match store {
        Some(dir) => Some(dir.to_path_buf()),
        // Without --store, the default store is used when there is one.
        None if Path::new(DEFAULT_STORE).join("scopes.toml").is_file() => {
            Some(PathBuf::from(DEFAULT_STORE))
        }
        None => None,
    };
    let scopes = dir
        .as_deref()
        .map(|dir| {
            Scopes::load_from_store(dir)
                .wrap_err_with(|| format!("cannot load the key registry of `{}`", dir.display()))
        })
        .transpose()?;
    let mut issued = issued_keys(dir.as_deref(), ledger)?;
    for owner in issued.values_mut() {
        owner.production = scopes
            .as_ref()
            .and_then(|s| s.scope(&owner.scope))
            .and_then(|s| s.environment)
            == Some(keyscope_policy::Environment::Production);
    }
    if scopes.is_none() && issued.is_empty() {
        return Ok(None);
    }
    Ok(Some(move |key_sha256: &str| {
        if let Some(owner) = issued.get(key_sha256) {
            return Some(owner.clone());
        }
        let info = scopes.as_ref()?.scope_for_key_fingerprint(key_sha256)?;
        Some(KeyOwner {
            key_id: info.key_id,
            scope: info.scope,
            production: info.production,
        })
    }))
}

/// The keyscope keys of the ledger's registry by secret hash: the `--ledger` given, or the
/// store's ledger file when it exists (a scan never creates one).
fn issued_keys(
    store: Option<&Path>,
    ledger: Option<&str>,
) -> miette::Result<std::collections::HashMap<String, KeyOwner>> {
    use crate::cmd::policy::LedgerLocation;
    let location = match (ledger, store) {
        (Some(url), _) if keyscope_policy::Ledger::is_redis_url(url) => {
            LedgerLocation::Redis(url.to_owned())
        }
        (Some(path), _) => LedgerLocation::File(PathBuf::from(path)),
        (None, Some(dir)) => LedgerLocation::File(dir.join(keyscope_policy::LEDGER_FILE)),
        (None, None) => return Ok(Default::default()),
    };
    if !location.exists() {
        return match ledger {
            Some(_) => Err(miette::miette!(
                "no budget ledger at `{}`",
                location.display()
            )),
            None => Ok(Default::default()),
        };
    }
    let opened = location.open()?;
    Ok(opened
        .keys()
        .map_err(miette::Report::new)?
        .into_iter()
        .filter_map(|record| {
            let hash = record.hash.clone()?;
            Some((
                hash,
                KeyOwner {
                    // Set from the scope's environment by the caller.
                    production: false,
                    key_id: record.id,
                    scope: record.scope,
                },
            ))
        })
        .collect())
}

pub(crate) fn write_report(output: Option<&Path>, text: &str) -> miette::Result<()> {
    match output {
        Some(path) => std::fs::write(path, text)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write the report to `{}`", path.display())),
        // A closed pipe (`| head`) is the reader's choice, not an error worth a panic.
        None => crate::out::stdout(text),
    }
}

/// Skips that lost content always reach standard error, whatever the format.
pub fn report_failures(stats: &WalkStats) {
    for skipped in stats.skipped.iter().filter(|s| s.reason.is_failure()) {
        errln!(
            "error: not scanned: {}: {}",
            human::escape_controls(&skipped.place.to_string()),
            skipped.reason
        );
    }
}

pub(crate) fn render_human(report: &ScanReport<'_>, to_terminal: bool) -> String {
    let color = to_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let width = if to_terminal { 100 } else { 120 };
    let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(width);
    let mut out = String::new();
    for diagnostic in human::diagnostics(report) {
        if handler.render_report(&mut out, &diagnostic).is_err() {
            out.push_str(&format!("{diagnostic}\n"));
        }
        out.push('\n');
    }
    out.push_str(&human::summary(report));
    out
}

/// Shows a count of objects read on standard error while `work` runs, when standard error is
/// a terminal.
fn with_progress<T>(count: &AtomicU64, work: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let mut stderr = std::io::stderr().lock();
                let _ = write!(
                    stderr,
                    "\rscanning git history: {} objects",
                    count.load(Ordering::Relaxed)
                );
                let _ = stderr.flush();
            }
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        result
    })
}
