//! `keyscope respond FINDINGS.json` and `keyscope scan --respond`: for every leaked key, which
//! key it is, whose, where and when it leaked, what it did since, what it can still do, and what
//! to do, with `--revoke` doing the part keyscope can do itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use keyscope_policy::audit::{AuditLog, AuditRecord};
use keyscope_policy::incident::Assessment;
use keyscope_policy::keys::{IssueOptions, KeyError, KeyEvent, KeyKind, Registry};
use keyscope_policy::{Engine, Timestamp, format_usd};
use keyscope_report::human::plural;
use keyscope_scan::Finding;
use miette::{IntoDiagnostic as _, WrapErr as _};
use serde::{Deserialize, Serialize};

use crate::cmd::policy::{LedgerArgs, StoreArgs, parse_time};
use crate::exit::Exit;
use crate::out::errln;

/// Arguments of `keyscope respond`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A keyscope JSON report (`keyscope scan --format json`, `sweep`, `merge`).
    findings: PathBuf,
    #[command(flatten)]
    respond: RespondArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// The repository the report is of: names the refs that hold each leaking commit and
    /// whether a remote is configured.
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    ledger: LedgerArgs,
}

/// What a response needs beside the findings: shared by `respond` and `scan --respond`.
#[derive(Debug, Clone, clap::Args)]
pub struct RespondArgs {
    /// Revoke every leaked keyscope key, and quarantine every leaked provider key registered
    /// in scopes.toml (every decision for it then denies as compromised).
    #[arg(long)]
    pub revoke: bool,
    /// With --revoke: issue a successor for each revoked keyscope key (printed once).
    #[arg(long, requires = "revoke")]
    pub rotate: bool,
    /// The audit log: source addresses of each key's decisions, and where the revocations are
    /// recorded.
    #[arg(long, value_name = "DIR")]
    pub audit_log: Option<PathBuf>,
    /// Respond as at this time (RFC 3339): replays and tests.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub now: Option<Timestamp>,
}

/// Output formats of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people at a terminal.
    Human,
    /// One JSON document.
    Json,
    /// An incident record to paste into a ticket.
    Markdown,
}

/// A leaked secret, from a report file or a scan: every place it was found.
#[derive(Debug, Clone, Serialize)]
pub struct Leak {
    rule_id: String,
    provider: String,
    redacted: String,
    #[serde(skip)]
    fingerprint: String,
    key_id: Option<String>,
    at_head: Option<bool>,
    places: Vec<Place>,
}

/// One place a secret was found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Place {
    path: String,
    #[serde(default)]
    line: usize,
    #[serde(default)]
    commit: Option<CommitFacts>,
}

impl Place {
    /// The place with any secret in its path or commit masked: a report can carry a commit
    /// message or a file name that holds a key.
    fn masked(self) -> Self {
        Self {
            path: crate::mask(self.path),
            line: self.line,
            commit: self.commit.map(|c| CommitFacts {
                id: c.id,
                author: crate::mask(c.author),
                time: c.time,
                summary: crate::mask(c.summary),
            }),
        }
    }
}

/// The commit a place is in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommitFacts {
    id: String,
    author: String,
    time: i64,
    #[serde(default)]
    summary: String,
}

/// The parts of a keyscope JSON report that a response reads.
#[derive(Deserialize)]
struct ReportFile {
    version: u64,
    tool: ReportTool,
    findings: Vec<ReportFinding>,
}

#[derive(Deserialize)]
struct ReportTool {
    name: String,
}

#[derive(Deserialize)]
struct ReportFinding {
    kind: String,
    rule_id: String,
    provider: String,
    redacted: String,
    fingerprint: String,
    path: String,
    line: usize,
    commit: Option<CommitFacts>,
    #[serde(default)]
    owner: Option<ReportOwner>,
    #[serde(default)]
    at_head: Option<bool>,
    #[serde(default)]
    locations: Vec<Place>,
}

/// The registered key a finding is, as the report names it.
#[derive(Deserialize)]
struct ReportOwner {
    key_id: String,
}

