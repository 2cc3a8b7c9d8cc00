//! Unit tests of the SQLite ledger: the protocol on raw holds, folding, journaling across
//! connections, migrations of older files.

use rusqlite::{Connection, params_from_iter};

use super::rows::{insert_committed, insert_hold, insert_request_sql};
use super::schema::{SCHEMA, SCHEMA_VERSION, request_table, state_check, state_check_before};
use super::*;
use crate::catalog::Price;
use crate::ledger::SpendGrouping;
use crate::time::{Windows, Zone};
use std::sync::LazyLock;

type Ledger = SqliteLedger;

/// The expiry of a hold made by [`hold`] that lives `ttl` seconds.
fn at(ttl: i64) -> Timestamp {
    Timestamp::parse("2026-11-22T12:00:00Z")
        .unwrap()
        .saturating_add(ttl)
}

/// `sql` as schema versions up to 4 wrote it: no `action` column, no checksums.
fn before_v5(sql: &str) -> String {
    sql.replace(",\n    action TEXT NOT NULL DEFAULT 'invoke'", "")
        .replace(",\n    checksum INTEGER NOT NULL DEFAULT 0", "")
        .replace("    checksum INTEGER NOT NULL DEFAULT 0,\n", "")
}

static WINDOWS: LazyLock<Windows> = LazyLock::new(|| Zone::utc().windows(at(0)));

fn hold<'a>(id: &'a str, chain: &'a [&'a str], micros: u64) -> Hold<'a> {
    Hold {
        request_id: id,
        key_id: "k",
        action: "invoke",
        chain,
        rated: chain,
        model: "m",
        time: Timestamp::parse("2026-11-22T12:00:00Z").unwrap(),
        windows: &WINDOWS,
        micros,
        tokens: 100,
        price: Some(Price {
            input: 1_000_000,
            output: 2_000_000,
            cached_input: 500_000,
        }),
    }
}

#[test]
fn two_phase_charges_the_chain_once() {
    let ledger = Ledger::open_in_memory().unwrap();
    let chain = ["team/app", "team"];
    let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
    ledger
        .write(|txn| insert_hold(txn, &hold("r1", &chain, 500), at(60)))
        .unwrap();
    assert_eq!(
        ledger.window_totals("team", "2026-11-22").unwrap(),
        (0, 500)
    );
    assert_eq!(
        ledger.window_totals("team/app", "2026-11").unwrap(),
        (0, 500)
    );
    let usage = Usage {
        input_tokens: 100,
        cached_input_tokens: 100,
        output_tokens: 100,
        cost_micros: None,
    };
    assert!(matches!(
        ledger.commit("r1", &usage, now).unwrap(),
        Settlement::Committed {
            cost_micros: 350,
            ..
        }
    ));
    assert_eq!(
        ledger.commit("r1", &usage, now).unwrap(),
        Settlement::AlreadyCommitted { cost_micros: 350 }
    );
    assert_eq!(
        ledger.window_totals("team", "2026-11-22").unwrap(),
        (350, 0)
    );
    assert!(matches!(
        ledger.release("r1", now),
        Err(LedgerError::AlreadyCommitted(_))
    ));
    assert!(matches!(
        ledger.commit("nope", &usage, now),
        Err(LedgerError::UnknownRequest(_))
    ));
    let rows = ledger.spend(SpendGrouping::Scope, None).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].requests, rows[0].cost_micros, rows[0].input_tokens),
        (1, 350, 200)
    );
}

/// Also when every settled request is folded at once (`fold_at` 1): a commit that arrives
/// after its hold expired and was folded is charged to `totals` directly.
#[test]
fn release_and_expiry_drop_holds() {
    for fold_at in [1, FOLD_AT] {
        let ledger = Ledger::open_in_memory().unwrap().with_fold_at(fold_at);
        let chain = ["a"];
        let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
        ledger
            .write(|txn| insert_hold(txn, &hold("r1", &chain, 500), at(60)))
            .unwrap();
        ledger
            .write(|txn| insert_hold(txn, &hold("r2", &chain, 700), at(60)))
            .unwrap();
        assert_eq!(ledger.release("r1", now).unwrap(), Settlement::Released);
        assert_eq!(
            ledger.release("r1", now).unwrap(),
            Settlement::AlreadyReleased
        );
        assert_eq!(ledger.window_totals("a", "2026-11-22").unwrap(), (0, 700));
        assert_eq!(ledger.expire_holds(now.saturating_add(59)).unwrap(), 0);
        assert_eq!(ledger.expire_holds(now.saturating_add(60)).unwrap(), 1);
        assert_eq!(ledger.window_totals("a", "2026-11-22").unwrap(), (0, 0));
        assert_eq!(
            ledger
                .request_state("r2")
                .unwrap()
                .map(RequestState::as_str),
            Some("expired")
        );
        let usage = Usage {
            cost_micros: Some(42),
            ..Usage::default()
        };
        assert!(matches!(
            ledger.commit("r2", &usage, now).unwrap(),
            Settlement::Committed {
                cost_micros: 42,
                ..
            }
        ));
        assert_eq!(ledger.window_totals("a", "2026-11").unwrap(), (42, 0));
        assert!(matches!(
            ledger.commit("r1", &usage, now),
            Err(LedgerError::AlreadyReleased(_))
        ));
        assert_totals_match_rows(&[&ledger], &chain);
    }
}

