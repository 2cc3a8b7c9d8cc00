//! The model catalog (`models.toml`): providers, models, aliases and prices.
//!
//! Prices are micro-dollars per million tokens. An alias (`gpt-4o`) is a model of its own in
//! Cedar, marked unversioned and pointing at its target, so that policies can tell the two
//! apart; it is billed at its target's price.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{SourceError, SourceFile};
use crate::time::Timestamp;

/// A model provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Catalog id, `openai`.
    pub id: String,
    /// Display name, `OpenAI`.
    pub name: String,
    /// Whether a business associate agreement covers this provider (required for PHI scopes).
    pub baa: bool,
}

/// Prices in micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Per million input tokens.
    pub input: u64,
    /// Per million output tokens.
    pub output: u64,
    /// Per million cached input tokens.
    pub cached_input: u64,
}

/// A model of the catalog, versioned or an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// The id requests use: `gpt-4o-2024-11-20`, or an alias such as `gpt-4o`.
    pub id: String,
    /// Provider id.
    pub provider: String,
    /// Model family, `gpt-4o`.
    pub family: String,
    /// False for an alias, whose target can change under the caller.
    pub versioned: bool,
    /// The versioned model this id resolves to (itself when versioned).
    pub target: String,
    /// The price, if the catalog has one.
    pub price: Option<Price>,
    /// The most output tokens one call can produce: the worst case of an estimate.
    pub max_output_tokens: u64,
}

/// The loaded model catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    prices_as_of: Timestamp,
    providers: BTreeMap<String, Provider>,
    models: Vec<Model>,
    by_id: HashMap<String, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    prices_as_of: Spanned<toml::value::Datetime>,
    #[serde(default)]
    currency: Option<Spanned<String>>,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default, rename = "model")]
    models: Vec<RawModel>,
    #[serde(default)]
    aliases: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: Option<String>,
    #[serde(default)]
    baa: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: Spanned<String>,
    provider: Spanned<String>,
    family: Option<String>,
    input: Option<Spanned<toml::Value>>,
    output: Option<Spanned<toml::Value>>,
    cached_input: Option<Spanned<toml::Value>>,
    max_output_tokens: u64,
}

/// One versioned model of `models.toml`: a valid id, a known provider, both prices or none.
fn parse_model(
    file: &SourceFile,
    m: RawModel,
    providers: &BTreeMap<String, Provider>,
) -> Result<Model, SourceError> {
    let id = m.id.get_ref().clone();
    if id.is_empty() || id.contains(char::is_whitespace) {
        return Err(file.error(
            format!("invalid model id `{id}`"),
            Some(m.id.span()),
            "no spaces",
        ));
    }
    if !providers.contains_key(m.provider.get_ref()) {
        return Err(file.error(
            format!("unknown provider `{}`", m.provider.get_ref()),
            Some(m.provider.span()),
            "not in [providers]",
        ));
    }
    let usd = |field: &Option<Spanned<toml::Value>>| {
        file.usd(field, "a price", "price per million tokens")
    };
    let price = match (usd(&m.input)?, usd(&m.output)?, usd(&m.cached_input)?) {
        (Some(input), Some(output), cached) => Some(Price {
            input,
            output,
            cached_input: cached.unwrap_or(input),
        }),
        (None, None, None) => None,
        _ => {
            return Err(file.error(
                format!("model `{id}` needs both `input` and `output` prices, or none"),
                Some(m.id.span()),
                "incomplete price",
            ));
        }
    };
    Ok(Model {
        family: m.family.unwrap_or_else(|| id.clone()),
        target: id.clone(),
        id,
        provider: m.provider.into_inner(),
        versioned: true,
        price,
        max_output_tokens: m.max_output_tokens,
    })
}

impl Catalog {
    /// Parses `models.toml`; `name` is used in diagnostics.
    pub fn parse(name: &str, text: &str) -> Result<Self, SourceError> {
        let file = SourceFile::new(name, text);
        Self::parse_file(&file)
    }

