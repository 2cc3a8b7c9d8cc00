//! Decision fixtures.
