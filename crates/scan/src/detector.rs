//! The matching core: one keyword pass, then rule patterns only in windows around the hits.

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use keyscope_rules::{RuleKind, RuleSet};

use crate::checks;
use crate::encoding;
use crate::prefilter::Prefilter;
use crate::usage::TextRegions;

/// An error building an [`Detector`].
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// The keyword automaton could not be built (too many or too long keywords).
    #[error("cannot build the keyword prefilter: {0}")]
    Prefilter(String),
}

/// What an occurrence of one keyword means.
#[derive(Debug, Clone)]
enum KeywordUse {
    /// A rule keyword: try these rules (indexes into the rule set) around the hit.
    Rules(Vec<usize>),
    /// A sign of base64 data in the blob: look for encoded keywords too.
    Base64Trigger,
}

/// Literals that suggest base64-encoded data: Kubernetes `Secret` manifests (YAML and JSON) and
/// `ConfigMap` binary data, `base64`/`b64` names, tools and data URIs (`;base64,`), an HTTP basic
/// auth header written out (after a quote or a colon), npm and Docker `auth` entries.
///
/// Each trigger makes the engine search the blob a second time for encoded keywords, so they
/// must be rare in ordinary code: a bare `data:` (a Python annotation) or `Basic ` (prose)
/// triggered on half of a CPython history's bytes.
const BASE64_TRIGGERS: &[&str] = &[
    "kind: Secret",
    "\"kind\": \"Secret\"",
    "\"kind\":\"Secret\"",
    "binaryData",
    "base64",
    "Base64",
    "BASE64",
    "b64",
    "B64",
    "\"Basic ",
    "'Basic ",
    ": Basic ",
    "_auth",
    "auth\"",
];

/// A secret the engine found in one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index of the rule in the engine's rule set.
    pub rule: usize,
    /// Byte range in the blob to point at and to mask: the secret itself, or for an encoded
    /// secret the whole encoded run that contains it.
    pub span: Range<usize>,
    /// The secret's bytes (decoded, if it was encoded).
    pub secret: Vec<u8>,
    /// Whether the secret was found inside base64 text.
    pub base64: bool,
}

/// How strictly a candidate must look like a real key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// Findings: boundaries, placeholders, entropy, context and allow comments all apply.
    Report,
    /// Masking text before it is shown: any run that matches a rule's pattern is hidden,
    /// glued to a letter or not, placeholder-looking or not. Masking too much costs nothing;
    /// masking too little prints a key.
    Mask,
}

/// A compiled rule set, ready to scan blobs from many threads at once.
#[derive(Debug, Clone)]
pub struct Detector {
    rules: RuleSet,
    prefilter: Prefilter,
    uses: Vec<KeywordUse>,
    /// The keywords as they look inside base64 text, searched only in blobs with a trigger:
    /// a DFA, fast to search but the costliest automaton of the engine to build, so built on
    /// the first blob with a trigger (a run that meets none, a `--staged` hook on one file,
    /// never pays for it). An NFA where the DFA cannot be built; `None` if neither can.
    encoded: std::sync::Arc<std::sync::OnceLock<Option<AhoCorasick>>>,
    needles: std::sync::Arc<Vec<Vec<u8>>>,
}

impl Detector {
    /// Compiles the keyword prefilter for a rule set.
    pub fn new(rules: RuleSet) -> Result<Detector, DetectorError> {
        let mut keywords: Vec<Vec<u8>> = Vec::new();
        let mut uses: Vec<KeywordUse> = Vec::new();
        let mut index_of = std::collections::HashMap::<Vec<u8>, usize>::new();
        for (rule_index, rule) in rules.rules().iter().enumerate() {
            if !rule.enabled() {
                continue;
            }
            for keyword in rule.keywords() {
                let at = *index_of
                    .entry(keyword.as_bytes().to_vec())
                    .or_insert_with(|| {
                        keywords.push(keyword.as_bytes().to_vec());
                        uses.push(KeywordUse::Rules(Vec::new()));
                        keywords.len() - 1
                    });
                if let KeywordUse::Rules(list) = &mut uses[at]
                    && !list.contains(&rule_index)
                {
                    list.push(rule_index);
                }
            }
        }
        let mut needles: Vec<Vec<u8>> = keywords
            .iter()
            .flat_map(|k| encoding::base64_needles(k))
            .collect();
        needles.sort();
        needles.dedup();
        for trigger in BASE64_TRIGGERS {
            if !index_of.contains_key(trigger.as_bytes()) {
                keywords.push(trigger.as_bytes().to_vec());
                uses.push(KeywordUse::Base64Trigger);
            }
        }
        let prefilter =
            Prefilter::new(keywords).map_err(|e| DetectorError::Prefilter(e.to_string()))?;
        Ok(Detector {
            rules,
            prefilter,
            uses,
            encoded: std::sync::Arc::default(),
            needles: std::sync::Arc::new(needles),
        })
    }

