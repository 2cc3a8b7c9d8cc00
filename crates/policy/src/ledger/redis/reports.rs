//! What the Redis ledger reports: spend, window totals, a request's state, the whole-ledger
//! check, and the requests a migration moves.

use std::collections::BTreeMap;

use redis::Value;

use super::{Org, RedisLedger, amount, integer, parse_price, strings};
use crate::error::LedgerError;
use crate::ledger::{RequestRecord, RequestState, SpendGrouping, SpendRow, Verification};
use crate::time::Timestamp;

impl RedisLedger {
    /// Committed spend from the per-day counters the commit script keeps, and live holds from
    /// the holds of each organisation.
    pub(in crate::ledger) fn spend(
        &self,
        by: SpendGrouping,
        since: Option<&str>,
    ) -> Result<Vec<SpendRow>, LedgerError> {
        let since = since.unwrap_or("");
        let mut rows: BTreeMap<String, SpendRow> = BTreeMap::new();
        let mut add = |group: &str, f: &dyn Fn(&mut SpendRow)| {
            let entry = rows.entry(group.to_owned()).or_insert_with(|| SpendRow {
                group: group.to_owned(),
                requests: 0,
                cost_micros: 0,
                input_tokens: 0,
                output_tokens: 0,
                held_requests: 0,
                held_micros: 0,
            });
            f(entry);
        };
        let kind = match by {
            SpendGrouping::Scope | SpendGrouping::Day => "s",
            SpendGrouping::Model => "m",
            SpendGrouping::Key => "k",
        };
        for root in self.roots()? {
            let org = self.org(&root);
            let days_key = org.key("days");
            let mut days: Vec<String> = self
                .pool
                .run(|c| redis::cmd("SMEMBERS").arg(&days_key).query(c))?;
            days.retain(|d| d.as_str() >= since);
            for day in days {
                let spend_key = org.key(&format!("spend:{day}"));
                let fields: Vec<(String, String)> = self
                    .pool
                    .run(|c| redis::cmd("HGETALL").arg(&spend_key).query(c))?;
                for (field, value) in fields {
                    let Some((group_kind, rest)) = field.split_once('\t') else {
                        continue;
                    };
                    let Some((name, what)) = rest.rsplit_once('\t') else {
                        continue;
                    };
                    if group_kind != kind {
                        continue;
                    }
                    let group = if by == SpendGrouping::Day { &day } else { name };
                    let value = amount(&value)?;
                    add(group, &|r: &mut SpendRow| match what {
                        "n" => r.requests += value,
                        "c" => r.cost_micros += value,
                        "i" => r.input_tokens += value,
                        "o" => r.output_tokens += value,
                        _ => {}
                    });
                }
            }
            for hold in self.live_holds(&org)? {
                if hold.day.as_str() < since {
                    continue;
                }
                let group = match by {
                    SpendGrouping::Scope => hold.scope.as_str(),
                    SpendGrouping::Model => hold.model.as_str(),
                    SpendGrouping::Key => hold.key.as_str(),
                    SpendGrouping::Day => hold.day.as_str(),
                };
                add(group, &|r: &mut SpendRow| {
                    r.held_requests += 1;
                    r.held_micros += hold.micros;
                });
            }
        }
        Ok(rows.into_values().collect())
    }

