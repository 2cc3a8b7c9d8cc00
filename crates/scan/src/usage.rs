//! Where usage rules apply: to code that does the thing, not to text about it.
//!
//! A usage rule's pattern matches code (`verify=False`, `console.log(apiKey)`,
//! `dangerouslyAllowBrowser: true`), and the same characters turn up in text that only talks
//! about such code: a README's table, a comment, an error message that tells the user which
//! option to set, a test that builds such code as a string, a source map that embeds a library's
//! sources. The one design decision here: **a usage match counts only where a program would run
//! it**, judged twice and cheaply, since only usage matches pay for it:
//!
//! - by place: not in documentation files (Markdown, reStructuredText, plain text, ...), commit
//!   and tag messages, source maps, third-party packages (`node_modules/`, `site-packages/`,
//!   `vendor/`) or build output (`dist/`): usage findings are about code the team writes, and
//!   build output repeats its sources ([`applies_at`]);
//! - by position: not inside a comment, not wholly inside a string literal (one of a line or a
//!   Python triple-quoted one), and not on a minified line, whose source is where the finding
//!   belongs and which in a published package is mostly vendored SDK code
//!   ([`TextRegions::is_code`]).
//!
//! Secret rules ignore both: a key in a README or a comment is still a leaked key.

use std::ops::Range;
use std::path::Path;

use keyscope_rules::RuleKind;
use keyscope_sources::Origin;

use crate::Finding;

/// File extensions of documentation: prose that shows code rather than runs it.
const DOC_EXTENSIONS: &[&str] = &[
    "md", "markdown", "mdown", "mkd", "mdx", "rst", "txt", "text", "adoc", "asciidoc", "org",
    "rdoc", "textile", "tex", "pod",
];

/// File names without an extension that hold documentation.
const DOC_NAMES: &[&str] = &[
    "README",
    "CHANGELOG",
    "CHANGES",
    "HISTORY",
    "NEWS",
    "LICENSE",
    "NOTICE",
    "AUTHORS",
];

/// Directories of other people's code (installed or vendored packages) and of build output.
const NOT_OURS: &[&str] = &[
    "node_modules",
    "bower_components",
    "site-packages",
    "dist-packages",
    "vendor",
    "third_party",
    "dist",
    ".next",
    "_next",
];

/// Whether findings of usage rules are wanted at this place: not in documentation, commit or
/// tag messages, source maps (which embed a library's sources as JSON strings), installed or
/// vendored packages, or build output.
pub(crate) fn applies_at(origin: &Origin) -> bool {
    let path = match origin {
        Origin::CommitMessage { .. } | Origin::TagMessage { .. } => return false,
        Origin::File(path) => path.to_string_lossy(),
        Origin::Index { path } | Origin::Commit { path, .. } => path.as_str().into(),
        _ => return true,
    };
    let path = Path::new(path.as_ref());
    let mut parents = path.parent().into_iter().flat_map(Path::components);
    if parents.any(|c| NOT_OURS.iter().any(|d| c.as_os_str() == *d)) {
        return false;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension {
        Some(e) => !(DOC_EXTENSIONS.contains(&e.as_str()) || e == "map"),
        None => !DOC_NAMES.iter().any(|d| name.eq_ignore_ascii_case(d)),
    }
}

/// Drops the usage findings placed where usage rules do not apply (see [`applies_at`]).
pub(crate) fn retain_applicable(findings: &mut Vec<Finding>) {
    findings.retain(|f| f.kind != RuleKind::Usage || applies_at(&f.location.origin));
}

/// A line longer than this is minified or generated: nobody writes one by hand.
const MINIFIED_LINE: usize = 4096;

/// The triple-quoted strings of one blob, found on first use: a usage match inside a Python
/// docstring or multi-line message is text.
#[derive(Debug, Default)]
pub(crate) struct TextRegions {
    triple_quoted: Option<Vec<Range<usize>>>,
}

impl TextRegions {
    /// Whether the match at `span` of `data` is code written by hand: it does not start in a
    /// comment, lie wholly inside one string literal of its line or inside a triple-quoted
    /// string (unless `in_strings`: the rule finds what code holds as strings), or sit on a
    /// minified line.
    pub(crate) fn is_code(&mut self, data: &[u8], span: &Range<usize>, in_strings: bool) -> bool {
        !self.is_text(data, span, in_strings)
    }

    fn is_text(&mut self, data: &[u8], span: &Range<usize>, in_strings: bool) -> bool {
        let line_start = memchr::memrchr(b'\n', &data[..span.start]).map_or(0, |i| i + 1);
        let line_end =
            memchr::memchr(b'\n', &data[span.start..]).map_or(data.len(), |i| span.start + i);
        if line_end - line_start > MINIFIED_LINE {
            return true;
        }
        let line = &data[line_start..line_end];
        let start = span.start - line_start;
        let end = span.end.min(line_end) - line_start;
        match lexical_at(line, start, end) {
            Lexical::LineComment | Lexical::BlockComment => return true,
            Lexical::String(_) if !in_strings => return true,
            _ if in_strings => return false,
            _ => {}
        }
        let regions = self
            .triple_quoted
            .get_or_insert_with(|| triple_quoted(data));
        let i = regions.partition_point(|r| r.end <= span.start);
        regions
            .get(i)
            .is_some_and(|r| r.start < span.start && span.end <= r.end)
    }
}

/// Where a line's text stands at a byte: in code, in a string opened by a quote, or in a
/// comment that runs to the end of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lexical {
    Code,
    String(u8),
    BlockComment,
    LineComment,
}

