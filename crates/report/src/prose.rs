//! The facts a finding carries, in words: the help text every format shows is written here,
//! once.

use keyscope_rules::{RuleKind, RuleSet};
use keyscope_scan::{Correlation, Finding};

/// What to do about a finding: whose key it is (when a registry knows), the advice of its rule
/// or what its flat-key analysis found, and whether HEAD still holds it (for a history sweep).
pub fn help(finding: &Finding, rules: &RuleSet) -> String {
    let description = rules
        .get(&finding.rule_id)
        .map_or("", |rule| rule.description());
    let mut text = String::new();
    match (finding.kind, &finding.correlation) {
        (RuleKind::Secret, _) => {
            if let Some(owner) = &finding.owner {
                text.push_str(&format!(
                    "This is the key `{}` of scope `{}`{}. ",
                    owner.key_id,
                    owner.scope,
                    if owner.production {
                        ", a production scope"
                    } else {
                        ""
                    },
                ));
            }
            text.push_str(&rotate(finding));
        }
        (_, Some(Correlation::SharedBy(names))) => text.push_str(&format!(
            "This {} key ({}) is shared by {}. {description}",
            finding.provider,
            finding.redacted,
            names.join(", "),
        )),
        (_, Some(Correlation::ServedToBrowsers)) => text.push_str(&format!(
            "This {} key ({}) is in a file that browsers download: anyone can read it. \
             {description}",
            finding.provider, finding.redacted,
        )),
        (_, None) => text.push_str(description),
    }
    match finding.at_head {
        Some(true) => text.push_str(" It is still present at HEAD."),
        Some(false) => text
            .push_str(" It is no longer present at HEAD, but remains in the repository's history."),
        None => {}
    }
    text
}

/// The advice for a leaked secret.
fn rotate(finding: &Finding) -> String {
    let encoded = if finding.base64 {
        " It is base64-encoded here, which hides nothing."
    } else {
        ""
    };
    if is_keyscope_key(&finding.rule_id) {
        return format!(
            "Revoke and rotate this keyscope key now (`keyscope respond --revoke --rotate` on this \
             report, or `keyscope key rotate`): removing it from the file does not remove it from \
             history. Load it from a secrets manager at run time.{encoded}"
        );
    }
    format!(
        "Revoke and rotate this {} key now: removing it from the file does not remove it from \
         history. Load it from a secrets manager at run time, and give each app and environment \
         its own scoped key.{encoded}",
        finding.provider
    )
}

/// Whether rule `id` finds keyscope's own scoped keys: keyscope issues, rotates and revokes
/// them, so the advice names its commands rather than a provider's console. (The usage rules,
/// `flat-key/...`, are keyscope's too, but about provider keys.)
pub(crate) fn is_keyscope_key(id: &str) -> bool {
    id.starts_with("keyscope-")
}