    /// The fastest automaton of the encoded keywords there is, built on first use: the DFA,
    /// or the NFA if the DFA is too large. `None` only if neither can be built, which
    /// aho-corasick's limits (billions of states) rule out for any real rule set.
    fn encoded_searcher(&self) -> Option<&AhoCorasick> {
        self.encoded
            .get_or_init(|| {
                [AhoCorasickKind::DFA, AhoCorasickKind::NoncontiguousNFA]
                    .into_iter()
                    .find_map(|kind| {
                        AhoCorasick::builder()
                            .match_kind(MatchKind::LeftmostFirst)
                            .kind(Some(kind))
                            .build(self.needles.as_slice())
                            .ok()
                    })
            })
            .as_ref()
    }

    /// How many literals the keyword prefilter searches.
    pub fn prefilter_literals(&self) -> usize {
        self.prefilter.anchor_count()
    }

    /// How many SIMD passes the keyword prefilter makes over each block of a blob: one per
    /// [`Detector::FAST_PREFILTER_LIMIT`] literals, the short literals and the long ones
    /// apart (so at most one more), and 0 where the CPU has no SIMD searcher (the prefilter
    /// then runs one scalar automaton, several times slower).
    pub fn prefilter_passes(&self) -> usize {
        self.prefilter.passes()
    }

    /// The most literals one SIMD pass of the prefilter takes.
    pub const FAST_PREFILTER_LIMIT: usize = crate::prefilter::ANCHORS_PER_SEARCHER;

    /// The rule set this engine applies.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Finds every secret in `data`, in order of position. Never prints, never fails: bytes
    /// that are not UTF-8 are matched like any others.
    pub fn scan(&self, data: &[u8]) -> Vec<Match> {
        self.scan_inner(data, true, Strictness::Report)
    }

    /// Every run of `data` that a secret rule's pattern matches, without the checks that make
    /// a match a finding (word boundaries, placeholders, entropy, context, allow comments): what
    /// must not reach a terminal or a report in clear.
    pub(crate) fn scan_for_masking(&self, data: &[u8]) -> Vec<Match> {
        self.scan_inner(data, true, Strictness::Mask)
    }

