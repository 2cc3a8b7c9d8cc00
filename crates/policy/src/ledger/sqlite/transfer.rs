//! Moving requests out of and into a SQLite ledger: `keyscope ledger migrate`.

use super::rows::{self, RequestRow, Settled, from_i64, read_row, row_columns, to_i64};
use super::totals::Amounts;
use super::{Begin, SqliteLedger};
use crate::error::LedgerError;
use crate::ledger::{Hold, RequestRecord, RequestState};
use crate::time::{Timestamp, Windows};

impl SqliteLedger {
    /// Every request, folded ones first, each checked against its checksum.
    pub(in crate::ledger) fn export(&self) -> Result<Vec<RequestRecord>, LedgerError> {
        self.transact(Begin::InspectRead, |txn| {
            let mut out = Vec::new();
            for (table, recent) in [("requests", false), ("recent", true)] {
                let sql = format!(
                    "SELECT {} FROM {table} ORDER BY created_at, request_id",
                    row_columns!()
                );
                let mut statement = txn.conn.prepare(&sql)?;
                let mut found = statement.query([])?;
                while let Some(r) = found.next()? {
                    out.push(record_of(&read_row(r, 0, recent)?)?);
                }
            }
            Ok(out)
        })
    }

    /// The request under `request_id`, checked against its checksum.
    pub(in crate::ledger) fn request(
        &self,
        request_id: &str,
    ) -> Result<Option<RequestRecord>, LedgerError> {
        self.transact(Begin::InspectRead, |txn| {
            rows::find(txn, request_id)?
                .as_ref()
                .map(record_of)
                .transpose()
        })
    }

    /// Writes `records` that this ledger does not have yet, with their totals.
    pub(in crate::ledger) fn import(
        &self,
        records: &[RequestRecord],
    ) -> Result<(u64, u64), LedgerError> {
        self.write(|txn| {
            let (mut written, mut skipped) = (0, 0);
            for record in records {
                if rows::find(txn, &record.request_id)?.is_some() {
                    skipped += 1;
                    continue;
                }
                let chain: Vec<&str> = record.chain.iter().map(String::as_str).collect();
                let windows = Windows {
                    day: record.day.clone(),
                    month: record.month.clone(),
                };
                let hold = Hold {
                    request_id: &record.request_id,
                    key_id: &record.key_id,
                    action: &record.action,
                    chain: &chain,
                    // Minute counters are not moved: they are gone within a minute anyway.
                    rated: &[],
                    model: &record.model,
                    time: record.time,
                    windows: &windows,
                    micros: record.held_micros,
                    tokens: record.held_tokens,
                    price: record.price,
                };
                rows::insert_hold(txn, &hold, record.expires_at)?;
                if record.state != RequestState::Held {
                    settle_imported(txn, record)?;
                }
                written += 1;
            }
            Ok((written, skipped))
        })
    }
}

/// Settles a just-imported hold as `record` was settled where it came from.
fn settle_imported(txn: &mut super::Txn<'_>, record: &RequestRecord) -> Result<(), LedgerError> {
    let id = &record.request_id;
    let row = rows::find(txn, id)?.ok_or_else(|| LedgerError::UnknownRequest(id.clone()))?;
    txn.totals
        .hold(&row.chain, &row.day, &row.month, row.held.negated());
    txn.totals.settled();
    let settled = Settled {
        state: record.state,
        cost_micros: to_i64(record.cost_micros, id)?,
        input_tokens: to_i64(record.input_tokens, id)?,
        cached_input_tokens: to_i64(record.cached_input_tokens, id)?,
        output_tokens: to_i64(record.output_tokens, id)?,
        at: record.time.unix(),
    };
    if record.state == RequestState::Committed {
        let charged = Amounts {
            micros: settled.cost_micros,
            tokens: to_i64(record.committed_tokens(), id)?,
        };
        txn.totals
            .charge_unfolded(&row.chain, &row.day, &row.month, charged);
    }
    rows::settle(txn, &row, &settled)
}

/// A row as the backend-neutral record.
fn record_of(row: &RequestRow) -> Result<RequestRecord, LedgerError> {
    Ok(RequestRecord {
        request_id: row.request_id.clone(),
        state: row.state,
        key_id: row.key_id.clone(),
        action: row.action.clone(),
        model: row.model.clone(),
        chain: row.chain.split('\n').map(str::to_owned).collect(),
        // The row keeps the minute it was made in: its day, month and minute are what count.
        time: Timestamp::from_unix(row.minute.saturating_mul(60)),
        day: row.day.clone(),
        month: row.month.clone(),
        expires_at: row.expires_at,
        held_micros: from_i64(row.held.micros)?,
        held_tokens: from_i64(row.held.tokens)?,
        cost_micros: from_i64(row.cost_micros)?,
        input_tokens: from_i64(row.input_tokens)?,
        cached_input_tokens: from_i64(row.cached_input_tokens)?,
        output_tokens: from_i64(row.output_tokens)?,
        price: row.price,
    })
}
