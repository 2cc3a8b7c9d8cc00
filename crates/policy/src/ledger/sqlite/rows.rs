//! The rows of requests: finding one, writing a hold or a committed record, settling, and the
//! sweep of expired holds. Each keeps the running totals in step with what it writes.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter};

use super::Txn;
use super::checksum::Checksum;
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
            price_cached_input, created_at, expires_at, settled_at, action, checksum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
                 ?20, ?21)"
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

/// The columns a [`RequestRow`] is read from, in [`read_row`]'s order.
macro_rules! row_columns {
    () => {
        "request_id, state, key_id, action, model, chain, day, month, minute, held_micros,
         held_tokens, cost_micros, input_tokens, cached_input_tokens, output_tokens, price_input,
         price_output, price_cached_input, expires_at, checksum"
    };
}
pub(super) use row_columns;

/// A request as the ledger holds it.
#[derive(Debug, Clone)]
pub(super) struct RequestRow {
    pub(super) request_id: String,
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
    pub(super) cost_micros: i64,
    pub(super) input_tokens: i64,
    pub(super) cached_input_tokens: i64,
    pub(super) output_tokens: i64,
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

    /// The committed cost, as the totals count it.
    pub(super) fn committed(&self) -> Amounts {
        Amounts {
            micros: self.cost_micros,
            tokens: self
                .input_tokens
                .saturating_add(self.cached_input_tokens)
                .saturating_add(self.output_tokens),
        }
    }

    /// The checksum of every field that decides what the request counts against a budget.
    pub(super) fn checksum(&self) -> i64 {
        self.checksum_settled(&Settled {
            state: self.state,
            cost_micros: self.cost_micros,
            input_tokens: self.input_tokens,
            cached_input_tokens: self.cached_input_tokens,
            output_tokens: self.output_tokens,
            at: 0,
        })
    }

    /// The checksum the row has once settled as `settled` says.
    fn checksum_settled(&self, settled: &Settled) -> i64 {
        let price = |f: fn(&Price) -> u64| {
            self.price
                .as_ref()
                .map_or(-1, |p| i64::try_from(f(p)).unwrap_or(-2))
        };
        Checksum::new()
            .text(&self.request_id)
            .text(settled.state.as_str())
            .text(&self.key_id)
            .text(&self.action)
            .text(&self.model)
            .text(&self.chain)
            .text(&self.day)
            .text(&self.month)
            .int(self.minute)
            .int(self.held.micros)
            .int(self.held.tokens)
            .int(settled.cost_micros)
            .int(settled.input_tokens)
            .int(settled.cached_input_tokens)
            .int(settled.output_tokens)
            .int(price(|p| p.input))
            .int(price(|p| p.output))
            .int(price(|p| p.cached_input))
            .int(self.expires_at.unix())
            .finish()
    }
}

/// Reads a request row selected as [`row_columns!`] from column `first` on, checking its
/// checksum.
pub(super) fn read_row(
    r: &rusqlite::Row<'_>,
    first: usize,
    recent: bool,
) -> Result<RequestRow, LedgerError> {
    parse_row(r, first, recent, true)
}

/// Reads a request row as [`read_row`] does; checks its checksum when `check` is set (a
/// migration computes the first one).
pub(super) fn parse_row(
    r: &rusqlite::Row<'_>,
    first: usize,
    recent: bool,
    check: bool,
) -> Result<RequestRow, LedgerError> {
    let at = |i: usize| first + i;
    let request_id: String = r.get(at(0))?;
    let state: String = r.get(at(1))?;
    let state = RequestState::parse(&state).ok_or_else(|| {
        LedgerError::Corrupt(format!(
            "request `{request_id}` has an unknown state `{state}`"
        ))
    })?;
    let price = match [
        r.get::<_, Option<i64>>(at(15))?,
        r.get(at(16))?,
        r.get(at(17))?,
    ] {
        [Some(input), Some(output), Some(cached)] => Some(Price {
            input: from_i64(input)?,
            output: from_i64(output)?,
            cached_input: from_i64(cached)?,
        }),
        _ => None,
    };
    let row = RequestRow {
        request_id,
        state,
        recent,
        key_id: r.get(at(2))?,
        action: r.get(at(3))?,
        model: r.get(at(4))?,
        chain: r.get(at(5))?,
        day: r.get(at(6))?,
        month: r.get(at(7))?,
        minute: r.get(at(8))?,
        held: read_amounts(r.get(at(9))?, r.get(at(10))?)?,
        cost_micros: r.get(at(11))?,
        input_tokens: r.get(at(12))?,
        cached_input_tokens: r.get(at(13))?,
        output_tokens: r.get(at(14))?,
        price,
        expires_at: Timestamp::from_unix(r.get(at(18))?),
    };
    read_amounts(row.cost_micros, row.committed().tokens)?;
    let stored: i64 = r.get(at(19))?;
    if check && stored != row.checksum() {
        return Err(LedgerError::Corrupt(format!(
            "the row of request `{}` in `{}` fails its checksum: an amount or a field was changed \
             outside keyscope",
            row.request_id,
            if recent { "recent" } else { "requests" }
        )));
    }
    Ok(row)
}

