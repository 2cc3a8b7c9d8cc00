//! The budget ledger: durable two-phase spending against the caps of a scope and its ancestors.
//!
//! The one design decision: **a reservation reads the spend of the request's scope chain,
//! decides, and holds the worst-case cost against every scope of the chain in one atomic step**,
//! so two processes or threads can never both spend the last dollar. [`Ledger::reserve`] is that
//! step: the engine hands it the chain and a decision closure, and never drives a transaction
//! itself. A commit replaces the hold with the actual cost, a release drops it, and a hold past
//! its TTL is swept by the next write. Windows are UTC calendar days (`2026-11-22`) and months
//! (`2026-11`), keyed by date, so nothing has to reset them. Rate limits count requests and
//! tokens per calendar minute.
//!
//! [`Ledger`] is one face over backends: [`sqlite`] (embedded, one machine, the default). A
//! backend keeps the same behaviour behind every method; the engine sees only this module's
//! types.

use std::path::Path;

use serde::Serialize;

use crate::catalog::Price;
use crate::decision::{Decision, Reservation};
use crate::error::LedgerError;
use crate::time::Timestamp;

mod sqlite;

/// How long a hold lives when neither committed nor released, by default: 15 minutes.
pub const DEFAULT_HOLD_TTL_SECONDS: i64 = 15 * 60;

/// The durable budget ledger. Thread-safe; several processes may share one SQLite file.
///
/// A reservation ([`Engine::decide_with_ledger`](crate::Engine::decide_with_ledger) with
/// [`LedgerMode::Reserve`](crate::LedgerMode::Reserve)) reads the day and month totals of the
/// request's scope and all its ancestors, decides, and holds the worst-case cost against all of
/// them atomically, so two threads or processes never both spend the last dollar.
/// [`commit`](Self::commit) replaces the hold with the actual cost, [`release`](Self::release)
/// drops it, and a hold past its TTL expires. Every operation is idempotent by request id; a
/// request id names one request only, and reusing it for another is refused. Windows are UTC
/// calendar days and months, keyed by date.
#[derive(Debug)]
pub struct Ledger {
    backend: Backend,
}

/// The stores a ledger can live in.
#[derive(Debug)]
enum Backend {
    /// SQLite in WAL mode: one file, one machine.
    Sqlite(sqlite::SqliteLedger),
}

/// The state of a request in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Reserved: its worst-case cost counts against the budget until settled or expired.
    Held,
    /// Settled with its actual cost.
    Committed,
    /// Settled without cost: the call did not run.
    Released,
    /// Neither committed nor released within its TTL; its hold was returned.
    Expired,
}

impl RequestState {
    /// The state's name, as stored and reported: `held`, `committed`, `released`, `expired`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    /// The state named `name`, as [`as_str`](Self::as_str) writes it.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Held, Self::Committed, Self::Released, Self::Expired]
            .into_iter()
            .find(|state| state.as_str() == name)
    }
}

impl std::fmt::Display for RequestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a reservation (or a budget check) asks of the ledger.
#[derive(Debug, Clone)]
pub(crate) struct Plan<'a> {
    /// The hold to write when the decision allows; its `request_id` is also what an earlier
    /// reservation is looked up by. `None` checks the figures and writes nothing.
    pub(crate) hold: Option<Hold<'a>>,
    /// The scope and its ancestors, nearest first: the figures come back in this order.
    pub(crate) chain: &'a [&'a str],
    /// The scopes of the chain with a cap or a limit: only they need figures.
    pub(crate) limited: &'a [&'a str],
    /// The scopes of the chain with a rate limit.
    pub(crate) rated: &'a [&'a str],
    /// The decision's time: it selects the windows read.
    pub(crate) time: Timestamp,
    /// The engine's clock: it expires holds and dates the new one's expiry. Never the caller's.
    pub(crate) now: Timestamp,
}

/// What the ledger already holds under the request id of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prior {
    /// Nothing: a new request.
    None,
    /// A live hold for the same request (same key, action and model, no larger amount): a retry.
    /// The figures handed to the decision leave this hold out, so the retry is decided as the
    /// first attempt was, and the hold stands when it is allowed again.
    Retry {
        /// When the hold expires.
        expires_at: Timestamp,
    },
    /// A live hold for a different request (another key, action or model, or a larger amount).
    Conflict,
    /// The id belongs to a request that was settled or expired.
    Settled(RequestState),
}

