//! The rows of requests: finding one, writing a hold or a committed record, settling, and the
//! sweep of expired holds. Each keeps the running totals in step with what it writes.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::Txn;
use super::totals::{Amounts, read_amounts};
use crate::catalog::Price;
use crate::error::LedgerError;
use crate::ledger::{Hold, RequestState, ScopeUsage, WindowUsage};
use crate::time::Timestamp;

/// `INSERT INTO <table>` of a new request row.
macro_rules! insert_request_sql {
    ($name:literal) => {
        concat!(
            "INSERT INTO ",
            $name,
            " (request_id, key_id, scope, chain, model, day, month, minute, state,
            held_micros, held_tokens, cost_micros, input_tokens, price_input, price_output,
            price_cached_input, created_at, expires_at, settled_at, action)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
                 ?20)"
        )
    };
}

#[cfg(test)]
pub(super) use insert_request_sql;

pub(super) fn to_i64(value: u64, request_id: &str) -> Result<i64, LedgerError> {
    i64::try_from(value).map_err(|_| LedgerError::Overflow(request_id.to_owned()))
}

pub(super) fn from_i64(value: i64) -> Result<u64, LedgerError> {
    u64::try_from(value).map_err(|_| LedgerError::Corrupt(format!("negative amount {value}")))
}

/// A request as the ledger holds it.
#[derive(Debug)]
pub(super) struct RequestRow {
    pub(super) state: RequestState,
    /// Whether the row is in `recent` (else in `requests`, folded).
    pub(super) recent: bool,
    pub(super) key_id: String,
    pub(super) action: String,
    pub(super) model: String,
    /// The scope and its ancestors, newline-separated as stored.
    pub(super) chain: String,
    pub(super) day: String,
    pub(super) month: String,
    pub(super) minute: i64,
    pub(super) held: Amounts,
    pub(super) cost_micros: u64,
    pub(super) price: Option<Price>,
    pub(super) expires_at: Timestamp,
}

impl RequestRow {
    /// Whether `hold` is this request again (same key, action and model, no larger amount),
    /// rather than another request under its id.
    pub(super) fn is_retried_by(&self, hold: &Hold<'_>) -> bool {
        self.key_id == hold.key_id
            && self.action == hold.action
            && self.model == hold.model
            && i64::try_from(hold.micros).is_ok_and(|m| m <= self.held.micros)
            && i64::try_from(hold.tokens).is_ok_and(|t| t <= self.held.tokens)
    }
}

pub(super) fn find(txn: &Txn<'_>, request_id: &str) -> Result<Option<RequestRow>, LedgerError> {
    // A live hold or a recently settled request, else a folded one: one statement, which stops
    // at the first row.
    macro_rules! find_in {
        ($recent:literal, $name:literal) => {
            concat!(
                "SELECT ",
                $recent,
                ", state, chain, day, month, held_micros, held_tokens, cost_micros,
                        price_input, price_output, price_cached_input, expires_at,
                        key_id, action, model, minute
                 FROM ",
                $name,
                " WHERE request_id = ?1"
            )
        };
    }
    let raw = txn
        .conn
        .prepare_cached(concat!(
            find_in!("1", "recent"),
            " UNION ALL ",
            find_in!("0", "requests"),
            " LIMIT 1"
        ))?
        .query_row([request_id], |r| {
            Ok((
                r.get::<_, bool>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                [r.get::<_, i64>(5)?, r.get(6)?, r.get(7)?],
                [r.get::<_, Option<i64>>(8)?, r.get(9)?, r.get(10)?],
                r.get::<_, i64>(11)?,
                [r.get::<_, String>(12)?, r.get(13)?, r.get(14)?],
                r.get::<_, i64>(15)?,
            ))
        })
        .optional()?;
    let Some((recent, state, chain, day, month, amounts, prices, expires_at, names, minute)) = raw
    else {
        return Ok(None);
    };
    let [key_id, action, model] = names;
    let state = RequestState::parse(&state)
        .ok_or_else(|| LedgerError::Corrupt(format!("unknown request state `{state}`")))?;
    let price = match prices {
        [Some(input), Some(output), Some(cached)] => Some(Price {
            input: from_i64(input)?,
            output: from_i64(output)?,
            cached_input: from_i64(cached)?,
        }),
        _ => None,
    };
    Ok(Some(RequestRow {
        state,
        recent,
        key_id,
        action,
        model,
        chain,
        day,
        month,
        minute,
        held: read_amounts(amounts[0], amounts[1])?,
        cost_micros: from_i64(amounts[2])?,
        price,
        expires_at: Timestamp::from_unix(expires_at),
    }))
}