    pub(crate) fn parse_file(file: &SourceFile) -> Result<Self, SourceError> {
        let raw: RawCatalog = toml::from_str(&file.text).map_err(|e| toml_error(file, &e))?;
        let prices_as_of =
            Timestamp::parse(&raw.prices_as_of.get_ref().to_string()).ok_or_else(|| {
                file.error(
                    "`prices_as_of` must be a date",
                    Some(raw.prices_as_of.span()),
                    "not a date",
                )
            })?;
        if let Some(currency) = &raw.currency
            && currency.get_ref() != "USD"
        {
            return Err(file.error(
                format!("unsupported currency `{}`", currency.get_ref()),
                Some(currency.span()),
                "only USD",
            ));
        }
        let providers: BTreeMap<String, Provider> = raw
            .providers
            .into_iter()
            .map(|(id, p)| {
                let provider = Provider {
                    name: p.name.unwrap_or_else(|| id.clone()),
                    id: id.clone(),
                    baa: p.baa,
                };
                (id, provider)
            })
            .collect();
        let mut models = Vec::with_capacity(raw.models.len() + raw.aliases.len());
        let mut by_id = HashMap::new();
        for m in raw.models {
            let span = m.id.span();
            let model = parse_model(file, m, &providers)?;
            if by_id.insert(model.id.clone(), models.len()).is_some() {
                return Err(file.error(
                    format!("duplicate model id `{}`", model.id),
                    Some(span),
                    "defined twice",
                ));
            }
            models.push(model);
        }
        for (alias, target) in raw.aliases {
            let Some(&index) = by_id.get(target.get_ref()) else {
                return Err(file.error(
                    format!(
                        "alias `{alias}` points at unknown model `{}`",
                        target.get_ref()
                    ),
                    Some(target.span()),
                    "not a model id",
                ));
            };
            if by_id.contains_key(&alias) {
                return Err(file.error(
                    format!("alias `{alias}` is also a model id"),
                    Some(target.span()),
                    "ambiguous",
                ));
            }
            let target_model = &models[index];
            let model = Model {
                id: alias.clone(),
                versioned: false,
                ..target_model.clone()
            };
            by_id.insert(alias, models.len());
            models.push(model);
        }
        Ok(Self {
            prices_as_of,
            providers,
            models,
            by_id,
        })
    }

    /// The date the prices were taken.
    pub fn prices_as_of(&self) -> Timestamp {
        self.prices_as_of
    }

    /// A model or alias by id.
    pub fn model(&self, id: &str) -> Option<&Model> {
        self.by_id.get(id).map(|&i| &self.models[i])
    }

    /// A provider by id.
    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.get(id)
    }

    /// Every model and alias, in file order (aliases last).
    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// Every provider.
    pub fn providers(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }
}

pub(crate) fn toml_error(file: &SourceFile, error: &toml::de::Error) -> SourceError {
    file.error(
        format!("invalid `{}`: {}", file.name, error.message()),
        error.span(),
        "here",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &str = r#"
prices_as_of = 2025-10-15
[providers.openai]
baa = true
[[model]]
id = "gpt-4o-2024-11-20"
provider = "openai"
family = "gpt-4o"
input = 2.50
output = "10"
max_output_tokens = 16384
[[model]]
id = "local"
provider = "openai"
max_output_tokens = 10
[aliases]
gpt-4o = "gpt-4o-2024-11-20"
"#;

    #[test]
    fn aliases_resolve_and_share_the_price() {
        let catalog = Catalog::parse("models.toml", CATALOG).unwrap();
        let alias = catalog.model("gpt-4o").unwrap();
        assert!(!alias.versioned);
        assert_eq!(alias.target, "gpt-4o-2024-11-20");
        let price = alias.price.unwrap();
        assert_eq!(
            (price.input, price.output, price.cached_input),
            (2_500_000, 10_000_000, 2_500_000)
        );
        assert!(catalog.model("gpt-4o-2024-11-20").unwrap().versioned);
        assert_eq!(catalog.model("local").unwrap().price, None);
    }

    #[test]
    fn errors_point_at_the_span() {
        let bad = CATALOG.replace("gpt-4o = \"gpt-4o-2024-11-20\"", "gpt-4o = \"gpt-4o-typo\"");
        let err = Catalog::parse("models.toml", &bad).unwrap_err();
        assert!(err.message().contains("`gpt-4o-typo`"), "{}", err.message());
        let bad = CATALOG.replace("input = 2.50", "input = -2.50");
        assert!(Catalog::parse("models.toml", &bad).is_err());
        let bad = CATALOG.replace(
            "provider = \"openai\"\nfamily",
            "provider = \"nope\"\nfamily",
        );
        assert!(
            Catalog::parse("models.toml", &bad)
                .unwrap_err()
                .message()
                .contains("`nope`")
        );
        let err = Catalog::parse("models.toml", "prices_as_of = [").unwrap_err();
        assert!(err.message().starts_with("invalid `models.toml`"));
    }
}
