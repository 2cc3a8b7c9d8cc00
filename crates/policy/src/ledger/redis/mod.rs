//! The ledger in Redis: shared by every gateway replica that points at it.
//!
//! **A reservation's check and hold run in one Lua script on the server**, so no interleaving of
//! replicas can spend past a cap: the engine reads the figures (one script, which also expires
//! holds), decides on them with Cedar, and then asks the `hold` script to write the hold. That
//! script checks every cap and rate limit of the chain again against the figures as they are
//! at that instant and writes nothing when the request would pass one (or its id was taken
//! meanwhile); the engine then decides again on fresh figures. Cedar cannot run inside Redis,
//! so a policy sees figures read one round trip before the hold; the caps themselves are never
//! passed.
//!
//! Every key of one organisation (the root scope of a chain) carries the same hash tag,
//! `keyscope:{TAG}:...` with `TAG` a hash of the root scope's id, so each script touches one
//! slot and Redis Cluster runs it on one node. Two keys are global: the set of organisations
//! (for reports) and, per request id, the organisation it belongs to (for commits, which name
//! only the request id).
//!
//! Durability is Redis's: with `appendfsync always` an acknowledged commit survives a killed
//! server; with the default `everysec` up to a second of writes may be lost.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use redis::{Script, Value};

use super::{
    CommitFlags, DEFAULT_HOLD_TTL_SECONDS, Hold, LiveHold, Plan, Prior, RequestState, ScopeUsage,
    Settlement, Usage, WindowUsage, apply_prior, leave_out, reservation, usage_cost, usage_tokens,
};
use crate::catalog::Price;
use crate::decision::Decision;
use crate::error::LedgerError;
use crate::time::Timestamp;

mod keys;
mod pool;
mod reports;

use pool::{CLUSTER_SCHEME, Pool};

/// How a Redis ledger connects.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// The first part of every key: several ledgers can share one Redis under different
    /// prefixes. Default `keyscope`.
    pub prefix: String,
    /// Connect, read and write timeout. A decision that waits longer is denied. Default 2 s.
    pub timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "keyscope".to_owned(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// How many times a reservation decides again when the figures changed under it before it
/// gives up (and the request is denied).
const ATTEMPTS: usize = 16;

/// Whether `location` is a Redis URL.
pub(super) fn is_url(location: &str) -> bool {
    [
        "redis://",
        "rediss://",
        "redis+unix://",
        "unix://",
        CLUSTER_SCHEME,
    ]
    .iter()
    .any(|scheme| location.starts_with(scheme))
}

/// The scripts, each with the shared prelude.
struct Scripts {
    read: Script,
    /// The `read` script's source, for `EVAL` when the server lost it: it is sent in a
    /// pipeline, where the client library cannot reload it.
    read_source: String,
    hold: Script,
    settle: Script,
    import: Script,
    sweep: Script,
    totals: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_prelude =
            |body: &str| Script::new(&format!("{}\n{body}", include_str!("lua/prelude.lua")));
        let read_source = format!(
            "{}\n{}",
            include_str!("lua/prelude.lua"),
            include_str!("lua/read.lua")
        );
        Self {
            read: Script::new(&read_source),
            read_source,
            hold: with_prelude(include_str!("lua/hold.lua")),
            settle: with_prelude(include_str!("lua/settle.lua")),
            import: with_prelude(include_str!("lua/import.lua")),
            sweep: with_prelude(include_str!("lua/sweep.lua")),
            totals: with_prelude(include_str!("lua/totals.lua")),
        }
    }
}

/// The ledger in one Redis (or cluster).
pub(super) struct RedisLedger {
    pool: Pool,
    scripts: Scripts,
    prefix: String,
    hold_ttl_seconds: i64,
    /// Organisations this process has registered in the global set: once each.
    known: Mutex<HashSet<String>>,
    /// What this process held, by request id: the organisation, price, amount and expiry,
    /// which never change once written, so a commit from the process that reserved (the
    /// usual case) needs one round trip, not three. Bounded: cleared when full.
    held: Mutex<HashMap<String, HeldHere>>,
}

/// A hold this process wrote: see [`RedisLedger::held`].
#[derive(Debug, Clone)]
struct HeldHere {
    root: String,
    price: Option<Price>,
    micros: u64,
    expires_at: Timestamp,
}

