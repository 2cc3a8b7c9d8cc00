//! Flat-key analysis: findings about how keys are shared, built from the fingerprints of the
//! secrets a scan found. It never looks at secrets, only at where each fingerprint occurs, so it
//! works the same for working trees, history sweeps and several repositories.
//!
//! - `flat-key/shared-across-environments`: one secret in paths of different environments,
//!   inferred from path words (`.env.production`, `config/prod/`, `values-staging.yaml`,
//!   `deploy/dev/`, Terraform `envs/prod`) or from configured globs.
//! - `flat-key/shared-across-services`: one secret under different service roots
//!   (`services/X`, `apps/X`, `packages/X`, or configured globs) or, for files on disk, under
//!   different package manifests.
//! - `flat-key/shared-across-repos`: one secret in several repositories of one sweep.
//! - `flat-key/client-exposed`: a secret inside built bundles or public/static assets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use keyscope_rules::{RuleKind, RuleSet};
use regex::Regex;

use crate::{Correlation, Finding, Location};

const ENVIRONMENTS: &str = "flat-key/shared-across-environments";
const SERVICES: &str = "flat-key/shared-across-services";
const REPOS: &str = "flat-key/shared-across-repos";
const CLIENT: &str = "flat-key/client-exposed";

/// Path words that name an environment, and the environment they name.
const ENVIRONMENT_WORDS: &[(&str, &str)] = &[
    ("production", "production"),
    ("prod", "production"),
    ("prd", "production"),
    ("live", "production"),
    ("staging", "staging"),
    ("stage", "staging"),
    ("stg", "staging"),
    ("preprod", "staging"),
    ("uat", "staging"),
    ("development", "development"),
    ("dev", "development"),
    ("develop", "development"),
    ("test", "test"),
    ("tests", "test"),
    ("testing", "test"),
    ("qa", "test"),
    ("local", "local"),
];

/// Directories whose children are separate services.
const SERVICE_PARENTS: &[&str] = &["services", "apps", "packages", "svc", "microservices"];
/// Files that make their directory a separate package.
const MANIFESTS: &[&str] = &[
    "package.json",
    "pyproject.toml",
    "setup.py",
    "go.mod",
    "Cargo.toml",
    "pom.xml",
    "build.gradle",
    "Gemfile",
    "composer.json",
];
/// Path components that browsers download.
const CLIENT_DIRS: &[&str] = &["public", "static", "dist", "build", ".next", "out", "www"];

/// An error in a configured glob.
#[derive(Debug, thiserror::Error)]
#[error("invalid path pattern `{glob}`: {message}")]
pub struct GlobError {
    glob: String,
    message: String,
}

/// What the analysis knows beyond the findings.
#[derive(Debug, Clone, Default)]
pub struct FlatKeyOptions {
    environments: Vec<(String, Regex)>,
    services: Vec<Regex>,
    check_manifests: bool,
    /// The directories a scan was given, `/`-separated: a path's place (`dist/`, `prod/`) is
    /// read below them, never from where the user keeps the checkout (`/home/ci/build/app`).
    roots: Vec<String>,
}

impl FlatKeyOptions {
    /// Options from configured globs: extra environment paths (`production = ["live/**"]`)
    /// and service roots (`services/*`: each match is one service).
    pub fn new(
        environments: &BTreeMap<String, Vec<String>>,
        services: &[String],
    ) -> Result<FlatKeyOptions, GlobError> {
        let mut options = FlatKeyOptions::default();
        for (env, globs) in environments {
            for glob in globs {
                options
                    .environments
                    .push((env.clone(), glob_regex(glob, true)?));
            }
        }
        for glob in services {
            options.services.push(glob_regex(glob, false)?);
        }
        Ok(options)
    }

    /// Also treat directories with their own package manifest as services (for files on disk).
    pub fn check_manifests(mut self, yes: bool) -> Self {
        self.check_manifests = yes;
        self
    }

    /// The directories the scan was given: environment, service and client words are read in
    /// the part of a path below them.
    pub fn roots(mut self, roots: impl IntoIterator<Item = String>) -> Self {
        self.roots = roots
            .into_iter()
            .map(|r| normalise(&r).trim_end_matches('/').to_owned())
            .filter(|r| !r.is_empty() && r != ".")
            .collect();
        self
    }

    /// `path` below the longest root that holds it, or `path` itself.
    fn below_root<'p>(&self, path: &'p str) -> &'p str {
        self.roots
            .iter()
            .filter_map(|root| path.strip_prefix(root.as_str())?.strip_prefix('/'))
            .min_by_key(|rest| rest.len())
            .unwrap_or(path)
    }
}

