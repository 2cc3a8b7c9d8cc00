//! Keys hidden in base64 (Kubernetes `Secret` manifests, `data:` fields, encoded configs).
//!
//! Decoding every base64 run of every file would be slow. Instead, each keyword is also
//! searched in its base64-encoded forms — at each of the three byte alignments, the run of
//! base64 characters that depends only on the keyword's bytes — in the same single prefilter
//! pass. Only when one of those needles occurs is the surrounding run decoded and scanned.

use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

/// Shortest encoded needle worth searching: shorter ones occur by chance in base64 data.
const MIN_NEEDLE: usize = 4;
/// Shortest base64 run worth decoding.
const MIN_RUN: usize = 16;
/// Longest base64 run decoded, so a huge data URI cannot blow up memory.
const MAX_RUN: usize = 1 << 20;

const STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The base64 substrings that appear wherever `keyword` is encoded, one per alignment.
pub(crate) fn base64_needles(keyword: &[u8]) -> Vec<Vec<u8>> {
    let mut needles = Vec::new();
    for align in 0..3usize {
        let mut padded = vec![0u8; align];
        padded.extend_from_slice(keyword);
        let encoded = general_purpose::STANDARD_NO_PAD.encode(&padded);
        // Character i encodes bits [6i, 6i + 6); keep those that lie wholly in the keyword.
        let first_bit = 8 * align;
        let end_bit = 8 * (align + keyword.len());
        let first = first_bit.div_ceil(6);
        let end = end_bit / 6;
        if end > first && end - first >= MIN_NEEDLE {
            needles.push(encoded.as_bytes()[first..end].to_vec());
        }
    }
    needles
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// The distinct base64 runs that contain the given hit offsets.
pub(crate) fn base64_runs(data: &[u8], hits: &[usize]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for &hit in hits {
        if runs.iter().any(|r| r.contains(&hit)) {
            continue;
        }
        let start = data[..hit]
            .iter()
            .rposition(|&b| !is_base64_byte(b))
            .map_or(0, |i| i + 1);
        let mut end = data[hit..]
            .iter()
            .position(|&b| !is_base64_byte(b))
            .map_or(data.len(), |i| hit + i);
        while data.get(end) == Some(&b'=') {
            end += 1;
        }
        if (MIN_RUN..=MAX_RUN).contains(&(end - start)) {
            runs.push(start..end);
        }
    }
    runs
}

/// Decodes a base64 run (standard or URL-safe alphabet, padded or not).
pub(crate) fn decode_base64(run: &[u8]) -> Option<Vec<u8>> {
    let body = run
        .strip_suffix(b"==")
        .or_else(|| run.strip_suffix(b"="))
        .unwrap_or(run);
    // A length of 4n+1 cannot be base64; drop the stray last character rather than give up.
    let body = if body.len() % 4 == 1 {
        &body[..body.len() - 1]
    } else {
        body
    };
    let engine = if body.iter().any(|&b| b == b'-' || b == b'_') {
        URL_SAFE
    } else {
        STANDARD
    };
    engine.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needles_occur_in_every_alignment() {
        let keyword = b"sk-ant-api03-";
        let needles = base64_needles(keyword);
        assert_eq!(needles.len(), 3);
        for prefix in ["", "a", "ab", "abc", "abcd"] {
            let mut text = prefix.as_bytes().to_vec();
            text.extend_from_slice(keyword);
            text.extend_from_slice(b"rest of the value");
            let encoded = general_purpose::STANDARD.encode(&text);
            assert!(
                needles
                    .iter()
                    .any(|n| memchr::memmem::find(encoded.as_bytes(), n).is_some()),
                "no needle in {encoded} for prefix {prefix:?}"
            );
        }
    }

    #[test]
    fn runs_are_found_and_decoded() {
        let encoded = general_purpose::STANDARD.encode("hello, base64 world");
        let text = format!("key: {encoded}\n");
        let hit = text.find(&encoded[4..8]).unwrap();
        let runs = base64_runs(text.as_bytes(), &[hit, hit + 1]);
        assert_eq!(runs.len(), 1);
        let decoded = decode_base64(&text.as_bytes()[runs[0].clone()]).unwrap();
        assert_eq!(decoded, b"hello, base64 world");
    }
}