#[test]
fn spend_recorded_twice_under_one_id_is_refused() {
    let ledger = Ledger::open_in_memory().unwrap().with_fold_at(1);
    let chain = ["a"];
    let record = hold("import-1", &chain, 300);
    ledger.write(|txn| insert_committed(txn, &record)).unwrap();
    // Folded into `requests` by now; still found.
    let again = ledger.write(|txn| insert_committed(txn, &record));
    assert!(
        matches!(again, Err(LedgerError::DuplicateRequest(ref id)) if id == "import-1"),
        "{again:?}"
    );
    assert_eq!(ledger.window_totals("a", "2026-11").unwrap(), (300, 0));
    assert_totals_match_rows(&[&ledger], &chain);
}

/// The background thread copies the WAL into the database file without any write asking
/// for it (the writer's own threshold is 50,000 pages, far above what this test writes).
#[test]
fn shared_ledgers_checkpoint_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let ledger = Ledger::open(&path).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    let chain = ["a", "a/b"];
    let ids: Vec<String> = (0..200).map(|i| format!("request-{i}")).collect();
    for id in &ids {
        ledger
            .write(|txn| insert_hold(txn, &hold(id, &chain, 10), at(60)))
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&path).unwrap().len() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint reached the database file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(ledger); // joins the thread
    assert_eq!(
        Ledger::open(&path)
            .unwrap()
            .window_totals("a", "2026-11-22")
            .unwrap(),
        (0, 2_000)
    );
}

/// The totals every handle reports, checked against the rows themselves.
fn assert_totals_match_rows(ledgers: &[&Ledger], scopes: &[&str]) {
    let rows = ledgers[0].spend(SpendGrouping::Scope, None).unwrap();
    let committed: u64 = rows.iter().map(|r| r.cost_micros).sum();
    let held: u64 = rows.iter().map(|r| r.held_micros).sum();
    for ledger in ledgers {
        for scope in scopes {
            for period in ["2026-11-22", "2026-11"] {
                assert_eq!(
                    ledger.window_totals(scope, period).unwrap(),
                    (committed, held),
                    "{scope} {period}"
                );
            }
        }
    }
}

/// Reserves requests `r0`, `r1`, ... through one handle and settles each through the other
/// with `settle(handle, i, id)`, the handles swapping roles every request (as two processes
/// taking turns). After every step both must report what the rows say.
fn take_turns(
    handles: [&Ledger; 2],
    requests: usize,
    chain: &[&str],
    settle: impl Fn(&Ledger, usize, &str),
) {
    for i in 0..requests {
        let id = format!("r{i}");
        let (writer, other) = (handles[i % 2], handles[(i + 1) % 2]);
        writer
            .write(|txn| insert_hold(txn, &hold(&id, chain, 1_000), at(3_600)))
            .unwrap();
        assert_totals_match_rows(&[writer, other], chain);
        settle(other, i, &id);
        assert_totals_match_rows(&[writer, other], chain);
    }
}

/// Settled requests stay in `recent` and are folded into `totals` and `requests` every few
/// rows; two handles on one file (as two processes) each fold in turn, and both always
/// report what the rows say, also after reopening.
#[test]
fn folded_and_unfolded_commits_add_up_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let first = Ledger::open(&path).unwrap().with_fold_at(3);
    let second = Ledger::open(&path).unwrap().with_fold_at(3);
    let chain = ["team/app", "team"];
    let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
    take_turns([&first, &second], 11, &chain, |other, i, id| {
        let usage = Usage {
            cost_micros: Some(100 + i as u64),
            ..Usage::default()
        };
        other.commit(id, &usage, now).unwrap();
    });
    let (recent, requests, folded): (i64, i64, i64) = first
        .inner
        .lock()
        .unwrap()
        .conn
        .query_row(
            "SELECT (SELECT count(*) FROM recent), (SELECT count(*) FROM requests),
                    (SELECT committed_micros FROM totals
                     WHERE scope = 'team' AND period = '2026-11')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((recent, requests), (2, 9), "11 commits, folded every 3");
    assert_eq!(folded, (100..109).sum::<i64>());
    drop((first, second));
    assert_totals_match_rows(&[&Ledger::open(&path).unwrap()], &chain);
}

