//! Issue 18's command-line side: shell completions, the man page, and what ignore files keep out
//! of a scan said out loud.

use crate::{keyscope, root};

#[test]
fn completions_for_each_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = keyscope(&root(), &["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(run.stdout.contains("keyscope"), "{shell}");
        for sub in ["scan", "decide", "completions"] {
            assert!(run.stdout.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let bash = keyscope(&root(), &["completions", "bash"]).stdout;
    assert!(bash.contains("complete -F _keyscope"), "{bash}");
    assert!(bash.contains("--no-ignore"), "scan's flags are completed");
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let run = keyscope(&root(), &["completions", "tcsh"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("tcsh"), "{}", run.stderr);
}

#[test]
fn the_man_page_is_roff_with_name_synopsis_and_the_subcommands() {
    let run = keyscope(&root(), &["man"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let page = run.stdout;
    assert!(
        page.starts_with(".ie") || page.contains(".TH keyscope 1"),
        "{page}"
    );
    assert!(page.contains(".TH keyscope 1"), "{page}");
    assert!(page.contains(".SH NAME\nkeyscope \\- "), "{page}");
    assert!(page.contains(".SH SYNOPSIS"), "{page}");
    assert!(page.contains("keyscope\\-scan"), "{page}");
    assert!(page.contains(env!("CARGO_PKG_VERSION")), "{page}");
}

/// Issue 18: a `.env` that `.gitignore` excludes was skipped without a word.
#[test]
fn issue_18_what_gitignore_keeps_out_is_counted_and_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".gitignore"), ".env\nbuild/\n").unwrap();
    std::fs::write(dir.path().join(".env"), crate::action::leaky_config()).unwrap();
    std::fs::create_dir(dir.path().join("build")).unwrap();
    std::fs::write(dir.path().join("build/a.txt"), "a").unwrap();
    std::fs::write(dir.path().join("build/b.txt"), "b").unwrap();
    std::fs::write(dir.path().join("app.py"), "x = 1\n").unwrap();

    let human = keyscope(dir.path(), &["scan", "--isolated"]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human.stdout.contains(
            "not scanned: 2 paths that .gitignore or .ignore files exclude (scan them with --no-ignore)"
        ),
        "{}",
        human.stdout
    );

    let json = keyscope(dir.path(), &["scan", "--isolated", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["summary"]["ignored"], 2, "{report}");
    assert_eq!(report["summary"]["complete"], true);
    let ignored: Vec<&str> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "ignored")
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(ignored, ["./.env", "./build"], "{report}");

    let all = keyscope(dir.path(), &["scan", "--isolated", "--no-ignore"]);
    assert_eq!(all.code, 1, "{}", all.stdout);
    assert!(!all.stdout.contains("not scanned:"), "{}", all.stdout);
}

/// `1.89` or `1.89.0` as comparable numbers.
fn version_key(version: &str) -> Vec<u32> {
    version.split('.').map(|p| p.parse().unwrap()).collect()
}

/// Issue 18: the README claimed 1.85 while the locked dependencies declare 1.89. `rust-version`
/// is the newest `rust-version` among the locked dependencies (for this host's platform, which
/// is what `cargo metadata` can read offline), and the README says the same.
#[test]
fn issue_18_rust_version_is_what_the_locked_dependencies_need_and_the_readme_says_it() {
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .unwrap();
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .unwrap();
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .args(["--filter-platform", &host])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let needed = packages
        .iter()
        .filter(|p| !p["source"].is_null())
        .filter_map(|p| p["rust_version"].as_str())
        .max_by_key(|v| version_key(v))
        .unwrap();
    let declared = packages
        .iter()
        .find(|p| p["name"] == "keyscope")
        .and_then(|p| p["rust_version"].as_str())
        .expect("the keyscope package declares rust-version");
    assert_eq!(version_key(declared)[..2], version_key(needed)[..2]);
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("Rust toolchain ({declared} or newer")),
        "the README names another minimum"
    );
    assert!(readme.contains("cargo install --locked --path ."));
}

#[test]
fn issue_18_the_license_file_is_the_apache_license_cargo_toml_names() {
    let license = std::fs::read_to_string(root().join("LICENSE")).unwrap();
    assert!(license.contains("Apache License\n                        Version 2.0, January 2004"));
    assert!(license.contains("END OF TERMS AND CONDITIONS"));
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""));
}
