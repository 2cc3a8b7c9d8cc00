//! Detection rules for keyscope: the rule model, the TOML rule-file format, and the built-in
//! provider rules embedded from the repository's `rules/` directory.
//!
//! The one design decision here: **rules are data, and a [`Rule`] is always valid**. A rule
//! file is parsed into typed rules at the edge — patterns compiled, keywords checked, severities
//! parsed — and every error carries the span of the offending TOML so the CLI can point at it.
//! The engine (`keyscope-scan`) never re-checks a rule.
//!
//! ```
//! let rules = keyscope_rules::RuleSet::builtin()?;
//! let openai = rules.get("openai-project-key").expect("built-in rule");
//! assert_eq!(openai.provider(), "openai");
//! assert!(!openai.examples().is_empty());
//! # Ok::<(), keyscope_rules::RuleError>(())
//! ```
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod file;
mod pattern;

use std::collections::BTreeMap;
use std::fmt;

pub use file::{RuleError, RuleErrorKind};
pub use pattern::Pattern;

/// How bad a leak found by a rule is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: worth knowing, not a leak by itself.
    Info,
    /// Low risk.
    Low,
    /// Medium risk.
    Medium,
    /// High risk: a credential that grants access.
    High,
    /// Critical: a credential that grants broad or billing access.
    Critical,
}

impl Severity {
    /// The lowercase name used in rule files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The next level up, saturating at [`Severity::Critical`].
    pub fn raised(self) -> Severity {
        match self {
            Severity::Info => Severity::Low,
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule finds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// A secret: checked for boundaries, entropy and placeholders, and always redacted.
    #[default]
    Secret,
    /// A risky use of keys in code (a key logged, TLS checks off, a key shipped to browsers):
    /// the match is code to show, not a secret, so none of the secret checks apply.
    Usage,
    /// A finding about other findings (one key shared by several environments, services or
    /// repositories): no pattern of its own, produced by the flat-key analysis.
    Correlation,
}

/// A requirement that other text appears near a candidate before it counts as a finding.
///
/// Used for keys with no distinctive shape of their own (Azure OpenAI's 32 hex characters, an
/// AWS secret access key), which are only keys when their surroundings say so.
#[derive(Debug, Clone)]
pub struct Context {
    patterns: Vec<Pattern>,
    lines: usize,
    unless: Vec<Pattern>,
}

impl Context {
    /// Patterns of which at least one must match near the candidate (none: no requirement).
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Patterns of which none may match near the candidate.
    pub fn unless(&self) -> &[Pattern] {
        &self.unless
    }

    /// How many lines above and below the candidate to look; `0` means anywhere in the blob.
    pub fn lines(&self) -> usize {
        self.lines
    }
}

/// A checksum a secret carries, which a match must pass to be a finding: a wrong checksum is
/// not a key, so such a rule has no false positives from look-alikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum Checksum {
    /// The last six characters are the CRC-32 of everything before them, in base62
    /// (`0-9A-Za-z`), zero-padded: keyscope's own keys, as GitHub's tokens do.
    #[serde(rename = "crc32-base62")]
    Crc32Base62,
}

/// One detection rule: a compiled pattern plus what the engine needs to apply it cheaply and
/// report it well.
#[derive(Debug, Clone)]
pub struct Rule {
    kind: RuleKind,
    enabled: bool,
    id: String,
    provider: String,
    name: String,
    description: String,
    severity: Severity,
    pattern: Option<Pattern>,
    secret_group: Option<usize>,
    veto_group: Option<usize>,
    in_strings: bool,
    keywords: Vec<String>,
    prefix: Option<String>,
    entropy: f64,
    checksum: Option<Checksum>,
    window: usize,
    context: Option<Context>,
    references: Vec<String>,
    tags: Vec<String>,
    examples: Vec<String>,
    negative_examples: Vec<String>,
}

impl Rule {
    /// Whether the rule finds secrets or risky usage.
    pub fn kind(&self) -> RuleKind {
        self.kind
    }

    /// Whether the rule runs; some rules run only when configured (`enabled = false`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Turns the rule on or off.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Adds a pattern that, when it matches anywhere in a blob, silences this rule there (for
    /// example the configured gateway's host for `flat-key/direct-provider-call`).
    pub fn add_unless(&mut self, pattern: regex::bytes::Regex) {
        let pattern = Pattern::from_regex(pattern);
        match &mut self.context {
            Some(context) => context.unless.push(pattern),
            None => {
                self.context = Some(Context {
                    patterns: Vec::new(),
                    lines: 0,
                    unless: vec![pattern],
                });
            }
        }
    }

    /// Stable identifier, for example `openai-project-key`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Provider slug, for example `openai`.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Short human name, for example `OpenAI project API key`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One or two sentences on what the rule finds and why it matters.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Severity of a finding of this rule.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// The compiled pattern (none for correlation rules). A built-in rule's pattern is
    /// compiled by the first call (see [`Pattern`]); `None` if that fails, which the tests
    /// rule out for every built-in rule.
    pub fn pattern(&self) -> Option<&regex::bytes::Regex> {
        self.pattern.as_ref()?.regex()
    }

    /// The pattern, compiled or not.
    pub fn pattern_source(&self) -> Option<&Pattern> {
        self.pattern.as_ref()
    }

    /// Index of the capture group that holds the secret (`(?P<secret>...)`), if the pattern
    /// names one; otherwise the whole match is the secret.
    pub fn secret_group(&self) -> Option<usize> {
        self.secret_group
    }

