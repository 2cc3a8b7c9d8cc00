//! Decisions and their reasons, serialized as the AuthZEN 1.0 evaluation response
//! `{"decision": bool, "context": {...}}`.

use serde::Serialize;

use crate::store::Effect;
use crate::time::Timestamp;

/// Why a decision came out as it did: a policy, or a rule keyscope enforces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// The policy's `@id`, or `keyscope:<rule>` for the engine's own fail-closed rules.
    pub id: String,
    /// `permit`, `forbid`, or `engine`.
    pub effect: ReasonEffect,
    /// Human-readable, from the policy's `@message` annotation.
    pub message: String,
}

/// Who produced a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasonEffect {
    /// A permit policy that was satisfied.
    Permit,
    /// A forbid policy that was satisfied.
    Forbid,
    /// keyscope itself: unknown key or model, policy error, budget backstop.
    Engine,
}

impl From<Effect> for ReasonEffect {
    fn from(effect: Effect) -> Self {
        match effect {
            Effect::Permit => Self::Permit,
            Effect::Forbid => Self::Forbid,
        }
    }
}

/// The cost estimate of a request: worst case, every input token at the input price and the
/// maximum output at the output price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// Input tokens.
    pub input_tokens: u64,
    /// Maximum output tokens (requested, capped at the model's maximum).
    pub max_output_tokens: u64,
    /// Worst-case cost in micro-dollars; `None` when the model has no price.
    pub cost_micros: Option<u64>,
}

/// One budget window of one scope of the chain, as applied to the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetFigure {
    /// The scope whose cap this is.
    pub scope: String,
    /// `day` or `month`.
    pub window: &'static str,
    /// The window key, `2026-11-22` or `2026-11`.
    pub period: String,
    /// The money cap, micro-dollars.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_micros: Option<u64>,
    /// The token cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_tokens: Option<u64>,
    /// Committed spend in the window, micro-dollars.
    pub committed_micros: u64,
    /// Live holds in the window, micro-dollars.
    pub held_micros: u64,
    /// Committed plus held tokens.
    pub used_tokens: u64,
}

/// The rate limits of one scope of the chain, as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateFigure {
    /// The scope whose limit this is.
    pub scope: String,
    /// Requests-per-minute limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Tokens-per-minute limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Requests already reserved this minute.
    pub requests: u64,
    /// Tokens already reserved this minute.
    pub tokens: u64,
}

/// A budget hold taken by an allowed decision with reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    /// The request id to commit or release.
    pub request_id: String,
    /// Micro-dollars held.
    pub held_micros: u64,
    /// When the hold lapses unless committed, RFC 3339.
    pub expires_at: String,
    /// True when this request id was already reserved and the earlier hold stands.
    pub existing: bool,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Allow or deny.
    #[serde(skip)]
    pub allowed: bool,
    /// Why: the determining policies, or the engine rule. Never empty.
    pub reasons: Vec<Reason>,
    /// Evaluation and resolution errors; any error means deny.
    pub errors: Vec<String>,
    /// The caller's request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The key id, once resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key's scope, once resolved: the attribution of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The action.
    pub action: String,
    /// The model id as requested.
    pub model: String,
    /// The versioned model an alias resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_model: Option<String>,
    /// The decision time; serialized as RFC 3339.
    pub time: Timestamp,
    /// The cost estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    /// The budget windows that were checked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetFigure>,
    /// The rate limits that were checked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rates: Vec<RateFigure>,
    /// The hold taken, when reserving.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<Reservation>,
}

impl Decision {
    /// The AuthZEN evaluation response: `{"decision": bool, "context": {...}}`.
    pub fn to_authzen(&self) -> serde_json::Value {
        let context = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        serde_json::json!({"decision": self.allowed, "context": context})
    }

    /// The ids of the reasons, in order.
    pub fn reason_ids(&self) -> Vec<&str> {
        self.reasons.iter().map(|r| r.id.as_str()).collect()
    }
}
