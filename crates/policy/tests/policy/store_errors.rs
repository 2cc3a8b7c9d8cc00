use keyscope_policy::{Scopes, Store, StoreError};

use crate::common::store_copy;

fn load_with(file: &str, edit: impl FnOnce(String) -> String) -> StoreError {
    let dir = store_copy();
    let path = dir.path().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, edit(text)).unwrap();
    Store::load(dir.path()).unwrap_err()
}

fn message(error: &StoreError) -> String {
    match error {
        StoreError::Source(e) => e.message().to_owned(),
        StoreError::Validation { errors } => errors
            .iter()
            .map(|e| e.message().to_owned())
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

#[test]
fn bad_toml_points_at_the_file() {
    let error = load_with("scopes.toml", |t| t.replace("kind = \"org\"", "kind = org"));
    let StoreError::Source(source) = &error else {
        panic!("{error:?}")
    };
    assert!(source.file().ends_with("scopes.toml"), "{}", source.file());
    assert!(
        source.message().starts_with("invalid `"),
        "{}",
        source.message()
    );
    let labels: Vec<_> = miette::Diagnostic::labels(source.as_ref())
        .unwrap()
        .collect();
    assert_eq!(labels.len(), 1);
}

#[test]
fn unknown_model_in_an_allowlist() {
    let error = load_with("scopes.toml", |t| {
        t.replace("\"gemini-2.5-flash\",", "\"gemini-9\",")
    });
    assert!(
        message(&error).contains("unknown model `gemini-9`"),
        "{error:?}"
    );
}

#[test]
fn bad_catalog_price() {
    let error = load_with("models.toml", |t| {
        t.replacen("input = 1.25", "input = \"1.2.5\"", 1)
    });
    assert!(message(&error).contains("price"), "{error:?}");
}

#[test]
fn policy_failing_validation() {
    let error = load_with("extra.cedar", |_| {
        "@id(\"typo\")\nforbid (principal, action, resource) when { principal.revokd };\n"
            .to_owned()
    });
    let StoreError::Validation { errors } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].file().ends_with("extra.cedar"),
        "{}",
        errors[0].file()
    );
}

#[test]
fn policy_syntax_error() {
    let error = load_with("extra.cedar", |_| {
        "@id(\"x\") permit (principal, action, resource) when {".to_owned()
    });
    assert!(matches!(error, StoreError::Source(_)), "{error:?}");
}

#[test]
fn duplicate_policy_id_is_a_load_error() {
    let error = load_with("extra.cedar", |_| {
        "@id(\"revoked-key\")\nforbid (principal, action, resource) when { principal.revoked };\n"
            .to_owned()
    });
    let text = message(&error);
    assert!(text.contains("duplicate policy id `revoked-key`"), "{text}");
    assert!(text.contains("extra.cedar"), "{text}");
}

#[test]
fn policy_without_id_is_a_load_error() {
    let error = load_with("extra.cedar", |_| {
        "permit (principal, action, resource);\n".to_owned()
    });
    assert!(message(&error).contains("no `@id`"), "{error:?}");
}

#[test]
fn missing_file_and_empty_store() {
    let dir = store_copy();
    std::fs::remove_file(dir.path().join("models.toml")).unwrap();
    assert!(matches!(
        Store::load(dir.path()).unwrap_err(),
        StoreError::Read { .. }
    ));
    let dir = store_copy();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cedar") {
            std::fs::remove_file(path).unwrap();
        }
    }
    assert!(matches!(
        Store::load(dir.path()).unwrap_err(),
        StoreError::NoPolicies { .. }
    ));
}

/// A store file that is a device, or runaway in size, is refused at once instead of read into
/// memory (issue 19: `scopes.toml` linked to `/dev/zero` grew to 23 GB).
#[test]
fn store_files_have_a_size_limit() {
    let dir = store_copy();
    let scopes = dir.path().join("scopes.toml");
    std::fs::remove_file(&scopes).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &scopes).unwrap();
    let err = Store::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("scopes.toml"), "{err}");
    assert!(Scopes::load(&scopes).is_err());

    std::fs::remove_file(&scopes).unwrap();
    let file = std::fs::File::create(&scopes).unwrap();
    file.set_len(17 << 20).unwrap();
    let err = Store::load(dir.path()).unwrap_err();
    let message = format!("{err:?}");
    assert!(message.contains("larger than 16 MiB"), "{message}");
}
