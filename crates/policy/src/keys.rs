//! Scoped keys: the API keys keyscope issues, one per application and environment, and their
//! lifecycle (issue, rotate with an overlap or until idle, revoke, expire).
//!
//! The one design decision: **a key proves its own shape.** A secret is
//! `ksk_<env>_<30 random base62><6 base62 CRC-32>`: a fixed public prefix, an environment marker
//! (`prod`, `stg`, `dev`, `any`), 178 bits from the operating system's generator, and a CRC-32 of
//! everything before it, as GitHub's tokens carry. The scanner finds one with no entropy
//! guessing and no false positives (a wrong checksum is not a key), and a mistyped key is
//! refused before any lookup. Only the SHA-256 of a secret is stored; the secret is shown once,
//! when it is issued.
//!
//! The registry lives with the budget ledger ([`Ledger`]), in SQLite or in Redis, so a
//! revocation reaches every service that shares the ledger without a reload. Provider keys
//! registered by fingerprint in `scopes.toml` keep working, and can be quarantined here.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::error::LedgerError;
use crate::ledger::{Ledger, RequestState};
use crate::scopes::Environment;
use crate::store::Store;
use crate::time::Timestamp;

/// The public prefix of every keyscope secret.
pub const SECRET_PREFIX: &str = "ksk_";

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Random base62 characters: 30 x log2(62) = 178 bits.
const RANDOM_CHARS: usize = 30;
/// A CRC-32 in base62, zero-padded.
const CHECKSUM_CHARS: usize = 6;
const MARKERS: [&str; 4] = ["prod", "stg", "dev", "any"];

/// The environment marker a key of a scope in `environment` carries.
pub fn environment_marker(environment: Option<Environment>) -> &'static str {
    match environment {
        Some(Environment::Production) => "prod",
        Some(Environment::Staging) => "stg",
        Some(Environment::Development) => "dev",
        None => "any",
    }
}

/// A keyscope secret, checked. Its `Debug` and `Display` show it redacted; only
/// [`expose`](Self::expose) gives the whole text, for the one time it is printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A new secret for a scope in `environment`, from the operating system's generator.
    pub fn generate(environment: Option<Environment>) -> Result<Self, KeyError> {
        let mut body = format!("{SECRET_PREFIX}{}_", environment_marker(environment));
        let mut filled = 0;
        let mut bytes = [0u8; 64];
        while filled < RANDOM_CHARS {
            getrandom::fill(&mut bytes).map_err(|e| KeyError::Randomness(e.to_string()))?;
            // 248 = 4 x 62: rejecting the bytes above it keeps every character equally likely.
            for byte in bytes
                .iter()
                .filter(|b| **b < 248)
                .take(RANDOM_CHARS - filled)
            {
                body.push(char::from(BASE62[usize::from(*byte % 62)]));
                filled += 1;
            }
        }
        let checksum = checksum(body.as_bytes());
        body.push_str(&checksum);
        Ok(Self(body))
    }

    /// Checks `text` as a keyscope secret: prefix, marker, length, alphabet and checksum.
    pub fn parse(text: &str) -> Result<Self, MalformedKey> {
        let rest = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(MalformedKey::Prefix)?;
        let (marker, tail) = rest.split_once('_').ok_or(MalformedKey::Marker)?;
        if !MARKERS.contains(&marker) {
            return Err(MalformedKey::Marker);
        }
        if tail.len() != RANDOM_CHARS + CHECKSUM_CHARS {
            return Err(MalformedKey::Length(tail.len()));
        }
        if !tail.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(MalformedKey::Alphabet);
        }
        let (body, sum) = text.split_at(text.len() - CHECKSUM_CHARS);
        if checksum(body.as_bytes()) != sum {
            return Err(MalformedKey::Checksum);
        }
        Ok(Self(text.to_owned()))
    }

    /// Whether `text` starts like a keyscope secret (`ksk_<marker>_`), checked or not: a subject
    /// that does must never be echoed.
    pub fn looks_like(text: &str) -> bool {
        text.strip_prefix(SECRET_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .is_some_and(|(marker, _)| MARKERS.contains(&marker))
    }

    /// The whole secret: print it once, at issue, and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the secret, lowercase hex: what the registry stores.
    pub fn hash(&self) -> String {
        secret_hash(&self.0)
    }

    /// The prefix, marker and last four characters: `ksk_prod_…a1B2`.
    pub fn redacted(&self) -> String {
        let marker_end = self.0[SECRET_PREFIX.len()..]
            .find('_')
            .map_or(SECRET_PREFIX.len(), |i| SECRET_PREFIX.len() + i + 1);
        format!("{}…{}", &self.0[..marker_end], &self.0[self.0.len() - 4..])
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.redacted())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The SHA-256 of `text`, lowercase hex.
pub fn secret_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    hex
}

