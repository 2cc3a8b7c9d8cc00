//! What keyscope knows about a leaked key, for leak response: whose it is, what it did since it
//! leaked, and what it can still do. The scanner says where and when the key leaked; this half
//! reads the store, the ledger and the audit log, which no provider-side tool can see.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::audit::{AuditQuery, query};
use crate::engine::{Engine, LedgerMode};
use crate::keys::{KeyActivity, KeyError, KeyKind, KeyState, Registry};
use crate::request::Request;
use crate::time::Timestamp;

/// Whose a key is: its scope and what the scope allows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ownership {
    /// The scope.
    pub scope: String,
    /// The scope's owner.
    pub owner: Option<String>,
    /// Its environment.
    pub environment: Option<&'static str>,
    /// Whether it handles protected health information.
    pub phi: bool,
    /// The daily money cap of the scope itself, micro-dollars.
    pub day_cap_micros: Option<u64>,
    /// The monthly money cap of the scope itself, micro-dollars.
    pub month_cap_micros: Option<u64>,
}

/// What a key can still do now, by the policy itself.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reach {
    /// The key's state now.
    pub state: KeyState,
    /// The catalog models a request from inside its networks would be allowed to call now.
    pub models: Vec<String>,
    /// The tightest remaining daily money over the scope chain, micro-dollars (none: no cap).
    pub day_remaining_micros: Option<u64>,
    /// The same for the month.
    pub month_remaining_micros: Option<u64>,
    /// The networks requests must come from (empty: anywhere).
    pub networks: Vec<String>,
    /// When the key expires.
    pub expires: Option<Timestamp>,
}

/// What the ledger and the audit log saw a key do since it leaked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UseSince {
    /// From when.
    pub since: Option<Timestamp>,
    /// Requests, tokens, spend, models and last use, from the ledger.
    #[serde(flatten)]
    pub activity: KeyActivity,
    /// The source addresses of its decisions, from the audit log (none without one).
    pub source_ips: Vec<String>,
    /// Whether an audit log was read for the addresses.
    pub audit_log_read: bool,
}

/// What keyscope knows about one registered key.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Assessment {
    /// The key id.
    pub key_id: String,
    /// A key keyscope issued, or a provider key of `scopes.toml`.
    pub kind: KeyKind,
    /// Whose it is.
    pub ownership: Ownership,
    /// Its use since `since`.
    pub use_since: UseSince,
    /// What it can still do.
    pub reach: Reach,
}

impl Registry<'_> {
    /// Assesses the registered key `key_id` (registry or `scopes.toml`) at `now`: its owner,
    /// its use since `since` (the ledger, and the audit log in `audit_dir` for addresses), and
    /// its reach by `engine`'s policy.
    pub fn assess(
        &self,
        engine: &Engine,
        key_id: &str,
        since: Option<Timestamp>,
        audit_dir: Option<&Path>,
        now: Timestamp,
    ) -> Result<Assessment, KeyError> {
        let store = engine.store();
        let (kind, scope_id, state, expires) = match self.ledger().key(key_id)? {
            Some(record) if record.kind == KeyKind::Scoped => (
                KeyKind::Scoped,
                record.scope.clone(),
                record.state(now).0,
                record.expires,
            ),
            quarantine => {
                let key = store
                    .scopes()
                    .keys()
                    .iter()
                    .find(|k| k.id == key_id)
                    .ok_or_else(|| KeyError::UnknownKey(key_id.to_owned()))?;
                let state = match (key.revoked, quarantine.and_then(|q| q.revoked)) {
                    (true, _) | (_, Some(_)) => KeyState::Revoked,
                    _ if key.expires.is_some_and(|e| e <= now) => KeyState::Expired,
                    _ => KeyState::Active,
                };
                (KeyKind::Provider, key.scope.clone(), state, key.expires)
            }
        };
        let scope = store
            .scopes()
            .scope(&scope_id)
            .ok_or_else(|| KeyError::UnknownScope(scope_id.clone()))?;
        let ownership = Ownership {
            scope: scope.id.clone(),
            owner: scope.owner.clone(),
            environment: scope.environment.map(|e| e.as_str()),
            phi: scope.phi,
            day_cap_micros: scope.budget.day_micros,
            month_cap_micros: scope.budget.month_micros,
        };
        let activity = self.activity(key_id, since)?;
        let (source_ips, audit_log_read) = match audit_dir {
            Some(dir) => (source_ips(dir, key_id, since)?, true),
            None => (Vec::new(), false),
        };
        let mut reach = self.reach(engine, key_id, now)?;
        reach.state = state;
        reach.expires = expires;
        reach.networks = scope.networks.iter().map(ToString::to_string).collect();
        Ok(Assessment {
            key_id: key_id.to_owned(),
            kind,
            ownership,
            use_since: UseSince {
                since,
                activity,
                source_ips,
                audit_log_read,
            },
            reach,
        })
    }

    /// The models `key_id` may call now and its remaining budget: every catalog model decided
    /// for a one-token request from inside the key's first network, as the service's resource
    /// search does, against the ledger's figures (nothing is held).
    fn reach(&self, engine: &Engine, key_id: &str, now: Timestamp) -> Result<Reach, KeyError> {
        let store = engine.store();
        let source_ip = store
            .scopes()
            .key(key_id)
            .map(|k| k.scope.clone())
            .or_else(|| self.ledger().key(key_id).ok().flatten().map(|r| r.scope))
            .and_then(|scope| {
                store
                    .scopes()
                    .scope(&scope)
                    .and_then(|s| s.networks.first().map(|n| n.network()))
            });
        let mut reach = Reach {
            state: KeyState::Active,
            models: Vec::new(),
            day_remaining_micros: None,
            month_remaining_micros: None,
            networks: Vec::new(),
            expires: None,
        };
        for model in store.catalog().models() {
            let mut request = Request::new(key_id, &model.id);
            request.source_ip = source_ip;
            request.input_tokens = 1;
            request.max_output_tokens = Some(1);
            request.time = Some(now);
            let decision = engine.decide_with_ledger(&request, self.ledger(), LedgerMode::Check)?;
            if decision.allowed {
                reach.models.push(model.id.clone());
            }
            for figure in &decision.budgets {
                let Some(cap) = figure.cap_micros else {
                    continue;
                };
                let left = cap
                    .saturating_sub(figure.committed_micros)
                    .saturating_sub(figure.held_micros);
                let slot = match figure.window {
                    "day" => &mut reach.day_remaining_micros,
                    _ => &mut reach.month_remaining_micros,
                };
                *slot = Some(slot.map_or(left, |now| now.min(left)));
            }
        }
        Ok(reach)
    }
}

/// The distinct source addresses of `key_id`'s decisions in the audit log in `dir`.
fn source_ips(dir: &Path, key_id: &str, since: Option<Timestamp>) -> Result<Vec<String>, KeyError> {
    let records = query(
        dir,
        &AuditQuery {
            key: Some(key_id.to_owned()),
            since,
        },
    )
    .map_err(|e| KeyError::Invalid(format!("cannot read the audit log: {e}")))?;
    let ips: BTreeSet<String> = records.into_iter().filter_map(|r| r.source_ip).collect();
    Ok(ips.into_iter().collect())
}
