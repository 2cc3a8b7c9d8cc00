//! Property tests (issue #19's fuzzing, on stable Rust): the rule and config parsers, the
//! engine on random bytes around planted keys, and the masker. They run with proptest's
//! default of 256 cases each; set `PROPTEST_CASES` for a longer run.

use std::path::Path;
use std::sync::OnceLock;

use keyscope_rules::RuleSet;
use keyscope_scan::config::Config;
use keyscope_scan::{
    Detector as Engine, mask_secrets, salted_fingerprint as fingerprint, scan_blob,
};
use proptest::prelude::*;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(RuleSet::builtin().unwrap()).unwrap())
}

const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const HEX: &[u8] = b"0123456789abcdef";

/// Keys that name themselves (a prefix keyword): literal parts and random runs, in order.
const SHAPES: &[&[(&[u8], usize)]] = &[
    &[(b"gsk_", 0), (BASE62, 52)],
    &[(b"sk-ant-api03-", 0), (URL, 93), (b"AA", 0)],
    &[(b"AIza", 0), (URL, 35)],
    &[(b"nvapi-", 0), (URL, 64)],
    &[(b"sk-proj-", 0), (URL, 64), (b"T3BlbkFJ", 0), (URL, 64)],
    &[(b"sk-or-v1-", 0), (HEX, 64)],
    &[(b"AKIA", 0), (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)],
    &[
        (b"hf_", 0),
        (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 34),
    ],
    &[(b"pplx-", 0), (BASE62, 48)],
];

/// A planted key: the whole key and the range of its random part (never to be shown).
#[derive(Debug, Clone)]
struct Planted {
    key: Vec<u8>,
    random: std::ops::Range<usize>,
}

fn planted(shape: usize, seed: u64) -> Planted {
    let mut state = seed | 1;
    let mut key = Vec::new();
    // The random part runs from the first random run to the end of the last.
    let (mut first, mut last) = (usize::MAX, 0);
    for &(part, len) in SHAPES[shape % SHAPES.len()] {
        if len == 0 {
            key.extend_from_slice(part);
            continue;
        }
        first = first.min(key.len());
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            key.push(part[(state % part.len() as u64) as usize]);
        }
        last = key.len();
    }
    Planted {
        key,
        random: first..last,
    }
}

fn planted_keys() -> impl Strategy<Value = Vec<Planted>> {
    prop::collection::vec((0..SHAPES.len(), any::<u64>()), 1..4)
        .prop_map(|keys| keys.into_iter().map(|(s, seed)| planted(s, seed)).collect())
}

/// Whether `shown` shows a run of `WINDOW` characters of a key's random part.
const WINDOW: usize = 12;

fn shows_a_piece(shown: &[u8], planted: &Planted) -> bool {
    planted.key[planted.random.clone()]
        .windows(WINDOW)
        .any(|piece| shown.windows(WINDOW).any(|w| w == piece))
}

/// Delimiters that no key alphabet holds.
const SEPARATORS: &[u8] = b" \n\"',;=:()<>";

/// Text made of the bytes and characters that trouble terminals and UTF-8 handling.
fn noisy_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "\x1b",
        "\x1b[",
        "\x1b]",
        "\x07",
        "\x08",
        "\r",
        "\n",
        "é",
        "€",
        "\u{202e}",
        "𝄞",
        "a",
        "Z",
        "0",
        "-",
        "_",
        "+",
        "/",
        "=",
        " ",
        "\"",
        "\\",
        "gsk_",
        "sk-",
        "AIza",
        "nvapi-",
        "T3BlbkFJ",
        "base64",
        "kind: Secret",
        "{{",
        "xxxx",
        "\x1b\\",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|p| p.concat())
}

