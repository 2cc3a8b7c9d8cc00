//! The whole-ledger check and the rebuild of `totals`: every row against its checksum, and every
//! total against the folded requests it sums.

use std::collections::BTreeMap;

use super::rows::{RequestRow, parse_row, row_columns};
use super::totals::{Amounts, write_totals_row};
use super::{Begin, SqliteLedger, Txn, checksum};
use crate::error::LedgerError;
use crate::ledger::{RequestState, Verification};

/// The committed totals by scope and period, as the folded requests sum them.
type Sums = BTreeMap<(String, String), Amounts>;

impl SqliteLedger {
    /// See [`Ledger::verify`](crate::Ledger::verify).
    pub(in crate::ledger) fn verify(&self) -> Result<Verification, LedgerError> {
        self.transact(Begin::InspectRead, |txn| {
            let mut report = Verification::default();
            let sums = check_requests(txn, &mut report)?;
            check_totals(txn, &sums, &mut report)?;
            check_journal(txn, &mut report)?;
            Ok(report)
        })
    }

    /// See [`Ledger::rebuild_totals`](crate::Ledger::rebuild_totals).
    pub(in crate::ledger) fn rebuild_totals(&self) -> Result<Verification, LedgerError> {
        self.transact(Begin::InspectWrite, |txn| {
            let mut report = Verification::default();
            let sums = check_requests(txn, &mut report)?;
            if !report.problems.is_empty() {
                return Err(LedgerError::Corrupt(format!(
                    "{} request rows fail their checksums, so the totals cannot be recomputed \
                     from them: {}",
                    report.problems.len(),
                    report.problems.join("; ")
                )));
            }
            txn.conn.execute_batch("DELETE FROM totals")?;
            for ((scope, period), total) in &sums {
                write_totals_row(txn.conn, scope, period, *total)?;
            }
            report.totals = sums.len() as u64;
            Ok(report)
        })
    }
}

/// Checks every request row; returns what the folded committed ones sum to.
fn check_requests(txn: &Txn<'_>, report: &mut Verification) -> Result<Sums, LedgerError> {
    let mut sums = Sums::new();
    for (table, recent) in [("recent", true), ("requests", false)] {
        let mut statement = txn
            .conn
            .prepare(&format!("SELECT {} FROM {table}", row_columns!()))?;
        let mut rows = statement.query([])?;
        while let Some(r) = rows.next()? {
            let row: RequestRow = match parse_row(r, 0, recent, false) {
                Ok(row) => row,
                Err(e) => {
                    report.problems.push(format!("a row of `{table}`: {e}"));
                    continue;
                }
            };
            report.rows += 1;
            let stored: i64 = r.get(19)?;
            if stored != row.checksum() {
                report.problems.push(format!(
                    "request `{}` in `{table}` fails its checksum",
                    row.request_id
                ));
                continue;
            }
            if !recent && row.state == RequestState::Committed {
                for scope in row.chain.split('\n') {
                    for period in [&row.day, &row.month] {
                        let sum = sums.entry((scope.to_owned(), period.clone())).or_default();
                        *sum = sum.plus(row.committed());
                    }
                }
            }
        }
    }
    Ok(sums)
}

/// Checks every row of `totals` against its checksum and against `sums`.
fn check_totals(txn: &Txn<'_>, sums: &Sums, report: &mut Verification) -> Result<(), LedgerError> {
    let rows: Vec<(String, String, i64, i64, i64)> = txn
        .conn
        .prepare(
            "SELECT scope, period, committed_micros, committed_tokens, checksum FROM totals
             ORDER BY scope, period",
        )?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut seen = 0;
    for (scope, period, micros, tokens, stored) in rows {
        report.totals += 1;
        if stored != checksum::totals_row(&scope, &period, micros, tokens) {
            report.problems.push(format!(
                "the total of `{scope}` for `{period}` fails its checksum"
            ));
        }
        let expected = sums
            .get(&(scope.clone(), period.clone()))
            .copied()
            .unwrap_or_default();
        seen += usize::from(sums.contains_key(&(scope.clone(), period.clone())));
        if (expected.micros, expected.tokens) != (micros, tokens) {
            report.problems.push(format!(
                "the total of `{scope}` for `{period}` says {micros} micro-dollars and {tokens} \
                 tokens; its requests sum to {} and {}",
                expected.micros, expected.tokens
            ));
        }
    }
    if seen < sums.len() {
        report.problems.push(format!(
            "{} scope windows with committed requests have no total",
            sums.len() - seen
        ));
    }
    Ok(())
}

/// Checks every journal entry against its checksum.
fn check_journal(txn: &Txn<'_>, report: &mut Verification) -> Result<(), LedgerError> {
    let seqs = txn.totals.damaged_journal_entries(txn.conn)?;
    report.problems.extend(
        seqs.into_iter()
            .map(|seq| format!("journal entry {seq} fails its checksum")),
    );
    Ok(())
}
