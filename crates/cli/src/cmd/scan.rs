//! `keyscope scan`: find leaked keys in files, directories or standard input.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use keyscope_report::{ScanReport, human, json, sarif};
use keyscope_scan::baseline::Baseline;
use keyscope_scan::{Engine, Finding, ScanOutcome, scan_blob, scan_files};
use keyscope_sources::{FileSource, WalkStats};
use miette::{Context as _, IntoDiagnostic as _};

use crate::cmd::settings::{self, Settings};
use crate::exit::Exit;
use crate::out::errln;

#[path = "scan_git.rs"]
mod scan_git;
#[path = "scan_output.rs"]
mod scan_output;

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
    output: Option<PathBuf>,
    /// Scan files that .gitignore and .ignore files exclude.
    #[arg(long)]
    no_ignore: bool,
    /// Skip (and report) files larger than this: bytes, or with a K, M or G suffix
    /// [default: 64M, or the config's max_file_size].
    #[arg(long = "max-file-size", value_name = "SIZE", value_parser = keyscope_scan::config::parse_size)]
    max_file_size_flag: Option<u64>,
    /// The effective size limit: the flag, else the config, else the default.
    #[arg(skip)]
    max_file_size: u64,
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
    /// What the scan is configured with, loaded once in `run`.
    #[arg(skip)]
    pub(crate) settings: Settings,
    /// Write the findings as a baseline to `--output` instead of a report.
    #[arg(skip)]
    pub(crate) write_baseline: bool,
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
    #[command(flatten)]
    git: scan_git::GitArgs,
}

/// Runs `keyscope scan`.
pub fn run(mut args: Args) -> miette::Result<Exit> {
    let first = args
        .paths
        .iter()
        .find(|p| p.as_os_str() != "-")
        .cloned()
        .unwrap_or_else(|| PathBuf::from("."));
    args.settings = settings::load(
        args.config.as_deref(),
        args.isolated,
        &first,
        &args.rule_files,
        args.baseline.as_deref(),
        args.store.as_deref(),
    )?;
    args.max_file_size = args
        .max_file_size_flag
        .unwrap_or(args.settings.config.max_file_size.value);
    args.threads = scan_output::clamp_threads(args.threads);
    let engine = Engine::new(args.settings.rules.clone()).into_diagnostic()?;
    if args.git.is_git() {
        return scan_git::run(&args, &engine);
    }
    let (stdin, paths): (Vec<PathBuf>, Vec<PathBuf>) = args
        .paths
        .iter()
        .cloned()
        .partition(|p| p.as_os_str() == "-");
    let mut outcome = ScanOutcome::default();
    if !paths.is_empty() {
        let mut builder = FileSource::builder()
            .honor_ignore_files(!args.no_ignore)
            .max_file_size(args.max_file_size)
            .threads(args.threads);
        for path in paths {
            builder = builder.path(path);
        }
        for (base, glob) in exclude_globs(&args) {
            builder = match base {
                Some(base) => builder.exclude_under(base, glob),
                None => builder.exclude(glob),
            };
        }
        let source = builder.build().into_diagnostic()?;
        outcome = scan_files(&engine, &source);
    }
    if !stdin.is_empty() {
        let mut data = Vec::new();
        // One byte past the limit tells that there is more, without reading all of it.
        std::io::stdin()
            .take(args.max_file_size.saturating_add(1))
            .read_to_end(&mut data)
            .into_diagnostic()
            .wrap_err("cannot read standard input")?;
        if data.len() as u64 > args.max_file_size {
            miette::bail!(
                "standard input is over the {}-byte limit (raise it with --max-file-size)",
                args.max_file_size
            );
        }
        outcome.stats.files += 1;
        outcome.stats.bytes += data.len() as u64;
        outcome.findings.extend(scan_blob(&engine, "-", &data));
    }
    emit(&args, &engine, &outcome)
}

fn emit(args: &Args, engine: &Engine, outcome: &ScanOutcome) -> miette::Result<Exit> {
    let outcome = &scan_output::masked(engine, outcome);
    let git_repos = args.git.is_git().then_some(args.paths.as_slice());
    let (findings, stale) = settings::postprocess(&args.settings, &outcome.findings, git_repos);
    if args.write_baseline {
        return write_baseline(args, &findings, outcome);
    }
    for entry in &stale {
        errln!(
            "note: baseline entry no longer found: {} {} ({})",
            entry.rule_id,
            entry.redacted,
            entry.fingerprint
        );
    }
    let report = ScanReport::new(engine.rules(), &findings, &outcome.stats, outcome.elapsed);
    let to_terminal = args.output.is_none() && std::io::stdout().is_terminal();
    let text = match args.format {
        Format::Json => json::render(&report).into_diagnostic()?,
        Format::Sarif => sarif::render(&report).into_diagnostic()?,
        Format::Human => render_human(&report, to_terminal),
    };
    // Skips that lost content are errors, and errors go to standard error in every format
    // (before the summary, which points up at them).
    report_failures(&outcome.stats);
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write the report to `{}`", path.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is the reader's choice, not an error worth a panic.
            let _ = stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush());
        }
    }
    Ok(if !report.complete() {
        Exit::Error
    } else if findings.is_empty() {
        Exit::Clean
    } else {
        Exit::Findings
    })
}

/// `keyscope baseline create`: the findings as a baseline file, not a report.
fn write_baseline(
    args: &Args,
    findings: &[Finding],
    outcome: &ScanOutcome,
) -> miette::Result<Exit> {
    report_failures(&outcome.stats);
    if outcome.stats.has_failures() {
        miette::bail!("the scan is incomplete, so no baseline was written");
    }
    let baseline = Baseline::from_findings(findings);
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BASELINE));
    std::fs::write(&path, baseline.to_json())
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write the baseline to `{}`", path.display()))?;
    errln!(
        "wrote {} entr{} to {}",
        baseline.len(),
        if baseline.len() == 1 { "y" } else { "ies" },
        path.display()
    );
    Ok(Exit::Clean)
}

/// Where `keyscope baseline create` writes without `-o`.
pub const DEFAULT_BASELINE: &str = ".keyscope-baseline.json";

/// Skips that lost content always reach standard error, whatever the format.
fn report_failures(stats: &WalkStats) {
    for skipped in stats.skipped.iter().filter(|s| s.reason.is_failure()) {
        errln!(
            "error: not scanned: {}: {}",
            human::escape_controls(&skipped.path.to_string_lossy()),
            skipped.reason
        );
    }
}

fn render_human(report: &ScanReport<'_>, to_terminal: bool) -> String {
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

/// The exclude globs with the directory each is relative to: the config file's globs to the config
/// file's directory, `--exclude` to each scanned directory (`None`; for git modes, the working
/// tree).
pub(crate) fn exclude_globs(args: &Args) -> Vec<(Option<PathBuf>, String)> {
    let config = &args.settings.config;
    let base = config.file.as_ref().map(|file| {
        file.parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    });
    let from_config = base.into_iter().flat_map(|base| {
        config
            .exclude
            .value
            .iter()
            .map(move |glob| (Some(base.clone()), glob.clone()))
    });
    from_config
        .chain(args.exclude.iter().map(|glob| (None, glob.clone())))
        .collect()
}