/// The masker on one text: never a panic, the same length, no piece of a planted key left.
fn check_mask(text: &str, keys: &[Planted]) {
    let masked = mask_secrets(engine(), text);
    assert_eq!(masked.len(), text.len());
    for key in keys {
        assert!(
            !shows_a_piece(masked.as_bytes(), key),
            "masked text shows a key: {masked:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// The rule parser takes any text without a panic.
    #[test]
    fn rule_files_never_panic(text in "\\PC*") {
        let _ = RuleSet::from_toml("fuzz.toml", &text);
    }

    /// ...and any values in a rule's fields.
    #[test]
    fn rule_fields_never_panic(
        pattern in ".{0,40}",
        keyword in ".{0,12}",
        entropy in any::<f64>(),
        lines in any::<i64>(),
        examples in prop::collection::vec(".{0,40}", 0..3),
    ) {
        let text = format!(
            "[[rules]]\nid = \"fuzz\"\nprovider = \"p\"\nname = \"n\"\ndescription = \"d\"\n\
             severity = \"high\"\npattern = {pattern:?}\nkeywords = [{keyword:?}]\n\
             entropy = {entropy:?}\ncontext = {{ patterns = ['x'], lines = {lines} }}\n\
             examples = {examples:?}\n"
        );
        if let Ok(rules) = RuleSet::from_toml("fuzz.toml", &text) {
            let _ = keyscope_scan::check_examples(&rules);
        }
    }

    /// The config parser takes any text without a panic, sizes included.
    #[test]
    fn config_files_never_panic(text in "\\PC*", size in "\\PC{0,24}", number in any::<i64>()) {
        let _ = Config::parse(Path::new(".keyscope.toml"), &text);
        let _ = Config::parse(Path::new(".keyscope.toml"), &format!("max_file_size = {size:?}\n"));
        let _ = Config::parse(Path::new(".keyscope.toml"), &format!("max_file_size = {number}\n"));
        let _ = keyscope_scan::config::parse_size(&size);
    }

    /// Random bytes around planted keys: every key delimited by a character no key holds is
    /// found, and no snippet or redaction shows a piece of any key.
    #[test]
    fn planted_keys_are_found_and_never_shown(
        keys in planted_keys(),
        noise in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 4),
        separators in prop::collection::vec(prop::sample::select(SEPARATORS), 8),
    ) {
        let mut data = noise[0].clone();
        for (i, key) in keys.iter().enumerate() {
            data.push(separators[2 * i]);
            data.extend_from_slice(&key.key);
            data.push(separators[2 * i + 1]);
            data.extend_from_slice(&noise[(i + 1) % noise.len()]);
        }
        let found = scan_blob(engine(), "fuzz.txt", &data);
        for key in &keys {
            let print = fingerprint(&key.key);
            prop_assert!(
                found.iter().any(|f| f.fingerprint == print),
                "not found: {} in {:?}", String::from_utf8_lossy(&key.key), String::from_utf8_lossy(&data)
            );
            for f in &found {
                prop_assert!(!shows_a_piece(f.snippet.text.as_bytes(), key), "{}", f.snippet.text);
                prop_assert!(!shows_a_piece(f.redacted.as_bytes(), key), "{}", f.redacted);
            }
        }
    }

    /// The masker on noisy text with keys glued to anything: no panic, no piece of a key.
    #[test]
    fn masking_never_panics_nor_shows_a_key(
        keys in planted_keys(),
        noise in prop::collection::vec(noisy_text(), 4),
    ) {
        let mut text = noise[0].clone();
        for (i, key) in keys.iter().enumerate() {
            text.push_str(std::str::from_utf8(&key.key).unwrap());
            text.push_str(&noise[(i + 1) % noise.len()]);
        }
        check_mask(&text, &keys);
    }

    /// The masker on any text at all.
    #[test]
    fn masking_any_text_never_panics(text in "\\PC*|(\\x1b|.|\\n)*") {
        let masked = mask_secrets(engine(), &text);
        prop_assert_eq!(masked.len(), text.len());
    }
}
