//! `keyscope scan`: find leaked keys in files, directories or standard input.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use keyscope_report::{ScanReport, human, json, sarif};
use keyscope_scan::{Engine, ScanOutcome, scan_blob, scan_files};
use keyscope_sources::{FileSource, WalkStats};
use miette::{Context as _, IntoDiagnostic as _};

use crate::cmd::rules::load_rules;
use crate::exit::Exit;

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
    /// Skip (and report) files larger than this: bytes, or with a K, M or G suffix.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "64M")]
    max_file_size: u64,
    /// Exclude paths matching this gitignore-style glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Add the rules of this TOML file to the built-in ones (repeatable).
    #[arg(long = "rules", value_name = "FILE")]
    rule_files: Vec<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Parses `123`, `64K`, `64M`, `1G` (binary multiples).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 10),
        Some((i, 'm' | 'M')) => (&text[..i], 20),
        Some((i, 'g' | 'G')) => (&text[..i], 30),
        _ => (text, 0),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (examples: 1048576, 512K, 64M, 1G)"))?;
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Runs `keyscope scan`.
pub fn run(args: Args) -> miette::Result<Exit> {
    let rules = load_rules(&args.rule_files)?;
    let engine = Engine::new(rules).into_diagnostic()?;
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
        for glob in &args.exclude {
            builder = builder.exclude(glob.clone());
        }
        let source = builder.build().into_diagnostic()?;
        outcome = scan_files(&engine, &source);
    }
    if !stdin.is_empty() {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .into_diagnostic()
            .wrap_err("cannot read standard input")?;
        outcome.stats.files += 1;
        outcome.stats.bytes += data.len() as u64;
        outcome.findings.extend(scan_blob(&engine, "-", &data));
    }
    emit(&args, &engine, &outcome)
}

fn emit(args: &Args, engine: &Engine, outcome: &ScanOutcome) -> miette::Result<Exit> {
    let report = ScanReport::new(
        engine.rules(),
        &outcome.findings,
        &outcome.stats,
        outcome.elapsed,
    );
    let to_terminal = args.output.is_none() && std::io::stdout().is_terminal();
    let text = match args.format {
        Format::Json => json::render(&report).into_diagnostic()?,
        Format::Sarif => sarif::render(&report).into_diagnostic()?,
        Format::Human => render_human(&report, to_terminal),
    };
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
    if args.format != Format::Human || args.output.is_some() {
        report_failures(&outcome.stats);
    }
    Ok(if !report.complete() {
        Exit::Error
    } else if outcome.findings.is_empty() {
        Exit::Clean
    } else {
        Exit::Findings
    })
}

/// Skips that lost content always reach standard error, whatever the format.
fn report_failures(stats: &WalkStats) {
    for skipped in stats.skipped.iter().filter(|s| s.reason.is_failure()) {
        eprintln!(
            "error: not scanned: {}: {}",
            skipped.path.display(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(
            parse_size("64M"),
            Ok(keyscope_sources::DEFAULT_MAX_FILE_SIZE)
        );
        assert_eq!(parse_size("2k"), Ok(2048));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