/// Two writers on one file: the first write that follows the other's turns journaling on,
/// and from then on each catches up from the journal instead of rebuilding from `recent`
/// (which holds live holds that a rebuild would read). Both stay exact all along.
#[test]
fn a_second_writer_turns_journaling_on_and_both_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let first = Ledger::open(&path).unwrap().with_fold_at(1_000);
    let second = Ledger::open(&path).unwrap().with_fold_at(1_000);
    let chain = ["team/app", "team"];
    let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
    let live: Vec<String> = (0..5).map(|i| format!("live-{i}")).collect();
    for id in &live {
        first
            .write(|txn| insert_hold(txn, &hold(id, &chain, 7), at(3_600)))
            .unwrap();
    }
    take_turns([&first, &second], 12, &chain, |other, i, id| {
        if i % 3 == 0 {
            other.release(id, now).unwrap();
        } else {
            let usage = Usage {
                cost_micros: Some(10 * i as u64),
                ..Usage::default()
            };
            other.commit(id, &usage, now).unwrap();
        }
    });
    let journaling: i64 = first
        .inner
        .lock()
        .unwrap()
        .conn
        .query_row("SELECT value FROM meta WHERE key = 'journal'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(journaling, 1);
    for ledger in [&first, &second] {
        let rebuilds = ledger.inner.lock().unwrap().totals.rebuilds;
        // Opening, seeing the other writer, and seeing journaling turned on; without the
        // journal there would be one for each of the other's 20-odd writes.
        assert!(
            rebuilds <= 3,
            "{rebuilds} rebuilds: the journal was not used"
        );
    }
    drop((first, second));
    assert_totals_match_rows(&[&Ledger::open(&path).unwrap()], &chain);
}

/// A write that fails rolls back, and the totals in memory forget what it did.
#[test]
fn a_failed_write_leaves_the_totals_as_they_were() {
    let ledger = Ledger::open_in_memory().unwrap();
    let chain = ["a"];
    let failed = ledger.write(|txn| {
        insert_hold(txn, &hold("r1", &chain, 500), at(60))?;
        Err::<(), _>(LedgerError::Overflow("r1".to_owned()))
    });
    assert!(matches!(failed, Err(LedgerError::Overflow(_))));
    assert_eq!(ledger.window_totals("a", "2026-11-22").unwrap(), (0, 0));
    assert_eq!(ledger.request_state("r1").unwrap(), None);
}

/// The tables of schema versions 1 and 2 that version 3 changed: `totals` also stored held
/// amounts, and there was no journal.
const TOTALS_V2: &str = "
    CREATE TABLE totals (
        scope TEXT NOT NULL,
        period TEXT NOT NULL,
        committed_micros INTEGER NOT NULL DEFAULT 0,
        held_micros INTEGER NOT NULL DEFAULT 0,
        committed_tokens INTEGER NOT NULL DEFAULT 0,
        held_tokens INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, period)
    ) WITHOUT ROWID;
    INSERT INTO totals (scope, period, committed_micros, held_micros) VALUES
        ('a', '2026-11-22', 300, 500), ('a', '2026-11', 300, 500);";

/// An older ledger opens migrated: in version 1 live holds sat in `requests`, found through
/// an index; in versions 1 and 2 `totals` also stored held amounts. The holds are still
/// counted, reported and committable, and the committed totals are kept.
#[test]
fn older_ledgers_keep_their_holds_and_totals() {
    for version in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&before_v5(request_table!(
                "requests",
                state_check_before!()
            )))
            .unwrap();
            conn.execute_batch(TOTALS_V2).unwrap();
            let held_in = if version == 1 {
                conn.execute_batch(
                    "CREATE INDEX requests_live_holds ON requests (expires_at)
                     WHERE state = 'held'",
                )
                .unwrap();
                "requests"
            } else {
                conn.execute_batch(&before_v5(request_table!("holds", "state IN ('held')")))
                    .unwrap();
                "holds"
            };
            let values = "('k', 'a', 'a', 'm', '2026-11-22', '2026-11', 0";
            let columns = "(key_id, scope, chain, model, day, month, minute, request_id, state,
                held_micros, held_tokens, cost_micros, price_input, price_output,
                price_cached_input, created_at, expires_at)";
            conn.execute_batch(&format!(
                "INSERT INTO {held_in} {columns} VALUES {values}, 'old-held', 'held', 500, 10,
                     0, 1, 1, 1, 1795348800, 1795352400);
                 INSERT INTO requests {columns} VALUES {values}, 'old-done', 'committed', 300,
                     10, 300, 1, 1, 1, 1795348800, 1795352400);
                 PRAGMA user_version = {version};"
            ))
            .unwrap();
        }
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(
            ledger
                .request_state("old-held")
                .unwrap()
                .map(RequestState::as_str),
            Some("held")
        );
        assert_eq!(ledger.window_totals("a", "2026-11-22").unwrap(), (300, 500));
        let rows = ledger.spend(SpendGrouping::Scope, None).unwrap();
        assert_eq!(
            (
                rows[0].requests,
                rows[0].cost_micros,
                rows[0].held_requests,
                rows[0].held_micros
            ),
            (1, 300, 1, 500)
        );
        let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
        let usage = Usage {
            cost_micros: Some(100),
            ..Usage::default()
        };
        assert!(matches!(
            ledger.commit("old-held", &usage, now).unwrap(),
            Settlement::Committed {
                cost_micros: 100,
                ..
            }
        ));
        assert_eq!(ledger.window_totals("a", "2026-11-22").unwrap(), (400, 0));
        assert_eq!(ledger.window_totals("a", "2026-11").unwrap(), (400, 0));
        drop(ledger);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let leftovers: i64 = conn
            .query_row(
                "SELECT (SELECT count(*) FROM sqlite_schema WHERE name = 'requests_live_holds')
                      + (SELECT count(*) FROM pragma_table_info('totals')
                         WHERE name LIKE 'held%')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(leftovers, 0);
    }
}

