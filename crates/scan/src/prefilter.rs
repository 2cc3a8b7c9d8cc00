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
//! Two choices keep that fast as the rule set grows:
//!
//! - **Anchors are case-folded.** Keywords come in case variants (`cohere`, `Cohere`,
//!   `COHERE`); lowercased they share one anchor, searched in a lowercased copy of the data
//!   made a block at a time in the first cache level. A hit is verified against the data as it
//!   is, so each variant still matches only its own case. This takes the built-in rules from
//!   126 anchors to 86.
//! - **Small searchers, several passes.** Teddy sorts its literals into 8 buckets (16 for its
//!   "fat" form above 32 literals) and verifies every literal of a bucket at each candidate, so
//!   a crowded searcher spends its time on false candidates: on the Rust documentation a fat
//!   searcher of 64 anchors and a slim one of 24 took twice the CPU time of six slim ones of
//!   16. The anchors are split evenly into searchers of at most [`ANCHORS_PER_SEARCHER`], each
//!   one pass over the block while it is still in cache. One automaton over all anchors would
//!   fall back to a scalar DFA, several times slower than all the passes together.
//! - **Short anchors apart.** Teddy fingerprints every literal of a searcher on as many of its
//!   first bytes as the shortest one has (at most [`TEDDY_MASK`]). The three-byte keywords
//!   (`sk_`, `hf_`, `ssl`...) therefore share searchers of their own: mixed in, each one made
//!   its searcher stop at every position whose first three bytes looked like any anchor's, and
//!   on the Rust documentation the six passes took 0.75–0.88 s of CPU apart against
//!   0.45–0.56 s, for the same hits.

use aho_corasick::{AhoCorasick, Input, MatchKind, Span, packed};

/// The most anchors one Teddy searcher takes: two to a bucket of slim Teddy. Teddy itself
/// takes 64, but fuller buckets cost more in false candidates than a pass costs (with the
/// short anchors apart, searchers of 20, 24 or 32 four-byte anchors were no faster).
pub(crate) const ANCHORS_PER_SEARCHER: usize = 16;
/// The most bytes of each literal Teddy's fingerprint looks at. A searcher with one shorter
/// literal fingerprints every literal on fewer bytes and stops at far more false candidates.
const TEDDY_MASK: usize = 4;
/// Shortest and longest anchors cut out of a keyword.
const MIN_ANCHOR: usize = 3;
const MAX_ANCHOR: usize = 8;
/// How many bytes are lowercased and searched at a time: small enough to stay in the first
/// cache level with its copy, large enough that starting the searches costs nothing next to
/// running them.
const FOLD_BLOCK: usize = 16 * 1024;

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
    /// The keywords as given, case and all.
    keywords: Vec<Vec<u8>>,
    /// ASCII-lowercase substrings of the lowercased keywords.
    anchors: Vec<Vec<u8>>,
    automaton: AhoCorasick,
    /// aho-corasick's SIMD searchers on their own, each over up to [`ANCHORS_PER_SEARCHER`]
    /// anchors (a range of `anchors`): they confirm their candidates themselves, where the
    /// automaton above
    /// re-runs its state machine from every candidate (a seventh of a history sweep's CPU
    /// time). Empty where the CPU rules them out.
    packed: Vec<(std::ops::Range<usize>, packed::Searcher)>,
    /// For each anchor: the keywords assigned to it, with the anchor's offset in each.
    expansions: Vec<Vec<(usize, usize)>>,
}

