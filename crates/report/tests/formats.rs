//! Every output format, checked against its schema and for leaks.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail loudly"
)]

use std::time::Duration;

use keyscope_report::{ScanReport, human, json, sarif};
use keyscope_rules::RuleSet;
use keyscope_scan::{Detector, Finding, scan_blob};
use keyscope_sources::{Origin, SkipReason, Skipped, WalkStats};

/// A synthetic body of `len` characters from `alphabet`, from a fixed seed.
fn synthetic(alphabet: &str, len: usize, seed: u64) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            chars[(state >> 33) as usize % chars.len()]
        })
        .collect()
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn keys() -> Vec<String> {
    vec![
        format!(
            "sk-{}T3BlbkFJ{}",
            synthetic(ALNUM, 20, 1),
            synthetic(ALNUM, 20, 2)
        ),
        format!(
            "sk-proj-{}T3BlbkFJ{}",
            synthetic(ALNUM, 74, 3),
            synthetic(ALNUM, 74, 4)
        ),
    ]
}

fn findings() -> (RuleSet, Vec<Finding>) {
    let rules = RuleSet::builtin().unwrap();
    let engine = Detector::new(rules.clone()).unwrap();
    let keys = keys();
    let text = format!(
        "a = \"{}\"\nb = \"{}\" # same line: {}\n",
        keys[0], keys[1], keys[0]
    );
    let mut found = scan_blob(&engine, "dir with space/app.py", text.as_bytes());
    assert_eq!(found.len(), 3, "{found:?}");
    // A history finding: introduced by a commit, and seen again elsewhere.
    let commit = keyscope_sources::CommitInfo {
        id: "0123456789abcdef0123456789abcdef01234567".into(),
        author: "Dev <dev@example.com>".into(),
        time: 1_700_000_000,
        summary: "add client".into(),
    };
    let placed = |path: &str| Origin::Commit {
        repo: None,
        path: path.into(),
        commit: commit.clone(),
    };
    found[0].location.origin = placed("dir with space/app.py");
    let mut elsewhere = found[0].location.clone();
    elsewhere.origin = placed("old/app.py");
    found[0].related.push(elsewhere);
    (rules, found)
}

fn stats() -> WalkStats {
    WalkStats {
        files: 1,
        bytes: 100,
        binary: 1,
        skipped: vec![
            Skipped {
                place: "logo.png".into(),
                reason: SkipReason::Binary,
            },
            Skipped {
                place: "dump.sql".into(),
                reason: SkipReason::TooLarge { size: 10, limit: 5 },
            },
        ],
        ..Default::default()
    }
}

fn assert_no_key(output: &str) {
    for key in keys() {
        assert!(!output.contains(&key), "a whole key leaked into:\n{output}");
        // Not even its body without the public prefix.
        assert!(
            !output.contains(&key[key.len() - 24..]),
            "a key body leaked into:\n{output}"
        );
    }
}

fn validate(schema: &str, instance: &str) {
    let schema: serde_json::Value = serde_json::from_str(schema).unwrap();
    let instance: serde_json::Value = serde_json::from_str(instance).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn sarif_validates_against_the_2_1_0_schema() {
    let (rules, found) = findings();
    let stats = stats();
    let report = ScanReport::new(&rules, &found, &stats, Duration::from_millis(5));
    let out = sarif::render(&report).unwrap();
    validate(include_str!("sarif-schema-2.1.0.json"), &out);
    assert_no_key(&out);
}

#[test]
fn sarif_has_what_github_code_scanning_needs() {
    let (rules, found) = findings();
    let stats = stats();
    let report = ScanReport::new(&rules, &found, &stats, Duration::ZERO);
    let log: serde_json::Value = serde_json::from_str(&sarif::render(&report).unwrap()).unwrap();
    let run = &log["runs"][0];
    let descriptors = run["tool"]["driver"]["rules"].as_array().unwrap();
    let mut ids: Vec<&str> = descriptors
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    let total = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), total, "one rule entry per id");
    for d in descriptors {
        for field in ["shortDescription", "fullDescription", "help"] {
            assert!(
                d[field]["text"].is_string(),
                "{field} missing on {}",
                d["id"]
            );
        }
        assert!(d["properties"]["tags"].as_array().unwrap().len() >= 2);
        assert!(d["properties"]["precision"].is_string());
        let score: f64 = d["properties"]["security-severity"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..=10.0).contains(&score));
    }
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for r in results {
        let region = &r["locations"][0]["physicalLocation"]["region"];
        assert!(region["startLine"].as_i64().unwrap() >= 1);
        assert!(region["startColumn"].as_i64().unwrap() >= 1);
        assert!(region["endColumn"].as_i64().unwrap() > region["startColumn"].as_i64().unwrap());
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(descriptors[index]["id"], r["ruleId"]);
        assert!(r["partialFingerprints"]["keyscope/v1"].is_string());
        assert_eq!(
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "dir%20with%20space/app.py"
        );
    }
    // The same key twice in one file is the same alert identity; different keys differ.
    let fp = |i: usize| results[i]["partialFingerprints"]["keyscope/v1"].clone();
    assert_ne!(fp(0), fp(1));
    assert_eq!(fp(0), fp(2));
    assert_eq!(run["invocations"][0]["executionSuccessful"], false);
    assert_eq!(
        results[0]["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "old/app.py"
    );
    assert_eq!(
        results[0]["properties"]["commit"],
        "0123456789abcdef0123456789abcdef01234567"
    );
}

