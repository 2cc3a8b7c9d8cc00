//! The rule list of `keyscope rules list`: a table for people, or JSON.

use keyscope_rules::RuleSet;

use crate::ReportError;

/// One line per rule (id, provider, severity, name) under a header, then the count.
pub fn table(rules: &RuleSet) -> String {
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
    let mut out = format!(
        "{:id_width$}  {:provider_width$}  {:8}  DESCRIPTION\n",
        "ID", "PROVIDER", "SEVERITY"
    );
    for r in rules.rules() {
        out.push_str(&format!(
            "{:id_width$}  {:provider_width$}  {:8}  {}\n",
            r.id(),
            r.provider(),
            r.severity().as_str(),
            r.name()
        ));
    }
    out.push_str(&format!("{} rules\n", rules.len()));
    out
}

/// Every rule as a JSON object: id, provider, name, severity, description, keywords, references.
pub fn json(rules: &RuleSet) -> Result<String, ReportError> {
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
    let mut text = serde_json::to_string_pretty(&list)?;
    text.push('\n');
    Ok(text)
}
