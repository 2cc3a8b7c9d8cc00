//! Loading a policy store: a directory with `schema.cedarschema`, `*.cedar`, `scopes.toml` and
//! `models.toml`, validated as a whole before anything is decided with it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet,
    RestrictedExpression, Schema, ValidationMode, Validator,
};

use crate::catalog::Catalog;
use crate::error::{SourceError, SourceFile, StoreError, read_store_file as read};
use crate::scopes::{Key, ModelPattern, SCOPES_FILE, ScopeInfo, Scopes, glob_match};

/// The file names a store directory holds.
pub const SCHEMA_FILE: &str = "schema.cedarschema";
/// The model catalog.
pub const MODELS_FILE: &str = "models.toml";
/// The ledger's default file name inside the store.
pub const LEDGER_FILE: &str = "ledger.sqlite";

/// Whether a policy permits or forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// A `permit` policy.
    Permit,
    /// A `forbid` policy.
    Forbid,
}

/// A policy of the store, known by its `@id`.
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    /// The `@id` annotation.
    pub id: String,
    /// The `@message` annotation, if any: the human-readable reason.
    pub message: Option<String>,
    /// Permit or forbid.
    pub effect: Effect,
    /// The file it came from.
    pub file: String,
}

/// A loaded, validated policy store: schema, policies, scopes, catalog and the Cedar entities
/// built from them. Immutable; reload by loading a new one.
#[derive(Debug)]
pub struct Store {
    dir: Option<PathBuf>,
    pub(crate) schema: Schema,
    pub(crate) policies: PolicySet,
    policy_info: HashMap<String, PolicyInfo>,
    pub(crate) scopes: Scopes,
    pub(crate) catalog: Catalog,
    pub(crate) entities: Entities,
    /// Each key's Cedar uid and, per action (indexed as in `action_uids`), the slice of the
    /// policy set that can matter for that key: an index into `slices`.
    pub(crate) key_uids: HashMap<String, KeyEntry>,
    pub(crate) model_uids: HashMap<String, EntityUid>,
    /// Each action's uid and its index into [`KeyEntry::slices`].
    pub(crate) action_uids: HashMap<String, (EntityUid, usize)>,
    /// Distinct policy slices; see [`slice_policies`].
    pub(crate) slices: Vec<PolicySet>,
    /// Which optional context fields some policy reads.
    pub(crate) context_use: ContextUse,
}

/// The context fields that are only built when some policy names them: Cedar evaluates every
/// context value when a request is built (parsing an `ipaddr` costs more than the rest of the
/// context together), and a field no policy reads only costs time. The store is validated
/// against the schema, so a policy that reads a field names it in its text.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ContextUse {
    pub(crate) source_ip: bool,
    pub(crate) input_tokens: bool,
    pub(crate) max_output_tokens: bool,
}

/// A key as the engine needs it at decision time.
#[derive(Debug)]
pub(crate) struct KeyEntry {
    pub(crate) uid: EntityUid,
    /// Per action: an index into [`Store::slices`].
    pub(crate) slices: Vec<usize>,
}

