//! Decision fixtures: data files of cases, each a request and the decision and reasons it must
//! get, run by `keyscope policy test` and by this crate's tests.
//!
//! A case file is JSON:
//!
//! ```json
//! {"cases": [{
//!   "name": "dev budget: exactly at the daily cap",
//!   "spent": [{"scope": "dev/general", "model": "gpt-4.1-nano-2025-04-14",
//!              "cost_micros": 4896000, "time": "2026-11-22T09:00:00Z"}],
//!   "before": [],
//!   "request": {"subject": {"type": "Key", "id": "dev-general-1"}, "action": {"name": "invoke"},
//!               "resource": {"type": "Model", "id": "gpt-4.1-nano-2025-04-14"},
//!               "context": {"time": "2026-11-22T18:00:00Z", "input_tokens": 1000000,
//!                           "max_output_tokens": 10000}},
//!   "expect": {"decision": true, "reasons": ["allowlisted-model"]}
//! }]}
//! ```
//!
//! Every case runs against a fresh in-memory ledger: `spent` is recorded as committed spend,
//! each `before` request is reserved (and must be allowed), then `request` is decided, reserving
//! when `reserve` is true. A fixture is a replay: each request is decided at its own
//! `context.time` ([`Clock::FromRequest`](crate::Clock::FromRequest)), whatever the engine's
//! clock.

use std::path::Path;

use serde::Deserialize;

use crate::decision::Decision;
use crate::engine::{Clock, Engine, LedgerMode, SpendRecord};
use crate::error::{FixtureError, SourceFile};
use crate::ledger::Ledger;
use crate::request::Request;
use crate::time::Timestamp;

/// A file of cases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// What the file covers.
    #[serde(default)]
    pub description: Option<String>,
    /// The cases.
    pub cases: Vec<Case>,
}

/// One case: setup, request, expectation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Names the case in reports.
    pub name: String,
    /// Spend recorded before the request.
    #[serde(default)]
    pub spent: Vec<Spent>,
    /// Requests reserved before the request, in order; each must be allowed.
    #[serde(default)]
    pub before: Vec<serde_json::Value>,
    /// The AuthZEN request to decide.
    pub request: serde_json::Value,
    /// Whether to reserve budget for the request.
    #[serde(default)]
    pub reserve: bool,
    /// The expected outcome.
    pub expect: Expected,
}

/// Spend recorded in the ledger before a case runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spent {
    /// Scope charged (and its ancestors).
    pub scope: String,
    /// Model id.
    #[serde(default)]
    pub model: String,
    /// Cost, micro-dollars.
    #[serde(default)]
    pub cost_micros: u64,
    /// Tokens.
    #[serde(default)]
    pub tokens: u64,
    /// When, RFC 3339.
    pub time: String,
}

/// What a case must produce.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// Allow (`true`) or deny.
    pub decision: bool,
    /// The reason ids, in the order the decision lists them.
    pub reasons: Vec<String>,
    /// Whether the decision must carry errors; unchecked when absent.
    #[serde(default)]
    pub errors: Option<bool>,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The case name.
    pub name: String,
    /// The decision the engine made, when it got that far.
    pub decision: Option<Decision>,
    /// Why the case failed; `None` when it passed.
    pub failure: Option<String>,
}

impl CaseOutcome {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

impl CaseFile {
    /// Reads and parses a case file.
    pub fn load(path: &Path) -> Result<Self, FixtureError> {
        let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses a case file; `name` labels diagnostics.
    pub fn parse(name: &str, text: &str) -> Result<Self, FixtureError> {
        serde_json::from_str(text).map_err(|e| {
            let file = SourceFile::new(name, text);
            let line_start: usize = text
                .split_inclusive('\n')
                .take(e.line().saturating_sub(1))
                .map(str::len)
                .sum();
            let offset = (line_start + e.column().saturating_sub(1)).min(text.len());
            FixtureError::Json(Box::new(file.error(
                format!("invalid case file: {e}"),
                Some(offset..offset),
                "here",
            )))
        })
    }

    /// Runs every case against `engine`.
    pub fn run(&self, engine: &Engine) -> Vec<CaseOutcome> {
        self.cases.iter().map(|case| case.run(engine)).collect()
    }
}

impl Case {
    /// Runs the case against `engine` with a fresh in-memory ledger.
    pub fn run(&self, engine: &Engine) -> CaseOutcome {
        let mut outcome = CaseOutcome {
            name: self.name.clone(),
            decision: None,
            failure: None,
        };
        match self.try_run(engine) {
            Ok(decision) => {
                outcome.failure = self.compare(&decision);
                outcome.decision = Some(decision);
            }
            Err(message) => outcome.failure = Some(message),
        }
        outcome
    }

    fn try_run(&self, engine: &Engine) -> Result<Decision, String> {
        let ledger = Ledger::open_in_memory().map_err(|e| e.to_string())?;
        for (i, spent) in self.spent.iter().enumerate() {
            let time = Timestamp::parse(&spent.time)
                .ok_or_else(|| format!("`spent[{i}].time` is not RFC 3339: `{}`", spent.time))?;
            let record = SpendRecord {
                request_id: format!("fixture-spent-{i}"),
                scope: spent.scope.clone(),
                model: spent.model.clone(),
                cost_micros: spent.cost_micros,
                tokens: spent.tokens,
                time,
            };
            engine
                .record_spend(&ledger, &record)
                .map_err(|e| e.to_string())?;
        }
        for (i, before) in self.before.iter().enumerate() {
            let mut request =
                Request::from_value(before.clone()).map_err(|e| format!("before[{i}]: {e}"))?;
            if request.request_id.is_none() {
                request.request_id = Some(format!("fixture-before-{i}"));
            }
            let decision = engine
                .decide_on(Clock::FromRequest, &request, &ledger, LedgerMode::Reserve)
                .map_err(|e| e.to_string())?;
            if !decision.allowed {
                return Err(format!(
                    "before[{i}] was denied: {}",
                    decision.reason_ids().join(", ")
                ));
            }
        }
        let request = Request::from_value(self.request.clone()).map_err(|e| e.to_string())?;
        let mode = if self.reserve {
            LedgerMode::Reserve
        } else {
            LedgerMode::Check
        };
        engine
            .decide_on(Clock::FromRequest, &request, &ledger, mode)
            .map_err(|e| e.to_string())
    }

    fn compare(&self, decision: &Decision) -> Option<String> {
        let reasons = decision.reason_ids();
        let mut problems = Vec::new();
        if decision.allowed != self.expect.decision {
            problems.push(format!(
                "expected {}, got {}",
                verdict(self.expect.decision),
                verdict(decision.allowed)
            ));
        }
        if reasons != self.expect.reasons {
            problems.push(format!(
                "expected reasons [{}], got [{}]",
                self.expect.reasons.join(", "),
                reasons.join(", ")
            ));
        }
        if let Some(errors) = self.expect.errors
            && errors == decision.errors.is_empty()
        {
            problems.push(format!(
                "expected {}errors, got [{}]",
                if errors { "" } else { "no " },
                decision.errors.join("; ")
            ));
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}