/// Reads the leaks of a keyscope JSON report; anything else is an error.
fn read_report(path: &Path) -> miette::Result<Vec<Leak>> {
    let text = std::fs::read_to_string(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", path.display()))?;
    let report: ReportFile = serde_json::from_str(&text).map_err(|e| {
        miette::miette!(
            "`{}` is not a keyscope JSON report ({e}); write one with `keyscope scan --format json`",
            path.display()
        )
    })?;
    if report.tool.name != "keyscope" || report.version != 1 {
        miette::bail!(
            "`{}` is a report of `{}` version {}; keyscope reads its own version 1",
            path.display(),
            report.tool.name,
            report.version
        );
    }
    let leaks = report
        .findings
        .into_iter()
        .filter(|f| f.kind == "secret")
        .map(|f| {
            let mut places = vec![Place {
                path: f.path,
                line: f.line,
                commit: f.commit,
            }];
            places.extend(f.locations);
            let places = places.into_iter().map(Place::masked).collect();
            Leak {
                rule_id: f.rule_id,
                provider: f.provider,
                redacted: f.redacted,
                fingerprint: f.fingerprint,
                key_id: f.owner.map(|o| o.key_id),
                at_head: f.at_head,
                places,
            }
        });
    Ok(group(leaks))
}

/// The leaks among a scan's findings.
pub fn leaks_of(findings: &[Finding]) -> Vec<Leak> {
    let place = |l: &keyscope_scan::Location| Place {
        path: l.origin.to_string(),
        line: l.line,
        commit: l.commit().map(|c| CommitFacts {
            id: c.id.clone(),
            author: c.author.clone(),
            time: c.time,
            summary: c.summary.clone(),
        }),
    };
    let leaks = findings
        .iter()
        .filter(|f| f.kind == keyscope_rules::RuleKind::Secret)
        .map(|f| Leak {
            rule_id: f.rule_id.clone(),
            provider: f.provider.clone(),
            redacted: f.redacted.clone(),
            fingerprint: f.fingerprint.clone(),
            key_id: f.owner.as_ref().map(|o| o.key_id.clone()),
            at_head: f.at_head,
            places: std::iter::once(&f.location)
                .chain(&f.related)
                .map(|l| place(l).masked())
                .collect(),
        });
    group(leaks)
}

/// One leak per secret (by fingerprint), with every place it was found.
fn group(leaks: impl Iterator<Item = Leak>) -> Vec<Leak> {
    let mut by_secret: BTreeMap<String, Leak> = BTreeMap::new();
    for leak in leaks {
        match by_secret.get_mut(&leak.fingerprint) {
            Some(seen) => {
                for place in leak.places {
                    if !seen.places.contains(&place) {
                        seen.places.push(place);
                    }
                }
                seen.at_head = match (seen.at_head, leak.at_head) {
                    (Some(a), Some(b)) => Some(a || b),
                    (a, b) => a.or(b),
                };
                seen.key_id = seen.key_id.take().or(leak.key_id);
            }
            None => {
                by_secret.insert(leak.fingerprint.clone(), leak);
            }
        }
    }
    by_secret.into_values().collect()
}

/// Where and when a secret leaked.
#[derive(Debug, Clone, Serialize)]
struct Exposure {
    /// The earliest commit that holds it.
    first_commit: Option<CommitFacts>,
    /// Whether it is still in HEAD's tree (history sweeps).
    at_head: Option<bool>,
    /// Refs whose history holds that commit (with a repository).
    refs: Vec<String>,
    /// Whether the repository has a remote: its history may be public.
    remote_configured: Option<bool>,
    /// Every place the same secret was found.
    places: Vec<Place>,
}

/// What was done and what is left to do.
#[derive(Debug, Clone, Serialize, Default)]
struct Action {
    revoked: Option<String>,
    quarantined: Option<String>,
    already: Option<String>,
    successor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    successor_secret: Option<String>,
    steps: Vec<String>,
}

/// The response to one leak.
#[derive(Debug, Clone, Serialize)]
struct Response {
    rule_id: String,
    provider: String,
    redacted: String,
    /// `keyscope key`, `registered provider key` or `unregistered provider key`.
    key: &'static str,
    key_id: Option<String>,
    exposure: Exposure,
    /// Whose, use since exposure, reach (registered keys only).
    #[serde(flatten)]
    assessment: Option<Assessment>,
    action: Action,
}

/// What a response works with.
pub struct Responder<'a> {
    engine: &'a Engine,
    ledger: &'a keyscope_policy::Ledger,
    args: &'a RespondArgs,
    repo: Option<&'a Path>,
    now: Timestamp,
}