/// The texts a store is made of, for building one without a directory.
#[derive(Debug, Clone, Copy)]
pub struct StoreSources<'a> {
    /// `schema.cedarschema`.
    pub schema: &'a str,
    /// Each policy file: name and text.
    pub policies: &'a [(&'a str, &'a str)],
    /// `scopes.toml`.
    pub scopes: &'a str,
    /// `models.toml`.
    pub models: &'a str,
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, StoreError> {
    let type_name = EntityTypeName::from_str(type_name).map_err(|e| StoreError::Entities {
        message: e.to_string(),
    })?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

impl Store {
    /// Loads and validates the store in `dir`.
    pub fn load(dir: &Path) -> Result<Self, StoreError> {
        let schema = read(&dir.join(SCHEMA_FILE))?;
        let scopes = read(&dir.join(SCOPES_FILE))?;
        let models = read(&dir.join(MODELS_FILE))?;
        let entries = std::fs::read_dir(dir).map_err(|source| StoreError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let mut policy_paths = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| StoreError::Read {
                    path: dir.to_owned(),
                    source,
                })?
                .path();
            if path.extension().is_some_and(|e| e == "cedar") && path.is_file() {
                policy_paths.push(path);
            }
        }
        policy_paths.sort();
        if policy_paths.is_empty() {
            return Err(StoreError::NoPolicies {
                dir: dir.to_owned(),
            });
        }
        let mut policy_texts = Vec::with_capacity(policy_paths.len());
        for path in &policy_paths {
            policy_texts.push((path.display().to_string(), read(path)?));
        }
        let policies: Vec<(&str, &str)> = policy_texts
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let display = |name: &str| dir.join(name).display().to_string();
        let mut store = Self::build(
            &SourceFile::new(display(SCHEMA_FILE), schema),
            &policies,
            SourceFile::new(display(SCOPES_FILE), scopes),
            &SourceFile::new(display(MODELS_FILE), models),
        )?;
        store.dir = Some(dir.to_owned());
        Ok(store)
    }

    /// Builds a store from texts (tests, benches, embedding).
    pub fn from_sources(sources: StoreSources<'_>) -> Result<Self, StoreError> {
        Self::build(
            &SourceFile::new(SCHEMA_FILE, sources.schema),
            sources.policies,
            SourceFile::new(SCOPES_FILE, sources.scopes),
            &SourceFile::new(MODELS_FILE, sources.models),
        )
    }

    fn build(
        schema_file: &SourceFile,
        policy_files: &[(&str, &str)],
        scopes_file: SourceFile,
        models_file: &SourceFile,
    ) -> Result<Self, StoreError> {
        let schema = match Schema::from_cedarschema_str(&schema_file.text) {
            Ok((schema, _warnings)) => schema,
            Err(e) => return Err(schema_file.rehome(&e).into()),
        };
        let catalog = Catalog::parse_file(models_file)?;
        let scopes = Scopes::parse_file(scopes_file)?;
        let (policies, policy_info, policy_files) = load_policies(policy_files)?;
        let named = |field: &str| policy_files.values().any(|f| f.text.contains(field));
        let context_use = ContextUse {
            source_ip: named("source_ip"),
            input_tokens: named("input_tokens"),
            max_output_tokens: named("max_output_tokens"),
        };

        validate_policies(&schema, &policies, &policy_info, &policy_files)?;
        let mut action_uids = HashMap::new();
        for (index, action) in schema.actions().enumerate() {
            action_uids.insert(action.id().unescaped().to_owned(), (action.clone(), index));
        }

        let mut entities = Vec::new();
        let model_uids = catalog_entities(&catalog, &mut entities)?;
        scope_entities(&scopes, &catalog, &model_uids, &mut entities)?;
        let key_uids = key_entities(&scopes, &mut entities)?;
        let entities =
            Entities::from_entities(entities, Some(&schema)).map_err(|e| entity_error(&e))?;
        let mut actions: Vec<&(EntityUid, usize)> = action_uids.values().collect();
        actions.sort_by_key(|(_, index)| *index);
        let actions: Vec<&EntityUid> = actions.into_iter().map(|(uid, _)| uid).collect();
        let (key_uids, slices) = slice_policies(key_uids, &actions, &policies, &entities)?;

        Ok(Self {
            dir: None,
            schema,
            policies,
            policy_info,
            scopes,
            catalog,
            entities,
            key_uids,
            model_uids,
            action_uids,
            slices,
            context_use,
        })
    }

    /// The directory the store was loaded from, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The scope tree and key registry.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// The model catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A policy by its `@id`.
    pub fn policy(&self, id: &str) -> Option<&PolicyInfo> {
        self.policy_info.get(id)
    }

    /// Every policy, by `@id`.
    pub fn policies(&self) -> impl Iterator<Item = &PolicyInfo> {
        self.policy_info.values()
    }

    /// The actions the schema declares (`invoke`, `embed`, ...).
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.action_uids.keys().map(String::as_str)
    }

    /// The Cedar policy set, with ids from the `@id` annotations.
    pub fn cedar_policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The Cedar entities built from the scopes, keys and catalog.
    pub fn cedar_entities(&self) -> &Entities {
        &self.entities
    }

    /// The Cedar schema.
    pub fn cedar_schema(&self) -> &Schema {
        &self.schema
    }

    /// The scope a leaked key belongs to, by SHA-256 of the raw key; see
    /// [`Scopes::scope_for_key_fingerprint`].
    pub fn scope_for_key_fingerprint(&self, sha256_hex: &str) -> Option<ScopeInfo> {
        self.scopes.scope_for_key_fingerprint(sha256_hex)
    }
}

