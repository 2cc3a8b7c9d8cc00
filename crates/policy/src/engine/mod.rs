//! The decision engine: resolve the request against the store, gather the budget and rate
//! figures, ask Cedar, and deny whenever anything is off (fail closed).
//!
//! A decision travels through three steps: [`Engine::prepare`] resolves the key, the model, the
//! scope chain and the cost estimate, and fixes the decision's time from the engine's [`Clock`];
//! the ledger (when there is one) reads the chain's spend and hands it to the decision closure
//! inside its own atomic step ([`Ledger::reserve`]); [`evaluate`] turns the figures into
//! headroom, asks Cedar and writes the reasons.

use std::borrow::Cow;
use std::sync::Arc;

use cedar_policy::{Authorizer, Entities, EntityUid, PolicySet};

use crate::catalog::Model;
use crate::decision::{Decision, Estimate, Reason, ReasonEffect};
use crate::error::{LedgerError, StoreError};
use crate::keys::{KeyKind, KeyRecord, KeyState, Retirement, Secret};
use crate::ledger::{Caps, Hold, Ledger, Plan, Prior, ScopeUsage, Snapshot};
use crate::money::token_cost;
use crate::request::Request;
use crate::scopes::{Key, Scope, fingerprint, normalize_fingerprint};
use crate::store::Store;
use crate::time::{Timestamp, Windows};

mod evaluate;

/// Whether a ledger-backed decision only checks the budget or also reserves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerMode {
    /// Read the spend figures; write no hold.
    Check,
    /// Check and, when allowed, hold the worst-case estimate against the scope and its ancestors.
    Reserve,
}

/// Where the time of a decision comes from. Key age and expiry, the budget's day and month and
/// the rate limit's minute all follow it, so a caller who controls it controls them: by default
/// the engine reads its own clock and ignores a request's `context.time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// The system clock; a request's `context.time` is ignored.
    #[default]
    System,
    /// The system clock, but a request's `context.time` within `max_skew_seconds` of it is
    /// decided at that time (a gateway that stamps requests when they arrive). A time further
    /// off is denied with `keyscope:request-time-skew`. Holds still expire by the system clock.
    TrustRequestTime {
        /// How far, in seconds and either way, a request's time may be from the system clock.
        max_skew_seconds: u32,
    },
    /// A fixed instant, for every decision and every hold: replays and tests (`--now`).
    Fixed(Timestamp),
    /// Each request's `context.time` is the clock, for its decision and its hold (the system
    /// clock when a request has none). For decision fixtures and tests only: a service must
    /// never use it, because the caller then controls the clock.
    FromRequest,
}

impl Clock {
    /// The engine's time now: the fixed time of [`Clock::Fixed`], else the system clock. What
    /// settlements and holds are dated by.
    pub fn now(self) -> Timestamp {
        match self {
            Self::Fixed(at) => at,
            _ => Timestamp::now(),
        }
    }

    /// The engine's time now, and the time the decision of a request with `requested` is made
    /// at; `Err` with the skew in seconds when a trusted request time is too far off.
    fn resolve(self, requested: Option<Timestamp>) -> Result<(Timestamp, Timestamp), i64> {
        match (self, requested) {
            (Self::Fixed(at), _) => Ok((at, at)),
            (Self::FromRequest, Some(at)) => Ok((at, at)),
            (Self::TrustRequestTime { max_skew_seconds }, Some(at)) => {
                let now = Timestamp::now();
                let skew = at.unix().saturating_sub(now.unix());
                if skew.unsigned_abs() <= u64::from(max_skew_seconds) {
                    Ok((now, at))
                } else {
                    Err(skew)
                }
            }
            _ => {
                let now = Timestamp::now();
                Ok((now, now))
            }
        }
    }
}

/// Spend that happened outside a reservation, recorded as committed (imports, fixtures).
#[derive(Debug, Clone)]
pub struct SpendRecord {
    /// A unique id for the record.
    pub request_id: String,
    /// The scope the spend belongs to; its ancestors are charged too.
    pub scope: String,
    /// The model id.
    pub model: String,
    /// Cost in micro-dollars.
    pub cost_micros: u64,
    /// Tokens used.
    pub tokens: u64,
    /// When it happened: selects the day and month windows.
    pub time: Timestamp,
}

