//! The audit log: every decision on record, hash-chained, and any tampering found (issue 14).

use std::path::Path;

use keyscope_policy::audit::{self, AuditError, AuditLog, AuditQuery, AuditRecord};
use keyscope_policy::{Request, Timestamp};

use crate::common::default_engine;

/// Decides `count` requests at times an hour apart from `start` and records each.
fn record(dir: &Path, start: &str, count: i64) {
    let engine = default_engine();
    let log = AuditLog::open(dir, 64).unwrap();
    let start = Timestamp::parse(start).unwrap().unix();
    for i in 0..count {
        let mut request = Request::new("dev-general-1", "gpt-4o-mini");
        request.time = Some(Timestamp::from_unix(start + i * 3600));
        request.request_id = Some(format!("r{i}"));
        let decision = engine.decide(&request);
        log.record(AuditRecord::of(&request, &decision)).unwrap();
    }
    log.close().unwrap();
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn first_file(dir: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.remove(0)
}

#[test]
fn the_chain_runs_across_files_and_reopenings() {
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), "2026-11-22T20:00:00Z", 6);
    record(dir.path(), "2026-11-23T05:00:00Z", 3);
    let report = audit::verify(dir.path()).unwrap();
    assert_eq!(report.records, 9);
    assert_eq!(report.files, 2, "a file per UTC day");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let records = audit::query(dir.path(), &AuditQuery::default()).unwrap();
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    assert_eq!(records[0].key, "dev-general-1");
    assert_eq!(records[0].scope.as_deref(), Some("dev/general"));
    let since = AuditQuery {
        key: Some("dev-general-1".into()),
        since: Timestamp::parse("2026-11-23"),
    };
    assert_eq!(audit::query(dir.path(), &since).unwrap().len(), 5);
}

/// A batch's records go to the writer in one hand-over: in order, chained, across a day's
/// boundary; a batch the queue cannot take whole is refused whole, and nothing of it is written.
#[test]
fn a_batch_is_recorded_whole_in_order_or_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let engine = default_engine();
    let start = Timestamp::parse("2026-11-22T22:00:00Z").unwrap().unix();
    let batch = |count: i64, tag: &str| -> Vec<AuditRecord> {
        (0..count)
            .map(|i| {
                let mut request = Request::new("dev-general-1", "gpt-4o-mini");
                request.time = Some(Timestamp::from_unix(start + i * 1800));
                request.request_id = Some(format!("{tag}{i}"));
                AuditRecord::of(&request, &engine.decide(&request))
            })
            .collect()
    };
    let log = AuditLog::open(dir.path(), 8).unwrap();
    log.record_all(batch(6, "a")).unwrap();
    let refused = log.record_all(batch(9, "b")).unwrap_err();
    assert_eq!(refused, AuditError::Backlog(8));
    log.close().unwrap();
    let report = audit::verify(dir.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.records, report.files), (6, 2));
    let ids: Vec<String> = audit::query(dir.path(), &AuditQuery::default())
        .unwrap()
        .into_iter()
        .filter_map(|r| r.request_id)
        .collect();
    assert_eq!(ids, ["a0", "a1", "a2", "a3", "a4", "a5"]);
}

#[test]
fn an_altered_a_removed_and_an_inserted_record_are_each_named() {
    for (what, edit, expect) in [
        (
            "altered",
            (|lines: &mut Vec<String>| {
                lines[1] = lines[1].replace("\"allowed\":true", "\"allowed\":false")
            }) as fn(&mut Vec<String>),
            "record 2 was altered",
        ),
        (
            "removed",
            |lines: &mut Vec<String>| {
                lines.remove(2);
            },
            "record 4 does not follow record 2",
        ),
        (
            "inserted",
            |lines: &mut Vec<String>| {
                let copy = lines[0].clone();
                lines.insert(3, copy);
            },
            "record 1 does not follow record 3",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        record(dir.path(), "2026-11-22T10:00:00Z", 5);
        let file = first_file(dir.path());
        let mut content = lines(&file);
        let before = content.clone();
        edit(&mut content);
        assert_ne!(before, content, "{what}");
        std::fs::write(&file, content.join("\n") + "\n").unwrap();
        let report = audit::verify(dir.path()).unwrap();
        assert!(
            report.problems.iter().any(|p| p.contains(expect)),
            "{what}: {:?}",
            report.problems
        );
    }
}

#[test]
fn a_raw_key_never_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let key = "sk-proj-kD7DPxW3TuKgyEQRgbpgRGXhsNsEehcGaWthZRKb2Vz4T3BlbkFJ";
    let log = AuditLog::open(dir.path(), 4).unwrap();
    let request = Request::new(key, "gpt-4o-mini");
    let decision = default_engine().decide(&request);
    log.record(AuditRecord::of(&request, &decision)).unwrap();
    log.close().unwrap();
    let text = std::fs::read_to_string(first_file(dir.path())).unwrap();
    assert!(!text.contains(key), "{text}");
    assert!(text.contains("sha256:"), "{text}");
}

/// A disk that refuses writes stops the log, and every record after is refused at once: the
/// caller denies rather than decides unrecorded.
#[test]
fn a_full_disk_refuses_records() {
    let dir = tempfile::tempdir().unwrap();
    let today = Timestamp::now().day_key();
    std::os::unix::fs::symlink(
        "/dev/full",
        dir.path().join(format!("audit-{today}-000.jsonl")),
    )
    .unwrap();
    let log = AuditLog::open(dir.path(), 4).unwrap();
    let request = Request::new("dev-general-1", "gpt-4o-mini");
    let engine = keyscope_policy::Engine::new(
        keyscope_policy::Store::load(&crate::common::default_store_dir()).unwrap(),
    );
    let decision = engine.decide(&request);
    let mut refused = None;
    for _ in 0..200 {
        if let Err(e) = log.record(AuditRecord::of(&request, &decision)) {
            refused = Some(e);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let refused = refused.expect("the full disk is noticed");
    assert!(matches!(refused, AuditError::Failed(_)), "{refused}");
    assert!(refused.to_string().contains("No space left"), "{refused}");
    assert!(
        refused.to_string().contains("could not be written"),
        "{refused}"
    );
    assert!(log.health().is_err());
    assert!(log.close().is_err());
}
