//! The conformance suite on the SQLite backend.
use std::sync::Arc;
use vkube_store::{SqliteStore, Store};

fn make() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("state.db")).expect("open");
    (Arc::new(store), dir)
}

vkube_store::conformance_suite!(make());
