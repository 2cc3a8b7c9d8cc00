//! Integration tests of keyscope-policy: decision fixtures, store loading errors, fail-closed
//! evaluation, and the budget ledger under concurrency and crashes.

#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

mod audit;
mod backends;
mod common;
mod crash;
mod fail_closed;
mod fixtures;
mod fuzz;
mod integrity;
mod ledger;
mod redis_ledger;
mod replay;
mod store_errors;