/// `?a, ?b, ...` for `count` parameters numbered from `first`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Expires every hold whose TTL has passed.
pub(super) fn sweep(txn: &mut Txn<'_>, now: Timestamp) -> Result<u64, LedgerError> {
    // `recent` is short: the live holds and at most a fold's worth of settled rows.
    let expired: Vec<(String, String, String, String, i64, i64)> = txn
        .conn
        .prepare_cached(
            "SELECT request_id, chain, day, month, held_micros, held_tokens FROM recent
             WHERE state = 'held' AND expires_at <= ?1",
        )?
        .query_map([now.unix()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    for (request_id, chain, day, month, micros, tokens) in &expired {
        let held = read_amounts(*micros, *tokens)?;
        txn.totals.hold(chain, day, month, held.negated());
        txn.totals.settled();
        settle(
            txn,
            request_id,
            true,
            &Settled::without_cost(RequestState::Expired, now),
        )?;
    }
    Ok(expired.len() as u64)
}

/// Spend of each of `scopes` in the windows of `time`, in the order given. Requests and tokens
/// per minute are read only for the scopes in `rated` (those with a rate limit).
pub(super) fn usage(
    txn: &mut Txn<'_>,
    scopes: &[&str],
    rated: &[&str],
    time: Timestamp,
    day: &str,
    month: &str,
) -> Result<Vec<ScopeUsage>, LedgerError> {
    let mut out = Vec::with_capacity(scopes.len());
    for scope in scopes {
        let mut window = |period: &str| -> Result<WindowUsage, LedgerError> {
            let committed = txn.totals.committed(txn.conn, scope, period)?;
            let held = txn.totals.held(scope, period);
            Ok(WindowUsage {
                committed_micros: from_i64(committed.micros)?,
                held_micros: from_i64(held.micros)?,
                committed_tokens: from_i64(committed.tokens)?,
                held_tokens: from_i64(held.tokens)?,
            })
        };
        out.push(ScopeUsage {
            day: window(day)?,
            month: window(month)?,
            ..ScopeUsage::default()
        });
    }
    if rated.is_empty() {
        return Ok(out);
    }
    let position = |scope: &str| scopes.iter().position(|s| *s == scope);
    let sql = format!(
        "SELECT scope, requests, tokens FROM rates WHERE minute = ?1 AND scope IN ({})",
        placeholders(2, rated.len())
    );
    let mut values = vec![Value::Integer(time.minute_key())];
    values.extend(rated.iter().map(|s| Value::Text((*s).to_owned())));
    let mut statement = txn.conn.prepare_cached(&sql)?;
    let mut rows = statement.query(params_from_iter(values))?;
    while let Some(row) = rows.next()? {
        let scope: String = row.get(0)?;
        if let Some(i) = position(&scope) {
            out[i].minute_requests = from_i64(row.get(1)?)?;
            out[i].minute_tokens = from_i64(row.get(2)?)?;
        }
    }
    Ok(out)
}

/// How a request was settled, for [`settle`].
pub(super) struct Settled {
    pub(super) state: RequestState,
    pub(super) cost_micros: i64,
    pub(super) input_tokens: i64,
    pub(super) cached_input_tokens: i64,
    pub(super) output_tokens: i64,
    pub(super) at: i64,
}

impl Settled {
    pub(super) fn without_cost(state: RequestState, now: Timestamp) -> Self {
        Self {
            state,
            cost_micros: 0,
            input_tokens: 0,
            cached_input_tokens: 0,
            output_tokens: 0,
            at: now.unix(),
        }
    }
}

/// Records how a request was settled, in place, in `recent` or (a request that expired and was
/// folded) in `requests`. The caller keeps the running totals in step.
pub(super) fn settle(
    txn: &Txn<'_>,
    request_id: &str,
    recent: bool,
    settled: &Settled,
) -> Result<(), LedgerError> {
    macro_rules! settle_in {
        ($name:literal) => {
            concat!(
                "UPDATE ",
                $name,
                " SET state = ?2, cost_micros = ?3, input_tokens = ?4,
                 cached_input_tokens = ?5, output_tokens = ?6, settled_at = ?7
                 WHERE request_id = ?1"
            )
        };
    }
    let sql = if recent {
        settle_in!("recent")
    } else {
        settle_in!("requests")
    };
    txn.conn.prepare_cached(sql)?.execute(params![
        request_id,
        settled.state.as_str(),
        settled.cost_micros,
        settled.input_tokens,
        settled.cached_input_tokens,
        settled.output_tokens,
        settled.at
    ])?;
    Ok(())
}

/// What [`insert_request`] stored: the chain, day and month as the totals key them, and the
/// amount.
struct Written {
    chain: String,
    day: String,
    month: String,
    amounts: Amounts,
}

/// Writes the row of a new request into `recent`, held or (spend recorded outside a reservation)
/// committed.
fn insert_request(
    txn: &Txn<'_>,
    hold: &Hold<'_>,
    state: RequestState,
    expires_at: Timestamp,
) -> Result<Written, LedgerError> {
    let id = hold.request_id;
    let price = |f: fn(&Price) -> u64| hold.price.as_ref().map(|p| to_i64(f(p), id)).transpose();
    let micros = to_i64(hold.micros, id)?;
    let tokens = to_i64(hold.tokens, id)?;
    let committed = state == RequestState::Committed;
    let chain = hold.chain.join("\n");
    let day = hold.time.day_key();
    let month = hold.time.month_key();
    txn.conn
        .prepare_cached(insert_request_sql!("recent"))?
        .execute(params![
            id,
            hold.key_id,
            hold.chain.first().copied().unwrap_or_default(),
            chain,
            hold.model,
            day,
            month,
            hold.time.minute_key(),
            state.as_str(),
            micros,
            tokens,
            if committed { micros } else { 0 },
            if committed { tokens } else { 0 },
            price(|p| p.input)?,
            price(|p| p.output)?,
            price(|p| p.cached_input)?,
            hold.time.unix(),
            expires_at.unix(),
            committed.then_some(hold.time.unix()),
            hold.action,
        ])?;
    Ok(Written {
        chain,
        day,
        month,
        amounts: Amounts { micros, tokens },
    })
}

/// Writes a hold that lives until `expires_at` and charges it to the whole chain, day, month
/// and minute.
pub(super) fn insert_hold(
    txn: &mut Txn<'_>,
    hold: &Hold<'_>,
    expires_at: Timestamp,
) -> Result<(), LedgerError> {
    let Written {
        chain,
        day,
        month,
        amounts,
    } = insert_request(txn, hold, RequestState::Held, expires_at)?;
    txn.totals.hold(&chain, &day, &month, amounts);
    if hold.rated.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (0..hold.rated.len())
        .map(|i| format!("(?{}, ?1, 1, ?2)", 3 + i))
        .collect();
    let sql = format!(
        "INSERT INTO rates (scope, minute, requests, tokens) VALUES {}
         ON CONFLICT (scope, minute) DO UPDATE SET
            requests = requests + 1, tokens = tokens + excluded.tokens",
        rows.join(", ")
    );
    let mut values = vec![
        Value::Integer(hold.time.minute_key()),
        Value::Integer(amounts.tokens),
    ];
    values.extend(hold.rated.iter().map(|s| Value::Text((*s).to_owned())));
    txn.conn
        .prepare_cached(&sql)?
        .execute(params_from_iter(values))?;
    Ok(())
}

/// Records spend that happened outside a reservation (imports, fixtures): a committed request.
pub(super) fn insert_committed(txn: &mut Txn<'_>, hold: &Hold<'_>) -> Result<(), LedgerError> {
    if find(txn, hold.request_id)?.is_some() {
        return Err(LedgerError::DuplicateRequest(hold.request_id.to_owned()));
    }
    let Written {
        chain,
        day,
        month,
        amounts,
    } = insert_request(txn, hold, RequestState::Committed, hold.time)?;
    txn.totals.charge_unfolded(&chain, &day, &month, amounts);
    txn.totals.settled();
    Ok(())
}
