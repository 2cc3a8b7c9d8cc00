//! The facts a finding carries, in words: every format's help text is written here, once.

use keyscope_rules::RuleKind;
use keyscope_scan::Finding;

/// What to do about a finding: the rule's advice, preceded by whose key it is and followed by
/// whether HEAD still holds it, when those are known.
pub fn help(finding: &Finding) -> String {
    let mut text = String::new();
    if finding.kind == RuleKind::Secret
        && let Some(owner) = &finding.owner
    {
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
    text.push_str(&finding.help);
    match finding.at_head {
        Some(true) => text.push_str(" It is still present at HEAD."),
        Some(false) => text
            .push_str(" It is no longer present at HEAD, but remains in the repository's history."),
        None => {}
    }
    text
}
