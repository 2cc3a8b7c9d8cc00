//! Prometheus metrics at `GET /metrics`, in the text exposition format, kept in atomics and
//! small maps so that counting costs a decision nanoseconds, not a lock held across I/O.
//!
//! Labels carry only what the operator wrote (policy ids, engine rule ids, outcomes), never a key,
//! a model id or anything else a caller sent: reason ids pass through the service's masker, and
//! past [`MAX_REASONS`] distinct ids the rest are counted under `other`, so a store with a runaway
//! number of policies cannot blow up the scrape.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keyscope_policy::Decision;

/// Distinct reason labels kept before the rest count as `other`.
const MAX_REASONS: usize = 1_000;

/// Upper bounds of the latency buckets, in seconds: decisions take tens of microseconds, ledger
/// writes a millisecond or more.
const BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];

/// A latency histogram: cumulative on render, per-bucket while counting.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// What the ledger was asked to do, a label of its latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LedgerOp {
    /// A decision against the ledger's spend (checking or reserving).
    Decide,
    /// A commit of actual usage.
    Commit,
    /// A release of a hold.
    Release,
}

impl LedgerOp {
    const ALL: [Self; 3] = [Self::Decide, Self::Commit, Self::Release];

    fn label(self) -> &'static str {
        match self {
            Self::Decide => "decide",
            Self::Commit => "commit",
            Self::Release => "release",
        }
    }
}

/// Everything `/metrics` reports.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    allowed: AtomicU64,
    denied: AtomicU64,
    /// Reason counts by reason id: denials at 0, allows at 1.
    reasons: Mutex<[HashMap<String, u64>; 2]>,
    decision_latency: Histogram,
    ledger_latency: [Histogram; 3],
    reloads: AtomicU64,
    reloads_refused: AtomicU64,
    shed: AtomicU64,
    timed_out: AtomicU64,
    unauthorized: AtomicU64,
}

/// Figures read when scraped rather than counted.
pub(crate) struct Gauges {
    /// Audit records queued but not yet written; `None` without an audit log.
    pub(crate) audit_backlog: Option<usize>,
    /// Whether the audit log still writes.
    pub(crate) audit_healthy: bool,
    /// Policies in the store deciding now.
    pub(crate) policies: usize,
}

impl Metrics {
    /// Counts one decision and how long it took (engine, ledger and audit queueing).
    pub(crate) fn decided(&self, decision: &Decision, took: Duration) {
        let outcome = if decision.allowed {
            &self.allowed
        } else {
            &self.denied
        };
        outcome.fetch_add(1, Ordering::Relaxed);
        self.decision_latency.observe(took);
        let Ok(mut reasons) = self.reasons.lock() else {
            return;
        };
        let counts = &mut reasons[usize::from(decision.allowed)];
        for reason in &decision.reasons {
            if let Some(count) = counts.get_mut(reason.id.as_str()) {
                *count += 1;
            } else if counts.len() < MAX_REASONS {
                counts.insert(reason.id.clone(), 1);
            } else {
                *counts.entry("other".to_owned()).or_insert(0) += 1;
            }
        }
    }

    /// Counts one ledger call and how long it took.
    pub(crate) fn ledger(&self, op: LedgerOp, took: Duration) {
        let index = LedgerOp::ALL.iter().position(|o| *o == op).unwrap_or(0);
        self.ledger_latency[index].observe(took);
    }

