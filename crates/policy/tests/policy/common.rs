use std::path::{Path, PathBuf};

use keyscope_policy::{Clock, Engine, Store};

pub fn default_store_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// The default store, deciding each request at its own `context.time`: these tests replay
/// requests at fixed times.
pub fn default_engine() -> Engine {
    engine_at_request_time(Store::load(&default_store_dir()).unwrap())
}

/// An engine over `store` on the explicit test clock, [`Clock::FromRequest`].
pub fn engine_at_request_time(store: Store) -> Engine {
    Engine::new(store).with_clock(Clock::FromRequest)
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
