//! `keyscope rules list|check`.

use crate::{keyscope, root};

#[test]
fn list_shows_every_built_in_rule() {
    let run = keyscope(&root(), &["rules", "list"]);
    assert_eq!(run.code, 0);
    for id in [
        "openai-project-key",
        "anthropic-api-key",
        "google-api-key",
        "azure-openai-api-key",
    ] {
        assert!(run.stdout.contains(id), "{id} missing");
    }
    let run = keyscope(&root(), &["rules", "list", "--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    assert!(list.len() >= 25);
}

pub(crate) const CUSTOM: &str = r#"
[[rules]]
id = "acme-gateway-token"
provider = "acme"
name = "ACME gateway token"
description = "A token for the internal LLM gateway."
severity = "high"
pattern = 'acme_gw_[A-Za-z0-9]{32}'
keywords = ["acme_gw_"]
prefix = "acme_gw_"
examples = ['TOKEN = "acme_gw_q8Zr3LwX0pVt7KcN2bYh5MfJ1sDg4TuA"']
negative_examples = ['TOKEN = "acme_gw_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"']
"#;

#[test]
fn check_accepts_a_good_rule_file_and_scan_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acme.toml"), CUSTOM).unwrap();
    let run = keyscope(dir.path(), &["rules", "check", "acme.toml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("1 rule OK"));
    std::fs::write(
        dir.path().join("app.py"),
        "T = \"acme_gw_q8Zr3LwX0pVt7KcN2bYh5MfJ1sDg4TuA\"\n",
    )
    .unwrap();
    let run = keyscope(
        dir.path(),
        &["scan", "--rules", "acme.toml", "--format", "json", "app.py"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.contains("acme-gateway-token"));
    assert!(!run.stdout.contains("q8Zr3LwX0pVt7KcN2bYh5MfJ"));
}

#[test]
fn check_reports_failing_examples_without_printing_them() {
    let dir = tempfile::tempdir().unwrap();
    let broken = CUSTOM.replace("{32}", "{40}");
    std::fs::write(dir.path().join("acme.toml"), broken).unwrap();
    let run = keyscope(dir.path(), &["rules", "check", "acme.toml"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("example 1 is not found"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("q8Zr3LwX0pVt7KcN2bYh5MfJ"));
}

#[test]
fn check_points_at_the_error_in_a_malformed_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        CUSTOM.replace("severity = \"high\"", "severity = \"dire\""),
    )
    .unwrap();
    let run = keyscope(dir.path(), &["rules", "check", "bad.toml"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("bad.toml"), "{}", run.stderr);
    assert!(run.stderr.contains("dire"), "{}", run.stderr);
    let run = keyscope(dir.path(), &["rules", "check", "absent.toml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read rule file `absent.toml`"),
        "{}",
        run.stderr
    );
}
