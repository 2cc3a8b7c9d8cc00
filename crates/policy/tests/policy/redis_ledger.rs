//! What only the Redis ledger must show: it runs on a cluster, it fails closed when Redis is
//! gone or stalls and reconnects by itself, and with `appendfsync always` a killed server
//! loses no acknowledged commit (issue 15).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyscope_policy::{
    Ledger, LedgerError, LedgerMode, RedisOptions, RequestState, Settlement, Timestamp, Usage,
};

use crate::backends::{RedisServer, TestLedger, redis_support};
use crate::common::default_engine;
use crate::ledger::{COST, no_overspend_on, opus, two_phase_on};

#[test]
fn the_cap_race_and_the_two_phases_hold_on_a_three_master_cluster() {
    let Some(cluster) = TestLedger::redis_cluster("cluster") else {
        return;
    };
    let cluster = Arc::new(cluster);
    two_phase_on(&cluster.open().with_hold_ttl(60));
    let fresh = TestLedger::redis_cluster("cluster").unwrap();
    no_overspend_on(Arc::new(fresh));
}

#[test]
fn an_unreachable_redis_is_an_error_never_an_allow() {
    if redis_support::skipped("an_unreachable_redis_is_an_error") {
        return;
    }
    let port = redis_support::free_port();
    let options = RedisOptions {
        timeout: Duration::from_millis(300),
        ..RedisOptions::default()
    };
    let error = Ledger::open_redis(&format!("redis://127.0.0.1:{port}/0"), options).unwrap_err();
    assert!(matches!(error, LedgerError::Redis(_)), "{error}");

    let mut server = RedisServer::start();
    let ledger = Ledger::open_redis(&server.url(), RedisOptions::default()).unwrap();
    let engine = default_engine();
    assert!(
        engine
            .decide_with_ledger(&opus("before"), &ledger, LedgerMode::Reserve)
            .unwrap()
            .allowed
    );
    server.kill();
    for id in ["down-1", "down-2"] {
        let outcome = engine.decide_with_ledger(&opus(id), &ledger, LedgerMode::Reserve);
        assert!(
            matches!(outcome, Err(LedgerError::Redis(_))),
            "a decision without its ledger is an error: {outcome:?}"
        );
    }
    assert!(ledger.ping().is_err());
    server.restart();
    // The same handle reconnects by itself.
    assert!(ledger.ping().is_ok());
    assert!(
        engine
            .decide_with_ledger(&opus("after"), &ledger, LedgerMode::Reserve)
            .unwrap()
            .allowed
    );
}

#[test]
fn a_stalled_redis_times_out_into_an_error() {
    if redis_support::skipped("a_stalled_redis_times_out") {
        return;
    }
    let server = RedisServer::start();
    let options = RedisOptions {
        timeout: Duration::from_millis(300),
        ..RedisOptions::default()
    };
    let ledger = Ledger::open_redis(&server.url(), options).unwrap();
    let pid = server.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = std::time::Instant::now();
    let outcome =
        default_engine().decide_with_ledger(&opus("stalled"), &ledger, LedgerMode::Reserve);
    let waited = started.elapsed();
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    assert!(matches!(outcome, Err(LedgerError::Redis(_))), "{outcome:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

#[test]
fn a_killed_redis_with_appendfsync_always_loses_no_acknowledged_commit() {
    if redis_support::skipped("a_killed_redis_loses_no_acknowledged_commit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = RedisServer::start_durable(dir.path());
    let url = server.url();
    let engine = Arc::new(default_engine());
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (engine, acknowledged, stop, url) = (
                Arc::clone(&engine),
                Arc::clone(&acknowledged),
                Arc::clone(&stop),
                url.clone(),
            );
            std::thread::spawn(move || {
                let ledger = Ledger::open_redis(&url, RedisOptions::default()).unwrap();
                let usage = Usage {
                    cost_micros: Some(1),
                    ..Usage::default()
                };
                let now = Timestamp::parse("2026-11-22T18:00:01Z").unwrap();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("w{w}-{i}");
                    let mut request = opus(&id);
                    request.max_output_tokens = Some(0);
                    match engine.decide_with_ledger(&request, &ledger, LedgerMode::Reserve) {
                        Ok(d) if d.allowed => {}
                        _ => break,
                    }
                    if let Ok(Settlement::Committed { .. }) = ledger.commit(&id, &usage, now) {
                        acknowledged.lock().unwrap().push(id);
                    } else {
                        break;
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 20,
        "the burst was under way: {}",
        acknowledged.len()
    );
    server.restart();
    let ledger = Ledger::open_redis(&url, RedisOptions::default()).unwrap();
    for id in &acknowledged {
        assert_eq!(
            ledger.request_state(id).unwrap(),
            Some(RequestState::Committed),
            "acknowledged commit {id} was lost"
        );
    }
    let (committed, _) = ledger.window_totals("dev/general", "2026-11-22").unwrap();
    assert!(committed >= acknowledged.len() as u64);
    assert!(ledger.verify().unwrap().is_intact());
    let _ = COST;
}
