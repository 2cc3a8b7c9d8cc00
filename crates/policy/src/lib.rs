//! Policy decisions for keyscope: is this key allowed to call this model, now, from here, within
//! budget? And why.
//!
//! A policy store is a directory with a Cedar schema and policies (`schema.cedarschema`,
//! `*.cedar`), a scope tree with registered keys (`scopes.toml`) and a model catalog with prices
//! (`models.toml`). [`Engine::decide`] resolves an AuthZEN-shaped [`Request`] against it, estimates
//! the worst-case cost in integer micro-dollars, asks Cedar, and returns a [`Decision`] with its
//! reasons: the `@id` and `@message` of the determining policies, or an explicit "no policy
//! permits ...".
//!
//! Cedar skips a policy that errors during evaluation, even a `forbid`. keyscope does not: any
//! evaluation error denies the request and names the policy. The same holds for an unknown key
//! or model, a budgeted scope asking for an unpriced model, and arithmetic overflow. The
//! [`Ledger`] adds two-phase budget reservations in SQLite; its documentation describes them.
//!
//! ```
//! use std::path::Path;
//! use keyscope_policy::{Clock, Engine, Request, Timestamp};
//!
//! // The default store shipped with keyscope, on a fixed clock (a replay); a service keeps the
//! // default system clock, and a request's `context.time` does not move it.
//! let store = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
//! let now = Timestamp::parse("2026-11-22T18:00:00Z").unwrap_or(Timestamp::now());
//! let engine = Engine::load(&store)?.with_clock(Clock::Fixed(now));
//!
//! let mut request = Request::new("care-notes-prod-2026-10", "gpt-4o-2024-11-20");
//! request.source_ip = "10.20.4.7".parse().ok();
//! request.input_tokens = 1_000;
//! request.max_output_tokens = Some(500);
//! let decision = engine.decide(&request);
//! assert!(decision.allowed);
//! assert_eq!(decision.reason_ids(), ["allowlisted-model"]);
//! // 1,000 x $2.50/M + 500 x $10/M = $0.0075
//! assert_eq!(decision.estimate.and_then(|e| e.cost_micros), Some(7_500));
//!
//! // A patient-facing production scope never takes an alias.
//! let denied = engine.decide(&Request { model: "gpt-4o".into(), ..request });
//! assert!(!denied.allowed);
//! assert_eq!(denied.reason_ids(), ["versioned-model-in-patient-facing-production"]);
//! # Ok::<(), keyscope_policy::StoreError>(())
//! ```

pub mod audit;
mod catalog;
mod decision;
mod engine;
mod error;
pub mod fixtures;
pub mod incident;
pub mod keys;
mod ledger;
mod money;
mod net;
mod request;
mod scopes;
mod store;
mod time;

pub use catalog::{Catalog, Model, Price, Provider};
pub use decision::{
    BudgetFigure, Decision, Estimate, RateFigure, Reason, ReasonEffect, Reservation,
};
pub use engine::{Clock, Engine, LedgerMode, SpendRecord};
pub use error::{FixtureError, LedgerError, RequestError, SourceError, StoreError};
pub use ledger::{
    CommitFlags, DEFAULT_HOLD_TTL_SECONDS, Ledger, RedisOptions, RequestRecord, RequestState,
    Settlement, SpendGrouping, SpendRow, Usage, Verification,
};
pub use money::{MICROS_PER_USD, format_usd, parse_usd};
pub use net::Cidr;
pub use request::Request;
pub use scopes::{
    Audience, Budget, Environment, Key, RateLimit, SCOPES_FILE, Scope, ScopeInfo, Scopes,
    fingerprint,
};
pub use store::{Effect, LEDGER_FILE, MODELS_FILE, PolicyInfo, SCHEMA_FILE, Store, StoreSources};
pub use time::{Timestamp, Windows, Zone};
