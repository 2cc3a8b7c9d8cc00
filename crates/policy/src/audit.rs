//! The audit log: every decision as one JSON line, hash-chained, so that an edited, inserted or
//! removed record is found and named (HIPAA's audit control standard asks for exactly this).
//!
//! The one design decision: **each record names the SHA-256 of the record before it, and its
//! own hash covers everything it says**, across files: `audit-YYYY-MM-DD-NNN.jsonl` rotate by
//! UTC day and by size, and the first record of a file names the last hash of the file before.
//! [`verify`] walks the chain and names the first record that breaks it.
//!
//! Writing is off the decision path: [`AuditLog::record`] hands the record to a writer thread
//! through a bounded queue. A full queue, or a writer that failed (a full or failing disk), is an
//! error at once, and the caller denies: no decision goes unrecorded silently.
//!
//! A record never holds a key: the subject is the registered key id, or the SHA-256
//! fingerprint of whatever the caller sent.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

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
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// An open audit log: a writer thread behind a bounded queue.
#[derive(Debug)]
pub struct AuditLog {
    queue: Mutex<Option<SyncSender<AuditRecord>>>,
    capacity: usize,
    failure: Arc<Mutex<Option<String>>>,
    failed: Arc<AtomicBool>,
    /// Records queued and not yet written: what a service reports as its audit backlog.
    pending: Arc<AtomicUsize>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A file grows to this size before the log moves to the next one.
const MAX_FILE_BYTES: u64 = 64 << 20;

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
        let (queue, records) = std::sync::mpsc::sync_channel(capacity.max(1));
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
                        let lost = unwritten + records.try_iter().count();
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
            queue: Mutex::new(Some(queue)),
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
        if self.failed.load(Ordering::SeqCst) {
            return Err(self.failure());
        }
        let queue = self.queue.lock().map_err(|_| self.failure())?;
        let Some(queue) = queue.as_ref() else {
            return Err(AuditError::Failed("the audit log is closed".to_owned()));
        };
        // Counted before it is sent, so the writer never takes off more than was put on.
        self.pending.fetch_add(1, Ordering::SeqCst);
        let sent = queue.try_send(record);
        if sent.is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
        match sent {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(AuditError::Backlog(self.capacity)),
            Err(TrySendError::Disconnected(_)) => Err(self.failure()),
        }
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
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
        if let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) {
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

/// The writer thread: chains, writes and flushes every record it receives, in batches. A
/// failure comes back with how many records of the batch were not written for sure.
fn write_all(
    dir: &Path,
    tail: Tail,
    records: &Receiver<AuditRecord>,
    pending: &AtomicUsize,
) -> Result<(), (String, usize)> {
    let mut tail = tail;
    let mut out: Option<BufWriter<File>> = None;
    while let Ok(first) = records.recv() {
        let mut batch = vec![first];
        batch.extend(records.try_iter());
        let size = batch.len();
        write_batch(dir, &mut tail, &mut out, batch).map_err(|message| (message, size))?;
        pending.fetch_sub(size, Ordering::SeqCst);
    }
    Ok(())
}

/// Writes one batch to the current file (moving to the next one by day and size) and flushes it
/// to the disk.
fn write_batch(
    dir: &Path,
    tail: &mut Tail,
    out: &mut Option<BufWriter<File>>,
    batch: Vec<AuditRecord>,
) -> Result<(), String> {
    for mut record in batch {
        let day = record.time.get(..10).unwrap_or("0000-00-00").to_owned();
        if day != tail.day || tail.bytes >= MAX_FILE_BYTES {
            if let Some(mut file) = out.take() {
                file.flush().map_err(|e| e.to_string())?;
            }
            tail.part = if day == tail.day { tail.part + 1 } else { 0 };
            tail.day = day;
            tail.bytes = 0;
        }
        if out.is_none() {
            let path = dir.join(file_name(&tail.day, tail.part));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("`{}`: {e}", path.display()))?;
            *out = Some(BufWriter::new(file));
        }
        tail.seq += 1;
        record.seq = tail.seq;
        record.prev = std::mem::take(&mut tail.hash);
        record.hash = record.digest();
        tail.hash = record.hash.clone();
        let mut line = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        line.push(b'\n');
        tail.bytes += line.len() as u64;
        if let Some(file) = out.as_mut() {
            file.write_all(&line).map_err(|e| e.to_string())?;
        }
    }
    if let Some(file) = out.as_mut() {
        file.flush().map_err(|e| e.to_string())?;
        file.get_ref().sync_data().map_err(|e| e.to_string())?;
    }
    Ok(())
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