impl<'a> Responder<'a> {
    /// A responder over a loaded engine and ledger.
    pub fn new(
        engine: &'a Engine,
        ledger: &'a keyscope_policy::Ledger,
        args: &'a RespondArgs,
        repo: Option<&'a Path>,
    ) -> Self {
        Self {
            engine,
            ledger,
            args,
            repo,
            now: args.now.unwrap_or_else(Timestamp::now),
        }
    }

    fn registry(&self) -> Registry<'a> {
        Registry::new(self.engine.store(), self.ledger)
    }

    fn respond(&self, leak: &Leak, events: &mut Vec<KeyEvent>) -> miette::Result<Response> {
        let first_commit = leak
            .places
            .iter()
            .filter_map(|p| p.commit.as_ref())
            .min_by_key(|c| c.time)
            .cloned();
        let exposure = Exposure {
            refs: first_commit
                .as_ref()
                .and_then(|c| self.repo.map(|r| refs_containing(r, &c.id)))
                .unwrap_or_default(),
            remote_configured: self.repo.map(has_remote),
            first_commit,
            at_head: leak.at_head,
            places: leak.places.clone(),
        };
        let since = exposure
            .first_commit
            .as_ref()
            .map(|c| Timestamp::from_unix(c.time));
        let registry = self.registry();
        let assessment = match &leak.key_id {
            Some(id) => Some(
                registry
                    .assess(
                        self.engine,
                        id,
                        since,
                        self.args.audit_log.as_deref(),
                        self.now,
                    )
                    .map_err(miette::Report::new)?,
            ),
            None => None,
        };
        let key = match assessment.as_ref().map(|a| a.kind) {
            Some(KeyKind::Scoped) => "keyscope key",
            Some(KeyKind::Provider) => "registered provider key",
            None => "unregistered provider key",
        };
        let action = self.act(leak, assessment.as_ref(), events)?;
        Ok(Response {
            rule_id: leak.rule_id.clone(),
            provider: leak.provider.clone(),
            redacted: leak.redacted.clone(),
            key,
            key_id: leak.key_id.clone(),
            exposure,
            assessment,
            action,
        })
    }

    fn act(
        &self,
        leak: &Leak,
        assessment: Option<&Assessment>,
        events: &mut Vec<KeyEvent>,
    ) -> miette::Result<Action> {
        let mut action = Action::default();
        let provider_steps = [
            format!(
                "rotate the {} key at the provider's console or admin API, and revoke the old one there",
                leak.provider
            ),
            "put the new key in the secret store, not in code or config files".to_owned(),
            "purge the key from git history (git filter-repo) and force-push; forks and clones keep it, so rotation is what protects you".to_owned(),
        ];
        let Some(assessment) = assessment else {
            action.steps.extend(provider_steps);
            action.steps.push(
                "register the key's fingerprint in scopes.toml or move the app to a scoped keyscope key: \
                 this key belongs to no scope, so its spend cannot be attributed to any app or team"
                    .to_owned(),
            );
            return Ok(action);
        };
        let id = &assessment.key_id;
        if self.args.revoke {
            match self.registry().revoke(id, "leaked", self.now) {
                Ok((_, done)) => {
                    match assessment.kind {
                        KeyKind::Scoped => action.revoked = Some(self.now.to_string()),
                        KeyKind::Provider => action.quarantined = Some(self.now.to_string()),
                    }
                    events.extend(done);
                }
                Err(KeyError::AlreadyRevoked { at, reason, .. }) => {
                    action.already = Some(format!("revoked at {at} ({reason})"));
                }
                Err(e) => return Err(miette::Report::new(e)),
            }
            if self.args.rotate && assessment.kind == KeyKind::Scoped {
                let options = IssueOptions {
                    name: Some(format!("successor of {id}")),
                    expires_in_seconds: None,
                };
                let (issued, done) = self
                    .registry()
                    .issue(&assessment.ownership.scope, &options, self.now)
                    .map_err(miette::Report::new)?;
                action.successor = Some(issued.record.id.clone());
                action.successor_secret = Some(issued.secret.expose().to_owned());
                events.extend(done);
            }
        } else {
            action.steps.push(format!(
                "revoke it now: `keyscope key revoke {id} --reason leaked` (or run respond with --revoke)"
            ));
        }
        match assessment.kind {
            KeyKind::Scoped => action.steps.push(
                "give the app its successor key through the secret store and purge the leaked one from history".to_owned(),
            ),
            KeyKind::Provider => action.steps.extend(provider_steps),
        }
        Ok(action)
    }
}

