//! The matching core: one keyword pass, then rule patterns only in windows around the hits.

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use keyscope_rules::{RuleKind, RuleSet};

use crate::checks;
use crate::encoding;
use crate::prefilter::Prefilter;

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

/// A compiled rule set, ready to scan blobs from many threads at once.
#[derive(Debug, Clone)]
pub struct Detector {
    rules: RuleSet,
    prefilter: Prefilter,
    uses: Vec<KeywordUse>,
    /// The keywords as they look inside base64 text, searched only in blobs with a trigger.
    encoded: AhoCorasick,
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
        let encoded = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&needles)
            .map_err(|e| DetectorError::Prefilter(e.to_string()))?;
        Ok(Detector {
            rules,
            prefilter,
            uses,
            encoded,
        })
    }

    /// How many literals the keyword prefilter searches. Above 64, aho-corasick cannot use its
    /// SIMD searcher and every scan slows several times over; a test keeps the built-in rules
    /// under it.
    pub fn prefilter_literals(&self) -> usize {
        self.prefilter.anchor_count()
    }

    /// The most literals the fast prefilter path takes.
    pub const FAST_PREFILTER_LIMIT: usize = crate::prefilter::MAX_ANCHORS;

    /// The rule set this engine applies.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Finds every secret in `data`, in order of position. Never prints, never fails: bytes
    /// that are not UTF-8 are matched like any others.
    pub fn scan(&self, data: &[u8]) -> Vec<Match> {
        self.scan_inner(data, true)
    }

    fn scan_inner(&self, data: &[u8], decode: bool) -> Vec<Match> {
        let mut hits: Vec<(usize, usize, usize)> = Vec::new();
        let mut maybe_base64 = false;
        self.prefilter
            .hits(data, |hit| match &self.uses[hit.keyword] {
                KeywordUse::Rules(rules) => {
                    hits.extend(rules.iter().map(|&r| (r, hit.start, hit.end)));
                }
                KeywordUse::Base64Trigger => maybe_base64 = true,
            });
        let encoded_hits: Vec<usize> = if maybe_base64 && decode {
            self.encoded.find_iter(data).map(|m| m.start()).collect()
        } else {
            Vec::new()
        };
        if hits.is_empty() && encoded_hits.is_empty() {
            return Vec::new();
        }
        let mut lines = checks::LineIndex::new(data);
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
                    &mut lines,
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
                for inner in self.scan_inner(&decoded, false) {
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
        if decode {
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

    fn match_window(
        &self,
        rule_index: usize,
        data: &[u8],
        window: Range<usize>,
        lines: &mut checks::LineIndex<'_>,
        blob_context: &mut Option<bool>,
        found: &mut Vec<Match>,
    ) {
        let rule = &self.rules.rules()[rule_index];
        let haystack = &data[window.clone()];
        let Some(pattern) = rule.pattern() else {
            return;
        };
        let spans: Vec<Range<usize>> = match rule.secret_group() {
            Some(group) => pattern
                .captures_iter(haystack)
                .filter_map(|c| c.get(group))
                .map(|m| m.range())
                .collect(),
            None => pattern.find_iter(haystack).map(|m| m.range()).collect(),
        };
        for span in spans {
            let span = span.start + window.start..span.end + window.start;
            let secret = &data[span.clone()];
            if rule.kind() == RuleKind::Secret
                && (!checks::has_boundaries(data, &span)
                    || checks::is_placeholder(secret)
                    || checks::shannon_entropy(secret) < rule.entropy())
            {
                continue;
            }
            if let Some(context) = rule.context() {
                let matches = if context.lines() == 0 {
                    *blob_context.get_or_insert_with(|| lines.context_matches(context, &span))
                } else {
                    lines.context_matches(context, &span)
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
