//! `keyscope key issue|rotate|revoke|list|show`: scoped keys, kept in the ledger's registry.

use std::path::PathBuf;

use keyscope_policy::audit::{AuditError, AuditLog, AuditRecord};
use keyscope_policy::keys::{
    DEFAULT_OVERLAP_SECONDS, IssueOptions, IssuedKey, KeyActivity, KeyEvent, KeyKind, KeyRecord,
    KeyState, Registry, Retirement, RotationEnd, parse_duration,
};
use keyscope_policy::{Ledger, Store, Timestamp, format_usd};
use keyscope_report::human::plural;
use miette::IntoDiagnostic as _;

use crate::cmd::policy::{LedgerArgs, StoreArgs, parse_time};
use crate::exit::Exit;
use crate::out::{errln, outln};

/// Key commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Issue a new key in a scope; its secret is printed once, here, and never again.
    Issue(IssueArgs),
    /// Issue a successor in the same scope; the old key stays valid for an overlap.
    Rotate(RotateArgs),
    /// Revoke a key at once (a provider key of scopes.toml is quarantined).
    Revoke(RevokeArgs),
    /// List the keys of the registry, with their state and those due for rotation.
    List(ListArgs),
    /// Show one key: its record and what the ledger saw it do. Never the secret.
    Show(ShowArgs),
}

/// What every key command needs: the store, the ledger, the audit log and the clock.
#[derive(Debug, clap::Args)]
pub struct Common {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    ledger: LedgerArgs,
    /// Record every lifecycle event (issued, rotated, superseded, revoked, expired) in this
    /// audit log.
    #[arg(long, value_name = "DIR")]
    audit_log: Option<PathBuf>,
    /// Act at this time (RFC 3339) instead of the system clock: replays and tests.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    now: Option<Timestamp>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Human,
    /// One JSON document.
    Json,
}