/// Refs whose history holds `commit`, by the system `git`.
fn refs_containing(repo: &Path, commit: &str) -> Vec<String> {
    Process::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "for-each-ref",
            "--format=%(refname:short)",
            "--contains",
            commit,
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the repository at `repo` has a remote configured.
fn has_remote(repo: &Path) -> bool {
    Process::new("git")
        .arg("-C")
        .arg(repo)
        .arg("remote")
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.trim_ascii().is_empty())
}

/// Responds to `leaks` and prints the response in `format`; records lifecycle events in the
/// audit log when one is given.
pub fn respond_and_print(
    responder: &Responder<'_>,
    leaks: &[Leak],
    format: Format,
    output: Option<&Path>,
) -> miette::Result<Exit> {
    let mut events = Vec::new();
    let mut responses = Vec::with_capacity(leaks.len());
    for leak in leaks {
        responses.push(responder.respond(leak, &mut events)?);
    }
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&serde_json::json!({
            "version": 1,
            "time": responder.now,
            "responses": responses,
        }))
        .into_diagnostic()?,
        Format::Human => human(&responses),
        Format::Markdown => markdown(&responses, responder.now),
    };
    crate::cmd::scan::write_report(output, &text)?;
    if let Some(dir) = &responder.args.audit_log {
        let written = AuditLog::open(dir, events.len().max(1)).and_then(|log| {
            for event in &events {
                log.record(AuditRecord::of_key_event(event))?;
            }
            log.close()
        });
        if let Err(error) = written {
            errln!(
                "error: the revocations stand, but they could not be recorded in the audit log: {}",
                crate::mask(error.to_string())
            );
            return Ok(Exit::Error);
        }
    }
    Ok(if responses.is_empty() {
        Exit::Clean
    } else {
        Exit::Findings
    })
}

/// Runs `keyscope respond`.
pub fn run(args: Args) -> miette::Result<Exit> {
    let leaks = read_report(&args.findings)?;
    let engine = Engine::new(args.store.load()?);
    let ledger = args.ledger.location(&args.store.store).open()?;
    let responder = Responder::new(&engine, &ledger, &args.respond, args.repo.as_deref());
    respond_and_print(&responder, &leaks, args.format, None)
}

fn usd(micros: u64) -> String {
    format!("${}", format_usd(micros))
}

