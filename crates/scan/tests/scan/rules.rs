//! Every built-in rule's examples must produce a finding of that rule, and its negative
//! examples none.

use keyscope_rules::{Rule, RuleSet};
use keyscope_scan::{Detector, check_examples};

#[test]
fn rule_examples() {
    // check_examples switches on the rules that are off by default, so they are checked too.
    let rules = RuleSet::builtin().expect("built-in rules");
    let failures: Vec<String> = check_examples(&rules)
        .unwrap()
        .iter()
        .map(|f| f.to_string())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rule_has_examples_on_both_sides() {
    let rules = RuleSet::builtin().expect("built-in rules");
    let bare: Vec<&str> = rules
        .rules()
        .iter()
        .filter(|r: &&Rule| r.kind() != keyscope_rules::RuleKind::Correlation)
        .filter(|r: &&Rule| r.examples().is_empty() || r.negative_examples().is_empty())
        .map(Rule::id)
        .collect();
    assert!(bare.is_empty(), "rules without examples: {bare:?}");
}

#[test]
fn a_rule_whose_examples_fail_is_reported() {
    let broken = r#"
[[rules]]
id = "demo-key"
provider = "demo"
name = "Demo"
description = "Demo."
severity = "low"
pattern = 'demo_[A-Za-z0-9]{24}'
keywords = ["demo_"]
enabled = false
examples = ["demo_tooShort"]
negative_examples = ["key = demo_q8Zr3LwX0pVt7KcN2bYh5MfJ"]
"#;
    let failures = check_examples(&RuleSet::from_toml("demo.toml", broken).unwrap()).unwrap();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0].missed && !failures[1].missed);
}

#[test]
fn built_in_keywords_keep_the_prefilter_on_its_fast_path() {
    let engine = Detector::new(RuleSet::builtin().unwrap()).unwrap();
    let mut all = RuleSet::builtin().unwrap();
    all.get_mut("flat-key/direct-provider-call")
        .unwrap()
        .set_enabled(true);
    let gateway = Detector::new(all).unwrap();
    eprintln!(
        "prefilter literals: {} in {} passes by default, {} in {} passes with a gateway configured",
        engine.prefilter_literals(),
        engine.prefilter_passes(),
        gateway.prefilter_literals(),
        gateway.prefilter_passes(),
    );
    // Every pass is a SIMD one (this test runs on x86-64 with SSSE3 or AVX2). Each pass reads
    // every byte once more: 86 literals take six (the nine short ones apart), and the literal
    // count is held near that.
    for detector in [&engine, &gateway] {
        let fewest = detector
            .prefilter_literals()
            .div_ceil(Detector::FAST_PREFILTER_LIMIT);
        assert!(
            (fewest.max(1)..=fewest + 1).contains(&detector.prefilter_passes()),
            "the prefilter lost its SIMD searcher: {} passes",
            detector.prefilter_passes()
        );
    }
    assert!(
        engine.prefilter_literals() <= 96,
        "{} prefilter literals take {} passes; share or drop keywords",
        engine.prefilter_literals(),
        engine.prefilter_passes()
    );
}

/// Every finding points at something: a report underlines a non-empty span of the line, for
/// usage findings (code, shown as it is) as for secrets (shown redacted).
#[test]
fn every_example_finding_highlights_a_non_empty_span() {
    let engine = Detector::new(RuleSet::builtin().unwrap()).unwrap();
    for rule in engine.rules().rules() {
        for example in rule.examples() {
            for finding in keyscope_scan::scan_blob(&engine, "example", example.as_bytes()) {
                let highlight = &finding.snippet.highlight;
                assert!(
                    !highlight.is_empty() && finding.location.end_column > finding.location.column,
                    "{}: empty highlight in {:?}",
                    finding.rule_id,
                    finding.snippet.text
                );
            }
        }
    }
}
