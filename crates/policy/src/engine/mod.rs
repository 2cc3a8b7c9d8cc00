//! The decision engine: resolve the request against the store, gather the budget and rate
//! figures, ask Cedar, and deny whenever anything is off (fail closed).

use cedar_policy::{Authorizer, Context, EntityUid, PolicySet, RestrictedExpression};

use crate::catalog::Model;
use crate::decision::{
    BudgetFigure, Decision, Estimate, RateFigure, Reason, ReasonEffect, Reservation,
};
use crate::error::{LedgerError, StoreError};
use crate::ledger::{self, Hold, Ledger, ScopeUsage};
use crate::money::token_cost;
use crate::request::Request;
use crate::scopes::{Key, Scope, fingerprint};
use crate::store::Store;
use crate::time::Timestamp;

/// Whether a ledger-backed decision only checks the budget or also reserves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerMode {
    /// Read the spend figures; write no hold.
    Check,
    /// Check and, when allowed, hold the worst-case estimate against the scope and its ancestors.
    Reserve,
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
}

struct Prepared<'s> {
    now: Timestamp,
    key: &'s Key,
    chain: Vec<&'s Scope>,
    model: &'s Model,
    key_uid: &'s EntityUid,
    /// The policies that can matter for this key and action (see `store::slice_policies`).
    policies: &'s PolicySet,
    action_uid: &'s EntityUid,
    model_uid: &'s EntityUid,
    estimate: Estimate,
    total_tokens: u64,
    network_allowed: bool,
}

#[derive(Default)]
struct Headroom {
    money_capped: bool,
    /// The tightest remaining money and tokens over every capped window of the chain.
    micros: Option<i128>,
    tokens: Option<i128>,
    minute_requests: Option<i128>,
    minute_tokens: Option<i128>,
}

fn min_opt(a: Option<i128>, b: i128) -> Option<i128> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn long(value: Option<i128>) -> i64 {
    value.map_or(i64::MAX, |v| {
        v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    })
}