    /// Index of the capture group named `veto`, if the pattern has one: a match in which that
    /// group takes part is no finding. It lets a pattern look past what it finds, which the
    /// regex engine's lack of lookahead otherwise rules out (`dangerouslyAllowBrowser: true`
    /// followed in its object by a spread of the caller's options is a library's default).
    pub fn veto_group(&self) -> Option<usize> {
        self.veto_group
    }

    /// For a usage rule: whether a match inside a string literal counts. Most usage patterns
    /// find code, and the same code inside a string is a message or an example; a pattern
    /// that finds what code holds as a string (a provider's URL) sets `in_strings = true`.
    /// Matches in comments and documentation never count.
    pub fn in_strings(&self) -> bool {
        self.in_strings
    }

    /// Literal strings (case-sensitive) of which one must occur near any match.
    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }

    /// A public, fixed prefix of every secret of this rule (`sk-ant-api03-`), shown unredacted.
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// Minimum Shannon entropy, in bits per character, of a real secret.
    pub fn entropy(&self) -> f64 {
        self.entropy
    }

    /// The checksum a secret of this rule must pass, if it carries one.
    pub fn checksum(&self) -> Option<Checksum> {
        self.checksum
    }

    /// How many bytes either side of a keyword the pattern is searched in.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The surrounding text a candidate needs, if any.
    pub fn context(&self) -> Option<&Context> {
        self.context.as_ref()
    }

    /// Documentation links about the credential.
    pub fn references(&self) -> &[String] {
        &self.references
    }

    /// Free-form tags (`llm`, `cloud`, ...).
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Texts in which the rule must find a secret.
    pub fn examples(&self) -> &[String] {
        &self.examples
    }

    /// Texts in which the rule must find nothing.
    pub fn negative_examples(&self) -> &[String] {
        &self.negative_examples
    }
}

/// An ordered collection of rules with unique ids.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    by_id: BTreeMap<String, usize>,
}

/// The built-in rule files, embedded at build time from the repository's `rules/` directory.
const BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));

impl RuleSet {
    /// An empty rule set.
    pub fn new() -> RuleSet {
        RuleSet::default()
    }

    /// The rules that ship with keyscope.
    pub fn builtin() -> Result<RuleSet, RuleError> {
        let mut set = RuleSet::new();
        for (name, text) in BUILTIN {
            set.extend(file::parse(name, text, file::Compile::OnFirstUse)?)?;
        }
        Ok(set)
    }

    /// Parses one rule file. `name` is used in error messages.
    pub fn from_toml(name: &str, text: &str) -> Result<RuleSet, RuleError> {
        let mut set = RuleSet::new();
        set.extend(file::parse(name, text, file::Compile::Now)?)?;
        Ok(set)
    }

    /// Parses the `[[rules]]` array of a file that also holds other settings (a config
    /// file); other keys are left to the caller, and error spans point into `text`.
    pub fn from_embedded_toml(name: &str, text: &str) -> Result<RuleSet, RuleError> {
        let mut set = RuleSet::new();
        set.extend(file::parse_embedded(name, text)?)?;
        Ok(set)
    }

    /// Adds rules, rejecting an id that is already present.
    pub fn extend(&mut self, rules: impl IntoIterator<Item = Rule>) -> Result<(), RuleError> {
        for rule in rules {
            if self.by_id.contains_key(&rule.id) {
                return Err(RuleErrorKind::Duplicate { id: rule.id }.into());
            }
            self.by_id.insert(rule.id.clone(), self.rules.len());
            self.rules.push(rule);
        }
        Ok(())
    }

    /// Keeps only the rules for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Rule) -> bool) {
        self.rules.retain(|r| keep(r));
        self.by_id = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
    }

    /// Looks a rule up by id, for changing it.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Rule> {
        self.by_id.get(id).map(|&i| &mut self.rules[i])
    }

    /// Looks a rule up by id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).map(|&i| &self.rules[i])
    }

    /// All rules, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the set has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_load_with_unique_ids() {
        let set = RuleSet::builtin().unwrap();
        assert!(set.len() >= 20, "only {} built-in rules", set.len());
        for rule in set
            .rules()
            .iter()
            .filter(|r| r.kind() != RuleKind::Correlation)
        {
            assert!(!rule.keywords().is_empty(), "{} has no keywords", rule.id());
            assert!(!rule.examples().is_empty(), "{} has no examples", rule.id());
            assert!(
                !rule.negative_examples().is_empty(),
                "{} has no negative examples",
                rule.id()
            );
        }
    }

    #[test]
    fn builtin_patterns_compile_on_first_use_and_not_before() {
        let set = RuleSet::builtin().unwrap();
        let patterns = || {
            set.rules().iter().flat_map(|rule| {
                let context = rule.context().into_iter();
                rule.pattern_source()
                    .into_iter()
                    .chain(context.flat_map(|c| c.patterns().iter().chain(c.unless())))
            })
        };
        assert!(patterns().all(|p| !p.is_compiled()));
        for pattern in patterns() {
            assert!(pattern.regex().is_some(), "{pattern:?} does not compile");
        }
    }

    #[test]
    fn severity_raises_and_saturates() {
        assert_eq!(Severity::Medium.raised(), Severity::High);
        assert_eq!(Severity::Critical.raised(), Severity::Critical);
    }
}
