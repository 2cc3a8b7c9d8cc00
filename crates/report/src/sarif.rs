//! SARIF 2.1.0, shaped for GitHub code scanning: one `reportingDescriptor` per rule with
//! descriptions, help, tags, precision and `security-severity`; 1-based regions; stable
//! `partialFingerprints` that do not move with line numbers.

use std::collections::BTreeMap;

use keyscope_rules::{Rule, RuleSet, Severity};
use keyscope_scan::Finding;
use keyscope_scan::pipeline::FingerprintKind;
use serde_json::json;
use serde_sarif::sarif::{
    ArtifactLocation, Invocation, Location, Message, MultiformatMessageString, Notification,
    PhysicalLocation, PropertyBag, Region, ReportingConfiguration, ReportingDescriptor, Result,
    ResultLevel, Run, Sarif, Tool, ToolComponent,
};

use crate::{ReportError, ScanReport, SweepFacts, TOOL_VERSION};

/// The `$schema` URI written into every log.
pub const SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const INFORMATION_URI: &str = "https://github.com/keyscope/keyscope";

/// Renders the report as a SARIF 2.1.0 log with one run.
pub fn render(report: &ScanReport<'_>) -> std::result::Result<String, ReportError> {
    let rules = report.rules.rules();
    let index: BTreeMap<&str, usize> = rules.iter().enumerate().map(|(i, r)| (r.id(), i)).collect();
    let results: Vec<Result> = report
        .findings
        .iter()
        .map(|f| {
            let mut found = result(f, report.rules, index.get(f.rule_id.as_str()).copied());
            if let Some(sweep) = report.sweep {
                sweep_properties(&mut found, f, sweep);
            }
            found
        })
        .collect();
    let notifications: Vec<Notification> = report
        .stats
        .skipped
        .iter()
        .map(|s| {
            Notification::builder()
                .message(message(format!("{}: {}", s.place, s.reason)))
                .level(if s.reason.is_failure() {
                    json!("error")
                } else {
                    json!("note")
                })
                .build()
        })
        .collect();
    let driver = ToolComponent::builder()
        .name("keyscope")
        .version(TOOL_VERSION)
        .semantic_version(TOOL_VERSION)
        .information_uri(INFORMATION_URI)
        .rules(rules.iter().map(descriptor).collect::<Vec<_>>())
        .build();
    let invocation = Invocation::builder()
        .execution_successful(report.complete())
        .tool_execution_notifications(notifications)
        .build();
    let mut run = Run::builder()
        .tool(Tool::builder().driver(driver).build())
        .results(results)
        .invocations(vec![invocation])
        .column_kind(json!("unicodeCodePoints"))
        .build();
    run.properties = run_properties(report);
    let log = Sarif::builder()
        .schema(SCHEMA_URI)
        .version(json!("2.1.0"))
        .runs(vec![run])
        .build();
    let mut text = serde_json::to_string_pretty(&log)?;
    text.push('\n');
    Ok(text)
}

/// A sweep's facts about one result: the repositories it is in, and whether an earlier sweep
/// reported it.
fn sweep_properties(result: &mut Result, finding: &Finding, sweep: &SweepFacts) {
    let properties = result
        .properties
        .get_or_insert_with(|| PropertyBag::builder().build());
    properties.additional_properties.insert(
        "repositories".to_owned(),
        json!(crate::repositories(finding)),
    );
    properties.additional_properties.insert(
        "fromState".to_owned(),
        json!(sweep.reported_before(finding)),
    );
}

/// The run's facts beyond SARIF's own: keyed fingerprints, and a sweep's totals.
fn run_properties(report: &ScanReport<'_>) -> Option<PropertyBag> {
    if report.sweep.is_none() && report.fingerprints == FingerprintKind::Salted {
        return None;
    }
    let mut properties = BTreeMap::new();
    properties.insert("fingerprints".to_owned(), json!(report.fingerprints.name()));
    if let Some(sweep) = report.sweep {
        let s = &sweep.summary;
        properties.insert(
            "sweep".to_owned(),
            json!({
                "repositories": s.repositories,
                "repositoriesComplete": s.complete,
                "repositoriesPartial": s.partial,
                "repositoriesFailed": s.failed,
                "objectsRead": s.objects_read,
                "objectsFromState": s.objects_from_state,
                "blobsDeduplicated": s.blobs_deduplicated,
                "shard": sweep.shard.map(|(k, n)| format!("{k}/{n}")),
                "reports": sweep.merged_reports,
            }),
        );
    }
    Some(
        PropertyBag::builder()
            .additional_properties(properties)
            .build(),
    )
}

