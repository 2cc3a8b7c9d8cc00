//! Snapshots of what users read: `--help`, and the human, JSON and SARIF reports of fixed trees
//! and repositories. A change in any output shows up as a diff to review (`cargo insta review`,
//! or `INSTA_UPDATE=always` and `git diff`); under `CI=true` a changed output fails.

use std::path::Path;

use crate::config_and_baseline::{groq_key, write};
use crate::git::{commit, commit_file, config_line, key, repo};
use crate::{Run, fixture, git, keyscope};

/// Output with what changes from run to run (timings) replaced by a fixed token.
fn stable(text: &str) -> String {
    text.lines()
        .map(|line| {
            if let Some(at) = line.find("\"duration_ms\": ") {
                let comma = if line.ends_with(',') { "," } else { "" };
                format!("{}\"duration_ms\": \"[ms]\"{comma}", &line[..at])
            } else if line.starts_with("scanned ")
                && let Some(start) = line.find(") in ")
                && let Some(end) = line[start..].find("s;")
            {
                format!("{}) in [secs]{}", &line[..start], &line[start + end + 1..])
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Standard output of `keyscope ARGS` in `dir`, made stable, after checking the exit code.
fn output(dir: &Path, args: &[&str], code: i32) -> String {
    let run: Run = keyscope(dir, args);
    assert_eq!(run.code, code, "{args:?}: {}", run.stderr);
    stable(&run.stdout)
}

#[test]
fn help() {
    let dir = fixture("clean");
    insta::assert_snapshot!("help", output(&dir, &["--help"], 0));
    insta::assert_snapshot!("scan_help", output(&dir, &["scan", "--help"], 0));
    insta::assert_snapshot!(
        "baseline_create_help",
        output(&dir, &["baseline", "create", "--help"], 0)
    );
}

#[test]
fn leaks_fixture_in_every_format() {
    let dir = fixture("leaks");
    for format in ["human", "json", "sarif"] {
        let args = ["scan", "--isolated", "--no-ignore", "--format", format];
        insta::assert_snapshot!(format!("leaks_{format}"), output(&dir, &args, 1));
    }
}

/// A tree whose keys are registered in a policy store, shared across environments and
/// services, and served to browsers: every fact a finding can carry besides git.
#[test]
fn attributed_and_flat_keys_in_every_format() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let shared = groq_key(21);
    let sha: String = sha2::Sha256::digest(shared.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    write(
        dir.path(),
        "store/scopes.toml",
        &format!(
            "[[scope]]\nid = \"acme\"\nkind = \"org\"\n\n[[scope]]\nid = \"prod/notes\"\n\
             kind = \"application\"\nparent = \"acme\"\nenvironment = \"production\"\n\n\
             [[key]]\nid = \"notes-1\"\nscope = \"prod/notes\"\nfingerprint = \"sha256:{sha}\"\n\
             created = 2026-10-01T00:00:00Z\n"
        ),
    );
    let line = format!("GROQ_API_KEY={shared}\n");
    write(dir.path(), "app/deploy/prod/.env", &line);
    write(dir.path(), "app/deploy/dev/.env", &line);
    write(dir.path(), "app/services/billing/.env.production", &line);
    write(dir.path(), "app/services/search/.env.production", &line);
    write(
        dir.path(),
        "app/web/public/config.js",
        &format!("window.KEY = \"{}\";\n", groq_key(22)),
    );
    for format in ["human", "json", "sarif"] {
        let args = [
            "scan",
            "--isolated",
            "--store",
            "store",
            "--format",
            format,
            "app",
        ];
        insta::assert_snapshot!(format!("attributed_{format}"), output(dir.path(), &args, 1));
    }
}

/// Two repositories with a key deleted before HEAD, a key still at HEAD, a key in a commit
/// message and a blob no commit holds.
fn repositories() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, seed) in [("a", 31), ("b", 41)] {
        let repo = dir.path().join(name);
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q"]);
        commit_file(&repo, "README.md", "hello\n", "initial", 1);
        commit_file(&repo, "old.env", &config_line(seed), "add old keys", 2);
        git(&repo, &["rm", "-q", "old.env"]);
        commit(&repo, "remove old keys", 3);
        commit_file(&repo, "src/app.py", &config_line(seed + 1), "add app", 4);
        commit(&repo, &format!("debug: try {}", key(seed + 2)), 5);
        std::fs::write(repo.join("loose.txt"), config_line(seed + 3)).unwrap();
        git(&repo, &["hash-object", "-w", "loose.txt"]);
        std::fs::remove_file(repo.join("loose.txt")).unwrap();
    }
    dir
}

#[test]
fn history_of_one_and_of_two_repositories() {
    let dir = repositories();
    let one = dir.path().join("a");
    insta::assert_snapshot!(
        "history_one_json",
        output(
            &one,
            &["scan", "--isolated", "--history", "--format", "json"],
            1
        )
    );
    for format in ["human", "json", "sarif"] {
        let args = [
            "scan",
            "--isolated",
            "--history",
            "--format",
            format,
            "a",
            "b",
        ];
        insta::assert_snapshot!(
            format!("history_two_{format}"),
            output(dir.path(), &args, 1)
        );
    }
}

/// Issue #17: `keyscope merge` of two sweeps' reports, in every format. A key that both
/// sweeps found (in `a`, and in `c` of the other sweep) is one finding, with its
/// cross-repository flat-key finding.
#[test]
fn merge_of_two_sweeps_in_every_format() {
    let dir = repositories();
    let c = dir.path().join("c");
    std::fs::create_dir(&c).unwrap();
    git(&c, &["init", "-q"]);
    commit_file(&c, "deploy/prod.env", &config_line(32), "copy a's key", 6);
    for (out, repos) in [("a.json", vec!["a"]), ("bc.json", vec!["b", "c"])] {
        let mut args = vec!["sweep", "--isolated", "-f", "json", "-o", out];
        args.extend(repos);
        output(dir.path(), &args, 1);
    }
    for format in ["human", "json", "sarif"] {
        let args = ["merge", "--isolated", "-f", format, "a.json", "bc.json"];
        insta::assert_snapshot!(format!("merge_{format}"), output(dir.path(), &args, 1));
    }
}

#[test]
fn staged_and_range() {
    let dir = repo();
    let base = git(dir.path(), &["rev-parse", "HEAD"]);
    commit_file(dir.path(), "src/app.py", &config_line(51), "add app", 2);
    commit(dir.path(), &format!("debug: try {}", key(52)), 3);
    let range = format!("{base}..HEAD");
    for format in ["human", "json"] {
        let args = ["scan", "--isolated", "--range", &range, "--format", format];
        insta::assert_snapshot!(format!("range_{format}"), output(dir.path(), &args, 1));
    }
    std::fs::write(dir.path().join("staged.py"), config_line(53)).unwrap();
    git(dir.path(), &["add", "staged.py"]);
    for format in ["human", "json"] {
        let args = ["scan", "--isolated", "--staged", "--format", format];
        insta::assert_snapshot!(format!("staged_{format}"), output(dir.path(), &args, 1));
    }
}

#[test]
fn standard_input() {
    let input = format!("key: {}\n", key(61));
    let run = crate::keyscope_with_input(
        &fixture("clean"),
        &["scan", "--isolated", "-", "--format", "json"],
        Some(input.as_bytes()),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    insta::assert_snapshot!("stdin_json", stable(&run.stdout));
}

#[test]
fn rules_list() {
    let dir = fixture("clean");
    insta::assert_snapshot!("rules_list", output(&dir, &["rules", "list"], 0));
    insta::assert_snapshot!(
        "rules_list_json",
        output(&dir, &["rules", "list", "--json"], 0)
    );
}
