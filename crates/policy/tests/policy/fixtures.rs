use keyscope_policy::fixtures::CaseFile;

use crate::common::{default_engine, default_store_dir};

#[test]
fn every_default_fixture_passes() {
    let engine = default_engine();
    let mut files: Vec<_> = std::fs::read_dir(default_store_dir().join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let mut failures = Vec::new();
    let mut count = 0;
    for file in &files {
        let cases = CaseFile::load(file).unwrap();
        for outcome in cases.run(&engine) {
            count += 1;
            if let Some(failure) = outcome.failure {
                failures.push(format!("{}: {}: {failure}", file.display(), outcome.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_default_policy_has_an_allow_and_a_deny_fixture() {
    let engine = default_engine();
    let mut seen_deny = std::collections::BTreeSet::new();
    let mut seen_allow = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(default_store_dir().join("tests")).unwrap() {
        let cases = CaseFile::load(&entry.unwrap().path()).unwrap();
        for case in cases.cases {
            let target = if case.expect.decision {
                &mut seen_allow
            } else {
                &mut seen_deny
            };
            target.extend(case.expect.reasons);
        }
    }
    for policy in engine.store().policies() {
        match policy.effect {
            keyscope_policy::Effect::Forbid => assert!(
                seen_deny.contains(&policy.id),
                "no deny fixture for `{}`",
                policy.id
            ),
            keyscope_policy::Effect::Permit => assert!(
                seen_allow.contains(&policy.id),
                "no allow fixture for `{}`",
                policy.id
            ),
        }
    }
}

#[test]
fn a_wrong_expectation_fails() {
    let engine = default_engine();
    let text = r#"{"cases": [{"name": "wrong on purpose",
        "request": {"subject": {"type": "Key", "id": "dev-general-1"}, "action": {"name": "invoke"},
                    "resource": {"type": "Model", "id": "gpt-4o-mini"}, "context": {"time": "2026-11-22T18:00:00Z"}},
        "expect": {"decision": false, "reasons": ["revoked-key"]}}]}"#;
    let outcome = &CaseFile::parse("wrong.json", text).unwrap().run(&engine)[0];
    let failure = outcome.failure.as_deref().unwrap();
    assert!(failure.contains("expected deny, got allow"), "{failure}");
    assert!(failure.contains("[allowlisted-model]"), "{failure}");
}
