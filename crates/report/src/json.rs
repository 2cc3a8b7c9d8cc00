//! The JSON report, format version 1. Its schema is `report-v1.schema.json` beside this crate
//! (JSON Schema draft 2020-12), and a test checks every report against it.
//!
//! Compatibility: fields may be added within version 1; renaming or removing one, or changing
//! its meaning, bumps `version`.
//!
//! A report reads back: [`read`] turns a report that this module wrote into the findings,
//! totals and sweep facts it was rendered from, and rendering those again gives the same
//! report. The report holds facts as fields (`origin`, `highlight`, `owner`, `correlation`,
//! `at_head`, and a skip's `object`, `size` or `error`), never prose to be parsed back; the
//! prose (`help`, `path`, a skip's `reason`) is written from the facts and ignored on reading.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keyscope_rules::{RuleKind, Severity};
use keyscope_scan::pipeline::{FingerprintKind, SweepSummary};
use keyscope_scan::{Correlation, Finding, KeyOwner, Location, Snippet};
use keyscope_sources::{
    CommitInfo, ObjectId, Origin, SkipReason, Skipped, SkippedPlace, WalkStats,
};
use serde::{Deserialize, Serialize};

use crate::{ReportError, ScanReport, SweepFacts, TOOL_VERSION};

/// The JSON Schema of format version 1.
pub const SCHEMA: &str = include_str!("../report-v1.schema.json");

/// The format version this module writes, and the only one it reads.
pub const VERSION: u64 = 1;

#[derive(Serialize, Deserialize)]
struct Report {
    version: u64,
    tool: Tool,
    summary: Summary,
    findings: Vec<JsonFinding>,
    skipped: Vec<JsonSkipped>,
}

#[derive(Serialize, Deserialize)]
struct Tool {
    name: String,
    version: String,
}

#[derive(Serialize, Deserialize)]
struct Summary {
    files_scanned: u64,
    bytes_scanned: u64,
    binary_files_skipped: u64,
    skipped: usize,
    #[serde(default)]
    ignored: u64,
    findings: usize,
    duration_ms: u64,
    complete: bool,
    /// Reports of keyscope before keyed fingerprints were all salted.
    #[serde(default)]
    fingerprints: FingerprintKind,
    #[serde(flatten)]
    sweep: SweepTotals,
}

/// The summary's sweep fields: all of them in a sweep's report, none in a scan's.
#[derive(Default, Serialize, Deserialize)]
struct SweepTotals {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repositories: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repositories_complete: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repositories_partial: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repositories_failed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    objects_read: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    objects_from_state: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blobs_deduplicated: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reports: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct JsonFinding {
    kind: RuleKind,
    rule_id: String,
    rule_name: String,
    provider: String,
    severity: Severity,
    path: String,
    line: usize,
    column: usize,
    end_column: usize,
    redacted: String,
    fingerprint: String,
    encoding: Option<Encoding>,
    snippet: String,
    help: String,
    commit: Option<JsonCommit>,
    scope: Option<String>,
    locations: Vec<JsonLocation>,
    origin: JsonOrigin,
    /// Byte range of the finding's masked secret within `snippet`.
    highlight: [usize; 2],
    at_head: Option<bool>,
    owner: Option<JsonOwner>,
    correlation: Option<JsonCorrelation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repositories: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from_state: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    Base64,
}

#[derive(Serialize, Deserialize)]
struct JsonCommit {
    id: String,
    author: String,
    time: i64,
    summary: String,
}

#[derive(Serialize, Deserialize)]
struct JsonLocation {
    path: String,
    line: usize,
    column: usize,
    end_column: usize,
    commit: Option<JsonCommit>,
    origin: JsonOrigin,
}

/// Where content was read, as [`Origin`] says it; a commit's facts are in the `commit` beside.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum JsonOrigin {
    File {
        path: String,
    },
    Stdin,
    Index {
        path: String,
    },
    Commit {
        repository: Option<String>,
        path: String,
    },
    Unreachable {
        repository: String,
        blob: String,
    },
    CommitMessage {
        repository: Option<String>,
    },
    TagMessage {
        repository: Option<String>,
        name: String,
        id: String,
    },
}

