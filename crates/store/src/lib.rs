//! vkube-store: MVCC key-value storage with etcd's model.
//!
//! Start with the [`Store`] trait: one global revision that every write advances (and
//! that the API server exposes as `resourceVersion`), compare-and-swap updates and
//! deletes, ordered watches from a revision, and compaction that answers
//! [`StoreError::Compacted`] for revisions older than what is kept.
//!
//! Backends: [`MemoryStore`] (tests) and [`SqliteStore`] (the embedded, durable
//! default) share [`engine`]: an in-memory MVCC state with a single writer thread that
//! group-commits batches of concurrent writes to a [`engine::Durability`] backend.
//! [`EtcdStore`] implements [`Store`] directly on etcd v3, since etcd is already MVCC;
//! [`CachedStore`] is the watch cache in front of it (lists and watches from memory).
//! [`conformance`] holds the test suite every backend must pass.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

mod cache;
pub mod conformance;
pub mod engine;
mod etcd;
mod memory;
mod sqlite;

pub use cache::{CacheStats, CachedStore};
pub use etcd::{EtcdConfig, EtcdStore};
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// A store revision. Revisions start at 1 and grow by one with every write.
pub type Revision = i64;

/// One stored key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/registry/core/pods/default/web`.
    pub key: String,
    /// The value (the object's JSON).
    pub value: Bytes,
    /// The revision that created the key.
    pub create_revision: Revision,
    /// The revision of the last write to the key (for a deleted key in an event: the
    /// revision of the delete).
    pub mod_revision: Revision,
}

/// What a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created.
    Create,
    /// The key was updated.
    Update,
    /// The key was deleted.
    Delete,
}

/// One change, as a watch delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The key after the change; for a delete, the last value with `mod_revision` set
    /// to the revision of the delete.
    pub kv: KeyValue,
    /// The key before the change (None for a create).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Options of [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// List as of this revision (None: the latest).
    pub revision: Option<Revision>,
    /// Start after this key (pagination).
    pub start_after: Option<String>,
    /// At most this many items (0: all).
    pub limit: usize,
}

/// The answer of [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListResult {
    /// The items, ordered by key.
    pub items: Vec<KeyValue>,
    /// The revision the list reflects.
    pub revision: Revision,
    /// How many further items match after the last one returned.
    pub remaining: usize,
}

/// A stream of watch events, in revision order.
pub type WatchStream = BoxStream<'static, Result<Event, StoreError>>;

/// One item of [`Store::watch_progress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A change, as [`Store::watch`] delivers it.
    Event(Event),
    /// Every change under the prefix up to this revision has been delivered.
    Revision(Revision),
}

/// A stream of [`Progress`], in revision order.
pub type ProgressStream = BoxStream<'static, Result<Progress, StoreError>>;

/// Backend-neutral storage errors; the API server maps each to one `Status`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not exist.
    #[error("key not found: {0}")]
    NotFound(String),
    /// A create found the key present.
    #[error("key already exists: {0}")]
    AlreadyExists(String),
    /// A compare-and-swap found another revision.
    #[error("conflict on {key}: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The revision found.
        actual: Revision,
    },
    /// The requested revision has been compacted away.
    #[error("required revision {requested} has been compacted (oldest available is {oldest})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision still available.
        oldest: Revision,
    },
    /// The requested revision is in the future.
    #[error("required revision {0} is in the future")]
    FutureRevision(Revision),
    /// A watcher fell too far behind and was dropped; it should resume from its last
    /// revision.
    #[error("watch fell behind")]
    WatchLagged,
    /// The backend failed (I/O, database error); the write was not applied.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// The store has been shut down.
    #[error("store is closed")]
    Closed,
}

/// MVCC key-value storage.
///
/// # Guarantees
/// - Every successful write returns a revision greater than any returned before.
/// - A write is acknowledged only after it is durable (for durable backends).
/// - A watch from revision `r` delivers every change with revision `> r` under the
///   prefix, in revision order, exactly once, with no gaps, until it ends.
///
/// # Errors
/// See [`StoreError`]: `Conflict` for a failed compare-and-swap, `Compacted` for a
/// revision no longer kept.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest revision.
    async fn current_revision(&self) -> Result<Revision, StoreError>;
    /// Read one key at the latest revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// List keys starting with `prefix`, ordered by key.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError>;
    /// Count keys starting with `prefix`.
    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        Ok(self.list(prefix, ListOptions::default()).await?.items.len())
    }
    /// Create `key`; fails with `AlreadyExists` if present.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StoreError>;
    /// Replace `key` if its `mod_revision` is `expected`.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision, StoreError>;
    /// Delete `key` (if `expected` is given, only at that revision); returns the deleted
    /// value with `mod_revision` set to the delete's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;
    /// Watch changes under `prefix` with revision greater than `after`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;
    /// Like [`Store::watch`], and also, soon after each time `wanted` is notified, how far
    /// the delivered changes reach even when nothing under the prefix changed (etcd's
    /// progress notification). A watch cache needs it to serve consistent reads from a
    /// store that others write elsewhere. Backends without it deliver changes only.
    async fn watch_progress(
        &self,
        prefix: &str,
        after: Revision,
        wanted: std::sync::Arc<tokio::sync::Notify>,
    ) -> Result<ProgressStream, StoreError> {
        use futures::StreamExt;
        let _ = wanted;
        Ok(Box::pin(self.watch(prefix, after).await?.map(|r| r.map(Progress::Event))))
    }
    /// Discard history up to and including `revision`.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
}