fn facts(response: &Response) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let key = match &response.key_id {
        Some(id) => format!("{} `{id}`", response.key),
        None => response.key.to_owned(),
    };
    rows.push((
        "Key".to_owned(),
        format!("{} ({} {})", key, response.provider, response.redacted),
    ));
    if let Some(a) = &response.assessment {
        let o = &a.ownership;
        rows.push((
            "Whose".to_owned(),
            format!(
                "scope `{}`, owner {}, environment {}, PHI {}, caps day {} / month {}",
                o.scope,
                o.owner.as_deref().unwrap_or("unknown"),
                o.environment.unwrap_or("unspecified"),
                if o.phi { "yes" } else { "no" },
                o.day_cap_micros.map_or_else(|| "none".to_owned(), usd),
                o.month_cap_micros.map_or_else(|| "none".to_owned(), usd),
            ),
        ));
    }
    let e = &response.exposure;
    if let Some(c) = &e.first_commit {
        rows.push((
            "Exposure".to_owned(),
            format!(
                "first in commit {} by {} at {} (\"{}\")",
                &c.id[..c.id.len().min(12)],
                c.author,
                Timestamp::from_unix(c.time),
                c.summary
            ),
        ));
    }
    let mut status = Vec::new();
    match e.at_head {
        Some(true) => status.push("still at HEAD".to_owned()),
        Some(false) => status.push("no longer at HEAD, still in history".to_owned()),
        None => {}
    }
    if !e.refs.is_empty() {
        status.push(format!("on {}", e.refs.join(", ")));
    }
    match e.remote_configured {
        Some(true) => status.push("a remote is configured: the history may be public".to_owned()),
        Some(false) => status.push("no remote configured".to_owned()),
        None => {}
    }
    if !status.is_empty() {
        rows.push(("Status".to_owned(), status.join("; ")));
    }
    let places: Vec<String> = e
        .places
        .iter()
        .map(|p| format!("{}:{}", p.path, p.line))
        .collect();
    rows.push(("Found at".to_owned(), places.join(", ")));
    if let Some(a) = &response.assessment {
        let u = &a.use_since;
        let since = u
            .since
            .map_or_else(|| "ever".to_owned(), |s| format!("since {s}"));
        let models: Vec<String> = u
            .activity
            .models
            .iter()
            .map(|(m, n)| format!("{m} x{n}"))
            .collect();
        rows.push((
            "Use".to_owned(),
            format!(
                "{since}: {} request{}, {} tokens, {} spent, {} held; models {}; last use {}; source IPs {}",
                u.activity.requests,
                plural(u.activity.requests),
                u.activity.tokens,
                usd(u.activity.committed_micros),
                usd(u.activity.held_micros),
                if models.is_empty() { "none".to_owned() } else { models.join(", ") },
                u.activity.last_use.map_or_else(|| "never".to_owned(), |t| t.to_string()),
                if !u.audit_log_read {
                    "unknown (no --audit-log)".to_owned()
                } else if u.source_ips.is_empty() {
                    "none".to_owned()
                } else {
                    u.source_ips.join(", ")
                }
            ),
        ));
        let r = &a.reach;
        rows.push((
            "Reach".to_owned(),
            format!(
                "{} now; may call {}; left today {}, this month {}; networks {}; expires {}",
                r.state.as_str(),
                if r.models.is_empty() {
                    "no model".to_owned()
                } else {
                    r.models.join(", ")
                },
                r.day_remaining_micros
                    .map_or_else(|| "uncapped".to_owned(), usd),
                r.month_remaining_micros
                    .map_or_else(|| "uncapped".to_owned(), usd),
                if r.networks.is_empty() {
                    "any".to_owned()
                } else {
                    r.networks.join(", ")
                },
                r.expires
                    .map_or_else(|| "never".to_owned(), |t| t.to_string()),
            ),
        ));
    }
    let act = &response.action;
    let mut done = Vec::new();
    if let Some(at) = &act.revoked {
        done.push(format!("revoked at {at}"));
    }
    if let Some(at) = &act.quarantined {
        done.push(format!(
            "quarantined at {at}: every decision for it denies as compromised"
        ));
    }
    if let Some(already) = &act.already {
        done.push(format!("already {already}"));
    }
    if let Some(id) = &act.successor {
        done.push(format!("successor `{id}` issued"));
    }
    if !done.is_empty() {
        rows.push(("Done".to_owned(), done.join("; ")));
    }
    rows
}

fn human(responses: &[Response]) -> String {
    if responses.is_empty() {
        return "no leaked keys to respond to\n".to_owned();
    }
    let mut out = String::new();
    for (n, response) in responses.iter().enumerate() {
        out.push_str(&format!(
            "{}. {} ({})\n",
            n + 1,
            response.rule_id,
            response.key
        ));
        for (label, text) in facts(response) {
            out.push_str(&format!("   {label:<9} {text}\n"));
        }
        for step in &response.action.steps {
            out.push_str(&format!("   - {step}\n"));
        }
        if let Some(secret) = &response.action.successor_secret {
            out.push_str(&format!(
                "   Successor secret (shown once; put it in the secret store now):\n\n       {secret}\n"
            ));
        }
        out.push('\n');
    }
    out
}

fn markdown(responses: &[Response], now: Timestamp) -> String {
    let mut out = format!("# Leaked key incident record\n\nPrepared by keyscope at {now}.\n\n");
    if responses.is_empty() {
        out.push_str("No leaked keys were found.\n");
    }
    for (n, response) in responses.iter().enumerate() {
        out.push_str(&format!(
            "## {}. {} ({})\n\n| | |\n|---|---|\n",
            n + 1,
            response.rule_id,
            response.key
        ));
        for (label, text) in facts(response) {
            out.push_str(&format!("| {label} | {} |\n", text.replace('|', "\\|")));
        }
        if !response.action.steps.is_empty() {
            out.push_str("\n**To do**\n\n");
            for step in &response.action.steps {
                out.push_str(&format!("- [ ] {step}\n"));
            }
        }
        out.push('\n');
    }
    out
}
