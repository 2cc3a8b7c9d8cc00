//! Configuration, inline allows and baselines (issue 4).

use std::path::Path;

use crate::keyscope;

/// A synthetic Groq key from a fixed seed.
pub(crate) fn groq_key(seed: u64) -> String {
    let alphabet: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        .chars()
        .collect();
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let body: String = (0..52)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            alphabet[(state % 62) as usize]
        })
        .collect();
    format!("gsk_{body}")
}

pub(crate) fn write(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn findings(stdout: &str) -> Vec<(String, String, u64)> {
    let report: serde_json::Value = serde_json::from_str(stdout).unwrap();
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule_id"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_inline_allow_marker_silences_its_line_only() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "a = \"{}\"  # keyscope:allow\nb = \"{}\"  // gitleaks:allow\nc = \"{}\"  # pragma: allowlist secret\nd = \"{}\"\n",
        groq_key(1),
        groq_key(2),
        groq_key(3),
        groq_key(4)
    );
    write(dir.path(), "app.py", &text);
    let run = keyscope(dir.path(), &["scan", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        findings(&run.stdout),
        vec![("groq-api-key".into(), "app.py".into(), 4)]
    );
}

#[test]
fn config_is_found_upwards_and_applies_excludes_and_rule_switches() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".keyscope.toml",
        "exclude = [\"vendor/**\"]\ndisable_rules = [\"google-api-key\"]\n",
    );
    write(
        dir.path(),
        "src/app.py",
        &format!("k = \"{}\"\n", groq_key(5)),
    );
    write(
        dir.path(),
        "vendor/lib.py",
        &format!("k = \"{}\"\n", groq_key(6)),
    );
    write(
        dir.path(),
        "src/maps.js",
        "const key = \"AIzaSyQ3vB7nT0kLm9PzR2sWd5YhC8jFg1uEaZo\";\n",
    );
    let run = keyscope(&dir.path().join("src"), &["scan", "--format", "json", ".."]);
    assert_eq!(
        findings(&run.stdout),
        vec![("groq-api-key".into(), "../src/app.py".into(), 1)]
    );
    // --isolated ignores the file: everything is found again.
    let run = keyscope(dir.path(), &["scan", "--format", "json", "--isolated"]);
    assert_eq!(findings(&run.stdout).len(), 3, "{}", run.stdout);
}

/// The config's `exclude` globs are written from its own directory, like a `.gitignore`: they
/// hold whether the scan starts at the top, in a subdirectory, or names one.
#[test]
fn config_excludes_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ".keyscope.toml", "exclude = [\"src/gen/**\"]\n");
    write(
        dir.path(),
        "src/gen/client.py",
        &format!("k = \"{}\"\n", groq_key(8)),
    );
    write(
        dir.path(),
        "src/app.py",
        &format!("k = \"{}\"\n", groq_key(9)),
    );
    let paths = |run: &crate::Run| -> Vec<String> {
        findings(&run.stdout)
            .into_iter()
            .map(|(_, path, _)| path)
            .collect()
    };
    let run = keyscope(dir.path(), &["scan", "--format", "json"]);
    assert_eq!(paths(&run), vec!["src/app.py".to_owned()], "{}", run.stderr);
    let run = keyscope(dir.path(), &["scan", "--format", "json", "src"]);
    assert_eq!(paths(&run), vec!["src/app.py".to_owned()], "{}", run.stderr);
    let run = keyscope(&dir.path().join("src"), &["scan", "--format", "json"]);
    assert_eq!(paths(&run), vec!["app.py".to_owned()], "{}", run.stderr);
    // `--exclude` stays relative to the scanned directory.
    let run = keyscope(
        &dir.path().join("src"),
        &["scan", "--format", "json", "--exclude", "app.py"],
    );
    assert_eq!(paths(&run), Vec::<String>::new(), "{}", run.stdout);
}

#[test]
fn config_show_names_the_origin_of_each_value() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ".keyscope.toml", "max_file_size = \"1M\"\n");
    let run = keyscope(dir.path(), &["config", "show"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = |key: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .to_owned()
    };
    assert!(line("max_file_size").contains("1048576"));
    assert!(line("max_file_size").contains(".keyscope.toml"));
    assert!(line("exclude").ends_with("# default"));
    let run = keyscope(dir.path(), &["config", "show", "--isolated"]);
    assert!(run.stdout.contains("no config file"));
}

