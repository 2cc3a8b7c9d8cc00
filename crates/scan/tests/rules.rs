//! Every built-in rule's examples must produce a finding of that rule, and its negative
//! examples none.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail loudly"
)]

use keyscope_rules::{Rule, RuleSet};
use keyscope_scan::{Engine, scan_blob};

fn check(rules: &RuleSet) -> Vec<String> {
    let engine = Engine::new(rules.clone()).expect("engine");
    let mut failures = Vec::new();
    for rule in rules.rules() {
        for (i, example) in rule.examples().iter().enumerate() {
            let findings = scan_blob(&engine, "example", example.as_bytes());
            if !findings.iter().any(|f| f.rule_id == rule.id()) {
                failures.push(format!("{}: example {} is not found", rule.id(), i + 1));
            }
        }
        for (i, example) in rule.negative_examples().iter().enumerate() {
            let findings = scan_blob(&engine, "example", example.as_bytes());
            if findings.iter().any(|f| f.rule_id == rule.id()) {
                failures.push(format!(
                    "{}: negative example {} is found",
                    rule.id(),
                    i + 1
                ));
            }
        }
    }
    failures
}

#[test]
fn rule_examples() {
    let failures = check(&RuleSet::builtin().expect("built-in rules"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rule_has_examples_on_both_sides() {
    let rules = RuleSet::builtin().expect("built-in rules");
    let bare: Vec<&str> = rules
        .rules()
        .iter()
        .filter(|r: &&Rule| r.examples().is_empty() || r.negative_examples().is_empty())
        .map(Rule::id)
        .collect();
    assert!(bare.is_empty(), "rules without examples: {bare:?}");
}

#[test]
fn a_rule_whose_example_fails_is_reported() {
    let broken = r#"
[[rules]]
id = "demo-key"
provider = "demo"
name = "Demo"
description = "Demo."
severity = "low"
pattern = 'demo_[A-Za-z0-9]{24}'
keywords = ["demo_"]
examples = ["demo_tooShort"]
negative_examples = ["key = demo_q8Zr3LwX0pVt7KcN2bYh5MfJ"]
"#;
    let failures = check(&RuleSet::from_toml("demo.toml", broken).unwrap());
    assert_eq!(failures.len(), 2, "{failures:?}");
}
