//! The cheap checks that turn a pattern match into a finding: boundaries, entropy,
//! placeholders, and nearby context.

use std::ops::Range;

use keyscope_rules::{Checksum, Context};

/// Substrings that no key alphabet holds and templates and elisions do: a value with one is
/// a placeholder, whatever else it holds.
const TEMPLATE_MARKERS: &[&[u8]] = &[b"****", b"...", b"<", b">", b"${", b"{{"];

/// Words of made-up values (lowercase). A random key body holds one now and then (`your` in
/// about one OpenAI project key in 3,500), so a word alone proves nothing: only a value made
/// mostly of such words, runs and separators is a placeholder.
const PLACEHOLDER_WORDS: &[&[u8]] = &[
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
    b"123456",
    b"abcdef",
    // Modal's own README shows `as-FAKESECRETSTRINGABCDEF`.
    b"fake",
    b"secret",
];

/// The bytes a placeholder word starts with, in either case: most bytes of a key start none,
/// and the check of each word is skipped for them.
const WORD_STARTS: [bool; 256] = {
    let mut starts = [false; 256];
    let mut i = 0;
    while i < PLACEHOLDER_WORDS.len() {
        let first = PLACEHOLDER_WORDS[i][0];
        starts[first as usize] = true;
        starts[first.to_ascii_uppercase() as usize] = true;
        i += 1;
    }
    starts
};

/// Values that providers publish in their documentation as examples, recognised whole.
const DOCUMENTED_EXAMPLES: &[&[u8]] = &[
    b"AKIAIOSFODNN7EXAMPLE",
    b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
];

/// At most this many letters and digits outside the placeholder words and runs: the rest of a
/// made-up value is a prefix and a word or two (`sk-proj-`, `key-here`).
const PLAIN_LEFT: usize = 8;

/// Inline comments that silence a finding on their line: keyscope's own, and those of
/// gitleaks and detect-secrets so that teams can migrate without touching every line.
const ALLOW_MARKERS: &[&[u8]] = &[
    b"keyscope:allow",
    b"gitleaks:allow",
    b"pragma: allowlist secret",
];

/// A run of this many identical characters marks a made-up value.
const REPEAT_RUN: usize = 6;

/// A run of this many consecutive characters (`abcd`, `3456`) is typed, not drawn: it counts
/// with the placeholder words (`gsk_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ`).
const ASCENDING_RUN: usize = 4;

/// Whether the secret is delimited: the bytes around it are not letters or digits, except that
/// an escape such as `\n` just before it (JSON, C strings) counts as a delimiter.
pub(crate) fn has_boundaries(data: &[u8], span: &Range<usize>) -> bool {
    let after_ok = data
        .get(span.end)
        .is_none_or(|b| !b.is_ascii_alphanumeric());
    boundary_before(data, span.start) && after_ok
}

/// Whether a secret may start at `start`: the byte before it is no letter or digit, or ends
/// an escape such as `\n`.
pub(crate) fn boundary_before(data: &[u8], start: usize) -> bool {
    match start {
        0 => true,
        1 => !data[0].is_ascii_alphanumeric(),
        at => !data[at - 1].is_ascii_alphanumeric() || data[at - 2] == b'\\',
    }
}