/// How many holds [`RedisLedger::held`] remembers before it starts afresh.
const HELD_HERE_MAX: usize = 65_536;

impl std::fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLedger")
            .field("pool", &self.pool)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The keys of one organisation: everything under one hash tag.
pub(super) struct Org {
    /// `PREFIX:{TAG}:`, which every key of the organisation starts with.
    pub(super) keys: String,
}

impl Org {
    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.keys)
    }
}

/// A request's row, as the scripts keep it in a hash.
#[derive(Debug)]
pub(super) struct Row {
    pub(super) state: Option<RequestState>,
    pub(super) key_id: String,
    pub(super) action: String,
    pub(super) model: String,
    pub(super) chain: String,
    pub(super) day: String,
    pub(super) month: String,
    pub(super) minute: i64,
    pub(super) held_micros: u64,
    pub(super) held_tokens: u64,
    pub(super) expires_at: Timestamp,
}

impl Default for Row {
    fn default() -> Self {
        Self {
            state: None,
            key_id: String::new(),
            action: String::new(),
            model: String::new(),
            chain: String::new(),
            day: String::new(),
            month: String::new(),
            minute: 0,
            held_micros: 0,
            held_tokens: 0,
            expires_at: Timestamp::from_unix(0),
        }
    }
}

impl Row {
    /// What this row, found under the id of `hold`, means for a reservation at `now`: as the
    /// SQLite ledger reads its rows.
    fn prior(&self, hold: &Hold<'_>, now: Timestamp) -> Prior {
        match self.state {
            None => Prior::None,
            Some(RequestState::Held) if self.expires_at <= now => {
                Prior::Settled(RequestState::Expired)
            }
            Some(RequestState::Held)
                if self.key_id == hold.key_id
                    && self.action == hold.action
                    && self.model == hold.model
                    && hold.micros <= self.held_micros
                    && hold.tokens <= self.held_tokens =>
            {
                Prior::Retry {
                    expires_at: self.expires_at,
                }
            }
            Some(RequestState::Held) => Prior::Conflict,
            Some(settled) => Prior::Settled(settled),
        }
    }
}

/// FNV-1a, 64 bits: a stable hash tag for an organisation.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Reads a decimal amount a script returned.
fn amount(text: &str) -> Result<u64, LedgerError> {
    if text.is_empty() {
        return Ok(0);
    }
    text.parse()
        .map_err(|_| LedgerError::Corrupt(format!("`{text}` is not an amount")))
}

/// Reads a signed integer a script returned.
fn integer(text: &str) -> Result<i64, LedgerError> {
    if text.is_empty() {
        return Ok(0);
    }
    text.parse()
        .map_err(|_| LedgerError::Corrupt(format!("`{text}` is not an integer")))
}

/// A price as the scripts store it: `input,output,cached_input`, or empty.
fn price_text(price: Option<Price>) -> String {
    price.map_or_else(String::new, |p| {
        format!("{},{},{}", p.input, p.output, p.cached_input)
    })
}

fn parse_price(text: &str) -> Result<Option<Price>, LedgerError> {
    if text.is_empty() {
        return Ok(None);
    }
    let parts: Vec<&str> = text.split(',').collect();
    match parts[..] {
        [input, output, cached] => Ok(Some(Price {
            input: amount(input)?,
            output: amount(output)?,
            cached_input: amount(cached)?,
        })),
        _ => Err(LedgerError::Corrupt(format!("`{text}` is not a price"))),
    }
}

/// Strings out of a script's array reply (a nil is empty).
fn strings(value: Value) -> Result<Vec<String>, LedgerError> {
    redis::from_redis_value::<Vec<Option<String>>>(value)
        .map(|v| v.into_iter().map(Option::unwrap_or_default).collect())
        .map_err(|e| LedgerError::Redis(e.to_string()))
}

/// What the `hold` script answered.
enum Held {
    Written,
    Changed,
}

impl RedisLedger {
    /// Connects to `url` and checks that the server answers.
    pub(super) fn open(url: &str, options: RedisOptions) -> Result<Self, LedgerError> {
        let ledger = Self {
            pool: Pool::new(url, options.timeout)?,
            scripts: Scripts::new(),
            prefix: options.prefix,
            hold_ttl_seconds: DEFAULT_HOLD_TTL_SECONDS,
            known: Mutex::new(HashSet::new()),
            held: Mutex::new(HashMap::new()),
        };
        ledger.ping()?;
        Ok(ledger)
    }