fn long_u(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn engine_reason(id: &str, message: impl Into<String>) -> Reason {
    Reason {
        id: format!("keyscope:{id}"),
        effect: ReasonEffect::Engine,
        message: message.into(),
    }
}

impl Engine {
    /// An engine over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            authorizer: Authorizer::new(),
        }
    }

    /// Loads the store in `dir` and builds an engine over it.
    pub fn load(dir: &std::path::Path) -> Result<Self, StoreError> {
        Store::load(dir).map(Self::new)
    }

    /// The store decisions are made against.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Decides `request` without a ledger: budget caps apply to this request alone, as if
    /// nothing had been spent yet.
    pub fn decide(&self, request: &Request) -> Decision {
        match self.prepare(request) {
            Ok(prepared) => {
                let usage = vec![ScopeUsage::default(); prepared.chain.len()];
                self.evaluate(request, &prepared, &usage)
            }
            Err(denied) => *denied,
        }
    }

    /// Decides `request` against the spend in `ledger`; with [`LedgerMode::Reserve`] an allowed
    /// request also holds its worst-case cost, atomically with the check. Ledger failures are
    /// errors, never allows.
    pub fn decide_with_ledger(
        &self,
        request: &Request,
        ledger: &Ledger,
        mode: LedgerMode,
    ) -> Result<Decision, LedgerError> {
        let prepared = match self.prepare(request) {
            Ok(prepared) => prepared,
            Err(denied) => return Ok(*denied),
        };
        let reserve_id = match (mode, &request.request_id) {
            (LedgerMode::Check, _) => None,
            (LedgerMode::Reserve, Some(id)) => Some(id.as_str()),
            (LedgerMode::Reserve, None) => {
                let mut decision = self.base(request, prepared.now);
                decision
                    .errors
                    .push("a reservation needs `context.request_id`".to_owned());
                decision.reasons.push(engine_reason(
                    "missing-request-id",
                    "budget can only be reserved for a request with an id",
                ));
                return Ok(decision);
            }
        };
        let day = prepared.now.day_key();
        let month = prepared.now.month_key();
        ledger.write(|txn| {
            if ledger.sweep_due(prepared.now) {
                ledger::sweep(txn, prepared.now)?;
            }
            if let Some(id) = reserve_id
                && let Some(row) = ledger::find(txn, id)?
            {
                let mut decision = self.base(request, prepared.now);
                self.fill_resolved(&mut decision, &prepared);
                if row.state == "held" || row.state == "committed" {
                    decision.allowed = true;
                    decision.reasons.push(engine_reason(
                        "existing-reservation",
                        format!(
                            "request `{id}` was already reserved; the earlier reservation stands"
                        ),
                    ));
                    decision.reservation = Some(Reservation {
                        request_id: id.to_owned(),
                        held_micros: 0,
                        expires_at: Timestamp::from_unix(row.expires_at).to_string(),
                        existing: true,
                    });
                } else {
                    decision.reasons.push(engine_reason(
                        "request-id-reused",
                        format!("request id `{id}` was already used and settled"),
                    ));
                }
                return Ok(decision);
            }
            // Only scopes with caps or limits need figures; the others read as zero.
            let limited: Vec<&str> = prepared
                .chain
                .iter()
                .filter(|s| s.budget.is_limited() || s.rate.is_limited())
                .map(|s| s.id.as_str())
                .collect();
            let rated: Vec<&str> = prepared
                .chain
                .iter()
                .filter(|s| s.rate.is_limited())
                .map(|s| s.id.as_str())
                .collect();
            let figures = ledger::usage(txn, &limited, &rated, prepared.now, &day, &month)?;
            let usage: Vec<ScopeUsage> = prepared
                .chain
                .iter()
                .map(|s| {
                    limited
                        .iter()
                        .position(|l| *l == s.id)
                        .map_or_else(ScopeUsage::default, |i| figures[i])
                })
                .collect();
            let mut decision = self.evaluate(request, &prepared, &usage);
            if let (Some(id), true) = (reserve_id, decision.allowed) {
                let chain: Vec<&str> = prepared.chain.iter().map(|s| s.id.as_str()).collect();
                let held = prepared.estimate.cost_micros.unwrap_or(0);
                let hold = Hold {
                    request_id: id,
                    key_id: &prepared.key.id,
                    chain: &chain,
                    rated: &rated,
                    model: &prepared.model.target,
                    time: prepared.now,
                    micros: held,
                    tokens: prepared.total_tokens,
                    price: prepared.model.price,
                };
                let expires = ledger::insert_hold(txn, &hold, ledger.hold_ttl_seconds())?;
                decision.reservation = Some(Reservation {
                    request_id: id.to_owned(),
                    held_micros: held,
                    expires_at: expires.to_string(),
                    existing: false,
                });
            }
            Ok(decision)
        })
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
        let hold = Hold {
            request_id: &record.request_id,
            key_id: "",
            chain: &chain,
            rated: &[],
            model,
            time: record.time,
            micros: record.cost_micros,
            tokens: record.tokens,
            price: None,
        };
        ledger.write(|txn| ledger::insert_committed(txn, &hold))
    }

    fn base(&self, request: &Request, now: Timestamp) -> Decision {
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
            time: now,
            estimate: None,
            budgets: Vec::new(),
            rates: Vec::new(),
            reservation: None,
        }
    }

    fn fill_resolved(&self, decision: &mut Decision, prepared: &Prepared<'_>) {
        decision.key = Some(prepared.key.id.clone());
        decision.scope = Some(prepared.key.scope.clone());
        decision.resolved_model = Some(prepared.model.target.clone());
        decision.estimate = Some(prepared.estimate);
    }

    fn prepare<'s>(&'s self, request: &Request) -> Result<Prepared<'s>, Box<Decision>> {
        let now = request.time.unwrap_or_else(Timestamp::now);
        let deny = |id: &str, message: String| {
            let mut decision = self.base(request, now);
            decision.errors.push(message.clone());
            decision.reasons.push(engine_reason(id, message));
            Box::new(decision)
        };
        let Some((action_uid, action_index)) = self.store.action_uids.get(&request.action) else {
            return Err(deny(
                "unknown-action",
                format!("unknown action `{}`", request.action),
            ));
        };
        let Some(key) = self.store.scopes.key(&request.key) else {
            // Never echo an unknown subject id: it may be a raw key sent by mistake.
            let shown = if request.key.starts_with("sha256:") {
                request.key.clone()
            } else {
                fingerprint(&request.key)
            };
            return Err(deny(
                "unknown-key",
                format!("unknown key `{shown}`: no key with this id or fingerprint in scopes.toml"),
            ));
        };
        let Some(model) = self.store.catalog.model(&request.model) else {
            return Err(deny(
                "unknown-model",
                format!("unknown model `{}`", request.model),
            ));
        };
        let chain = self.store.scopes.chain(&key.scope);
        let (Some(scope), Some(key_entry), Some(model_uid)) = (
            chain.first(),
            self.store.key_uids.get(&key.id),
            self.store.model_uids.get(&model.id),
        ) else {
            return Err(deny(
                "unknown-scope",
                format!("unknown scope `{}`", key.scope),
            ));
        };
        let max_output_tokens = request
            .max_output_tokens
            .unwrap_or(model.max_output_tokens)
            .min(model.max_output_tokens);
        let cost_micros = match model.price {
            Some(price) => Some(
                token_cost(request.input_tokens, price.input)
                    .zip(token_cost(max_output_tokens, price.output))
                    .and_then(|(a, b)| a.checked_add(b))
                    .ok_or_else(|| deny("overflow", "the cost estimate overflows".to_owned()))?,
            ),
            None => None,
        };
        let total_tokens = request
            .input_tokens
            .checked_add(max_output_tokens)
            .ok_or_else(|| deny("overflow", "the token count overflows".to_owned()))?;
        let network_allowed = scope.accepts_source(request.source_ip);
        let Some(policies) = key_entry
            .slices
            .get(*action_index)
            .and_then(|i| self.store.slices.get(*i))
        else {
            // Every key has a slice for every action; reaching this is a bug, and it denies.
            return Err(deny(
                "internal",
                format!(
                    "no policy set for key `{}` and action `{}`",
                    key.id, request.action
                ),
            ));
        };
        Ok(Prepared {
            now,
            key,
            chain,
            model,
            key_uid: &key_entry.uid,
            policies,
            action_uid,
            model_uid,
            estimate: Estimate {
                input_tokens: request.input_tokens,
                max_output_tokens,
                cost_micros,
            },
            total_tokens,
            network_allowed,
        })
    }

    fn evaluate(&self, request: &Request, p: &Prepared<'_>, usage: &[ScopeUsage]) -> Decision {
        let mut decision = self.base(request, p.now);
        self.fill_resolved(&mut decision, p);
        let mut room = Headroom::default();
        let (day_key, month_key) = (p.now.day_key(), p.now.month_key());
        for (scope, used) in p.chain.iter().zip(usage) {
            let budget = scope.budget;
            if budget.is_limited() {
                room.money_capped |= budget.has_money_cap();
                for (window, period, cap_micros, cap_tokens, w) in [
                    (
                        "day",
                        &day_key,
                        budget.day_micros,
                        budget.day_tokens,
                        used.day,
                    ),
                    (
                        "month",
                        &month_key,
                        budget.month_micros,
                        budget.month_tokens,
                        used.month,
                    ),
                ] {
                    if cap_micros.is_none() && cap_tokens.is_none() {
                        continue;
                    }
                    let spent = i128::from(w.committed_micros) + i128::from(w.held_micros);
                    let tokens = i128::from(w.committed_tokens) + i128::from(w.held_tokens);
                    if let Some(cap) = cap_micros {
                        room.micros = min_opt(room.micros, i128::from(cap) - spent);
                    }
                    if let Some(cap) = cap_tokens {
                        room.tokens = min_opt(room.tokens, i128::from(cap) - tokens);
                    }
                    decision.budgets.push(BudgetFigure {
                        scope: scope.id.clone(),
                        window,
                        period: period.clone(),
                        cap_micros,
                        cap_tokens,
                        committed_micros: w.committed_micros,
                        held_micros: w.held_micros,
                        used_tokens: w.committed_tokens.saturating_add(w.held_tokens),
                    });
                }
            }
            let rate = scope.rate;
            if rate.is_limited() {
                if let Some(limit) = rate.requests_per_minute {
                    room.minute_requests = min_opt(
                        room.minute_requests,
                        i128::from(limit) - i128::from(used.minute_requests),
                    );
                }
                if let Some(limit) = rate.tokens_per_minute {
                    room.minute_tokens = min_opt(
                        room.minute_tokens,
                        i128::from(limit) - i128::from(used.minute_tokens),
                    );
                }
                decision.rates.push(RateFigure {
                    scope: scope.id.clone(),
                    requests_per_minute: rate.requests_per_minute,
                    tokens_per_minute: rate.tokens_per_minute,
                    requests: used.minute_requests,
                    tokens: used.minute_tokens,
                });
            }
        }

        let cost = p.estimate.cost_micros;
        // Cedar evaluates every context value when the context is built (about 0.3 µs each), so
        // the optional fields only go in when some policy names them.
        let uses = &self.store.context_use;
        let mut pairs = Vec::with_capacity(9);
        pairs.extend([
            (
                "now".to_owned(),
                RestrictedExpression::new_long(p.now.unix()),
            ),
            (
                "network_allowed".to_owned(),
                RestrictedExpression::new_bool(p.network_allowed),
            ),
            (
                "total_tokens".to_owned(),
                RestrictedExpression::new_long(long_u(p.total_tokens)),
            ),
            (
                "cost_micros".to_owned(),
                RestrictedExpression::new_long(long_u(cost.unwrap_or(0))),
            ),
            (
                "budget_remaining_micros".to_owned(),
                RestrictedExpression::new_long(long(room.micros)),
            ),
            (
                "budget_remaining_tokens".to_owned(),
                RestrictedExpression::new_long(long(room.tokens)),
            ),
            (
                "rate_requests_remaining".to_owned(),
                RestrictedExpression::new_long(long(room.minute_requests)),
            ),
            (
                "rate_tokens_remaining".to_owned(),
                RestrictedExpression::new_long(long(room.minute_tokens)),
            ),
        ]);
        if uses.input_tokens {
            pairs.push((
                "input_tokens".to_owned(),
                RestrictedExpression::new_long(long_u(p.estimate.input_tokens)),
            ));
        }
        if uses.max_output_tokens {
            pairs.push((
                "max_output_tokens".to_owned(),
                RestrictedExpression::new_long(long_u(p.estimate.max_output_tokens)),
            ));
        }
        if let (Some(ip), true) = (request.source_ip, uses.source_ip) {
            pairs.push((
                "source_ip".to_owned(),
                RestrictedExpression::new_ip(ip.to_string()),
            ));
        }
        let cedar_request = Context::from_pairs(pairs)
            .map_err(|e| e.to_string())
            .and_then(|context| {
                cedar_policy::Request::new(
                    p.key_uid.clone(),
                    p.action_uid.clone(),
                    p.model_uid.clone(),
                    context,
                    None,
                )
                .map_err(|e| e.to_string())
            });
        let cedar_request = match cedar_request {
            Ok(r) => r,
            Err(message) => {
                decision.errors.push(message.clone());
                decision.reasons.push(engine_reason("context", message));
                return decision;
            }
        };
        let response =
            self.authorizer
                .is_authorized(&cedar_request, p.policies, &self.store.entities);
        let diagnostics = response.diagnostics();
        for error in diagnostics.errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = error;
            let id = e.policy_id().to_string();
            let effect = self
                .store
                .policy(&id)
                .map_or(ReasonEffect::Engine, |i| i.effect.into());
            decision.reasons.push(Reason {
                message: format!(
                    "policy `{id}` failed to evaluate, so the request is denied (fail closed)"
                ),
                id,
                effect,
            });
            decision.errors.push(error.to_string());
        }
        let mut determining: Vec<Reason> = diagnostics
            .reason()
            .map(|id| {
                let id: &str = id.as_ref();
                match self.store.policy(id) {
                    Some(info) => Reason {
                        message: info
                            .message
                            .clone()
                            .unwrap_or_else(|| format!("policy `{id}` applies")),
                        effect: info.effect.into(),
                        id: info.id.clone(),
                    },
                    None => Reason {
                        message: format!("policy `{id}` applies"),
                        effect: ReasonEffect::Engine,
                        id: id.to_owned(),
                    },
                }
            })
            .collect();
        determining.sort_by(|a, b| a.id.cmp(&b.id));
        if !decision.errors.is_empty() {
            decision.reasons.sort_by(|a, b| a.id.cmp(&b.id));
            return decision;
        }
        if response.decision() == cedar_policy::Decision::Deny {
            if determining.is_empty() {
                determining.push(engine_reason(
                    "no-permit",
                    format!(
                        "no policy permits `{}` of `{}` by key `{}` in scope `{}`",
                        request.action, request.model, p.key.id, p.key.scope
                    ),
                ));
            }
            decision.reasons = determining;
            return decision;
        }
        // Cedar allowed. The engine's own invariants still hold whatever the policies say, so
        // a store whose budget policies were edited away cannot overspend.
        let backstop = if room.money_capped && cost.is_none() {
            Some(engine_reason(
                "unpriced-model",
                format!(
                    "model `{}` has no price and the scope has a budget",
                    p.model.id
                ),
            ))
        } else if room
            .micros
            .is_some_and(|r| i128::from(cost.unwrap_or(0)) > r)
            || room.tokens.is_some_and(|r| i128::from(p.total_tokens) > r)
        {
            Some(engine_reason(
                "over-budget",
                "the estimate exceeds the remaining budget",
            ))
        } else if room.minute_requests.is_some_and(|r| r < 1)
            || room
                .minute_tokens
                .is_some_and(|r| i128::from(p.total_tokens) > r)
        {
            Some(engine_reason(
                "rate-limited",
                "the rate limit for this minute is reached",
            ))
        } else {
            None
        };
        match backstop {
            Some(reason) => decision.reasons = vec![reason],
            None => {
                decision.allowed = true;
                decision.reasons = determining;
            }
        }
        decision
    }
}
