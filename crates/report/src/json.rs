//! The JSON report, format version 1. Its schema is `report-v1.schema.json` beside this crate
//! (JSON Schema draft 2020-12), and a test checks every report against it.
//!
//! Compatibility: fields may be added within version 1; renaming or removing one, or changing
//! its meaning, bumps `version`.

use serde::Serialize;

use crate::{ReportError, ScanReport, TOOL_VERSION};

/// The JSON Schema of format version 1.
pub const SCHEMA: &str = include_str!("../report-v1.schema.json");

#[derive(Serialize)]
struct Report<'a> {
    version: u32,
    tool: Tool,
    summary: Summary,
    findings: Vec<JsonFinding<'a>>,
    skipped: Vec<JsonSkipped>,
}

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Summary {
    files_scanned: u64,
    bytes_scanned: u64,
    binary_files_skipped: u64,
    skipped: usize,
    ignored: u64,
    findings: usize,
    duration_ms: u128,
    complete: bool,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    kind: &'static str,
    rule_id: &'a str,
    rule_name: &'a str,
    provider: &'a str,
    severity: &'a str,
    path: String,
    line: usize,
    column: usize,
    end_column: usize,
    redacted: &'a str,
    fingerprint: &'a str,
    encoding: Option<&'static str>,
    snippet: &'a str,
    help: String,
    commit: Option<JsonCommit<'a>>,
    scope: Option<&'a str>,
    /// The registered key the secret is (keyscope's registry or `scopes.toml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    /// For a history sweep: whether the secret is still in HEAD's tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    at_head: Option<bool>,
    locations: Vec<JsonLocation<'a>>,
}

#[derive(Serialize)]
struct JsonCommit<'a> {
    id: &'a str,
    author: &'a str,
    time: i64,
    summary: &'a str,
}

#[derive(Serialize)]
struct JsonLocation<'a> {
    path: String,
    line: usize,
    column: usize,
    end_column: usize,
    commit: Option<JsonCommit<'a>>,
}

fn commit(location: &keyscope_scan::Location) -> Option<JsonCommit<'_>> {
    location.commit().map(|c| JsonCommit {
        id: &c.id,
        author: &c.author,
        time: c.time,
        summary: &c.summary,
    })
}

#[derive(Serialize)]
struct JsonSkipped {
    path: String,
    kind: &'static str,
    reason: String,
    failure: bool,
}

fn skip_kind(reason: &keyscope_sources::SkipReason) -> &'static str {
    use keyscope_sources::SkipReason;
    match reason {
        SkipReason::Binary => "binary",
        SkipReason::TooLarge { .. } => "too-large",
        SkipReason::Unreadable(_) => "unreadable",
        SkipReason::BrokenSymlink { .. } => "broken-symlink",
        SkipReason::NotFound => "not-found",
        SkipReason::Ignored => "ignored",
        SkipReason::NotAFile { .. } => "not-a-file",
        SkipReason::SymlinkOutsideTree => "symlink-outside-tree",
    }
}

/// Renders the report as pretty-printed JSON.
pub fn render(report: &ScanReport<'_>) -> Result<String, ReportError> {
    let value = Report {
        version: 1,
        tool: Tool {
            name: "keyscope",
            version: TOOL_VERSION,
        },
        summary: Summary {
            files_scanned: report.stats.files,
            bytes_scanned: report.stats.bytes,
            binary_files_skipped: report.stats.binary,
            skipped: report.stats.skipped.len(),
            ignored: report.ignored_paths(),
            findings: report.findings.len(),
            duration_ms: report.elapsed.as_millis(),
            complete: report.complete(),
        },
        findings: report
            .findings
            .iter()
            .map(|f| JsonFinding {
                kind: match f.kind {
                    keyscope_rules::RuleKind::Secret => "secret",
                    keyscope_rules::RuleKind::Usage => "usage",
                    keyscope_rules::RuleKind::Correlation => "correlation",
                },
                rule_id: &f.rule_id,
                rule_name: &f.rule_name,
                provider: &f.provider,
                severity: f.severity.as_str(),
                path: f.location.origin.to_string(),
                line: f.location.line,
                column: f.location.column,
                end_column: f.location.end_column,
                redacted: &f.redacted,
                fingerprint: &f.fingerprint,
                encoding: f.base64.then_some("base64"),
                snippet: &f.snippet.text,
                help: crate::prose::help(f, report.rules),
                commit: commit(&f.location),
                scope: f.owner.as_ref().map(|o| o.scope.as_str()),
                key_id: f.owner.as_ref().map(|o| o.key_id.as_str()),
                at_head: f.at_head,
                locations: f
                    .related
                    .iter()
                    .map(|l| JsonLocation {
                        path: l.origin.to_string(),
                        line: l.line,
                        column: l.column,
                        end_column: l.end_column,
                        commit: commit(l),
                    })
                    .collect(),
            })
            .collect(),
        skipped: report
            .stats
            .skipped
            .iter()
            .map(|s| JsonSkipped {
                path: s.place.to_string(),
                kind: skip_kind(&s.reason),
                reason: s.reason.to_string(),
                failure: s.reason.is_failure(),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    Ok(text)
}