    fn scan_inner(&self, data: &[u8], decode: bool, strictness: Strictness) -> Vec<Match> {
        let mut hits: Vec<(usize, usize, usize)> = Vec::new();
        let mut maybe_base64 = false;
        self.prefilter
            .hits(data, |hit| match &self.uses[hit.keyword] {
                KeywordUse::Rules(rules) => {
                    hits.extend(rules.iter().map(|&r| (r, hit.start, hit.end)));
                }
                KeywordUse::Base64Trigger => maybe_base64 = true,
            });
        let searcher = (maybe_base64 && decode)
            .then(|| self.encoded_searcher())
            .flatten();
        let encoded_hits: Vec<usize> = searcher
            .map(|s| s.find_iter(data).map(|m| m.start()).collect())
            .unwrap_or_default();
        if hits.is_empty() && encoded_hits.is_empty() {
            return Vec::new();
        }
        let mut lines = checks::LineIndex::new(data);
        let mut regions = TextRegions::default();
        let mut found = Vec::new();
        hits.sort_unstable();
        for group in hits.chunk_by(|a, b| a.0 == b.0) {
            let rule_index = group[0].0;
            let rule = &self.rules.rules()[rule_index];
            // A context over the whole blob (`lines = 0`) answers the same for every
            // candidate: it is asked at the first candidate and remembered for the rest. In
            // CPython's ssl tests, `tls-verify-disabled` has hundreds of candidates per file,
            // and asking its six patterns over the whole file for each took a fifth of a
            // history sweep's CPU time.
            let mut blob_context = None;
            for window in merged_windows(group, rule.window(), data.len()) {
                self.match_window(
                    rule_index,
                    data,
                    window,
                    strictness,
                    &mut lines,
                    &mut regions,
                    &mut blob_context,
                    &mut found,
                );
            }
        }
        if !encoded_hits.is_empty() {
            for run in encoding::base64_runs(data, &encoded_hits) {
                let Some(decoded) = encoding::decode_base64(&data[run.clone()]) else {
                    continue;
                };
                for inner in self.scan_inner(&decoded, false, strictness) {
                    found.push(Match {
                        rule: inner.rule,
                        span: run.clone(),
                        secret: inner.secret,
                        base64: true,
                    });
                }
            }
        }
        found.sort_by(|a, b| {
            (a.span.start, a.span.end, a.rule).cmp(&(b.span.start, b.span.end, b.rule))
        });
        if decode && strictness == Strictness::Report {
            found.retain(|m| !lines.allowed_inline(&m.span));
        }
        // Two rules reporting the same bytes as the same secret are one finding.
        found.dedup_by(|b, a| a.span == b.span && a.secret == b.secret);
        // A token that is itself base64 (a presigned Bedrock token) is one finding, not also
        // one for each credential encoded inside it.
        let plain: Vec<Range<usize>> = found
            .iter()
            .filter(|m| !m.base64)
            .map(|m| m.span.clone())
            .collect();
        found.retain(|m| {
            !m.base64
                || !plain
                    .iter()
                    .any(|p| p.start <= m.span.start && m.span.end <= p.end)
        });
        found
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the per-blob state of one scan, passed down rather than stored"
    )]
    fn match_window(
        &self,
        rule_index: usize,
        data: &[u8],
        window: Range<usize>,
        strictness: Strictness,
        lines: &mut checks::LineIndex<'_>,
        regions: &mut TextRegions,
        blob_context: &mut Option<bool>,
        found: &mut Vec<Match>,
    ) {
        let rule = &self.rules.rules()[rule_index];
        if strictness == Strictness::Mask && rule.kind() != RuleKind::Secret {
            return;
        }
        let haystack = &data[window.clone()];
        if rule.pattern().is_none() {
            return;
        }
        // The context of the last line range asked about: candidates on one long line (a
        // minified bundle) share it instead of searching the line again each.
        let mut line_context: Option<(Range<usize>, bool)> = None;
        let mut at = 0;
        while at <= haystack.len() {
            let Some((whole, span)) = candidate(rule, haystack, at) else {
                break;
            };
            let span = span.start + window.start..span.end + window.start;
            let whole_start = whole.start + window.start;
            let span = if strictness == Strictness::Report && rule.kind() == RuleKind::Secret {
                match checks::has_boundaries(data, &span) {
                    true => Some(span),
                    // A pattern of variable length can run on into a neighbouring key
                    // (`<KEY>-<KEY>`); the shorter match that ends at a delimiter is the key.
                    false => shorter_match(rule, data, whole_start, &span),
                }
            } else {
                Some(span)
            };
            let Some(span) = span else {
                // The next key can start inside a rejected candidate (two keys glued by a
                // character the pattern accepts): look again one byte on, not after it.
                at = whole.start + 1;
                continue;
            };
            at = match strictness {
                // A match that started early (in `nvapi-` typed before a key) can cover only
                // part of the key behind it: masking looks for matches inside matches too.
                Strictness::Mask => whole.start + 1,
                Strictness::Report => (span.end - window.start).max(whole.start + 1),
            };
            let secret = &data[span.clone()];
            if strictness == Strictness::Report
                && rule.kind() == RuleKind::Secret
                && (checks::is_placeholder(secret)
                    || checks::shannon_entropy(secret) < rule.entropy()
                    || rule
                        .checksum()
                        .is_some_and(|sum| !checks::checksum_holds(sum, secret)))
            {
                continue;
            }
            // Usage rules find code: the same characters in a comment or a message are text.
            if strictness == Strictness::Report
                && rule.kind() == RuleKind::Usage
                && !regions.is_code(data, &span, rule.in_strings())
            {
                continue;
            }
            if strictness == Strictness::Report
                && let Some(context) = rule.context()
            {
                let matches = if context.lines() == 0 {
                    *blob_context.get_or_insert_with(|| lines.context_matches(context, &span))
                } else {
                    let range = lines.around(&span, context.lines());
                    match &line_context {
                        Some((asked, answer)) if *asked == range => *answer,
                        _ => {
                            let answer = lines.context_matches(context, &span);
                            line_context = Some((range, answer));
                            answer
                        }
                    }
                };
                if !matches {
                    continue;
                }
            }
            found.push(Match {
                rule: rule_index,
                span,
                secret: secret.to_vec(),
                base64: false,
            });
        }
    }
}

