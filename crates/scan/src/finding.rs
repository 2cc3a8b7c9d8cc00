//! Findings: what a match becomes once it has a place, a redacted form and a fingerprint.
//! Nothing in a [`Finding`] holds the secret in clear.

use std::ops::Range;

use keyscope_rules::{Rule, RuleKind, Severity};
use keyscope_sources::{CommitInfo, Origin};
use sha2::{Digest, Sha256};

use crate::detector::{Detector, Match};

/// Domain separator for fingerprints, so they cannot be looked up in a table of plain hashes
/// of known keys, and so a later format can change it.
const FINGERPRINT_SALT: &[u8] = b"keyscope-fingerprint-v1\0";
/// Characters of context kept either side of the secret in a snippet.
const SNIPPET_CONTEXT: usize = 48;

/// Where a finding is: the content it was read from and a 1-based line and column range (in
/// characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The file, blob, message or stream the finding is in.
    pub origin: Origin,
    /// 1-based line of the start of the secret.
    pub line: usize,
    /// 1-based column of the first character of the secret.
    pub column: usize,
    /// 1-based column just past the secret on its first line (exclusive).
    pub end_column: usize,
}

impl Location {
    /// For content found in git history: the commit that introduced it at this place.
    pub fn commit(&self) -> Option<&CommitInfo> {
        self.origin.commit()
    }
}

/// Locations are ordered as reports list them: by the place as shown, then line and column.
impl Ord for Location {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let shown = |l: &Location| l.origin.to_string();
        shown(self)
            .cmp(&shown(other))
            .then_with(|| {
                (self.line, self.column, self.end_column, self.commit()).cmp(&(
                    other.line,
                    other.column,
                    other.end_column,
                    other.commit(),
                ))
            })
            .then_with(|| self.origin.cmp(&other.origin))
    }
}

impl PartialOrd for Location {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// What a flat-key finding found about a key from all the places it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Correlation {
    /// These environments, services or repositories share the key.
    SharedBy(Vec<String>),
    /// The key is in a file that browsers download.
    ServedToBrowsers,
}

/// Who a leaked key belongs to, as a key registry records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// The registered key's id.
    pub key_id: String,
    /// The scope the key is issued to (`prod/care-notes-summarization`).
    pub scope: String,
    /// Whether that scope is production: a leak there is one severity level worse.
    pub production: bool,
}

/// The line of a finding, with every secret on it masked, cut to a readable width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// The masked text.
    pub text: String,
    /// Byte range of this finding's masked secret within `text`.
    pub highlight: Range<usize>,
}

/// One leaked secret at one place.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Whether this is a secret or a risky use of keys.
    pub kind: RuleKind,
    /// The rule's id.
    pub rule_id: String,
    /// The rule's human name.
    pub rule_name: String,
    /// The provider slug.
    pub provider: String,
    /// How bad it is.
    pub severity: Severity,
    /// Where it is.
    pub location: Location,
    /// The secret, redacted: its public prefix and last four characters at most (empty for
    /// usage findings, which hold no secret of their own).
    pub redacted: String,
    /// A salted SHA-256 of the secret (32 hex characters): stable when the file moves, the
    /// same for the same secret anywhere, useless for recovering it.
    pub fingerprint: String,
    /// The line, masked.
    pub snippet: Snippet,
    /// Whether the secret was base64-encoded where it was found.
    pub base64: bool,
    /// For a flat-key finding: what the key's places say about it.
    pub correlation: Option<Correlation>,
    /// Whose key leaked: the registered key and its scope, when a key registry knows the key.
    pub owner: Option<KeyOwner>,
    /// For a git history sweep: whether the secret is still in HEAD's tree (`None` when that
    /// was not asked, or for a commit message).
    pub at_head: Option<bool>,
    /// Other places the same secret was found (history sweeps group them), or the places a
    /// flat-key finding relates (every environment that shares the key).
    pub related: Vec<Location>,
    key_sha256: String,
}

