//! Latency percentiles, which criterion does not report: times each of many decisions with
//! `Instant` and prints p50/p90/p99/p99.9, for keyscope's decision and for a bare
//! `cedar_policy::Authorizer::is_authorized` call on the same request; then the throughput of
//! reserve+commit cycles through the SQLite ledger (WAL, file on disk) and, in the same run,
//! through a Redis ledger on a `redis-server` the bench starts on a free loopback port.
//!
//! `cargo bench -p keyscope-policy --bench decide_latency` (`-- --ledger-only` for the ledger alone)

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "bench harness"
)]

mod common;
#[path = "../../../tests/support/redis.rs"]
mod redis_support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use keyscope_policy::{Ledger, LedgerMode, RedisOptions, Timestamp, Usage};

const DECISIONS: usize = 200_000;
const CYCLES: usize = 20_000;

fn percentiles(mut samples: Vec<Duration>) -> [Duration; 4] {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    [at(0.50), at(0.90), at(0.99), at(0.999)]
}

fn time_each(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..n / 10 {
        f();
    }
    (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect()
}

/// CPU time of this thread (Linux `schedstat`): the machine is shared, so wall-clock throughput
/// also counts time spent waiting for a core.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn us(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e6)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let setup = Instant::now();
    let engine = common::engine();
    let loaded = setup.elapsed();
    if std::env::args().any(|a| a == "--ledger-only") {
        print_ledger_runs(&engine);
        return;
    }
    let request = common::request();
    let bare = common::bare_cedar_request(&engine);
    let authorizer = cedar_policy::Authorizer::new();
    let store = engine.store();

    let per_call = |start: Option<Duration>| {
        start
            .zip(thread_cpu())
            .map(|(a, b)| (b - a) / (DECISIONS + DECISIONS / 10) as u32)
    };
    let cpu = thread_cpu();
    let keyscope = percentiles(time_each(DECISIONS, || {
        black_box(engine.decide(black_box(&request)));
    }));
    let keyscope_cpu = per_call(cpu);
    let cpu = thread_cpu();
    let cedar = percentiles(time_each(DECISIONS, || {
        black_box(authorizer.is_authorized(
            black_box(&bare),
            store.cedar_policies(),
            store.cedar_entities(),
        ));
    }));
    let cedar_cpu = per_call(cpu);

    println!(
        "store: {} scopes, {} models, loaded in {:.1} ms",
        common::SCOPES,
        common::MODELS,
        loaded.as_secs_f64() * 1e3
    );
    println!();
    println!("| measurement ({DECISIONS} samples) | p50 µs | p90 µs | p99 µs | p99.9 µs |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| keyscope `Engine::decide` (no ledger) | {} | {} | {} | {} |",
        us(keyscope[0]),
        us(keyscope[1]),
        us(keyscope[2]),
        us(keyscope[3])
    );
    println!(
        "| bare `Authorizer::is_authorized` | {} | {} | {} | {} |",
        us(cedar[0]),
        us(cedar[1]),
        us(cedar[2]),
        us(cedar[3])
    );
    if let (Some(k), Some(c)) = (keyscope_cpu, cedar_cpu) {
        println!(
            "| mean CPU time per call (thread schedstat) | keyscope {} | bare Cedar {} | | |",
            us(k),
            us(c)
        );
    }
    println!();

    println!(
        "keyscope / bare Cedar at p50: {:.2}x, at p99: {:.2}x",
        keyscope[0].as_secs_f64() / cedar[0].as_secs_f64(),
        keyscope[2].as_secs_f64() / cedar[2].as_secs_f64()
    );
    println!();
    print_ledger_runs(&engine);
}

