//! The in-memory backend: the engine with no durability (tests, benchmarks' baseline).

use crate::engine::{Engine, Volatile};
use crate::{KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchStream};
use async_trait::async_trait;
use bytes::Bytes;

/// A volatile store; everything is lost when it is dropped.
pub struct MemoryStore {
    engine: Engine,
}

impl MemoryStore {
    /// An empty store at revision 1 (as a fresh etcd is).
    pub fn new() -> Self {
        MemoryStore { engine: Engine::start(Default::default(), 1, Box::new(Volatile), 100_000) }
    }

    /// An empty store that keeps at most `history_limit` events for watch resumption.
    pub fn with_history_limit(history_limit: usize) -> Self {
        MemoryStore { engine: Engine::start(Default::default(), 1, Box::new(Volatile), history_limit) }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! delegate_store {
    ($ty:ty) => {
        #[async_trait]
        impl Store for $ty {
            async fn current_revision(&self) -> Result<Revision, StoreError> {
                self.engine.current_revision()
            }
            async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
                self.engine.get(key)
            }
            async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError> {
                self.engine.list(prefix, options)
            }
            async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
                self.engine.count(prefix)
            }
            async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StoreError> {
                self.engine.create(key, value).await
            }
            async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision, StoreError> {
                self.engine.update(key, value, expected).await
            }
            async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
                self.engine.delete(key, expected).await
            }
            async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
                self.engine.watch(prefix, after)
            }
            async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
                self.engine.compact(revision)
            }
        }
    };
}
pub(crate) use delegate_store;

delegate_store!(MemoryStore);