/// Decides requests against a loaded [`Store`]. `Send + Sync`: share it behind an `Arc` and
/// swap in a freshly loaded one to reload.
#[derive(Debug)]
pub struct Engine {
    store: Store,
    authorizer: Authorizer,
    clock: Clock,
}

/// A request resolved against the store, ready to be decided.
struct Prepared<'s> {
    /// The engine's clock: what expires holds.
    now: Timestamp,
    /// The decision's time: key age and expiry, rate minute.
    time: Timestamp,
    /// The day and month the decision's time falls in, in the store's time zone.
    windows: Windows,
    key: Cow<'s, Key>,
    /// The registry's record, for a key keyscope issued.
    record: Option<Arc<KeyRecord>>,
    chain: Vec<&'s Scope>,
    model: &'s Model,
    key_uid: Cow<'s, EntityUid>,
    /// The policies that can matter for this key and action (see `store::slice_policies`).
    policies: &'s PolicySet,
    /// The entities Cedar decides on: the store's, or those built for a registry key.
    entities: Cow<'s, Entities>,
    action_uid: &'s EntityUid,
    model_uid: &'s EntityUid,
    estimate: Estimate,
    total_tokens: u64,
    network_allowed: bool,
}

/// The key a request names.
enum Subject<'s> {
    /// A key of `scopes.toml`.
    Store(&'s Key),
    /// A key keyscope issued.
    Registry(Arc<KeyRecord>),
}

/// A registry key as the engine decides on it: the scope's settings apply as to any key.
fn registry_key(record: &KeyRecord) -> Key {
    Key {
        id: record.id.clone(),
        fingerprint: record.hash.as_ref().map(|h| format!("sha256:{h}")),
        scope: record.scope.clone(),
        created: record.created,
        expires: record.expires,
        // Revocation is the engine's own check for registry keys: see `check_registry_key`.
        revoked: false,
    }
}

/// An engine rule's reason, `keyscope:<id>`.
fn engine_reason(id: &str, message: impl Into<String>) -> Reason {
    Reason {
        id: format!("keyscope:{id}"),
        effect: ReasonEffect::Engine,
        message: message.into(),
    }
}

