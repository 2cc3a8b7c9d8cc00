//! `keyscope rules list|check`.

use std::path::{Path, PathBuf};

use keyscope_rules::RuleSet;
use keyscope_scan::check_examples;
use miette::{Context as _, IntoDiagnostic as _};

use crate::exit::Exit;
use crate::out::{errln, outln};

/// Rule commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the built-in rules (and any added with --rules).
    List {
        /// Also load the rules of this TOML file (repeatable).
        #[arg(long = "rules", value_name = "FILE")]
        rule_files: Vec<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate rule files: the schema, the patterns, and every example and negative example.
    Check {
        /// Rule files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs a rules command.
pub fn run(command: Command) -> miette::Result<Exit> {
    match command {
        Command::List { rule_files, json } => list(&rule_files, json),
        Command::Check { files } => check(&files),
    }
}

/// Loads the built-in rules plus those of the given files.
pub fn load_rules(files: &[PathBuf]) -> miette::Result<RuleSet> {
    let mut rules = RuleSet::builtin()?;
    for file in files {
        rules.extend(read_rule_file(file)?.rules().iter().cloned())?;
    }
    Ok(rules)
}

fn read_rule_file(path: &Path) -> miette::Result<RuleSet> {
    let text = std::fs::read_to_string(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read rule file `{}`", path.display()))?;
    Ok(RuleSet::from_toml(&path.display().to_string(), &text)?)
}

fn list(files: &[PathBuf], json: bool) -> miette::Result<Exit> {
    let rules = load_rules(files)?;
    if json {
        let list: Vec<serde_json::Value> = rules
            .rules()
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id(),
                    "provider": r.provider(),
                    "name": r.name(),
                    "severity": r.severity().as_str(),
                    "description": r.description(),
                    "keywords": r.keywords(),
                    "references": r.references(),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&list).into_diagnostic()?)?;
        return Ok(Exit::Clean);
    }
    let id_width = rules
        .rules()
        .iter()
        .map(|r| r.id().len())
        .max()
        .unwrap_or(2);
    let provider_width = rules
        .rules()
        .iter()
        .map(|r| r.provider().len())
        .max()
        .unwrap_or(8)
        .max(8);
    outln!(
        "{:id_width$}  {:provider_width$}  {:8}  DESCRIPTION",
        "ID",
        "PROVIDER",
        "SEVERITY"
    )?;
    for r in rules.rules() {
        outln!(
            "{:id_width$}  {:provider_width$}  {:8}  {}",
            r.id(),
            r.provider(),
            r.severity().as_str(),
            r.name()
        )?;
    }
    outln!("{} rules", rules.len())?;
    Ok(Exit::Clean)
}

fn check(files: &[PathBuf]) -> miette::Result<Exit> {
    let mut custom = RuleSet::new();
    for file in files {
        custom.extend(read_rule_file(file)?.rules().iter().cloned())?;
    }
    let count = custom.len();
    let ids: Vec<String> = custom.rules().iter().map(|r| r.id().to_owned()).collect();
    // Examples are checked with the built-in rules loaded too, so that an id clash is caught.
    let mut all = RuleSet::builtin()?;
    all.extend(custom.rules().iter().cloned())?;
    let failures: Vec<_> = check_examples(&all)
        .into_diagnostic()?
        .into_iter()
        .filter(|f| ids.contains(&f.rule_id))
        .collect();
    let without_examples: Vec<&str> = custom
        .rules()
        .iter()
        .filter(|r| r.examples().is_empty())
        .map(|r| r.id())
        .collect();
    for failure in &failures {
        errln!("error: {failure}");
    }
    for id in &without_examples {
        errln!("warning: rule `{id}` has no examples: nothing shows that it finds anything");
    }
    if failures.is_empty() {
        outln!("{count} rule{} OK", if count == 1 { "" } else { "s" })?;
        Ok(Exit::Clean)
    } else {
        errln!(
            "{} example check{} failed",
            failures.len(),
            if failures.len() == 1 { "" } else { "s" }
        );
        Ok(Exit::Findings)
    }
}