/// The next match of the rule's pattern in `haystack` from `at`: the whole match and the
/// secret's span (its `secret` group, when it has one). A match in which the rule's `veto`
/// group takes part is passed over.
fn candidate(
    rule: &keyscope_rules::Rule,
    haystack: &[u8],
    at: usize,
) -> Option<(Range<usize>, Range<usize>)> {
    let pattern = rule.pattern()?;
    if rule.secret_group().is_none() && rule.veto_group().is_none() {
        return pattern
            .find_at(haystack, at)
            .map(|m| (m.range(), m.range()));
    }
    let mut at = at;
    loop {
        let captures = pattern.captures_at(haystack, at)?;
        let whole = captures.get(0)?.range();
        let vetoed = rule.veto_group().is_some_and(|g| captures.get(g).is_some());
        let secret = match rule.secret_group() {
            Some(group) => captures.get(group).map(|m| m.range()),
            None => Some(whole.clone()),
        };
        match secret {
            Some(secret) if !vetoed => return Some((whole, secret)),
            _ => at = whole.start + 1,
        }
        if at > haystack.len() {
            return None;
        }
    }
}

/// For a candidate whose end is not a word boundary because it ran on into a neighbouring key
/// of the same rule (`<KEY>-<KEY>`, where the pattern accepts `-`): the match of the same
/// pattern from the same start that ends at the delimiter before the neighbour's prefix.
fn shorter_match(
    rule: &keyscope_rules::Rule,
    data: &[u8],
    whole_start: usize,
    span: &Range<usize>,
) -> Option<Range<usize>> {
    let prefix = rule.prefix()?.as_bytes();
    if prefix.is_empty() || !checks::boundary_before(data, span.start) {
        return None;
    }
    let end = (span.start + 1..span.end)
        .find(|&end| !data[end].is_ascii_alphanumeric() && data[end + 1..].starts_with(prefix))?;
    let (whole, secret) = candidate(rule, &data[..end], whole_start)?;
    (whole.start == whole_start
        && secret.start == span.start
        && secret.end == end
        && checks::has_boundaries(data, &secret))
    .then_some(secret)
}

