//! `keyscope policy validate|test`.

use std::path::{Path, PathBuf};

use keyscope_policy::fixtures::CaseFile;
use keyscope_policy::{Clock, Engine, LEDGER_FILE, Ledger, RedisOptions, Store, Timestamp};
use miette::IntoDiagnostic as _;

use crate::exit::Exit;
use crate::out::outln;

/// Where the policy store is.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The policy store directory.
    #[arg(long, value_name = "DIR", default_value = "policies")]
    pub store: PathBuf,
}

impl StoreArgs {
    /// Loads and validates the store.
    pub fn load(&self) -> miette::Result<Store> {
        Store::load(&self.store).map_err(miette::Report::new)
    }
}

/// Where the budget ledger is.
#[derive(Debug, Clone, clap::Args)]
pub struct LedgerArgs {
    /// The budget ledger: a SQLite file (default `ledger.sqlite` in the store directory), or a
    /// shared Redis, `redis://[:PASSWORD@]HOST:PORT[/DB]` or
    /// `redis-cluster://HOST:PORT[,HOST:PORT...]`.
    #[arg(long, value_name = "PATH|URL")]
    pub ledger: Option<String>,
}

/// A ledger location as typed: a file or a Redis URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerLocation {
    /// A SQLite file.
    File(PathBuf),
    /// A Redis URL (which may carry a password: never printed whole).
    Redis(String),
}

impl LedgerLocation {
    /// The location for messages: a Redis URL without its password, and a key pasted into a
    /// path masked.
    pub fn display(&self) -> String {
        match self {
            Self::File(path) => crate::mask(path.display().to_string()),
            Self::Redis(url) => crate::mask(redact_url(url)),
        }
    }

    /// Opens the ledger, creating a SQLite file that is not there yet.
    pub fn open(&self) -> miette::Result<Ledger> {
        match self {
            Self::File(path) => Ledger::open(path).map_err(miette::Report::new),
            Self::Redis(url) => Ledger::open_redis(url, RedisOptions::default())
                .map_err(|e| miette::miette!("{e} (ledger `{}`)", redact_url(url))),
        }
    }

    /// Whether the ledger is known to exist: a SQLite file that is there, or any Redis (which
    /// [`open`](Self::open) reaches or fails on).
    pub fn exists(&self) -> bool {
        match self {
            Self::File(path) => path.exists(),
            Self::Redis(_) => true,
        }
    }
}

/// `redis://user:secret@host` as `redis://user:***@host`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

impl LedgerArgs {
    /// Where the ledger of `store` is.
    pub fn location(&self, store: &Path) -> LedgerLocation {
        match &self.ledger {
            Some(url) if Ledger::is_redis_url(url) => LedgerLocation::Redis(url.clone()),
            Some(path) => LedgerLocation::File(PathBuf::from(path)),
            None => LedgerLocation::File(store.join(LEDGER_FILE)),
        }
    }

    /// Opens the ledger for `store`, which must exist: reading a ledger that is not there
    /// would report nothing spent.
    pub fn open_existing(&self, store: &Path) -> miette::Result<Ledger> {
        let location = self.location(store);
        if !location.exists() {
            miette::bail!(
                "no budget ledger at `{}`: nothing was reserved",
                location.display()
            );
        }
        location.open()
    }
}

/// Where a decision's time comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct ClockArgs {
    /// Decide at this time (RFC 3339) instead of the system clock, holds included: replays and
    /// tests, never production. Without it or `--trust-request-time`, a request's
    /// `context.time` is ignored.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    now: Option<Timestamp>,
    /// Decide at a request's `context.time` when it is at most this many seconds from the
    /// system clock, and deny it when further off; holds still expire by the system clock.
    #[arg(long, value_name = "SECONDS", conflicts_with = "now")]
    trust_request_time: Option<u32>,
}

impl ClockArgs {
    /// The clock the flags ask for.
    pub fn clock(&self) -> Clock {
        match (self.now, self.trust_request_time) {
            (Some(at), _) => Clock::Fixed(at),
            (None, Some(max_skew_seconds)) => Clock::TrustRequestTime { max_skew_seconds },
            (None, None) => Clock::System,
        }
    }
}

/// Parses a `--now` or `--since` value: an RFC 3339 date-time or a date.
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text).ok_or_else(|| {
        "expected an RFC 3339 date-time with offset (`2026-11-22T18:00:00Z`) or a date".to_owned()
    })
}

/// Policy store commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the schema, policies, scopes and model catalog of a store.
    Validate(ValidateArgs),
    /// Run decision fixtures (request -> expected decision and reasons) against a store.
    Test(TestArgs),
}

/// Arguments of `keyscope policy validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    store: StoreArgs,
}

/// Arguments of `keyscope policy test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Case files (JSON); default: every `*.json` in the store's `tests/` directory.
    #[arg(value_name = "CASES")]
    cases: Vec<PathBuf>,
}

/// Runs a policy command.
pub fn run(command: Command) -> miette::Result<Exit> {
    match command {
        Command::Validate(args) => validate(&args),
        Command::Test(args) => test(&args),
    }
}

fn validate(args: &ValidateArgs) -> miette::Result<Exit> {
    let store = args.store.load()?;
    let catalog = store.catalog();
    outln!(
        "policy store `{}` is valid: {} policies, {} scopes, {} keys, {} models (prices as of {})",
        args.store.store.display(),
        store.policies().count(),
        store.scopes().scopes().len(),
        store.scopes().keys().len(),
        catalog.models().len(),
        &catalog.prices_as_of().to_string()[..10],
    )?;
    Ok(Exit::Clean)
}

fn test(args: &TestArgs) -> miette::Result<Exit> {
    let engine = Engine::new(args.store.load()?);
    let mut files = args.cases.clone();
    if files.is_empty() {
        let dir = args.store.store.join("tests");
        for entry in std::fs::read_dir(&dir).into_diagnostic()? {
            let path = entry.into_diagnostic()?.path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
        files.sort();
    }
    if files.is_empty() {
        miette::bail!(
            "no decision case files in `{}`: nothing was tested",
            args.store.store.join("tests").display()
        );
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        let cases = CaseFile::load(file).map_err(miette::Report::new)?;
        if cases.cases.is_empty() {
            // A file that tests nothing must not read as a pass.
            failed += 1;
            println!("FAIL {}: the file has no cases", file.display());
        }
        for outcome in cases.run(&engine) {
            match &outcome.failure {
                None => passed += 1,
                Some(failure) => {
                    failed += 1;
                    outln!("FAIL {}: {}: {failure}", file.display(), outcome.name)?;
                }
            }
        }
    }
    outln!("{passed} passed, {failed} failed")?;
    Ok(if failed == 0 {
        Exit::Clean
    } else {
        Exit::ChecksFailed
    })
}
