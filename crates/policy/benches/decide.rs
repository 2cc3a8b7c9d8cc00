//! Criterion benches: one decision with 1,000 scopes and 200 models loaded, against a bare
//! `cedar_policy::Authorizer::is_authorized` call on the same request, and reserve+commit
//! cycles through the SQLite ledger.
//!
//! `cargo bench -p keyscope-policy --bench decide`; percentiles come from `decide_latency`.

#![expect(clippy::unwrap_used, clippy::panic, reason = "bench setup")]

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keyscope_policy::{Ledger, LedgerMode, Timestamp, Usage};

fn decide(c: &mut Criterion) {
    let engine = common::engine();
    let request = common::request();
    let bare = common::bare_cedar_request(&engine);
    let authorizer = cedar_policy::Authorizer::new();
    let store = engine.store();
    let mut group = c.benchmark_group("decide");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("keyscope", |b| {
        b.iter(|| black_box(engine.decide(black_box(&request))))
    });
    group.bench_function("cedar_bare", |b| {
        b.iter(|| {
            black_box(authorizer.is_authorized(
                black_box(&bare),
                store.cedar_policies(),
                store.cedar_entities(),
            ))
        })
    });
    group.finish();
}

fn ledger(c: &mut Criterion) {
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    let counter = AtomicU64::new(0);
    let usage = Usage {
        input_tokens: 1_000,
        output_tokens: 500,
        ..Usage::default()
    };
    let now = Timestamp::parse("2026-11-22T18:00:01Z").unwrap();
    let mut group = c.benchmark_group("ledger");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("reserve_commit", |b| {
        b.iter(|| {
            let mut request = common::request();
            let id = format!("r{}", counter.fetch_add(1, Ordering::Relaxed));
            request.request_id = Some(id.clone());
            let decision = engine
                .decide_with_ledger(&request, &ledger, LedgerMode::Reserve)
                .unwrap();
            assert!(decision.allowed, "{:?}", decision.reasons);
            black_box(ledger.commit(&id, &usage, now).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, decide, ledger);
criterion_main!(benches);