    pub(super) fn with_hold_ttl(mut self, seconds: i64) -> Self {
        self.hold_ttl_seconds = seconds.max(1);
        self
    }

    pub(super) fn hold_ttl_seconds(&self) -> i64 {
        self.hold_ttl_seconds
    }

    /// Whether the server answers.
    pub(super) fn ping(&self) -> Result<(), LedgerError> {
        self.pool
            .run(|c| redis::cmd("PING").query::<String>(c).map(|_| ()))
    }

    /// The keys of the organisation whose root scope is `root`. The tag is a hash of the id, so
    /// ids with braces or of any length make a valid tag.
    pub(super) fn org(&self, root: &str) -> Org {
        let tag = fnv1a(root.as_bytes());
        Org {
            keys: format!("{}:{{{tag:016x}}}:", self.prefix),
        }
    }

    fn orgs_key(&self) -> String {
        format!("{}:orgs", self.prefix)
    }

    fn rid_key(&self, request_id: &str) -> String {
        format!("{}:rid:{request_id}", self.prefix)
    }

    /// Registers `root` in the global set of organisations, once per process.
    pub(super) fn note_org(&self, root: &str) -> Result<(), LedgerError> {
        if self
            .known
            .lock()
            .map_err(|_| LedgerError::Poisoned)?
            .contains(root)
        {
            return Ok(());
        }
        let key = self.orgs_key();
        self.pool
            .run(|c| redis::cmd("SADD").arg(&key).arg(root).query::<i64>(c))?;
        self.known
            .lock()
            .map_err(|_| LedgerError::Poisoned)?
            .insert(root.to_owned());
        Ok(())
    }

