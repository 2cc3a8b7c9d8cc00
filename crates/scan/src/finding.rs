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
    /// `None` for a finding read back from a report, which never holds it.
    key_sha256: Option<String>,
}

impl Finding {
    /// The plain SHA-256 of the secret, hex-encoded: the form in which a policy store
    /// registers keys (`sha256:<hex>`). Used for attribution only; never reported, so a
    /// finding read back from a report has none.
    pub fn key_sha256(&self) -> Option<&str> {
        self.key_sha256.as_deref()
    }

    /// A finding of the rule `rule_id` at `location`, as a report recorded it, for a reader
    /// of reports to fill in: every other public field starts empty (`kind` a secret,
    /// `severity` info) and is the reader's to set. It has no key hash, since no report holds
    /// one.
    pub fn recorded(rule_id: String, location: Location, fingerprint: String) -> Finding {
        Finding {
            kind: RuleKind::Secret,
            rule_id,
            rule_name: String::new(),
            provider: String::new(),
            severity: Severity::Info,
            location,
            redacted: String::new(),
            fingerprint,
            snippet: Snippet {
                text: String::new(),
                highlight: 0..0,
            },
            base64: false,
            correlation: None,
            owner: None,
            at_head: None,
            related: Vec::new(),
            key_sha256: None,
        }
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
/// links) are set aside for the search, and a key is masked wherever a rule's pattern matches,
/// word boundary or not: a key glued to a letter (`--format <KEY>G`) is still a key.
pub fn mask_secrets(engine: &Detector, text: &str) -> String {
    // Most text (every JSON answer of the service) has no escape sequence: search it as it is,
    // without a copy and a position table eight times its size.
    if !text.as_bytes().contains(&0x1b) {
        let mut masked = text.as_bytes().to_vec();
        mask_in(engine, text, &mut masked, |i| i);
        return String::from_utf8(masked)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    }
    let (visible, positions) = without_escapes(text);
    let mut masked = text.as_bytes().to_vec();
    mask_in(engine, &visible, &mut masked, |i| positions[i]);
    // A key inside an escape sequence (a window title, a hyperlink's target) is set aside with
    // the sequence above, and shown by anything that is not a terminal: mask the text as it is
    // too.
    if visible.len() != text.len() {
        mask_in(engine, text, &mut masked, |i| i);
    }
    String::from_utf8(masked).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Masks in `masked` every secret found in `searched`, whose byte `i` is `masked[at(i)]`.
fn mask_in(engine: &Detector, searched: &str, masked: &mut [u8], at: impl Fn(usize) -> usize) {
    let rules = engine.rules().rules();
    for m in engine.scan_for_masking(searched.as_bytes()) {
        let rule = &rules[m.rule];
        if rule.kind() != RuleKind::Secret {
            continue;
        }
        let Some(found) = searched.get(m.span.clone()) else {
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
        if searched.get(hidden.clone()).is_some() {
            for i in hidden {
                masked[at(i)] = b'*';
            }
        }
    }
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
        // An escape's length is counted in bytes, and what follows it may be a character of
        // several: never stop inside one, or the text left would not line up with `positions`.
        while i < bytes.len() && !text.is_char_boundary(i) {
            i += 1;
        }
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

/// Builds the findings of one blob from its matches; usage matches in a place where usage
/// rules do not apply (documentation, messages, source maps) are left out.
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
    let masks = masks(matches, &redactions);
    let newlines: Vec<usize> = memchr::memchr_iter(b'\n', data).collect();
    // The column of the previous finding on the same line: columns are counted on from it, so
    // a line with many keys is read once, not once per key.
    let mut last: Option<(usize, usize, usize)> = None;
    matches
        .iter()
        .zip(&redactions)
        .map(|(m, redacted)| {
            let line_index = newlines.partition_point(|&nl| nl < m.span.start);
            let line_start = line_index.checked_sub(1).map_or(0, |i| newlines[i] + 1);
            let line_end = newlines.get(line_index).copied().unwrap_or(data.len());
            let column = match last {
                Some((line, at, column)) if line == line_index && at <= m.span.start => {
                    column + char_count(&data[at..m.span.start])
                }
                _ => char_count(&data[line_start..m.span.start]) + 1,
            };
            last = Some((line_index, m.span.start, column));
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
                snippet: snippet(data, line_start..line_end, &m.span, &masks),
                base64: m.base64,
                correlation: None,
                owner: None,
                at_head: None,
                related: Vec::new(),
                key_sha256: Some(hex(&Sha256::digest(&m.secret))),
            }
        })
        .filter(|f| f.kind != RuleKind::Usage || crate::usage::applies_at(origin))
        .collect()
}

/// A run of bytes that a snippet shows as a redaction.
struct Mask {
    span: Range<usize>,
    shown: String,
}

/// The masks of a blob's secrets, in position order; overlapping secrets (two rules, or a key
/// running into its neighbour) make one mask, so that no part of either is shown.
fn masks(matches: &[Match], redactions: &[String]) -> Vec<Mask> {
    let mut masks: Vec<Mask> = Vec::new();
    for (m, redacted) in matches.iter().zip(redactions) {
        if redacted.is_empty() {
            continue;
        }
        match masks.last_mut() {
            Some(last) if m.span.start < last.span.end => {
                last.span.end = last.span.end.max(m.span.end);
            }
            _ => masks.push(Mask {
                span: m.span.clone(),
                shown: if m.base64 {
                    format!("[base64: {redacted}]")
                } else {
                    redacted.clone()
                },
            }),
        }
    }
    masks
}

/// The mask that holds byte `at`, if any.
fn mask_at(masks: &[Mask], at: usize) -> Option<&Mask> {
    let i = masks.partition_point(|mk| mk.span.end <= at);
    masks.get(i).filter(|mk| mk.span.start <= at)
}

/// Bytes of a line read on each side of a match for its snippet: enough for
/// [`SNIPPET_CONTEXT`] characters of up to four bytes each, and one more to know that the
/// line goes on.
const WINDOW_BYTES: usize = 4 * (SNIPPET_CONTEXT + 1);

fn char_count(bytes: &[u8]) -> usize {
    // As `String::from_utf8_lossy(bytes).chars().count()`, without building the string.
    bytes
        .utf8_chunks()
        .map(|chunk| chunk.valid().chars().count() + usize::from(!chunk.invalid().is_empty()))
        .sum()
}

/// The masked line around one match: every secret on it replaced by its redaction, cut to
/// some context on each side. Usage matches (code, not secrets) are shown as they are,
/// highlighted. Only a window of the line around the match is read, so a finding on a long
/// minified line costs what its snippet does, not what the line does.
fn snippet(data: &[u8], line: Range<usize>, span: &Range<usize>, masks: &[Mask]) -> Snippet {
    let mut line_end = line.end;
    while line_end > line.start && data[line_end - 1] == b'\r' {
        line_end -= 1;
    }
    let focus_start = span.start.clamp(line.start, line_end);
    let focus_end = span.end.clamp(focus_start, line_end);
    // Walk out from the match, a byte or a whole mask at a time.
    let mut start = focus_start;
    if let Some(mask) = mask_at(masks, start) {
        start = mask.span.start.max(line.start);
    }
    for _ in 0..WINDOW_BYTES {
        if start <= line.start {
            break;
        }
        start = match mask_at(masks, start - 1) {
            Some(mask) => mask.span.start.max(line.start),
            None => start - 1,
        };
    }
    let mut end = focus_end;
    if end > focus_start
        && let Some(mask) = mask_at(masks, end - 1)
    {
        end = mask.span.end.min(line_end);
    }
    for _ in 0..WINDOW_BYTES {
        if end >= line_end {
            break;
        }
        end = match mask_at(masks, end) {
            Some(mask) => mask.span.end.min(line_end),
            None => end + 1,
        };
    }
    let mut text = String::new();
    let mut highlight: (Option<usize>, Option<usize>) = (None, None);
    let mut at = start;
    let first = masks.partition_point(|mk| mk.span.end <= start);
    for mask in masks[first..].iter().take_while(|mk| mk.span.start < end) {
        let raw_end = mask.span.start.max(at);
        push_raw(
            &mut text,
            data,
            at..raw_end,
            focus_start..focus_end,
            &mut highlight,
        );
        if highlight.0.is_none() && mask.span.start <= focus_start && focus_start < mask.span.end {
            highlight.0 = Some(text.len());
        }
        text.push_str(&mask.shown);
        if highlight.1.is_none() && mask.span.start < focus_end && focus_end <= mask.span.end {
            highlight.1 = Some(text.len());
        }
        at = mask.span.end.min(end).max(at);
    }
    push_raw(
        &mut text,
        data,
        at..end,
        focus_start..focus_end,
        &mut highlight,
    );
    let hl_start = highlight.0.unwrap_or(0).min(text.len());
    let hl_end = highlight
        .1
        .unwrap_or(text.len())
        .clamp(hl_start, text.len());
    cut_within(&text, hl_start..hl_end, start > line.start, end < line_end)
}

/// Appends `data[raw]` to `text`, noting where the focus starts and ends in it.
fn push_raw(
    text: &mut String,
    data: &[u8],
    raw: Range<usize>,
    focus: Range<usize>,
    highlight: &mut (Option<usize>, Option<usize>),
) {
    if raw.start > raw.end {
        return;
    }
    for (bound, slot) in [
        (focus.start, &mut highlight.0),
        (focus.end, &mut highlight.1),
    ] {
        if slot.is_none() && (raw.start..=raw.end).contains(&bound) {
            *slot = Some(text.len() + String::from_utf8_lossy(&data[raw.start..bound]).len());
        }
    }
    text.push_str(&String::from_utf8_lossy(&data[raw]));
}

/// Cuts a long line to the highlighted part and some context on each side.
#[cfg(test)]
fn cut(text: &str, highlight: Range<usize>) -> Snippet {
    cut_within(text, highlight, false, false)
}

/// Cuts `text` to the highlighted part and some context on each side; `more_before` and
/// `more_after` say that `text` is itself a window of a longer line.
fn cut_within(text: &str, highlight: Range<usize>, more_before: bool, more_after: bool) -> Snippet {
    let mut before = text[..highlight.start].char_indices().rev();
    let start = match before.nth(SNIPPET_CONTEXT - 1) {
        Some((i, _)) if before.next().is_some() => i,
        _ => 0,
    };
    let end = text[highlight.end..]
        .char_indices()
        .nth(SNIPPET_CONTEXT)
        .map_or(text.len(), |(i, _)| highlight.end + i);
    let lead = if start > 0 || more_before { "…" } else { "" };
    let trail = if end < text.len() || more_after {
        "…"
    } else {
        ""
    };
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
