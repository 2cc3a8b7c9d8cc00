//! The keyword prefilter: finds every occurrence of every rule keyword in one fast pass.
//!
//! Searching all keywords in aho-corasick's overlapping mode is correct but slow (no SIMD
//! prefilter applies to it, ~200 MB/s), and so is a non-overlapping search over more than 64
//! literals (no Teddy). So the prefilter searches a small set of **anchors** — substrings
//! chosen so that every keyword contains one (a greedy set cover that prefers anchors shared
//! by many keywords and made of rare characters) — non-overlapping, which aho-corasick runs
//! with its SIMD Teddy searcher at GB/s. After each anchor hit the search restarts one byte
//! later and every anchor starting at the hit is checked, so no occurrence is missed; each
//! anchor hit is then expanded to the keywords that contain it, verified byte for byte.
//!
//! Teddy takes at most 64 literals. A rule set whose anchors outgrow that is searched by
//! several Teddy searchers of up to 64 anchors each, one pass apiece: each pass still runs at
//! SIMD speed, where one automaton over all anchors would fall back to a scalar DFA several
//! times slower than all the passes together.

use aho_corasick::{AhoCorasick, Input, MatchKind, Span, packed};

/// Teddy, aho-corasick's SIMD searcher, handles at most this many literals.
pub(crate) const MAX_ANCHORS: usize = 64;
/// Shortest and longest anchors cut out of a keyword.
const MIN_ANCHOR: usize = 3;
const MAX_ANCHOR: usize = 8;

/// One verified keyword occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Hit {
    /// Index of the keyword.
    pub keyword: usize,
    /// Byte offset of the keyword's first byte.
    pub start: usize,
    /// Byte offset just past it.
    pub end: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Prefilter {
    keywords: Vec<Vec<u8>>,
    anchors: Vec<Vec<u8>>,
    automaton: AhoCorasick,
    /// aho-corasick's SIMD searchers on their own, each over up to [`MAX_ANCHORS`] anchors (a
    /// range of `anchors`): they confirm their candidates themselves, where the automaton above
    /// re-runs its state machine from every candidate (a seventh of a history sweep's CPU
    /// time). Empty where the CPU rules them out.
    packed: Vec<(std::ops::Range<usize>, packed::Searcher)>,
    /// For each anchor: the keywords assigned to it, with the anchor's offset in each.
    expansions: Vec<Vec<(usize, usize)>>,
}

