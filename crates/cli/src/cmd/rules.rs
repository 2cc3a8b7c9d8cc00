//! `keyscope rules list|check`.

use std::path::PathBuf;

use keyscope_report::{human::plural, rule_list};
use keyscope_scan::pipeline::{check_rule_files, load_rules};
use miette::IntoDiagnostic as _;

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
        Command::List { rule_files, json } => {
            let rules = load_rules(&rule_files)?;
            match json {
                true => crate::out::stdout(&rule_list::json(&rules).into_diagnostic()?)?,
                false => crate::out::stdout(&rule_list::table(&rules))?,
            }
            Ok(Exit::Clean)
        }
        Command::Check { files } => check(&files),
    }
}

fn check(files: &[PathBuf]) -> miette::Result<Exit> {
    let check = check_rule_files(files)?;
    for failure in &check.failures {
        errln!("error: {failure}");
    }
    for id in &check.without_examples {
        errln!("warning: rule `{id}` has no examples: nothing shows that it finds anything");
    }
    if check.failures.is_empty() {
        outln!("{} rule{} OK", check.rules, plural(check.rules))?;
        Ok(Exit::Clean)
    } else {
        let failed = check.failures.len();
        errln!("{failed} example check{} failed", plural(failed));
        Ok(Exit::ChecksFailed)
    }
}