/// Pre-slices the policy set per key and action with Cedar's partial evaluation: the principal
/// and action known, the model and the context unknown. A policy whose condition evaluates to
/// plain `false` then is `false` whatever model and context a request brings (partial
/// evaluation is exact where it reaches a value), so leaving it out of that key's set changes
/// no decision, no reason and no error; every other policy (residual, satisfied, or erroring)
/// stays. Keys of the same kind share one slice. Cedar's authorizer costs about a microsecond
/// per policy evaluated, and a production key typically skips a third of the default set
/// (the development, PHI, revocation and expiry rules that cannot apply to it).
fn slice_policies(
    key_uids: HashMap<String, EntityUid>,
    actions: &[&EntityUid],
    policies: &PolicySet,
    entities: &Entities,
) -> Result<(HashMap<String, KeyEntry>, Vec<PolicySet>), StoreError> {
    let model_type = EntityTypeName::from_str("Model").map_err(|e| StoreError::Entities {
        message: e.to_string(),
    })?;
    let authorizer = cedar_policy::Authorizer::new();
    let all: Vec<cedar_policy::Policy> = policies.policies().cloned().collect();
    let mut index_of: HashMap<Vec<bool>, usize> = HashMap::new();
    let mut slices = Vec::new();
    let mut entries = HashMap::with_capacity(key_uids.len());
    for (key, uid) in key_uids {
        let mut key_slices = Vec::with_capacity(actions.len());
        for action in actions {
            let request = cedar_policy::RequestBuilder::default()
                .principal(uid.clone())
                .action((*action).clone())
                .unknown_resource_with_type(model_type.clone())
                .build();
            let response = authorizer.is_authorized_partial(&request, policies, entities);
            let mut keep: HashSet<PolicyId> = response
                .nontrivial_residuals()
                .chain(response.definitely_satisfied())
                .map(|p| p.id().clone())
                .collect();
            keep.extend(response.definitely_errored().cloned());
            let mask: Vec<bool> = all.iter().map(|p| keep.contains(p.id())).collect();
            let index = match index_of.get(&mask) {
                Some(index) => *index,
                None => {
                    let mut slice = PolicySet::new();
                    for policy in all.iter().zip(&mask).filter(|(_, k)| **k).map(|(p, _)| p) {
                        slice
                            .add(policy.clone())
                            .map_err(|e| StoreError::Entities {
                                message: e.to_string(),
                            })?;
                    }
                    slices.push(slice);
                    index_of.insert(mask, slices.len() - 1);
                    slices.len() - 1
                }
            };
            key_slices.push(index);
        }
        entries.insert(
            key,
            KeyEntry {
                uid,
                slices: key_slices,
            },
        );
    }
    Ok((entries, slices))
}

/// Validates the policies against the schema, naming each error's file.
fn validate_policies(
    schema: &Schema,
    policies: &PolicySet,
    policy_info: &HashMap<String, PolicyInfo>,
    policy_files: &HashMap<String, SourceFile>,
) -> Result<(), StoreError> {
    let validation = Validator::new(schema.clone()).validate(policies, ValidationMode::Strict);
    if !validation.validation_passed() {
        let errors = validation
            .validation_errors()
            .map(|e| {
                let file = policy_info
                    .get(e.policy_id().to_string().as_str())
                    .and_then(|info| policy_files.get(&info.file))
                    .cloned()
                    .unwrap_or_else(|| SourceFile::new("policies", ""));
                file.rehome(e)
            })
            .collect();
        return Err(StoreError::Validation { errors });
    }

    Ok(())
}

