//! The fixture trees: every planted key found at its line, nothing found among look-alikes,
//! and no output format ever showing a key.

use std::collections::BTreeSet;

use keyscope_rules::{RuleKind, RuleSet};
use keyscope_scan::Detector;

use crate::{fixture, keyscope, keyscope_with_input, root};

type Expected = BTreeSet<(String, usize, String)>;

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixture("leaks/expected.json")).unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    list.iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_owned(),
                e["line"].as_u64().unwrap() as usize,
                e["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn found(json: &str) -> Expected {
    let report: serde_json::Value = serde_json::from_str(json).unwrap();
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap() as usize,
                f["rule_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

// The fixture trees are scanned as projects of their own (`--isolated`): the repository's
// `.keyscope.toml`, found upwards, excludes them, as it should for a scan of the repository.

#[test]
fn every_planted_key_is_found_at_its_line_and_nothing_else() {
    let run = keyscope(
        &fixture("leaks"),
        &["scan", "--format", "json", "--no-ignore", "--isolated"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let found = found(&run.stdout);
    let expected = expected();
    let missing: Vec<_> = expected.difference(&found).collect();
    let extra: Vec<_> = found.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:#?}\nunexpected: {extra:#?}"
    );
}

#[test]
fn every_built_in_rule_has_a_planted_key() {
    let rules = RuleSet::builtin().unwrap();
    let covered: BTreeSet<String> = expected().into_iter().map(|(_, _, rule)| rule).collect();
    let uncovered: Vec<&str> = rules
        .rules()
        .iter()
        // Rules off by default have no place in a default scan; correlation rules (keys shared
        // across environments, services, repositories) are planted by config_and_baseline.rs.
        .filter(|r| r.enabled() && r.kind() != RuleKind::Correlation)
        .map(|r| r.id())
        .filter(|id| !covered.contains(*id))
        .collect();
    assert!(
        uncovered.is_empty(),
        "rules without a fixture: {uncovered:?}"
    );
}

#[test]
fn look_alikes_and_placeholders_are_quiet() {
    let run = keyscope(
        &fixture("clean"),
        &["scan", "--format", "json", "--no-ignore", "--isolated"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(found(&run.stdout).is_empty());
}

/// Every secret the engine sees in the leaks tree, with the length of its public prefix.
fn planted_secrets() -> Vec<(String, usize)> {
    let rules = RuleSet::builtin().unwrap();
    let engine = Detector::new(rules.clone()).unwrap();
    let mut secrets = Vec::new();
    for entry in walk(&fixture("leaks")) {
        let data = std::fs::read(&entry).unwrap();
        for m in engine.scan(&data) {
            // A usage match is code, shown on purpose; only secrets must never appear.
            if rules.rules()[m.rule].kind() == RuleKind::Usage {
                continue;
            }
            let prefix = rules.rules()[m.rule].prefix().map_or(0, str::len);
            secrets.push((String::from_utf8_lossy(&m.secret).into_owned(), prefix));
            if m.base64 {
                let run = String::from_utf8_lossy(&data[m.span.clone()]).into_owned();
                secrets.push((run, 0));
            }
        }
    }
    assert!(
        secrets.len() >= 30,
        "only {} secrets planted",
        secrets.len()
    );
    secrets
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn assert_nothing_leaks(output: &str, secrets: &[(String, usize)], what: &str) {
    for (secret, prefix) in secrets {
        let body: Vec<char> = secret.chars().skip(*prefix).collect();
        // No 12-character piece of any secret beyond its public prefix may appear.
        for window in body.windows(12) {
            let piece: String = window.iter().collect();
            assert!(
                !output.contains(&piece),
                "{what} shows part of a secret: `{}…`",
                &piece[..4]
            );
        }
    }
}

#[test]
fn no_output_format_shows_a_secret() {
    let secrets = planted_secrets();
    let dir = tempfile::tempdir().unwrap();
    for format in ["human", "json", "sarif"] {
        let run = keyscope(
            &fixture("leaks"),
            &["scan", "--format", format, "--no-ignore", "--isolated"],
        );
        assert_eq!(run.code, 1);
        assert_nothing_leaks(&run.stdout, &secrets, format);
        assert_nothing_leaks(&run.stderr, &secrets, format);
        let out = dir.path().join(format!("report.{format}"));
        let run = keyscope(
            &fixture("leaks"),
            &[
                "scan",
                "--format",
                format,
                "--no-ignore",
                "--isolated",
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(run.code, 1);
        assert_nothing_leaks(&std::fs::read_to_string(&out).unwrap(), &secrets, format);
    }
}

/// A synthetic Google API key body of 35 characters.
fn google_key() -> String {
    let alphabet: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        .chars()
        .collect();
    let body: String = (0..35u64)
        .map(|i| alphabet[((i * 7919 + 13) * 31 % 64) as usize])
        .collect();
    format!("AIza{body}")
}

#[test]
fn a_key_in_a_300_kb_minified_line_is_found_at_its_column() {
    let dir = tempfile::tempdir().unwrap();
    let filler = "function(a,b){return a.map(function(c){return c+b})};var x=\"task-disk-sk-\";";
    let mut line = filler.repeat(210_000 / filler.len());
    let column = line.chars().count() + 1;
    line.push_str(&format!("var k=\"{}\";", google_key()));
    line.push_str(&filler.repeat(110_000 / filler.len()));
    assert!(line.len() > 300_000);
    std::fs::write(dir.path().join("bundle.min.js"), &line).unwrap();
    let run = keyscope(dir.path(), &["scan", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    // A minified bundle is shipped to browsers, so the flat-key analysis also reports the key
    // as client-exposed at the same place; this test is about the secret finding.
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == "google-api-key")
        .unwrap();
    assert_eq!(finding["line"], 1);
    assert_eq!(finding["column"].as_u64().unwrap() as usize, column + 7);
    // The snippet is cut to a readable width around the key.
    assert!(finding["snippet"].as_str().unwrap().chars().count() < 200);
    assert_nothing_leaks(&run.stdout, &[(google_key(), 4)], "json");
}

#[test]
fn standard_input_is_scanned_as_dash() {
    let input = format!("key: {}\n", google_key());
    let run = keyscope_with_input(
        &root(),
        &["scan", "-", "--format", "json"],
        Some(input.as_bytes()),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["findings"][0]["path"], "-");
    assert_eq!(report["findings"][0]["line"], 1);
}

#[test]
fn human_output_points_at_the_line_and_ends_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.py"),
        format!("import os\n\nGOOGLE_API_KEY = \"{}\"\n", google_key()),
    )
    .unwrap();
    let run = keyscope(dir.path(), &["scan"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("app.py:3:19"), "{}", run.stdout);
    assert!(run.stdout.contains("google-api-key"), "{}", run.stdout);
    assert!(run.stdout.contains("AIza…"), "{}", run.stdout);
    assert!(run.stdout.contains("scanned 1 file"), "{}", run.stdout);
    assert!(run.stdout.contains("1 finding"), "{}", run.stdout);
}