/// Where the match `start..end` of `line` stands: in a comment (it starts in one), in a string
/// (it lies inside one string literal that closes on this line at or after `end`), or in code.
/// A string left open at the end of the line (an apostrophe, a Rust lifetime, a template
/// literal that goes on) proves nothing: the match is taken for code.
fn lexical_at(line: &[u8], start: usize, end: usize) -> Lexical {
    let trimmed = line.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = trimmed else {
        return Lexical::Code;
    };
    // A line that opens with `*` continues a block comment (`/** ... */` documentation).
    if line[first] == b'*'
        && line
            .get(first + 1)
            .is_none_or(|b| matches!(b, b' ' | b'/' | b'\t'))
    {
        return Lexical::BlockComment;
    }
    let mut state = Lexical::Code;
    let mut i = 0;
    while i < start {
        state = step(line, &mut i, state);
        if state == Lexical::LineComment {
            return state;
        }
    }
    let Lexical::String(quote) = state else {
        return state;
    };
    let mut j = start;
    while j < line.len() {
        match line[j] {
            b'\\' => j += 2,
            b if b == quote => return if j >= end { state } else { Lexical::Code },
            _ => j += 1,
        }
    }
    Lexical::Code
}

/// Reads the byte at `*i` (and any it belongs with), advancing `*i`, and returns the state after.
fn step(line: &[u8], i: &mut usize, state: Lexical) -> Lexical {
    let b = line[*i];
    let next = line.get(*i + 1).copied();
    let previous = i.checked_sub(1).map(|p| line[p]);
    *i += 1;
    match state {
        Lexical::String(quote) => match b {
            b'\\' => {
                *i += 1;
                state
            }
            b if b == quote => Lexical::Code,
            _ => state,
        },
        Lexical::BlockComment => {
            if b == b'*' && next == Some(b'/') {
                *i += 1;
                Lexical::Code
            } else {
                state
            }
        }
        Lexical::LineComment => state,
        Lexical::Code => match (b, next) {
            // An apostrophe inside a word (`don't`) opens nothing.
            (b'\'', _) if previous.is_some_and(|p| p.is_ascii_alphanumeric()) => state,
            (b'"' | b'\'' | b'`', _) => Lexical::String(b),
            (b'/', Some(b'*')) => {
                *i += 1;
                Lexical::BlockComment
            }
            // Not `://` (a URL outside quotes, in YAML or a shell line).
            (b'/', Some(b'/')) if previous != Some(b':') => Lexical::LineComment,
            // `#` starts a comment at the start of a line or after a space; `#[` is an attribute
            // and `#!` a shebang or an inner attribute.
            (b'#', next)
                if previous.is_none_or(|p| p == b' ' || p == b'\t')
                    && !matches!(next, Some(b'[' | b'!' | b'{')) =>
            {
                Lexical::LineComment
            }
            (b'<', Some(b'!')) if line[*i..].starts_with(b"!--") => Lexical::LineComment,
            _ => state,
        },
    }
}