/// Arguments of `keyscope key issue`.
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// The scope the key belongs to (`prod/care-notes-summarization`).
    #[arg(long)]
    scope: String,
    /// A label for people.
    #[arg(long)]
    name: Option<String>,
    /// Valid for this long: `90d`, `12h`.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    expires: Option<i64>,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `keyscope key rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The key to rotate (`k-…`).
    key_id: String,
    /// Keep the old key valid this long after the rotation (default 24h).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    overlap: Option<i64>,
    /// Instead, retire the old key once no request has used it for this long.
    #[arg(long, value_name = "DURATION", value_parser = duration, conflicts_with = "overlap")]
    until_idle: Option<i64>,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `keyscope key revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The key to revoke (`k-…`, or the id of a provider key in scopes.toml).
    key_id: String,
    /// Why: `leaked`, `offboarding`, `rotation`, ...
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `keyscope key list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only keys of this scope (and the scopes under it).
    #[arg(long)]
    scope: Option<String>,
    /// Only keys in this state.
    #[arg(long, value_parser = state)]
    state: Option<KeyState>,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `keyscope key show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The key (`k-…`).
    key_id: String,
    #[command(flatten)]
    common: Common,
}

fn duration(text: &str) -> Result<i64, String> {
    parse_duration(text)
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("`{text}` is not a duration: use `90d`, `24h`, `30m` or `45s`"))
}

fn state(text: &str) -> Result<KeyState, String> {
    KeyState::parse(text)
        .ok_or_else(|| format!("`{text}` is not a state: active, superseded, revoked or expired"))
}

/// The store, ledger and time a command works with.
struct Context {
    store: Store,
    ledger: Ledger,
    now: Timestamp,
    audit_log: Option<PathBuf>,
    format: Format,
}

impl Context {
    fn open(common: &Common, create: bool) -> miette::Result<Self> {
        let store = common.store.load()?;
        let ledger = if create {
            common.ledger.location(&common.store.store).open()?
        } else {
            common.ledger.open_existing(&common.store.store)?
        };
        Ok(Self {
            store,
            ledger,
            now: common.now.unwrap_or_else(Timestamp::now),
            audit_log: common.audit_log.clone(),
            format: common.format,
        })
    }

    fn registry(&self) -> Registry<'_> {
        Registry::new(&self.store, &self.ledger)
    }

    /// Records `events` in the audit log, when one was asked for. The change stands either
    /// way; an event that could not be recorded is an error the caller reports.
    fn audit(&self, events: &[KeyEvent]) -> Result<(), AuditError> {
        let Some(dir) = &self.audit_log else {
            return Ok(());
        };
        let log = AuditLog::open(dir, events.len().max(1))?;
        for event in events {
            log.record(AuditRecord::of_key_event(event))?;
        }
        log.close()
    }
}

/// Runs a key command.
pub fn run(command: Command) -> miette::Result<Exit> {
    match command {
        Command::Issue(args) => issue(&args),
        Command::Rotate(args) => rotate(&args),
        Command::Revoke(args) => revoke(&args),
        Command::List(args) => list(&args),
        Command::Show(args) => show(&args),
    }
}

fn issue(args: &IssueArgs) -> miette::Result<Exit> {
    let context = Context::open(&args.common, true)?;
    let options = IssueOptions {
        name: args.name.clone(),
        expires_in_seconds: args.expires,
    };
    let (issued, events) = context
        .registry()
        .issue(&args.scope, &options, context.now)
        .map_err(miette::Report::new)?;
    print_issued(&context, &issued, None)?;
    finish(&context, &events)
}

fn rotate(args: &RotateArgs) -> miette::Result<Exit> {
    let context = Context::open(&args.common, false)?;
    let end = match args.until_idle {
        Some(idle) => RotationEnd::UntilIdle(idle),
        None => RotationEnd::Overlap(args.overlap.unwrap_or(DEFAULT_OVERLAP_SECONDS)),
    };
    let (issued, events) = context
        .registry()
        .rotate(&args.key_id, end, context.now)
        .map_err(miette::Report::new)?;
    let old = context
        .registry()
        .show(&args.key_id)
        .map_err(miette::Report::new)?;
    print_issued(&context, &issued, Some(&old))?;
    finish(&context, &events)
}

fn revoke(args: &RevokeArgs) -> miette::Result<Exit> {
    let context = Context::open(&args.common, true)?;
    let (record, events) = context
        .registry()
        .revoke(&args.key_id, &args.reason, context.now)
        .map_err(miette::Report::new)?;
    match context.format {
        Format::Json => outln!("{}", record_json(&record, context.now)),
        Format::Human => {
            let what = match record.kind {
                KeyKind::Scoped => "revoked",
                KeyKind::Provider => "quarantined provider key",
            };
            outln!(
                "{what} {} of scope {} at {} ({}): every decision for it now denies",
                record.id,
                record.scope,
                context.now,
                crate::mask(args.reason.clone())
            )
        }
    }?;
    finish(&context, &events)
}

fn list(args: &ListArgs) -> miette::Result<Exit> {
    let context = Context::open(&args.common, true)?;
    let registry = context.registry();
    // Transitions are recorded once, so only where they can be written down.
    let events = match context.audit_log {
        Some(_) => registry.settle(context.now).map_err(miette::Report::new)?,
        None => Vec::new(),
    };
    let keys: Vec<KeyRecord> = registry
        .list()
        .map_err(miette::Report::new)?
        .into_iter()
        .filter(|k| args.scope.as_ref().is_none_or(|s| in_scope(&k.scope, s)))
        .filter(|k| args.state.is_none_or(|s| k.state(context.now).0 == s))
        .collect();
    match context.format {
        Format::Json => {
            let rows: Vec<_> = keys
                .iter()
                .map(|k| {
                    let mut row = record_json(k, context.now);
                    row["due_for_rotation"] = due(&context.store, k, context.now).into();
                    row
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&rows).into_diagnostic()?)?;
        }
        Format::Human => print_table(&context, &keys)?,
    }
    finish(&context, &events)
}

fn show(args: &ShowArgs) -> miette::Result<Exit> {
    let context = Context::open(&args.common, false)?;
    let registry = context.registry();
    let record = registry.show(&args.key_id).map_err(miette::Report::new)?;
    let activity = registry
        .activity(&record.id, None)
        .map_err(miette::Report::new)?;
    match context.format {
        Format::Json => {
            let mut value = record_json(&record, context.now);
            value["activity"] = serde_json::to_value(&activity).into_diagnostic()?;
            value["due_for_rotation"] = due(&context.store, &record, context.now).into();
            outln!(
                "{}",
                serde_json::to_string_pretty(&value).into_diagnostic()?
            )?;
        }
        Format::Human => print_record(&context, &record, &activity)?,
    }
    Ok(Exit::Clean)
}

/// Audits `events` and ends the command: an event that could not be recorded is exit 2.
fn finish(context: &Context, events: &[KeyEvent]) -> miette::Result<Exit> {
    if let Err(error) = context.audit(events) {
        errln!(
            "error: the change stands, but it could not be recorded in the audit log: {}",
            crate::mask(error.to_string())
        );
        return Ok(Exit::Error);
    }
    Ok(Exit::Clean)
}

/// Whether `scope` is `root` or under it.
fn in_scope(scope: &str, root: &str) -> bool {
    scope == root
        || scope
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `record` should be rotated soon: within a tenth of its scope's maximum age (or a
/// week) of that age or of its expiry, or past it.
fn due(store: &Store, record: &KeyRecord, now: Timestamp) -> bool {
    if record.state(now).0 != KeyState::Active || record.successor.is_some() {
        return false;
    }
    let max_age = store
        .scopes()
        .scope(&record.scope)
        .and_then(|s| s.max_key_age_seconds);
    let age_limit = max_age.map(|age| record.created.unix().saturating_add(age));
    let limit = match (age_limit, record.expires.map(Timestamp::unix)) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return false,
    };
    let lifetime = limit - record.created.unix();
    let margin = (lifetime / 10).min(7 * 86_400);
    now.unix() >= limit - margin
}

fn record_json(record: &KeyRecord, now: Timestamp) -> serde_json::Value {
    let (state, since) = record.state(now);
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        // The hash identifies the key to whoever holds the secret; a listing does not need it.
        object.remove("hash");
        object.remove("recorded");
        object.insert("state".into(), state.as_str().into());
        object.insert("state_since".into(), since.map(|t| t.to_string()).into());
    }
    value
}

fn print_issued(
    context: &Context,
    issued: &IssuedKey,
    rotated: Option<&KeyRecord>,
) -> miette::Result<()> {
    let record = &issued.record;
    if context.format == Format::Json {
        let mut value = record_json(record, context.now);
        value["secret"] = issued.secret.expose().into();
        if let Some(old) = rotated {
            value["rotated"] = record_json(old, context.now);
        }
        return outln!(
            "{}",
            serde_json::to_string_pretty(&value).into_diagnostic()?
        );
    }
    outln!("issued key {} in scope {}", record.id, record.scope)?;
    if let Some(expires) = record.expires {
        outln!("expires {expires}")?;
    }
    if let Some(old) = rotated {
        let when = match old.retirement {
            Some(Retirement::Overlap { at }) => format!("until {at}"),
            Some(Retirement::Idle { idle_seconds, .. }) => {
                format!("until no request has used it for {idle_seconds} s")
            }
            None => String::new(),
        };
        outln!("it replaces {}, which stays valid {when}", old.id)?;
    }
    outln!("\n    {}\n", issued.secret.expose())?;
    outln!(
        "This is the only time the key is shown: put it in your secret manager now. \
         keyscope keeps only its SHA-256."
    )
}

fn print_table(context: &Context, keys: &[KeyRecord]) -> miette::Result<()> {
    if keys.is_empty() {
        return outln!("no keys");
    }
    outln!(
        "{:<16} {:<36} {:<11} {:<21} {:<21} {}",
        "ID",
        "SCOPE",
        "STATE",
        "CREATED",
        "EXPIRES",
        "NOTE"
    )?;
    for key in keys {
        let (state, _) = key.state(context.now);
        let note = if due(&context.store, key, context.now) {
            "due for rotation".to_owned()
        } else if let (KeyState::Active, Some(next)) = (state, &key.successor) {
            format!("rotating to {next}")
        } else if let Some(revoked) = &key.revoked {
            crate::mask(revoked.reason.clone())
        } else {
            String::new()
        };
        outln!(
            "{:<16} {:<36} {:<11} {:<21} {:<21} {}",
            key.id,
            key.scope,
            state.as_str(),
            key.created.to_string(),
            key.expires
                .map_or_else(|| "-".to_owned(), |e| e.to_string()),
            note
        )?;
    }
    Ok(())
}

fn print_record(context: &Context, key: &KeyRecord, activity: &KeyActivity) -> miette::Result<()> {
    let (state, since) = key.state(context.now);
    outln!("key        {}", key.id)?;
    if let Some(redacted) = &key.redacted {
        outln!("secret     {redacted} (only its SHA-256 is kept)")?;
    }
    outln!("scope      {}", key.scope)?;
    if let Some(name) = &key.name {
        outln!("name       {}", crate::mask(name.clone()))?;
    }
    let since = since.map(|s| format!(" since {s}")).unwrap_or_default();
    outln!("state      {}{since}", state.as_str())?;
    outln!("created    {}", key.created)?;
    if let Some(expires) = key.expires {
        outln!("expires    {expires}")?;
    }
    if let Some(revoked) = &key.revoked {
        outln!(
            "revoked    {} ({})",
            revoked.at,
            crate::mask(revoked.reason.clone())
        )?;
    }
    for (label, id) in [
        ("replaces", &key.predecessor),
        ("replaced by", &key.successor),
    ] {
        if let Some(id) = id {
            outln!("{label:<10} {id}")?;
        }
    }
    if due(&context.store, key, context.now) {
        outln!("due        for rotation")?;
    }
    outln!(
        "activity   {} request{}, {} tokens, ${} committed, ${} held, last use {}",
        activity.requests,
        plural(activity.requests),
        activity.tokens,
        format_usd(activity.committed_micros),
        format_usd(activity.held_micros),
        activity
            .last_use
            .map_or_else(|| "never".to_owned(), |t| t.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_contain_their_descendants_only() {
        assert!(in_scope("prod/app", "prod"));
        assert!(in_scope("prod", "prod"));
        assert!(!in_scope("production/app", "prod"));
    }

    #[test]
    fn states_and_durations_parse() {
        assert_eq!(state("revoked"), Ok(KeyState::Revoked));
        assert!(state("gone").is_err());
        assert_eq!(duration("24h"), Ok(86_400));
        assert!(duration("0s").is_err());
    }
}
