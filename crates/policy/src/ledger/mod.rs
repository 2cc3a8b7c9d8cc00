//! The budget ledger: durable two-phase spending against the caps of a scope and its ancestors.
//!
//! The one design decision: **a reservation reads the spend of the request's scope chain,
//! decides, and holds the worst-case cost against every scope of the chain in one atomic step**,
//! so two processes or threads can never both spend the last dollar. [`Ledger::reserve`] is that
//! step: the engine hands it the chain and a decision closure, and never drives a transaction
//! itself. A commit replaces the hold with the actual cost, a release drops it, and a hold past
//! its TTL is swept by the next write. Windows are calendar days (`2026-11-22`) and months
//! (`2026-11`) in the store's time zone (UTC unless `scopes.toml` names one), keyed by date, so
//! nothing has to reset them; each request keeps the day and month it was decided in. Rate limits
//! count requests and tokens per minute.
//!
//! [`Ledger`] is one face over backends: [`sqlite`] (embedded, one machine, the default) and
//! [`redis`] (shared by several processes and machines: gateway replicas). A backend keeps the
//! same behaviour behind every method, and one test suite runs against both; the engine sees
//! only this module's types.

use std::path::Path;

use serde::Serialize;

use crate::catalog::Price;
use crate::decision::{Decision, Reservation};
use crate::error::LedgerError;
use crate::keys::KeyRecord;
use crate::money::token_cost;
use crate::scopes::{Budget, RateLimit};
use crate::time::{Timestamp, Windows};

mod redis;
mod registry;
mod sqlite;

pub(crate) use registry::Snapshot;

pub use redis::RedisOptions;

/// How long a hold lives when neither committed nor released, by default: 15 minutes.
pub const DEFAULT_HOLD_TTL_SECONDS: i64 = 15 * 60;

/// The durable budget ledger. Thread-safe; several processes may share one SQLite file, and
/// several machines one Redis.
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
    /// The key registry as this process last read it.
    registry: registry::Cache,
}

/// The stores a ledger can live in.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a process makes one ledger and keeps it: a few hundred bytes either way"
)]
enum Backend {
    /// SQLite in WAL mode: one file, one machine.
    Sqlite(sqlite::SqliteLedger),
    /// Redis (one node or a cluster): shared by every replica that points at it.
    Redis(redis::RedisLedger),
}

/// Dispatches a method call to the backend.
macro_rules! each_backend {
    ($ledger:expr, $backend:ident => $call:expr) => {
        match &$ledger.backend {
            Backend::Sqlite($backend) => $call,
            Backend::Redis($backend) => $call,
        }
    };
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
    /// The caps and limits of each of `limited`, in its order. A backend that cannot hold its
    /// store locked while the engine decides (Redis) checks them again in the atomic step that
    /// writes the hold.
    pub(crate) caps: &'a [Caps],
    /// The scopes of the chain with a rate limit.
    pub(crate) rated: &'a [&'a str],
    /// The decision's time: it selects the rate minute read.
    pub(crate) time: Timestamp,
    /// The day and month windows read, in the store's time zone.
    pub(crate) windows: &'a Windows,
    /// The engine's clock: it expires holds and dates the new one's expiry. Never the caller's.
    pub(crate) now: Timestamp,
}

