//! The audit log: every decision as one JSON line, hash-chained, so that an edited, inserted or
//! removed record is found and named (HIPAA's audit control standard asks for exactly this).
//!
//! The one design decision: **each record names the SHA-256 of the record before it, and its
//! own hash covers everything it says**, across files: `audit-YYYY-MM-DD-NNN.jsonl` rotate by
//! UTC day and by size, and the first record of a file names the last hash of the file before.
//! [`verify`] walks the chain and names the first record that breaks it.
//!
//! Writing is off the decision path: [`AuditLog::record`] (or [`AuditLog::record_all`], for the
//! decisions of a batch at once) hands records to a writer thread through a queue bounded in
//! records. A full queue, or a writer that failed (a full or failing disk), is an error at once,
//! and the caller denies: no decision goes unrecorded silently. The writer serializes each record
//! once (the hash is spliced into the line it covers), and writes and syncs whatever has queued
//! up as one batch, at most once every 10 ms: a record is on disk within about 10 ms of its
//! decision, and a busy service costs the disk a hundred syncs a second, not one per decision.
//! [`AuditLog::close`] writes out what is queued at once.
//!
//! A record never holds a key: the subject is the registered key id, or the SHA-256
//! fingerprint of whatever the caller sent.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::decision::Decision;
use crate::keys::KeyEvent;
use crate::ledger::{RequestRecord, Settlement};
use crate::request::Request;
use crate::scopes::fingerprint;
use crate::time::Timestamp;

/// The hash the first record of a log names as its predecessor.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What one audit record says about one decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When the decision was made (the engine's time), RFC 3339.
    pub time: String,
    /// The caller's request id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
    /// The registered key id, or `sha256:` of the subject the caller sent: never a key.
    pub key: String,
    /// The key's scope, when the key resolved.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scope: Option<String>,
    /// The model asked for.
    pub model: String,
    /// The action.
    pub action: String,
    /// Allowed or not.
    pub allowed: bool,
    /// The reason ids.
    pub reasons: Vec<String>,
    /// The errors, if any.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<String>,
    /// The worst-case cost estimate, micro-dollars.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cost_micros: Option<u64>,
    /// The request id a budget hold was taken under.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hold: Option<String>,
    /// Where the request came from.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_ip: Option<String>,
    /// What happened, when it is not a decision: `commit` or `release` of a hold.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub event: Option<String>,
    /// What an auditor should look at: `exceeds-hold` (a commit above its hold), `late` (a
    /// commit after the hold expired).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub flags: Vec<String>,
    /// The hash of the record before, hex.
    pub prev: String,
    /// SHA-256 of this record with `hash` empty, hex.
    pub hash: String,
}

impl AuditRecord {
    /// The record of `decision`, made for `request`; `seq`, `prev` and `hash` are filled in by
    /// the log.
    pub fn of(request: &Request, decision: &Decision) -> Self {
        let key = decision.key.clone().unwrap_or_else(|| {
            if request.key.starts_with("sha256:") {
                request.key.clone()
            } else {
                fingerprint(&request.key)
            }
        });
        Self {
            seq: 0,
            time: decision.time.to_string(),
            request_id: decision.request_id.clone(),
            key,
            scope: decision.scope.clone(),
            model: decision.model.clone(),
            action: decision.action.clone(),
            allowed: decision.allowed,
            reasons: decision.reasons.iter().map(|r| r.id.clone()).collect(),
            errors: decision.errors.clone(),
            cost_micros: decision.estimate.and_then(|e| e.cost_micros),
            hold: decision.reservation.as_ref().map(|r| r.request_id.clone()),
            source_ip: request.source_ip.map(|ip| ip.to_string()),
            event: None,
            flags: Vec::new(),
            prev: String::new(),
            hash: String::new(),
        }
    }

    /// The record of a key's lifecycle event (`key-issued`, `key-rotated`, `key-superseded`,
    /// `key-revoked`, `key-quarantined`, `key-expired`): the key id and scope, never the key;
    /// a revocation's reason or a rotation's successor in `reasons`.
    pub fn of_key_event(event: &KeyEvent) -> Self {
        Self {
            seq: 0,
            time: event.at.to_string(),
            request_id: None,
            key: event.key_id.clone(),
            scope: Some(event.scope.clone()),
            model: String::new(),
            action: "key".to_owned(),
            allowed: false,
            reasons: event.detail.iter().cloned().collect(),
            errors: Vec::new(),
            cost_micros: None,
            hold: None,
            source_ip: None,
            event: Some(event.kind.event_name().to_owned()),
            flags: Vec::new(),
            prev: String::new(),
            hash: String::new(),
        }
    }

