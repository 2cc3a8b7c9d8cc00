//! `keyscope merge`: the JSON reports of several sweeps (the shards of one) as one report, in
//! any format: each read back into findings ([`keyscope_report::json::read`]), merged as one
//! sweep of all their repositories reports them ([`keyscope_scan::pipeline::Scan::merge`]:
//! a secret in several shards' repositories is one finding, with its cross-repository flat-key
//! finding), and rendered by the renderers a sweep uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keyscope_report::json::ReadReport;
use keyscope_report::{ScanReport, SweepFacts};
use keyscope_rules::{RuleKind, RuleSet};
use keyscope_scan::pipeline::{FingerprintKind, ScanBuilder, ScanResult, Target};
use keyscope_sources::WalkStats;
use miette::{Context as _, IntoDiagnostic as _, miette};

use super::scan::Format;
use crate::exit::Exit;
use crate::out::errln;

/// Arguments of `keyscope merge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The JSON reports of `keyscope sweep --format json`.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Output format (JSON by default: a merged report is usually kept, or merged again).
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Write the merged report to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Read settings (flat-key environments and services, rules) from this file instead of the
    /// nearest .keyscope.toml: give the sweeps' own.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Ignore config files, as sweeps run with --isolated did.
    #[arg(long, conflicts_with = "config")]
    isolated: bool,
    /// Report only findings that this baseline does not accept.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Add the rules of this TOML file to the built-in ones (repeatable): the sweeps' own.
    #[arg(long = "rules", value_name = "FILE")]
    rule_files: Vec<PathBuf>,
}

/// Runs `keyscope merge`.
pub fn run(args: Args) -> miette::Result<Exit> {
    let reports = args
        .reports
        .iter()
        .map(|path| read(path))
        .collect::<miette::Result<Vec<_>>>()?;
    let fingerprints = fingerprints(&args.reports, &reports)?;
    let mut builder = ScanBuilder::new(Target::History { repos: Vec::new() }).config(
        crate::cmd::config::source(args.config.clone(), args.isolated),
    );
    for file in &args.rule_files {
        builder = builder.rule_file(file);
    }
    if let Some(path) = &args.baseline {
        builder = builder.baseline(path);
    }
    let scan = builder.build()?;
    let mut facts = SweepFacts {
        merged_reports: Some(reports.len() as u64),
        ..SweepFacts::default()
    };
    let mut stats = WalkStats::default();
    let mut elapsed = Duration::ZERO;
    let mut findings = Vec::new();
    for (path, (report, sweep)) in args.reports.iter().zip(reports) {
        known_rules(path, &report, scan.rules())?;
        facts.summary.absorb(sweep.summary);
        facts.previously_reported.extend(sweep.previously_reported);
        stats.absorb(report.stats);
        // The shards ran side by side: the merged sweep took as long as the slowest.
        elapsed = elapsed.max(report.elapsed);
        findings.extend(report.findings);
    }
    let (findings, stale) = scan.merge(findings);
    for entry in &stale {
        errln!(
            "note: baseline entry no longer found: {} {} ({})",
            entry.rule_id,
            entry.redacted,
            entry.fingerprint
        );
    }
    let result = shown(
        scan.detector(),
        ScanResult {
            findings,
            stats,
            elapsed,
            ..ScanResult::default()
        },
    );
    let report = ScanReport::new(
        scan.rules(),
        &result.findings,
        &result.stats,
        result.elapsed,
    )
    .with_fingerprints(fingerprints)
    .with_sweep(&facts);
    super::sweep::write(&report, args.format, args.output.as_deref())
}

/// One sweep's report, read back, with its sweep facts; anything else is an error that names
/// the file.
fn read(path: &Path) -> miette::Result<(ReadReport, SweepFacts)> {
    let text = std::fs::read_to_string(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the report `{}`", path.display()))?;
    let mut report = keyscope_report::json::read(&text).wrap_err_with(|| {
        format!(
            "`{}` is not a report `keyscope merge` reads",
            path.display()
        )
    })?;
    let sweep = report.sweep.take().ok_or_else(|| {
        miette!(
            "`{}` is the report of a scan, not of a sweep: `keyscope merge` combines the reports \
             of `keyscope sweep --format json`",
            path.display()
        )
    })?;
    Ok((report, sweep))
}

/// How every report's fingerprints were made: all alike, or they would not match.
fn fingerprints(
    paths: &[PathBuf],
    reports: &[(ReadReport, SweepFacts)],
) -> miette::Result<FingerprintKind> {
    let first = reports
        .first()
        .map_or(FingerprintKind::Salted, |(r, _)| r.fingerprints);
    match paths
        .iter()
        .zip(reports)
        .find(|(_, (r, _))| r.fingerprints != first)
    {
        None => Ok(first),
        Some((path, (r, _))) => Err(miette!(
            "the reports' fingerprints were made differently (`{}` has {}, `{}` has {}): give \
             every shard the same KEYSCOPE_FINGERPRINT_KEY",
            paths[0].display(),
            first.name(),
            path.display(),
            r.fingerprints.name()
        )),
    }
}

/// Every finding's rule is one this merge knows, so that its help and its SARIF rule are the
/// sweep's: a sweep with rules of its own needs them given to the merge too.
fn known_rules(path: &Path, report: &ReadReport, rules: &RuleSet) -> miette::Result<()> {
    match report
        .findings
        .iter()
        .filter(|f| f.kind != RuleKind::Correlation)
        .find(|f| rules.get(&f.rule_id).is_none())
    {
        None => Ok(()),
        Some(f) => Err(miette!(
            "`{}` has findings of the rule `{}`, which this merge does not know: give `keyscope \
             merge` the --rules and --config the sweeps had",
            path.display(),
            f.rule_id
        )),
    }
}

/// The merged result made safe to show: a report is a file anyone may have edited, so its
/// paths, authors and snippets are masked again as a sweep masks them.
fn shown(detector: &keyscope_scan::Detector, result: ScanResult) -> ScanResult {
    let mut result = super::scan::masked(detector, result);
    for finding in &mut result.findings {
        // Masking keeps the length, so the highlight still points at the same characters.
        finding.snippet.text = keyscope_scan::mask_secrets(detector, &finding.snippet.text);
        finding.redacted = keyscope_scan::mask_secrets(detector, &finding.redacted);
    }
    result
}