/// The byte ranges of a blob's triple-quoted strings (`"""..."""`, `'''...'''`), each from its
/// opening quotes to its closing ones. One quote kind inside the other's string is text.
fn triple_quoted(data: &[u8]) -> Vec<Range<usize>> {
    let mut regions = Vec::new();
    if memchr::memmem::find(data, b"\"\"\"").is_none()
        && memchr::memmem::find(data, b"'''").is_none()
    {
        return regions;
    }
    let mut open: Option<(u8, usize)> = None;
    let mut i = 0;
    while i + 3 <= data.len() {
        let b = data[i];
        if (b == b'"' || b == b'\'') && data[i + 1] == b && data[i + 2] == b {
            match open {
                None => open = Some((b, i)),
                Some((quote, at)) if quote == b => {
                    regions.push(at..i + 3);
                    open = None;
                }
                Some(_) => {}
            }
            i += 3;
        } else if b == b'\\' && open.is_some() {
            i += 2;
        } else {
            i += 1;
        }
    }
    regions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(data: &str, needle: &str) -> bool {
        let start = data.find(needle).unwrap();
        TextRegions::default().is_text(data.as_bytes(), &(start..start + needle.len()), false)
    }

    #[test]
    fn code_is_code() {
        for (data, needle) in [
            ("r = requests.get(url, verify=False)", "verify=False"),
            ("  \"verify\": False,", "\"verify\": False"),
            (
                "process.env[\"NODE_TLS_REJECT_UNAUTHORIZED\"] = \"0\";",
                "NODE_TLS_REJECT_UNAUTHORIZED\"] = \"0",
            ),
            (
                "{\"rejectUnauthorized\": false}",
                "rejectUnauthorized\": false",
            ),
            (
                "x = 'https://a.b'; c = new O({ dangerouslyAllowBrowser: true })",
                "dangerouslyAllowBrowser: true",
            ),
            (
                "fn f<'a>(c: &'a C) { b.danger_accept_invalid_certs(true) }",
                "danger_accept_invalid_certs(true)",
            ),
            ("#[cfg(test)] let x = verify=False;", "verify=False"),
            (
                "curl --insecure https://api.openai.com/v1/models",
                "curl --insecure",
            ),
        ] {
            assert!(!text(data, needle), "{data}");
        }
    }

    #[test]
    fn comments_and_messages_are_text() {
        for (data, needle) in [
            ("# requests.get(url, verify=False)", "verify=False"),
            ("x = 1  # verify=False would be bad", "verify=False"),
            (
                "// new OpenAI({ dangerouslyAllowBrowser: true })",
                "dangerouslyAllowBrowser: true",
            ),
            (
                "   * @param dangerouslyAllowBrowser: true to allow",
                "dangerouslyAllowBrowser: true",
            ),
            ("/* verify=False */ x()", "verify=False"),
            (
                "throw new Error(\"set dangerouslyAllowBrowser: true\");",
                "dangerouslyAllowBrowser: true",
            ),
            (
                "let t = \"requests.get(url, verify=False)\\n\";",
                "verify=False",
            ),
            ("<!-- print(api_key) -->", "print(api_key)"),
            (
                "def f():\n    \"\"\"Pass verify=False to skip.\n    \"\"\"\n",
                "verify=False",
            ),
        ] {
            assert!(text(data, needle), "{data}");
        }
    }

    #[test]
    fn strings_count_for_rules_that_find_strings() {
        let data = "r = requests.post(\"https://api.openai.com/v1\")  # or api.groq.com";
        let at = |needle: &str| {
            let start = data.find(needle).unwrap();
            start..start + needle.len()
        };
        let mut regions = TextRegions::default();
        assert!(regions.is_code(data.as_bytes(), &at("api.openai.com"), true));
        assert!(!regions.is_code(data.as_bytes(), &at("api.openai.com"), false));
        assert!(!regions.is_code(data.as_bytes(), &at("api.groq.com"), true));
    }

    #[test]
    fn minified_lines_are_not_code() {
        let line = format!(
            "var a=1;{}new O({{apiKey:e,dangerouslyAllowBrowser:!0}});",
            "b();".repeat(2000)
        );
        assert!(text(&line, "dangerouslyAllowBrowser:!0"));
        assert!(!text(&line[7000..], "dangerouslyAllowBrowser:!0"));
    }

    #[test]
    fn places_of_prose_and_generated_text_are_skipped() {
        for path in [
            "README.md",
            "docs/guide.rst",
            "dist/app.js.map",
            "notes.txt",
            "LICENSE",
        ] {
            assert!(!applies_at(&Origin::File(path.into())), "{path}");
        }
        for path in [
            "src/app.ts",
            "config.yaml",
            ".env",
            "Dockerfile",
            "main.py",
            "dist.py",
        ] {
            assert!(applies_at(&Origin::File(path.into())), "{path}");
        }
    }
}