impl Prefilter {
    /// Builds the prefilter for a set of distinct, non-empty keywords.
    pub(crate) fn new(keywords: Vec<Vec<u8>>) -> Result<Prefilter, aho_corasick::BuildError> {
        let mut lowered: Vec<Vec<u8>> = keywords.iter().map(|k| k.to_ascii_lowercase()).collect();
        lowered.sort_unstable();
        lowered.dedup();
        let mut anchors = choose_anchors(&lowered);
        // Short anchors first, for their own searchers. Stable: within each length class the
        // cover's order stays.
        anchors.sort_by_key(|anchor| anchor.len() >= TEDDY_MASK);
        let mut expansions = vec![Vec::new(); anchors.len()];
        for (k, keyword) in keywords.iter().enumerate() {
            let keyword = keyword.to_ascii_lowercase();
            // Assign each keyword to the first chosen anchor it contains (one always exists).
            if let Some((a, offset)) = anchors.iter().enumerate().find_map(|(a, anchor)| {
                keyword
                    .windows(anchor.len())
                    .position(|w| w == anchor.as_slice())
                    .map(|o| (a, o))
            }) {
                expansions[a].push((k, offset));
            }
        }
        // Searched only where the CPU has no SIMD searcher: an NFA, which (unlike the DFA that
        // aho-corasick would pick for this many literals) costs nothing to build at start-up.
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
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
        // The data is lowercased a block at a time into a buffer that stays in the CPU's first
        // cache level; each block carries the next block's first bytes, so an anchor that
        // starts in it is found whole. Filled by extending, not zeroed first: most blobs are
        // smaller than a block, and zeroing one cost as much as lowercasing them.
        let mut block = Vec::with_capacity(data.len().min(FOLD_BLOCK) + MAX_ANCHOR);
        let mut start = 0;
        while start < data.len() {
            let end = (start + FOLD_BLOCK).min(data.len());
            let carried = (end + MAX_ANCHOR - 1).min(data.len());
            block.clear();
            block.extend(data[start..carried].iter().map(u8::to_ascii_lowercase));
            self.hits_in(data, &block, start, end - start, &mut found);
            start = end;
        }
    }

    /// The hits of anchors that start in `searched[..starts_before]`, the lowercased copy of a
    /// block of `data` that starts at `offset`; keywords are verified against `data`, case and
    /// all.
    fn hits_in(
        &self,
        data: &[u8],
        searched: &[u8],
        offset: usize,
        starts_before: usize,
        found: &mut impl FnMut(Hit),
    ) {
        if self.packed.is_empty() {
            let all = 0..self.anchors.len();
            self.pass(data, searched, offset, starts_before, all, found, |at| {
                self.automaton
                    .find(Input::new(searched).range(at..))
                    .map(|m| m.start())
            });
            return;
        }
        for (range, searcher) in &self.packed {
            self.pass(
                data,
                searched,
                offset,
                starts_before,
                range.clone(),
                found,
                |at| {
                    searcher
                        .find_in(searched, Span::from(at..searched.len()))
                        .map(|m| m.start())
                },
            );
        }
    }