    /// Counts a reload, done or refused.
    pub(crate) fn reloaded(&self, done: bool) {
        let counter = if done {
            &self.reloads
        } else {
            &self.reloads_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request refused with 503 because the service was at its concurrency limit.
    pub(crate) fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request that did not arrive whole in time (408).
    pub(crate) fn timed_out(&self) {
        self.timed_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request refused for a missing or wrong bearer token (401).
    pub(crate) fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition of every metric.
    pub(crate) fn render(
        &self,
        gauges: &Gauges,
        mask: &(dyn Fn(&str) -> String + Send + Sync),
    ) -> String {
        let mut out = String::with_capacity(8 << 10);
        self.render_decisions(&mut out, mask);
        out.push_str("# HELP keyscope_ledger_seconds Time spent in the budget ledger.\n");
        out.push_str("# TYPE keyscope_ledger_seconds histogram\n");
        for (op, histogram) in LedgerOp::ALL.iter().zip(&self.ledger_latency) {
            let labels = format!("op=\"{}\"", op.label());
            histogram.render(&mut out, "keyscope_ledger_seconds", &labels);
        }
        let counters = [
            (
                "keyscope_reloads_total",
                "Store reloads that took effect.",
                &self.reloads,
            ),
            (
                "keyscope_reloads_refused_total",
                "Store reloads refused because the new store did not load.",
                &self.reloads_refused,
            ),
            (
                "keyscope_requests_shed_total",
                "Requests answered 503 at the concurrency limit.",
                &self.shed,
            ),
            (
                "keyscope_requests_timed_out_total",
                "Requests answered 408 because they did not arrive in time.",
                &self.timed_out,
            ),
            (
                "keyscope_requests_unauthorized_total",
                "Requests answered 401 for a missing or wrong bearer token.",
                &self.unauthorized,
            ),
        ];
        for (name, help, counter) in counters {
            let value = counter.load(Ordering::Relaxed);
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            );
        }
        render_gauges(&mut out, gauges);
        out
    }

    fn render_decisions(&self, out: &mut String, mask: &(dyn Fn(&str) -> String + Send + Sync)) {
        out.push_str("# HELP keyscope_decisions_total Decisions, by outcome.\n");
        out.push_str("# TYPE keyscope_decisions_total counter\n");
        for (outcome, counter) in [("allow", &self.allowed), ("deny", &self.denied)] {
            let value = counter.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "keyscope_decisions_total{{outcome=\"{outcome}\"}} {value}"
            );
        }
        out.push_str(
            "# HELP keyscope_decision_reasons_total Reasons given with decisions, by outcome \
             and reason id.\n# TYPE keyscope_decision_reasons_total counter\n",
        );
        let mut reasons: Vec<(bool, String, u64)> = self
            .reasons
            .lock()
            .map(|r| {
                let counts = |allowed: bool| {
                    r[usize::from(allowed)]
                        .iter()
                        .map(move |(id, n)| (allowed, id.clone(), *n))
                };
                counts(false).chain(counts(true)).collect()
            })
            .unwrap_or_default();
        reasons.sort();
        for (allowed, reason, value) in reasons {
            let outcome = if allowed { "allow" } else { "deny" };
            let reason = escape(&mask(&reason));
            let _ = writeln!(
                out,
                "keyscope_decision_reasons_total{{outcome=\"{outcome}\",reason=\"{reason}\"}} \
                 {value}"
            );
        }
        out.push_str(
            "# HELP keyscope_decision_seconds Time to decide, ledger and audit queueing \
             included.\n# TYPE keyscope_decision_seconds histogram\n",
        );
        self.decision_latency
            .render(out, "keyscope_decision_seconds", "");
    }
}

fn render_gauges(out: &mut String, gauges: &Gauges) {
    let mut gauge = |name: &str, help: &str, value: usize| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        );
    };
    gauge(
        "keyscope_store_policies",
        "Policies in the store deciding now.",
        gauges.policies,
    );
    if let Some(backlog) = gauges.audit_backlog {
        gauge(
            "keyscope_audit_backlog",
            "Audit records queued and not yet on disk.",
            backlog,
        );
        gauge(
            "keyscope_audit_healthy",
            "1 while the audit log writes, 0 once it has failed.",
            usize::from(gauges.audit_healthy),
        );
    }
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(30));
        histogram.observe(Duration::from_millis(3));
        let mut out = String::new();
        histogram.render(&mut out, "h", "op=\"x\"");
        assert!(
            out.contains("h_bucket{op=\"x\",le=\"0.00005\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("h_bucket{op=\"x\",le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{op=\"x\",le=\"+Inf\"} 2\n"), "{out}");
        assert!(out.contains("h_count{op=\"x\"} 2\n"), "{out}");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
