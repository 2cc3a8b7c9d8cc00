//! The cheap checks that turn a pattern match into a finding: boundaries, entropy,
//! placeholders, and nearby context.

use std::ops::Range;

use keyscope_rules::Context;

/// Substrings that mark a value as a placeholder or documentation, not a key (lowercase).
const PLACEHOLDER_MARKERS: &[&[u8]] = &[
    b"xxxx",
    b"example",
    b"redacted",
    b"placeholder",
    b"your",
    b"dummy",
    b"sample",
    b"changeme",
    b"replace",
    b"insert",
    b"****",
    b"...",
    b"<",
    b">",
    b"${",
    b"{{",
    b"123456",
    b"abcdef",
];

/// Inline comments that silence a finding on their line: keyscope's own, and those of
/// gitleaks and detect-secrets so that teams can migrate without touching every line.
const ALLOW_MARKERS: &[&[u8]] = &[
    b"keyscope:allow",
    b"gitleaks:allow",
    b"pragma: allowlist secret",
];

/// A run of this many identical characters marks a made-up value.
const REPEAT_RUN: usize = 6;

/// Whether the secret is delimited: the bytes around it are not letters or digits, except that
/// an escape such as `\n` just before it (JSON, C strings) counts as a delimiter.
pub(crate) fn has_boundaries(data: &[u8], span: &Range<usize>) -> bool {
    let before_ok = match span.start {
        0 => true,
        1 => !data[0].is_ascii_alphanumeric(),
        at => !data[at - 1].is_ascii_alphanumeric() || data[at - 2] == b'\\',
    };
    let after_ok = data
        .get(span.end)
        .is_none_or(|b| !b.is_ascii_alphanumeric());
    before_ok && after_ok
}

/// Whether the value is a placeholder: a documentation marker, a template reference, or a
/// run of one repeated character.
pub(crate) fn is_placeholder(secret: &[u8]) -> bool {
    let lower = secret.to_ascii_lowercase();
    if PLACEHOLDER_MARKERS
        .iter()
        .any(|m| memchr::memmem::find(&lower, m).is_some())
    {
        return true;
    }
    lower
        .chunk_by(|a, b| a == b)
        .any(|run| run.len() >= REPEAT_RUN)
}

/// Shannon entropy in bits per byte.
pub(crate) fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[usize::from(b)] += 1;
    }
    let len = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// Line numbers of one blob, computed only when a candidate needs them.
#[derive(Debug)]
pub(crate) struct LineIndex<'a> {
    data: &'a [u8],
    newlines: Option<Vec<usize>>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(data: &'a [u8]) -> LineIndex<'a> {
        LineIndex {
            data,
            newlines: None,
        }
    }

    fn newlines(&mut self) -> &[usize] {
        let data = self.data;
        self.newlines
            .get_or_insert_with(|| memchr::memchr_iter(b'\n', data).collect())
    }

    /// Byte range of the lines from `radius` lines above `span` to `radius` lines below it.
    fn around(&mut self, span: &Range<usize>, radius: usize) -> Range<usize> {
        let len = self.data.len();
        let newlines = self.newlines();
        let first = newlines.partition_point(|&nl| nl < span.start);
        let last = newlines.partition_point(|&nl| nl < span.end);
        let start = first.checked_sub(radius + 1).map_or(0, |i| newlines[i] + 1);
        let end = newlines.get(last + radius).map_or(len, |&nl| nl);
        start..end
    }

    /// Whether the context holds near the span (anywhere, for `lines == 0`): one of its
    /// patterns matches (when it has any) and none of its `unless` patterns does.
    pub(crate) fn context_matches(&mut self, context: &Context, span: &Range<usize>) -> bool {
        let range = match context.lines() {
            0 => 0..self.data.len(),
            radius => self.around(span, radius),
        };
        let text = &self.data[range];
        (context.patterns().is_empty() || context.patterns().iter().any(|p| p.is_match(text)))
            && !context.unless().iter().any(|p| p.is_match(text))
    }

    /// Whether the line of the span carries an inline allow comment.
    pub(crate) fn allowed_inline(&mut self, span: &Range<usize>) -> bool {
        let line = self.around(span, 0);
        let text = &self.data[line];
        ALLOW_MARKERS
            .iter()
            .any(|m| memchr::memmem::find(text, m).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised() {
        for p in [
            "sk-xxxxxxxxxxxx",
            "your-key-here",
            "<YOUR_KEY>",
            "EXAMPLEKEY1234",
            "REDACTED",
            "sk-proj-...",
            "aaaaaaaaaaaa",
            "${OPENAI_API_KEY}",
            "{{ .Values.key }}",
            "0000000000000",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        assert!(!is_placeholder(b"q8Zr3LwX0pVt7KcN2bYh5MfJ"));
    }

    #[test]
    fn entropy_separates_random_from_repetitive() {
        assert!(shannon_entropy(b"q8Zr3LwX0pVt7KcN2bYh5MfJ") > 4.0);
        assert!(shannon_entropy(b"abababababababab") <= 1.0);
        assert_eq!(shannon_entropy(b""), 0.0);
    }

    #[test]
    fn allow_markers_apply_to_their_own_line_only() {
        let data = b"a = 1\nkey = X # keyscope:allow\nkey = X\nb = X # pragma: allowlist secret";
        let mut lines = LineIndex::new(data);
        let at = |needle: &str, from: usize| {
            let start = from + memchr::memmem::find(&data[from..], needle.as_bytes()).unwrap();
            start..start + needle.len()
        };
        assert!(lines.allowed_inline(&at("X", 0)));
        assert!(!lines.allowed_inline(&at("X", 30)));
        assert!(lines.allowed_inline(&at("X", 40)));
    }

    #[test]
    fn line_windows_cover_the_requested_radius() {
        let data = b"a\nb\nKEY\nc\nd";
        let mut lines = LineIndex::new(data);
        let at = 4..7;
        assert_eq!(&data[lines.around(&at, 0)], b"KEY");
        assert_eq!(&data[lines.around(&at, 1)], b"b\nKEY\nc");
        assert_eq!(&data[lines.around(&at, 5)], &data[..]);
    }
}