    /// The record of settling `request_id` at `now`: its key, scope and model from the ledger's
    /// `record` of it, the cost charged, and the commit's flags.
    pub fn of_settlement(
        request_id: &str,
        record: Option<&RequestRecord>,
        settlement: &Settlement,
        now: Timestamp,
    ) -> Self {
        let (event, cost, flags) = match settlement {
            Settlement::Committed {
                cost_micros, flags, ..
            } => {
                let mut named = Vec::new();
                if flags.exceeds_hold {
                    named.push("exceeds-hold".to_owned());
                }
                if flags.late {
                    named.push("late".to_owned());
                }
                ("commit", Some(*cost_micros), named)
            }
            Settlement::AlreadyCommitted { cost_micros } => {
                ("commit-retried", Some(*cost_micros), Vec::new())
            }
            Settlement::Released => ("release", None, Vec::new()),
            Settlement::AlreadyReleased => ("release-retried", None, Vec::new()),
        };
        Self {
            seq: 0,
            time: now.to_string(),
            request_id: Some(request_id.to_owned()),
            key: record.map(|r| r.key_id.clone()).unwrap_or_default(),
            scope: record.and_then(|r| r.chain.first().cloned()),
            model: record.map(|r| r.model.clone()).unwrap_or_default(),
            action: record.map(|r| r.action.clone()).unwrap_or_default(),
            allowed: true,
            reasons: Vec::new(),
            errors: Vec::new(),
            cost_micros: cost,
            hold: Some(request_id.to_owned()),
            source_ip: None,
            event: Some(event.to_owned()),
            flags,
            prev: String::new(),
            hash: String::new(),
        }
    }

    /// The hash this record must carry: SHA-256 of its JSON with `hash` empty.
    fn digest(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash.clear();
        let json = serde_json::to_vec(&unhashed).unwrap_or_default();
        hex(&Sha256::digest(json))
    }

    /// Fills in this record's `hash` and appends its line to `out`, serializing it once: the
    /// JSON with `hash` empty is what the hash covers and, `hash` being the last member, the
    /// line is that JSON with the hash spliced in before its closing `"}`.
    fn seal_into(&mut self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        const UNHASHED_END: &[u8] = br#""hash":""}"#;
        let start = out.len();
        self.hash.clear();
        serde_json::to_writer(&mut *out, self)?;
        let json = out.get(start..).unwrap_or_default();
        self.hash = hex(&Sha256::digest(json));
        if json.ends_with(UNHASHED_END) {
            let closing = out.len() - 2;
            out.truncate(closing);
            out.extend_from_slice(self.hash.as_bytes());
            out.extend_from_slice(b"\"}");
        } else {
            // A member after `hash` would be hashed but not spliced: serialize again.
            out.truncate(start);
            serde_json::to_writer(&mut *out, self)?;
        }
        out.push(b'\n');
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: [char; 16] = [
        '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f',
    ];
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0f)]);
    }
    out
}