/// The CRC-32 of `body` in base62, six characters, zero-padded.
fn checksum(body: &[u8]) -> String {
    let mut value = crc32fast::hash(body);
    let mut digits = [b'0'; CHECKSUM_CHARS];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(value % 62) as usize];
        value /= 62;
    }
    digits.iter().map(|b| char::from(*b)).collect()
}

/// Why a text is not a keyscope secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MalformedKey {
    /// It does not start with `ksk_`.
    #[error("a keyscope key starts with `ksk_`")]
    Prefix,
    /// The environment marker is not one keyscope writes.
    #[error("the environment marker is not `prod`, `stg`, `dev` or `any`")]
    Marker,
    /// Too short or too long.
    #[error("the key body has {0} characters; a keyscope key has 36")]
    Length(usize),
    /// A character outside base62.
    #[error("the key body holds a character outside A-Z, a-z, 0-9")]
    Alphabet,
    /// The checksum does not match: a typo, or not a keyscope key.
    #[error("the checksum does not match: the key is mistyped or truncated")]
    Checksum,
}

/// What a registry entry stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    /// A key keyscope issued: the registry holds its hash.
    Scoped,
    /// A provider key registered by fingerprint in `scopes.toml`: the registry holds only its
    /// quarantine.
    Provider,
}

/// When a rotated key stops being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "after")]
pub enum Retirement {
    /// At a fixed time: the end of the overlap.
    Overlap {
        /// When the overlap ends.
        at: Timestamp,
    },
    /// Once no request has used it for `idle_seconds` (usage-drained rotation).
    Idle {
        /// How long without a request.
        idle_seconds: i64,
        /// When the rotation began: the idle time counts from here when the key is not used.
        since: Timestamp,
    },
}

/// Why and when a key was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When.
    pub at: Timestamp,
    /// Why: `leaked`, `offboarding`, `rotation`, ...
    pub reason: String,
}

/// The lifecycle states a key can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum KeyState {
    /// Valid (possibly inside a rotation's overlap).
    Active,
    /// Replaced by its successor; the overlap is over.
    Superseded,
    /// Revoked (a provider key: quarantined as compromised).
    Revoked,
    /// Past its expiry.
    Expired,
}

impl KeyState {
    /// The name a user types and reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Superseded => "superseded",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    /// Parses `active`, `superseded`, `revoked` or `expired`.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Active, Self::Superseded, Self::Revoked, Self::Expired]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One key of the registry: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key id (`k-…`, or the `scopes.toml` id of a provider key).
    pub id: String,
    /// A scoped key or a quarantined provider key.
    pub kind: KeyKind,
    /// SHA-256 of the secret, hex (scoped keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// `ksk_prod_…a1B2`: enough to recognise the key, never enough to use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
    /// The scope it belongs to.
    pub scope: String,
    /// A label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was issued.
    pub created: Timestamp,
    /// When it stops being valid (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// The key it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predecessor: Option<String>,
    /// The key that replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<String>,
    /// When a rotated key stops being valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retirement: Option<Retirement>,
    /// The last request the ledger saw from the key, while that matters (a usage-drained
    /// rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Timestamp>,
    /// Its revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
    /// The lifecycle events already written for it, so each is recorded once.
    #[serde(default)]
    pub recorded: Vec<KeyEventKind>,
}

impl KeyRecord {
    /// The key's state at `now`, and since when (for every state but active).
    pub fn state(&self, now: Timestamp) -> (KeyState, Option<Timestamp>) {
        if let Some(revoked) = self.revoked.as_ref().filter(|r| r.at <= now) {
            return (KeyState::Revoked, Some(revoked.at));
        }
        if let Some(at) = self.retired_at().filter(|at| *at <= now) {
            return (KeyState::Superseded, Some(at));
        }
        if let Some(expires) = self.expires.filter(|at| *at <= now) {
            return (KeyState::Expired, Some(expires));
        }
        (KeyState::Active, None)
    }

