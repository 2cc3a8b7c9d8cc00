//! Findings for people: one miette diagnostic per finding (file:line:col, the masked line with
//! the secret underlined, what to do), and a one-paragraph summary. The binary chooses the
//! handler (colours, width, unicode), so this module only builds values.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use keyscope_rules::{RuleSet, Severity};
use keyscope_scan::Finding;
use keyscope_scan::pipeline::FingerprintKind;
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

/// `text` with control characters and bidirectional overrides written out visibly (`\u{1b}`,
/// `\r`, `\u{202e}`), as ripgrep and git show them: a file name, a line of a file or a commit
/// author's name must not clear the screen, retitle the terminal, or reorder what is read.
/// Tabs stay. JSON and SARIF escape these characters themselves.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_dangerous) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_visible(&mut out, c);
    }
    Cow::Owned(out)
}

fn is_dangerous(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_visible(out: &mut String, c: char) {
    match c {
        '\r' => out.push_str("\\r"),
        '\n' => out.push_str("\\n"),
        c if is_dangerous(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        c => out.push(c),
    }
}

/// [`escape_controls`] on a snippet, with its highlight moved to where the escaped text puts
/// it.
fn escape_snippet(text: &str, highlight: Range<usize>) -> (String, Range<usize>) {
    let at = |i: usize| {
        text.get(..i)
            .map_or(i, |before| escape_controls(before).len())
    };
    let (start, end) = (at(highlight.start), at(highlight.end));
    (escape_controls(text).into_owned(), start..end.max(start))
}

impl FindingDiagnostic {
    /// Builds the diagnostic of a finding; `rules` are the scan's (for the help text). Paths,
    /// authors and the line are shown with their control characters escaped
    /// ([`escape_controls`]).
    pub fn new(finding: &Finding, rules: &RuleSet) -> FindingDiagnostic {
        let loc = &finding.location;
        let origin = loc.origin.to_string();
        let path = escape_controls(&origin);
        let (text, highlight) =
            escape_snippet(&finding.snippet.text, finding.snippet.highlight.clone());
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
                        finding.rule_name, owner.scope, path, loc.line, loc.column
                    ),
                    None => format!(
                        "{} found at {}:{}:{}",
                        finding.rule_name, path, loc.line, loc.column
                    ),
                },
                match loc.commit() {
                    Some(c) => format!(
                        ", introduced in commit {} by {}",
                        &c.id[..c.id.len().min(12)],
                        escape_controls(&c.author)
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
                            escape_controls(&l.origin.to_string()),
                            l.line,
                            &c.id[..c.id.len().min(12)]
                        ),
                        None => format!("{}:{}", escape_controls(&l.origin.to_string()), l.line),
                    })
                    .collect();
                format!(
                    "{}\nalso at: {}",
                    crate::prose::help(finding, rules),
                    places.join(", ")
                )
            },
            label: LabeledSpan::new_primary_with_span(Some(label_text), highlight),
            source: MaskedLine {
                name: path.into_owned(),
                text,
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
    // Skips that lost content are errors, for the binary to print on standard error. Binary
    // git blobs are counted without being listed, so the others are counted, not subtracted.
    let ignored = report.ignored_paths();
    let others = stats
        .skipped
        .iter()
        .filter(|s| {
            !matches!(
                s.reason,
                keyscope_sources::SkipReason::Binary | keyscope_sources::SkipReason::Ignored
            )
        })
        .count();
    let secs = report.elapsed.as_secs_f64();
    out.push_str(&format!(
        "scanned {} file{} ({}) in {:.2}s; skipped {} binary and {} other; {} finding{}",
        stats.files,
        plural(stats.files),
        human_bytes(stats.bytes),
        secs,
        stats.binary,
        others,
        report.findings.len(),
        plural(report.findings.len()),
    ));
    if ignored > 0 {
        out.push_str(&format!(
            "\nnot scanned: {ignored} path{} that .gitignore or .ignore files exclude (scan {} with --no-ignore)",
            plural(ignored),
            if ignored == 1 { "it" } else { "them" },
        ));
    }
    if !report.complete() {
        out.push_str(
            "\nthe scan is incomplete: some content could not be scanned (see the errors on \
             standard error)",
        );
    }
    out.push('\n');
    match report.sweep {
        Some(sweep) => out.push_str(&sweep_summary(report, sweep)),
        None if report.fingerprints == FingerprintKind::Keyed => {
            out.push_str(&format!("fingerprints: {}\n", report.fingerprints.name()))
        }
        None => {}
    }
    out
}

/// The summary's sweep line: what the sweep (or the merged sweeps) covered.
fn sweep_summary(report: &ScanReport<'_>, sweep: &crate::SweepFacts) -> String {
    let s = &sweep.summary;
    let known = report
        .findings
        .iter()
        .filter(|f| sweep.reported_before(f))
        .count();
    let merged = match sweep.merged_reports {
        Some(n) => format!("merged {n} report{}: ", plural(n)),
        None => String::new(),
    };
    format!(
        "{merged}swept {} repositor{} ({} complete, {} partial, {} failed): {} objects read, {} \
         known from the state, {} shared blobs matched once; {known} findings already reported \
         by an earlier sweep; fingerprints: {}\n",
        s.repositories,
        if s.repositories == 1 { "y" } else { "ies" },
        s.complete,
        s.partial,
        s.failed,
        s.objects_read,
        s.objects_from_state,
        s.blobs_deduplicated,
        report.fingerprints.name()
    )
}

/// `"s"` after a count other than one, for `{n} file{}` in human text; the CLI's own summaries
/// use it too.
pub fn plural<T: PartialEq + From<u8>>(count: T) -> &'static str {
    if count == T::from(1) { "" } else { "s" }
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

    /// Issue #19: escape sequences, BEL, BS, CR and bidi overrides from a file name, a line or
    /// an author reached the terminal raw.
    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(escape_controls("plain\ttext"), "plain\ttext");
        assert_eq!(
            escape_controls("a\x1b[2J\x1b]0;owned\x07b\x08\r\u{202e}c"),
            "a\\u{1b}[2J\\u{1b}]0;owned\\u{7}b\\u{8}\\r\\u{202e}c"
        );
        let (text, highlight) = escape_snippet("\x1b[2Jx = \"sk-…AAAA\"", 9..19);
        assert_eq!(&text[highlight], "sk-…AAAA");
        assert!(!text.contains('\x1b'));
    }

    /// Issue #19: binary git blobs are counted in `binary` without a `skipped` entry, and
    /// `skipped - binary` underflowed (`skipped 1 binary and 18446744073709551615 other`).
    #[test]
    fn the_summary_counts_other_skips_without_underflow() {
        let rules = keyscope_rules::RuleSet::new();
        let stats = keyscope_sources::WalkStats {
            files: 1,
            bytes: 10,
            binary: 1,
            skipped: Vec::new(),
            ..Default::default()
        };
        let report = ScanReport::new(&rules, &[], &stats, std::time::Duration::ZERO);
        let summary = summary(&report);
        assert!(
            summary.contains("skipped 1 binary and 0 other"),
            "{summary}"
        );
    }

    #[test]
    fn bytes_are_humane() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(780 * 1024 * 1024), "780.0 MiB");
    }
}