/// Why a decision could not be recorded, or a log not read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuditError {
    /// The writer is behind by the whole queue.
    #[error("the audit log is {0} records behind; the decision is denied rather than unrecorded")]
    Backlog(usize),
    /// The writer could not write (a full or failing disk); it writes no more.
    #[error("the audit log cannot be written: {0}")]
    Failed(String),
    /// The log directory could not be read or opened.
    #[error("audit log `{path}`: {message}")]
    Open {
        /// The directory or file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Where the chain stands: the last sequence number and hash, and today's file.
#[derive(Debug)]
struct Tail {
    seq: u64,
    hash: String,
    day: String,
    part: u32,
    bytes: u64,
}

/// An open audit log: a writer thread behind a queue bounded in records.
#[derive(Debug)]
pub struct AuditLog {
    /// Each message is the records of one hand-over: one decision, or a batch's. Read-locked to
    /// send, so callers on several threads never wait on each other; write-locked to close.
    queue: RwLock<Option<Sender<Vec<AuditRecord>>>>,
    capacity: usize,
    failure: Arc<Mutex<Option<String>>>,
    failed: Arc<AtomicBool>,
    /// Records queued and not yet written: what bounds the queue, and what a service reports as
    /// its audit backlog.
    pending: Arc<AtomicUsize>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A file grows to this size before the log moves to the next one.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// The writer writes and syncs a batch at most this often: a record reaches the disk within
/// about this long of its decision. Syncing every batch as soon as it queued up cost a busy
/// service over a thousand syncs a second and a wake-up of the writer for most decisions.
const SYNC_INTERVAL: Duration = Duration::from_millis(10);

impl AuditLog {
    /// Opens (creating) the log in `dir`, continuing its chain, with a queue of `capacity`
    /// records.
    pub fn open(dir: &Path, capacity: usize) -> Result<Self, AuditError> {
        let open_error = |message: String| AuditError::Open {
            path: dir.to_owned(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        let tail = read_tail(dir)?;
        let (queue, records) = std::sync::mpsc::channel();
        let failure = Arc::new(Mutex::new(None));
        let failed = Arc::new(AtomicBool::new(false));
        let pending = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (dir, failure, failed, written) = (
                dir.to_owned(),
                Arc::clone(&failure),
                Arc::clone(&failed),
                Arc::clone(&pending),
            );
            std::thread::Builder::new()
                .name("keyscope-audit".to_owned())
                .spawn(move || {
                    if let Err((message, unwritten)) = write_all(&dir, tail, &records, &written) {
                        // Refuse new records first, then count what was queued behind the
                        // failure: those decisions were made and will never be on record.
                        failed.store(true, Ordering::SeqCst);
                        let lost = unwritten + records.try_iter().map(|b| b.len()).sum::<usize>();
                        if let Ok(mut slot) = failure.lock() {
                            *slot = Some(format!(
                                "{message} ({lost} record{} of decisions already made could \
                                 not be written)",
                                if lost == 1 { "" } else { "s" }
                            ));
                        }
                    }
                })
                .map_err(|e| open_error(e.to_string()))?
        };
        Ok(Self {
            queue: RwLock::new(Some(queue)),
            capacity: capacity.max(1),
            failure,
            failed,
            pending,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Whether the log still writes: the failure, with how many records it lost, once it has
    /// stopped. A service reports it as not ready.
    pub fn health(&self) -> Result<(), AuditError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(self.failure());
        }
        Ok(())
    }

    /// Queues `record`; an error means it will not be written, and the decision must deny.
    pub fn record(&self, record: AuditRecord) -> Result<(), AuditError> {
        self.record_all(vec![record])
    }

    /// Queues `records`, the decisions of one batch, with one hand-over to the writer: all are
    /// queued, or none is and the error says why, and every one of those decisions must deny.
    pub fn record_all(&self, records: Vec<AuditRecord>) -> Result<(), AuditError> {
        if records.is_empty() {
            return Ok(());
        }
        if self.failed.load(Ordering::SeqCst) {
            return Err(self.failure());
        }
        let queue = self.queue.read().map_err(|_| self.failure())?;
        let Some(queue) = queue.as_ref() else {
            return Err(AuditError::Failed("the audit log is closed".to_owned()));
        };
        let count = records.len();
        // Counted before it is sent, so the writer never takes off more than was put on.
        let before = self.pending.fetch_add(count, Ordering::SeqCst);
        if before + count > self.capacity {
            self.pending.fetch_sub(count, Ordering::SeqCst);
            return Err(AuditError::Backlog(self.capacity));
        }
        if queue.send(records).is_err() {
            self.pending.fetch_sub(count, Ordering::SeqCst);
            return Err(self.failure());
        }
        Ok(())
    }

    /// Records accepted and not yet written to the disk.
    pub fn backlog(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    fn failure(&self) -> AuditError {
        let message = self
            .failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_else(|| "the writer stopped".to_owned());
        AuditError::Failed(message)
    }

    /// Writes out everything queued and stops the writer; what failed to be written is an error.
    pub fn close(&self) -> Result<(), AuditError> {
        if let Ok(mut queue) = self.queue.write() {
            queue.take();
        }
        if let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            // A writer waiting out its sync interval writes what is left at once.
            writer.thread().unpark();
            let _ = writer.join();
        }
        if self.failed.load(Ordering::SeqCst) {
            return Err(self.failure());
        }
        Ok(())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The log's files, in chain order.
fn files(dir: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| AuditError::Open {
            path: dir.to_owned(),
            message: e.to_string(),
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
        })
        // A device or FIFO under a log name is never read: it could be endless.
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    files.sort();
    Ok(files)
}

/// `audit-DAY-PART.jsonl`.
fn file_name(day: &str, part: u32) -> String {
    format!("audit-{day}-{part:03}.jsonl")
}

/// Where the chain of `dir` ends.
fn read_tail(dir: &Path) -> Result<Tail, AuditError> {
    let mut tail = Tail {
        seq: 0,
        hash: GENESIS.to_owned(),
        day: String::new(),
        part: 0,
        bytes: 0,
    };
    let Some(last) = files(dir)?.pop() else {
        return Ok(tail);
    };
    let name = last
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    tail.day = name.get(6..16).unwrap_or_default().to_owned();
    tail.part = name.get(17..20).and_then(|p| p.parse().ok()).unwrap_or(0);
    let open_error = |e: std::io::Error| AuditError::Open {
        path: last.clone(),
        message: e.to_string(),
    };
    tail.bytes = std::fs::metadata(&last).map_err(open_error)?.len();
    let reader = BufReader::new(File::open(&last).map_err(open_error)?);
    for line in reader.lines() {
        let line = line.map_err(open_error)?;
        if let Ok(record) = serde_json::from_str::<AuditRecord>(&line) {
            tail.seq = record.seq;
            tail.hash = record.hash;
        }
    }
    Ok(tail)
}

/// The writer thread: chains, writes and syncs every record it receives, in batches of whatever
/// queued up while it wrote the last one. A failure comes back with how many records of the
/// batch were not written for sure.
fn write_all(
    dir: &Path,
    tail: Tail,
    records: &Receiver<Vec<AuditRecord>>,
    pending: &AtomicUsize,
) -> Result<(), (String, usize)> {
    let mut out = Output {
        dir: dir.to_owned(),
        tail,
        file: None,
        lines: Vec::new(),
    };
    while let Ok(first) = records.recv() {
        let started = Instant::now();
        let mut batch = vec![first];
        batch.extend(records.try_iter());
        let size = batch.iter().map(Vec::len).sum();
        out.write_batch(batch).map_err(|message| (message, size))?;
        pending.fetch_sub(size, Ordering::SeqCst);
        // Parked rather than waiting on the queue, the writer is not woken by each record that
        // arrives meanwhile: one batch, one sync and one wake-up per interval at most, however
        // busy the service. `close` unparks it.
        if let Some(rest) = SYNC_INTERVAL.checked_sub(started.elapsed()) {
            std::thread::park_timeout(rest);
        }
    }
    Ok(())
}

/// The writer's side of the log: the chain's tail, the open file, and the lines of the batch
/// being written.
struct Output {
    dir: PathBuf,
    tail: Tail,
    file: Option<File>,
    lines: Vec<u8>,
}

impl Output {
    /// Chains a batch onto the log (moving to the next file by day and size), writes each
    /// file's share with one call and syncs it.
    fn write_batch(&mut self, batch: Vec<Vec<AuditRecord>>) -> Result<(), String> {
        for mut record in batch.into_iter().flatten() {
            let day = record.time.get(..10).unwrap_or("0000-00-00");
            if day != self.tail.day || self.tail.bytes >= MAX_FILE_BYTES {
                self.flush()?;
                self.file = None;
                self.tail.part = if day == self.tail.day {
                    self.tail.part + 1
                } else {
                    0
                };
                day.clone_into(&mut self.tail.day);
                self.tail.bytes = 0;
            }
            if self.file.is_none() {
                let path = self.dir.join(file_name(&self.tail.day, self.tail.part));
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| format!("`{}`: {e}", path.display()))?;
                self.file = Some(file);
            }
            self.tail.seq += 1;
            record.seq = self.tail.seq;
            record.prev = std::mem::take(&mut self.tail.hash);
            let before = self.lines.len();
            record
                .seal_into(&mut self.lines)
                .map_err(|e| e.to_string())?;
            self.tail.hash = std::mem::take(&mut record.hash);
            self.tail.bytes += (self.lines.len() - before) as u64;
        }
        self.flush()
    }

    /// Writes the lines held to the open file and syncs it to the disk.
    fn flush(&mut self) -> Result<(), String> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        if self.lines.is_empty() {
            return Ok(());
        }
        let written = file.write_all(&self.lines).and_then(|()| file.sync_data());
        self.lines.clear();
        written.map_err(|e| e.to_string())
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// Records read.
    pub records: u64,
    /// Files read.
    pub files: u64,
    /// Each break of the chain: the file, the line and what is wrong. Empty when intact.
    pub problems: Vec<String>,
}

/// Walks the chain of the log in `dir`: every record's hash, every link to the record before,
/// every sequence number. An edited record fails its hash; a removed or inserted one breaks the
/// link and the sequence after it.
pub fn verify(dir: &Path) -> Result<AuditVerification, AuditError> {
    let mut report = AuditVerification::default();
    let (mut prev, mut seq) = (GENESIS.to_owned(), 0u64);
    for path in files(dir)? {
        report.files += 1;
        let name = path.display().to_string();
        let reader = BufReader::new(File::open(&path).map_err(|e| AuditError::Open {
            path: path.clone(),
            message: e.to_string(),
        })?);
        for (index, line) in reader.lines().enumerate() {
            let at = format!("{name}:{}", index + 1);
            let line = line.map_err(|e| AuditError::Open {
                path: path.clone(),
                message: e.to_string(),
            })?;
            report.records += 1;
            let record: AuditRecord = match serde_json::from_str(&line) {
                Ok(record) => record,
                Err(e) => {
                    report
                        .problems
                        .push(format!("{at}: not an audit record: {e}"));
                    continue;
                }
            };
            if record.digest() != record.hash {
                report.problems.push(format!(
                    "{at}: record {} was altered: its hash does not match",
                    record.seq
                ));
            }
            if record.prev != prev {
                report.problems.push(format!(
                    "{at}: record {} does not follow record {seq}: a record before it was removed, \
                     or it was inserted",
                    record.seq
                ));
            } else if record.seq != seq + 1 {
                report.problems.push(format!(
                    "{at}: record {} follows record {seq}: the sequence is broken",
                    record.seq
                ));
            }
            prev = record.hash;
            seq = record.seq;
        }
    }
    Ok(report)
}

/// Which records [`query`] returns.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this key (id or fingerprint).
    pub key: Option<String>,
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
}

/// The records of the log in `dir` that match `query`, in order.
pub fn query(dir: &Path, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
    let mut out = Vec::new();
    for path in files(dir)? {
        let reader = BufReader::new(File::open(&path).map_err(|e| AuditError::Open {
            path: path.clone(),
            message: e.to_string(),
        })?);
        for line in reader.lines().map_while(Result::ok) {
            let Ok(record) = serde_json::from_str::<AuditRecord>(&line) else {
                continue;
            };
            let key_matches = query.key.as_ref().is_none_or(|k| *k == record.key);
            let recent = query
                .since
                .is_none_or(|since| Timestamp::parse(&record.time).is_some_and(|t| t >= since));
            if key_matches && recent {
                out.push(record);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        let mut request = Request::new("key-1", "gpt-4o-mini");
        request.source_ip = "10.0.0.1".parse().ok();
        let decision = crate::Engine::new(
            crate::Store::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies"))
                .unwrap(),
        )
        .decide(&request);
        let mut record = AuditRecord::of(&request, &decision);
        record.seq = 7;
        record.prev = "ab".repeat(32);
        record
    }

    /// The writer serializes a record once and splices its hash in: the line must be exactly
    /// what serializing the hashed record gives, and carry the hash `verify` recomputes.
    #[test]
    fn a_sealed_line_is_the_hashed_record_serialized() {
        let mut sealed = record();
        let mut out = b"earlier line\n".to_vec();
        sealed.seal_into(&mut out).unwrap();
        let line = out.strip_prefix(b"earlier line\n".as_slice()).unwrap();
        let mut expected = serde_json::to_vec(&sealed).unwrap();
        expected.push(b'\n');
        assert_eq!(
            String::from_utf8_lossy(line),
            String::from_utf8_lossy(&expected)
        );
        assert_eq!(sealed.hash.len(), 64);
        assert_eq!(sealed.digest(), sealed.hash);
    }

    /// `hash` must stay the last member of a record: the writer splices it in before the
    /// closing `"}` and otherwise serializes every record twice.
    #[test]
    fn the_hash_is_the_last_member() {
        let mut unhashed = record();
        unhashed.hash.clear();
        let json = serde_json::to_string(&unhashed).unwrap();
        assert!(json.ends_with(r#","hash":""}"#), "{json}");
    }
}