    /// Claims `request_id` for the organisation `root`; returns the organisation that had it
    /// already, if another.
    pub(super) fn claim(
        &self,
        request_id: &str,
        root: &str,
    ) -> Result<Option<String>, LedgerError> {
        let key = self.rid_key(request_id);
        let before: Option<String> = self.pool.run(|c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(root)
                .arg("NX")
                .arg("GET")
                .query(c)
        })?;
        Ok(before.filter(|owner| owner != root))
    }

    /// The organisation a request id belongs to, if any.
    pub(super) fn owner(&self, request_id: &str) -> Result<Option<String>, LedgerError> {
        let key = self.rid_key(request_id);
        self.pool.run(|c| redis::cmd("GET").arg(&key).query(c))
    }

    /// A request's row, read directly (not through the `read` script).
    pub(super) fn row(&self, org: &Org, request_id: &str) -> Result<Row, LedgerError> {
        let key = org.key(&format!("req:{request_id}"));
        let fields: Vec<Option<String>> = self.pool.run(|c| {
            redis::cmd("HMGET")
                .arg(&key)
                .arg(&[
                    "state",
                    "key",
                    "action",
                    "model",
                    "chain",
                    "day",
                    "month",
                    "minute",
                    "held_micros",
                    "held_tokens",
                    "expires_at",
                ])
                .query(c)
        })?;
        let fields: Vec<String> = fields.into_iter().map(Option::unwrap_or_default).collect();
        parse_row(&fields)
    }

    /// The `read` script's command: `EVALSHA` (or, once the server has forgotten the script,
    /// `EVAL` with its source).
    fn read_cmd(&self, org: &Org, plan: &Plan<'_>, by_source: bool) -> redis::Cmd {
        let mut cmd = if by_source {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(&self.scripts.read_source);
            cmd
        } else {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(self.scripts.read.get_hash());
            cmd
        };
        cmd.arg(1)
            .arg(org.key("holds"))
            .arg(&org.keys)
            .arg(plan.now.unix())
            .arg(plan.hold.as_ref().map_or("", |h| h.request_id))
            .arg(&plan.windows.day)
            .arg(&plan.windows.month)
            .arg(plan.time.minute_key())
            .arg(plan.limited.len())
            .arg(plan.limited)
            .arg(plan.rated.len())
            .arg(plan.rated);
        cmd
    }

    fn read(&self, org: &Org, plan: &Plan<'_>) -> Result<(Row, Vec<ScopeUsage>), LedgerError> {
        let reply = self.pool.run(
            |c| match self.read_cmd(org, plan, false).query::<Value>(c) {
                Err(e) if is_no_script(&e) => self.read_cmd(org, plan, true).query(c),
                other => other,
            },
        )?;
        parse_read(strings(reply)?, plan)
    }

    /// Claims the request id of `plan`'s hold for `root` and reads the figures: in one round
    /// trip on a single node (a pipeline), in two on a cluster, where the id's key lives in
    /// another slot. Returns the organisation that had the id already, if another.
    fn claim_and_read(
        &self,
        org: &Org,
        root: &str,
        plan: &Plan<'_>,
    ) -> Result<(Option<String>, Row, Vec<ScopeUsage>), LedgerError> {
        let Some(hold) = &plan.hold else {
            let (row, usage) = self.read(org, plan)?;
            return Ok((None, row, usage));
        };
        if self.pool.is_cluster() {
            let elsewhere = self.claim(hold.request_id, root)?;
            let (row, usage) = self.read(org, plan)?;
            return Ok((elsewhere, row, usage));
        }
        let rid_key = self.rid_key(hold.request_id);
        let piped = |by_source: bool| {
            let mut pipe = redis::pipe();
            pipe.cmd("SET").arg(&rid_key).arg(root).arg("NX").arg("GET");
            pipe.add_command(self.read_cmd(org, plan, by_source));
            pipe
        };
        let (before, reply): (Option<String>, Value) = self.pool.run(|c| {
            match piped(false).query(c) {
                // Claiming again is harmless: the id is ours now.
                Err(e) if is_no_script(&e) => piped(true).query(c),
                other => other,
            }
        })?;
        let (row, usage) = parse_read(strings(reply)?, plan)?;
        Ok((before.filter(|owner| owner != root), row, usage))
    }

    fn hold(
        &self,
        org: &Org,
        plan: &Plan<'_>,
        hold: &Hold<'_>,
        expires_at: Timestamp,
    ) -> Result<Held, LedgerError> {
        let text = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
        let mut invocation = self.scripts.hold.prepare_invoke();
        invocation
            .key(org.key("holds"))
            .arg(&org.keys)
            .arg(plan.now.unix())
            .arg(hold.request_id)
            .arg(&hold.windows.day)
            .arg(&hold.windows.month)
            .arg(hold.time.minute_key())
            .arg(expires_at.unix())
            .arg(hold.micros)
            .arg(hold.tokens)
            .arg(hold.chain.join("\n"))
            .arg(hold.rated.join("\n"))
            .arg(hold.key_id)
            .arg(hold.action)
            .arg(hold.model)
            .arg(price_text(hold.price))
            .arg(hold.time.unix())
            .arg(plan.limited.len());
        for (scope, caps) in plan.limited.iter().zip(plan.caps) {
            invocation
                .arg(*scope)
                .arg(text(caps.budget.day_micros))
                .arg(text(caps.budget.day_tokens))
                .arg(text(caps.budget.month_micros))
                .arg(text(caps.budget.month_tokens))
                .arg(text(caps.rate.requests_per_minute))
                .arg(text(caps.rate.tokens_per_minute));
        }
        let answer: String = self.pool.run(|c| invocation.invoke(c))?;
        match answer.as_str() {
            "held" => Ok(Held::Written),
            "changed" => Ok(Held::Changed),
            other => Err(LedgerError::Corrupt(format!(
                "the hold script answered `{other}`"
            ))),
        }
    }

    /// See [`Ledger::reserve`](super::Ledger::reserve): read, decide, and hold in one script
    /// that checks the caps again; decided again when the figures changed in between.
    pub(super) fn reserve(
        &self,
        plan: &Plan<'_>,
        mut decide: impl FnMut(&[ScopeUsage], Prior) -> Decision,
    ) -> Result<Decision, LedgerError> {
        let root = plan.chain.last().copied().unwrap_or_default();
        self.note_org(root)?;
        let org = self.org(root);
        let (elsewhere, row, usage) = self.claim_and_read(&org, root, plan)?;
        if let (Some(hold), Some(elsewhere)) = (&plan.hold, elsewhere) {
            // The id belongs to a request of another organisation: never a retry of this one.
            let row = self.row(&self.org(&elsewhere), hold.request_id)?;
            let prior = match row.prior(hold, plan.now) {
                Prior::Retry { .. } | Prior::None => Prior::Conflict,
                other => other,
            };
            let mut decision = decide(&usage, prior);
            decision.allowed = false;
            return Ok(decision);
        }
        let mut first = Some((row, usage));
        for _ in 0..ATTEMPTS {
            let (row, mut usage) = match first.take() {
                Some(read) => read,
                None => self.read(&org, plan)?,
            };
            let prior = plan
                .hold
                .as_ref()
                .map_or(Prior::None, |hold| row.prior(hold, plan.now));
            if let Prior::Retry { .. } = prior {
                let chain: Vec<&str> = row.chain.split('\n').collect();
                let live = LiveHold {
                    chain: &chain,
                    day: &row.day,
                    month: &row.month,
                    minute: row.minute,
                    micros: row.held_micros,
                    tokens: row.held_tokens,
                };
                leave_out(&mut usage, plan, &live);
            }
            let mut decision = decide(&usage, prior);
            let Some(hold) = plan.hold.as_ref().filter(|_| decision.allowed) else {
                return Ok(decision);
            };
            if !apply_prior(&mut decision, hold, prior) {
                return Ok(decision);
            }
            let expires_at = plan.now.saturating_add(self.hold_ttl_seconds);
            match self.hold(&org, plan, hold, expires_at)? {
                Held::Written => {
                    self.remember(root, hold, expires_at)?;
                    decision.reservation =
                        Some(reservation(hold.request_id, hold.micros, expires_at, false));
                    return Ok(decision);
                }
                // The figures changed between the read and the hold: decide again.
                Held::Changed => continue,
            }
        }
        Err(LedgerError::Contention(ATTEMPTS))
    }

    /// Records spend made outside a reservation: a committed request.
    pub(super) fn record(&self, hold: &Hold<'_>) -> Result<(), LedgerError> {
        let root = hold.chain.last().copied().unwrap_or_default();
        self.note_org(root)?;
        if self.claim(hold.request_id, root)?.is_some() {
            return Err(LedgerError::DuplicateRequest(hold.request_id.to_owned()));
        }
        let record = super::RequestRecord {
            request_id: hold.request_id.to_owned(),
            state: RequestState::Committed,
            key_id: hold.key_id.to_owned(),
            action: hold.action.to_owned(),
            model: hold.model.to_owned(),
            chain: hold.chain.iter().map(|s| (*s).to_owned()).collect(),
            time: hold.time,
            day: hold.windows.day.clone(),
            month: hold.windows.month.clone(),
            expires_at: hold.time,
            held_micros: hold.micros,
            held_tokens: hold.tokens,
            cost_micros: hold.micros,
            input_tokens: hold.tokens,
            cached_input_tokens: 0,
            output_tokens: 0,
            price: None,
        };
        match self.write_record(&self.org(root), &record)? {
            true => Ok(()),
            false => Err(LedgerError::DuplicateRequest(hold.request_id.to_owned())),
        }
    }

    /// Writes one request with its totals; `false` when the id is taken.
    pub(super) fn write_record(
        &self,
        org: &Org,
        r: &super::RequestRecord,
    ) -> Result<bool, LedgerError> {
        let id = &r.request_id;
        let overflow = || LedgerError::Overflow(id.clone());
        let input = r
            .input_tokens
            .checked_add(r.cached_input_tokens)
            .ok_or_else(overflow)?;
        let all = input.checked_add(r.output_tokens).ok_or_else(overflow)?;
        let mut invocation = self.scripts.import.prepare_invoke();
        invocation
            .key(org.key("holds"))
            .arg(&org.keys)
            .arg(r.time.unix())
            .arg(id)
            .arg(r.state.as_str())
            .arg(&r.key_id)
            .arg(&r.action)
            .arg(&r.model)
            .arg(r.chain.join("\n"))
            .arg(&r.day)
            .arg(&r.month)
            .arg(r.time.minute_key())
            .arg(r.time.unix())
            .arg(r.expires_at.unix())
            .arg(r.held_micros)
            .arg(r.held_tokens)
            .arg(price_text(r.price))
            .arg(r.cost_micros)
            .arg(r.input_tokens)
            .arg(r.cached_input_tokens)
            .arg(r.output_tokens)
            .arg(input)
            .arg(all);
        let answer: String = self.pool.run(|c| invocation.invoke(c))?;
        Ok(answer == "written")
    }

    /// The organisation of `request_id`, or the error a settlement of an unknown id gets.
    fn org_of(&self, request_id: &str) -> Result<Org, LedgerError> {
        self.owner(request_id)?
            .map(|root| self.org(&root))
            .ok_or_else(|| LedgerError::UnknownRequest(request_id.to_owned()))
    }

    pub(super) fn commit(
        &self,
        request_id: &str,
        usage: &Usage,
        now: Timestamp,
    ) -> Result<Settlement, LedgerError> {
        let (org, price, held, expires_at) = match self.forget(request_id)? {
            Some(here) => (
                self.org(&here.root),
                here.price,
                here.micros,
                here.expires_at,
            ),
            None => self.look_up(request_id)?,
        };
        let overflow = || LedgerError::Overflow(request_id.to_owned());
        let cost = usage_cost(usage, price).ok_or_else(overflow)?;
        let tokens = usage_tokens(usage).ok_or_else(overflow)?;
        let input = usage
            .input_tokens
            .checked_add(usage.cached_input_tokens)
            .ok_or_else(overflow)?;
        let (before, charged) = self.settle(&org, request_id, "commit", now, |i| {
            i.arg(cost)
                .arg(tokens)
                .arg(usage.input_tokens)
                .arg(usage.cached_input_tokens)
                .arg(usage.output_tokens)
                .arg(input);
        })?;
        match before.as_str() {
            "committed" => Ok(Settlement::AlreadyCommitted {
                cost_micros: amount(&charged)?,
            }),
            "released" => Err(LedgerError::AlreadyReleased(request_id.to_owned())),
            "held" | "expired" => Ok(Settlement::Committed {
                cost_micros: cost,
                held_micros: held,
                flags: CommitFlags::of(cost, held, before == "expired", expires_at, now),
            }),
            _ => Err(LedgerError::UnknownRequest(request_id.to_owned())),
        }
    }

    pub(super) fn release(
        &self,
        request_id: &str,
        now: Timestamp,
    ) -> Result<Settlement, LedgerError> {
        let org = match self.forget(request_id)? {
            Some(here) => self.org(&here.root),
            None => self.org_of(request_id)?,
        };
        let (before, _) = self.settle(&org, request_id, "release", now, |i| {
            i.arg(0).arg(0).arg(0).arg(0).arg(0).arg(0);
        })?;
        match before.as_str() {
            "committed" => Err(LedgerError::AlreadyCommitted(request_id.to_owned())),
            "released" => Ok(Settlement::AlreadyReleased),
            "held" | "expired" => Ok(Settlement::Released),
            _ => Err(LedgerError::UnknownRequest(request_id.to_owned())),
        }
    }

    /// Remembers a hold this process wrote, for its commit.
    fn remember(
        &self,
        root: &str,
        hold: &Hold<'_>,
        expires_at: Timestamp,
    ) -> Result<(), LedgerError> {
        let mut held = self.held.lock().map_err(|_| LedgerError::Poisoned)?;
        if held.len() >= HELD_HERE_MAX {
            held.clear();
        }
        held.insert(
            hold.request_id.to_owned(),
            HeldHere {
                root: root.to_owned(),
                price: hold.price,
                micros: hold.micros,
                expires_at,
            },
        );
        Ok(())
    }

    /// Takes what this process remembers of a hold, if anything.
    fn forget(&self, request_id: &str) -> Result<Option<HeldHere>, LedgerError> {
        Ok(self
            .held
            .lock()
            .map_err(|_| LedgerError::Poisoned)?
            .remove(request_id))
    }

    /// The organisation, price, held amount and expiry of a request another process reserved.
    fn look_up(
        &self,
        request_id: &str,
    ) -> Result<(Org, Option<Price>, u64, Timestamp), LedgerError> {
        let org = self.org_of(request_id)?;
        let key = org.key(&format!("req:{request_id}"));
        let (price, held, expires_at): (Option<String>, Option<String>, Option<String>) =
            self.pool.run(|c| {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg(&["price", "held_micros", "expires_at"])
                    .query(c)
            })?;
        Ok((
            org,
            parse_price(&price.unwrap_or_default())?,
            amount(&held.unwrap_or_default())?,
            Timestamp::from_unix(integer(&expires_at.unwrap_or_default())?),
        ))
    }

    /// Runs the `settle` script; returns the request's state before and the cost it answered.
    fn settle(
        &self,
        org: &Org,
        request_id: &str,
        how: &str,
        now: Timestamp,
        amounts: impl FnOnce(&mut redis::ScriptInvocation<'_>),
    ) -> Result<(String, String), LedgerError> {
        let mut invocation = self.scripts.settle.prepare_invoke();
        invocation
            .key(org.key("holds"))
            .arg(&org.keys)
            .arg(now.unix())
            .arg(request_id)
            .arg(how);
        amounts(&mut invocation);
        let reply = strings(self.pool.run(|c| invocation.invoke::<Value>(c))?)?;
        match &reply[..] {
            [before, cost] => Ok((before.clone(), cost.clone())),
            _ => Err(LedgerError::Corrupt(
                "the settle script answered in an unknown shape".to_owned(),
            )),
        }
    }

    /// Expires the holds of every organisation whose TTL has passed at `now`.
    pub(super) fn expire_holds(&self, now: Timestamp) -> Result<u64, LedgerError> {
        let mut total = 0;
        for root in self.roots()? {
            let org = self.org(&root);
            let mut invocation = self.scripts.sweep.prepare_invoke();
            invocation
                .key(org.key("holds"))
                .arg(&org.keys)
                .arg(now.unix());
            total += self.pool.run(|c| invocation.invoke::<u64>(c))?;
        }
        Ok(total)
    }

    /// The root scopes of every organisation the ledger has seen.
    pub(super) fn roots(&self) -> Result<Vec<String>, LedgerError> {
        let key = self.orgs_key();
        let mut roots: Vec<String> = self
            .pool
            .run(|c| redis::cmd("SMEMBERS").arg(&key).query(c))?;
        roots.sort();
        Ok(roots)
    }
}