fn message(text: impl Into<String>) -> Message {
    Message::builder().text(text.into()).build()
}

fn multiformat(text: impl Into<String>) -> MultiformatMessageString {
    MultiformatMessageString::builder()
        .text(text.into())
        .build()
}

fn level(severity: Severity) -> ResultLevel {
    match severity {
        Severity::Critical | Severity::High => ResultLevel::Error,
        Severity::Medium => ResultLevel::Warning,
        Severity::Low | Severity::Info => ResultLevel::Note,
    }
}

/// GitHub's `security-severity`: a CVSS-like score that sorts alerts into critical (>= 9.0),
/// high (7.0-8.9), medium (4.0-6.9) and low.
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "1.0",
    }
}

fn pascal_case(id: &str) -> String {
    id.split(['-', '_', '/'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn descriptor(rule: &Rule) -> ReportingDescriptor {
    let (mut help, mut markdown) = if crate::prose::is_keyscope_key(rule.id()) {
        (
            format!(
                "{}\n\nRevoke and rotate the key with `keyscope respond --revoke --rotate` (or \
                 `keyscope key rotate`), remove it from the code (and from history if the \
                 repository is shared), and load it from a secrets manager at run time.",
                rule.description()
            ),
            format!(
                "**{}**\n\n{}\n\n1. Revoke and rotate the key with `keyscope respond --revoke \
                 --rotate` (or `keyscope key rotate`).\n2. Remove it from the code, and from \
                 history if the repository is shared.\n3. Load it from a secrets manager at run \
                 time.",
                rule.name(),
                rule.description()
            ),
        )
    } else {
        (
            format!(
                "{}\n\nRevoke and rotate the key at the provider, remove it from the code (and \
                 from history if the repository is shared), load it from a secrets manager at \
                 run time, and give each application and environment its own scoped key.",
                rule.description()
            ),
            format!(
                "**{}**\n\n{}\n\n1. Revoke and rotate the key at the provider.\n2. Remove it \
                 from the code, and from history if the repository is shared.\n3. Load it from a \
                 secrets manager at run time.\n4. Give each application and environment its own \
                 scoped key.",
                rule.name(),
                rule.description()
            ),
        )
    };
    if !rule.references().is_empty() {
        help.push_str("\n\nReferences: ");
        help.push_str(&rule.references().join(", "));
        markdown.push_str("\n\nReferences:\n");
        for reference in rule.references() {
            markdown.push_str(&format!("- <{reference}>\n"));
        }
    }
    let mut tags = vec!["security".to_owned(), "secret".to_owned()];
    tags.push(rule.provider().to_owned());
    tags.extend(rule.tags().iter().cloned());
    tags.sort();
    tags.dedup();
    let precision = if rule.context().is_some() {
        "medium"
    } else {
        "high"
    };
    let mut properties = BTreeMap::new();
    properties.insert("precision".to_owned(), json!(precision));
    properties.insert(
        "security-severity".to_owned(),
        json!(security_severity(rule.severity())),
    );
    properties.insert("provider".to_owned(), json!(rule.provider()));
    let mut descriptor = ReportingDescriptor::builder()
        .id(rule.id())
        .name(pascal_case(rule.id()))
        .short_description(multiformat(rule.name()))
        .full_description(multiformat(rule.description()))
        .help(
            MultiformatMessageString::builder()
                .text(help)
                .markdown(markdown)
                .build(),
        )
        .default_configuration(
            ReportingConfiguration::builder()
                .level(json!(level_name(rule.severity())))
                .build(),
        )
        .properties(
            PropertyBag::builder()
                .tags(tags)
                .additional_properties(properties)
                .build(),
        )
        .build();
    descriptor.help_uri = rule.references().first().cloned();
    descriptor
}

fn level_name(severity: Severity) -> &'static str {
    match level(severity) {
        ResultLevel::Error => "error",
        ResultLevel::Warning => "warning",
        _ => "note",
    }
}

/// A path as a SARIF URI reference: relative paths stay relative (resolved against the
/// repository root by code scanning), with `/` separators and unsafe bytes percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::new();
    let path = path.replace('\\', "/");
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn sarif_location(loc: &keyscope_scan::Location, snippet: Option<&str>) -> Location {
    let region = Region::builder()
        .start_line(loc.line as i64)
        .start_column(loc.column as i64)
        .end_line(loc.line as i64)
        .end_column(loc.end_column as i64)
        .build();
    let region = match snippet {
        Some(text) => Region {
            snippet: Some(
                serde_sarif::sarif::ArtifactContent::builder()
                    .text(text.to_owned())
                    .build(),
            ),
            ..region
        },
        None => region,
    };
    let mut location = Location::builder()
        .physical_location(
            PhysicalLocation::builder()
                .artifact_location(
                    ArtifactLocation::builder()
                        .uri(uri(&loc.origin.to_string()))
                        .build(),
                )
                .region(region)
                .build(),
        )
        .build();
    if let Some(commit) = loc.commit() {
        let mut properties = BTreeMap::new();
        properties.insert("commit".to_owned(), json!(commit.id));
        properties.insert("author".to_owned(), json!(commit.author));
        properties.insert("time".to_owned(), json!(commit.time));
        properties.insert("summary".to_owned(), json!(commit.summary));
        location.properties = Some(
            PropertyBag::builder()
                .additional_properties(properties)
                .build(),
        );
    }
    location
}

fn result(finding: &Finding, rules: &RuleSet, rule_index: Option<usize>) -> Result {
    let loc = &finding.location;
    let location = sarif_location(loc, Some(&finding.snippet.text));
    let related: Vec<Location> = finding
        .related
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut related = sarif_location(l, None);
            related.id = Some(i as i64 + 1);
            related.message = Some(message(format!("also at {}:{}", l.origin, l.line)));
            related
        })
        .collect();
    let mut fingerprints = BTreeMap::new();
    // Identity of a result across runs: the secret, the rule and the file, not the line, so
    // edits above a finding do not turn it into a new alert.
    fingerprints.insert(
        "keyscope/v1".to_owned(),
        keyscope_scan::salted_fingerprint(
            format!(
                "{}\0{}\0{}",
                finding.rule_id, loc.origin, finding.fingerprint
            )
            .as_bytes(),
        ),
    );
    let mut properties = BTreeMap::new();
    properties.insert("provider".to_owned(), json!(finding.provider));
    properties.insert("redacted".to_owned(), json!(finding.redacted));
    properties.insert("fingerprint".to_owned(), json!(finding.fingerprint));
    properties.insert("severity".to_owned(), json!(finding.severity.as_str()));
    if finding.base64 {
        properties.insert("encoding".to_owned(), json!("base64"));
    }
    if let Some(owner) = &finding.owner {
        properties.insert("scope".to_owned(), json!(owner.scope));
    }
    if let Some(commit) = loc.commit() {
        properties.insert("commit".to_owned(), json!(commit.id));
        properties.insert("author".to_owned(), json!(commit.author));
        properties.insert("commitTime".to_owned(), json!(commit.time));
    }
    let text = format!(
        "{} `{}` is exposed in {}. {}",
        finding.rule_name,
        finding.redacted,
        loc.origin,
        crate::prose::help(finding, rules)
    );
    let builder = Result::builder()
        .rule_id(finding.rule_id.clone())
        .level(level(finding.severity))
        .message(message(text))
        .locations(vec![location])
        .partial_fingerprints(fingerprints)
        .related_locations(related)
        .properties(
            PropertyBag::builder()
                .additional_properties(properties)
                .build(),
        );
    match rule_index {
        Some(i) => builder.rule_index(i as i64).build(),
        None => builder.build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_relative_and_encoded() {
        assert_eq!(uri("src/app.py"), "src/app.py");
        assert_eq!(uri("my dir/a#b.py"), "my%20dir/a%23b.py");
        assert_eq!(uri("/abs/x.env"), "file:///abs/x.env");
        assert_eq!(uri("win\\path.txt"), "win/path.txt");
    }

    #[test]
    fn rule_names_are_pascal_case() {
        assert_eq!(pascal_case("openai-project-key"), "OpenaiProjectKey");
        assert_eq!(pascal_case("flat-key/key-logged"), "FlatKeyKeyLogged");
    }
}