/// The caps and rate limits of one scope, as a reservation must respect them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    pub(crate) budget: Budget,
    pub(crate) rate: RateLimit,
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
        /// The worst-case cost that was held.
        held_micros: u64,
        /// What an auditor should see about this commit.
        flags: CommitFlags,
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
    /// The decision's time: it selects the minute charged.
    pub(crate) time: Timestamp,
    /// The day and month charged, in the store's time zone.
    pub(crate) windows: &'a Windows,
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
    /// By the key that made the request (spend recorded outside a reservation has none).
    Key,
    /// By day, in the time zone of the store that decided the request.
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

    /// Connects to the shared ledger in Redis at `url`: `redis://[:PASSWORD@]HOST:PORT[/DB]`
    /// for one node, `redis-cluster://HOST:PORT[,HOST:PORT...]` for a cluster. The server is
    /// asked once, so a wrong address is an error here rather than at the first decision.
    pub fn open_redis(url: &str, options: RedisOptions) -> Result<Self, LedgerError> {
        redis::RedisLedger::open(url, options).map(|ledger| Self {
            backend: Backend::Redis(ledger),
            // A revision check is a round trip: at most four a second, so a revocation by
            // anyone reaches every replica within a quarter of a second.
            registry: registry::Cache::new(std::time::Duration::from_millis(250)),
        })
    }

    /// Whether `location` names a Redis ledger (`redis://`, `rediss://`, `redis-cluster://`)
    /// rather than a SQLite file.
    pub fn is_redis_url(location: &str) -> bool {
        redis::is_url(location)
    }

    fn sqlite(ledger: sqlite::SqliteLedger) -> Self {
        Self {
            backend: Backend::Sqlite(ledger),
            // A revision check is one indexed read: done at every lookup, so a revocation by
            // another process is seen at the next decision.
            registry: registry::Cache::new(std::time::Duration::ZERO),
        }
    }

    /// Sets how long an unsettled hold lives (at least one second).
    pub fn with_hold_ttl(self, seconds: i64) -> Self {
        let backend = match self.backend {
            Backend::Sqlite(ledger) => Backend::Sqlite(ledger.with_hold_ttl(seconds)),
            Backend::Redis(ledger) => Backend::Redis(ledger.with_hold_ttl(seconds)),
        };
        Self {
            backend,
            registry: self.registry,
        }
    }

    /// How long an unsettled hold lives, in seconds.
    pub fn hold_ttl_seconds(&self) -> i64 {
        each_backend!(self, ledger => ledger.hold_ttl_seconds())
    }

    /// Which backend this is, for reports and readiness: `sqlite` or `redis`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Redis(_) => "redis",
        }
    }

    /// Reads the figures of `plan.chain` at `plan.time`, lets `decide` decide on them, and, when
    /// `plan` carries a hold and the decision allows, writes the hold: all in one atomic step.
    /// A retried reservation ([`Prior::Retry`]) that is allowed again keeps its first hold. The
    /// decision comes back with its [`Reservation`] filled in. `decide` may be called more than
    /// once: a backend that finds the figures changed under it decides again on the new ones.
    pub(crate) fn reserve(
        &self,
        plan: &Plan<'_>,
        decide: impl FnMut(&[ScopeUsage], Prior) -> Decision,
    ) -> Result<Decision, LedgerError> {
        each_backend!(self, ledger => ledger.reserve(plan, decide))
    }

    /// Records spend made outside a reservation as a committed request.
    pub(crate) fn record(&self, hold: &Hold<'_>) -> Result<(), LedgerError> {
        each_backend!(self, ledger => ledger.record(hold))
    }

    /// Replaces the hold of `request_id` with its actual cost. Idempotent: a retried commit
    /// returns [`Settlement::AlreadyCommitted`] and charges nothing. A hold that expired is still
    /// charged (the money was spent) and flagged late; a cost above the hold is charged and
    /// flagged too.
    pub fn commit(
        &self,
        request_id: &str,
        usage: &Usage,
        now: Timestamp,
    ) -> Result<Settlement, LedgerError> {
        each_backend!(self, ledger => ledger.commit(request_id, usage, now))
    }

    /// Drops the hold of `request_id`. Idempotent; a committed request cannot be released.
    pub fn release(&self, request_id: &str, now: Timestamp) -> Result<Settlement, LedgerError> {
        each_backend!(self, ledger => ledger.release(request_id, now))
    }

    /// Expires the holds whose TTL has passed at `now`; returns how many.
    pub fn expire_holds(&self, now: Timestamp) -> Result<u64, LedgerError> {
        each_backend!(self, ledger => ledger.expire_holds(now))
    }

    /// Committed spend (and live holds) grouped by scope, model, key or day, from `since` (a UTC
    /// day `YYYY-MM-DD`, inclusive) on.
    pub fn spend(
        &self,
        by: SpendGrouping,
        since: Option<&str>,
    ) -> Result<Vec<SpendRow>, LedgerError> {
        each_backend!(self, ledger => ledger.spend(by, since))
    }

    /// The running totals of `scope` (the scope and everything under it) in `period`
    /// (`YYYY-MM-DD` or `YYYY-MM`): committed and held micro-dollars.
    pub fn window_totals(&self, scope: &str, period: &str) -> Result<(u64, u64), LedgerError> {
        each_backend!(self, ledger => ledger.window_totals(scope, period))
    }

    /// Checks the whole ledger: every row against its checksum, and every running total against
    /// the settled requests it sums. Reservations check the rows they read as they go and fail
    /// on a damaged one; this reads everything.
    pub fn verify(&self) -> Result<Verification, LedgerError> {
        each_backend!(self, ledger => ledger.verify())
    }

    /// Recomputes the running totals from the settled requests, after [`verify`](Self::verify)
    /// found a damaged or wrong total. Refuses when request rows themselves are damaged: those
    /// can only come back from a backup.
    pub fn rebuild_totals(&self) -> Result<Verification, LedgerError> {
        each_backend!(self, ledger => ledger.rebuild_totals())
    }

    /// The state of a request, if the ledger has it.
    pub fn request_state(&self, request_id: &str) -> Result<Option<RequestState>, LedgerError> {
        each_backend!(self, ledger => ledger.request_state(request_id))
    }

    /// Answers when the store behind the ledger is reachable: readiness probes.
    pub fn ping(&self) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(ledger) => ledger.request_state("keyscope:ping").map(|_| ()),
            Backend::Redis(ledger) => ledger.ping(),
        }
    }

    /// One request as the ledger holds it: who made it, in which scope, for which model.
    pub fn request(&self, request_id: &str) -> Result<Option<RequestRecord>, LedgerError> {
        each_backend!(self, ledger => ledger.request(request_id))
    }

    /// Every request the ledger holds, oldest first: what `keyscope ledger migrate` moves.
    pub fn export(&self) -> Result<Vec<RequestRecord>, LedgerError> {
        each_backend!(self, ledger => ledger.export())
    }

    /// Adds a key to the registry; an id or secret hash it has already is refused.
    pub(crate) fn key_insert(&self, record: &KeyRecord) -> Result<(), LedgerError> {
        self.registry.invalidate();
        each_backend!(self, ledger => ledger.key_insert(record))
    }

    /// Replaces a key's record.
    pub(crate) fn key_update(&self, record: &KeyRecord) -> Result<(), LedgerError> {
        self.registry.invalidate();
        each_backend!(self, ledger => ledger.key_update(record))
    }

    /// The registry's record of key `id`, read now (not from this process's copy).
    pub fn key(&self, id: &str) -> Result<Option<KeyRecord>, LedgerError> {
        each_backend!(self, ledger => ledger.key(id))
    }

    /// Every record of the key registry, read now.
    pub fn keys(&self) -> Result<Vec<KeyRecord>, LedgerError> {
        each_backend!(self, ledger => ledger.keys())
    }

    /// Notes a request made with key `id` at `at`: what a usage-drained rotation waits on.
    pub(crate) fn key_touch(&self, id: &str, at: Timestamp) -> Result<(), LedgerError> {
        each_backend!(self, ledger => ledger.key_touch(id, at))
    }

    /// The key registry as decisions see it: this process's copy, read again when the
    /// registry changed.
    pub(crate) fn registry(&self) -> Result<std::sync::Arc<Snapshot>, LedgerError> {
        self.registry.get(
            || each_backend!(self, ledger => ledger.keys_revision()),
            || each_backend!(self, ledger => ledger.keys()),
        )
    }

    /// Copies the key registry of `from` into this ledger; a key it has already is skipped.
    /// Returns how many were copied and how many skipped.
    pub fn import_keys(&self, from: &Ledger) -> Result<(u64, u64), LedgerError> {
        let (mut copied, mut skipped) = (0, 0);
        for record in from.keys()? {
            match self.key_insert(&record) {
                Ok(()) => copied += 1,
                Err(LedgerError::DuplicateKey(_)) => skipped += 1,
                Err(e) => return Err(e),
            }
            if let Some(used) = record.last_used {
                self.key_touch(&record.id, used)?;
            }
        }
        Ok((copied, skipped))
    }

    /// Writes `records` (from [`export`](Self::export) of another ledger) into this one, each
    /// with its totals: held requests hold again, committed ones charge again. A request id
    /// this ledger already has is skipped, so a migration that is run twice counts nothing
    /// twice. Returns how many were written and how many skipped.
    pub fn import(&self, records: &[RequestRecord]) -> Result<(u64, u64), LedgerError> {
        each_backend!(self, ledger => ledger.import(records))
    }
}