/// Merges the search windows of one rule's sorted hits, so that a run of hits (a minified
/// bundle full of keywords) costs one regex search, not one per hit.
fn merged_windows(
    hits: &[(usize, usize, usize)],
    radius: usize,
    len: usize,
) -> impl Iterator<Item = Range<usize>> {
    let mut windows: Vec<Range<usize>> = Vec::new();
    for &(_, start, end) in hits {
        let window = start.saturating_sub(radius)..end.saturating_add(radius).min(len);
        match windows.last_mut() {
            Some(last) if window.start <= last.end => last.end = last.end.max(window.end),
            _ => windows.push(window),
        }
    }
    windows.into_iter()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const RULES: &str = r#"
[[rules]]
id = "demo-key"
provider = "demo"
name = "Demo key"
description = "A demo."
severity = "high"
pattern = 'demo_[A-Za-z0-9]{24}'
keywords = ["demo_"]
prefix = "demo_"

[[rules]]
id = "near-key"
provider = "demo"
name = "Key near an id"
description = "A demo context rule."
severity = "high"
pattern = 'secret=(?P<secret>[a-f0-9]{32})'
keywords = ["secret="]
context = { patterns = ['DEMO_ID'], lines = 1 }
"#;

    /// An engine with two demo rules: `demo-key` (prefix `demo_`) and a context rule.
    pub(crate) fn engine() -> Detector {
        Detector::new(RuleSet::from_toml("demo.toml", RULES).unwrap()).unwrap()
    }

    /// A `demo-key` secret.
    pub(crate) const KEY: &str = "demo_q8Zr3LwX0pVt7KcN2bYh5MfJ";

    #[test]
    fn finds_a_key_and_reports_its_span() {
        let text = format!("x = \"{KEY}\"\n");
        let found = engine().scan(text.as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(&text[found[0].span.clone()], KEY);
    }

    #[test]
    fn a_key_inside_a_longer_token_is_not_a_key() {
        assert!(engine().scan(format!("{KEY}abc").as_bytes()).is_empty());
        assert!(engine().scan(format!("abc{KEY}").as_bytes()).is_empty());
        // ...but a JSON escape just before it is a boundary.
        assert_eq!(engine().scan(format!("\"a\\n{KEY}\"").as_bytes()).len(), 1);
    }

    #[test]
    fn context_rules_need_their_context_nearby() {
        let secret = "secret=9f86d081884c7d659a2feaa0c55ad015";
        assert!(engine().scan(secret.as_bytes()).is_empty());
        assert_eq!(
            engine()
                .scan(format!("DEMO_ID=1\n{secret}").as_bytes())
                .len(),
            1
        );
        assert!(
            engine()
                .scan(format!("DEMO_ID=1\n\n\n{secret}").as_bytes())
                .is_empty()
        );
    }

    #[test]
    fn base64_encoded_keys_are_found_at_the_encoded_run() {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(KEY);
        // Without a sign of base64 data, encoded text is not decoded; a Python annotation or
        // prose is no such sign.
        for text in [
            format!("token: {encoded}\n"),
            format!("def f(data: bytes):\n    return '{encoded}'\n"),
            format!("Basic usage: {encoded}\n"),
        ] {
            assert!(engine().scan(text.as_bytes()).is_empty(), "{text}");
        }
        for text in [
            format!("kind: Secret\ndata:\n  token: {encoded}\n"),
            format!("{{\"kind\": \"Secret\", \"data\": {{\"token\": \"{encoded}\"}}}}"),
            format!("curl -H 'Authorization: Basic {encoded}' https://example.test\n"),
            format!("headers = {{\"Authorization\": \"Basic {encoded}\"}}\n"),
            format!("token = base64.b64decode(\"{encoded}\")\n"),
            format!("<img src=\"data:text/plain;base64,{encoded}\">\n"),
        ] {
            let found = engine().scan(text.as_bytes());
            assert_eq!(found.len(), 1, "{text}");
            assert!(found[0].base64);
            assert_eq!(&text[found[0].span.clone()], encoded);
            assert_eq!(found[0].secret, KEY.as_bytes());
        }
    }

    #[test]
    fn many_hits_on_one_line_cost_one_window() {
        let line = "demo_ ".repeat(10_000) + KEY;
        let found = engine().scan(line.as_bytes());
        assert_eq!(found.len(), 1);
    }

    /// A whole-blob context is asked once per rule and blob; every candidate still gets its
    /// answer, in both directions, and windows far apart share it.
    #[test]
    fn whole_blob_context_answers_every_candidate() {
        let engine = Detector::new(RuleSet::builtin().unwrap()).unwrap();
        let tls = |text: &str| {
            engine
                .scan(text.as_bytes())
                .iter()
                .filter(|m| engine.rules().rules()[m.rule].id() == "flat-key/tls-verify-disabled")
                .count()
        };
        let body = format!(
            "requests.get(url, verify=False)\n{}ctx.check_hostname = False\n",
            "pass\n".repeat(2_000)
        );
        assert_eq!(tls(&format!("from openai import OpenAI\n{body}")), 2);
        assert_eq!(tls(&format!("{body}client = OpenAI()\n")), 2);
        assert_eq!(tls(&body), 0);
    }
}
