//! `keyscope merge`: the JSON reports of several sweeps (the shards of one) as one report, a
//! secret found in several shards' repositories one finding, with its cross-repository
//! flat-key finding.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use miette::{Context as _, IntoDiagnostic as _, miette};
use serde_json::{Map, Value, json};

use crate::exit::Exit;

/// The flat-key rule for one key in several repositories.
const SHARED_ACROSS_REPOS: &str = "flat-key/shared-across-repos";

/// Summary counts that add up across shards.
const SUMMED: &[&str] = &[
    "files_scanned",
    "bytes_scanned",
    "binary_files_skipped",
    "skipped",
    "ignored",
    "repositories",
    "repositories_complete",
    "repositories_partial",
    "repositories_failed",
    "objects_read",
    "objects_from_state",
    "blobs_deduplicated",
];

/// Arguments of `keyscope merge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The JSON reports of `keyscope sweep --format json`.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Write the merged JSON report to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Runs `keyscope merge`.
pub fn run(args: Args) -> miette::Result<Exit> {
    let mut reports = Vec::new();
    for path in &args.reports {
        let text = std::fs::read_to_string(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read the report `{}`", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .into_diagnostic()
            .wrap_err_with(|| format!("`{}` is not a JSON report", path.display()))?;
        if value["version"] != 1 || value["summary"]["fingerprints"].is_null() {
            return Err(miette!(
                "`{}` is not the JSON report of `keyscope sweep --format json` (format version 1)",
                path.display()
            ));
        }
        reports.push(value);
    }
    let merged = merge(&reports)?;
    let complete = merged["summary"]["complete"] == true;
    let found = merged["findings"].as_array().is_some_and(|f| !f.is_empty());
    let mut text = serde_json::to_string_pretty(&merged).into_diagnostic()?;
    text.push('\n');
    super::scan::write_report(args.output.as_deref(), &text)?;
    Ok(if !complete {
        Exit::Error
    } else if found {
        Exit::Findings
    } else {
        Exit::Clean
    })
}

/// The reports as one.
fn merge(reports: &[Value]) -> miette::Result<Value> {
    let kinds: BTreeSet<&str> = reports
        .iter()
        .filter_map(|r| r["summary"]["fingerprints"].as_str())
        .collect();
    if kinds.len() > 1 {
        return Err(miette!(
            "the reports' fingerprints were made differently ({}): give every shard the same \
             KEYSCOPE_FINGERPRINT_KEY",
            kinds.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let findings = merge_findings(reports);
    let mut summary = Map::new();
    for field in SUMMED {
        let total: u64 = reports
            .iter()
            .filter_map(|r| r["summary"][*field].as_u64())
            .sum();
        summary.insert((*field).into(), total.into());
    }
    let slowest = reports
        .iter()
        .filter_map(|r| r["summary"]["duration_ms"].as_u64())
        .max();
    summary.insert("duration_ms".into(), slowest.unwrap_or(0).into());
    summary.insert("findings".into(), findings.len().into());
    let complete = reports.iter().all(|r| r["summary"]["complete"] == true);
    summary.insert("complete".into(), complete.into());
    summary.insert("fingerprints".into(), kinds.into_iter().next().into());
    summary.insert("reports".into(), reports.len().into());
    let skipped: Vec<Value> = reports
        .iter()
        .flat_map(|r| r["skipped"].as_array().cloned().unwrap_or_default())
        .collect();
    Ok(json!({
        "version": 1,
        "tool": reports.first().map_or(Value::Null, |r| r["tool"].clone()),
        "summary": summary,
        "findings": findings,
        "skipped": skipped,
    }))
}

/// Every report's findings, one per rule and fingerprint, with a cross-repository flat-key
/// finding for each secret found in several repositories.
fn merge_findings(reports: &[Value]) -> Vec<Value> {
    let mut groups: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for finding in reports
        .iter()
        .flat_map(|r| r["findings"].as_array().cloned().unwrap_or_default())
    {
        // Recomputed below over every report's repositories.
        if finding["rule_id"] == SHARED_ACROSS_REPOS {
            continue;
        }
        let key = (
            finding["rule_id"].as_str().unwrap_or_default().to_owned(),
            finding["fingerprint"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        groups.entry(key).or_default().push(finding);
    }
    let mut merged = Vec::new();
    for (_, members) in groups {
        let finding = merge_group(members);
        let repos = finding["repositories"].as_array().map_or(0, Vec::len);
        if finding["kind"] == "secret" && repos > 1 {
            merged.push(shared_across_repos(&finding));
        }
        merged.push(finding);
    }
    merged.sort_by_key(|f| {
        (
            f["path"].as_str().unwrap_or_default().to_owned(),
            f["line"].as_u64(),
            f["column"].as_u64(),
            f["rule_id"].as_str().unwrap_or_default().to_owned(),
        )
    });
    merged
}

/// One finding from the same secret's findings in several reports: the earliest introduction
/// first, every other place in `locations`.
fn merge_group(mut members: Vec<Value>) -> Value {
    members.sort_by_key(|m| {
        (
            m["commit"]["time"].as_i64().unwrap_or(i64::MAX),
            m["path"].as_str().unwrap_or_default().to_owned(),
        )
    });
    let mut members = members.into_iter();
    let mut first = members.next().unwrap_or(Value::Null);
    let place = |v: &Value| {
        (
            v["path"].clone(),
            v["line"].clone(),
            v["column"].clone(),
            v["commit"]["id"].clone(),
        )
            .to_owned()
    };
    let mut seen: Vec<_> = std::iter::once(place(&first))
        .chain(
            first["locations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(place),
        )
        .collect();
    let mut repos: Vec<Value> = first["repositories"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut from_state = first["from_state"] == true;
    for member in members {
        from_state &= member["from_state"] == true;
        let primary = json!({
            "path": member["path"],
            "line": member["line"],
            "column": member["column"],
            "end_column": member["end_column"],
            "commit": member["commit"],
        });
        let others = member["locations"].as_array().cloned().unwrap_or_default();
        for location in std::iter::once(primary).chain(others) {
            if !seen.contains(&place(&location)) {
                seen.push(place(&location));
                if let Some(list) = first["locations"].as_array_mut() {
                    list.push(location);
                }
            }
        }
        for repo in member["repositories"].as_array().into_iter().flatten() {
            if !repos.contains(repo) {
                repos.push(repo.clone());
            }
        }
    }
    if let Some(object) = first.as_object_mut() {
        object.insert("repositories".into(), repos.into());
        object.insert("from_state".into(), from_state.into());
    }
    first
}

/// The flat-key finding for a secret in several repositories, as a sweep of them all in one
/// process reports it.
fn shared_across_repos(secret: &Value) -> Value {
    let mut finding = secret.clone();
    let repos: Vec<&str> = secret["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let provider = secret["provider"].as_str().unwrap_or_default();
    let redacted = secret["redacted"].as_str().unwrap_or_default();
    let also = &secret["locations"][0];
    if let Some(object) = finding.as_object_mut() {
        object.insert("kind".into(), "correlation".into());
        object.insert("rule_id".into(), SHARED_ACROSS_REPOS.into());
        object.insert(
            "rule_name".into(),
            "One key shared across repositories".into(),
        );
        object.insert(
            "snippet".into(),
            format!(
                "{redacted} (also at {}:{})",
                also["path"].as_str().unwrap_or_default(),
                also["line"]
            )
            .into(),
        );
        object.insert(
            "help".into(),
            format!(
                "This {provider} key ({redacted}) is shared by {}. The same provider key \
                 appears in several repositories of one sweep: it was copied between projects, \
                 so its blast radius and its spend span all of them. Issue one scoped key per \
                 project and rotate this one.",
                repos.join(", ")
            )
            .into(),
        );
    }
    finding
}
