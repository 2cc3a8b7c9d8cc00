//! What the ledger reports: spend grouped for chargeback, window totals, a request's state.

use rusqlite::OptionalExtension;

use super::rows::from_i64;
use super::{Begin, SqliteLedger};
use crate::error::LedgerError;
use crate::ledger::{RequestState, SpendGrouping, SpendRow};

impl SqliteLedger {
    /// Committed spend (and live holds) grouped by scope, model or day, from `since` (a day
    /// `YYYY-MM-DD` as the windows are keyed, inclusive) on.
    pub(in crate::ledger) fn spend(
        &self,
        by: SpendGrouping,
        since: Option<&str>,
    ) -> Result<Vec<SpendRow>, LedgerError> {
        let column = match by {
            SpendGrouping::Scope => "scope",
            SpendGrouping::Model => "model",
            SpendGrouping::Key => "key_id",
            SpendGrouping::Day => "day",
        };
        let fields =
            "scope, model, key_id, day, state, cost_micros, input_tokens, cached_input_tokens,
                      output_tokens, held_micros";
        let sql = format!(
            "SELECT {column},
                    SUM(state = 'committed'),
                    COALESCE(SUM(CASE WHEN state = 'committed' THEN cost_micros END), 0),
                    COALESCE(SUM(CASE WHEN state = 'committed' THEN input_tokens + cached_input_tokens END), 0),
                    COALESCE(SUM(CASE WHEN state = 'committed' THEN output_tokens END), 0),
                    SUM(state = 'held'),
                    COALESCE(SUM(CASE WHEN state = 'held' THEN held_micros END), 0)
             FROM (SELECT {fields} FROM requests WHERE day >= ?1 AND state = 'committed'
                   UNION ALL SELECT {fields} FROM recent
                   WHERE day >= ?1 AND state IN ('held', 'committed'))
             GROUP BY {column} ORDER BY {column}"
        );
        let inner = self.inner.lock().map_err(|_| LedgerError::Poisoned)?;
        let mut statement = inner.conn.prepare(&sql)?;
        let rows = statement.query_map([since.unwrap_or("")], |r| {
            Ok((
                r.get::<_, String>(0)?,
                [
                    r.get::<_, i64>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ],
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (group, n) = row?;
            out.push(SpendRow {
                group,
                requests: from_i64(n[0])?,
                cost_micros: from_i64(n[1])?,
                input_tokens: from_i64(n[2])?,
                output_tokens: from_i64(n[3])?,
                held_requests: from_i64(n[4])?,
                held_micros: from_i64(n[5])?,
            });
        }
        Ok(out)
    }

    /// The running totals of `scope` (the scope and everything under it) in `period`
    /// (`YYYY-MM-DD` or `YYYY-MM`): committed and held micro-dollars.
    pub(in crate::ledger) fn window_totals(
        &self,
        scope: &str,
        period: &str,
    ) -> Result<(u64, u64), LedgerError> {
        self.transact(Begin::Read, |txn| {
            let committed = txn.totals.committed(txn.conn, scope, period)?;
            let held = txn.totals.held(scope, period);
            Ok((from_i64(committed.micros)?, from_i64(held.micros)?))
        })
    }

    /// The state of a request: `held`, `committed`, `released` or `expired`.
    pub(in crate::ledger) fn request_state(
        &self,
        request_id: &str,
    ) -> Result<Option<RequestState>, LedgerError> {
        let inner = self.inner.lock().map_err(|_| LedgerError::Poisoned)?;
        let state: Option<String> = inner
            .conn
            .query_row(
                "SELECT state FROM recent WHERE request_id = ?1
                 UNION ALL SELECT state FROM requests WHERE request_id = ?1",
                [request_id],
                |r| r.get(0),
            )
            .optional()?;
        state
            .map(|s| {
                RequestState::parse(&s)
                    .ok_or_else(|| LedgerError::Corrupt(format!("unknown request state `{s}`")))
            })
            .transpose()
    }
}
