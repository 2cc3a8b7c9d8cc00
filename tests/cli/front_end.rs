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

/// One run of `scripts/action-install.sh`, as the Action's steps run it.
struct Install {
    code: i32,
    log: String,
    outputs: String,
    path_file: String,
    _temp: tempfile::TempDir,
}

impl Install {
    fn output(&self, name: &str) -> Option<&str> {
        self.outputs
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
    }
}

/// A directory holding a fake `keyscope` that says it is `version`.
fn fake_keyscope(version: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("keyscope");
    std::fs::write(&exe, format!("#!/bin/sh\necho \"keyscope {version}\"\n")).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn install(args: &[&str], path_dir: Option<&std::path::Path>, env: &[(&str, &str)]) -> Install {
    let temp = tempfile::tempdir().unwrap();
    let outputs = temp.path().join("outputs");
    let path_file = temp.path().join("path");
    let mut dirs: Vec<std::path::PathBuf> = path_dir.into_iter().map(Into::into).collect();
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let mut command = std::process::Command::new("bash");
    command
        .arg(root().join("scripts/action-install.sh"))
        .args(args)
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env("GITHUB_ACTION_PATH", root())
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_PATH", &path_file)
        .env("RUNNER_TEMP", temp.path())
        .env("RUNNER_OS", "Linux")
        .env("RUNNER_ARCH", "X64")
        .env(
            "KEYSCOPE_RELEASE_URL",
            "file:///nonexistent/keyscope-releases",
        )
        .env_remove("INPUT_INSTALL")
        .env_remove("ACTION_REF");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    Install {
        code: output.status.code().unwrap(),
        log: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        outputs: std::fs::read_to_string(outputs).unwrap_or_default(),
        path_file: std::fs::read_to_string(path_file).unwrap_or_default(),
        _temp: temp,
    }
}

/// The release archive for `tag` as the release workflow packs it, with the keyscope under test,
/// in `dir/releases/TAG/`; returns the `file://` URL the installer downloads from.
fn release_of_this_build(dir: &std::path::Path, tag: &str) -> String {
    let assets = dir.join("releases").join(tag);
    let output = std::process::Command::new("bash")
        .arg(root().join("scripts/package-release.sh"))
        .args([
            "x86_64-unknown-linux-musl",
            tag,
            env!("CARGO_BIN_EXE_keyscope"),
        ])
        .arg(&assets)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    format!("file://{}", dir.join("releases").display())
}

#[test]
fn issue_18_a_release_archive_holds_the_binary_completions_man_page_and_license() {
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("v{}", env!("CARGO_PKG_VERSION"));
    release_of_this_build(dir.path(), &tag);
    let name = format!("keyscope-{tag}-x86_64-unknown-linux-musl");
    let assets = dir.path().join("releases").join(&tag);
    let archive = assets.join(format!("{name}.tar.gz"));
    let listing = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(&archive)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for file in [
        "keyscope",
        "completions/keyscope.bash",
        "completions/_keyscope",
        "completions/keyscope.fish",
        "completions/_keyscope.ps1",
        "completions/keyscope.elv",
        "man/keyscope.1",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
    ] {
        assert!(
            listing.lines().any(|l| l == format!("{name}/{file}")),
            "no {file} in {listing}"
        );
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(std::fs::read(&archive).unwrap());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let published = std::fs::read_to_string(assets.join(format!("{name}.tar.gz.sha256"))).unwrap();
    assert_eq!(published, format!("{hex}  {name}.tar.gz\n"));
}

#[test]
fn issue_18_install_uses_a_keyscope_on_path_of_the_actions_version_first() {
    let version = env!("CARGO_PKG_VERSION");
    let ours = fake_keyscope(version);
    let run = install(&["find"], Some(ours.path()), &[("ACTION_REF", "main")]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(run.output("installed"), Some("path"), "{}", run.log);
    assert_eq!(run.output("version"), Some(version));
    let key = run.output("cache-key").unwrap();
    assert!(
        key.starts_with(&format!("keyscope-{version}-Linux-X64-")),
        "{key}"
    );

    // Another version on PATH is not used; with no release for a branch ref, the cache and
    // the build come next.
    let old = fake_keyscope("0.0.1");
    let run = install(&["find"], Some(old.path()), &[("ACTION_REF", "main")]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(run.output("installed"), Some(""), "{}", run.log);
    assert!(run.log.contains("not a release tag"), "{}", run.log);
}

#[test]
fn issue_18_install_takes_the_release_archive_checked_against_its_sha256() {
    let version = env!("CARGO_PKG_VERSION");
    let tag = format!("v{version}");
    let dir = tempfile::tempdir().unwrap();
    let url = release_of_this_build(dir.path(), &tag);
    let env = [
        ("ACTION_REF", tag.as_str()),
        ("KEYSCOPE_RELEASE_URL", url.as_str()),
    ];
    let run = install(&["find"], None, &env);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(run.output("installed"), Some("release"), "{}", run.log);
    assert!(run.log.contains("verified"), "{}", run.log);
    assert!(
        run.path_file.trim().ends_with("keyscope-release/bin"),
        "{}",
        run.path_file
    );
    let installed =
        std::process::Command::new(std::path::Path::new(run.path_file.trim()).join("keyscope"))
            .arg("--version")
            .output()
            .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&installed.stdout).trim(),
        format!("keyscope {version}")
    );

    // A tampered archive is refused, not run and not skipped.
    let archive = dir.path().join(format!(
        "releases/{tag}/keyscope-{tag}-x86_64-unknown-linux-musl.tar.gz"
    ));
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&archive, bytes).unwrap();
    let run = install(&["find"], None, &env);
    assert_eq!(run.code, 2, "{}", run.log);
    assert!(
        run.log.contains("does not match its published SHA-256"),
        "{}",
        run.log
    );
    assert_eq!(run.output("installed"), None, "{}", run.outputs);
}

#[test]
fn issue_18_install_builds_only_when_the_cache_has_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let bin = cache.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(
        fake_keyscope("9.9.9").path().join("keyscope"),
        bin.join("keyscope"),
    )
    .unwrap();
    let run = install(&["build", cache.path().to_str().unwrap()], None, &[]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert!(run.log.contains("using the cached build"), "{}", run.log);
    assert!(!run.log.contains("Building keyscope"), "{}", run.log);
    assert_eq!(run.path_file.trim(), bin.to_str().unwrap());
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
    let metadata = |offline: bool| {
        std::process::Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1", "--locked"])
            .args(["--filter-platform", &host])
            .args(offline.then_some("--offline"))
            .current_dir(root())
            .output()
            .unwrap()
    };
    // Offline reads what the build fetched; a fresh machine may lack a package that only
    // another feature or target needs, and then cargo fetches it.
    let mut output = metadata(true);
    if !output.status.success() {
        output = metadata(false);
    }
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

/// Issue 18: the docs pinned `rev: main` and `@main`, which pre-commit warns about and which
/// have no release archive; the container Action's image moves with the version.
#[test]
fn issue_18_docs_and_the_container_action_pin_this_version() {
    let version = env!("CARGO_PKG_VERSION");
    let docs = std::fs::read_to_string(root().join("docs/ci.md")).unwrap();
    assert!(docs.contains(&format!("rev: v{version}\n")), "docs/ci.md");
    assert!(!docs.contains("rev: main"));
    for file in ["docs/ci.md", "examples/github-workflow.yml"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        assert!(
            text.contains(&format!("uses: keyscope/keyscope@v{version}")),
            "{file}"
        );
        assert!(!text.contains("keyscope/keyscope@main"), "{file}");
    }
    let container = std::fs::read_to_string(root().join("docker/action.yml")).unwrap();
    assert!(
        container.contains(&format!(
            "image: docker://ghcr.io/keyscope/keyscope-action:{version}\n"
        )),
        "docker/action.yml"
    );
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).unwrap();
    assert!(changelog.contains("## Versions"), "the bump policy");
}

#[test]
fn issue_18_the_license_file_is_the_apache_license_cargo_toml_names() {
    let license = std::fs::read_to_string(root().join("LICENSE")).unwrap();
    assert!(license.contains("Apache License\n                        Version 2.0, January 2004"));
    assert!(license.contains("END OF TERMS AND CONDITIONS"));
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""));
}