/// An entity error with its chain of causes, as one message.
fn entity_error(e: &dyn std::error::Error) -> StoreError {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    StoreError::Entities { message }
}

/// The provider and model entities of the catalog; returns the model uids by id.
fn catalog_entities(
    catalog: &Catalog,
    entities: &mut Vec<Entity>,
) -> Result<HashMap<String, EntityUid>, StoreError> {
    let mut provider_uids = HashMap::new();
    for provider in catalog.providers() {
        let id = uid("Provider", &provider.id)?;
        let attrs = HashMap::from([(
            "baa".to_owned(),
            RestrictedExpression::new_bool(provider.baa),
        )]);
        entities
            .push(Entity::new(id.clone(), attrs, HashSet::new()).map_err(|e| entity_error(&e))?);
        provider_uids.insert(provider.id.clone(), id);
    }
    let mut model_uids = HashMap::new();
    for model in catalog.models() {
        model_uids.insert(model.id.clone(), uid("Model", &model.id)?);
    }
    for model in catalog.models() {
        let provider = provider_uids[&model.provider].clone();
        let attrs = HashMap::from([
            (
                "provider".to_owned(),
                RestrictedExpression::new_entity_uid(provider.clone()),
            ),
            (
                "family".to_owned(),
                RestrictedExpression::new_string(model.family.clone()),
            ),
            (
                "versioned".to_owned(),
                RestrictedExpression::new_bool(model.versioned),
            ),
            (
                "target".to_owned(),
                RestrictedExpression::new_entity_uid(model_uids[&model.target].clone()),
            ),
            (
                "priced".to_owned(),
                RestrictedExpression::new_bool(model.price.is_some()),
            ),
        ]);
        entities.push(
            Entity::new(
                model_uids[&model.id].clone(),
                attrs,
                HashSet::from([provider]),
            )
            .map_err(|e| entity_error(&e))?,
        );
    }
    Ok(model_uids)
}

/// The scope entities, each with its parent and its expanded model allowlist.
fn scope_entities(
    scopes: &Scopes,
    catalog: &Catalog,
    model_uids: &HashMap<String, EntityUid>,
    entities: &mut Vec<Entity>,
) -> Result<(), StoreError> {
    // Check the shared lists once, so an error names the list rather than the first scope
    // that happens to include it.
    for (name, entries) in scopes.model_lists() {
        expand_allowlist(scopes, catalog, entries, &format!("@{name}"))?;
    }
    let mut scope_uids = HashMap::new();
    for scope in scopes.scopes() {
        scope_uids.insert(scope.id.clone(), uid("Scope", &scope.id)?);
    }
    for scope in scopes.scopes() {
        let allowed = expand_allowlist(scopes, catalog, &scope.models, &scope.id)?;
        let allowed = allowed
            .into_iter()
            .map(|m| RestrictedExpression::new_entity_uid(model_uids[m].clone()));
        let attrs = HashMap::from([
            (
                "kind".to_owned(),
                RestrictedExpression::new_string(scope.kind.clone()),
            ),
            (
                "environment".to_owned(),
                RestrictedExpression::new_string(
                    scope
                        .environment
                        .map_or("unspecified", |e| e.as_str())
                        .to_owned(),
                ),
            ),
            (
                "audience".to_owned(),
                RestrictedExpression::new_string(scope.audience.as_str().to_owned()),
            ),
            ("phi".to_owned(), RestrictedExpression::new_bool(scope.phi)),
            (
                "budgeted".to_owned(),
                RestrictedExpression::new_bool(
                    scopes
                        .chain(&scope.id)
                        .iter()
                        .any(|s| s.budget.has_money_cap()),
                ),
            ),
            (
                "allowed_models".to_owned(),
                RestrictedExpression::new_set(allowed),
            ),
        ]);
        let parents = scope.parent.iter().map(|p| scope_uids[p].clone()).collect();
        entities.push(
            Entity::new(scope_uids[&scope.id].clone(), attrs, parents)
                .map_err(|e| entity_error(&e))?,
        );
    }
    Ok(())
}