    /// When the key stops (or stopped) being valid after a rotation, as far as is known now: a
    /// usage-drained key retires `idle_seconds` after its last use.
    pub fn retired_at(&self) -> Option<Timestamp> {
        match self.retirement? {
            Retirement::Overlap { at } => Some(at),
            Retirement::Idle {
                idle_seconds,
                since,
            } => {
                let last = self.last_used.map_or(since, |used| used.max(since));
                Some(Timestamp::from_unix(
                    last.unix().saturating_add(idle_seconds),
                ))
            }
        }
    }
}

/// A lifecycle event, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum KeyEventKind {
    /// A key was issued.
    Issued,
    /// A key was rotated: its successor was issued.
    Rotated,
    /// A rotated key's overlap ended.
    Superseded,
    /// A key was revoked.
    Revoked,
    /// A provider key was quarantined as compromised.
    Quarantined,
    /// A key passed its expiry.
    Expired,
}

impl KeyEventKind {
    /// `key-issued`, `key-rotated`, ...: the audit record's `event`.
    pub fn event_name(self) -> &'static str {
        match self {
            Self::Issued => "key-issued",
            Self::Rotated => "key-rotated",
            Self::Superseded => "key-superseded",
            Self::Revoked => "key-revoked",
            Self::Quarantined => "key-quarantined",
            Self::Expired => "key-expired",
        }
    }
}

/// Something that happened to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    /// What.
    pub kind: KeyEventKind,
    /// Which key.
    pub key_id: String,
    /// Its scope.
    pub scope: String,
    /// When.
    pub at: Timestamp,
    /// Why (a revocation's reason), or the successor's id (a rotation).
    pub detail: Option<String>,
}

impl KeyEvent {
    fn of(kind: KeyEventKind, record: &KeyRecord, at: Timestamp, detail: Option<String>) -> Self {
        Self {
            kind,
            key_id: record.id.clone(),
            scope: record.scope.clone(),
            at,
            detail,
        }
    }
}

/// How to retire the key a rotation replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationEnd {
    /// Keep it valid for this many seconds.
    Overlap(i64),
    /// Keep it valid until it has not been used for this many seconds.
    UntilIdle(i64),
}

/// The default overlap of a rotation: a day.
pub const DEFAULT_OVERLAP_SECONDS: i64 = 86_400;

/// Why a registry operation failed. Nothing is changed when one fails.
#[derive(Debug, Error, miette::Diagnostic)]
pub enum KeyError {
    /// No key with this id.
    #[error("no key with id `{0}` in the registry or in scopes.toml")]
    #[diagnostic(
        code(keyscope::key::unknown),
        help("`keyscope key list` shows the keys; a key id looks like `k-…`")
    )]
    UnknownKey(String),
    /// No scope with this id.
    #[error("unknown scope `{0}`")]
    #[diagnostic(code(keyscope::key::unknown_scope))]
    UnknownScope(String),
    /// The key is not active, so the operation does not apply.
    #[error("key `{id}` is {state} since {since}; only an active key can be {operation}")]
    #[diagnostic(code(keyscope::key::not_active))]
    NotActive {
        /// The key.
        id: String,
        /// Its state.
        state: &'static str,
        /// Since when.
        since: Timestamp,
        /// What was asked: `rotated`, `revoked`.
        operation: &'static str,
    },
    /// The key was already revoked.
    #[error("key `{id}` was already revoked at {at} ({reason})")]
    #[diagnostic(code(keyscope::key::already_revoked))]
    AlreadyRevoked {
        /// The key.
        id: String,
        /// When.
        at: Timestamp,
        /// Why.
        reason: String,
    },
    /// A duration or reason that cannot be used.
    #[error("{0}")]
    #[diagnostic(code(keyscope::key::invalid))]
    Invalid(String),
    /// The operating system's generator failed.
    #[error("cannot read randomness from the operating system: {0}")]
    #[diagnostic(code(keyscope::key::randomness))]
    Randomness(String),
    /// The ledger holding the registry failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Ledger(#[from] LedgerError),
}

/// A new key: its secret (shown once) and its record.
#[derive(Debug)]
pub struct IssuedKey {
    /// The secret: print it once.
    pub secret: Secret,
    /// What the registry holds.
    pub record: KeyRecord,
}

/// What an issue or rotation asks for.
#[derive(Debug, Clone, Default)]
pub struct IssueOptions {
    /// A label.
    pub name: Option<String>,
    /// Valid for this many seconds from issue.
    pub expires_in_seconds: Option<i64>,
}

