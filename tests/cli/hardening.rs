//! Issue #19 at the command line: no key on any output path, no raw terminal escapes, no panic
//! on a closed pipe, no silent clean.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::{Run, keyscope, keyscope_with_input, root};

/// A synthetic Groq key, built at run time so that this file holds no key-shaped literal.
fn key() -> String {
    format!(
        "gsk_{}",
        "Qz8Rr3LwX0pVt7KcN2bYh5MfJ1sDg4TuA9eRo6WiLmNbVc".repeat(2)[..52].to_owned()
    )
}

/// The body of the key without its public prefix and last four characters: never shown.
fn hidden(key: &str) -> &str {
    &key[4..key.len() - 4]
}

fn assert_masked(run: &Run, key: &str) {
    for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(!text.contains(hidden(key)), "{name} shows the key: {text}");
    }
}

fn git(dir: &Path, args: &[&str], author: &str) {
    let status = Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", author)
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// Runs `keyscope ARGS` with standard output or standard error already closed by its reader.
fn with_closed(dir: &Path, args: &[&str], input: &str, close_stderr: bool) -> i32 {
    use std::io::Write as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyscope"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("KEYSCOPE_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    // The reader goes away before the first byte is written.
    if close_stderr {
        drop(child.stderr.take());
    } else {
        drop(child.stdout.take());
    }
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    output.status.code().expect("exited, not killed")
}

#[test]
fn issue19_skipped_files_are_named_on_stderr_in_human_output() {
    let dir = tempfile::tempdir().unwrap();
    let run = keyscope(dir.path(), &["scan", "absent.txt"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("not scanned: absent.txt"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("not scanned"), "{}", run.stdout);
}

#[test]
fn issue19_the_largest_size_limit_scans_files_whole() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.env"),
        format!("GROQ_API_KEY={}\n", key()),
    )
    .unwrap();
    let run = keyscope(
        dir.path(),
        &[
            "scan",
            "--max-file-size",
            "18446744073709551615",
            "-f",
            "json",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    std::fs::write(
        dir.path().join(".keyscope.toml"),
        "max_file_size = '18446744073709551615'\n",
    )
    .unwrap();
    let run = keyscope(dir.path(), &["scan", "-f", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
}

#[test]
fn issue19_a_huge_thread_count_is_capped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "hello\n").unwrap();
    let run = keyscope(
        dir.path(),
        &["scan", "--threads", "18446744073709551615", "."],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("warning: --threads"), "{}", run.stderr);
}

#[test]
fn issue19_binary_git_blobs_do_not_underflow_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"], "Ada");
    std::fs::write(dir.path().join("logo.png"), b"\x89PNG\0\0\0\rIHDR").unwrap();
    git(dir.path(), &["add", "logo.png"], "Ada");
    git(dir.path(), &["commit", "-q", "-m", "logo"], "Ada");
    let run = keyscope(dir.path(), &["scan", "--history", "."]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("skipped 1 binary and 0 other"),
        "{}",
        run.stdout
    );
}

#[test]
fn issue19_a_closed_pipe_is_an_ordinary_exit() {
    let root = root();
    let store = root.join("policies");
    let store = store.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let ledger = ledger.to_str().unwrap();
    let request = r#"{"subject": {"type": "Key", "id": "dev-general-1"}, "action": {"name": "invoke"},
        "resource": {"type": "Model", "id": "gpt-4o-mini"},
        "context": {"input_tokens": 10, "max_output_tokens": 10, "request_id": "pipe-1"}}"#;
    let decide = [
        "decide",
        "--reserve",
        "--now",
        "2026-11-22T18:00:00Z",
        "--store",
        store,
        "--ledger",
        ledger,
    ];
    assert_eq!(with_closed(&root, &decide, request, false), 0);
    let spend = ["spend", "--store", store, "--ledger", ledger];
    assert_eq!(with_closed(&root, &spend, "", false), 0);
    let commit = [
        "usage", "commit", "pipe-1", "--store", store, "--ledger", ledger,
    ];
    assert_eq!(with_closed(&root, &commit, "", false), 0);
    assert_eq!(with_closed(&root, &["rules", "list"], "", false), 0);
    assert_eq!(
        with_closed(&root, &["rules", "list", "--json"], "", false),
        0
    );
    let scan = dir.path().join("scan");
    std::fs::create_dir(&scan).unwrap();
    std::fs::write(scan.join("a.env"), format!("GROQ_API_KEY={}\n", key())).unwrap();
    assert_eq!(with_closed(&scan, &["scan", "-f", "json"], "", false), 1);
    assert_eq!(
        with_closed(&scan, &["scan", "-f", "json", "absent"], "", true),
        2
    );
    assert_eq!(
        with_closed(&scan, &["scan", "--format", "bogus"], "", true),
        2
    );
}

#[test]
fn issue19_a_key_in_a_file_name_is_a_finding_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    std::fs::write(dir.path().join(format!("{key}.txt")), "hello\n").unwrap();
    for format in ["human", "json", "sarif"] {
        let run = keyscope(dir.path(), &["scan", "-f", format, "."]);
        assert_eq!(run.code, 1, "{format}: {}{}", run.stdout, run.stderr);
        assert_masked(&run, &key);
        assert!(
            run.stdout.contains("groq-api-key"),
            "{format}: {}",
            run.stdout
        );
    }
    // A binary file too: it is not read, but its name is.
    std::fs::write(dir.path().join(format!("{key}.bin")), b"\0\0").unwrap();
    let run = keyscope(dir.path(), &["scan", "-f", "json", "."]);
    assert_masked(&run, &key);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["findings"].as_array().unwrap().len(), 2);
}

