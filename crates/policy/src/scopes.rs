//! The scope tree and key registry (`scopes.toml`).
//!
//! Settings inherit down the tree: a scope that does not set its environment, audience, PHI flag,
//! model allowlist, networks or maximum key age takes its nearest ancestor's. Budget caps and
//! rate limits do not inherit: each scope's own caps apply to it and everything under it, which
//! the ledger enforces by charging a request to the scope and all its ancestors. Keys are
//! registered by SHA-256 fingerprint or id, never in clear text.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::catalog::toml_error;
use crate::error::{SourceError, SourceFile, StoreError, read_store_file};
use crate::net::Cidr;
use crate::time::{Timestamp, Zone};

/// The scope tree and key registry.
pub const SCOPES_FILE: &str = "scopes.toml";

/// The deployment environment of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Environment {
    /// Live traffic.
    Production,
    /// Pre-production: production's models plus evaluation candidates.
    Staging,
    /// Development: any model, under a budget cap.
    Development,
}

impl Environment {
    /// The name policies compare against: `production`, `staging`, `development`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Staging => "staging",
            Self::Development => "development",
        }
    }
}

/// Who a scope's output reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Audience {
    /// Output reaches patients or customers.
    PatientFacing,
    /// Output stays inside the organization.
    Internal,
}

impl Audience {
    /// The name policies compare against: `patient-facing`, `internal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PatientFacing => "patient-facing",
            Self::Internal => "internal",
        }
    }
}

/// Budget caps of one scope, covering the scope and everything under it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Micro-dollars per calendar day in the store's time zone.
    pub day_micros: Option<u64>,
    /// Micro-dollars per calendar month in the store's time zone.
    pub month_micros: Option<u64>,
    /// Tokens per calendar day in the store's time zone.
    pub day_tokens: Option<u64>,
    /// Tokens per calendar month in the store's time zone.
    pub month_tokens: Option<u64>,
}

impl Budget {
    /// Whether any money cap is set.
    pub fn has_money_cap(&self) -> bool {
        self.day_micros.is_some() || self.month_micros.is_some()
    }

    /// Whether any cap is set.
    pub fn is_limited(&self) -> bool {
        self.has_money_cap() || self.day_tokens.is_some() || self.month_tokens.is_some()
    }
}

/// Rate limits of one scope, per calendar minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Estimated tokens (input plus maximum output) per minute.
    pub tokens_per_minute: Option<u64>,
}

impl RateLimit {
    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }
}

/// An entry of a model allowlist, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelPattern {
    pub(crate) text: String,
    pub(crate) span: Range<usize>,
}

/// A scope with its inherited settings resolved.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Scope id, `prod/care-notes-summarization`.
    pub id: String,
    /// Parent scope id.
    pub parent: Option<String>,
    /// What the scope stands for: `org`, `team`, `application`, `environment`, ...
    pub kind: String,
    /// Deployment environment (inherited).
    pub environment: Option<Environment>,
    /// Audience (inherited; `internal` when nothing sets it).
    pub audience: Audience,
    /// Owner, for the audit trail.
    pub owner: Option<String>,
    /// Whether the scope handles protected health information (inherited).
    pub phi: bool,
    /// Source networks requests must come from (inherited); empty means any.
    pub networks: Vec<Cidr>,
    /// Maximum key age in seconds (inherited).
    pub max_key_age_seconds: Option<i64>,
    /// This scope's own budget caps.
    pub budget: Budget,
    /// This scope's own rate limits.
    pub rate: RateLimit,
    pub(crate) models: Vec<ModelPattern>,
}

impl Scope {
    /// Whether `ip` may call from where it is. A scope without networks accepts any source; a
    /// scope with networks rejects a request that does not say where it comes from.
    pub fn accepts_source(&self, ip: Option<IpAddr>) -> bool {
        match ip {
            _ if self.networks.is_empty() => true,
            Some(ip) => self.networks.iter().any(|n| n.contains(ip)),
            None => false,
        }
    }
}

