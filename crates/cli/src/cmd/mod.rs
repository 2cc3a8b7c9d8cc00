//! One module per subcommand, each with its own `Args` and `run`.

pub mod audit;
pub mod baseline;
pub mod completions;
pub mod config;
pub mod decide;
pub mod key;
pub mod ledger;
pub mod man;
pub mod merge;
pub mod policy;
pub mod respond;
pub mod rules;
pub mod scan;
pub mod serve;
pub mod spend;
pub mod sweep;
pub mod usage;

use crate::exit::Exit;

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Scan files, directories or standard input for leaked keys.
    Scan(scan::Args),
    /// Sweep the whole history of many repositories, incrementally, in shards.
    Sweep(sweep::Args),
    /// Merge the JSON reports of several sweeps (shards) into one report, in any format.
    Merge(merge::Args),
    /// Show the effective configuration.
    #[command(subcommand)]
    Config(config::Command),
    /// Record today's findings as accepted, so that scans report only new ones.
    #[command(subcommand)]
    Baseline(baseline::Command),
    /// List built-in rules, or check custom rule files.
    #[command(subcommand)]
    Rules(rules::Command),
    /// Validate and test a policy store.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Decide one request (AuthZEN JSON on stdin); exit 0 allow, 1 deny, 2 error.
    Decide(decide::Args),
    /// Issue, rotate, revoke and list scoped keys (kept in the ledger's key registry).
    #[command(subcommand)]
    Key(key::Command),
    /// Respond to leaked keys in a findings report: whose, what they did, what they can still
    /// do; `--revoke` revokes keyscope keys and quarantines registered provider keys.
    Respond(respond::Args),
    /// Second phase of a budget reservation: commit actual usage or release the hold.
    #[command(subcommand)]
    Usage(usage::Command),
    /// Report spend by scope, model or day, from the budget ledger.
    Spend(spend::Args),
    /// Serve decisions over HTTP: an AuthZEN 1.0 policy decision point.
    Serve(serve::Args),
    /// Check the hash chain of an audit log, or read its records.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Check a budget ledger for damage, or rebuild its totals.
    #[command(subcommand)]
    Ledger(ledger::Command),
    /// Print the completion script for a shell (bash, zsh, fish, powershell, elvish).
    Completions(completions::Args),
    /// Print the manual page (roff): `keyscope man > keyscope.1`.
    Man(man::Args),
}

/// Runs a subcommand.
pub fn run(command: Command) -> miette::Result<Exit> {
    match command {
        Command::Scan(a) => scan::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Rules(c) => rules::run(c),
        Command::Config(c) => config::run(c),
        Command::Baseline(c) => baseline::run(c),
        Command::Policy(c) => policy::run(c),
        Command::Decide(a) => decide::run(a),
        Command::Key(c) => key::run(c),
        Command::Respond(a) => respond::run(a),
        Command::Usage(c) => usage::run(c),
        Command::Spend(a) => spend::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Ledger(c) => ledger::run(c),
        Command::Audit(c) => audit::run(c),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
    }
}