/// Actual usage reported when committing a reservation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Cached input tokens, billed at the cached price.
    pub cached_input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// The actual cost, when the caller knows it; otherwise computed from the reserved prices.
    pub cost_micros: Option<u64>,
}

/// What [`Ledger::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Request rows read.
    pub rows: u64,
    /// Rows of running totals read (or, after a rebuild, written).
    pub totals: u64,
    /// What is wrong, one line each; empty when the ledger is intact.
    pub problems: Vec<String>,
}

impl Verification {
    /// Whether nothing is wrong.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What a commit or release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Settlement {
    /// The hold was replaced by the actual cost.
    Committed {
        /// The cost charged.
        cost_micros: u64,
    },
    /// A retried commit: the first one stands, nothing charged twice.
    AlreadyCommitted {
        /// The cost charged by the first commit.
        cost_micros: u64,
    },
    /// The hold was dropped.
    Released,
    /// A retried release.
    AlreadyReleased,
}

/// Spend of one window of one scope, as the ledger holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WindowUsage {
    pub(crate) committed_micros: u64,
    pub(crate) held_micros: u64,
    pub(crate) committed_tokens: u64,
    pub(crate) held_tokens: u64,
}

/// Spend of one scope in the day, month and minute of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScopeUsage {
    pub(crate) day: WindowUsage,
    pub(crate) month: WindowUsage,
    pub(crate) minute_requests: u64,
    pub(crate) minute_tokens: u64,
}

/// A request's row as a reservation or a spend record writes it.
#[derive(Debug, Clone)]
pub(crate) struct Hold<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) key_id: &'a str,
    /// The action (`invoke`, `embed`, ...): with the key and the model, what makes a retried
    /// reservation the same request.
    pub(crate) action: &'a str,
    pub(crate) chain: &'a [&'a str],
    /// The scopes of the chain with a rate limit: only they count requests per minute (a limit
    /// added by a reload starts counting at its first minute).
    pub(crate) rated: &'a [&'a str],
    pub(crate) model: &'a str,
    /// The decision's time: it selects the day, month and minute charged.
    pub(crate) time: Timestamp,
    pub(crate) micros: u64,
    pub(crate) tokens: u64,
    pub(crate) price: Option<Price>,
}

/// How `keyscope spend` groups rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpendGrouping {
    /// By the scope a request was made in (not its ancestors): the chargeback view.
    Scope,
    /// By resolved (versioned) model.
    Model,
    /// By UTC day.
    Day,
}

/// One row of a spend report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendRow {
    /// The scope, model or day.
    pub group: String,
    /// Requests committed.
    pub requests: u64,
    /// Committed cost, micro-dollars.
    pub cost_micros: u64,
    /// Committed input tokens, cached included.
    pub input_tokens: u64,
    /// Committed output tokens.
    pub output_tokens: u64,
    /// Requests still held.
    pub held_requests: u64,
    /// Micro-dollars still held.
    pub held_micros: u64,
}