impl Prefilter {
    /// Builds the prefilter for a set of distinct, non-empty keywords.
    pub(crate) fn new(keywords: Vec<Vec<u8>>) -> Result<Prefilter, aho_corasick::BuildError> {
        let anchors = choose_anchors(&keywords);
        let mut expansions = vec![Vec::new(); anchors.len()];
        for (k, keyword) in keywords.iter().enumerate() {
            // Assign each keyword to the first chosen anchor it contains (one always exists).
            if let Some((a, offset)) = anchors
                .iter()
                .enumerate()
                .find_map(|(a, anchor)| find(keyword, anchor).map(|o| (a, o)))
            {
                expansions[a].push((k, offset));
            }
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(&anchors)?;
        let packed = packed_searchers(&anchors).unwrap_or_default();
        Ok(Prefilter {
            keywords,
            anchors,
            automaton,
            packed,
            expansions,
        })
    }

    /// Every occurrence of every keyword, in order of anchor position within each searcher's
    /// pass (callers that need one order sort).
    pub(crate) fn hits(&self, data: &[u8], mut found: impl FnMut(Hit)) {
        if self.packed.is_empty() {
            let all = 0..self.anchors.len();
            self.pass(data, all, &mut found, |at| {
                self.automaton
                    .find(Input::new(data).range(at..))
                    .map(|m| m.start())
            });
            return;
        }
        for (range, searcher) in &self.packed {
            self.pass(data, range.clone(), &mut found, |at| {
                searcher
                    .find_in(data, Span::from(at..data.len()))
                    .map(|m| m.start())
            });
        }
    }

    /// One pass over `data` with a searcher of the anchors in `range`: after each anchor hit,
    /// every anchor of the range that starts there is expanded to its keywords.
    fn pass(
        &self,
        data: &[u8],
        range: std::ops::Range<usize>,
        found: &mut impl FnMut(Hit),
        next: impl Fn(usize) -> Option<usize>,
    ) {
        let mut at = 0;
        while at < data.len() {
            let Some(start) = next(at) else {
                break;
            };
            let rest = &data[start..];
            for (anchor, expansions) in self.anchors[range.clone()]
                .iter()
                .zip(&self.expansions[range.clone()])
            {
                if !rest.starts_with(anchor) {
                    continue;
                }
                for &(k, offset) in expansions {
                    let keyword = &self.keywords[k];
                    if let Some(kw_start) = start.checked_sub(offset)
                        && data[kw_start..].starts_with(keyword)
                    {
                        found(Hit {
                            keyword: k,
                            start: kw_start,
                            end: kw_start + keyword.len(),
                        });
                    }
                }
            }
            at = start + 1;
        }
    }

    /// How many Teddy searchers (passes) the fast path takes; 0 where it is unavailable.
    pub(crate) fn passes(&self) -> usize {
        self.packed.len()
    }

    /// How many literals the fast pass searches.
    pub(crate) fn anchor_count(&self) -> usize {
        self.anchors.len()
    }
}

/// One SIMD searcher per run of up to [`MAX_ANCHORS`] anchors; `None` where the CPU has no
/// SIMD searcher for one of them.
fn packed_searchers(
    anchors: &[Vec<u8>],
) -> Option<Vec<(std::ops::Range<usize>, packed::Searcher)>> {
    (0..anchors.len())
        .step_by(MAX_ANCHORS)
        .map(|start| {
            let range = start..(start + MAX_ANCHORS).min(anchors.len());
            packed::Config::new()
                .match_kind(packed::MatchKind::LeftmostFirst)
                .builder()
                .extend(&anchors[range.clone()])
                .build()
                .map(|searcher| (range, searcher))
        })
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// How likely a byte is in ordinary text: lowercase letters and spaces are common, upper case,
/// digits and punctuation inside identifiers much less so.
fn rarity(anchor: &[u8]) -> usize {
    anchor
        .iter()
        .map(|b| match b {
            b'a'..=b'z' | b' ' => 1,
            b'A'..=b'Z' => 3,
            _ => 4,
        })
        .sum()
}

/// A greedy set cover of the keywords by substrings, at most [`MAX_ANCHORS`] of them when the
/// keywords allow it. Keywords shorter than [`MIN_ANCHOR`] are their own anchors.
///
/// Built on every start (a `--staged` hook pays for it), so the candidates that cover each
/// keyword are found by looking the keyword's own substrings up, not by searching every
/// keyword for every candidate.
fn choose_anchors(keywords: &[Vec<u8>]) -> Vec<Vec<u8>> {
    use std::collections::HashMap;
    let mut covers: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for keyword in keywords {
        if keyword.len() <= MIN_ANCHOR {
            covers.entry(keyword.as_slice()).or_default();
            continue;
        }
        for len in MIN_ANCHOR.max(4).min(keyword.len())..=MAX_ANCHOR.min(keyword.len()) {
            for window in keyword.windows(len) {
                covers.entry(window).or_default();
            }
        }
    }
    // A candidate covers every keyword it occurs in, its own and others.
    for (k, keyword) in keywords.iter().enumerate() {
        for len in 1..=MAX_ANCHOR.min(keyword.len()) {
            for window in keyword.windows(len) {
                if let Some(list) = covers.get_mut(window)
                    && list.last() != Some(&k)
                {
                    list.push(k);
                }
            }
        }
    }
    // In byte order, so that ties between equally good candidates break the same way each run.
    let mut candidates: Vec<(&[u8], Vec<usize>)> = covers.into_iter().collect();
    candidates.sort_unstable();
    let mut uncovered = vec![true; keywords.len()];
    let mut left = keywords.len();
    let mut anchors = Vec::new();
    while left > 0 {
        // Prefer anchors that cover many keywords; among those, rare and long ones. Once the
        // budget is tight, coverage is all that counts.
        let best = candidates
            .iter()
            .map(|(anchor, list)| (anchor, list, list.iter().filter(|&&k| uncovered[k]).count()))
            .filter(|&(_, _, n)| n > 0)
            .max_by_key(|&(anchor, _, n)| (n, rarity(anchor), anchor.len()));
        let Some((anchor, list, _)) = best else {
            break;
        };
        for &k in list {
            if std::mem::replace(&mut uncovered[k], false) {
                left -= 1;
            }
        }
        anchors.push(anchor.to_vec());
    }
    anchors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefilter(keywords: &[&str]) -> Prefilter {
        Prefilter::new(keywords.iter().map(|k| k.as_bytes().to_vec()).collect()).unwrap()
    }

    fn hits(p: &Prefilter, text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        p.hits(text.as_bytes(), |h| out.push((h.keyword, h.start)));
        out.sort();
        out
    }

    #[test]
    fn finds_every_keyword_occurrence_including_overlaps() {
        let p = prefilter(&["sk-", "sk-or-v1-", "k-or", "together_", "together."]);
        assert_eq!(
            hits(&p, "x sk-or-v1-abc together_x together.y"),
            vec![(0, 2), (1, 2), (2, 3), (3, 15), (4, 26)]
        );
    }

    #[test]
    fn shared_anchors_keep_the_literal_count_small() {
        let variants: Vec<String> = ["_", ".", ":", "\"", "'", "AI", "Api", "Key"]
            .iter()
            .map(|s| format!("together{s}"))
            .collect();
        let refs: Vec<&str> = variants.iter().map(String::as_str).collect();
        let p = prefilter(&refs);
        assert_eq!(p.anchor_count(), 1);
        assert_eq!(hits(&p, "together together: togetherApi").len(), 2);
    }

    #[test]
    fn more_anchors_than_one_simd_searcher_takes_are_split_into_passes() {
        let keywords: Vec<String> = (0..150).map(|i| format!("k{i:03}_")).collect();
        let refs: Vec<&str> = keywords.iter().map(String::as_str).collect();
        let p = prefilter(&refs);
        assert!(p.anchor_count() > MAX_ANCHORS);
        assert_eq!(p.passes(), p.anchor_count().div_ceil(MAX_ANCHORS));
        let text = keywords.join(" ");
        assert_eq!(hits(&p, &text).len(), keywords.len());
    }

    #[test]
    fn short_keywords_are_their_own_anchors() {
        let p = prefilter(&["hf_", "r8_", "fw_"]);
        assert_eq!(hits(&p, "hf_ r8_ fw_ hf"), vec![(0, 0), (1, 4), (2, 8)]);
    }
}