pub(super) fn find(txn: &Txn<'_>, request_id: &str) -> Result<Option<RequestRow>, LedgerError> {
    // A live hold or a recently settled request, else a folded one: one statement, which stops
    // at the first row.
    let mut statement = txn.conn.prepare_cached(concat!(
        "SELECT 1, ",
        row_columns!(),
        " FROM recent WHERE request_id = ?1 UNION ALL SELECT 0, ",
        row_columns!(),
        " FROM requests WHERE request_id = ?1 LIMIT 1"
    ))?;
    let mut rows = statement.query([request_id])?;
    match rows.next()? {
        Some(r) => {
            let recent: bool = r.get(0)?;
            read_row(r, 1, recent).map(Some)
        }
        None => Ok(None),
    }
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
    let mut statement = txn.conn.prepare_cached(concat!(
        "SELECT ",
        row_columns!(),
        " FROM recent WHERE state = 'held' AND expires_at <= ?1"
    ))?;
    let mut expired = Vec::new();
    let mut rows = statement.query([now.unix()])?;
    while let Some(r) = rows.next()? {
        expired.push(read_row(r, 0, true)?);
    }
    drop(rows);
    drop(statement);
    for row in &expired {
        txn.totals
            .hold(&row.chain, &row.day, &row.month, row.held.negated());
        txn.totals.settled();
        settle(txn, row, &Settled::without_cost(RequestState::Expired, now))?;
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

/// Records how `row` was settled, in place, in `recent` or (a request that expired and was
/// folded) in `requests`, with the row's new checksum. The caller keeps the running totals in
/// step.
pub(super) fn settle(
    txn: &Txn<'_>,
    row: &RequestRow,
    settled: &Settled,
) -> Result<(), LedgerError> {
    macro_rules! settle_in {
        ($name:literal) => {
            concat!(
                "UPDATE ",
                $name,
                " SET state = ?2, cost_micros = ?3, input_tokens = ?4,
                 cached_input_tokens = ?5, output_tokens = ?6, settled_at = ?7, checksum = ?8
                 WHERE request_id = ?1"
            )
        };
    }
    let sql = if row.recent {
        settle_in!("recent")
    } else {
        settle_in!("requests")
    };
    txn.conn.prepare_cached(sql)?.execute(params![
        row.request_id,
        settled.state.as_str(),
        settled.cost_micros,
        settled.input_tokens,
        settled.cached_input_tokens,
        settled.output_tokens,
        settled.at,
        row.checksum_settled(settled),
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
    let day = hold.windows.day.clone();
    let month = hold.windows.month.clone();
    let row = RequestRow {
        request_id: id.to_owned(),
        state,
        recent: true,
        key_id: hold.key_id.to_owned(),
        action: hold.action.to_owned(),
        model: hold.model.to_owned(),
        chain,
        day,
        month,
        minute: hold.time.minute_key(),
        held: Amounts { micros, tokens },
        cost_micros: if committed { micros } else { 0 },
        input_tokens: if committed { tokens } else { 0 },
        cached_input_tokens: 0,
        output_tokens: 0,
        price: hold.price,
        expires_at,
    };
    let checksum = row.checksum();
    let RequestRow {
        chain, day, month, ..
    } = row;
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
            checksum,
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
