use std::path::{Path, PathBuf};

use keyscope_policy::{Engine, Store};

pub fn default_store_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

pub fn default_engine() -> Engine {
    Engine::new(Store::load(&default_store_dir()).unwrap())
}

/// Copies the default store into a temp dir, so a test can break one file.
pub fn store_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(default_store_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file()
            && !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ledger")
        {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}