/// The key entities; returns their uids by key id.
fn key_entities(
    scopes: &Scopes,
    entities: &mut Vec<Entity>,
) -> Result<HashMap<String, EntityUid>, StoreError> {
    let scope_uids: HashMap<&str, EntityUid> = scopes
        .scopes()
        .iter()
        .map(|s| Ok((s.id.as_str(), uid("Scope", &s.id)?)))
        .collect::<Result<_, StoreError>>()?;
    let mut key_uids = HashMap::new();
    for key in scopes.keys() {
        let scope_uid = scope_uids[key.scope.as_str()].clone();
        let (id, entity) = key_entity(scopes, key, scope_uid)?;
        entities.push(entity);
        key_uids.insert(key.id.clone(), id);
    }
    Ok(key_uids)
}

/// The Cedar entity of `key`, a member of `scope_uid`, and its uid.
fn key_entity(
    scopes: &Scopes,
    key: &Key,
    scope_uid: EntityUid,
) -> Result<(EntityUid, Entity), StoreError> {
    let id = uid("Key", &key.id)?;
    let mut attrs = HashMap::from([
        (
            "scope".to_owned(),
            RestrictedExpression::new_entity_uid(scope_uid.clone()),
        ),
        (
            "created_at".to_owned(),
            RestrictedExpression::new_long(key.created.unix()),
        ),
        (
            "revoked".to_owned(),
            RestrictedExpression::new_bool(key.revoked),
        ),
    ]);
    if let Some(expires) = key.expires {
        attrs.insert(
            "expires_at".to_owned(),
            RestrictedExpression::new_long(expires.unix()),
        );
    }
    if let Some(max_age) = scopes.scope(&key.scope).and_then(|s| s.max_key_age_seconds) {
        attrs.insert(
            "max_age_seconds".to_owned(),
            RestrictedExpression::new_long(max_age),
        );
    }
    let entity =
        Entity::new(id.clone(), attrs, HashSet::from([scope_uid])).map_err(|e| entity_error(&e))?;
    Ok((id, entity))
}

impl Store {
    /// What Cedar needs to decide for a key of the registry, which the store's entities do not
    /// hold: the key's uid, and entities with the key, its scope chain, the model, the model's
    /// target and their providers (everything a policy over the schema can reach from the
    /// request). Built per decision; a few microseconds.
    pub(crate) fn registry_entities(
        &self,
        key: &Key,
        chain: &[&crate::scopes::Scope],
        model: &crate::catalog::Model,
    ) -> Result<(EntityUid, Entities), StoreError> {
        let scope_uid = uid("Scope", &key.scope)?;
        let (key_uid, key_entity) = key_entity(&self.scopes, key, scope_uid)?;
        let mut wanted = Vec::with_capacity(chain.len() + 4);
        for scope in chain {
            wanted.push(uid("Scope", &scope.id)?);
        }
        for id in [&model.id, &model.target] {
            wanted.push(uid("Model", id)?);
        }
        wanted.push(uid("Provider", &model.provider)?);
        if let Some(target) = self.catalog.model(&model.target) {
            wanted.push(uid("Provider", &target.provider)?);
        }
        let mut entities = vec![key_entity];
        entities.extend(
            wanted
                .iter()
                .filter_map(|uid| self.entities.get(uid))
                .cloned(),
        );
        let entities = Entities::from_entities(entities, None).map_err(|e| entity_error(&e))?;
        Ok((key_uid, entities))
    }
}

type LoadedPolicies = (
    PolicySet,
    HashMap<String, PolicyInfo>,
    HashMap<String, SourceFile>,
);

