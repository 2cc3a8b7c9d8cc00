//! `.keyscope.toml`: what a team sets once for every scan of its repository.
//!
//! A config file is found by walking up from the scanned path (like `.gitignore`, `typos.toml`
//! or `rustfmt.toml`), or named with `--config`. Unknown keys are errors that point at the key;
//! every effective value remembers where it came from, for `keyscope config show`.
//!
//! ```toml
//! exclude = ["vendor/**", "fixtures/**"]   # gitignore-style globs, relative to this file
//! max_file_size = "16M"                    # bytes, or with a K, M or G suffix
//! disable_rules = ["aws-access-key-id"]
//! enable_rules = ["flat-key/direct-provider-call"]
//!
//! [flat_key]
//! gateway = "https://llm-gateway.internal"  # enables flat-key/direct-provider-call
//! services = ["services/*", "apps/*"]       # service roots, globs
//! [flat_key.environments]                   # extra environment paths, globs
//! production = ["deploy/live/**"]
//!
//! [[rules]]                                 # custom rules, the same schema as rules/*.toml
//! id = "acme-gateway-token"
//! # ...
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use keyscope_rules::{RuleError, RuleSet};
use miette::{Diagnostic, NamedSource, SourceSpan};
use serde::Deserialize;
use toml::Spanned;

/// The name of the config file looked for in the scanned directory and its parents.
pub const CONFIG_FILE_NAME: &str = ".keyscope.toml";

/// An error reading or parsing a config file.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file `{path}`: {message}")]
    #[diagnostic(code(keyscope::config::read))]
    Read {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Syntax(Box<SyntaxError>),
    /// A custom rule in the file is invalid.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Rule(#[from] RuleError),
}

/// A config file that does not parse, with the span of the problem.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("invalid config file `{path}`: {message}")]
#[diagnostic(code(keyscope::config::syntax))]
pub struct SyntaxError {
    /// The path.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The file text.
    #[source_code]
    src: NamedSource<String>,
    /// Where.
    #[label("here")]
    pub span: Option<SourceSpan>,
}

/// Where an effective setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// keyscope's default.
    Default,
    /// A config file.
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A setting's value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// Its origin.
    pub origin: Origin,
}

impl<T> Setting<T> {
    fn default_value(value: T) -> Setting<T> {
        Setting {
            value,
            origin: Origin::Default,
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, if any.
    pub file: Option<PathBuf>,
    /// Paths to skip, as gitignore-style globs.
    pub exclude: Setting<Vec<String>>,
    /// The size limit, in bytes.
    pub max_file_size: Setting<u64>,
    /// Rule ids turned off.
    pub disable_rules: Setting<Vec<String>>,
    /// Rule ids turned on that are off by default.
    pub enable_rules: Setting<Vec<String>>,
    /// The team's LLM gateway URL.
    pub gateway: Setting<Option<String>>,
    /// Service root globs for `flat-key/shared-across-services`.
    pub services: Setting<Vec<String>>,
    /// Extra environment path globs for `flat-key/shared-across-environments`.
    pub environments: Setting<BTreeMap<String, Vec<String>>>,
    /// Custom rules.
    pub rules: RuleSet,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            file: None,
            exclude: Setting::default_value(Vec::new()),
            max_file_size: Setting::default_value(keyscope_sources::DEFAULT_MAX_FILE_SIZE),
            disable_rules: Setting::default_value(Vec::new()),
            enable_rules: Setting::default_value(Vec::new()),
            gateway: Setting::default_value(None),
            services: Setting::default_value(Vec::new()),
            environments: Setting::default_value(BTreeMap::new()),
            rules: RuleSet::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    exclude: Option<Vec<String>>,
    max_file_size: Option<Spanned<RawSize>>,
    disable_rules: Option<Vec<String>>,
    enable_rules: Option<Vec<String>>,
    flat_key: Option<RawFlatKey>,
    /// Parsed separately, with the rule schema.
    #[expect(
        dead_code,
        reason = "custom rules are parsed by keyscope-rules from the same text"
    )]
    rules: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlatKey {
    gateway: Option<String>,
    services: Option<Vec<String>>,
    environments: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

/// Parses `123`, `64K`, `64M`, `1G` (binary multiples).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 10),
        Some((i, 'm' | 'M')) => (&text[..i], 20),
        Some((i, 'g' | 'G')) => (&text[..i], 30),
        _ => (text, 0),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (examples: 1048576, 512K, 64M, 1G)"))?;
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

impl Config {
    /// Finds the config file for a scan of `start`: `.keyscope.toml` in `start` (or its
    /// directory, for a file) or the nearest parent that has one.
    pub fn discover(start: &Path) -> Option<PathBuf> {
        let start = std::path::absolute(start).ok()?;
        let mut dir = if start.is_dir() {
            Some(start.as_path())
        } else {
            start.parent()
        };
        while let Some(d) = dir {
            let candidate = d.join(CONFIG_FILE_NAME);
            if candidate.is_file() {
                return Some(candidate);
            }
            dir = d.parent();
        }
        None
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Config::parse(path, &text)
    }

    /// Parses config text; `path` names it in errors and provenance.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let syntax = |message: String, span: Option<std::ops::Range<usize>>| {
            ConfigError::Syntax(Box::new(SyntaxError {
                path: name.clone(),
                message,
                src: NamedSource::new(name.clone(), text.to_owned()),
                span: span.map(SourceSpan::from),
            }))
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| syntax(e.message().to_owned(), e.span()))?;
        let origin = Origin::File(path.to_path_buf());
        let mut config = Config {
            file: Some(path.to_path_buf()),
            rules: RuleSet::from_embedded_toml(&name, text)?,
            ..Config::default()
        };
        let set = |value| Setting {
            value,
            origin: origin.clone(),
        };
        if let Some(v) = raw.exclude {
            config.exclude = set(v);
        }
        if let Some(size) = raw.max_file_size {
            let span = size.span();
            let value = match size.into_inner() {
                RawSize::Bytes(n) => n,
                RawSize::Text(t) => parse_size(&t).map_err(|m| syntax(m, Some(span)))?,
            };
            config.max_file_size = Setting {
                value,
                origin: origin.clone(),
            };
        }
        if let Some(v) = raw.disable_rules {
            config.disable_rules = set(v);
        }
        if let Some(v) = raw.enable_rules {
            config.enable_rules = set(v);
        }
        if let Some(flat) = raw.flat_key {
            if let Some(g) = flat.gateway {
                config.gateway = Setting {
                    value: Some(g),
                    origin: origin.clone(),
                };
            }
            if let Some(s) = flat.services {
                config.services = set(s);
            }
            if let Some(e) = flat.environments {
                config.environments = Setting {
                    value: e,
                    origin: origin.clone(),
                };
            }
        }
        Ok(config)
    }