impl Engine {
    /// An engine over `store`, on the system clock.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            authorizer: Authorizer::new(),
            clock: Clock::System,
        }
    }

    /// Loads the store in `dir` and builds an engine over it.
    pub fn load(dir: &std::path::Path) -> Result<Self, StoreError> {
        Store::load(dir).map(Self::new)
    }

    /// The same engine on `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock decisions are made by.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The store decisions are made against.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Decides `request` without a ledger: budget caps apply to this request alone, as if
    /// nothing had been spent yet.
    pub fn decide(&self, request: &Request) -> Decision {
        match self.prepare(self.clock, request, None) {
            Ok(prepared) => {
                let usage = vec![ScopeUsage::default(); prepared.chain.len()];
                self.evaluate(request, &prepared, &usage)
            }
            Err(denied) => *denied,
        }
    }

    /// Decides `request` against the spend in `ledger`; with [`LedgerMode::Reserve`] an allowed
    /// request also holds its worst-case cost, atomically with the check. A request id names
    /// one request: a retry of it is decided again (a revoked key is denied on retry too) and
    /// keeps its hold; another request under a held id, or any request under a settled one, is
    /// denied. Ledger failures are errors, never allows.
    pub fn decide_with_ledger(
        &self,
        request: &Request,
        ledger: &Ledger,
        mode: LedgerMode,
    ) -> Result<Decision, LedgerError> {
        self.decide_on(self.clock, request, ledger, mode)
    }

    /// [`decide_with_ledger`](Self::decide_with_ledger) on `clock` rather than the engine's:
    /// decision fixtures run on [`Clock::FromRequest`].
    pub(crate) fn decide_on(
        &self,
        clock: Clock,
        request: &Request,
        ledger: &Ledger,
        mode: LedgerMode,
    ) -> Result<Decision, LedgerError> {
        let registry = ledger.registry()?;
        let prepared = match self.prepare(clock, request, Some(&registry)) {
            Ok(prepared) => prepared,
            Err(denied) => return Ok(*denied),
        };
        if let Some(denied) = self.check_registry_key(request, &prepared, ledger)? {
            return Ok(denied);
        }
        let hold_id = match (mode, &request.request_id) {
            (LedgerMode::Check, _) => None,
            (LedgerMode::Reserve, Some(id)) => Some(id.as_str()),
            (LedgerMode::Reserve, None) => {
                return Ok(self.deny_resolved(
                    request,
                    &prepared,
                    "missing-request-id",
                    "budget can only be reserved for a request with an id",
                    Some("a reservation needs `context.request_id`"),
                ));
            }
        };
        let chain: Vec<&str> = prepared.chain.iter().map(|s| s.id.as_str()).collect();
        let scopes_where = |keep: fn(&Scope) -> bool| -> Vec<&str> {
            prepared
                .chain
                .iter()
                .filter(|s| keep(s))
                .map(|s| s.id.as_str())
                .collect()
        };
        // Only scopes with caps or limits need figures; the others read as zero.
        let limited = scopes_where(|s| s.budget.is_limited() || s.rate.is_limited());
        let caps: Vec<Caps> = prepared
            .chain
            .iter()
            .filter(|s| s.budget.is_limited() || s.rate.is_limited())
            .map(|s| Caps {
                budget: s.budget,
                rate: s.rate,
            })
            .collect();
        let rated = scopes_where(|s| s.rate.is_limited());
        let plan = Plan {
            hold: hold_id.map(|request_id| Hold {
                request_id,
                key_id: &prepared.key.id,
                action: &request.action,
                chain: &chain,
                rated: &rated,
                model: &prepared.model.target,
                time: prepared.time,
                windows: &prepared.windows,
                micros: prepared.estimate.cost_micros.unwrap_or(0),
                tokens: prepared.total_tokens,
                price: prepared.model.price,
            }),
            chain: &chain,
            limited: &limited,
            caps: &caps,
            rated: &rated,
            time: prepared.time,
            windows: &prepared.windows,
            now: prepared.now,
        };
        ledger.reserve(&plan, |usage, prior| {
            self.decide_after(request, &prepared, usage, prior)
        })
    }

    /// Decides a request whose id the ledger has looked up (`prior`).
    fn decide_after(
        &self,
        request: &Request,
        prepared: &Prepared<'_>,
        usage: &[ScopeUsage],
        prior: Prior,
    ) -> Decision {
        let id = request.request_id.as_deref().unwrap_or_default();
        match prior {
            Prior::None => self.evaluate(request, prepared, usage),
            Prior::Retry { .. } => {
                let mut decision = self.evaluate(request, prepared, usage);
                if decision.allowed {
                    decision.reasons.push(engine_reason(
                        "existing-reservation",
                        format!(
                            "request `{id}` was already reserved; the earlier reservation stands"
                        ),
                    ));
                }
                decision
            }
            Prior::Conflict => {
                // Decided all the same, so the figures show what the request would have met.
                let mut decision = self.evaluate(request, prepared, usage);
                decision.allowed = false;
                decision.reasons = vec![engine_reason(
                    "request-id-conflict",
                    "the request id is held by a different request (another key, action or \
                     model, or a hold smaller than this request); a request id names one request",
                )];
                decision.errors.push(format!(
                    "request id `{id}` is already held by a different request"
                ));
                decision
            }
            Prior::Settled(state) => self.deny_resolved(
                request,
                prepared,
                "request-id-reused",
                &format!("request id `{id}` was already used and is {state}"),
                None,
            ),
        }
    }

    /// The decision for `request` when its ledger could not be used: a denial with reason
    /// `keyscope:ledger-unavailable` and `message`, with the key, scope and estimate but no
    /// budget or rate figures (the ledger holds them). Never an allow.
    pub fn deny_for_ledger(&self, request: &Request, message: &str) -> Decision {
        let mut decision = self.decide(request);
        decision.allowed = false;
        decision.reservation = None;
        // Figures read without the ledger would show nothing spent: none rather than wrong ones.
        decision.budgets.clear();
        decision.rates.clear();
        decision.errors.push(message.to_owned());
        decision.reasons = vec![engine_reason("ledger-unavailable", message)];
        decision
    }

    /// Records spend made outside a reservation as committed, charged to `record.scope` and its
    /// ancestors.
    pub fn record_spend(&self, ledger: &Ledger, record: &SpendRecord) -> Result<(), LedgerError> {
        let chain: Vec<&str> = self
            .store
            .scopes()
            .chain(&record.scope)
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        if chain.is_empty() {
            return Err(LedgerError::UnknownScope(record.scope.clone()));
        }
        let model = self
            .store
            .catalog()
            .model(&record.model)
            .map_or(record.model.as_str(), |m| m.target.as_str());
        ledger.record(&Hold {
            request_id: &record.request_id,
            key_id: "",
            action: "invoke",
            chain: &chain,
            rated: &[],
            model,
            time: record.time,
            windows: &self.store.scopes().time_zone().windows(record.time),
            micros: record.cost_micros,
            tokens: record.tokens,
            price: None,
        })
    }

    fn base(&self, request: &Request, time: Timestamp) -> Decision {
        Decision {
            allowed: false,
            reasons: Vec::new(),
            errors: Vec::new(),
            request_id: request.request_id.clone(),
            key: None,
            scope: None,
            action: request.action.clone(),
            model: request.model.clone(),
            resolved_model: None,
            time,
            estimate: None,
            budgets: Vec::new(),
            rates: Vec::new(),
            reservation: None,
        }
    }

    /// A denial by the engine rule `id` of a request that resolved, with an error when given.
    fn deny_resolved(
        &self,
        request: &Request,
        prepared: &Prepared<'_>,
        id: &str,
        message: &str,
        error: Option<&str>,
    ) -> Decision {
        let mut decision = self.base(request, prepared.time);
        decision.key = Some(prepared.key.id.clone());
        decision.scope = Some(prepared.key.scope.clone());
        decision.resolved_model = Some(prepared.model.target.clone());
        decision.estimate = Some(prepared.estimate);
        decision.errors.extend(error.map(str::to_owned));
        decision.reasons.push(engine_reason(id, message));
        decision
    }

    /// A denial by the engine rule `id`, with `message` as its error, at `time`.
    fn deny_at(
        &self,
        request: &Request,
        time: Timestamp,
        id: &str,
        message: String,
    ) -> Box<Decision> {
        let mut decision = self.base(request, time);
        decision.errors.push(message.clone());
        decision.reasons.push(engine_reason(id, message));
        Box::new(decision)
    }

    /// The engine's time now and the decision's time, from `clock`; a trusted request time too
    /// far off is denied.
    fn decision_time(
        &self,
        clock: Clock,
        request: &Request,
    ) -> Result<(Timestamp, Timestamp), Box<Decision>> {
        clock.resolve(request.time).map_err(|skew| {
            let limit = match clock {
                Clock::TrustRequestTime { max_skew_seconds } => max_skew_seconds,
                _ => 0,
            };
            self.deny_at(
                request,
                Timestamp::now(),
                "request-time-skew",
                format!(
                    "`context.time` is {skew} s from the engine's clock; at most {limit} s are accepted"
                ),
            )
        })
    }

    /// Resolves `request` against the store at the engine's time; a request that cannot be
    /// resolved is denied here.
    fn prepare<'s>(
        &'s self,
        clock: Clock,
        request: &Request,
        registry: Option<&Snapshot>,
    ) -> Result<Prepared<'s>, Box<Decision>> {
        let (now, time) = self.decision_time(clock, request)?;
        let deny = |id: &str, message: String| self.deny_at(request, time, id, message);
        let Some((action_uid, action_index)) = self.store.action_uids.get(&request.action) else {
            return Err(deny(
                "unknown-action",
                format!("unknown action `{}`", request.action),
            ));
        };
        let (key, record) = match self.find_key(request, registry) {
            Ok(Subject::Store(key)) => (Cow::Borrowed(key), None),
            Ok(Subject::Registry(record)) => (Cow::Owned(registry_key(&record)), Some(record)),
            Err((id, message)) => return Err(deny(id, message)),
        };
        if time < key.created {
            // Not a policy: no store may allow a key before it exists.
            let mut decision = self.base(request, time);
            decision.reasons.push(engine_reason(
                "key-not-yet-valid",
                format!(
                    "key `{}` is valid from {}, after the decision's time {time}",
                    key.id, key.created
                ),
            ));
            return Err(Box::new(decision));
        }
        let Some(model) = self.store.catalog.model(&request.model) else {
            return Err(deny(
                "unknown-model",
                format!("unknown model `{}`", request.model),
            ));
        };
        let chain = self.store.scopes.chain(&key.scope);
        let (Some(scope), Some(model_uid)) = (chain.first(), self.store.model_uids.get(&model.id))
        else {
            return Err(deny(
                "unknown-scope",
                format!("unknown scope `{}`", key.scope),
            ));
        };
        let (estimate, total_tokens) =
            estimate(request, model).map_err(|message| deny("overflow", message))?;
        let network_allowed = scope.accepts_source(request.source_ip);
        let (key_uid, policies, entities) = match &key {
            Cow::Borrowed(key) => {
                let Some((key_uid, policies)) = self.store_key_policies(key, *action_index) else {
                    // Every key has a slice for every action; reaching this is a bug, and it
                    // denies.
                    return Err(deny(
                        "internal",
                        format!(
                            "no policy set for key `{}` and action `{}`",
                            key.id, request.action
                        ),
                    ));
                };
                (
                    Cow::Borrowed(key_uid),
                    policies,
                    Cow::Borrowed(&self.store.entities),
                )
            }
            Cow::Owned(key) => {
                let (key_uid, entities) = self
                    .store
                    .registry_entities(key, &chain, model)
                    .map_err(|e| deny("internal", e.to_string()))?;
                // A key issued after the store was loaded has no slice: the whole set applies.
                (
                    Cow::Owned(key_uid),
                    &self.store.policies,
                    Cow::Owned(entities),
                )
            }
        };
        Ok(Prepared {
            now,
            time,
            windows: self.store.scopes().time_zone().windows(time),
            key,
            record,
            chain,
            model,
            key_uid,
            policies,
            entities,
            action_uid,
            model_uid,
            estimate,
            total_tokens,
            network_allowed,
        })
    }

    /// The Cedar uid of a `scopes.toml` key and its policy slice for the action.
    fn store_key_policies(
        &self,
        key: &Key,
        action_index: usize,
    ) -> Option<(&EntityUid, &PolicySet)> {
        let entry = self.store.key_uids.get(&key.id)?;
        let slice = entry
            .slices
            .get(action_index)
            .and_then(|i| self.store.slices.get(*i))?;
        Some((&entry.uid, slice))
    }

    /// The key `request` names: a keyscope secret (checked, then found by its hash), a key of
    /// `scopes.toml` by id or fingerprint (denied when quarantined), or a registry key by id or
    /// `sha256:` fingerprint. `Err` carries the engine rule and message of the denial; no
    /// message ever echoes what the caller sent.
    fn find_key<'s>(
        &'s self,
        request: &Request,
        registry: Option<&Snapshot>,
    ) -> Result<Subject<'s>, (&'static str, String)> {
        let subject = request.key.as_str();
        if Secret::looks_like(subject) {
            let secret = Secret::parse(subject).map_err(|e| {
                (
                    "malformed-key",
                    format!("the subject is not a valid keyscope key ({e}); it was not looked up"),
                )
            })?;
            return registry
                .and_then(|r| r.by_hash(&secret.hash()))
                .filter(|r| r.kind == KeyKind::Scoped)
                .map(|r| Subject::Registry(Arc::clone(r)))
                .ok_or_else(|| {
                    (
                        "unknown-key",
                        format!(
                            "unknown key `{}`: keyscope issued no key with this secret{}",
                            secret.redacted(),
                            if registry.is_none() {
                                " (no ledger, so no registry)"
                            } else {
                                ""
                            }
                        ),
                    )
                });
        }
        if let Some(key) = self.store.scopes.key(subject) {
            let quarantine = registry
                .and_then(|r| r.by_id(&key.id))
                .filter(|r| r.kind == KeyKind::Provider)
                .and_then(|r| r.revoked.as_ref());
            if let Some(revocation) = quarantine {
                return Err((
                    "key-compromised",
                    format!(
                        "key `{}` was quarantined as compromised at {} ({}): rotate it at the \
                         provider and register the new one",
                        key.id, revocation.at, revocation.reason
                    ),
                ));
            }
            return Ok(Subject::Store(key));
        }
        let found = registry.and_then(|r| {
            r.by_id(subject)
                .or_else(|| {
                    normalize_fingerprint(subject)
                        .and_then(|fp| r.by_hash(fp.trim_start_matches("sha256:")))
                })
                .filter(|r| r.kind == KeyKind::Scoped)
        });
        if let Some(record) = found {
            return Ok(Subject::Registry(Arc::clone(record)));
        }
        // Never echo an unknown subject id: it may be a raw key sent by mistake.
        let shown = if subject.starts_with("sha256:") {
            subject.to_owned()
        } else {
            fingerprint(subject)
        };
        Err((
            "unknown-key",
            format!(
                "unknown key `{shown}`: no key with this id or fingerprint in scopes.toml or the key registry"
            ),
        ))
    }

    /// Denies a registry key that was revoked or superseded; notes the use of a key whose
    /// rotation waits for it to go idle. A revocation holds whatever the decision's time: it
    /// takes effect at the next decision after it was written.
    fn check_registry_key(
        &self,
        request: &Request,
        prepared: &Prepared<'_>,
        ledger: &Ledger,
    ) -> Result<Option<Decision>, LedgerError> {
        let Some(cached) = &prepared.record else {
            return Ok(None);
        };
        let fresh;
        // A draining key's last use changes without a registry revision: read it now.
        let record = if matches!(cached.retirement, Some(Retirement::Idle { .. })) {
            fresh = ledger
                .key(&cached.id)?
                .ok_or_else(|| LedgerError::UnknownKey(cached.id.clone()))?;
            &fresh
        } else {
            cached.as_ref()
        };
        let at = prepared.now.max(prepared.time);
        if let Some(revocation) = &record.revoked {
            return Ok(Some(self.deny_resolved(
                request,
                prepared,
                "key-revoked",
                &format!(
                    "key `{}` was revoked at {} ({})",
                    record.id, revocation.at, revocation.reason
                ),
                None,
            )));
        }
        if let (KeyState::Superseded, Some(since)) = record.state(at) {
            let successor = record.successor.as_deref().unwrap_or("its successor");
            return Ok(Some(self.deny_resolved(
                request,
                prepared,
                "key-superseded",
                &format!(
                    "key `{}` was superseded by `{successor}` at {since}",
                    record.id
                ),
                None,
            )));
        }
        if matches!(record.retirement, Some(Retirement::Idle { .. })) {
            ledger.key_touch(&record.id, at)?;
        }
        Ok(None)
    }
}

/// The worst-case estimate of `request` on `model` (every input token at the input price, the
/// most output the request allows at the output price) and its total tokens; an overflow is an
/// error.
fn estimate(request: &Request, model: &Model) -> Result<(Estimate, u64), String> {
    let max_output_tokens = request
        .max_output_tokens
        .unwrap_or(model.max_output_tokens)
        .min(model.max_output_tokens);
    let cost_micros = match model.price {
        Some(price) => Some(
            token_cost(request.input_tokens, price.input)
                .zip(token_cost(max_output_tokens, price.output))
                .and_then(|(a, b)| a.checked_add(b))
                .ok_or_else(|| "the cost estimate overflows".to_owned())?,
        ),
        None => None,
    };
    let total_tokens = request
        .input_tokens
        .checked_add(max_output_tokens)
        .ok_or_else(|| "the token count overflows".to_owned())?;
    let estimate = Estimate {
        input_tokens: request.input_tokens,
        max_output_tokens,
        cost_micros,
    };
    Ok((estimate, total_tokens))
}