/// A gitignore-like glob as a regex over `/`-separated paths. With `whole`, the glob matches
/// the path or any of its parent directories; otherwise it matches a leading part of the path
/// (a service root), and the matched part names the service.
fn glob_regex(glob: &str, whole: bool) -> Result<Regex, GlobError> {
    let trimmed = glob.trim_start_matches("./").trim_end_matches('/');
    let mut re = String::from(if trimmed.contains('/') {
        "^"
    } else {
        "^(?:.*/)?"
    });
    let mut chars = trimmed.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                    re.push_str("(?:.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push_str(if whole { "(?:/.*)?$" } else { "(?:/|$)" });
    Regex::new(&re).map_err(|e| GlobError {
        glob: glob.to_owned(),
        message: e.to_string(),
    })
}

fn normalise(path: &str) -> String {
    path.replace('\\', "/").trim_start_matches("./").to_owned()
}

fn environment_of(options: &FlatKeyOptions, path: &str) -> Option<String> {
    let normal = normalise(path);
    let path = options.below_root(&normal).to_owned();
    if let Some((env, _)) = options
        .environments
        .iter()
        .find(|(_, re)| re.is_match(&path))
    {
        return Some(env.clone());
    }
    // The deepest environment word wins: `deploy/prod/values-staging.yaml` is staging.
    path.split(['/', '.', '-', '_']).rev().find_map(|word| {
        let word = word.to_ascii_lowercase();
        ENVIRONMENT_WORDS
            .iter()
            .find(|(w, _)| *w == word)
            .map(|(_, env)| (*env).to_owned())
    })
}

fn service_of(options: &FlatKeyOptions, path: &str) -> Option<String> {
    let normal = normalise(path);
    for re in &options.services {
        if let Some(m) = re.find(&normal) {
            return Some(m.as_str().trim_end_matches('/').to_owned());
        }
    }
    let parts: Vec<&str> = normal.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if SERVICE_PARENTS.contains(part) && i + 1 < parts.len() - 1 {
            return Some(parts[..=i + 1].join("/"));
        }
    }
    if options.check_manifests {
        let mut dir = Path::new(path).parent();
        while let Some(d) = dir {
            if d.as_os_str().is_empty() {
                break;
            }
            if MANIFESTS.iter().any(|m| d.join(m).is_file()) {
                return Some(normalise(&d.to_string_lossy()));
            }
            dir = d.parent();
        }
    }
    None
}

fn client_exposed(path: &str) -> bool {
    let normal = normalise(path);
    let mut parts = normal.split('/').collect::<Vec<_>>();
    let file = parts.pop().unwrap_or_default();
    parts.iter().any(|p| CLIENT_DIRS.contains(p))
        || file.ends_with(".min.js")
        || file.ends_with(".bundle.js")
        || (file.starts_with("chunk-") && file.ends_with(".js"))
}

/// How a grouping names the environment, service or repository of a location.
type KeyOf<'a> = &'a dyn Fn(&Location) -> Option<String>;