fn load_policies(files: &[(&str, &str)]) -> Result<LoadedPolicies, StoreError> {
    let mut set = PolicySet::new();
    let mut info: HashMap<String, PolicyInfo> = HashMap::new();
    let mut sources = HashMap::new();
    for (name, text) in files {
        let file = SourceFile::new(*name, *text);
        let parsed = PolicySet::from_str(text).map_err(|e| file.rehome(&e))?;
        if let Some(template) = parsed.templates().next() {
            let span = span_of(text, &template.to_string());
            return Err(file
                .error(
                    "policy templates are not supported in a keyscope store",
                    span,
                    "template",
                )
                .into());
        }
        let mut policies: Vec<_> = parsed.policies().collect();
        policies.sort_by_key(|p| span_of(text, &p.to_string()).map_or(0, |s| s.start));
        for policy in policies {
            let span = span_of(text, &policy.to_string());
            let Some(id) = policy.annotation("id") else {
                return Err(file
                    .error("policy has no `@id` annotation", span, "add @id(\"...\")")
                    .with_help(
                        "keyscope reports decisions by policy id; give every policy a unique `@id`",
                    )
                    .into());
            };
            if id.is_empty() || id.starts_with("keyscope:") {
                return Err(file
                    .error(
                        format!("invalid policy id `{id}`"),
                        span,
                        "reserved or empty",
                    )
                    .into());
            }
            if let Some(previous) = info.get(id) {
                return Err(file
                    .error(
                        format!("duplicate policy id `{id}` (also in `{}`)", previous.file),
                        span,
                        "duplicate @id",
                    )
                    .into());
            }
            let effect = match policy.effect() {
                cedar_policy::Effect::Permit => Effect::Permit,
                cedar_policy::Effect::Forbid => Effect::Forbid,
            };
            info.insert(
                id.to_owned(),
                PolicyInfo {
                    id: id.to_owned(),
                    message: policy.annotation("message").map(str::to_owned),
                    effect,
                    file: (*name).to_owned(),
                },
            );
            set.add(policy.new_id(PolicyId::new(id)))
                .map_err(|e| file.rehome(&e))?;
        }
        sources.insert((*name).to_owned(), file);
    }
    Ok((set, info, sources))
}

fn span_of(text: &str, needle: &str) -> Option<std::ops::Range<usize>> {
    text.find(needle).map(|start| start..start + needle.len())
}