/// A request as the ledger holds it, whatever the backend: what moves between ledgers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// The caller's request id.
    pub request_id: String,
    /// Held, committed, released or expired.
    pub state: RequestState,
    /// The key it was made with (empty for spend recorded outside a reservation).
    pub key_id: String,
    /// The action.
    pub action: String,
    /// The resolved model.
    pub model: String,
    /// The scope and its ancestors, nearest first.
    pub chain: Vec<String>,
    /// When it was reserved (or recorded).
    pub time: Timestamp,
    /// The day window it counts in (`2026-11-22`), in the time zone of the store it was
    /// decided under: carried as it is, so a migration never moves spend to another day.
    pub day: String,
    /// The month window it counts in (`2026-11`).
    pub month: String,
    /// When its hold expires.
    pub expires_at: Timestamp,
    /// The worst-case micro-dollars and tokens held.
    pub held_micros: u64,
    /// See `held_micros`.
    pub held_tokens: u64,
    /// The committed cost.
    pub cost_micros: u64,
    /// Committed uncached input tokens.
    pub input_tokens: u64,
    /// Committed cached input tokens.
    pub cached_input_tokens: u64,
    /// Committed output tokens.
    pub output_tokens: u64,
    /// The prices reserved at, per million tokens.
    #[serde(skip)]
    pub price: Option<Price>,
}