#[test]
fn a_config_error_points_at_the_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".keyscope.toml",
        "exclude = []\nmax_fil_size = 3\n",
    );
    let run = keyscope(dir.path(), &["scan"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("max_fil_size"), "{}", run.stderr);
    assert!(run.stderr.contains(".keyscope.toml:2"), "{}", run.stderr);
    write(
        dir.path(),
        ".keyscope.toml",
        "disable_rules = [\"no-such-rule\"]\n",
    );
    let run = keyscope(dir.path(), &["scan"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown rule id `no-such-rule`"),
        "{}",
        run.stderr
    );
}

/// A key pasted into a config file (by mistake, or as the value of a misspelt setting) never
/// appears whole in the error: not in the snippet, not in the parser's message.
#[test]
fn a_config_error_never_shows_a_pasted_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = groq_key(7);
    for text in [
        // A syntax error on the key's own line: the snippet shows that line.
        format!("exclude = [\"{key}\"\nmax_file_size = 3\n"),
        // A value of the wrong type: the parser's message quotes it.
        format!("max_file_size = \"{key}\"\n"),
        // An unknown setting next to the key.
        format!("groq_api_key = \"{key}\"\n"),
    ] {
        write(dir.path(), ".keyscope.toml", &text);
        let run = keyscope(dir.path(), &["scan"]);
        assert_eq!(run.code, 2, "{text}");
        assert!(!run.stderr.contains(&key), "{}", run.stderr);
        assert!(!run.stdout.contains(&key), "{}", run.stdout);
        assert!(run.stderr.contains(".keyscope.toml"), "{}", run.stderr);
    }
    // The same for a custom rule in the config whose definition is broken.
    write(
        dir.path(),
        ".keyscope.toml",
        &format!(
            "[[rules]]\nid = \"mine\"\nprovider = \"acme\"\nname = \"Mine\"\n\
             description = \"d\"\nseverity = \"high\"\npattern = '('\n\
             keywords = [\"{key}\"]\n"
        ),
    );
    let run = keyscope(dir.path(), &["scan"]);
    assert_eq!(run.code, 2);
    assert!(!run.stderr.contains(&key), "{}", run.stderr);
    // And a key typed as a command-line value that clap refuses.
    let run = keyscope(dir.path(), &["scan", "--format", &key]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("invalid value"), "{}", run.stderr);
    assert!(!run.stderr.contains(&key), "{}", run.stderr);
}

#[test]
fn custom_rules_in_the_config_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".keyscope.toml",
        r#"
[[rules]]
id = "acme-token"
provider = "acme"
name = "ACME token"
description = "Internal gateway token."
severity = "high"
pattern = 'acme_[A-Za-z0-9]{24}'
keywords = ["acme_"]
"#,
    );
    write(dir.path(), "a.sh", "TOKEN=acme_Q3vB7nT0kLm9PzR2sWd5YhC8\n");
    let run = keyscope(dir.path(), &["scan", "--format", "json"]);
    assert_eq!(
        findings(&run.stdout),
        vec![("acme-token".into(), "a.sh".into(), 1)]
    );
}