    /// The effective settings as `key = value  # origin` lines, for `keyscope config show`.
    pub fn show(&self) -> String {
        let list = |v: &[String]| format!("{v:?}");
        let mut lines = vec![
            (
                "exclude".to_owned(),
                list(&self.exclude.value),
                &self.exclude.origin,
            ),
            (
                "max_file_size".to_owned(),
                self.max_file_size.value.to_string(),
                &self.max_file_size.origin,
            ),
            (
                "disable_rules".to_owned(),
                list(&self.disable_rules.value),
                &self.disable_rules.origin,
            ),
            (
                "enable_rules".to_owned(),
                list(&self.enable_rules.value),
                &self.enable_rules.origin,
            ),
            (
                "flat_key.gateway".to_owned(),
                self.gateway
                    .value
                    .as_ref()
                    .map_or("(none)".to_owned(), |g| format!("{g:?}")),
                &self.gateway.origin,
            ),
            (
                "flat_key.services".to_owned(),
                list(&self.services.value),
                &self.services.origin,
            ),
        ];
        for (env, globs) in &self.environments.value {
            lines.push((
                format!("flat_key.environments.{env}"),
                list(globs),
                &self.environments.origin,
            ));
        }
        let custom: Vec<String> = self
            .rules
            .rules()
            .iter()
            .map(|r| r.id().to_owned())
            .collect();
        let rules_origin = match &self.file {
            Some(f) if !custom.is_empty() => Origin::File(f.clone()),
            _ => Origin::Default,
        };
        lines.push(("rules (custom)".to_owned(), list(&custom), &rules_origin));
        let width = lines
            .iter()
            .map(|(k, v, _)| k.len() + v.len() + 3)
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        match &self.file {
            Some(f) => out.push_str(&format!("# config file: {}\n", f.display())),
            None => out.push_str("# no config file: defaults only\n"),
        }
        for (key, value, origin) in lines {
            let setting = format!("{key} = {value}");
            out.push_str(&format!("{setting:width$}  # {origin}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_setting_with_provenance() {
        let text = r#"
exclude = ["vendor/**"]
max_file_size = "2M"
disable_rules = ["aws-access-key-id"]

[flat_key]
gateway = "https://gw.internal"
services = ["svc/*"]
environments = { production = ["live/**"] }

[[rules]]
id = "acme-token"
provider = "acme"
name = "ACME token"
description = "d"
severity = "high"
pattern = 'acme_[a-z0-9]{20}'
keywords = ["acme_"]
"#;
        let config = Config::parse(Path::new("/r/.keyscope.toml"), text).unwrap();
        assert_eq!(config.max_file_size.value, 2 << 20);
        assert_eq!(
            config.exclude.origin,
            Origin::File("/r/.keyscope.toml".into())
        );
        assert_eq!(config.enable_rules.origin, Origin::Default);
        assert_eq!(config.gateway.value.as_deref(), Some("https://gw.internal"));
        assert_eq!(config.rules.len(), 1);
        let shown = config.show();
        assert!(shown.contains("max_file_size = 2097152"), "{shown}");
        assert!(shown.contains("# /r/.keyscope.toml"), "{shown}");
        assert!(shown.contains("# default"), "{shown}");
    }

    #[test]
    fn unknown_keys_are_errors_pointing_at_them() {
        let text = "exclude = []\n[flat_key]\ngatewy = \"x\"\n";
        let err = Config::parse(Path::new("c.toml"), text).unwrap_err();
        let ConfigError::Syntax(e) = err else {
            panic!("expected a syntax error");
        };
        assert!(e.message.contains("gatewy"), "{}", e.message);
        let span = e.span.unwrap();
        assert_eq!(&text[span.offset()..span.offset() + span.len()], "gatewy");
    }

    #[test]
    fn a_bad_size_points_at_the_value() {
        let text = "max_file_size = \"lots\"\n";
        let err = Config::parse(Path::new("c.toml"), text).unwrap_err();
        let ConfigError::Syntax(e) = err else {
            panic!("expected a syntax error");
        };
        assert!(text[e.span.unwrap().offset()..].starts_with("\"lots\""));
    }

    #[test]
    fn discovery_walks_up_from_the_scanned_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE_NAME), "").unwrap();
        std::fs::write(dir.path().join("a/b/f.txt"), "").unwrap();
        let found = Config::discover(&dir.path().join("a/b/f.txt")).unwrap();
        assert_eq!(
            found,
            std::path::absolute(dir.path().join(CONFIG_FILE_NAME)).unwrap()
        );
    }
}
