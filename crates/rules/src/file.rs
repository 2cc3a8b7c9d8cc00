//! The TOML rule-file format, parsed into valid [`Rule`]s with span-carrying errors.

use std::ops::Range;

use miette::{Diagnostic, NamedSource, SourceSpan};
use serde::Deserialize;
use toml::Spanned;

use crate::{Checksum, Context, Pattern, Rule, RuleKind, Severity};
/// Default search window around a keyword, in bytes.
const DEFAULT_WINDOW: usize = 512;
/// Default entropy floor, in bits per character.
const DEFAULT_ENTROPY: f64 = 3.0;

/// An error in a rule file or rule set (boxed: errors are rare, results are everywhere).
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error(transparent)]
#[diagnostic(transparent)]
pub struct RuleError(Box<RuleErrorKind>);

impl RuleError {
    /// What went wrong.
    pub fn kind(&self) -> &RuleErrorKind {
        &self.0
    }
}

impl From<RuleErrorKind> for RuleError {
    fn from(kind: RuleErrorKind) -> Self {
        RuleError(Box::new(kind))
    }
}

/// The kinds of [`RuleError`].
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum RuleErrorKind {
    /// The file is not valid TOML or does not follow the rule schema.
    #[error("invalid rule file `{name}`: {message}")]
    #[diagnostic(code(keyscope::rules::syntax))]
    Syntax {
        /// File name.
        name: String,
        /// What is wrong.
        message: String,
        /// The file text.
        #[source_code]
        src: NamedSource<String>,
        /// Where.
        #[label("here")]
        span: Option<SourceSpan>,
    },
    /// A field has a value the engine cannot use.
    #[error("invalid rule in `{name}`: {message}")]
    #[diagnostic(code(keyscope::rules::invalid))]
    Invalid {
        /// File name.
        name: String,
        /// What is wrong.
        message: String,
        /// The file text.
        #[source_code]
        src: NamedSource<String>,
        /// Where.
        #[label("{message}")]
        span: SourceSpan,
    },
    /// Two rules share an id.
    #[error("duplicate rule id `{id}`")]
    #[diagnostic(code(keyscope::rules::duplicate))]
    Duplicate {
        /// The id.
        id: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    kind: RuleKind,
    #[serde(default = "yes")]
    enabled: bool,
    id: Spanned<String>,
    provider: String,
    name: String,
    description: String,
    severity: Severity,
    pattern: Option<Spanned<String>>,
    keywords: Option<Spanned<Vec<String>>>,
    prefix: Option<String>,
    entropy: Option<Spanned<f64>>,
    checksum: Option<Checksum>,
    window: Option<usize>,
    context: Option<RawContext>,
    #[serde(default)]
    in_strings: bool,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    examples: Vec<String>,
    #[serde(default)]
    negative_examples: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    #[serde(default)]
    patterns: Vec<Spanned<String>>,
    #[serde(default)]
    lines: usize,
    #[serde(default)]
    unless: Vec<Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// Only the `rules` array of a larger file (a config file that also holds other settings).
#[derive(Deserialize)]
struct RawRulesOnly {
    #[serde(default)]
    rules: Vec<RawRule>,
}

/// When a rule file's patterns are compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compile {
    /// At load: a user's file, whose errors (a pattern too large) must point at it.
    Now,
    /// On first use, their syntax checked at load: the built-in rules, which the tests compile.
    OnFirstUse,
}

/// Parses one rule file.
pub(crate) fn parse(name: &str, text: &str, when: Compile) -> Result<Vec<Rule>, RuleError> {
    parse_with(name, text, when, |text| {
        toml::from_str::<RawFile>(text).map(|f| f.rules)
    })
}

/// Parses the `[[rules]]` of a file that may hold other keys too; spans stay those of the file.
pub(crate) fn parse_embedded(name: &str, text: &str) -> Result<Vec<Rule>, RuleError> {
    parse_with(name, text, Compile::Now, |text| {
        toml::from_str::<RawRulesOnly>(text).map(|f| f.rules)
    })
}

fn parse_with(
    name: &str,
    text: &str,
    when: Compile,
    read: impl FnOnce(&str) -> Result<Vec<RawRule>, toml::de::Error>,
) -> Result<Vec<Rule>, RuleError> {
    let raw_rules = read(text).map_err(|e| {
        RuleError::from(RuleErrorKind::Syntax {
            name: name.to_owned(),
            message: e.message().to_owned(),
            src: NamedSource::new(name, text.to_owned()),
            span: e.span().map(SourceSpan::from),
        })
    })?;
    let invalid = |span: Range<usize>, message: String| {
        RuleError::from(RuleErrorKind::Invalid {
            name: name.to_owned(),
            message,
            src: NamedSource::new(name, text.to_owned()),
            span: span.into(),
        })
    };
    raw_rules
        .into_iter()
        .map(|r| build_rule(r, when, &invalid))
        .collect()
}

/// Builds an error at a span of the rule file.
type Invalid<'a> = dyn Fn(Range<usize>, String) -> RuleError + 'a;

/// One rule from its raw form: a valid id, a compiled pattern with keywords (none for a
/// correlation rule), an entropy in range, compiled context patterns.
fn build_rule(r: RawRule, when: Compile, invalid: &Invalid<'_>) -> Result<Rule, RuleError> {
    let id_ok = !r.id.get_ref().is_empty()
        && r.id
            .get_ref()
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_/".contains(&b));
    if !id_ok {
        return Err(invalid(
            r.id.span(),
            "ids use lowercase letters, digits, `-`, `_` and `/`".into(),
        ));
    }
    let (pattern, keywords) =
        pattern_and_keywords(&r.id, r.kind, r.pattern, r.keywords, when, invalid)?;
    let secret_group = pattern.as_ref().and_then(|p| p.group_index("secret"));
    let veto_group = pattern.as_ref().and_then(|p| p.group_index("veto"));
    let entropy = match r.entropy {
        Some(e) if !(0.0..=8.0).contains(e.get_ref()) => {
            return Err(invalid(
                e.span(),
                "entropy is in bits per character, 0 to 8".into(),
            ));
        }
        Some(e) => e.into_inner(),
        None => DEFAULT_ENTROPY,
    };
    let context = r.context.map(|c| context(c, when, invalid)).transpose()?;
    Ok(Rule {
        kind: r.kind,
        enabled: r.enabled,
        id: r.id.into_inner(),
        provider: r.provider,
        name: r.name,
        description: r.description,
        severity: r.severity,
        pattern,
        secret_group,
        veto_group,
        in_strings: r.in_strings,
        keywords,
        prefix: r.prefix,
        entropy,
        checksum: r.checksum,
        window: r.window.unwrap_or(DEFAULT_WINDOW),
        context,
        references: r.references,
        tags: r.tags,
        examples: r.examples,
        negative_examples: r.negative_examples,
    })
}

/// The compiled pattern and the keywords of a rule: both for a secret or usage rule, neither
/// for a correlation rule.
fn pattern_and_keywords(
    id: &Spanned<String>,
    kind: RuleKind,
    pattern: Option<Spanned<String>>,
    keywords: Option<Spanned<Vec<String>>>,
    when: Compile,
    invalid: &Invalid<'_>,
) -> Result<(Option<Pattern>, Vec<String>), RuleError> {
    match (kind, pattern, keywords) {
        (RuleKind::Correlation, None, None) => Ok((None, Vec::new())),
        (RuleKind::Correlation, _, _) => Err(invalid(
            id.span(),
            "a correlation rule has no pattern or keywords".into(),
        )),
        (_, Some(pattern), Some(keywords)) => {
            let compiled = compile(pattern.get_ref(), when)
                .map_err(|e| invalid(pattern.span(), format!("pattern does not compile: {e}")))?;
            if keywords.get_ref().is_empty() || keywords.get_ref().iter().any(String::is_empty) {
                return Err(invalid(
                    keywords.span(),
                    "at least one keyword is required, and none may be empty".into(),
                ));
            }
            Ok((Some(compiled), keywords.into_inner()))
        }
        (_, _, _) => Err(invalid(
            id.span(),
            "a rule needs a `pattern` and `keywords`".into(),
        )),
    }
}

/// A rule's context: its patterns and exceptions compiled.
fn context(c: RawContext, when: Compile, invalid: &Invalid<'_>) -> Result<Context, RuleError> {
    let compile_all = |list: &[Spanned<String>]| {
        list.iter()
            .map(|p| {
                compile(p.get_ref(), when).map_err(|e| {
                    invalid(p.span(), format!("context pattern does not compile: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Context {
        patterns: compile_all(&c.patterns)?,
        lines: c.lines,
        unless: compile_all(&c.unless)?,
    })
}

fn compile(pattern: &str, when: Compile) -> Result<Pattern, regex::Error> {
    match when {
        Compile::Now => Pattern::compile(pattern),
        Compile::OnFirstUse => Pattern::parse(pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[rules]]
id = "demo-key"
provider = "demo"
name = "Demo key"
description = "A demo."
severity = "high"
pattern = 'demo_(?P<secret>[a-z0-9]{8})'
keywords = ["demo_"]
"#;

    #[test]
    fn parses_a_minimal_rule_with_defaults() {
        let rules = parse("demo.toml", MINIMAL, Compile::Now).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].secret_group(), Some(1));
        assert_eq!(rules[0].window(), DEFAULT_WINDOW);
        assert_eq!(rules[0].severity(), Severity::High);
    }

    #[test]
    fn unknown_field_is_an_error_pointing_at_it() {
        let text = MINIMAL.replace("severity", "colour = \"red\"\nseverity");
        let err = parse("demo.toml", &text, Compile::Now).unwrap_err();
        let RuleErrorKind::Syntax { message, span, .. } = err.kind() else {
            panic!("expected a syntax error, got {err:?}");
        };
        assert!(message.contains("colour"), "{message}");
        let span = span.unwrap();
        assert_eq!(&text[span.offset()..span.offset() + span.len()], "colour");
    }

    #[test]
    fn bad_pattern_is_an_error_pointing_at_it() {
        let text = MINIMAL.replace("[a-z0-9]{8}", "[a-z");
        let err = parse("demo.toml", &text, Compile::Now).unwrap_err();
        let RuleErrorKind::Invalid { span, message, .. } = err.kind() else {
            panic!("expected an invalid-rule error, got {err:?}");
        };
        assert!(message.contains("does not compile"));
        assert!(text[span.offset()..].starts_with("'demo_"));
    }

    #[test]
    fn empty_keyword_list_is_rejected() {
        let text = MINIMAL.replace(r#"["demo_"]"#, "[]");
        let err = parse("demo.toml", &text, Compile::Now).unwrap_err();
        assert!(matches!(err.kind(), RuleErrorKind::Invalid { .. }));
    }
}