impl RequestRecord {
    /// Committed tokens of all kinds.
    pub fn committed_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cached_input_tokens)
            .saturating_add(self.output_tokens)
    }
}

/// What a commit means beside its charge: flags a gateway and an auditor should see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommitFlags {
    /// The cost charged is above the hold: the estimate the decision was made on was wrong, or
    /// the call ran with more tokens than it declared.
    pub exceeds_hold: bool,
    /// The hold had expired (its budget returned) before the commit came.
    pub late: bool,
}

impl CommitFlags {
    /// The flags of committing `cost` against a hold of `held` that expires at `expires_at`
    /// (or has expired already: `expired`).
    pub fn of(cost: u64, held: u64, expired: bool, expires_at: Timestamp, now: Timestamp) -> Self {
        Self {
            exceeds_hold: cost > held,
            late: expired || expires_at <= now,
        }
    }

    /// Whether any flag is set.
    pub fn any(self) -> bool {
        self.exceeds_hold || self.late
    }
}

/// Applies what the ledger held under the request id (`prior`) to an allowed `decision` that
/// carries `hold`: a retry keeps its first hold, and an id held by another request or already
/// settled cannot be allowed. Returns whether a new hold must be written.
pub(crate) fn apply_prior(decision: &mut Decision, hold: &Hold<'_>, prior: Prior) -> bool {
    match prior {
        Prior::None => true,
        Prior::Retry { expires_at } => {
            decision.reservation = Some(reservation(hold.request_id, 0, expires_at, true));
            false
        }
        // The engine denies these; an allow without a hold must not pass for one.
        Prior::Conflict | Prior::Settled(_) => {
            decision.allowed = false;
            false
        }
    }
}

/// Cost of `usage` at `price`, or `None` when it overflows.
pub(crate) fn usage_cost(usage: &Usage, price: Option<Price>) -> Option<u64> {
    match (usage.cost_micros, price) {
        (Some(cost), _) => Some(cost),
        (None, Some(price)) => token_cost(usage.input_tokens, price.input)
            .zip(token_cost(usage.cached_input_tokens, price.cached_input))
            .zip(token_cost(usage.output_tokens, price.output))
            .and_then(|((a, b), c)| a.checked_add(b)?.checked_add(c)),
        (None, None) => Some(0),
    }
}

/// Tokens of `usage`, or `None` when they overflow.
pub(crate) fn usage_tokens(usage: &Usage) -> Option<u64> {
    usage
        .input_tokens
        .checked_add(usage.cached_input_tokens)?
        .checked_add(usage.output_tokens)
}

/// A live hold found under a retried request's id, as [`leave_out`] takes it out of the
/// figures.
pub(crate) struct LiveHold<'a> {
    pub(crate) chain: &'a [&'a str],
    pub(crate) day: &'a str,
    pub(crate) month: &'a str,
    pub(crate) minute: i64,
    pub(crate) micros: u64,
    pub(crate) tokens: u64,
}

/// Takes the live hold of a retried request out of the figures, so that the retry is decided as
/// the first attempt was and is not counted against itself.
pub(crate) fn leave_out(usage: &mut [ScopeUsage], plan: &Plan<'_>, hold: &LiveHold<'_>) {
    let (day, month) = (plan.windows.day.as_str(), plan.windows.month.as_str());
    let minute = plan.time.minute_key();
    for (scope, used) in plan.chain.iter().zip(usage) {
        if !hold.chain.contains(scope) {
            continue;
        }
        for (same, window) in [
            (hold.day == day, &mut used.day),
            (hold.month == month, &mut used.month),
        ] {
            if same {
                window.held_micros = window.held_micros.saturating_sub(hold.micros);
                window.held_tokens = window.held_tokens.saturating_sub(hold.tokens);
            }
        }
        if hold.minute == minute && plan.rated.contains(scope) {
            used.minute_requests = used.minute_requests.saturating_sub(1);
            used.minute_tokens = used.minute_tokens.saturating_sub(hold.tokens);
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