/// The key registry of a store and a ledger: issue, rotate, revoke, quarantine and list keys.
/// Every change returns the lifecycle events it caused, for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Registry<'a> {
    store: &'a Store,
    ledger: &'a Ledger,
}

impl<'a> Registry<'a> {
    /// The registry in `ledger`, for the scopes of `store`.
    pub fn new(store: &'a Store, ledger: &'a Ledger) -> Self {
        Self { store, ledger }
    }

    /// The ledger the registry lives in.
    pub(crate) fn ledger(&self) -> &'a Ledger {
        self.ledger
    }

    /// Issues a key in `scope` at `now`.
    pub fn issue(
        &self,
        scope: &str,
        options: &IssueOptions,
        now: Timestamp,
    ) -> Result<(IssuedKey, Vec<KeyEvent>), KeyError> {
        let issued = self.new_key(scope, options, now, None)?;
        self.ledger.key_insert(&issued.record)?;
        let event = KeyEvent::of(KeyEventKind::Issued, &issued.record, now, None);
        Ok((issued, vec![event]))
    }

    fn new_key(
        &self,
        scope: &str,
        options: &IssueOptions,
        now: Timestamp,
        predecessor: Option<&str>,
    ) -> Result<IssuedKey, KeyError> {
        let found = self
            .store
            .scopes()
            .scope(scope)
            .ok_or_else(|| KeyError::UnknownScope(scope.to_owned()))?;
        let expires = match options.expires_in_seconds {
            Some(seconds) if seconds <= 0 => {
                return Err(KeyError::Invalid("an expiry must be in the future".into()));
            }
            Some(seconds) => Some(Timestamp::from_unix(now.unix().saturating_add(seconds))),
            None => None,
        };
        let secret = Secret::generate(found.environment)?;
        let record = KeyRecord {
            id: new_key_id()?,
            kind: KeyKind::Scoped,
            hash: Some(secret.hash()),
            redacted: Some(secret.redacted()),
            scope: found.id.clone(),
            name: options.name.clone(),
            created: now,
            expires,
            predecessor: predecessor.map(str::to_owned),
            successor: None,
            retirement: None,
            last_used: None,
            revoked: None,
            recorded: vec![KeyEventKind::Issued],
        };
        Ok(IssuedKey { secret, record })
    }

    /// Rotates key `id`: issues a successor in the same scope (with the same name and lifetime)
    /// and keeps the old key valid until `end`.
    pub fn rotate(
        &self,
        id: &str,
        end: RotationEnd,
        now: Timestamp,
    ) -> Result<(IssuedKey, Vec<KeyEvent>), KeyError> {
        let mut old = self.scoped(id)?;
        if let (
            state @ (KeyState::Revoked | KeyState::Superseded | KeyState::Expired),
            Some(since),
        ) = old.state(now)
        {
            return Err(KeyError::NotActive {
                id: id.to_owned(),
                state: state.as_str(),
                since,
                operation: "rotated",
            });
        }
        if let Some(successor) = &old.successor {
            return Err(KeyError::Invalid(format!(
                "key `{id}` is already being rotated; its successor is `{successor}`"
            )));
        }
        let retirement = match end {
            RotationEnd::Overlap(seconds) if seconds >= 0 => Retirement::Overlap {
                at: Timestamp::from_unix(now.unix().saturating_add(seconds)),
            },
            RotationEnd::UntilIdle(seconds) if seconds > 0 => Retirement::Idle {
                idle_seconds: seconds,
                since: now,
            },
            _ => {
                return Err(KeyError::Invalid(
                    "a rotation's time must be positive".into(),
                ));
            }
        };
        let options = IssueOptions {
            name: old.name.clone(),
            expires_in_seconds: old.expires.map(|e| e.unix() - old.created.unix()),
        };
        let issued = self.new_key(&old.scope, &options, now, Some(id))?;
        if matches!(retirement, Retirement::Idle { .. }) {
            old.last_used = self.last_use(id)?;
        }
        old.successor = Some(issued.record.id.clone());
        old.retirement = Some(retirement);
        old.recorded.push(KeyEventKind::Rotated);
        self.ledger.key_insert(&issued.record)?;
        self.ledger.key_update(&old)?;
        let events = vec![
            KeyEvent::of(
                KeyEventKind::Rotated,
                &old,
                now,
                Some(issued.record.id.clone()),
            ),
            KeyEvent::of(
                KeyEventKind::Issued,
                &issued.record,
                now,
                Some(id.to_owned()),
            ),
        ];
        Ok((issued, events))
    }

    /// Revokes key `id` at `now` for `reason`. A provider key of `scopes.toml` is quarantined:
    /// every decision for it then denies as compromised.
    pub fn revoke(
        &self,
        id: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<(KeyRecord, Vec<KeyEvent>), KeyError> {
        if reason.trim().is_empty() || reason.len() > 200 {
            return Err(KeyError::Invalid(
                "a revocation needs a reason of at most 200 characters".into(),
            ));
        }
        let mut record = match self.ledger.key(id)? {
            Some(record) => record,
            None => self.provider_record(id, now)?,
        };
        if let Some(revoked) = &record.revoked {
            return Err(KeyError::AlreadyRevoked {
                id: id.to_owned(),
                at: revoked.at,
                reason: revoked.reason.clone(),
            });
        }
        let kind = match record.kind {
            KeyKind::Scoped => KeyEventKind::Revoked,
            KeyKind::Provider => KeyEventKind::Quarantined,
        };
        record.revoked = Some(Revocation {
            at: now,
            reason: reason.to_owned(),
        });
        record.recorded.push(kind);
        if record.kind == KeyKind::Provider && record.recorded.len() == 1 {
            self.ledger.key_insert(&record)?;
        } else {
            self.ledger.key_update(&record)?;
        }
        let event = KeyEvent::of(kind, &record, now, Some(reason.to_owned()));
        Ok((record, vec![event]))
    }

    /// The registry entry a quarantine of the `scopes.toml` key `id` starts from.
    fn provider_record(&self, id: &str, now: Timestamp) -> Result<KeyRecord, KeyError> {
        let key = self
            .store
            .scopes()
            .keys()
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyError::UnknownKey(id.to_owned()))?;
        Ok(KeyRecord {
            id: key.id.clone(),
            kind: KeyKind::Provider,
            hash: None,
            redacted: None,
            scope: key.scope.clone(),
            name: None,
            created: key.created.min(now),
            expires: key.expires,
            predecessor: None,
            successor: None,
            retirement: None,
            last_used: None,
            revoked: None,
            recorded: Vec::new(),
        })
    }

    /// A scoped key of the registry.
    fn scoped(&self, id: &str) -> Result<KeyRecord, KeyError> {
        match self.ledger.key(id)? {
            Some(record) if record.kind == KeyKind::Scoped => Ok(record),
            Some(_) => Err(KeyError::Invalid(format!(
                "key `{id}` is a provider key of scopes.toml; keyscope cannot rotate it: rotate \
                 it at the provider and register the new fingerprint"
            ))),
            None if self.store.scopes().keys().iter().any(|k| k.id == id) => {
                Err(KeyError::Invalid(format!(
                    "key `{id}` is a provider key of scopes.toml; keyscope cannot rotate it: \
                     rotate it at the provider and register the new fingerprint"
                )))
            }
            None => Err(KeyError::UnknownKey(id.to_owned())),
        }
    }

    /// One key, by id.
    pub fn show(&self, id: &str) -> Result<KeyRecord, KeyError> {
        self.ledger
            .key(id)?
            .ok_or_else(|| KeyError::UnknownKey(id.to_owned()))
    }

    /// Every key of the registry.
    pub fn list(&self) -> Result<Vec<KeyRecord>, KeyError> {
        let mut keys = self.ledger.keys()?;
        keys.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(keys)
    }

    /// Records the transitions that time made (overlaps that ended, drained keys, expiries)
    /// since they were last recorded, and returns them as events, each once.
    pub fn settle(&self, now: Timestamp) -> Result<Vec<KeyEvent>, KeyError> {
        let mut events = Vec::new();
        for mut record in self.ledger.keys()? {
            let kind = match record.state(now) {
                (KeyState::Superseded, Some(at)) => (KeyEventKind::Superseded, at),
                (KeyState::Expired, Some(at)) => (KeyEventKind::Expired, at),
                _ => continue,
            };
            if record.recorded.contains(&kind.0) {
                continue;
            }
            record.recorded.push(kind.0);
            self.ledger.key_update(&record)?;
            let detail = match kind.0 {
                KeyEventKind::Superseded => record.successor.clone(),
                _ => None,
            };
            events.push(KeyEvent::of(kind.0, &record, kind.1, detail));
        }
        Ok(events)
    }

    /// When the ledger last saw a request made with key `id`.
    pub fn last_use(&self, id: &str) -> Result<Option<Timestamp>, KeyError> {
        Ok(self.activity(id, None)?.last_use)
    }

    /// What key `id` did since `since` (everything, without it): requests, tokens, spend,
    /// models, from the ledger.
    pub fn activity(&self, id: &str, since: Option<Timestamp>) -> Result<KeyActivity, KeyError> {
        let mut activity = KeyActivity::default();
        for record in self.ledger.export()? {
            if record.key_id != id || since.is_some_and(|s| record.time < s) {
                continue;
            }
            activity.requests += 1;
            activity.last_use = activity.last_use.max(Some(record.time));
            match record.state {
                RequestState::Committed => {
                    activity.committed_micros += record.cost_micros;
                    activity.tokens += record.committed_tokens();
                }
                RequestState::Held => activity.held_micros += record.held_micros,
                RequestState::Released | RequestState::Expired => {}
            }
            *activity.models.entry(record.model).or_default() += 1;
        }
        Ok(activity)
    }
}