#[test]
fn a_baseline_hides_accepted_findings_but_not_a_changed_secret() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "app.py",
        &format!("import os\nk = \"{}\"\n", groq_key(7)),
    );
    let run = keyscope(dir.path(), &["baseline", "create", "--isolated"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(dir.path().join(".keyscope-baseline.json")).unwrap();
    assert!(!text.contains(&groq_key(7)), "the baseline holds no secret");
    assert!(
        !text.contains("\"line\""),
        "the baseline holds no line numbers"
    );
    let scan = [
        "scan",
        "--isolated",
        "--format",
        "json",
        "--baseline",
        ".keyscope-baseline.json",
    ];
    let run = keyscope(dir.path(), &scan);
    assert_eq!(run.code, 0, "{}", run.stdout);

    // The same secret moved to another line and file: still accepted.
    std::fs::remove_file(dir.path().join("app.py")).unwrap();
    write(
        dir.path(),
        "lib/client.py",
        &format!("\n\n\nk = \"{}\"\n", groq_key(7)),
    );
    assert_eq!(keyscope(dir.path(), &scan).code, 0);

    // A different secret on the baselined line is new.
    write(
        dir.path(),
        "lib/client.py",
        &format!("\n\n\nk = \"{}\"\n", groq_key(8)),
    );
    let run = keyscope(dir.path(), &scan);
    assert_eq!(run.code, 1);
    assert_eq!(
        findings(&run.stdout),
        vec![("groq-api-key".into(), "lib/client.py".into(), 4)]
    );
    // ...and the baseline entry it replaced is reported as stale.
    assert!(
        run.stderr
            .contains("baseline entry no longer found: groq-api-key"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_shared_key_is_a_flat_key_across_environments_and_services() {
    let dir = tempfile::tempdir().unwrap();
    let key = groq_key(9);
    write(
        dir.path(),
        "deploy/prod/.env",
        &format!("GROQ_API_KEY={key}\n"),
    );
    write(
        dir.path(),
        "deploy/dev/.env",
        &format!("GROQ_API_KEY={key}\n"),
    );
    write(
        dir.path(),
        "services/billing/.env.production",
        &format!("GROQ_API_KEY={key}\n"),
    );
    write(
        dir.path(),
        "services/search/.env.production",
        &format!("GROQ_API_KEY={}\n", groq_key(10)),
    );
    let run = keyscope(dir.path(), &["scan", "--isolated", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let flat: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "correlation")
        .collect();
    let ids: Vec<&str> = flat
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["flat-key/shared-across-environments"],
        "{flat:#?}"
    );
    // All three places of the shared key, and none of the other key's.
    let mut places: Vec<&str> = flat[0]["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap())
        .collect();
    places.push(flat[0]["path"].as_str().unwrap());
    places.sort_unstable();
    assert_eq!(
        places,
        vec![
            "deploy/dev/.env",
            "deploy/prod/.env",
            "services/billing/.env.production"
        ]
    );
    assert!(!run.stdout.contains(&key));

    // Two services sharing one key, same environment: shared across services.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "services/billing/.env",
        &format!("GROQ_API_KEY={key}\n"),
    );
    write(
        dir.path(),
        "services/search/.env",
        &format!("GROQ_API_KEY={key}\n"),
    );
    let run = keyscope(dir.path(), &["scan", "--isolated", "--format", "json"]);
    assert!(
        run.stdout.contains("flat-key/shared-across-services"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("flat-key/shared-across-environments"));
}

#[test]
fn different_keys_per_environment_are_not_flat() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "deploy/prod/.env",
        &format!("GROQ_API_KEY={}\n", groq_key(11)),
    );
    write(
        dir.path(),
        "deploy/staging/.env",
        &format!("GROQ_API_KEY={}\n", groq_key(12)),
    );
    write(
        dir.path(),
        "deploy/dev/.env",
        "GROQ_API_KEY=gsk_your_key_here\n",
    );
    write(
        dir.path(),
        "deploy/test/.env",
        "GROQ_API_KEY=gsk_your_key_here\n",
    );
    let run = keyscope(dir.path(), &["scan", "--isolated", "--format", "json"]);
    assert!(!run.stdout.contains("flat-key/"), "{}", run.stdout);
}

#[test]
fn a_key_in_several_repositories_is_shared_across_repos() {
    let dir = tempfile::tempdir().unwrap();
    let key = groq_key(13);
    for repo in ["billing", "search"] {
        std::fs::create_dir_all(dir.path().join(repo).join(".git")).unwrap();
        write(
            dir.path(),
            &format!("{repo}/config.py"),
            &format!("GROQ_API_KEY = \"{key}\"\n"),
        );
    }
    let run = keyscope(dir.path(), &["scan", "--isolated", "--format", "json"]);
    assert!(
        run.stdout.contains("flat-key/shared-across-repos"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_key_in_public_assets_is_client_exposed() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "web/public/config.js",
        &format!("window.KEY = \"{}\";\n", groq_key(14)),
    );
    let run = keyscope(dir.path(), &["scan", "--isolated", "--format", "json"]);
    assert!(
        findings(&run.stdout).contains(&(
            "flat-key/client-exposed".into(),
            "web/public/config.js".into(),
            1
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn a_leaked_key_registered_in_the_policy_store_names_its_scope() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let key = groq_key(15);
    let sha: String = sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    write(
        dir.path(),
        "store/scopes.toml",
        &format!(
            r#"
[[scope]]
id = "acme"
kind = "org"

[[scope]]
id = "prod/care-notes"
kind = "application"
parent = "acme"
environment = "production"

[[key]]
id = "care-notes-1"
scope = "prod/care-notes"
fingerprint = "sha256:{sha}"
created = 2026-10-01T00:00:00Z
"#
        ),
    );
    write(
        dir.path(),
        "app/.env",
        &format!("GROQ_API_KEY={key}\nOTHER={}\n", groq_key(16)),
    );
    let run = keyscope(
        dir.path(),
        &[
            "scan",
            "--isolated",
            "--store",
            "store",
            "--format",
            "json",
            "app",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let found = report["findings"].as_array().unwrap();
    assert_eq!(found[0]["scope"], "prod/care-notes");
    // A production scope's key is one level worse than the rule's own severity.
    assert_eq!(found[0]["severity"], "critical");
    assert!(found[0]["help"].as_str().unwrap().contains("care-notes-1"));
    assert!(found[1]["scope"].is_null());
    assert_eq!(found[1]["severity"], "high");
    let run = keyscope(
        dir.path(),
        &["scan", "--isolated", "--store", "store", "app"],
    );
    assert!(
        run.stdout.contains("of scope `prod/care-notes`"),
        "{}",
        run.stdout
    );
    let run = keyscope(
        dir.path(),
        &["scan", "--isolated", "--store", "nowhere", "app"],
    );
    assert_eq!(run.code, 2);
}
