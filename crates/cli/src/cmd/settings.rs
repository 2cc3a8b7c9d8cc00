//! What a scan is configured with: flags, the nearest `.keyscope.toml`, custom rules, the
//! gateway, the baseline; and what happens to findings after the scan (flat-key analysis,
//! baseline filtering).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use keyscope_policy::Scopes;
use keyscope_rules::{RuleKind, RuleSet};
use keyscope_scan::baseline::{Baseline, BaselineEntry};
use keyscope_scan::config::Config;
use keyscope_scan::flatkey::{self, FlatKeyOptions};
use keyscope_scan::{Finding, Location, sort_findings};
use miette::{Context as _, IntoDiagnostic as _};

use crate::cmd::rules::load_rules;

/// The policy store used when `--store` is not given, if it exists.
const DEFAULT_STORE: &str = "policies";

/// The rule that reports direct provider calls when a gateway is configured.
const DIRECT_CALL_RULE: &str = "flat-key/direct-provider-call";

/// Everything a scan needs besides its flags.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The effective configuration.
    pub config: Config,
    /// The rules to apply.
    pub rules: RuleSet,
    /// Accepted findings, when `--baseline` was given.
    pub baseline: Option<Baseline>,
    /// Flat-key analysis options.
    pub flat_key: FlatKeyOptions,
    /// The policy store's key registry, for naming the scope of a leaked key.
    pub scopes: Option<Scopes>,
}

/// Reads the config (unless `isolated`), then builds the rule set from the built-in rules,
/// `--rules` files and the config's custom rules, switches, and gateway.
pub fn load(
    config_file: Option<&Path>,
    isolated: bool,
    first_path: &Path,
    rule_files: &[PathBuf],
    baseline: Option<&Path>,
    store: Option<&Path>,
) -> miette::Result<Settings> {
    let config = load_config(config_file, isolated, first_path)?;
    let mut rules = load_rules(rule_files)?;
    rules.extend(config.rules.rules().iter().cloned())?;
    for (ids, enabled) in [
        (&config.disable_rules.value, false),
        (&config.enable_rules.value, true),
    ] {
        for id in ids {
            let rule = rules
                .get_mut(id)
                .ok_or_else(|| miette::miette!("unknown rule id `{id}` in the config"))?;
            rule.set_enabled(enabled);
        }
    }
    if let Some(gateway) = &config.gateway.value
        && let Some(rule) = rules.get_mut(DIRECT_CALL_RULE)
    {
        rule.set_enabled(true);
        let host = gateway_host(gateway);
        let pattern = regex::bytes::Regex::new(&regex::escape(host))
            .into_diagnostic()
            .wrap_err_with(|| format!("invalid gateway `{gateway}`"))?;
        rule.add_unless(pattern);
    }
    let baseline = baseline
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read baseline `{}`", path.display()))?;
            Baseline::parse(&path.display().to_string(), &text).into_diagnostic()
        })
        .transpose()?;
    let flat_key = FlatKeyOptions::new(&config.environments.value, &config.services.value)
        .into_diagnostic()?;
    let scopes = match store {
        Some(dir) => Some(
            Scopes::load_from_store(dir)
                .wrap_err_with(|| format!("cannot load the key registry of `{}`", dir.display()))?,
        ),
        // Without --store, the default store is used when there is one.
        None if Path::new(DEFAULT_STORE).join("scopes.toml").is_file() => {
            Some(Scopes::load_from_store(Path::new(DEFAULT_STORE))?)
        }
        None => None,
    };
    Ok(Settings {
        config,
        rules,
        baseline,
        flat_key,
        scopes,
    })
}

/// The config for a scan: none when isolated, the named file, or the nearest one.
pub fn load_config(
    config_file: Option<&Path>,
    isolated: bool,
    first_path: &Path,
) -> miette::Result<Config> {
    if isolated {
        return Ok(Config::default());
    }
    let path = match config_file {
        Some(path) => Some(path.to_path_buf()),
        None => Config::discover(first_path),
    };
    match path {
        Some(path) => Ok(Config::load(&path)?),
        None => Ok(Config::default()),
    }
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

/// The repository a working-tree path belongs to: the nearest directory holding `.git`.
fn repository_of(path: &str, cache: &RefCell<HashMap<PathBuf, Option<String>>>) -> Option<String> {
    let start = std::path::absolute(path).ok()?;
    let dir = start.parent()?.to_path_buf();
    if let Some(known) = cache.borrow().get(&dir) {
        return known.clone();
    }
    let found = dir
        .ancestors()
        .find(|d| d.join(".git").exists())
        .map(|d| d.display().to_string());
    cache.borrow_mut().insert(dir, found.clone());
    found
}

/// Adds flat-key findings and applies the baseline. `repos` are the repositories of a
/// multi-repository git sweep (whose paths findings carry as a prefix); for working trees the
/// repository of a file is found on disk.
pub fn postprocess(
    settings: &Settings,
    findings: &[Finding],
    git_repos: Option<&[PathBuf]>,
) -> (Vec<Finding>, Vec<BaselineEntry>) {
    let cache = RefCell::new(HashMap::new());
    let repo_of = |l: &Location| -> Option<String> {
        match git_repos {
            Some(repos) if repos.len() > 1 => repos
                .iter()
                .map(|r| r.display().to_string())
                .filter(|r| {
                    l.path.starts_with(&format!("{r}/")) || l.path.starts_with(&format!("{r}@"))
                })
                .max_by_key(String::len),
            Some(_) => None,
            None => repository_of(&l.path, &cache),
        }
    };
    let options = settings
        .flat_key
        .clone()
        .check_manifests(git_repos.is_none());
    let mut findings = findings.to_vec();
    if let Some(scopes) = &settings.scopes {
        attribute(scopes, &mut findings);
    }
    let findings = findings.as_slice();
    let mut all = findings.to_vec();
    all.extend(flatkey::analyze(
        &settings.rules,
        findings,
        &options,
        &repo_of,
    ));
    sort_findings(&mut all);
    match &settings.baseline {
        Some(baseline) => baseline.apply(all),
        None => (all, Vec::new()),
    }
}

/// Names the scope of every leaked key the registry knows; a production scope's key is one
/// severity level worse.
fn attribute(scopes: &Scopes, findings: &mut [Finding]) {
    for finding in findings.iter_mut().filter(|f| f.kind == RuleKind::Secret) {
        let Some(info) = scopes.scope_for_key_fingerprint(finding.key_sha256()) else {
            continue;
        };
        if info.production {
            finding.severity = finding.severity.raised();
        }
        finding.help = format!(
            "This is the key `{}` of scope `{}`{}. {}",
            info.key_id,
            info.scope,
            if info.production {
                ", a production scope"
            } else {
                ""
            },
            finding.help
        );
        finding.scope = Some(info.scope);
    }
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