/// Whether a Redis error says the server does not have the script (it was restarted, or
/// `SCRIPT FLUSH`ed): then the command is sent again with the script's source.
fn is_no_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        || e.to_string().contains("NOSCRIPT")
}

/// The row and figures out of the `read` script's answer.
fn parse_read(reply: Vec<String>, plan: &Plan<'_>) -> Result<(Row, Vec<ScopeUsage>), LedgerError> {
    let row = if reply.first().map(String::as_str) == Some("1") {
        parse_row(&reply[1..12])?
    } else {
        Row::default()
    };
    let figures = &reply[12.min(reply.len())..];
    if figures.len() != plan.limited.len() * 10 {
        return Err(LedgerError::Corrupt(
            "the read script answered with the wrong number of figures".to_owned(),
        ));
    }
    let mut by_limited = Vec::with_capacity(plan.limited.len());
    for f in figures.chunks(10) {
        let window = |w: &[String]| -> Result<WindowUsage, LedgerError> {
            Ok(WindowUsage {
                committed_micros: amount(&w[0])?,
                held_micros: amount(&w[1])?,
                committed_tokens: amount(&w[2])?,
                held_tokens: amount(&w[3])?,
            })
        };
        by_limited.push(ScopeUsage {
            day: window(&f[0..4])?,
            month: window(&f[4..8])?,
            minute_requests: amount(&f[8])?,
            minute_tokens: amount(&f[9])?,
        });
    }
    let usage = plan
        .chain
        .iter()
        .map(|scope| {
            plan.limited
                .iter()
                .position(|l| l == scope)
                .map_or_else(ScopeUsage::default, |i| by_limited[i])
        })
        .collect();
    Ok((row, usage))
}

/// A row from the eleven fields `read` and [`RedisLedger::row`] return.
fn parse_row(f: &[String]) -> Result<Row, LedgerError> {
    if f.len() < 11 || f[0].is_empty() {
        return Ok(Row::default());
    }
    let state = RequestState::parse(&f[0])
        .ok_or_else(|| LedgerError::Corrupt(format!("unknown request state `{}`", f[0])))?;
    Ok(Row {
        state: Some(state),
        key_id: f[1].clone(),
        action: f[2].clone(),
        model: f[3].clone(),
        chain: f[4].clone(),
        day: f[5].clone(),
        month: f[6].clone(),
        minute: integer(&f[7])?,
        held_micros: amount(&f[8])?,
        held_tokens: amount(&f[9])?,
        expires_at: Timestamp::from_unix(integer(&f[10])?),
    })
}