    /// One pass over a block with a searcher of the anchors in `range`: after each anchor hit,
    /// every anchor of the range that starts there is expanded to its keywords.
    #[expect(
        clippy::too_many_arguments,
        reason = "one block of one pass: the data, its searched copy and where the block lies"
    )]
    fn pass(
        &self,
        data: &[u8],
        searched: &[u8],
        offset: usize,
        starts_before: usize,
        range: std::ops::Range<usize>,
        found: &mut impl FnMut(Hit),
        next: impl Fn(usize) -> Option<usize>,
    ) {
        let mut at = 0;
        while at < starts_before {
            let Some(start) = next(at) else {
                break;
            };
            if start >= starts_before {
                break;
            }
            let rest = &searched[start..];
            let in_data = start + offset;
            for (anchor, expansions) in self.anchors[range.clone()]
                .iter()
                .zip(&self.expansions[range.clone()])
            {
                if !rest.starts_with(anchor) {
                    continue;
                }
                for &(k, anchor_at) in expansions {
                    let keyword = &self.keywords[k];
                    if let Some(kw_start) = in_data.checked_sub(anchor_at)
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

/// The anchors split evenly into SIMD searchers of at most [`ANCHORS_PER_SEARCHER`], the short
/// ones (under [`TEDDY_MASK`] bytes) apart from the others; `None` where the CPU has no SIMD
/// searcher for one of them.
fn packed_searchers(
    anchors: &[Vec<u8>],
) -> Option<Vec<(std::ops::Range<usize>, packed::Searcher)>> {
    // `anchors` holds the short ones first.
    let split = anchors.partition_point(|anchor| anchor.len() < TEDDY_MASK);
    let mut ranges = Vec::new();
    for group in [0..split, split..anchors.len()] {
        if group.is_empty() {
            continue;
        }
        let count = group.len().div_ceil(ANCHORS_PER_SEARCHER);
        let size = group.len().div_ceil(count);
        ranges.extend(
            group
                .clone()
                .step_by(size)
                .map(|start| start..(start + size).min(group.end)),
        );
    }
    ranges
        .into_iter()
        .map(|range| {
            packed::Config::new()
                .match_kind(packed::MatchKind::LeftmostFirst)
                .builder()
                .extend(&anchors[range.clone()])
                .build()
                .map(|searcher| (range, searcher))
        })
        .collect()
}

/// How unlikely a lowercased anchor is in ordinary text: the letters English and code use most
/// and spaces count least, rarer letters more, digits and punctuation inside identifiers most.
fn rarity(anchor: &[u8]) -> usize {
    anchor
        .iter()
        .map(|b| match b {
            b'v' | b'k' | b'j' | b'x' | b'q' | b'z' => 3,
            b'c' | b'm' | b'w' | b'f' | b'g' | b'y' | b'p' | b'b' => 2,
            b'a'..=b'z' | b' ' => 1,
            _ => 4,
        })
        .sum()
}

/// A greedy set cover of the (lowercased) keywords by substrings. Keywords no longer than
/// [`MIN_ANCHOR`] are their own anchors.
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
    // What each candidate is worth, kept up to date as keywords are covered (recounting every
    // candidate's keywords for each choice was most of building the prefilter).
    let mut counts: Vec<usize> = candidates.iter().map(|(_, list)| list.len()).collect();
    let tiebreaks: Vec<(usize, usize)> = candidates
        .iter()
        .map(|(anchor, _)| (rarity(anchor), anchor.len()))
        .collect();
    let mut covered_by = vec![Vec::new(); keywords.len()];
    for (c, (_, list)) in candidates.iter().enumerate() {
        for &k in list {
            covered_by[k].push(c);
        }
    }
    let mut uncovered = vec![true; keywords.len()];
    let mut anchors = Vec::new();
    loop {
        // Prefer anchors that cover many keywords; among those, rare and long ones; among
        // those, the last in byte order.
        let mut best: Option<(usize, (usize, usize, usize))> = None;
        for (c, &count) in counts.iter().enumerate() {
            let key = (count, tiebreaks[c].0, tiebreaks[c].1);
            if count > 0 && best.is_none_or(|(_, b)| key >= b) {
                best = Some((c, key));
            }
        }
        let Some((chosen, _)) = best else {
            break;
        };
        for &k in &candidates[chosen].1 {
            if std::mem::replace(&mut uncovered[k], false) {
                for &c in &covered_by[k] {
                    counts[c] -= 1;
                }
            }
        }
        anchors.push(candidates[chosen].0.to_vec());
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
        assert!(p.anchor_count() > ANCHORS_PER_SEARCHER);
        assert_eq!(p.passes(), p.anchor_count().div_ceil(ANCHORS_PER_SEARCHER));
        let text = keywords.join(" ");
        assert_eq!(hits(&p, &text).len(), keywords.len());
    }

    #[test]
    fn case_variants_share_an_anchor_and_match_only_their_own_case() {
        let p = prefilter(&["cohere", "Cohere", "COHERE"]);
        assert_eq!(p.anchor_count(), 1);
        assert_eq!(
            hits(&p, "Cohere COHERE cOhErE cohere"),
            vec![(0, 21), (1, 0), (2, 7)]
        );
    }

    #[test]
    fn keywords_across_a_block_boundary_are_found_once() {
        let p = prefilter(&["tvly-", "AKIA", "sk-lf-"]);
        for at in FOLD_BLOCK - 6..FOLD_BLOCK + 2 {
            let mut text = "x".repeat(at);
            text.push_str("sk-lf- AKIA tvly-");
            text.push_str(&"y".repeat(FOLD_BLOCK));
            assert_eq!(
                hits(&p, &text),
                vec![(0, at + 12), (1, at + 7), (2, at)],
                "keywords at {at}"
            );
        }
    }

    #[test]
    fn short_anchors_are_searched_apart_from_long_ones() {
        let p = prefilter(&["hf_", "cohere", "r8_", "mistral", "moonshot"]);
        let lengths: Vec<Vec<usize>> = p
            .packed
            .iter()
            .map(|(range, _)| p.anchors[range.clone()].iter().map(Vec::len).collect())
            .collect();
        assert_eq!(lengths.len(), 2, "{lengths:?}");
        for searcher in &lengths {
            let short = searcher.iter().filter(|&&len| len < TEDDY_MASK).count();
            assert!(short == 0 || short == searcher.len(), "{lengths:?}");
        }
        assert_eq!(
            hits(&p, "moonshot hf_ cohere r8_ mistral"),
            vec![(0, 9), (1, 13), (2, 20), (3, 24), (4, 0)]
        );
    }

    #[test]
    fn short_keywords_are_their_own_anchors() {
        let p = prefilter(&["hf_", "r8_", "fw_"]);
        assert_eq!(hits(&p, "hf_ r8_ fw_ hf"), vec![(0, 0), (1, 4), (2, 8)]);
    }
}