    fn live_holds(&self, org: &Org) -> Result<Vec<LiveHoldRow>, LedgerError> {
        let holds_key = org.key("holds");
        let ids: Vec<String> = self
            .pool
            .run(|c| redis::cmd("ZRANGE").arg(&holds_key).arg(0).arg(-1).query(c))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let key = org.key(&format!("req:{id}"));
            let f: [Option<String>; 6] = self.pool.run(|c| {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg(&["state", "chain", "model", "key", "day", "held_micros"])
                    .query(c)
            })?;
            let [state, chain, model, key, day, micros] = f;
            if state.as_deref() != Some("held") {
                continue;
            }
            out.push(LiveHoldRow {
                scope: chain
                    .unwrap_or_default()
                    .split('\n')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                model: model.unwrap_or_default(),
                key: key.unwrap_or_default(),
                day: day.unwrap_or_default(),
                micros: amount(&micros.unwrap_or_default())?,
            });
        }
        Ok(out)
    }

    /// Committed and held micro-dollars of `scope` in `period`.
    pub(in crate::ledger) fn window_totals(
        &self,
        scope: &str,
        period: &str,
    ) -> Result<(u64, u64), LedgerError> {
        let (mut committed, mut held) = (0, 0);
        for root in self.roots()? {
            let key = self.org(&root).key(&format!("tot:{period}"));
            let (c, h): (Option<String>, Option<String>) = self.pool.run(|c| {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg(format!("c:{scope}"))
                    .arg(format!("h:{scope}"))
                    .query(c)
            })?;
            committed += amount(&c.unwrap_or_default())?;
            held += amount(&h.unwrap_or_default())?;
        }
        Ok((committed, held))
    }

    pub(in crate::ledger) fn request_state(
        &self,
        request_id: &str,
    ) -> Result<Option<RequestState>, LedgerError> {
        match self.owner(request_id)? {
            Some(root) => Ok(self.row(&self.org(&root), request_id)?.state),
            None => Ok(None),
        }
    }

    /// Recomputes every organisation's totals from its requests (atomically, per organisation)
    /// and names each that differs.
    pub(in crate::ledger) fn verify(&self) -> Result<Verification, LedgerError> {
        self.check_totals("verify")
    }

    /// [`verify`](Self::verify), and writes the recomputed totals.
    pub(in crate::ledger) fn rebuild_totals(&self) -> Result<Verification, LedgerError> {
        self.check_totals("rebuild")?;
        self.check_totals("verify")
    }

    fn check_totals(&self, mode: &str) -> Result<Verification, LedgerError> {
        let mut report = Verification::default();
        for root in self.roots()? {
            let org = self.org(&root);
            let mut invocation = self.scripts.totals.prepare_invoke();
            invocation
                .key(org.key("holds"))
                .arg(&org.keys)
                .arg(0)
                .arg(mode);
            let reply = strings(self.pool.run(|c| invocation.invoke::<Value>(c))?)?;
            let Some((requests, problems)) = reply.split_first() else {
                continue;
            };
            report.rows += amount(requests)?;
            report.totals += 1;
            for problem in problems {
                let parts: Vec<&str> = problem.split(' ').collect();
                if let [period, field, stored, expected] = parts[..] {
                    let (kind, scope) = field.split_once(':').unwrap_or(("?", field));
                    let what = match kind {
                        "c" => "committed micro-dollars",
                        "h" => "held micro-dollars",
                        "C" => "committed tokens",
                        "H" => "held tokens",
                        _ => "an unknown figure",
                    };
                    report.problems.push(format!(
                        "the total of {what} of scope `{scope}` in `{period}` is {stored}; its \
                         requests sum to {expected}"
                    ));
                }
            }
        }
        Ok(report)
    }

    /// The request under `request_id`.
    pub(in crate::ledger) fn request(
        &self,
        request_id: &str,
    ) -> Result<Option<RequestRecord>, LedgerError> {
        let Some(root) = self.owner(request_id)? else {
            return Ok(None);
        };
        let key = self.org(&root).key(&format!("req:{request_id}"));
        let fields: Vec<(String, String)> = self
            .pool
            .run(|c| redis::cmd("HGETALL").arg(&key).query(c))?;
        if fields.is_empty() {
            return Ok(None);
        }
        record_of(request_id.to_owned(), &fields.into_iter().collect()).map(Some)
    }

    /// Every request of every organisation, oldest first.
    pub(in crate::ledger) fn export(&self) -> Result<Vec<RequestRecord>, LedgerError> {
        let mut out = Vec::new();
        for root in self.roots()? {
            let org = self.org(&root);
            let pattern = org.key("req:*");
            let keys: Vec<String> = self.pool.run(|c| {
                let mut keys = Vec::new();
                let mut cursor: u64 = 0;
                loop {
                    let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query(c)?;
                    keys.extend(page);
                    if next == 0 {
                        return Ok(keys);
                    }
                    cursor = next;
                }
            })?;
            for key in keys {
                let fields: Vec<(String, String)> = self
                    .pool
                    .run(|c| redis::cmd("HGETALL").arg(&key).query(c))?;
                let id = key[org.keys.len() + 4..].to_owned();
                out.push(record_of(id, &fields.into_iter().collect())?);
            }
        }
        out.sort_by(|a, b| (a.time, &a.request_id).cmp(&(b.time, &b.request_id)));
        Ok(out)
    }

    /// Writes each record this ledger does not have yet.
    pub(in crate::ledger) fn import(
        &self,
        records: &[RequestRecord],
    ) -> Result<(u64, u64), LedgerError> {
        let (mut written, mut skipped) = (0, 0);
        for record in records {
            let root = record.chain.last().cloned().unwrap_or_default();
            self.note_org(&root)?;
            if self.claim(&record.request_id, &root)?.is_some()
                || !self.write_record(&self.org(&root), record)?
            {
                skipped += 1;
            } else {
                written += 1;
            }
        }
        Ok((written, skipped))
    }
}

/// A live hold, as the spend report groups it.
struct LiveHoldRow {
    scope: String,
    model: String,
    key: String,
    day: String,
    micros: u64,
}

/// A request's hash as a record.
fn record_of(
    request_id: String,
    f: &BTreeMap<String, String>,
) -> Result<RequestRecord, LedgerError> {
    let text = |name: &str| f.get(name).cloned().unwrap_or_default();
    let state = RequestState::parse(&text("state")).ok_or_else(|| {
        LedgerError::Corrupt(format!("request `{request_id}` has no valid state"))
    })?;
    Ok(RequestRecord {
        state,
        key_id: text("key"),
        action: text("action"),
        model: text("model"),
        chain: text("chain").split('\n').map(str::to_owned).collect(),
        time: Timestamp::from_unix(integer(&text("time"))?),
        day: text("day"),
        month: text("month"),
        expires_at: Timestamp::from_unix(integer(&text("expires_at"))?),
        held_micros: amount(&text("held_micros"))?,
        held_tokens: amount(&text("held_tokens"))?,
        cost_micros: amount(&text("cost_micros"))?,
        input_tokens: amount(&text("input_tokens"))?,
        cached_input_tokens: amount(&text("cached_input_tokens"))?,
        output_tokens: amount(&text("output_tokens"))?,
        price: parse_price(&text("price"))?,
        request_id,
    })
}
