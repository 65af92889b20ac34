//! The watch cache: a [`Store`] in front of another (etcd) that serves lists and
//! watches from memory, as kube-apiserver's cacher does.
//!
//! # Invariants
//! - One watch on the inner store, of every key, feeds a follower [`Engine`]: the cache
//!   holds the inner store's state at some revision and the recent history, so any
//!   number of API watches cost the inner store one watch.
//! - A consistent read (a list or count with no revision) first asks the inner store
//!   for its current revision and waits until the cache has reached it (asking etcd for
//!   a progress report when nothing under our keys moved), so it never answers older
//!   than a write acknowledged before it; a read at or below the cache's revision is
//!   served as of that revision. When the cache cannot get there in time, or the
//!   revision is older than its history, the read goes to the inner store: slower, never
//!   stale.
//! - Writes, single-key gets and the current revision go to the inner store.
//! - When its inner watch fails, the cache lists again and starts over; the watches it
//!   served end with `Compacted` (410 Gone), and their clients list again.

use crate::engine::Engine;
use crate::{KeyValue, ListOptions, ListResult, Progress, Revision, Store, StoreError, WatchStream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a read waits for the cache to reach the revision it needs before it goes to
/// the inner store instead.
const CATCH_UP: Duration = Duration::from_secs(1);
/// Events of history the cache keeps for watches that resume (the SQLite default).
const HISTORY: usize = 100_000;

/// The watch cache over an inner store.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    cache: Arc<Engine>,
    wanted: Arc<Notify>,
    feeder: tokio::task::JoinHandle<()>,
    from_memory: AtomicU64,
    from_inner: AtomicU64,
}

/// How a [`CachedStore`] has served its reads (lists, counts and watches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Served from the cache.
    pub from_memory: u64,
    /// Sent on to the inner store.
    pub from_inner: u64,
}

impl Drop for CachedStore {
    fn drop(&mut self) {
        self.feeder.abort();
    }
}

async fn load(inner: &dyn Store) -> Result<(BTreeMap<String, KeyValue>, Revision), StoreError> {
    let list = inner.list("", ListOptions::default()).await?;
    Ok((list.items.into_iter().map(|kv| (kv.key.clone(), kv)).collect(), list.revision))
}

impl CachedStore {
    /// List everything in `inner` and follow it from there.
    ///
    /// # Errors
    /// The inner store's, when the first list fails.
    pub async fn start(inner: Arc<dyn Store>) -> Result<Self, StoreError> {
        let (data, revision) = load(inner.as_ref()).await?;
        let cache = Arc::new(Engine::follower(data, revision, HISTORY));
        let wanted = Arc::new(Notify::new());
        let feeder = tokio::spawn(feed(inner.clone(), cache.clone(), wanted.clone(), revision));
        Ok(CachedStore { inner, cache, wanted, feeder, from_memory: AtomicU64::new(0), from_inner: AtomicU64::new(0) })
    }

    /// How reads have been served so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            from_memory: self.from_memory.load(Ordering::Relaxed),
            from_inner: self.from_inner.load(Ordering::Relaxed),
        }
    }

    fn served(&self, from_memory: bool) {
        let counter = if from_memory { &self.from_memory } else { &self.from_inner };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the cache has reached `revision` (within [`CATCH_UP`]).
    async fn reached(&self, revision: Revision) -> bool {
        if self.cache.current_revision().is_ok_and(|r| r >= revision) {
            return true;
        }
        // etcd answers a progress request only while the watch is caught up, so ask
        // again every 100 ms until the deadline.
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        while tokio::time::Instant::now() < deadline {
            self.wanted.notify_one();
            if self.cache.wait_for(revision, Duration::from_millis(100)).await {
                return true;
            }
        }
        false
    }

    /// Whether the cache is as new as the inner store is now.
    async fn fresh(&self) -> Result<bool, StoreError> {
        let now = self.inner.current_revision().await?;
        Ok(self.reached(now).await)
    }
}