/// What a key did, from the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyActivity {
    /// Reservations made with it.
    pub requests: u64,
    /// Tokens committed.
    pub tokens: u64,
    /// Micro-dollars committed.
    pub committed_micros: u64,
    /// Micro-dollars still held.
    pub held_micros: u64,
    /// Requests per model.
    pub models: std::collections::BTreeMap<String, u64>,
    /// The last request.
    pub last_use: Option<Timestamp>,
}

/// A fresh key id: `k-` and 12 lowercase letters and digits (62 bits).
fn new_key_id() -> Result<String, KeyError> {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Randomness(e.to_string()))?;
    let mut id = String::from("k-");
    id.extend(
        bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 31)])),
    );
    Ok(id)
}

/// Parses a duration: `90d`, `24h`, `30m`, `45s` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: i64 = number.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    number.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_secrets_check_and_carry_their_environment() {
        for env in [
            Some(Environment::Production),
            Some(Environment::Staging),
            Some(Environment::Development),
            None,
        ] {
            let secret = Secret::generate(env).unwrap();
            let text = secret.expose().to_owned();
            assert!(text.starts_with(&format!("ksk_{}_", environment_marker(env))));
            assert_eq!(Secret::parse(&text).unwrap(), secret);
            assert!(!format!("{secret:?}{secret}").contains(&text[10..30]));
        }
    }

    #[test]
    fn a_typo_fails_the_checksum() {
        let text = Secret::generate(None).unwrap().expose().to_owned();
        let mut bytes = text.clone().into_bytes();
        let at = 12;
        bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(bytes).unwrap();
        assert_eq!(Secret::parse(&typo), Err(MalformedKey::Checksum));
        assert_eq!(
            Secret::parse(&text[..text.len() - 1]),
            Err(MalformedKey::Length(35))
        );
        assert_eq!(
            Secret::parse(&text.replace("ksk_any_", "ksk_xyz_")),
            Err(MalformedKey::Marker)
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90d"), Some(90 * 86_400));
        assert_eq!(parse_duration("24h"), Some(86_400));
        assert_eq!(parse_duration("1h"), Some(3_600));
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("30"), Some(30));
        assert_eq!(parse_duration("3y"), None);
        assert_eq!(parse_duration("-1h"), None);
    }

    #[test]
    fn a_drained_key_retires_idle_seconds_after_its_last_use() {
        let record = KeyRecord {
            id: "k-test".into(),
            kind: KeyKind::Scoped,
            hash: None,
            redacted: None,
            scope: "s".into(),
            name: None,
            created: Timestamp::from_unix(0),
            expires: None,
            predecessor: None,
            successor: Some("k-next".into()),
            retirement: Some(Retirement::Idle {
                idle_seconds: 3_600,
                since: Timestamp::from_unix(1_000),
            }),
            last_used: Some(Timestamp::from_unix(5_000)),
            revoked: None,
            recorded: Vec::new(),
        };
        assert_eq!(
            record.state(Timestamp::from_unix(8_599)).0,
            KeyState::Active
        );
        assert_eq!(
            record.state(Timestamp::from_unix(8_600)),
            (KeyState::Superseded, Some(Timestamp::from_unix(8_600)))
        );
    }
}
