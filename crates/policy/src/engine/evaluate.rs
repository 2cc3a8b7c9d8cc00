//! Deciding a prepared request on its figures: budget and rate headroom, the Cedar context, the
//! Cedar call and its reasons, and the engine's own backstop.

use cedar_policy::{Context, RestrictedExpression};

use super::{Engine, Prepared, engine_reason};
use crate::decision::{BudgetFigure, Decision, RateFigure, Reason, ReasonEffect};
use crate::ledger::ScopeUsage;
use crate::request::Request;
use crate::scopes::Scope;
use crate::time::Windows;

/// What is left before the tightest cap and limit of the chain.
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

/// A Cedar `Long`: unlimited headroom is `i64::MAX`, and values beyond the range saturate.
fn long(value: Option<i128>) -> i64 {
    value.map_or(i64::MAX, |v| {
        v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    })
}

fn long_u(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Headroom {
    /// The headroom of `chain` with its `usage` in `windows`; the budget and rate figures that
    /// applied go to `decision`.
    fn of(
        chain: &[&Scope],
        usage: &[ScopeUsage],
        windows: &Windows,
        decision: &mut Decision,
    ) -> Self {
        let mut room = Self::default();
        for (scope, used) in chain.iter().zip(usage) {
            room.add_budget(scope, used, [&windows.day, &windows.month], decision);
            room.add_rate(scope, used, decision);
        }
        room
    }

    fn add_budget(
        &mut self,
        scope: &Scope,
        used: &ScopeUsage,
        [day_key, month_key]: [&String; 2],
        decision: &mut Decision,
    ) {
        let budget = scope.budget;
        if !budget.is_limited() {
            return;
        }
        self.money_capped |= budget.has_money_cap();
        for (window, period, cap_micros, cap_tokens, w) in [
            (
                "day",
                day_key,
                budget.day_micros,
                budget.day_tokens,
                used.day,
            ),
            (
                "month",
                month_key,
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
                self.micros = min_opt(self.micros, i128::from(cap) - spent);
            }
            if let Some(cap) = cap_tokens {
                self.tokens = min_opt(self.tokens, i128::from(cap) - tokens);
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

    fn add_rate(&mut self, scope: &Scope, used: &ScopeUsage, decision: &mut Decision) {
        let rate = scope.rate;
        if !rate.is_limited() {
            return;
        }
        if let Some(limit) = rate.requests_per_minute {
            self.minute_requests = min_opt(
                self.minute_requests,
                i128::from(limit) - i128::from(used.minute_requests),
            );
        }
        if let Some(limit) = rate.tokens_per_minute {
            self.minute_tokens = min_opt(
                self.minute_tokens,
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

    /// The engine's own invariants, whatever the policies say: a store whose budget policies
    /// were edited away still cannot overspend.
    fn backstop(&self, p: &Prepared<'_>) -> Option<Reason> {
        let cost = p.estimate.cost_micros;
        if self.money_capped && cost.is_none() {
            Some(engine_reason(
                "unpriced-model",
                format!(
                    "model `{}` has no price and the scope has a budget",
                    p.model.id
                ),
            ))
        } else if self
            .micros
            .is_some_and(|r| i128::from(cost.unwrap_or(0)) > r)
            || self.tokens.is_some_and(|r| i128::from(p.total_tokens) > r)
        {
            Some(engine_reason(
                "over-budget",
                "the estimate exceeds the remaining budget",
            ))
        } else if self.minute_requests.is_some_and(|r| r < 1)
            || self
                .minute_tokens
                .is_some_and(|r| i128::from(p.total_tokens) > r)
        {
            Some(engine_reason(
                "rate-limited",
                "the rate limit for this minute is reached",
            ))
        } else {
            None
        }
    }
}

/// What Cedar answered, as keyscope reports it.
struct CedarAnswer {
    allowed: bool,
    /// The determining policies, sorted by id.
    determining: Vec<Reason>,
    /// A reason per policy that failed to evaluate.
    failed: Vec<Reason>,
    errors: Vec<String>,
}

impl Engine {
    /// Decides a prepared request on the spend figures `usage` of its chain.
    pub(super) fn evaluate(
        &self,
        request: &Request,
        p: &Prepared<'_>,
        usage: &[ScopeUsage],
    ) -> Decision {
        let mut decision = self.base(request, p.time);
        decision.key = Some(p.key.id.clone());
        decision.scope = Some(p.key.scope.clone());
        decision.resolved_model = Some(p.model.target.clone());
        decision.estimate = Some(p.estimate);
        let room = Headroom::of(&p.chain, usage, &p.windows, &mut decision);
        let answer = match self.ask_cedar(request, p, &room) {
            Ok(answer) => answer,
            Err(message) => {
                decision.errors.push(message.clone());
                decision.reasons.push(engine_reason("context", message));
                return decision;
            }
        };
        if !answer.errors.is_empty() {
            // Cedar skips a policy that fails to evaluate; keyscope denies (fail closed).
            decision.errors = answer.errors;
            decision.reasons = answer.failed;
            decision.reasons.sort_by(|a, b| a.id.cmp(&b.id));
            return decision;
        }
        if !answer.allowed {
            decision.reasons = if answer.determining.is_empty() {
                vec![engine_reason(
                    "no-permit",
                    format!(
                        "no policy permits `{}` of `{}` by key `{}` in scope `{}`",
                        request.action, request.model, p.key.id, p.key.scope
                    ),
                )]
            } else {
                answer.determining
            };
            return decision;
        }
        match room.backstop(p) {
            Some(reason) => decision.reasons = vec![reason],
            None => {
                decision.allowed = true;
                decision.reasons = answer.determining;
            }
        }
        decision
    }

    /// The Cedar context of a prepared request with its headroom. Cedar evaluates every context
    /// value when the context is built (about 0.3 µs each), so the optional fields only go in
    /// when some policy names them.
    fn cedar_context(
        &self,
        request: &Request,
        p: &Prepared<'_>,
        room: &Headroom,
    ) -> Vec<(String, RestrictedExpression)> {
        let uses = &self.store.context_use;
        let long_pair =
            |name: &str, value: i64| (name.to_owned(), RestrictedExpression::new_long(value));
        let mut pairs = Vec::with_capacity(11);
        pairs.extend([
            long_pair("now", p.time.unix()),
            (
                "network_allowed".to_owned(),
                RestrictedExpression::new_bool(p.network_allowed),
            ),
            long_pair("total_tokens", long_u(p.total_tokens)),
            long_pair("cost_micros", long_u(p.estimate.cost_micros.unwrap_or(0))),
            long_pair("budget_remaining_micros", long(room.micros)),
            long_pair("budget_remaining_tokens", long(room.tokens)),
            long_pair("rate_requests_remaining", long(room.minute_requests)),
            long_pair("rate_tokens_remaining", long(room.minute_tokens)),
        ]);
        if uses.input_tokens {
            pairs.push(long_pair("input_tokens", long_u(p.estimate.input_tokens)));
        }
        if uses.max_output_tokens {
            pairs.push(long_pair(
                "max_output_tokens",
                long_u(p.estimate.max_output_tokens),
            ));
        }
        if let (Some(ip), true) = (request.source_ip, uses.source_ip) {
            pairs.push((
                "source_ip".to_owned(),
                RestrictedExpression::new_ip(ip.to_string()),
            ));
        }
        pairs
    }

    /// Asks Cedar; `Err` when the request cannot even be built.
    fn ask_cedar(
        &self,
        request: &Request,
        p: &Prepared<'_>,
        room: &Headroom,
    ) -> Result<CedarAnswer, String> {
        let context =
            Context::from_pairs(self.cedar_context(request, p, room)).map_err(|e| e.to_string())?;
        let cedar_request = cedar_policy::Request::new(
            p.key_uid.as_ref().clone(),
            p.action_uid.clone(),
            p.model_uid.clone(),
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        let response = self
            .authorizer
            .is_authorized(&cedar_request, p.policies, &p.entities);
        let diagnostics = response.diagnostics();
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for error in diagnostics.errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = error;
            let id = e.policy_id().to_string();
            let effect = self
                .store
                .policy(&id)
                .map_or(ReasonEffect::Engine, |i| i.effect.into());
            failed.push(Reason {
                message: format!(
                    "policy `{id}` failed to evaluate, so the request is denied (fail closed)"
                ),
                id,
                effect,
            });
            errors.push(error.to_string());
        }
        let mut determining: Vec<Reason> = diagnostics
            .reason()
            .map(|id| self.policy_reason(id.as_ref()))
            .collect();
        determining.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(CedarAnswer {
            allowed: response.decision() == cedar_policy::Decision::Allow,
            determining,
            failed,
            errors,
        })
    }

    /// The reason a determining policy gives: its `@id` and `@message`.
    fn policy_reason(&self, id: &str) -> Reason {
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
    }
}