impl Finding {
    /// The plain SHA-256 of the secret, hex-encoded: the form in which a policy store
    /// registers keys (`sha256:<hex>`). Used for attribution only; never reported.
    pub fn key_sha256(&self) -> &str {
        &self.key_sha256
    }
}

/// Redacts a secret: the rule's public prefix (when it is at most half the secret), an
/// ellipsis, and the last four characters (none for secrets shorter than 16).
pub fn redact(secret: &[u8], prefix: Option<&str>) -> String {
    let text = String::from_utf8_lossy(secret);
    let chars: Vec<char> = text.chars().collect();
    let shown_prefix = prefix
        .filter(|p| text.starts_with(p) && p.chars().count() * 2 <= chars.len())
        .unwrap_or("");
    let tail: String = if chars.len() >= 16 {
        chars[chars.len() - 4..].iter().collect()
    } else {
        String::new()
    };
    format!("{shown_prefix}…{tail}")
}

/// `text` with every secret that `engine` finds in it masked in place: the rule's public prefix
/// and the last four characters stay (as in [`redact`]), every other character becomes `*`. The
/// text keeps its length and line structure, so it can stand in for a user's file in an error
/// report without moving anything the report points at. Terminal escape sequences (colours,
/// links) are set aside for the search: a colour code right before a key would otherwise hide
/// the word boundary most rules need.
pub fn mask_secrets(engine: &Detector, text: &str) -> String {
    let (visible, positions) = without_escapes(text);
    let rules = engine.rules().rules();
    let mut masked = text.as_bytes().to_vec();
    for m in engine.scan(visible.as_bytes()) {
        let rule = &rules[m.rule];
        if rule.kind() != RuleKind::Secret {
            continue;
        }
        let Some(found) = visible.get(m.span.clone()) else {
            continue;
        };
        let keep_start = rule
            .prefix()
            .filter(|p| !m.base64 && found.starts_with(p) && p.len() * 2 <= found.len())
            .map_or(0, str::len);
        let keep_end = if found.len() >= 16 { 4 } else { 0 };
        let hidden = m.span.start + keep_start..m.span.end - keep_end;
        // Whole characters only: every byte of each becomes one `*`, so the result stays UTF-8
        // and offsets after the secret do not move.
        if visible.get(hidden.clone()).is_some() {
            for i in hidden {
                masked[positions[i]] = b'*';
            }
        }
    }
    String::from_utf8(masked).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `text` without its terminal escape sequences (CSI such as colours, OSC such as links), and
/// for each byte left, its offset in `text`.
fn without_escapes(text: &str) -> (String, Vec<usize>) {
    const ESC: u8 = 0x1b;
    let bytes = text.as_bytes();
    let mut visible = Vec::with_capacity(bytes.len());
    let mut positions = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != ESC {
            visible.push(bytes[i]);
            positions.push(i);
            i += 1;
            continue;
        }
        i += match bytes.get(i + 1) {
            // CSI: parameters, then one final byte in @..~.
            Some(b'[') => bytes[i + 2..]
                .iter()
                .position(|b| (0x40..=0x7e).contains(b))
                .map_or(bytes.len() - i, |end| end + 3),
            // OSC: up to BEL or ESC \.
            Some(b']') => {
                let rest = &bytes[i + 2..];
                match rest.iter().position(|&b| b == 0x07 || b == ESC) {
                    Some(end) if rest[end] == ESC => end + 4,
                    Some(end) => end + 3,
                    None => bytes.len() - i,
                }
            }
            Some(_) => 2,
            None => 1,
        };
    }
    // Only ASCII escape bytes were taken out, so what is left is still UTF-8.
    let visible = String::from_utf8(visible)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    (visible, positions)
}