#[test]
fn json_validates_against_its_schema_and_reports_incompleteness() {
    let (rules, found) = findings();
    let stats = stats();
    let report = ScanReport::new(&rules, &found, &stats, Duration::from_millis(5));
    let out = json::render(&report).unwrap();
    validate(json::SCHEMA, &out);
    assert_no_key(&out);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value["summary"]["complete"], false);
    assert_eq!(value["findings"][0]["line"], 1);
    assert_eq!(value["findings"][1]["line"], 2);
    assert_eq!(value["skipped"][1]["failure"], true);
    assert_eq!(value["findings"][0]["locations"][0]["path"], "old/app.py");
    assert_eq!(value["findings"][0]["commit"]["time"], 1_700_000_000);
    assert!(value["findings"][1]["commit"].is_null());
}

#[test]
fn human_output_masks_every_secret_on_the_line() {
    let (rules, found) = findings();
    let stats = stats();
    let report = ScanReport::new(&rules, &found, &stats, Duration::ZERO);
    let mut out = String::new();
    for d in human::diagnostics(&report) {
        let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::none())
            .with_width(200);
        handler.render_report(&mut out, &d).unwrap();
    }
    for f in &found {
        out.push_str(&f.snippet.text);
        out.push('\n');
        assert_eq!(
            &f.snippet.text[f.snippet.highlight.clone()],
            f.redacted.as_str()
        );
    }
    out.push_str(&human::summary(&report));
    assert_no_key(&out);
    // Issue #19: skipped files are errors for standard error, which the binary prints; the
    // summary (standard output) counts them.
    assert!(!out.contains("not scanned: dump.sql"));
    assert!(out.contains("and 1 other"), "{out}");
    assert!(out.contains("incomplete"));
    // The real line number, the location and the rule are shown.
    assert!(out.contains("app.py:2:6"), "{out}");
    assert!(out.contains(" 2 | b = "), "{out}");
    assert!(out.contains("openai-project-key (critical)"), "{out}");
}

/// Findings at every kind of place, with every fact a finding can carry, and a skip of every
/// kind: what a report must give back when it is read.
fn every_fact() -> (RuleSet, Vec<Finding>, WalkStats) {
    use keyscope_scan::{Correlation, KeyOwner};
    use std::path::Path;
    use std::sync::Arc;
    let (rules, mut found) = findings();
    let repo: keyscope_sources::RepoName = Arc::from(Path::new("org/repo one"));
    let id =
        keyscope_sources::ObjectId::from_hex("3a6dfd3600773760cc7ebd268a88d4eb23e56547").unwrap();
    let commit = found[0].location.commit().unwrap().clone();
    let base = found[1].clone();
    let origins = [
        Origin::Stdin,
        Origin::Index {
            path: "staged.env".into(),
        },
        Origin::Commit {
            repo: Some(repo.clone()),
            path: "src/app.py".into(),
            commit: commit.clone(),
        },
        Origin::Unreachable {
            repo: repo.clone(),
            blob: id,
        },
        Origin::CommitMessage {
            repo: Some(repo.clone()),
            commit,
        },
        Origin::TagMessage {
            repo: None,
            name: "v1.0".into(),
            id,
        },
    ];
    for (i, origin) in origins.into_iter().enumerate() {
        let mut f = base.clone();
        f.location.origin = origin;
        f.location.line = i + 3;
        f.at_head = [None, Some(true), Some(false)][i % 3];
        found.push(f);
    }
    found[1].owner = Some(KeyOwner {
        key_id: "notes-1".into(),
        scope: "prod/notes".into(),
        production: true,
    });
    found[1].base64 = true;
    let mut shared = found[0].clone();
    shared.kind = keyscope_rules::RuleKind::Correlation;
    shared.rule_id = "flat-key/shared-across-repos".into();
    shared.correlation = Some(Correlation::SharedBy(vec!["a".into(), "b".into()]));
    found.push(shared);
    let mut served = found[2].clone();
    served.kind = keyscope_rules::RuleKind::Correlation;
    served.rule_id = "flat-key/client-exposed".into();
    served.correlation = Some(Correlation::ServedToBrowsers);
    found.push(served);
    let mut stats = stats();
    for reason in [
        SkipReason::Unreadable("bad pack".into()),
        SkipReason::BrokenSymlink { explicit: true },
        SkipReason::NotFound,
        SkipReason::Ignored,
        SkipReason::NotAFile {
            kind: "FIFO",
            explicit: false,
        },
        SkipReason::SymlinkOutsideTree,
    ] {
        stats.skipped.push(Skipped {
            place: "some/path".into(),
            reason,
        });
    }
    stats.skipped.push(Skipped {
        place: keyscope_sources::SkippedPlace::Object { repo, id },
        reason: SkipReason::TooLarge {
            size: 1 << 30,
            limit: 1 << 26,
        },
    });
    (rules, found, stats)
}

