//! The pre-commit hooks, run by the real `pre-commit` tool from PyPI in temp repositories.
//!
//! `.ci/hooks-deps.sh` provides `pre-commit` (from PATH, or installed into a venv under
//! `~/.cache/keyscope` on first use): these tests never skip for want of it.
//!
//! What runs: `pre-commit validate-manifest` on `.pre-commit-hooks.yaml`; `pre-commit try-repo`
//! with this repository's own manifest for the hooks that use an installed keyscope
//! (`keyscope-system`, `keyscope-system-pre-push`); and `repo: local` hooks mirroring the
//! manifest, installed as real git hooks so `git commit` and `git push` run them. The `keyscope`
//! and `keyscope-pre-push` hooks build keyscope from source (`cargo install`, several minutes on
//! a small machine), too slow for the test suite: they share their entry and script with the
//! system variants, and validate-manifest checks their declarations.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::action::{commit, init_repo, leaky_config, path_with_keyscope};
use crate::{git, git_command, root, with_git_identity};

/// The `pre-commit` executable, installed on first use.
fn pre_commit() -> &'static Path {
    static PRE_COMMIT: OnceLock<PathBuf> = OnceLock::new();
    PRE_COMMIT.get_or_init(|| {
        let output = Command::new("bash")
            .arg(root().join(".ci/hooks-deps.sh"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "cannot install pre-commit: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        assert!(path.is_file(), "no pre-commit at {}", path.display());
        path
    })
}

struct Run {
    code: i32,
    output: String,
}

/// Runs `command` with keyscope on PATH and pre-commit's cache in `home`; merges the streams.
fn run(mut command: Command, home: &Path) -> Run {
    let output = command
        .env("PATH", path_with_keyscope())
        .env("PRE_COMMIT_HOME", home.join("pre-commit-cache"))
        .env("NO_COLOR", "1")
        .env("PRE_COMMIT_COLOR", "never")
        .env_remove("KEYSCOPE_CONFIG")
        .env_remove("SKIP")
        .output()
        .unwrap();
    Run {
        code: output.status.code().expect("exited, not killed"),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn pre_commit_in(repo: &Path, home: &Path, args: &[&str]) -> Run {
    let mut command = Command::new(pre_commit());
    command.args(args).current_dir(repo);
    with_git_identity(&mut command);
    run(command, home)
}

fn git_in(repo: &Path, home: &Path, args: &[&str]) -> Run {
    let mut command = git_command(repo);
    command.args(args);
    run(command, home)
}

/// `repo: local` hooks with the same entries, languages and stages as the manifest's
/// `keyscope-system` and `keyscope-system-pre-push`, the script run from this checkout.
fn local_config() -> String {
    let script = root().join("scripts/pre-push.sh");
    format!(
        "repos:
  - repo: local
    hooks:
      - id: keyscope-system
        name: keyscope (staged)
        entry: keyscope scan --staged
        language: system
        pass_filenames: false
        stages: [pre-commit]
      - id: keyscope-system-pre-push
        name: keyscope (pushed commits)
        entry: {} --installed
        language: system
        pass_filenames: false
        always_run: true
        stages: [pre-push]
",
        script.display()
    )
}

/// A repository with the local hooks configured and committed, and its cache directory.
fn hooked_repo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    init_repo(&repo);
    commit(
        &repo,
        "base",
        &[
            (".pre-commit-config.yaml", &local_config()),
            ("README.md", "# demo\n"),
        ],
    );
    (dir, repo)
}

fn assert_no_key(text: &str) {
    let key = crate::action::synthetic_key();
    assert!(!text.contains(&key), "the key leaked: {text}");
    assert!(
        !text.contains(&key[4..20]),
        "part of the key leaked: {text}"
    );
}

#[test]
fn the_manifest_is_valid_for_pre_commit_and_declares_every_hook() {
    let home = tempfile::tempdir().unwrap();
    let manifest = root().join(".pre-commit-hooks.yaml");
    let valid = pre_commit_in(
        &root(),
        home.path(),
        &["validate-manifest", manifest.to_str().unwrap()],
    );
    assert_eq!(valid.code, 0, "{}", valid.output);

    let text = std::fs::read_to_string(&manifest).unwrap();
    for id in [
        "keyscope",
        "keyscope-pre-push",
        "keyscope-all-files",
        "keyscope-system",
        "keyscope-system-pre-push",
        "keyscope-system-all-files",
    ] {
        assert!(text.contains(&format!("- id: {id}\n")), "no hook {id}");
    }
    // Issue 18: the source-built hooks build with `cargo install --locked`, which pre-commit's
    // `language: rust` cannot do, so they are scripts (this used to assert `language: rust`).
    assert!(!text.contains("language: rust"));
    assert!(text.contains("entry: scripts/pre-commit.sh --staged\n"));
    let build = std::fs::read_to_string(root().join("scripts/pre-commit.sh")).unwrap();
    assert!(build.contains("cargo install --locked --path"), "{build}");
    assert!(text.contains("entry: keyscope scan --staged"));
    assert!(text.contains("entry: scripts/pre-push.sh\n"));

    // The validator can say no: the same manifest with an unknown language fails.
    let broken = home.path().join("broken.yaml");
    std::fs::write(
        &broken,
        text.replace("language: script", "language: scriptish"),
    )
    .unwrap();
    let invalid = pre_commit_in(
        &root(),
        home.path(),
        &["validate-manifest", broken.to_str().unwrap()],
    );
    assert_ne!(invalid.code, 0, "{}", invalid.output);
}

#[test]
fn a_commit_that_stages_a_key_is_blocked_and_a_clean_one_goes_through() {
    let (home, repo) = hooked_repo();
    let install = pre_commit_in(&repo, home.path(), &["install"]);
    assert_eq!(install.code, 0, "{}", install.output);

    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(repo.join("src/config.py"), leaky_config()).unwrap();
    git(&repo, &["add", "src/config.py"]);
    let blocked = git_in(&repo, home.path(), &["commit", "-q", "-m", "add config"]);
    assert_ne!(
        blocked.code, 0,
        "the commit went through: {}",
        blocked.output
    );
    assert!(
        blocked.output.contains("keyscope (staged)"),
        "{}",
        blocked.output
    );
    assert!(blocked.output.contains("Failed"), "{}", blocked.output);
    assert!(
        blocked.output.contains("src/config.py"),
        "{}",
        blocked.output
    );
    assert_no_key(&blocked.output);
    assert_eq!(git(&repo, &["rev-list", "--count", "HEAD"]), "1");

    git(&repo, &["rm", "-q", "--cached", "src/config.py"]);
    std::fs::write(repo.join("src/app.py"), "print('hello')\n").unwrap();
    git(&repo, &["add", "src/app.py"]);
    let clean = git_in(&repo, home.path(), &["commit", "-q", "-m", "add app"]);
    assert_eq!(clean.code, 0, "{}", clean.output);
    assert!(
        clean.output.contains("keyscope (staged)"),
        "{}",
        clean.output
    );
    assert!(clean.output.contains("Passed"), "{}", clean.output);
    assert_eq!(git(&repo, &["rev-list", "--count", "HEAD"]), "2");
}

#[test]
fn a_push_of_commits_with_a_key_is_blocked() {
    let (home, repo) = hooked_repo();
    let remote = home.path().join("remote.git");
    git(
        home.path(),
        &["init", "-q", "--bare", remote.to_str().unwrap()],
    );
    git(
        &repo,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    let install = pre_commit_in(&repo, home.path(), &["install", "--hook-type", "pre-push"]);
    assert_eq!(install.code, 0, "{}", install.output);

    // The first push reaches the root commit: the hook scans the whole history, which is clean.
    let first = git_in(&repo, home.path(), &["push", "-q", "origin", "main"]);
    assert_eq!(first.code, 0, "{}", first.output);
    assert!(first.output.contains("Passed"), "{}", first.output);

    // A key committed (only the pre-push hook is installed here) and pushed.
    let base = git(&repo, &["rev-parse", "HEAD"]);
    commit(&repo, "add config", &[("src/config.py", &leaky_config())]);
    commit(&repo, "more", &[("src/app.py", "print('hello')\n")]);
    let blocked = git_in(&repo, home.path(), &["push", "-q", "origin", "main"]);
    assert_ne!(blocked.code, 0, "the push went through: {}", blocked.output);
    assert!(
        blocked.output.contains("keyscope (pushed commits)"),
        "{}",
        blocked.output
    );
    assert!(
        blocked.output.contains("src/config.py"),
        "{}",
        blocked.output
    );
    assert_no_key(&blocked.output);
    assert_eq!(
        git(&remote, &["rev-parse", "main"]),
        base,
        "the remote moved"
    );

    // A new branch with the key: pre-commit gives the parent of its first new commit as FROM.
    git(&repo, &["checkout", "-q", "-b", "feature"]);
    let branch = git_in(&repo, home.path(), &["push", "-q", "origin", "feature"]);
    assert_ne!(
        branch.code, 0,
        "the branch push went through: {}",
        branch.output
    );
    assert!(branch.output.contains("src/config.py"), "{}", branch.output);
    assert_no_key(&branch.output);

    // The same range run by hand, and a clean range.
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let by_hand = pre_commit_in(
        &repo,
        home.path(),
        &[
            "run",
            "--hook-stage",
            "pre-push",
            "--from-ref",
            &base,
            "--to-ref",
            &head,
        ],
    );
    assert_ne!(by_hand.code, 0, "{}", by_hand.output);
    assert!(
        by_hand.output.contains("src/config.py"),
        "{}",
        by_hand.output
    );
    let clean = pre_commit_in(
        &repo,
        home.path(),
        &[
            "run",
            "--hook-stage",
            "pre-push",
            "--from-ref",
            &format!("{head}~1"),
            "--to-ref",
            &head,
        ],
    );
    assert_eq!(clean.code, 0, "{}", clean.output);
}

#[test]
fn try_repo_runs_the_manifest_hooks_that_use_an_installed_keyscope() {
    let (home, repo) = hooked_repo();
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(repo.join("src/config.py"), leaky_config()).unwrap();
    git(&repo, &["add", "src/config.py"]);
    let root = root();
    let staged = pre_commit_in(
        &repo,
        home.path(),
        &["try-repo", root.to_str().unwrap(), "keyscope-system"],
    );
    assert_ne!(staged.code, 0, "{}", staged.output);
    assert!(staged.output.contains("src/config.py"), "{}", staged.output);
    assert_no_key(&staged.output);

    let base = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["commit", "-q", "--no-verify", "-m", "add config"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let pushed = pre_commit_in(
        &repo,
        home.path(),
        &[
            "try-repo",
            root.to_str().unwrap(),
            "keyscope-system-pre-push",
            "--hook-stage",
            "pre-push",
            "--from-ref",
            &base,
            "--to-ref",
            &head,
        ],
    );
    assert_ne!(pushed.code, 0, "{}", pushed.output);
    assert!(pushed.output.contains("src/config.py"), "{}", pushed.output);
    assert_no_key(&pushed.output);
}

/// Issue 18: the first push of a repository whose history lists more than a pipe buffer of
/// commits died of SIGPIPE (exit 141, no message), because the script piped `git rev-list` into
/// `head -n 1` under `set -o pipefail`. Built with `git fast-import`: 5,000 commits print 205 KB.
#[test]
fn issue_18_first_push_of_a_long_history_is_scanned_not_killed_by_sigpipe() {
    use std::io::Write as _;
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    init_repo(repo);
    let mut stream = String::new();
    for i in 1..=5_000u32 {
        let data = format!("n {i}\n");
        stream.push_str(&format!(
            "commit refs/heads/main\nmark :{i}\ncommitter T <t@keyscope.invalid> {} +0000\ndata 2\nc\n",
            1_700_000_000 + i
        ));
        if i > 1 {
            stream.push_str(&format!("from :{}\n", i - 1));
        }
        stream.push_str(&format!(
            "M 100644 inline notes.txt\ndata {}\n{data}\n",
            data.len()
        ));
    }
    let mut import = git_command(repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    import
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(import.wait().unwrap().success());
    git(repo, &["reset", "-q", "--hard"]);

    let mut command = Command::new("bash");
    command
        .arg(root().join("scripts/pre-push.sh"))
        .arg("--installed")
        .current_dir(repo)
        .env_remove("PRE_COMMIT_FROM_REF")
        .env_remove("PRE_COMMIT_TO_REF")
        .env_remove("PRE_COMMIT_REMOTE_NAME")
        .env_remove("KEYSCOPE");
    with_git_identity(&mut command);
    let home = tempfile::tempdir().unwrap();
    let first = run(command, home.path());
    assert_eq!(first.code, 0, "{}", first.output);
    assert!(
        first.output.contains("scanning the whole history"),
        "{}",
        first.output
    );
}

/// Issue 18: `pre-commit run --all-files` passes with a key already committed, because the
/// pre-commit hooks read the index and a committed key is no change. The manual-stage
/// `keyscope-system-all-files` hook scans the working tree and finds it.
#[test]
fn issue_18_the_manual_all_files_hook_finds_a_key_already_committed() {
    let (home, repo) = hooked_repo();
    commit(&repo, "add config", &[("src/config.py", &leaky_config())]);
    let root = root();
    let staged = pre_commit_in(
        &repo,
        home.path(),
        &[
            "try-repo",
            root.to_str().unwrap(),
            "keyscope-system",
            "--all-files",
        ],
    );
    assert_eq!(
        staged.code, 0,
        "the index hook sees no change: {}",
        staged.output
    );

    let all = pre_commit_in(
        &repo,
        home.path(),
        &[
            "try-repo",
            root.to_str().unwrap(),
            "keyscope-system-all-files",
            "--hook-stage",
            "manual",
            "--all-files",
        ],
    );
    assert_ne!(all.code, 0, "{}", all.output);
    assert!(all.output.contains("src/config.py"), "{}", all.output);
    assert!(all.output.contains("Failed"), "{}", all.output);
    assert_no_key(&all.output);
}