impl Ledger {
    /// Opens (creating if needed) the SQLite ledger at `path`, shared: other threads and
    /// processes (the CLI's `usage commit`, another service) may open it too.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        sqlite::SqliteLedger::open(path).map(Self::sqlite)
    }

    /// Opens the SQLite ledger at `path` for this process alone: cheaper reservations, but no
    /// other process can use the ledger until this one closes it. For a service that owns its
    /// ledger.
    pub fn open_exclusive(path: &Path) -> Result<Self, LedgerError> {
        sqlite::SqliteLedger::open_exclusive(path).map(Self::sqlite)
    }

    /// A ledger that lives in memory only: fixtures and tests.
    pub fn open_in_memory() -> Result<Self, LedgerError> {
        sqlite::SqliteLedger::open_in_memory().map(Self::sqlite)
    }

    fn sqlite(ledger: sqlite::SqliteLedger) -> Self {
        Self {
            backend: Backend::Sqlite(ledger),
        }
    }

    /// Sets how long an unsettled hold lives (at least one second).
    pub fn with_hold_ttl(self, seconds: i64) -> Self {
        match self.backend {
            Backend::Sqlite(ledger) => Self::sqlite(ledger.with_hold_ttl(seconds)),
        }
    }

    /// How long an unsettled hold lives, in seconds.
    pub fn hold_ttl_seconds(&self) -> i64 {
        match &self.backend {
            Backend::Sqlite(ledger) => ledger.hold_ttl_seconds(),
        }
    }

    /// Reads the figures of `plan.chain` at `plan.time`, lets `decide` decide on them, and, when
    /// `plan` carries a hold and the decision allows, writes the hold: all in one atomic step.
    /// A retried reservation ([`Prior::Retry`]) that is allowed again keeps its first hold. The
    /// decision comes back with its [`Reservation`] filled in.
    pub(crate) fn reserve(
        &self,
        plan: &Plan<'_>,
        decide: impl FnOnce(&[ScopeUsage], Prior) -> Decision,
    ) -> Result<Decision, LedgerError> {
        match &self.backend {
            Backend::Sqlite(ledger) => ledger.reserve(plan, decide),
        }
    }

    /// Records spend made outside a reservation as a committed request.
    pub(crate) fn record(&self, hold: &Hold<'_>) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(ledger) => ledger.record(hold),
        }
    }

    /// Replaces the hold of `request_id` with its actual cost. Idempotent: a retried commit
    /// returns [`Settlement::AlreadyCommitted`] and charges nothing. A hold that expired is still
    /// charged: the money was spent.
    pub fn commit(
        &self,
        request_id: &str,
        usage: &Usage,
        now: Timestamp,
    ) -> Result<Settlement, LedgerError> {
        match &self.backend {
            Backend::Sqlite(ledger) => ledger.commit(request_id, usage, now),
        }
    }

    /// Drops the hold of `request_id`. Idempotent; a committed request cannot be released.
    pub fn release(&self, request_id: &str, now: Timestamp) -> Result<Settlement, LedgerError> {
        match &self.backend {
            Backend::Sqlite(ledger) => ledger.release(request_id, now),
        }
    }

    /// Expires the holds whose TTL has passed at `now`; returns how many.
    pub fn expire_holds(&self, now: Timestamp) -> Result<u64, LedgerError> {
        match &self.backend {
            Backend::Sqlite(ledger) => ledger.expire_holds(now),
        }
    }

    /// Committed spend (and live holds) grouped by scope, model or day, from `since` (a UTC day
    /// `YYYY-MM-DD`, inclusive) on.
    pub fn spend(
        &self,
        by: SpendGrouping,
        since: Option<&str>,
    ) -> Result<Vec<SpendRow>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(ledger) => ledger.spend(by, since),
        }
    }

    /// The running totals of `scope` (the scope and everything under it) in `period`
    /// (`YYYY-MM-DD` or `YYYY-MM`): committed and held micro-dollars.
    pub fn window_totals(&self, scope: &str, period: &str) -> Result<(u64, u64), LedgerError> {
        match &self.backend {
            Backend::Sqlite(ledger) => ledger.window_totals(scope, period),
        }
    }

    /// Checks the whole ledger: every row against its checksum, and every running total against
    /// the settled requests it sums. Reservations check the rows they read as they go and fail
    /// on a damaged one; this reads everything.
    pub fn verify(&self) -> Result<Verification, LedgerError> {
        match &self.backend {
            Backend::Sqlite(ledger) => ledger.verify(),
        }
    }

    /// Recomputes the running totals from the settled requests, after [`verify`](Self::verify)
    /// found a damaged or wrong total. Refuses when request rows themselves are damaged: those
    /// can only come back from a backup.
    pub fn rebuild_totals(&self) -> Result<Verification, LedgerError> {
        match &self.backend {
            Backend::Sqlite(ledger) => ledger.rebuild_totals(),
        }
    }

    /// The state of a request, if the ledger has it.
    pub fn request_state(&self, request_id: &str) -> Result<Option<RequestState>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(ledger) => ledger.request_state(request_id),
        }
    }
}

/// The reservation a decision reports for a hold: new, or the one a retry found.
pub(crate) fn reservation(
    request_id: &str,
    held_micros: u64,
    expires_at: Timestamp,
    existing: bool,
) -> Reservation {
    Reservation {
        request_id: request_id.to_owned(),
        held_micros,
        expires_at: expires_at.to_string(),
        existing,
    }
}
