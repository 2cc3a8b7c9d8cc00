//! A rule's regular expression, compiled when a scan first needs it.

use std::fmt;
use std::sync::{Arc, OnceLock};

/// Largest compiled size we accept for one pattern, so a hostile custom rule cannot make the
/// engine allocate without bound.
const PATTERN_SIZE_LIMIT: usize = 4 << 20;

/// A regular expression of a rule (its pattern, or one of its context patterns).
///
/// Compiling every built-in pattern took most of a `keyscope scan --staged` run on one file,
/// which needs only the few rules whose keywords that file holds. So a built-in pattern is
/// parsed at load (which checks its syntax and finds its capture groups, a small part of the
/// cost) and compiled on first use, once for every thread and every clone of the rule; that
/// each one compiles is checked by the rule tests. A pattern from a user's file is compiled at
/// load, so that an error in it points at the file.
#[derive(Clone)]
pub struct Pattern {
    source: Arc<str>,
    /// The named capture groups and their indexes.
    names: Arc<[(Box<str>, usize)]>,
    compiled: Arc<OnceLock<Option<regex::bytes::Regex>>>,
}

impl Pattern {
    /// Compiles `source` now.
    pub(crate) fn compile(source: &str) -> Result<Pattern, regex::Error> {
        Ok(Pattern::from_regex(build(source)?))
    }

    /// Checks the syntax of `source` now and leaves compiling it to the first use: for
    /// patterns known to compile (the built-in rules', which the tests compile).
    pub(crate) fn parse(source: &str) -> Result<Pattern, regex::Error> {
        let ast = regex_syntax::ast::parse::Parser::new()
            .parse(source)
            .map_err(|e| regex::Error::Syntax(e.to_string()))?;
        let mut names = Vec::new();
        visit_groups(&ast, &mut |group| {
            if let regex_syntax::ast::GroupKind::CaptureName { name, .. } = &group.kind {
                names.push((name.name.as_str().into(), name.index as usize));
            }
        });
        Ok(Pattern {
            source: source.into(),
            names: names.into(),
            compiled: Arc::default(),
        })
    }

    /// A pattern compiled elsewhere.
    pub fn from_regex(regex: regex::bytes::Regex) -> Pattern {
        let names = regex
            .capture_names()
            .enumerate()
            .filter_map(|(i, name)| Some((name?.into(), i)))
            .collect();
        Pattern {
            source: regex.as_str().into(),
            names,
            compiled: Arc::new(OnceLock::from(Some(regex))),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled regular expression, compiled by this call if no earlier one did. `None`
    /// for a pattern that was only parsed and does not compile (beyond the size limit).
    pub fn regex(&self) -> Option<&regex::bytes::Regex> {
        self.compiled
            .get_or_init(|| build(&self.source).ok())
            .as_ref()
    }

    /// Whether the pattern matches anywhere in `text` (never, if it does not compile).
    pub fn is_match(&self, text: &[u8]) -> bool {
        self.regex().is_some_and(|r| r.is_match(text))
    }

    /// Whether the pattern has been compiled.
    pub fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }

    /// The index of the capture group called `name`, if the pattern has one.
    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .find_map(|(n, i)| (**n == *name).then_some(*i))
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

fn build(source: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(source)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
}

/// Calls `visit` on every group of `ast`, outermost first.
fn visit_groups(ast: &regex_syntax::ast::Ast, visit: &mut impl FnMut(&regex_syntax::ast::Group)) {
    use regex_syntax::ast::Ast;
    match ast {
        Ast::Group(group) => {
            visit(group);
            visit_groups(&group.ast, visit);
        }
        Ast::Repetition(repetition) => visit_groups(&repetition.ast, visit),
        Ast::Alternation(alternation) => {
            for ast in &alternation.asts {
                visit_groups(ast, visit);
            }
        }
        Ast::Concat(concat) => {
            for ast in &concat.asts {
                visit_groups(ast, visit);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parsed_pattern_compiles_on_first_use_and_clones_share_it() {
        let pattern = Pattern::parse(r"demo_(?P<secret>[a-z]{4})(?:x(?P<veto>y))?").unwrap();
        let clone = pattern.clone();
        assert!(!pattern.is_compiled());
        for p in [&pattern, &Pattern::compile(pattern.as_str()).unwrap()] {
            assert_eq!(p.group_index("secret"), Some(1));
            assert_eq!(p.group_index("veto"), Some(2));
            assert_eq!(p.group_index("other"), None);
        }
        assert!(clone.is_match(b"a demo_abcd"));
        assert!(pattern.is_compiled());
    }

    #[test]
    fn a_syntax_error_is_found_without_compiling() {
        assert!(Pattern::parse("demo_[a-z").is_err());
    }

    #[test]
    fn a_pattern_beyond_the_size_limit_fails_to_compile() {
        let huge = r"\w{1000}\w{1000}\w{1000}";
        assert!(Pattern::compile(huge).is_err());
        let parsed = Pattern::parse(huge).unwrap();
        assert!(parsed.regex().is_none());
        assert!(!parsed.is_match(b"abc"));
    }
}