/// Follow `inner` from `from` into `cache`, listing again and starting over whenever
/// the watch ends.
async fn feed(inner: Arc<dyn Store>, cache: Arc<Engine>, wanted: Arc<Notify>, mut from: Revision) {
    let mut delay = Duration::from_millis(50);
    loop {
        match inner.watch_progress("", from, wanted.clone()).await {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    let mut batch = Vec::new();
                    let (mut progress, mut failed) = (None, None);
                    let mut next = Some(item);
                    // Everything already there in one apply: a burst costs one lock.
                    while let Some(item) = next.take() {
                        match item {
                            Ok(Progress::Event(ev)) => batch.push(ev),
                            Ok(Progress::Revision(r)) => progress = Some(r),
                            Err(e) => failed = Some(e),
                        }
                        if failed.is_none() && batch.len() < 1024 {
                            next = futures::FutureExt::now_or_never(stream.next()).flatten();
                        }
                    }
                    if let Err(e) = cache.apply(&batch) {
                        tracing::error!(error = %e, "watch cache: cannot apply changes");
                        return;
                    }
                    if let Some(r) = progress {
                        cache.advance(r).ok();
                    }
                    if let Some(e) = failed {
                        tracing::warn!(error = %e, "watch cache: the store's watch ended; listing again");
                        break;
                    }
                    delay = Duration::from_millis(50);
                }
            }
            Err(e) => tracing::warn!(error = %e, "watch cache: cannot watch the store; listing again"),
        }
        // Start over from a fresh list (the watch may have missed changes).
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            match load(inner.as_ref()).await {
                Ok((data, revision)) => match cache.reset(data, revision) {
                    Ok(()) => {
                        from = revision;
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "watch cache: cannot reset");
                        return;
                    }
                },
                Err(e) => tracing::warn!(error = %e, "watch cache: cannot list the store; trying again"),
            }
        }
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError> {
        let served = match options.revision {
            None => self.fresh().await?,
            Some(r) => self.reached(r).await && self.cache.compacted().is_ok_and(|c| r >= c),
        };
        if served {
            match self.cache.list(prefix, options.clone()) {
                Ok(list) => {
                    self.served(true);
                    return Ok(list);
                }
                Err(e) => tracing::debug!(error = %e, "watch cache: list from the store instead"),
            }
        }
        self.served(false);
        self.inner.list(prefix, options).await
    }

    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let fresh = self.fresh().await?;
        self.served(fresh);
        if fresh {
            return self.cache.count(prefix);
        }
        self.inner.count(prefix).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StoreError> {
        self.inner.create(key, value).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision, StoreError> {
        self.inner.update(key, value, expected).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.inner.delete(key, expected).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        if self.reached(after).await {
            match self.cache.watch(prefix, after) {
                Ok(stream) => {
                    self.served(true);
                    return Ok(stream);
                }
                Err(e) => tracing::debug!(error = %e, "watch cache: watch the store instead"),
            }
        }
        self.served(false);
        self.inner.watch(prefix, after).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await?;
        // The cache forgets no more than it has: a revision beyond it is the inner
        // store's business (writes elsewhere).
        let upto = revision.min(self.cache.current_revision()?);
        self.cache.compact(upto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use std::sync::atomic::AtomicUsize;

    /// A store that counts the reads that reach it.
    struct Counting {
        inner: MemoryStore,
        lists: AtomicUsize,
        watches: AtomicUsize,
    }

    #[async_trait]
    impl Store for Counting {
        async fn current_revision(&self) -> Result<Revision, StoreError> {
            self.inner.current_revision().await
        }
        async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError> {
            self.lists.fetch_add(1, Ordering::Relaxed);
            self.inner.list(prefix, options).await
        }
        async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StoreError> {
            self.inner.create(key, value).await
        }
        async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision, StoreError> {
            self.inner.update(key, value, expected).await
        }
        async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
            self.inner.delete(key, expected).await
        }
        async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
            self.watches.fetch_add(1, Ordering::Relaxed);
            self.inner.watch(prefix, after).await
        }
        async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
            self.inner.compact(revision).await
        }
    }

    fn counting() -> Arc<Counting> {
        Arc::new(Counting { inner: MemoryStore::new(), lists: AtomicUsize::new(0), watches: AtomicUsize::new(0) })
    }

    #[tokio::test]
    async fn fifty_watches_and_lists_cost_the_inner_store_one_watch_and_one_list() {
        let inner = counting();
        inner.create("/r/pods/before", Bytes::from_static(b"0")).await.expect("create");
        let cached = CachedStore::start(inner.clone()).await.expect("start");
        let from = cached.current_revision().await.expect("rev");
        let mut watches = Vec::new();
        for _ in 0..50 {
            watches.push(cached.watch("/r/pods/", from).await.expect("watch"));
        }
        for i in 0..10 {
            cached.create(&format!("/r/pods/{i}"), Bytes::from_static(b"v")).await.expect("create");
            // Read your writes: a list right after the acknowledgement has the key.
            let list = cached.list("/r/pods/", ListOptions::default()).await.expect("list");
            assert_eq!(list.items.len(), i + 2, "the list right after create {i}");
        }
        for w in &mut watches {
            for i in 0..10 {
                let ev = tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("in time");
                assert_eq!(ev.expect("event").expect("ok").kv.key, format!("/r/pods/{i}"));
            }
        }
        assert_eq!(inner.watches.load(Ordering::Relaxed), 1, "one inner watch, the cache's own");
        assert_eq!(inner.lists.load(Ordering::Relaxed), 1, "one inner list, the cache's first");
        let stats = cached.stats();
        assert_eq!(stats, CacheStats { from_memory: 60, from_inner: 0 });
    }

    #[tokio::test]
    async fn a_revision_older_than_the_cache_goes_to_the_inner_store() {
        let inner = counting();
        let old = inner.create("/r/a", Bytes::from_static(b"1")).await.expect("create");
        inner.update("/r/a", Bytes::from_static(b"2"), old).await.expect("update");
        let cached = CachedStore::start(inner.clone()).await.expect("start");
        // The cache starts after `old`: the inner store still has it.
        let list = cached.list("/r/", ListOptions { revision: Some(old), ..Default::default() }).await.expect("list");
        assert_eq!(list.items[0].value, Bytes::from_static(b"1"));
        let mut w = cached.watch("/r/", old).await.expect("watch");
        let ev = w.next().await.expect("event").expect("ok");
        assert_eq!(ev.kv.value, Bytes::from_static(b"2"));
        assert_eq!(cached.stats().from_inner, 2);
    }
}
