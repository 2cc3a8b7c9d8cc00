//! Integration tests of keyscope-scan: one test binary, a module per area.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

mod formats;
mod fuzz;
mod hardening;
mod rules;
