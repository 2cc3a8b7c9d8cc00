//! What a scan is configured with: the rules (built-in, from files, from the config, switched
//! on or off, the gateway injected), the baseline and the exclude globs.

use std::path::{Path, PathBuf};

use keyscope_rules::{RuleError, RuleSet};
use keyscope_sources::{ExcludeError, GitError};

use crate::baseline::{Baseline, BaselineError};
use crate::config::{Config, ConfigError};
use crate::flatkey::GlobError;
use crate::{DetectorError, ExampleFailure, check_examples};

/// The rule that reports direct provider calls when a gateway is configured.
const DIRECT_CALL_RULE: &str = "flat-key/direct-provider-call";

/// An error preparing or running a scan.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ScanError {
    /// The config file cannot be read or is invalid.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] ConfigError),
    /// A rule file is invalid, or its rules clash with others.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Rules(#[from] RuleError),
    /// A rule file cannot be read.
    #[error("cannot read rule file `{}`", path.display())]
    RuleFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config switches a rule that does not exist.
    #[error("unknown rule id `{0}` in the config")]
    UnknownRule(String),
    /// The configured gateway does not make a pattern.
    #[error("invalid gateway `{gateway}`")]
    Gateway {
        /// The gateway as configured.
        gateway: String,
        /// Why.
        #[source]
        source: regex::Error,
    },
    /// The baseline file cannot be read.
    #[error("cannot read baseline `{}`", path.display())]
    BaselineRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The baseline file is not a keyscope baseline.
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    /// A configured environment or service glob is invalid.
    #[error(transparent)]
    Glob(#[from] GlobError),
    /// The rules do not compile into a prefilter.
    #[error(transparent)]
    Detector(#[from] DetectorError),
    /// An exclude glob is invalid.
    #[error(transparent)]
    Exclude(#[from] ExcludeError),
    /// A repository cannot be opened or read.
    #[error(transparent)]
    Git(#[from] GitError),
}

/// The built-in rules plus those of the given files.
pub fn load_rules(files: &[PathBuf]) -> Result<RuleSet, ScanError> {
    let mut rules = RuleSet::builtin()?;
    for path in files {
        rules.extend(read_rule_file(path)?.rules().iter().cloned())?;
    }
    Ok(rules)
}

fn read_rule_file(path: &Path) -> Result<RuleSet, ScanError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScanError::RuleFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(RuleSet::from_toml(&path.display().to_string(), &text)?)
}

/// What checking rule files found.
#[derive(Debug, Clone, Default)]
pub struct RuleFileCheck {
    /// How many rules the files hold.
    pub rules: usize,
    /// The examples of those rules that do not behave as their files say.
    pub failures: Vec<ExampleFailure>,
    /// The ids of those rules that have no examples: nothing shows that they find anything.
    pub without_examples: Vec<String>,
}

/// Reads rule files and checks every example and negative example of their rules. The
/// built-in rules are loaded too, so that an id clash is caught.
pub fn check_rule_files(files: &[PathBuf]) -> Result<RuleFileCheck, ScanError> {
    let mut custom = RuleSet::new();
    for path in files {
        custom.extend(read_rule_file(path)?.rules().iter().cloned())?;
    }
    let ids: Vec<&str> = custom.rules().iter().map(|r| r.id()).collect();
    let mut all = RuleSet::builtin()?;
    all.extend(custom.rules().iter().cloned())?;
    let failures = check_examples(&all)?
        .into_iter()
        .filter(|f| ids.contains(&f.rule_id.as_str()))
        .collect();
    Ok(RuleFileCheck {
        rules: custom.len(),
        failures,
        without_examples: custom
            .rules()
            .iter()
            .filter(|r| r.examples().is_empty())
            .map(|r| r.id().to_owned())
            .collect(),
    })
}

/// The rules of a scan: built-in, `files`, the config's own, switched on and off as the config
/// says, and the gateway (when one is set) excused from the direct-call rule.
pub(super) fn rules(files: &[PathBuf], config: &Config) -> Result<RuleSet, ScanError> {
    let mut rules = load_rules(files)?;
    rules.extend(config.rules.rules().iter().cloned())?;
    for (ids, enabled) in [
        (&config.disable_rules.value, false),
        (&config.enable_rules.value, true),
    ] {
        for id in ids {
            let rule = rules
                .get_mut(id)
                .ok_or_else(|| ScanError::UnknownRule(id.clone()))?;
            rule.set_enabled(enabled);
        }
    }
    if let Some(gateway) = &config.gateway.value
        && let Some(rule) = rules.get_mut(DIRECT_CALL_RULE)
    {
        rule.set_enabled(true);
        let pattern =
            regex::bytes::Regex::new(&regex::escape(gateway_host(gateway))).map_err(|source| {
                ScanError::Gateway {
                    gateway: gateway.clone(),
                    source,
                }
            })?;
        rule.add_unless(pattern);
    }
    Ok(rules)
}

/// Reads a baseline file.
pub(super) fn baseline(path: &Path) -> Result<Baseline, ScanError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScanError::BaselineRead {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Baseline::parse(&path.display().to_string(), &text)?)
}

/// The exclude globs with the directory each is relative to: the config file's globs to the config
/// file's directory, `extra` to each scanned directory (`None`; for git targets, the working
/// tree).
pub(super) fn exclude_globs(config: &Config, extra: &[String]) -> Vec<(Option<PathBuf>, String)> {
    let base = config.file.as_ref().map(|file| {
        file.parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    });
    let from_config = base.into_iter().flat_map(|base| {
        config
            .exclude
            .value
            .iter()
            .map(move |glob| (Some(base.clone()), glob.clone()))
    });
    from_config
        .chain(extra.iter().map(|glob| (None, glob.clone())))
        .collect()
}

/// `https://gw.internal:8443/v1` -> `gw.internal`.
fn gateway_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    host.rsplit_once('@')
        .map_or(host, |(_, h)| h)
        .split(':')
        .next()
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_hosts_are_extracted() {
        assert_eq!(
            gateway_host("https://llm-gw.internal/v1"),
            "llm-gw.internal"
        );
        assert_eq!(gateway_host("http://user@gw:8443"), "gw");
        assert_eq!(gateway_host("gw.corp"), "gw.corp");
    }
}