/// Whether the value is a placeholder: a template or an elision, a documented example, or a
/// value made mostly of placeholder words, runs of one repeated character and runs of
/// consecutive ones. The value is
/// judged whole: a word or a run inside an otherwise random body does not make a key a
/// placeholder, since random bodies hold them by chance.
pub(crate) fn is_placeholder(secret: &[u8]) -> bool {
    if TEMPLATE_MARKERS
        .iter()
        .any(|m| memchr::memmem::find(secret, m).is_some())
        || DOCUMENTED_EXAMPLES.contains(&secret)
    {
        return true;
    }
    // One pass marks what placeholder words and runs cover; most keys have neither, and
    // leave here without having allocated.
    let mut covered: Option<Vec<bool>> = None;
    let (mut run, mut ascending) = (0, 0);
    for (i, &b) in secret.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| secret[p]);
        run = if previous.is_some_and(|p| p.eq_ignore_ascii_case(&b)) {
            run + 1
        } else {
            1
        };
        if run >= REPEAT_RUN {
            covered.get_or_insert_with(|| vec![false; secret.len()])[i + 1 - run..=i].fill(true);
        }
        ascending = if b.is_ascii_alphanumeric() && previous.is_some_and(|p| p.wrapping_add(1) == b)
        {
            ascending + 1
        } else {
            1
        };
        if ascending >= ASCENDING_RUN {
            covered.get_or_insert_with(|| vec![false; secret.len()])[i + 1 - ascending..=i]
                .fill(true);
        }
        if !WORD_STARTS[usize::from(b)] {
            continue;
        }
        for word in PLACEHOLDER_WORDS {
            if word[0] == b.to_ascii_lowercase()
                && secret
                    .get(i..i + word.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(word))
            {
                covered.get_or_insert_with(|| vec![false; secret.len()])[i..i + word.len()]
                    .fill(true);
            }
        }
    }
    let Some(covered) = covered else {
        return false;
    };
    let (total, plain) = secret
        .iter()
        .zip(&covered)
        .filter(|(b, _)| b.is_ascii_alphanumeric())
        .fold((0, 0), |(total, plain), (_, &c)| {
            (total + 1, plain + usize::from(!c))
        });
    plain <= PLAIN_LEFT || plain * 3 <= total
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
    /// The last line asked about for an allow comment, and the answer: the findings of one
    /// long line (a minified bundle) share it instead of searching the line again each.
    allowed: Option<(Range<usize>, bool)>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(data: &'a [u8]) -> LineIndex<'a> {
        LineIndex {
            data,
            newlines: None,
            allowed: None,
        }
    }

    fn newlines(&mut self) -> &[usize] {
        let data = self.data;
        self.newlines
            .get_or_insert_with(|| memchr::memchr_iter(b'\n', data).collect())
    }

    /// Byte range of the lines from `radius` lines above `span` to `radius` lines below it.
    pub(crate) fn around(&mut self, span: &Range<usize>, radius: usize) -> Range<usize> {
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
        if let Some((asked, answer)) = &self.allowed
            && *asked == line
        {
            return *answer;
        }
        let text = &self.data[line.clone()];
        let answer = ALLOW_MARKERS
            .iter()
            .any(|m| memchr::memmem::find(text, m).is_some());
        self.allowed = Some((line, answer));
        answer
    }
}