/// A registered key.
#[derive(Debug, Clone)]
pub struct Key {
    /// Key id, unique in the store.
    pub id: String,
    /// `sha256:<64 hex>` of the raw key string, if registered by fingerprint.
    pub fingerprint: Option<String>,
    /// The scope the key belongs to.
    pub scope: String,
    /// When the key was created.
    pub created: Timestamp,
    /// When the key stops being valid (exclusive).
    pub expires: Option<Timestamp>,
    /// Whether the key was revoked.
    pub revoked: bool,
}

/// What the scanner needs to attribute a leaked key: the scope it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeInfo {
    /// The scope id, `prod/care-notes-summarization`.
    pub scope: String,
    /// The registered key id.
    pub key_id: String,
    /// The scope's environment, if set.
    pub environment: Option<Environment>,
    /// Whether the scope is production: a leak there is more severe.
    pub production: bool,
    /// Whether the scope handles protected health information.
    pub phi: bool,
    /// The scope's owner, if set.
    pub owner: Option<String>,
}

/// The loaded `scopes.toml`: scope tree and key registry.
#[derive(Debug, Clone)]
pub struct Scopes {
    scopes: Vec<Scope>,
    by_id: HashMap<String, usize>,
    keys: Vec<Key>,
    key_by_id: HashMap<String, usize>,
    key_by_fingerprint: HashMap<String, usize>,
    model_lists: BTreeMap<String, Vec<ModelPattern>>,
    time_zone: Zone,
    pub(crate) file: SourceFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopes {
    time_zone: Option<Spanned<String>>,
    #[serde(default)]
    model_lists: BTreeMap<String, Vec<Spanned<String>>>,
    #[serde(default, rename = "scope")]
    scopes: Vec<RawScope>,
    #[serde(default, rename = "key")]
    keys: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    id: Spanned<String>,
    parent: Option<Spanned<String>>,
    kind: Option<String>,
    environment: Option<Environment>,
    audience: Option<Audience>,
    owner: Option<String>,
    phi: Option<bool>,
    models: Option<Vec<Spanned<String>>>,
    networks: Option<Vec<Spanned<String>>>,
    max_key_age_days: Option<Spanned<i64>>,
    #[serde(default)]
    budget: RawBudget,
    #[serde(default)]
    rate: RawRate,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    day_usd: Option<Spanned<toml::Value>>,
    month_usd: Option<Spanned<toml::Value>>,
    day_tokens: Option<u64>,
    month_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRate {
    requests_per_minute: Option<u64>,
    tokens_per_minute: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: Spanned<String>,
    scope: Spanned<String>,
    fingerprint: Option<Spanned<String>>,
    created: Spanned<toml::value::Datetime>,
    expires: Option<Spanned<toml::value::Datetime>>,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    #[expect(dead_code, reason = "documentation for humans, accepted and ignored")]
    description: Option<String>,
}

/// Prefixes of provider API keys (OpenAI, Anthropic, Groq, xAI, Hugging Face, Google, AWS,
/// Perplexity, Replicate, Fireworks, Cerebras, NVIDIA, LangSmith, OpenRouter, GitHub, GitLab,
/// Slack and Stripe shapes): an id that starts with one and is long enough is a pasted key.
const KEY_PREFIXES: &[&str] = &[
    "sk-",
    "sk_",
    "rk_",
    "pk_live",
    "gsk_",
    "xai-",
    "hf_",
    "api_org_",
    "AIza",
    "AQ.",
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
    "pplx-",
    "r8_",
    "fw_",
    "csk-",
    "nvapi-",
    "lsv2_",
    "ls__",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
];

/// Whether a key id is, by its shape, a raw API key rather than a name: a provider prefix
/// followed by at least 16 more characters, or a long run of random-looking characters (mixed
/// case and digits, no word separators) as unprefixed keys (Mistral, Cohere, DeepSeek) are.
pub(crate) fn looks_like_a_raw_key(id: &str) -> bool {
    if KEY_PREFIXES
        .iter()
        .any(|p| id.starts_with(p) && id.len() >= p.len() + 16)
    {
        return true;
    }
    // Names may be long (`care-notes-prod-2026-10`), but they are words between separators.
    let longest_token = id
        .split(['-', '_', '.', '/', ' ', ':'])
        .map(str::len)
        .max()
        .unwrap_or(0);
    let (mut upper, mut lower, mut digit) = (0, 0, 0);
    for c in id.chars() {
        upper += usize::from(c.is_ascii_uppercase());
        lower += usize::from(c.is_ascii_lowercase());
        digit += usize::from(c.is_ascii_digit());
    }
    let hex = id.len() >= 32 && id.chars().all(|c| c.is_ascii_hexdigit());
    hex || (longest_token >= 24 && upper >= 2 && lower >= 2 && digit >= 2)
}

/// The `sha256:<64 lowercase hex>` fingerprint of a raw key string, as `scopes.toml` registers it.
pub fn fingerprint(raw_key: &str) -> String {
    let digest = Sha256::digest(raw_key.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    out
}

/// Normalizes `sha256:<hex>` or bare hex to `sha256:<lowercase hex>`, if well-formed.
pub(crate) fn normalize_fingerprint(text: &str) -> Option<String> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
}

impl Scopes {
    /// Loads `scopes.toml` alone: the quick path for attributing scanned keys.
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let text = read_store_file(path)?;
        Ok(Self::parse(&path.display().to_string(), &text)?)
    }

    /// Loads `scopes.toml` from a store directory, without the policies or the catalog.
    pub fn load_from_store(store_dir: &Path) -> Result<Self, StoreError> {
        Self::load(&store_dir.join(SCOPES_FILE))
    }

    /// Parses the text of a `scopes.toml`; `name` is used in diagnostics.
    pub fn parse(name: &str, text: &str) -> Result<Self, SourceError> {
        Self::parse_file(SourceFile::new(name, text))
    }

    pub(crate) fn parse_file(file: SourceFile) -> Result<Self, SourceError> {
        let raw: RawScopes = toml::from_str(&file.text).map_err(|e| toml_error(&file, &e))?;
        let model_lists: BTreeMap<String, Vec<ModelPattern>> = raw
            .model_lists
            .into_iter()
            .map(|(name, list)| (name, patterns(list)))
            .collect();
        let time_zone = match &raw.time_zone {
            Some(name) => Zone::named(name.get_ref())
                .map_err(|e| file.error(e, Some(name.span()), "unknown time zone"))?,
            None => Zone::utc(),
        };
        let by_id = index_scopes(&file, &raw.scopes)?;
        let scopes = (0..raw.scopes.len())
            .map(|index| {
                let chain = chain_of(&file, &raw.scopes, &by_id, index)?;
                resolve_scope(&file, &raw.scopes, &chain)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let KeyIndex {
            keys,
            key_by_id,
            key_by_fingerprint,
        } = KeyIndex::parse(&file, raw.keys, &by_id)?;
        Ok(Self {
            scopes,
            by_id,
            keys,
            key_by_id,
            key_by_fingerprint,
            model_lists,
            time_zone,
            file,
        })
    }

    /// The time zone the budget windows follow (`time_zone` at the top of the file; UTC
    /// unless set): a daily cap covers the calendar day there.
    pub fn time_zone(&self) -> &Zone {
        &self.time_zone
    }

    /// A scope by id.
    pub fn scope(&self, id: &str) -> Option<&Scope> {
        self.by_id.get(id).map(|&i| &self.scopes[i])
    }

    /// Every scope, in file order.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Every key, in file order.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The scope and its ancestors, nearest first.
    pub fn chain(&self, id: &str) -> Vec<&Scope> {
        let mut chain = Vec::new();
        let mut current = self.scope(id);
        while let Some(scope) = current {
            chain.push(scope);
            current = scope.parent.as_deref().and_then(|p| self.scope(p));
        }
        chain
    }

    /// A key by `sha256:<hex>` fingerprint (or bare hex), or by id.
    pub fn key(&self, id_or_fingerprint: &str) -> Option<&Key> {
        if let Some(&i) = self.key_by_id.get(id_or_fingerprint) {
            return Some(&self.keys[i]);
        }
        let normalized = normalize_fingerprint(id_or_fingerprint)?;
        self.key_by_fingerprint
            .get(&normalized)
            .map(|&i| &self.keys[i])
    }

    /// The scope a leaked key belongs to, by the SHA-256 of the raw key (hex, with or without the
    /// `sha256:` prefix, any case). `None` when the key is not registered.
    pub fn scope_for_key_fingerprint(&self, sha256_hex: &str) -> Option<ScopeInfo> {
        let normalized = normalize_fingerprint(sha256_hex)?;
        let key = &self.keys[*self.key_by_fingerprint.get(&normalized)?];
        let scope = self.scope(&key.scope)?;
        Some(ScopeInfo {
            scope: scope.id.clone(),
            key_id: key.id.clone(),
            environment: scope.environment,
            production: scope.environment == Some(Environment::Production),
            phi: scope.phi,
            owner: scope.owner.clone(),
        })
    }

    pub(crate) fn model_lists(&self) -> impl Iterator<Item = (&str, &[ModelPattern])> {
        self.model_lists
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub(crate) fn model_list(&self, name: &str) -> Option<&[ModelPattern]> {
        self.model_lists.get(name).map(Vec::as_slice)
    }
}

/// Model patterns with their spans, for diagnostics.
fn patterns(list: Vec<Spanned<String>>) -> Vec<ModelPattern> {
    list.into_iter()
        .map(|s| ModelPattern {
            span: s.span(),
            text: s.into_inner(),
        })
        .collect()
}

/// Scope ids to their index in the file: ids are unique and without spaces, and every parent
/// exists.
fn index_scopes(
    file: &SourceFile,
    raw: &[RawScope],
) -> Result<HashMap<String, usize>, SourceError> {
    let mut by_id = HashMap::new();
    for (index, scope) in raw.iter().enumerate() {
        let id = scope.id.get_ref();
        if id.is_empty() || id.contains(char::is_whitespace) {
            return Err(file.error(
                format!("invalid scope id `{id}`"),
                Some(scope.id.span()),
                "no spaces",
            ));
        }
        if by_id.insert(id.clone(), index).is_some() {
            return Err(file.error(
                format!("duplicate scope `{id}`"),
                Some(scope.id.span()),
                "defined twice",
            ));
        }
    }
    for scope in raw {
        if let Some(parent) = &scope.parent
            && !by_id.contains_key(parent.get_ref())
        {
            return Err(file.error(
                format!("unknown parent scope `{}`", parent.get_ref()),
                Some(parent.span()),
                "no such scope",
            ));
        }
    }
    Ok(by_id)
}

/// The indices of scope `start` and its ancestors, nearest first; a cycle is an error.
fn chain_of(
    file: &SourceFile,
    raw: &[RawScope],
    by_id: &HashMap<String, usize>,
    start: usize,
) -> Result<Vec<usize>, SourceError> {
    let mut chain = vec![start];
    let mut current = start;
    while let Some(parent) = &raw[current].parent {
        let next = by_id[parent.get_ref()];
        if chain.contains(&next) {
            return Err(file.error(
                format!("scope `{}` is its own ancestor", raw[start].id.get_ref()),
                Some(raw[start].id.span()),
                "cycle",
            ));
        }
        chain.push(next);
        current = next;
    }
    Ok(chain)
}

/// The scope `chain[0]` with its settings inherited along `chain` (the nearest that sets one
/// wins); caps and limits are its own.
fn resolve_scope(
    file: &SourceFile,
    raw: &[RawScope],
    chain: &[usize],
) -> Result<Scope, SourceError> {
    let inherited = |f: &dyn Fn(&RawScope) -> bool| {
        chain.iter().copied().find(|&i| f(&raw[i])).map(|i| &raw[i])
    };
    let own = &raw[chain[0]];
    let networks = match inherited(&|s| s.networks.is_some()).and_then(|s| s.networks.as_ref()) {
        Some(list) => parse_networks(file, list)?,
        None => Vec::new(),
    };
    let max_key_age_seconds = inherited(&|s| s.max_key_age_days.is_some())
        .and_then(|s| s.max_key_age_days.as_ref())
        .map(|days| {
            days.get_ref()
                .checked_mul(86_400)
                .filter(|_| *days.get_ref() > 0)
                .ok_or_else(|| {
                    file.error(
                        "`max_key_age_days` must be a positive number of days",
                        Some(days.span()),
                        "out of range",
                    )
                })
        })
        .transpose()?;
    let usd = |field: &Option<Spanned<toml::Value>>| file.usd(field, "a budget", "USD");
    Ok(Scope {
        id: own.id.get_ref().clone(),
        parent: own.parent.as_ref().map(|p| p.get_ref().clone()),
        kind: own.kind.clone().unwrap_or_else(|| "application".to_owned()),
        environment: inherited(&|s| s.environment.is_some()).and_then(|s| s.environment),
        audience: inherited(&|s| s.audience.is_some())
            .and_then(|s| s.audience)
            .unwrap_or(Audience::Internal),
        owner: own.owner.clone(),
        phi: inherited(&|s| s.phi.is_some())
            .and_then(|s| s.phi)
            .unwrap_or(false),
        networks,
        max_key_age_seconds,
        budget: Budget {
            day_micros: usd(&own.budget.day_usd)?,
            month_micros: usd(&own.budget.month_usd)?,
            day_tokens: own.budget.day_tokens,
            month_tokens: own.budget.month_tokens,
        },
        rate: RateLimit {
            requests_per_minute: own.rate.requests_per_minute,
            tokens_per_minute: own.rate.tokens_per_minute,
        },
        models: inherited(&|s| s.models.is_some())
            .and_then(|s| s.models.clone())
            .map(patterns)
            .unwrap_or_default(),
    })
}

fn parse_networks(file: &SourceFile, list: &[Spanned<String>]) -> Result<Vec<Cidr>, SourceError> {
    list.iter()
        .map(|entry| {
            entry.get_ref().parse().map_err(|()| {
                file.error(
                    format!("invalid network `{}`", entry.get_ref()),
                    Some(entry.span()),
                    "expected CIDR like 10.0.0.0/8",
                )
            })
        })
        .collect()
}

/// The registered keys, by id and by fingerprint.
struct KeyIndex {
    keys: Vec<Key>,
    key_by_id: HashMap<String, usize>,
    key_by_fingerprint: HashMap<String, usize>,
}

impl KeyIndex {
    fn parse(
        file: &SourceFile,
        raw: Vec<RawKey>,
        scopes: &HashMap<String, usize>,
    ) -> Result<Self, SourceError> {
        let mut index = Self {
            keys: Vec::with_capacity(raw.len()),
            key_by_id: HashMap::new(),
            key_by_fingerprint: HashMap::new(),
        };
        for key in raw {
            let parsed = parse_key(file, key, scopes)?;
            let position = index.keys.len();
            if let Some((fingerprint, span)) = &parsed.1
                && index
                    .key_by_fingerprint
                    .insert(fingerprint.clone(), position)
                    .is_some()
            {
                return Err(file.error(
                    "the same fingerprint is registered twice",
                    Some(span.clone()),
                    "duplicate",
                ));
            }
            let (key, _, id_span) = parsed;
            if index.key_by_id.insert(key.id.clone(), position).is_some() {
                return Err(file.error(
                    format!("duplicate key id `{}`", key.id),
                    Some(id_span),
                    "defined twice",
                ));
            }
            index.keys.push(key);
        }
        Ok(index)
    }
}

/// One registered key, with its fingerprint and id spans for the duplicate checks.
type ParsedKey = (Key, Option<(String, Range<usize>)>, Range<usize>);

fn parse_key(
    file: &SourceFile,
    key: RawKey,
    scopes: &HashMap<String, usize>,
) -> Result<ParsedKey, SourceError> {
    let id = key.id.get_ref().clone();
    if id.starts_with("sha256:") || id.is_empty() {
        return Err(file.error(
            format!("invalid key id `{id}`"),
            Some(key.id.span()),
            "ids must not look like fingerprints",
        ));
    }
    if looks_like_a_raw_key(&id) {
        // The id is not quoted: it is a secret. The span points at it.
        return Err(file
            .error(
                "a key id looks like a raw API key",
                Some(key.id.span()),
                "a secret, not a name",
            )
            .with_help(
                "never paste a key into scopes.toml: give the key a name as its `id` and \
                 register `fingerprint = \"sha256:<hex>\"` of the raw key; rotate this key, \
                 it is now in a file",
            ));
    }
    if !scopes.contains_key(key.scope.get_ref()) {
        return Err(file.error(
            format!("unknown scope `{}` for key `{id}`", key.scope.get_ref()),
            Some(key.scope.span()),
            "no such scope",
        ));
    }
    let fingerprint = key
        .fingerprint
        .as_ref()
        .map(|f| {
            f.get_ref()
                .strip_prefix("sha256:")
                .and_then(|_| normalize_fingerprint(f.get_ref()))
                .map(|normalized| (normalized, f.span()))
                .ok_or_else(|| {
                    file.error(
                        format!("invalid fingerprint for key `{id}`"),
                        Some(f.span()),
                        "expected sha256:<64 hex digits>",
                    )
                    .with_help("register the SHA-256 of the raw key, never the key itself: `keyscope` prints it with `sha256:` in front")
                })
        })
        .transpose()?;
    let timestamp = |d: &Spanned<toml::value::Datetime>, what: &str| {
        Timestamp::parse(&d.get_ref().to_string()).ok_or_else(|| {
            file.error(
                format!(
                    "`{what}` of key `{id}` must be a date or an RFC 3339 date-time with offset"
                ),
                Some(d.span()),
                "not a UTC instant",
            )
        })
    };
    let created = timestamp(&key.created, "created")?;
    let expires = key
        .expires
        .as_ref()
        .map(|e| timestamp(e, "expires"))
        .transpose()?;
    let id_span = key.id.span();
    Ok((
        Key {
            fingerprint: fingerprint.as_ref().map(|(f, _)| f.clone()),
            id,
            scope: key.scope.into_inner(),
            created,
            expires,
            revoked: key.revoked,
        },
        fingerprint,
        id_span,
    ))
}

/// Glob match with `*` as the only wildcard.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPES: &str = r#"
[[scope]]
id = "acme"
kind = "org"
environment = "production"
phi = true
max_key_age_days = 90
networks = ["10.0.0.0/8"]
budget = { month_usd = 100 }

[[scope]]
id = "acme/app"
parent = "acme"
owner = "app@acme.example"
budget = { day_usd = "1.5" }
rate = { requests_per_minute = 10 }

[[key]]
id = "app-1"
scope = "acme/app"
fingerprint = "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824"
created = 2026-01-01T00:00:00Z
expires = 2026-04-01
"#;

    #[test]
    fn settings_inherit_and_caps_do_not() {
        let scopes = Scopes::parse("scopes.toml", SCOPES).unwrap();
        let app = scopes.scope("acme/app").unwrap();
        assert_eq!(app.environment, Some(Environment::Production));
        assert!(app.phi);
        assert_eq!(app.max_key_age_seconds, Some(90 * 86_400));
        assert_eq!(app.budget.day_micros, Some(1_500_000));
        assert_eq!(app.budget.month_micros, None);
        assert!(app.accepts_source(Some("10.1.2.3".parse().unwrap())));
        assert!(!app.accepts_source(Some("11.1.2.3".parse().unwrap())));
        assert!(!app.accepts_source(None));
        let chain: Vec<&str> = scopes
            .chain("acme/app")
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(chain, ["acme/app", "acme"]);
    }

    #[test]
    fn keys_are_found_by_fingerprint_in_any_form() {
        let scopes = Scopes::parse("scopes.toml", SCOPES).unwrap();
        assert_eq!(
            fingerprint("hello"),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let info = scopes
            .scope_for_key_fingerprint(
                "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            )
            .unwrap();
        assert_eq!(info.scope, "acme/app");
        assert!(info.production && info.phi);
        assert_eq!(info.owner.as_deref(), Some("app@acme.example"));
        assert!(
            scopes
                .scope_for_key_fingerprint(&fingerprint("other"))
                .is_none()
        );
        assert!(scopes.scope_for_key_fingerprint("not hex").is_none());
        assert_eq!(scopes.key("app-1").unwrap().id, "app-1");
        assert_eq!(scopes.key(&fingerprint("hello")).unwrap().id, "app-1");
    }

    #[test]
    fn bad_scopes_are_spanned_errors() {
        let cases = [
            (
                SCOPES.replace("parent = \"acme\"", "parent = \"acme-typo\""),
                "`acme-typo`",
            ),
            (SCOPES.replace("10.0.0.0/8", "10.0.0.0/80"), "`10.0.0.0/80`"),
            (SCOPES.replace("\"1.5\"", "\"1.5.0\""), "USD"),
            (SCOPES.replace("2CF24DBA", "2CF24DB"), "fingerprint"),
            (
                SCOPES.replace("environment = \"production\"", "environment = \"prod\""),
                "prod",
            ),
            (
                SCOPES.replace("scope = \"acme/app\"", "scope = \"nope\""),
                "`nope`",
            ),
            (
                SCOPES.replace("parent = \"acme\"", "parent = \"acme/app\""),
                "own ancestor",
            ),
            (
                format!("{SCOPES}\n[[scope]]\nid = \"acme\"\n"),
                "duplicate scope",
            ),
        ];
        for (text, needle) in cases {
            let err = Scopes::parse("scopes.toml", &text).unwrap_err();
            assert!(
                err.message().contains(needle),
                "{needle}: {}",
                err.message()
            );
        }
    }

    #[test]
    fn raw_keys_are_not_names() {
        // Synthetic, in the shapes of OpenAI, Anthropic, Groq, Google, Mistral and hex keys.
        let body = "kD7DPxW3TuKgyEQRgbpgRGXhsNsEehcGaWthZRKb2Vz4";
        for key in [
            format!("sk-proj-{body}"),
            format!("sk-ant-api03-{body}"),
            format!("gsk_{body}"),
            format!("AIza{body}"),
            body[..32].to_owned(),
            "0123456789abcdef0123456789abcdef".to_owned(),
        ] {
            assert!(looks_like_a_raw_key(&key), "{key}");
        }
        for name in [
            "care-notes-prod-2026-10",
            "dev-general-1",
            "sk-team-a",
            "internal_search_production_key_2026_11_01",
            "CareNotesProduction2026",
            "Billing Service Production Key 2026-10 (EU West)",
        ] {
            assert!(!looks_like_a_raw_key(name), "{name}");
        }
    }

    #[test]
    fn a_raw_key_as_an_id_is_refused_and_not_quoted() {
        let key = "sk-proj-kD7DPxW3TuKgyEQRgbpgRGXhsNsEehcGaWthZRKb2Vz4";
        let text = SCOPES.replace("id = \"app-1\"", &format!("id = \"{key}\""));
        assert_ne!(text, SCOPES);
        let err = Scopes::parse("scopes.toml", &text).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("looks like a raw API key"), "{message}");
        assert!(!message.contains(key), "{message}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "gpt-4o"));
        assert!(glob_match("gpt-4o*", "gpt-4o-2024-11-20"));
        assert!(glob_match("claude-*-4-5*", "claude-sonnet-4-5-20250929"));
        assert!(!glob_match("claude-*-4-5", "claude-sonnet-4-5-20250929"));
        assert!(glob_match("gpt-4o", "gpt-4o"));
        assert!(!glob_match("gpt-4o", "gpt-4o-mini"));
        assert!(!glob_match("a*a", "a"));
    }
}
