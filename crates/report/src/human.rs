//! Findings for people: one miette diagnostic per finding (file:line:col, the masked line with
//! the secret underlined, what to do), and a one-paragraph summary. The binary chooses the
//! handler (colours, width, unicode), so this module only builds values.

use std::fmt;

use keyscope_rules::{RuleSet, Severity};
use keyscope_scan::Finding;
use miette::{
    Diagnostic, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents,
};

use crate::ScanReport;

/// The masked line of a finding, presented to miette at its real line number.
#[derive(Debug, Clone)]
struct MaskedLine {
    name: String,
    text: String,
    line: usize,
}

impl SourceCode for MaskedLine {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        _context_lines_before: usize,
        _context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        if span.offset() + span.len() > self.text.len() {
            return Err(MietteError::OutOfBounds);
        }
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            self.text.as_bytes(),
            (0, self.text.len()).into(),
            self.line.saturating_sub(1),
            0,
            1,
        )))
    }
}

/// One finding as a diagnostic.
#[derive(Debug, Clone)]
pub struct FindingDiagnostic {
    message: String,
    code: String,
    severity: Severity,
    help: String,
    source: MaskedLine,
    label: LabeledSpan,
}

impl FindingDiagnostic {
    /// Builds the diagnostic of a finding; `rules` are the scan's (for the help text).
    pub fn new(finding: &Finding, rules: &RuleSet) -> FindingDiagnostic {
        let loc = &finding.location;
        let label_text = if finding.base64 {
            format!("{} (base64-encoded)", finding.redacted)
        } else {
            finding.redacted.clone()
        };
        FindingDiagnostic {
            message: format!(
                "{}{}",
                match &finding.owner {
                    Some(owner) => format!(
                        "{} of scope `{}` found at {}:{}:{}",
                        finding.rule_name, owner.scope, loc.origin, loc.line, loc.column
                    ),
                    None => format!(
                        "{} found at {}:{}:{}",
                        finding.rule_name, loc.origin, loc.line, loc.column
                    ),
                },
                match loc.commit() {
                    Some(c) => format!(
                        ", introduced in commit {} by {}",
                        &c.id[..c.id.len().min(12)],
                        c.author
                    ),
                    None => String::new(),
                }
            ),
            code: finding.rule_id.clone(),
            severity: finding.severity,
            help: if finding.related.is_empty() {
                crate::prose::help(finding, rules)
            } else {
                let places: Vec<String> = finding
                    .related
                    .iter()
                    .map(|l| match l.commit() {
                        Some(c) => format!(
                            "{}:{} (commit {})",
                            l.origin,
                            l.line,
                            &c.id[..c.id.len().min(12)]
                        ),
                        None => format!("{}:{}", l.origin, l.line),
                    })
                    .collect();
                format!(
                    "{}\nalso at: {}",
                    crate::prose::help(finding, rules),
                    places.join(", ")
                )
            },
            label: LabeledSpan::new_primary_with_span(
                Some(label_text),
                finding.snippet.highlight.clone(),
            ),
            source: MaskedLine {
                name: loc.origin.to_string(),
                text: finding.snippet.text.clone(),
                line: loc.line,
            },
        }
    }
}

impl fmt::Display for FindingDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FindingDiagnostic {}

impl Diagnostic for FindingDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(format!("{} ({})", self.code, self.severity)))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Critical | Severity::High => miette::Severity::Error,
            Severity::Medium => miette::Severity::Warning,
            Severity::Low | Severity::Info => miette::Severity::Advice,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.help))
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(self.label.clone())))
    }
}

/// The diagnostics of every finding, in report order.
pub fn diagnostics(report: &ScanReport<'_>) -> Vec<FindingDiagnostic> {
    report
        .findings
        .iter()
        .map(|f| FindingDiagnostic::new(f, report.rules))
        .collect()
}

/// The closing summary: what was scanned, skipped and found, and how long it took.
pub fn summary(report: &ScanReport<'_>) -> String {
    let stats = report.stats;
    let mut out = String::new();
    for skipped in &stats.skipped {
        if skipped.reason.is_failure() {
            out.push_str(&format!(
                "error: not scanned: {}: {}\n",
                skipped.place, skipped.reason
            ));
        }
    }
    let ignored = report.ignored_paths();
    let others = stats.skipped.len() as u64 - stats.binary - ignored;
    let secs = report.elapsed.as_secs_f64();
    out.push_str(&format!(
        "scanned {} files ({}) in {:.2}s; skipped {} binary and {} other; {} finding{}",
        stats.files,
        human_bytes(stats.bytes),
        secs,
        stats.binary,
        others,
        report.findings.len(),
        if report.findings.len() == 1 { "" } else { "s" },
    ));
    if ignored > 0 {
        out.push_str(&format!(
            "\nnot scanned: {ignored} path{} that .gitignore or .ignore files exclude (scan {} with --no-ignore)",
            if ignored == 1 { "" } else { "s" },
            if ignored == 1 { "it" } else { "them" },
        ));
    }
    if !report.complete() {
        out.push_str(
            "\nthe scan is incomplete: some content could not be scanned (see errors above)",
        );
    }
    out.push('\n');
    out
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_humane() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(780 * 1024 * 1024), "780.0 MiB");
    }
}