/// Every format, rendered from one report.
fn every_format(report: &ScanReport<'_>) -> [String; 3] {
    let mut human_out = String::new();
    for d in human::diagnostics(report) {
        let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::none())
            .with_width(200);
        handler.render_report(&mut human_out, &d).unwrap();
    }
    human_out.push_str(&human::summary(report));
    [
        json::render(report).unwrap(),
        sarif::render(report).unwrap(),
        human_out,
    ]
}

/// Issue #17: `keyscope merge` reads reports back and renders them again, so a report read
/// back must render exactly as the values it was written from, in every format.
#[test]
fn a_json_report_reads_back_into_what_renders_it_again_in_every_format() {
    use keyscope_report::SweepFacts;
    use keyscope_scan::pipeline::{FingerprintKind, SweepSummary};
    let (rules, found, stats) = every_fact();
    let facts = SweepFacts {
        summary: SweepSummary {
            repositories: 3,
            complete: 2,
            partial: 1,
            failed: 0,
            objects_read: 1000,
            objects_from_state: 20,
            blobs_deduplicated: 7,
        },
        previously_reported: [(found[0].rule_id.clone(), found[0].fingerprint.clone())].into(),
        shard: Some((1, 4)),
        merged_reports: None,
    };
    for sweep in [None, Some(&facts)] {
        let mut report = ScanReport::new(&rules, &found, &stats, Duration::from_millis(1234))
            .with_fingerprints(FingerprintKind::Keyed);
        if let Some(facts) = sweep {
            report = report.with_sweep(facts);
        }
        let written = every_format(&report);
        validate(json::SCHEMA, &written[0]);
        let read = json::read(&written[0]).unwrap();
        assert_eq!(read.fingerprints, FingerprintKind::Keyed);
        assert_eq!(read.sweep.as_ref(), sweep);
        assert_eq!(read.stats.skipped, stats.skipped);
        let mut again = ScanReport::new(&rules, &read.findings, &read.stats, read.elapsed)
            .with_fingerprints(read.fingerprints);
        if let Some(facts) = &read.sweep {
            again = again.with_sweep(facts);
        }
        let rewritten = every_format(&again);
        for (before, after) in written.iter().zip(&rewritten) {
            assert_eq!(before, after);
        }
    }
}

#[test]
fn a_file_that_is_not_this_versions_report_is_refused_with_the_reason() {
    let (rules, found) = findings();
    let stats = stats();
    let report = json::render(&ScanReport::new(&rules, &found, &stats, Duration::ZERO)).unwrap();
    let error = |text: &str| json::read(text).unwrap_err().to_string();
    assert!(error("{ not json").starts_with("not JSON"));
    assert!(error(r#"{"version": 1, "runs": []}"#).contains("not a keyscope report"));
    let next = report.replacen("\"version\": 1", "\"version\": 2", 1);
    assert!(
        error(&next).contains("format version `2`"),
        "{}",
        error(&next)
    );
    // A report of an older keyscope of format version 1, before findings carried their
    // origin as facts: it cannot be read back whole, and says so.
    let mut older: serde_json::Value = serde_json::from_str(&report).unwrap();
    older["findings"][0]
        .as_object_mut()
        .unwrap()
        .remove("origin");
    let message = error(&older.to_string());
    assert!(message.contains("missing field `origin`"), "{message}");
}