/// The salted fingerprint of a secret.
pub fn salted_fingerprint(secret: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(FINGERPRINT_SALT);
    hasher.update(secret);
    hex(&hasher.finalize()[..16])
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Builds the findings of one blob from its matches.
pub(crate) fn findings(
    rules: &[Rule],
    origin: &Origin,
    data: &[u8],
    matches: &[Match],
) -> Vec<Finding> {
    let redactions: Vec<String> = matches
        .iter()
        .map(|m| match rules[m.rule].kind() {
            RuleKind::Secret | RuleKind::Correlation => redact(&m.secret, rules[m.rule].prefix()),
            RuleKind::Usage => String::new(),
        })
        .collect();
    let masks: Vec<(&Match, &str)> = matches
        .iter()
        .zip(&redactions)
        .map(|(m, r)| (m, r.as_str()))
        .collect();
    let mut newlines: Option<Vec<usize>> = None;
    matches
        .iter()
        .zip(&redactions)
        .map(|(m, redacted)| {
            let newlines =
                newlines.get_or_insert_with(|| memchr::memchr_iter(b'\n', data).collect());
            let line_index = newlines.partition_point(|&nl| nl < m.span.start);
            let line_start = line_index.checked_sub(1).map_or(0, |i| newlines[i] + 1);
            let line_end = newlines.get(line_index).copied().unwrap_or(data.len());
            let column = char_count(&data[line_start..m.span.start]) + 1;
            let end_column = column + char_count(&data[m.span.start..m.span.end.min(line_end)]);
            let rule = &rules[m.rule];
            Finding {
                kind: rule.kind(),
                rule_id: rule.id().to_owned(),
                rule_name: rule.name().to_owned(),
                provider: rule.provider().to_owned(),
                severity: rule.severity(),
                location: Location {
                    origin: origin.clone(),
                    line: line_index + 1,
                    column,
                    end_column: end_column.max(column + 1),
                },
                redacted: redacted.clone(),
                fingerprint: salted_fingerprint(&m.secret),
                snippet: snippet(data, line_start..line_end, m, &masks),
                base64: m.base64,
                correlation: None,
                owner: None,
                at_head: None,
                related: Vec::new(),
                key_sha256: hex(&Sha256::digest(&m.secret)),
            }
        })
        .collect()
}

fn char_count(bytes: &[u8]) -> usize {
    String::from_utf8_lossy(bytes).chars().count()
}

/// The masked line around one match: every secret on the line replaced by its redaction.
/// Usage matches (code, not secrets) are shown as they are, highlighted.
fn snippet(data: &[u8], line: Range<usize>, this: &Match, matches: &[(&Match, &str)]) -> Snippet {
    let mut text = String::new();
    let mut at = line.start;
    // Where the highlight starts and ends in `text`, once known.
    let mut highlight: (Option<usize>, Option<usize>) = (None, None);
    let copy_to = |text: &mut String,
                   at: usize,
                   to: usize,
                   highlight: &mut (Option<usize>, Option<usize>)| {
        for (bound, slot) in [
            (this.span.start, &mut highlight.0),
            (this.span.end, &mut highlight.1),
        ] {
            if slot.is_none() && (at..=to).contains(&bound) {
                *slot = Some(text.len() + String::from_utf8_lossy(&data[at..bound]).len());
            }
        }
        text.push_str(&String::from_utf8_lossy(&data[at..to]));
    };
    for &(m, redacted) in matches {
        // Matches are in position order; one that overlaps an earlier mask is already hidden.
        if m.span.start >= line.end || m.span.end <= line.start || m.span.start < at {
            continue;
        }
        if redacted.is_empty() {
            continue;
        }
        copy_to(&mut text, at, m.span.start, &mut highlight);
        let masked = if m.base64 {
            format!("[base64: {redacted}]")
        } else {
            redacted.to_owned()
        };
        if std::ptr::eq(m, this) {
            highlight = (Some(text.len()), Some(text.len() + masked.len()));
        }
        text.push_str(&masked);
        at = m.span.end;
    }
    if at < line.end {
        copy_to(&mut text, at, line.end, &mut highlight);
    }
    let start = highlight.0.unwrap_or(0).min(text.len());
    let end = highlight.1.unwrap_or(text.len()).clamp(start, text.len());
    let trimmed = text.trim_end_matches('\r');
    let end = end.min(trimmed.len());
    cut(trimmed, start.min(end)..end)
}

/// Cuts a long line to the highlighted part and some context on each side.
fn cut(text: &str, highlight: Range<usize>) -> Snippet {
    let before: Vec<(usize, char)> = text[..highlight.start].char_indices().collect();
    let start = if before.len() > SNIPPET_CONTEXT {
        before[before.len() - SNIPPET_CONTEXT].0
    } else {
        0
    };
    let end = text[highlight.end..]
        .char_indices()
        .nth(SNIPPET_CONTEXT)
        .map_or(text.len(), |(i, _)| highlight.end + i);
    let lead = if start > 0 { "…" } else { "" };
    let trail = if end < text.len() { "…" } else { "" };
    let trimmed_start =
        text[start..highlight.start].len() - text[start..highlight.start].trim_start().len();
    let body = &text[start + trimmed_start..end];
    let offset = lead.len() + highlight.start - start - trimmed_start;
    Snippet {
        text: format!("{lead}{body}{trail}"),
        highlight: offset..offset + highlight.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_shows_prefix_and_last_four_only() {
        let secret = b"sk-ant-api03-q8Zr3LwX0pVt7KcN2bYh5MfJq8Zr3LwX0pVt7KcN2bYh5MfJAA";
        assert_eq!(redact(secret, Some("sk-ant-api03-")), "sk-ant-api03-…fJAA");
        assert_eq!(redact(b"0123456789abcdef0123", None), "…0123");
        assert_eq!(redact(b"short", None), "…");
        // A prefix that would show more than half the secret is not shown.
        assert_eq!(
            redact(b"sk-abcdefghijklmnop", Some("sk-abcdefghijk")),
            "…mnop"
        );
    }

    #[test]
    fn masking_keeps_length_prefix_and_last_four() {
        let engine = crate::detector::tests::engine();
        let key = crate::detector::tests::KEY;
        let text = format!("line 1\n  × bad value `{key}`\n 2 │ token = \"{key}\" # é\n");
        let masked = mask_secrets(&engine, &text);
        assert_eq!(masked.len(), text.len());
        assert!(!masked.contains(key), "{masked}");
        assert_eq!(
            masked.matches("demo_********************5MfJ").count(),
            2,
            "{masked}"
        );
        assert!(masked.ends_with("\" # é\n"));
        // A colour code right before the key (clap's style for a refused value) hides no key,
        // and the codes themselves stay.
        let coloured = format!(
            "invalid value '\x1b[33m{key}\x1b[0m' \x1b]8;;file:///x\x1b\\link\x1b]8;;\x1b\\"
        );
        let masked = mask_secrets(&engine, &coloured);
        assert_eq!(masked.len(), coloured.len());
        assert!(!masked.contains(key), "{masked}");
        assert!(
            masked.contains("'\x1b[33mdemo_********************5MfJ\x1b[0m'"),
            "{masked}"
        );
        assert!(masked.ends_with("link\x1b]8;;\x1b\\"));
        // Nothing found, nothing changed.
        assert_eq!(mask_secrets(&engine, "plain text"), "plain text");
    }

    #[test]
    fn fingerprint_is_stable_salted_and_short() {
        assert_eq!(salted_fingerprint(b"abc"), salted_fingerprint(b"abc"));
        assert_ne!(salted_fingerprint(b"abc"), salted_fingerprint(b"abd"));
        assert_eq!(salted_fingerprint(b"abc").len(), 32);
        // Not the plain SHA-256 of the secret.
        assert!(!hex(&Sha256::digest(b"abc")).starts_with(&salted_fingerprint(b"abc")));
    }

    #[test]
    fn long_lines_are_cut_around_the_highlight() {
        let text = format!("{}SECRET{}", "a".repeat(500), "b".repeat(500));
        let s = cut(&text, 500..506);
        assert_eq!(&s.text[s.highlight.clone()], "SECRET");
        assert!(s.text.starts_with('…') && s.text.ends_with('…'));
        assert!(s.text.chars().count() < 120);
    }
}