#[derive(Serialize, Deserialize)]
struct JsonOwner {
    key_id: String,
    scope: String,
    production: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum JsonCorrelation {
    SharedBy { names: Vec<String> },
    ServedToBrowsers,
}

#[derive(Serialize, Deserialize)]
struct JsonSkipped {
    path: String,
    kind: SkipKind,
    reason: String,
    failure: bool,
    /// For an object of a repository (`path` is then `repository@id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    object: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    explicit: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file_type: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct JsonObject {
    repository: String,
    id: String,
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum SkipKind {
    Binary,
    TooLarge,
    Unreadable,
    BrokenSymlink,
    NotFound,
    Ignored,
    NotAFile,
    SymlinkOutsideTree,
}

/// Renders the report as pretty-printed JSON.
pub fn render(report: &ScanReport<'_>) -> Result<String, ReportError> {
    let value = Report {
        version: VERSION,
        tool: Tool {
            name: "keyscope".into(),
            version: TOOL_VERSION.into(),
        },
        summary: summary(report),
        findings: report.findings.iter().map(|f| finding(f, report)).collect(),
        skipped: report.stats.skipped.iter().map(skipped).collect(),
    };
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    Ok(text)
}

fn summary(report: &ScanReport<'_>) -> Summary {
    Summary {
        files_scanned: report.stats.files,
        bytes_scanned: report.stats.bytes,
        binary_files_skipped: report.stats.binary,
        skipped: report.stats.skipped.len(),
        ignored: report.ignored_paths(),
        findings: report.findings.len(),
        duration_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        complete: report.complete(),
        fingerprints: report.fingerprints,
        sweep: report.sweep.map(sweep_totals).unwrap_or_default(),
    }
}

fn sweep_totals(sweep: &SweepFacts) -> SweepTotals {
    let s = &sweep.summary;
    SweepTotals {
        repositories: Some(s.repositories),
        repositories_complete: Some(s.complete),
        repositories_partial: Some(s.partial),
        repositories_failed: Some(s.failed),
        objects_read: Some(s.objects_read),
        objects_from_state: Some(s.objects_from_state),
        blobs_deduplicated: Some(s.blobs_deduplicated),
        shard: sweep.shard.map(|(k, n)| format!("{k}/{n}")),
        reports: sweep.merged_reports,
    }
}

fn finding(f: &Finding, report: &ScanReport<'_>) -> JsonFinding {
    JsonFinding {
        kind: f.kind,
        rule_id: f.rule_id.clone(),
        rule_name: f.rule_name.clone(),
        provider: f.provider.clone(),
        severity: f.severity,
        path: f.location.origin.to_string(),
        line: f.location.line,
        column: f.location.column,
        end_column: f.location.end_column,
        redacted: f.redacted.clone(),
        fingerprint: f.fingerprint.clone(),
        encoding: f.base64.then_some(Encoding::Base64),
        snippet: f.snippet.text.clone(),
        help: crate::prose::help(f, report.rules),
        commit: f.location.commit().map(commit),
        scope: f.owner.as_ref().map(|o| o.scope.clone()),
        locations: f.related.iter().map(location).collect(),
        origin: origin(&f.location.origin),
        highlight: [f.snippet.highlight.start, f.snippet.highlight.end],
        at_head: f.at_head,
        owner: f.owner.as_ref().map(|o| JsonOwner {
            key_id: o.key_id.clone(),
            scope: o.scope.clone(),
            production: o.production,
        }),
        correlation: f.correlation.as_ref().map(|c| match c {
            Correlation::SharedBy(names) => JsonCorrelation::SharedBy {
                names: names.clone(),
            },
            Correlation::ServedToBrowsers => JsonCorrelation::ServedToBrowsers,
        }),
        repositories: report.sweep.map(|_| crate::repositories(f)),
        from_state: report.sweep.map(|s| s.reported_before(f)),
    }
}

fn commit(c: &CommitInfo) -> JsonCommit {
    JsonCommit {
        id: c.id.clone(),
        author: c.author.clone(),
        time: c.time,
        summary: c.summary.clone(),
    }
}

fn location(l: &Location) -> JsonLocation {
    JsonLocation {
        path: l.origin.to_string(),
        line: l.line,
        column: l.column,
        end_column: l.end_column,
        commit: l.commit().map(commit),
        origin: origin(&l.origin),
    }
}

fn origin(o: &Origin) -> JsonOrigin {
    let repo = |r: &Option<keyscope_sources::RepoName>| r.as_ref().map(|r| r.display().to_string());
    match o {
        Origin::File(path) => JsonOrigin::File {
            path: path.to_string_lossy().into_owned(),
        },
        Origin::Stdin => JsonOrigin::Stdin,
        Origin::Index { path } => JsonOrigin::Index { path: path.clone() },
        Origin::Commit { repo: r, path, .. } => JsonOrigin::Commit {
            repository: repo(r),
            path: path.clone(),
        },
        Origin::Unreachable { repo: r, blob } => JsonOrigin::Unreachable {
            repository: r.display().to_string(),
            blob: blob.to_string(),
        },
        Origin::CommitMessage { repo: r, .. } => JsonOrigin::CommitMessage {
            repository: repo(r),
        },
        Origin::TagMessage { repo: r, name, id } => JsonOrigin::TagMessage {
            repository: repo(r),
            name: name.clone(),
            id: id.to_string(),
        },
    }
}

fn skipped(s: &Skipped) -> JsonSkipped {
    let mut out = JsonSkipped {
        path: s.place.to_string(),
        kind: skip_kind(&s.reason),
        reason: s.reason.to_string(),
        failure: s.reason.is_failure(),
        object: match &s.place {
            SkippedPlace::Path(_) => None,
            SkippedPlace::Object { repo, id } => Some(JsonObject {
                repository: repo.display().to_string(),
                id: id.to_string(),
            }),
        },
        size: None,
        limit: None,
        error: None,
        explicit: None,
        file_type: None,
    };
    match &s.reason {
        SkipReason::TooLarge { size, limit } => {
            out.size = Some(*size);
            out.limit = Some(*limit);
        }
        SkipReason::Unreadable(error) => out.error = Some(error.clone()),
        SkipReason::BrokenSymlink { explicit } => out.explicit = Some(*explicit),
        SkipReason::NotAFile { kind, explicit } => {
            out.file_type = Some((*kind).to_owned());
            out.explicit = Some(*explicit);
        }
        SkipReason::Binary
        | SkipReason::NotFound
        | SkipReason::Ignored
        | SkipReason::SymlinkOutsideTree => {}
    }
    out
}

fn skip_kind(reason: &SkipReason) -> SkipKind {
    match reason {
        SkipReason::Binary => SkipKind::Binary,
        SkipReason::TooLarge { .. } => SkipKind::TooLarge,
        SkipReason::Unreadable(_) => SkipKind::Unreadable,
        SkipReason::BrokenSymlink { .. } => SkipKind::BrokenSymlink,
        SkipReason::NotFound => SkipKind::NotFound,
        SkipReason::Ignored => SkipKind::Ignored,
        SkipReason::NotAFile { .. } => SkipKind::NotAFile,
        SkipReason::SymlinkOutsideTree => SkipKind::SymlinkOutsideTree,
    }
}

/// A JSON report read back: what it was rendered from.
#[derive(Debug, Clone)]
pub struct ReadReport {
    /// The version of keyscope that wrote it.
    pub tool_version: String,
    /// The findings, in report order.
    pub findings: Vec<Finding>,
    /// What was scanned and skipped (`repositories` is not in a report, and is empty).
    pub stats: WalkStats,
    /// How long the scan took, to the millisecond.
    pub elapsed: Duration,
    /// How the fingerprints were made.
    pub fingerprints: FingerprintKind,
    /// For the report of a sweep (or of a merge): what it covered.
    pub sweep: Option<SweepFacts>,
}

/// Why a file is not a JSON report that this version reads.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ReadError {
    /// The text is not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not a keyscope report.
    #[error("not a keyscope report (no `tool.name` of `keyscope`)")]
    #[diagnostic(help("keyscope reads back the JSON reports it writes with `--format json`"))]
    NotKeyscope,
    /// A keyscope report of another format version.
    #[error(
        "a keyscope report of format version `{found}`, and this keyscope reads version {VERSION}"
    )]
    #[diagnostic(help("write every report with the same keyscope version"))]
    Version {
        /// The version the report names.
        found: String,
    },
    /// A keyscope report of this version that lacks a field or holds a bad value: written by
    /// an older keyscope of the same format version, or edited.
    #[error(
        "a keyscope report (version {VERSION}, written by keyscope {tool}) that cannot be read back: {message}"
    )]
    #[diagnostic(help(
        "a report read back must come from a keyscope at least as new as this one; run it again with this keyscope"
    ))]
    Malformed {
        /// The keyscope version the report names.
        tool: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads a JSON report back into what it was rendered from.
pub fn read(text: &str) -> Result<ReadReport, ReadError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(ReadError::NotJson)?;
    if value["tool"]["name"] != "keyscope" {
        return Err(ReadError::NotKeyscope);
    }
    if value["version"].as_u64() != Some(VERSION) {
        return Err(ReadError::Version {
            found: value["version"].to_string(),
        });
    }
    let tool = value["tool"]["version"]
        .as_str()
        .unwrap_or("(unknown)")
        .to_owned();
    let bad = |message: String| ReadError::Malformed {
        tool: tool.clone(),
        message,
    };
    let report: Report = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    let sweep = sweep_facts(&report).map_err(&bad)?;
    let findings = report
        .findings
        .into_iter()
        .enumerate()
        .map(|(i, f)| read_finding(f).map_err(|e| bad(format!("finding {}: {e}", i + 1))))
        .collect::<Result<Vec<_>, _>>()?;
    let skipped = report
        .skipped
        .into_iter()
        .enumerate()
        .map(|(i, s)| read_skipped(s).map_err(|e| bad(format!("skipped entry {}: {e}", i + 1))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ReadReport {
        tool_version: report.tool.version,
        findings,
        stats: WalkStats {
            files: report.summary.files_scanned,
            bytes: report.summary.bytes_scanned,
            binary: report.summary.binary_files_skipped,
            skipped,
            repositories: Vec::new(),
        },
        elapsed: Duration::from_millis(report.summary.duration_ms),
        fingerprints: report.summary.fingerprints,
        sweep,
    })
}

/// The sweep facts of a sweep's report: its totals, shard and findings reported before.
fn sweep_facts(report: &Report) -> Result<Option<SweepFacts>, String> {
    let t = &report.summary.sweep;
    let Some(repositories) = t.repositories else {
        return Ok(None);
    };
    let need = |field: Option<u64>, name: &str| {
        field.ok_or_else(|| format!("the summary has `repositories` but no `{name}`"))
    };
    let summary = SweepSummary {
        repositories,
        complete: need(t.repositories_complete, "repositories_complete")?,
        partial: need(t.repositories_partial, "repositories_partial")?,
        failed: need(t.repositories_failed, "repositories_failed")?,
        objects_read: need(t.objects_read, "objects_read")?,
        objects_from_state: need(t.objects_from_state, "objects_from_state")?,
        blobs_deduplicated: need(t.blobs_deduplicated, "blobs_deduplicated")?,
    };
    let shard = t
        .shard
        .as_deref()
        .map(|text| {
            text.split_once('/')
                .and_then(|(k, n)| Some((k.parse().ok()?, n.parse().ok()?)))
                .ok_or_else(|| format!("the shard `{text}` is not K/N"))
        })
        .transpose()?;
    let previously_reported = report
        .findings
        .iter()
        .filter(|f| f.from_state == Some(true))
        .map(|f| (f.rule_id.clone(), f.fingerprint.clone()))
        .collect();
    Ok(Some(SweepFacts {
        summary,
        previously_reported,
        shard,
        merged_reports: t.reports,
    }))
}

fn read_finding(f: JsonFinding) -> Result<Finding, String> {
    let place = read_location(f.origin, f.commit, f.line, f.column, f.end_column)?;
    let [start, end] = f.highlight;
    if start > end || end > f.snippet.len() || !f.snippet.is_char_boundary(start) {
        return Err(format!(
            "the highlight {start}..{end} is not within its snippet"
        ));
    }
    if !f.snippet.is_char_boundary(end) {
        return Err(format!("the highlight {start}..{end} splits a character"));
    }
    let mut finding = Finding::recorded(f.rule_id, place, f.fingerprint);
    finding.kind = f.kind;
    finding.rule_name = f.rule_name;
    finding.provider = f.provider;
    finding.severity = f.severity;
    finding.redacted = f.redacted;
    finding.snippet = Snippet {
        text: f.snippet,
        highlight: start..end,
    };
    finding.base64 = f.encoding.is_some();
    finding.correlation = f.correlation.map(|c| match c {
        JsonCorrelation::SharedBy { names } => Correlation::SharedBy(names),
        JsonCorrelation::ServedToBrowsers => Correlation::ServedToBrowsers,
    });
    finding.owner = f.owner.map(|o| KeyOwner {
        key_id: o.key_id,
        scope: o.scope,
        production: o.production,
    });
    finding.at_head = f.at_head;
    finding.related = f
        .locations
        .into_iter()
        .map(|l| read_location(l.origin, l.commit, l.line, l.column, l.end_column))
        .collect::<Result<_, _>>()?;
    Ok(finding)
}

fn read_location(
    origin: JsonOrigin,
    commit: Option<JsonCommit>,
    line: usize,
    column: usize,
    end_column: usize,
) -> Result<Location, String> {
    Ok(Location {
        origin: read_origin(origin, commit)?,
        line,
        column,
        end_column,
    })
}

fn read_origin(origin: JsonOrigin, commit: Option<JsonCommit>) -> Result<Origin, String> {
    let repo = |name: String| -> keyscope_sources::RepoName { Arc::from(Path::new(&name)) };
    let id = |hex: &str| ObjectId::from_hex(hex).ok_or_else(|| format!("`{hex}` is no object id"));
    let commit = move || {
        commit
            .map(|c| CommitInfo {
                id: c.id,
                author: c.author,
                time: c.time,
                summary: c.summary,
            })
            .ok_or_else(|| "content of a commit has no `commit`".to_owned())
    };
    Ok(match origin {
        JsonOrigin::File { path } => Origin::File(PathBuf::from(path)),
        JsonOrigin::Stdin => Origin::Stdin,
        JsonOrigin::Index { path } => Origin::Index { path },
        JsonOrigin::Commit { repository, path } => Origin::Commit {
            repo: repository.map(repo),
            path,
            commit: commit()?,
        },
        JsonOrigin::Unreachable { repository, blob } => Origin::Unreachable {
            repo: repo(repository),
            blob: id(&blob)?,
        },
        JsonOrigin::CommitMessage { repository } => Origin::CommitMessage {
            repo: repository.map(repo),
            commit: commit()?,
        },
        JsonOrigin::TagMessage {
            repository,
            name,
            id: tag,
        } => Origin::TagMessage {
            repo: repository.map(repo),
            name,
            id: id(&tag)?,
        },
    })
}

fn read_skipped(s: JsonSkipped) -> Result<Skipped, String> {
    let place = match s.object {
        Some(object) => SkippedPlace::Object {
            repo: Arc::from(Path::new(&object.repository)),
            id: ObjectId::from_hex(&object.id)
                .ok_or_else(|| format!("`{}` is no object id", object.id))?,
        },
        None => SkippedPlace::Path(PathBuf::from(&s.path)),
    };
    let need = |field: &str| format!("a `{:?}` skip has no `{field}`", s.kind);
    let explicit = || s.explicit.ok_or_else(|| need("explicit"));
    let reason = match s.kind {
        SkipKind::Binary => SkipReason::Binary,
        SkipKind::TooLarge => SkipReason::TooLarge {
            size: s.size.ok_or_else(|| need("size"))?,
            limit: s.limit.ok_or_else(|| need("limit"))?,
        },
        SkipKind::Unreadable => {
            SkipReason::Unreadable(s.error.clone().ok_or_else(|| need("error"))?)
        }
        SkipKind::BrokenSymlink => SkipReason::BrokenSymlink {
            explicit: explicit()?,
        },
        SkipKind::NotFound => SkipReason::NotFound,
        SkipKind::Ignored => SkipReason::Ignored,
        SkipKind::NotAFile => SkipReason::NotAFile {
            kind: special_file(s.file_type.as_deref().ok_or_else(|| need("file_type"))?),
            explicit: explicit()?,
        },
        SkipKind::SymlinkOutsideTree => SkipReason::SymlinkOutsideTree,
    };
    Ok(Skipped { place, reason })
}

/// The name of a kind of special file, as the file source names them.
fn special_file(name: &str) -> &'static str {
    ["FIFO", "socket", "device"]
        .into_iter()
        .find(|known| *known == name)
        .unwrap_or("special file")
}
