//! Issue #13: keys are found in the files where teams keep them, in each file's own quoting:
//! notebook outputs, Terraform state, Compose and Kubernetes manifests (plain and base64),
//! editor settings, shell history, CI workflows, package-manager configs, Postman collections.

use base64::Engine as _;
use keyscope_rules::RuleSet;
use keyscope_scan::{Detector, scan_blob};

/// A synthetic body of `len` characters from `alphabet`, the same for the same seed.
fn body(seed: u64, len: usize, alphabet: &[u8]) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(alphabet[(state % alphabet.len() as u64) as usize])
        })
        .collect()
}

const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The rules whose findings `text` (at `path`) produces.
fn found(engine: &Detector, path: &str, text: &str) -> Vec<String> {
    scan_blob(engine, path, text.as_bytes())
        .into_iter()
        .map(|f| f.rule_id)
        .collect()
}

#[test]
fn keys_are_found_in_the_files_teams_keep_them_in() {
    let engine = Detector::new(RuleSet::builtin().unwrap()).unwrap();
    let groq = format!("gsk_{}", body(1, 52, BASE62));
    let cohere = body(2, 40, BASE62);
    let anthropic = format!("sk-ant-api03-{}AA", body(3, 93, BASE62));
    let b64 = base64::engine::general_purpose::STANDARD.encode(&groq);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "analysis.ipynb",
            format!(
                r#"{{"cells": [{{"outputs": [{{"name": "stdout", "text": ["GROQ_API_KEY={groq}\n"]}}]}}]}}"#
            ),
            "groq-api-key",
        ),
        (
            "terraform.tfstate",
            format!(r#"{{"attributes": {{"name": "COHERE_API_KEY", "value": "{cohere}"}}}}"#),
            "cohere-api-key",
        ),
        (
            "docker-compose.yml",
            format!("services:\n  api:\n    environment:\n      - ANTHROPIC_API_KEY={anthropic}\n"),
            "anthropic-api-key",
        ),
        (
            "secret.yaml",
            format!("apiVersion: v1\nkind: Secret\ndata:\n  groq: {b64}\n"),
            "groq-api-key",
        ),
        (
            "secret.yaml",
            format!("apiVersion: v1\nkind: Secret\nstringData:\n  COHERE_API_KEY: {cohere}\n"),
            "cohere-api-key",
        ),
        (
            ".vscode/settings.json",
            format!(r#"{{ "cohere.apiKey": "{cohere}" }}"#),
            "cohere-api-key",
        ),
        (
            ".idea/workspace.xml",
            format!(r#"<env name="ANTHROPIC_API_KEY" value="{anthropic}" />"#),
            "anthropic-api-key",
        ),
        (
            ".zsh_history",
            format!(": 1733140000:0;export GROQ_API_KEY={groq}\n"),
            "groq-api-key",
        ),
        (
            ".github/workflows/ci.yml",
            format!("jobs:\n  test:\n    env:\n      COHERE_API_KEY: \"{cohere}\"\n"),
            "cohere-api-key",
        ),
        (
            ".npmrc",
            format!("//registry.npmjs.org/:_authToken=x\nGROQ_API_KEY={groq}\n"),
            "groq-api-key",
        ),
        (
            "collection.postman_collection.json",
            format!(r#"{{"key": "x-api-key", "value": "{anthropic}", "type": "string"}}"#),
            "anthropic-api-key",
        ),
        (
            "env.postman_environment.json",
            format!(
                r#"{{"values": [{{"key": "COHERE_API_KEY", "value": "{cohere}", "enabled": true}}]}}"#
            ),
            "cohere-api-key",
        ),
    ];
    for (path, text, rule) in &cases {
        let rules = found(&engine, path, text);
        assert!(
            rules.iter().any(|r| r == rule),
            "{path}: {rule} not in {rules:?}"
        );
    }
}