/// A ledger written before the `state` check became an `OR` chain (schema version 4 and
/// older) is rewritten in place when opened: its rows stay, and a state outside the four is
/// still refused.
#[test]
fn the_old_state_check_is_rewritten_and_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.sqlite");
    {
        let conn = Connection::open(&path).unwrap();
        let old = before_v5(&SCHEMA.replace(state_check!(), state_check_before!()));
        assert_ne!(old, SCHEMA);
        conn.execute_batch(&old).unwrap();
        conn.pragma_update(None, "user_version", 4).unwrap();
    }
    let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
    {
        // Written by the old schema through a ledger that does not rewrite it yet.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "INSERT INTO recent (request_id, key_id, scope, chain, model, day, month, minute,
                state, held_micros, held_tokens, created_at, expires_at)
             VALUES ('before', 'k', 'a', 'a', 'm', '2026-11-22', '2026-11', 0, 'held', 500, 10,
                1795348800, 1795352400)",
        )
        .unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(
        ledger
            .request_state("before")
            .unwrap()
            .map(RequestState::as_str),
        Some("held")
    );
    let usage = Usage {
        cost_micros: Some(100),
        ..Usage::default()
    };
    assert!(matches!(
        ledger.commit("before", &usage, now).unwrap(),
        Settlement::Committed {
            cost_micros: 100,
            ..
        }
    ));
    drop(ledger);
    let conn = Connection::open(&path).unwrap();
    let old_checks: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE instr(sql, ?1) > 0",
            [state_check_before!()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old_checks, 0);
    conn.execute("INSERT INTO requests SELECT * FROM recent", [])
        .unwrap();
    for table in ["recent", "requests"] {
        let refused = conn
            .execute(&format!("UPDATE {table} SET state = 'spent'"), [])
            .unwrap_err();
        assert!(
            refused.to_string().contains("CHECK constraint failed"),
            "{table}: {refused}"
        );
    }
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

/// Writing a request row builds no temporary table: SQLite does for a `CHECK` over an
/// `IN` list of three or more values, and it cost a sixth of every reserve+commit cycle.
#[test]
fn writing_a_request_row_builds_no_temporary_table() {
    let ledger = Ledger::open_in_memory().unwrap();
    let inner = ledger.inner.lock().unwrap();
    for sql in [
        insert_request_sql!("recent"),
        insert_request_sql!("requests"),
        "UPDATE recent SET state = ?2 WHERE request_id = ?1",
        "INSERT INTO requests SELECT * FROM recent WHERE state != 'held'",
    ] {
        let mut explain = inner.conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
        let unbound = std::iter::repeat_n(rusqlite::types::Null, explain.parameter_count());
        let opcodes: Vec<String> = explain
            .query_map(params_from_iter(unbound), |r| r.get(1))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            opcodes.iter().all(|op| op != "OpenEphemeral"),
            "{sql}: {opcodes:?}"
        );
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.sqlite");
    drop(Ledger::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = Ledger::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::NewerSchema {
                found: 6,
                supported: 5
            }
        ),
        "{err}"
    );
}

/// Several processes starting at once on a ledger file that does not exist yet all open it:
/// the first creates it and turns on the write-ahead log while the others wait, none fails
/// with "database is locked".
#[test]
fn many_connections_opening_a_new_ledger_at_once_all_succeed() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            let opens: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        Ledger::open(&path).map(drop)
                    })
                })
                .collect();
            for open in opens {
                if let Err(e) = open.join().unwrap() {
                    panic!("round {round}: {e}");
                }
            }
        });
    }
}