#[test]
fn issue19_a_key_given_as_a_missing_path_is_masked() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    for format in ["human", "json", "sarif"] {
        let run = keyscope(dir.path(), &["scan", "-f", format, &key]);
        assert_eq!(run.code, 2, "{format}");
        assert_masked(&run, &key);
    }
}

#[test]
fn issue19_a_key_glued_to_a_letter_in_an_error_is_masked() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let run = keyscope(dir.path(), &["scan", "--format", &format!("{key}G"), "."]);
    assert_eq!(run.code, 2);
    assert_masked(&run, &key);
    std::fs::write(
        dir.path().join(".keyscope.toml"),
        format!("max_file_size = '{key}G'\n"),
    )
    .unwrap();
    let run = keyscope(dir.path(), &["scan", "."]);
    assert_eq!(run.code, 2);
    assert_masked(&run, &key);
}

#[test]
fn issue19_config_show_masks_keys_pasted_into_settings() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    std::fs::write(
        dir.path().join(".keyscope.toml"),
        format!(
            "disable_rules = ['{key}']\nexclude = ['{key}/**']\n\
             [flat_key.environments]\nprod = ['{key}']\n"
        ),
    )
    .unwrap();
    let run = keyscope(dir.path(), &["config", "show"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("disable_rules"), "{}", run.stdout);
    assert_masked(&run, &key);
}

#[test]
fn issue19_decide_and_usage_never_echo_a_key() {
    let root = root();
    let store = root.join("policies");
    let store = store.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let ledger = ledger.to_str().unwrap();
    let key = key();
    for (model, action, id) in [
        (key.as_str(), "invoke", "r1"),
        ("gpt-4o-mini", key.as_str(), "r2"),
        ("gpt-4o-mini", "invoke", key.as_str()),
    ] {
        let request = format!(
            r#"{{"subject": {{"type": "Key", "id": "dev-general-1"}}, "action": {{"name": "{action}"}},
            "resource": {{"type": "Model", "id": "{model}"}},
            "context": {{"input_tokens": 10, "max_output_tokens": 10, "request_id": "{id}"}}}}"#
        );
        let run = keyscope_with_input(
            &root,
            &[
                "decide",
                "--reserve",
                "--now",
                "2026-11-22T18:00:00Z",
                "--store",
                store,
                "--ledger",
                ledger,
            ],
            Some(request.as_bytes()),
        );
        assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
        assert_masked(&run, &key);
    }
    let run = keyscope(
        &root,
        &[
            "usage", "commit", &key, "--store", store, "--ledger", ledger,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_masked(&run, &key);
}

#[test]
fn issue19_history_masks_and_escapes_author_names() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    git(dir.path(), &["init", "-q"], "Ada");
    std::fs::write(dir.path().join("a.env"), format!("GROQ_API_KEY={key}\n")).unwrap();
    git(dir.path(), &["add", "a.env"], "Ada");
    let author = format!("Eve {key} \x1b]0;owned\x07\x1b[2J\u{202e}");
    git(dir.path(), &["commit", "-q", "-m", "add"], &author);
    for format in ["human", "json", "sarif"] {
        let run = keyscope(dir.path(), &["scan", "--history", "-f", format, "."]);
        assert_eq!(run.code, 1, "{format}: {}", run.stderr);
        assert_masked(&run, &key);
        if format == "human" {
            assert!(!run.stdout.contains('\x1b'), "{}", run.stdout);
            assert!(!run.stdout.contains('\u{202e}'), "{}", run.stdout);
            assert!(run.stdout.contains("\\u{1b}"), "{}", run.stdout);
        }
    }
}

#[test]
fn issue19_file_names_and_lines_reach_the_terminal_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    std::fs::write(
        dir.path().join("evil\x1b[2J\u{202e}.env"),
        format!("\x1b]0;owned\x07\x08\rGROQ_API_KEY={key} \u{202e}\n"),
    )
    .unwrap();
    let run = keyscope(dir.path(), &["scan", "."]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for c in ['\x1b', '\x07', '\x08', '\r', '\u{202e}'] {
        assert!(!run.stdout.contains(c), "{c:?} in {}", run.stdout);
    }
    assert!(
        run.stdout.contains("evil\\u{1b}[2J\\u{202e}.env"),
        "{}",
        run.stdout
    );
}

#[test]
fn issue19_special_files_and_stdin_have_limits() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let run = keyscope(dir.path(), &["scan", "pipe"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("pipe: not a regular file (FIFO)"),
        "{}",
        run.stderr
    );
    let run = keyscope(dir.path(), &["scan", "."]);
    assert_eq!(run.code, 0);
    let run = keyscope(dir.path(), &["scan", "-f", "json", "."]);
    assert!(run.stdout.contains("FIFO"), "{}", run.stdout);
    let input = "x".repeat(4096);
    let run = keyscope_with_input(
        dir.path(),
        &["scan", "--max-file-size", "1K", "-"],
        Some(input.as_bytes()),
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("standard input is over the 1024-byte limit"),
        "{}",
        run.stderr
    );
}

#[test]
fn issue19_utf16_files_are_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("GROQ_API_KEY={}\r\n", key());
    let mut data = vec![0xFF, 0xFE];
    data.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(dir.path().join("win.env"), data).unwrap();
    let run = keyscope(dir.path(), &["scan", "-f", "json", "."]);
    assert_eq!(run.code, 1, "{}", run.stdout);
}