fn expand_allowlist<'c>(
    scopes: &Scopes,
    catalog: &'c Catalog,
    patterns: &[ModelPattern],
    scope: &str,
) -> Result<BTreeSet<&'c str>, SourceError> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<(&ModelPattern, usize)> = patterns.iter().map(|p| (p, 0)).collect();
    while let Some((pattern, depth)) = stack.pop() {
        if let Some(list) = pattern.text.strip_prefix('@') {
            let Some(entries) = scopes.model_list(list) else {
                return Err(scopes.file.error(
                    format!("unknown model list `{list}` in the allowlist of `{scope}`"),
                    Some(pattern.span.clone()),
                    "not in [model_lists]",
                ));
            };
            if depth > 16 {
                return Err(scopes.file.error(
                    format!("model list `{list}` includes itself"),
                    Some(pattern.span.clone()),
                    "cycle",
                ));
            }
            stack.extend(entries.iter().map(|p| (p, depth + 1)));
        } else if pattern.text.contains('*') {
            out.extend(
                catalog
                    .models()
                    .iter()
                    .filter(|m| glob_match(&pattern.text, &m.id))
                    .map(|m| m.id.as_str()),
            );
        } else {
            let Some(model) = catalog.model(&pattern.text) else {
                return Err(scopes.file.error(
                    format!(
                        "unknown model `{}` in the allowlist of `{scope}`",
                        pattern.text
                    ),
                    Some(pattern.span.clone()),
                    "not in models.toml",
                ));
            };
            out.insert(model.id.as_str());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {

    use std::collections::BTreeSet;

    use cedar_policy::{Authorizer, Context, Request};

    use super::*;

    fn default_files() -> Vec<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p.file_name().unwrap().to_string_lossy().into_owned(), text)
            })
            .collect();
        files.sort();
        files
    }

    fn context(now: i64, network: bool, cost: i64, remaining: i64, ip: bool) -> Context {
        let mut value = serde_json::json!({
            "now": now, "network_allowed": network, "input_tokens": 1000,
            "max_output_tokens": 1000, "total_tokens": 2000, "cost_micros": cost,
            "budget_remaining_micros": remaining, "budget_remaining_tokens": remaining,
            "rate_requests_remaining": remaining.min(5), "rate_tokens_remaining": remaining,
        });
        if ip {
            value["source_ip"] = serde_json::json!({"__extn": {"fn": "ip", "arg": "10.0.0.1"}});
        }
        Context::from_json_value(value, None).unwrap()
    }

    /// What a decision shows: allow or deny, the determining policies, the policies that erred.
    fn outcome(
        request: &Request,
        policies: &PolicySet,
        entities: &Entities,
    ) -> (bool, BTreeSet<String>, BTreeSet<String>) {
        let response = Authorizer::new().is_authorized(request, policies, entities);
        let errors = response
            .diagnostics()
            .errors()
            .map(|e| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
                e.policy_id().to_string()
            })
            .collect();
        (
            response.decision() == cedar_policy::Decision::Allow,
            response
                .diagnostics()
                .reason()
                .map(ToString::to_string)
                .collect(),
            errors,
        )
    }

    /// Slicing must change nothing: for every key, action and model of the default store, plus a
    /// policy that errors at run time for development keys only, and contexts on both sides of
    /// every time, network and budget condition, the sliced set gives the same decision, the
    /// same determining policies and the same errors as the whole set.
    #[test]
    fn policy_slices_decide_exactly_like_the_whole_set() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let mut files = default_files();
        files.push((
            "zz-erring.cedar".to_owned(),
            "@id(\"erring-for-development\")\n\
             forbid (principal, action, resource) when {\n\
               principal.scope.environment == \"development\" &&\n\
               principal.created_at * 9223372036854775807 > 0\n\
             };\n"
                .to_owned(),
        ));
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let schema = std::fs::read_to_string(dir.join(SCHEMA_FILE)).unwrap();
        let scopes = std::fs::read_to_string(dir.join(SCOPES_FILE)).unwrap();
        let models = std::fs::read_to_string(dir.join(MODELS_FILE)).unwrap();
        let store = Store::from_sources(StoreSources {
            schema: &schema,
            policies: &borrowed,
            scopes: &scopes,
            models: &models,
        })
        .unwrap();
        // The slices are smaller than the whole set: otherwise this test checks nothing.
        let whole = store.policies.policies().count();
        assert!(store.slices.iter().all(|s| s.policies().count() <= whole));
        assert!(store.slices.iter().any(|s| s.policies().count() < whole));
        assert!(
            store.slices.len() > 1,
            "keys of different kinds share one slice"
        );

        let times = [
            0,
            1_700_000_000,
            1_764_547_200,
            1_798_761_600,
            4_000_000_000,
        ];
        let mut checked = 0;
        let mut erred = 0;
        for (key, entry) in &store.key_uids {
            for (action, (action_uid, index)) in &store.action_uids {
                let slice = &store.slices[entry.slices[*index]];
                for model_uid in store.model_uids.values() {
                    for now in times {
                        for (network, cost, remaining, ip) in [
                            (true, 0, i64::MAX, false),
                            (false, 500, 500, true),
                            (true, 501, 500, false),
                            (true, 10, 0, true),
                        ] {
                            let request = Request::new(
                                entry.uid.clone(),
                                action_uid.clone(),
                                model_uid.clone(),
                                context(now, network, cost, remaining, ip),
                                None,
                            )
                            .unwrap();
                            let full = outcome(&request, &store.policies, &store.entities);
                            let sliced = outcome(&request, slice, &store.entities);
                            assert_eq!(
                                full, sliced,
                                "key {key}, action {action}, model {model_uid}, now {now}"
                            );
                            checked += 1;
                            erred += usize::from(!full.2.is_empty());
                        }
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
        assert!(
            erred > 0,
            "the erring policy never erred: the test lost its edge"
        );
    }
}
