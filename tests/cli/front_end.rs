//! Issue 18's command-line side: what ignore files keep out of a scan, said out loud.

use crate::keyscope;

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