/// Whether `secret` carries the checksum `sum` asks for.
pub(crate) fn checksum_holds(sum: Checksum, secret: &[u8]) -> bool {
    match sum {
        Checksum::Crc32Base62 => {
            const BASE62: &[u8; 62] =
                b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
            let Some(split) = secret.len().checked_sub(6) else {
                return false;
            };
            let (body, sum) = secret.split_at(split);
            let mut value = crc32fast::hash(body);
            let mut digits = [b'0'; 6];
            for digit in digits.iter_mut().rev() {
                *digit = BASE62[(value % 62) as usize];
                value /= 62;
            }
            digits == sum
        }
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
            "gsk_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        assert!(!is_placeholder(b"q8Zr3LwX0pVt7KcN2bYh5MfJ"));
    }

    /// A tiny seeded xorshift: the same million bodies on every run, no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn fill(&mut self, out: &mut Vec<u8>, alphabet: &[u8], len: usize) {
            for _ in 0..len {
                out.push(alphabet[(self.next() % alphabet.len() as u64) as usize]);
            }
        }
    }

    const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    const HEX: &[u8] = b"0123456789abcdef";
    const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const WORD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";

    /// The shape of each built-in rule's keys: literal parts and random runs, in order.
    /// A key's parts in order: a literal (length 0) or a random run of `len` from an alphabet.
    type Shape = &'static [(&'static [u8], usize)];

    const SHAPES: &[(&str, Shape)] = &[
        ("anthropic", &[(b"sk-ant-api03-", 0), (URL, 93), (b"AA", 0)]),
        (
            "anthropic-admin",
            &[(b"sk-ant-admin01-", 0), (URL, 93), (b"AA", 0)],
        ),
        (
            "aws-id",
            &[(b"AKIA", 0), (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)],
        ),
        (
            "aws-secret",
            &[(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+",
                40,
            )],
        ),
        ("azure", &[(HEX, 32)]),
        ("cerebras", &[(b"csk-", 0), (BASE62, 48)]),
        ("cohere", &[(BASE62, 40)]),
        ("deepseek", &[(b"sk-", 0), (HEX, 32)]),
        ("fireworks", &[(b"fw_", 0), (BASE62, 24)]),
        ("google", &[(b"AIza", 0), (URL, 35)]),
        ("groq", &[(b"gsk_", 0), (BASE62, 52)]),
        ("huggingface", &[(b"hf_", 0), (LETTERS, 34)]),
        ("huggingface-org", &[(b"api_org_", 0), (LETTERS, 34)]),
        (
            "langsmith",
            &[(b"lsv2_pt_", 0), (HEX, 32), (b"_", 0), (HEX, 10)],
        ),
        ("mistral", &[(BASE62, 32)]),
        ("nvidia", &[(b"nvapi-", 0), (URL, 64)]),
        (
            "openai-legacy",
            &[(b"sk-", 0), (BASE62, 20), (b"T3BlbkFJ", 0), (BASE62, 20)],
        ),
        (
            "openai-project",
            &[(b"sk-proj-", 0), (URL, 64), (b"T3BlbkFJ", 0), (URL, 64)],
        ),
        ("openrouter", &[(b"sk-or-v1-", 0), (HEX, 64)]),
        ("perplexity", &[(b"pplx-", 0), (BASE62, 48)]),
        ("replicate", &[(b"r8_", 0), (BASE62, 37)]),
        ("together", &[(HEX, 64)]),
        ("together-v1", &[(b"tgp_v1_", 0), (URL, 43)]),
        ("xai", &[(b"xai-", 0), (WORD, 80)]),
    ];

    /// Builds one key of a shape.
    fn key_of(shape: Shape, rng: &mut XorShift, out: &mut Vec<u8>) {
        out.clear();
        for &(part, len) in shape {
            if len == 0 {
                out.extend_from_slice(part);
            } else {
                rng.fill(out, part, len);
            }
        }
    }

    /// Issue #19: a random body that happens to hold `your`, `xxxx`, `123456` or a run of six
    /// was a placeholder (one OpenAI project key in 3,500). A million bodies of every
    /// provider's shape, none of them a placeholder: in optimised builds (`cargo test
    /// --release`), or with `KEYSCOPE_PLACEHOLDER_KEYS=1000000`; a debug build checks a tenth
    /// of them by default, which takes a few seconds of CPU per provider.
    #[test]
    fn a_million_random_keys_per_provider_are_never_placeholders() {
        let default = if cfg!(debug_assertions) {
            100_000
        } else {
            1_000_000
        };
        let per_shape: usize = std::env::var("KEYSCOPE_PLACEHOLDER_KEYS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default);
        std::thread::scope(|scope| {
            for (i, (name, shape)) in SHAPES.iter().enumerate() {
                scope.spawn(move || {
                    let mut rng = XorShift(0x5eed_0000 + i as u64);
                    let mut key = Vec::new();
                    for _ in 0..per_shape {
                        key_of(shape, &mut rng, &mut key);
                        assert!(
                            !is_placeholder(&key),
                            "{name}: {}",
                            String::from_utf8_lossy(&key)
                        );
                    }
                });
            }
        });
    }

    /// The same shapes end to end, through the engine with the built-in rules, in the setting
    /// each rule needs (a variable name for the rules that look for one): every key is found.
    /// Fireworks is left out: its entropy floor of 3.9 is what tells its keys from `fw_`
    /// firmware identifiers, and about one random key in 1,500 falls under it.
    #[test]
    fn random_keys_of_every_provider_are_found_end_to_end() {
        let engine = crate::Detector::new(keyscope_rules::RuleSet::builtin().unwrap()).unwrap();
        let setting = |name: &str| match name {
            "aws-id" => "aws_access_key_id = ",
            "aws-secret" => "aws_secret_access_key = ",
            "azure" => "AZURE_OPENAI_API_KEY=",
            "cohere" => "COHERE_API_KEY=",
            "deepseek" => "DEEPSEEK_API_KEY=",
            "mistral" => "MISTRAL_API_KEY=",
            "together" => "TOGETHER_API_KEY=",
            _ => "KEY=",
        };
        for (i, (name, shape)) in SHAPES.iter().enumerate() {
            if *name == "fireworks" {
                continue;
            }
            let mut rng = XorShift(0xe2e0_0000 + i as u64);
            let mut key = Vec::new();
            for _ in 0..2_000 {
                key_of(shape, &mut rng, &mut key);
                let mut line = setting(name).as_bytes().to_vec();
                line.extend_from_slice(&key);
                line.push(b'\n');
                let found = engine.scan(&line);
                assert!(
                    found.iter().any(|m| m.secret == key),
                    "{name}: {} not found",
                    String::from_utf8_lossy(&key)
                );
            }
        }
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