/// Runs the analysis over a scan's findings; `repo_of` names the repository of a location
/// (`None` when unknown). Returns the new findings; only enabled rules of `rules` produce any.
pub fn analyze(
    rules: &RuleSet,
    findings: &[Finding],
    options: &FlatKeyOptions,
    repo_of: &dyn Fn(&Location) -> Option<String>,
) -> Vec<Finding> {
    let enabled = |id: &str| rules.get(id).is_some_and(|r| r.enabled());
    let mut by_secret: BTreeMap<&str, Vec<(&Finding, &Location)>> = BTreeMap::new();
    for finding in findings.iter().filter(|f| f.kind == RuleKind::Secret) {
        let entry = by_secret.entry(finding.fingerprint.as_str()).or_default();
        entry.push((finding, &finding.location));
        entry.extend(finding.related.iter().map(|l| (finding, l)));
    }
    let mut out = Vec::new();
    for places in by_secret.values() {
        let mut places = places.clone();
        places.sort_by(|a, b| a.1.cmp(b.1));
        places.dedup_by(|a, b| a.1 == b.1);
        let groupings: [(&str, KeyOf<'_>); 3] = [
            (ENVIRONMENTS, &|l| {
                environment_of(options, &l.origin.to_string())
            }),
            (SERVICES, &|l| service_of(options, &l.origin.to_string())),
            (REPOS, repo_of),
        ];
        for (id, key_of) in groupings {
            if !enabled(id) {
                continue;
            }
            let keyed: Vec<(String, &Location)> = places
                .iter()
                .filter_map(|(_, l)| key_of(l).map(|k| (k, *l)))
                .collect();
            let distinct: BTreeSet<&str> = keyed.iter().map(|(k, _)| k.as_str()).collect();
            if distinct.len() < 2 {
                continue;
            }
            let (first, rest) = (keyed[0].1, &keyed[1..]);
            let names: Vec<&str> = distinct.into_iter().collect();
            out.push(derive(
                rules,
                id,
                places[0].0,
                first,
                rest.iter().map(|(_, l)| (*l).clone()).collect(),
                &names,
            ));
        }
        if enabled(CLIENT) {
            for (finding, location) in places.iter().filter(|(_, l)| {
                client_exposed(options.below_root(&normalise(&l.origin.to_string())))
            }) {
                out.push(derive(rules, CLIENT, finding, location, Vec::new(), &[]));
            }
        }
    }
    out
}

fn derive(
    rules: &RuleSet,
    id: &str,
    finding: &Finding,
    location: &Location,
    related: Vec<Location>,
    names: &[&str],
) -> Finding {
    let rule = rules.get(id);
    let name = rule.map_or(id, |r| r.name());
    let mut derived = finding.clone();
    derived.kind = RuleKind::Correlation;
    derived.rule_id = id.to_owned();
    derived.rule_name = name.to_owned();
    derived.severity = rule.map_or(finding.severity, |r| r.severity());
    if derived.location != *location {
        derived.snippet = crate::Snippet {
            text: format!(
                "{} (also at {}:{})",
                finding.redacted, finding.location.origin, finding.location.line
            ),
            highlight: 0..finding.redacted.len(),
        };
    }
    derived.location = location.clone();
    derived.related = related;
    derived.correlation = Some(if names.is_empty() {
        Correlation::ServedToBrowsers
    } else {
        Correlation::SharedBy(names.iter().map(|&n| n.to_owned()).collect())
    });
    // Whether HEAD still holds the key is a fact of the secret's own finding.
    derived.at_head = None;
    derived
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> FlatKeyOptions {
        FlatKeyOptions::default()
    }

    #[test]
    fn environments_come_from_path_words() {
        let o = options();
        for (path, env) in [
            (".env.production", Some("production")),
            ("config/prod/app.yaml", Some("production")),
            ("helm/values-staging.yaml", Some("staging")),
            ("deploy/dev/secrets.env", Some("development")),
            (".env.local", Some("local")),
            ("infra/envs/prod/main.tf", Some("production")),
            ("src/app.py", None),
            ("src/product.py", None),
        ] {
            assert_eq!(environment_of(&o, path).as_deref(), env, "{path}");
        }
    }

    #[test]
    fn a_path_is_read_below_the_scanned_directory() {
        let o = FlatKeyOptions::default().roots(["/home/ci/build/app".to_owned()]);
        assert!(!client_exposed(
            o.below_root("/home/ci/build/app/server/settings.py")
        ));
        assert!(client_exposed(
            o.below_root("/home/ci/build/app/dist/main.js")
        ));
        let prod = FlatKeyOptions::default().roots(["/srv/production/checkout".to_owned()]);
        assert_eq!(
            environment_of(&prod, "/srv/production/checkout/src/settings.py"),
            None,
            "`production` above the scanned directory names where it is kept, not its environment"
        );
        assert_eq!(
            environment_of(&prod, "/srv/production/checkout/config/staging.env").as_deref(),
            Some("staging")
        );
    }

    #[test]
    fn configured_globs_win() {
        let envs = BTreeMap::from([("production".to_owned(), vec!["k8s/blue/**".to_owned()])]);
        let o = FlatKeyOptions::new(&envs, &["svc-*".to_owned()]).unwrap();
        assert_eq!(
            environment_of(&o, "k8s/blue/secret.yaml").as_deref(),
            Some("production")
        );
        assert_eq!(
            service_of(&o, "svc-billing/app.py").as_deref(),
            Some("svc-billing")
        );
    }

    #[test]
    fn services_come_from_service_roots() {
        let o = options();
        assert_eq!(
            service_of(&o, "services/billing/app.py").as_deref(),
            Some("services/billing")
        );
        assert_eq!(service_of(&o, "apps/web/.env").as_deref(), Some("apps/web"));
        assert_eq!(service_of(&o, "services/README.md"), None);
        assert_eq!(service_of(&o, "src/main.rs"), None);
    }

    #[test]
    fn client_paths_are_recognised() {
        assert!(client_exposed("web/public/config.js"));
        assert!(client_exposed("dist/assets/index.min.js"));
        assert!(client_exposed(".next/static/chunks/chunk-abc.js"));
        assert!(!client_exposed("server/api/chat.ts"));
    }
}