/// Runs the shared, then the exclusive ledger and prints both, with the load average.
fn print_ledger_runs(engine: &keyscope_policy::Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite");
    let shared = Ledger::open(&path).unwrap();
    let shared_run = ledger_cycles(engine, &shared, &shared);
    let exclusive = Ledger::open_exclusive(&dir.path().join("exclusive.sqlite")).unwrap();
    let exclusive_run = ledger_cycles(engine, &exclusive, &exclusive);
    // Reserve through one connection and commit through another, as when a gateway reserves
    // and a second process commits: every transaction follows another connection's write.
    let turns = ledger_cycles(
        engine,
        &Ledger::open(&dir.path().join("turns.sqlite")).unwrap(),
        &Ledger::open(&dir.path().join("turns.sqlite")).unwrap(),
    );
    for (name, run) in [
        ("shared (`Ledger::open`)", shared_run),
        ("exclusive (`Ledger::open_exclusive`)", exclusive_run),
        ("shared, two connections taking turns", turns),
    ] {
        println!(
            "ledger {name}: {:.0} reserve+commit cycles/s wall clock, {:.0} per CPU-second",
            run.wall_per_second, run.cpu_per_second,
        );
        print_percentiles(&run);
    }
    let both = Ledger::open(&dir.path().join("threads.sqlite")).unwrap();
    println!(
        "ledger shared, one handle, two threads: {:.0} reserve+commit cycles/s wall clock",
        threaded_cycles(engine, &both, 2)
    );
    print_redis_runs(engine);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average during the run: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// The same cycles on Redis (no persistence, as `redis-server` starts by default here): one
/// thread, then several threads sharing one handle (its pool opens a connection per thread).
fn print_redis_runs(engine: &keyscope_policy::Engine) {
    let server = redis_support::RedisServer::start();
    let redis = Ledger::open_redis(&server.url(), RedisOptions::default()).unwrap();
    let run = ledger_cycles(engine, &redis, &redis);
    println!(
        "ledger redis (`Ledger::open_redis`, one local redis-server): {:.0} reserve+commit cycles/s wall clock, {:.0} per CPU-second of this thread",
        run.wall_per_second, run.cpu_per_second,
    );
    print_percentiles(&run);
    for threads in [2, 8] {
        let fresh = Ledger::open_redis(
            &server.url(),
            RedisOptions {
                prefix: format!("threads{threads}"),
                ..RedisOptions::default()
            },
        )
        .unwrap();
        println!(
            "ledger redis, one handle, {threads} threads: {:.0} reserve+commit cycles/s wall clock",
            threaded_cycles(engine, &fresh, threads)
        );
    }
}

/// The cycle, reserve and commit percentiles of `run`, one line each.
fn print_percentiles(run: &LedgerRun) {
    for (part, p) in [
        ("cycle", run.cycle),
        ("reserve", run.reserve),
        ("commit", run.commit),
    ] {
        println!(
            "    {part} µs: p50 {} p90 {} p99 {} p99.9 {}",
            us(p[0]),
            us(p[1]),
            us(p[2]),
            us(p[3])
        );
    }
}

struct LedgerRun {
    wall_per_second: f64,
    cpu_per_second: f64,
    /// p50, p90, p99, p99.9 of whole cycles, of reservations alone and of commits alone.
    cycle: [Duration; 4],
    reserve: [Duration; 4],
    commit: [Duration; 4],
}

/// Runs reserve+commit cycles from `threads` threads on one ledger handle; returns cycles/s.
fn threaded_cycles(engine: &keyscope_policy::Engine, ledger: &Ledger, threads: usize) -> f64 {
    let (usage, now) = committed_usage();
    let per_thread = CYCLES / threads;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let usage = &usage;
            scope.spawn(move || {
                for i in 0..per_thread {
                    cycle(engine, ledger, ledger, &format!("t{t}-{i}"), usage, now);
                }
            });
        }
    });
    (per_thread * threads) as f64 / start.elapsed().as_secs_f64()
}

/// What every cycle commits, and when.
fn committed_usage() -> (Usage, Timestamp) {
    let usage = Usage {
        input_tokens: 1_000,
        output_tokens: 500,
        ..Usage::default()
    };
    (usage, Timestamp::parse("2026-11-22T18:00:01Z").unwrap())
}

/// One cycle: reserves request `id` through `reserving` and commits it through `committing`.
/// Returns how long the reservation and the commit took.
fn cycle(
    engine: &keyscope_policy::Engine,
    reserving: &Ledger,
    committing: &Ledger,
    id: &str,
    usage: &Usage,
    now: Timestamp,
) -> (Duration, Duration) {
    let mut request = common::request();
    request.request_id = Some(id.to_owned());
    let reserving_at = Instant::now();
    let decision = engine
        .decide_with_ledger(&request, reserving, LedgerMode::Reserve)
        .unwrap();
    let committing_at = Instant::now();
    assert!(decision.allowed, "{:?}", decision.reasons);
    black_box(committing.commit(id, usage, now).unwrap());
    (committing_at - reserving_at, committing_at.elapsed())
}

/// Reserves through `reserving` and commits through `committing` (the same ledger, or two
/// connections to one file).
fn ledger_cycles(
    engine: &keyscope_policy::Engine,
    reserving: &Ledger,
    committing: &Ledger,
) -> LedgerRun {
    let (usage, now) = committed_usage();
    let mut i = 0usize;
    let mut reserves = Vec::with_capacity(CYCLES * 2);
    let mut commits = Vec::with_capacity(CYCLES * 2);
    let cpu = thread_cpu();
    let start = Instant::now();
    let cycles = time_each(CYCLES, || {
        let (reserve, commit) = cycle(engine, reserving, committing, &format!("r{i}"), &usage, now);
        i += 1;
        reserves.push(reserve);
        commits.push(commit);
    });
    let elapsed = start.elapsed();
    let total = (CYCLES + CYCLES / 10) as f64;
    let cpu = cpu.zip(thread_cpu()).map_or(elapsed, |(a, b)| b - a);
    // The warm-up's samples are left out, as `time_each` leaves out its cycles.
    let warm_up = CYCLES / 10;
    LedgerRun {
        wall_per_second: total / elapsed.as_secs_f64(),
        cpu_per_second: total / cpu.as_secs_f64(),
        cycle: percentiles(cycles),
        reserve: percentiles(reserves.split_off(warm_up)),
        commit: percentiles(commits.split_off(warm_up)),
    }
}
