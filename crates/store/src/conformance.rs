//! The storage conformance suite: every [`crate::Store`] backend must pass it unchanged.
//!
//! Use [`conformance_suite!`](crate::conformance_suite) in a backend's tests with an
//! expression that makes a fresh, empty store (and anything that must live as long as
//! it, such as a temporary directory) as a tuple `(store, guard)`.

use crate::{EventKind, ListOptions, Store, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

async fn next_event(w: &mut crate::WatchStream) -> crate::Event {
    match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

/// Create, read, and revision growth.
pub async fn create_get(s: Arc<dyn Store>) {
    let r0 = s.current_revision().await.expect("rev");
    let r1 = s.create("/a/1", b("one")).await.expect("create");
    assert!(r1 > r0);
    let kv = s.get("/a/1").await.expect("get").expect("present");
    assert_eq!(kv.value, b("one"));
    assert_eq!(kv.create_revision, r1);
    assert_eq!(kv.mod_revision, r1);
    // At least r1: a backend shared with other writers (one etcd cluster for the whole
    // test run) may have moved on since.
    let now = s.current_revision().await.expect("rev");
    assert!(now >= r1, "current revision {now} is behind the acknowledged write {r1}");
    assert!(matches!(s.create("/a/1", b("again")).await, Err(StoreError::AlreadyExists(_))));
    let r2 = s.create("/a/3", b("three")).await.expect("create");
    assert!(r2 > now, "a later write gets a later revision ({r2} after {now})");
    assert!(s.get("/a/2").await.expect("get").is_none());
}

/// Compare-and-swap update and delete.
pub async fn cas(s: Arc<dyn Store>) {
    let r1 = s.create("/k", b("v1")).await.expect("create");
    let r2 = s.update("/k", b("v2"), r1).await.expect("update");
    assert!(r2 > r1);
    match s.update("/k", b("v3"), r1).await {
        Err(StoreError::Conflict { expected, actual, .. }) => {
            assert_eq!(expected, r1);
            assert_eq!(actual, r2);
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(s.get("/k").await.expect("get").expect("present").value, b("v2"));
    assert!(matches!(s.delete("/k", Some(r1)).await, Err(StoreError::Conflict { .. })));
    let gone = s.delete("/k", Some(r2)).await.expect("delete");
    assert_eq!(gone.value, b("v2"));
    assert!(gone.mod_revision > r2);
    assert!(s.get("/k").await.expect("get").is_none());
    assert!(matches!(s.delete("/k", None).await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.update("/k", b("x"), r2).await, Err(StoreError::NotFound(_))));
}

/// Prefix lists, ordering and pagination.
pub async fn list_and_paginate(s: Arc<dyn Store>) {
    for i in [3, 1, 2, 5, 4] {
        s.create(&format!("/p/{i}"), b(&i.to_string())).await.expect("create");
    }
    s.create("/q/1", b("other")).await.expect("create");
    let all = s.list("/p/", ListOptions::default()).await.expect("list");
    let keys: Vec<_> = all.items.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["/p/1", "/p/2", "/p/3", "/p/4", "/p/5"]);
    assert_eq!(all.remaining, 0);
    assert_eq!(s.count("/p/").await.expect("count"), 5);
    let page1 = s.list("/p/", ListOptions { limit: 2, ..Default::default() }).await.expect("list");
    assert_eq!(page1.items.len(), 2);
    assert_eq!(page1.remaining, 3);
    let last = page1.items[1].key.clone();
    let page2 = s
        .list("/p/", ListOptions { limit: 2, start_after: Some(last), revision: Some(page1.revision) })
        .await
        .expect("list");
    let keys: Vec<_> = page2.items.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["/p/3", "/p/4"]);
    assert_eq!(page2.remaining, 1);
}

/// Listing as of an older revision sees that revision's state.
pub async fn list_at_revision(s: Arc<dyn Store>) {
    let r1 = s.create("/r/a", b("a1")).await.expect("create");
    let r2 = s.create("/r/b", b("b1")).await.expect("create");
    let r3 = s.update("/r/a", b("a2"), r1).await.expect("update");
    s.delete("/r/b", Some(r2)).await.expect("delete");
    s.create("/r/c", b("c1")).await.expect("create");
    let at = s.list("/r/", ListOptions { revision: Some(r2), ..Default::default() }).await.expect("list");
    let got: Vec<_> = at.items.iter().map(|k| (k.key.as_str(), k.value.clone())).collect();
    assert_eq!(got, [("/r/a", b("a1")), ("/r/b", b("b1"))]);
    assert_eq!(at.revision, r2);
    let at3 = s.list("/r/", ListOptions { revision: Some(r3), ..Default::default() }).await.expect("list");
    assert_eq!(at3.items.len(), 2);
    assert_eq!(at3.items[0].value, b("a2"));
    let now = s.current_revision().await.expect("rev");
    assert!(matches!(
        s.list("/r/", ListOptions { revision: Some(now + 1_000_000), ..Default::default() }).await,
        Err(StoreError::FutureRevision(_))
    ));
}

/// Watches deliver every change after the start revision, in order, and resume.
pub async fn watch_order_and_resume(s: Arc<dyn Store>) {
    let start = s.current_revision().await.expect("rev");
    let mut w = s.watch("/w/", start).await.expect("watch");
    let r1 = s.create("/w/a", b("1")).await.expect("create");
    s.create("/x/ignored", b("1")).await.expect("create");
    let r2 = s.update("/w/a", b("2"), r1).await.expect("update");
    let r3 = s.delete("/w/a", None).await.expect("delete").mod_revision;
    let e1 = next_event(&mut w).await;
    assert_eq!((e1.kind, e1.revision()), (EventKind::Create, r1));
    let e2 = next_event(&mut w).await;
    assert_eq!((e2.kind, e2.revision()), (EventKind::Update, r2));
    assert_eq!(e2.prev.as_ref().map(|p| p.value.clone()), Some(b("1")));
    let e3 = next_event(&mut w).await;
    assert_eq!((e3.kind, e3.revision()), (EventKind::Delete, r3));
    assert_eq!(e3.kv.value, b("2"));
    // Resume from the middle: only later events.
    let mut resumed = s.watch("/w/", r1).await.expect("watch");
    assert_eq!(next_event(&mut resumed).await.revision(), r2);
    assert_eq!(next_event(&mut resumed).await.revision(), r3);
}

/// Many concurrent writers: every write gets a distinct revision and every one is seen
/// by a watcher, in order.
pub async fn concurrent_writes_are_ordered(s: Arc<dyn Store>) {
    let start = s.current_revision().await.expect("rev");
    let mut w = s.watch("/c/", start).await.expect("watch");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..50 {
                revs.push(s.create(&format!("/c/{t}-{i}"), b("x")).await.expect("create"));
            }
            revs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 400);
    let mut last = start;
    for _ in 0..400 {
        let ev = next_event(&mut w).await;
        assert!(ev.revision() > last, "watch out of order");
        last = ev.revision();
    }
}

/// Compaction makes older revisions answer `Compacted`.
pub async fn compaction(s: Arc<dyn Store>) {
    let r1 = s.create("/z/a", b("1")).await.expect("create");
    let r2 = s.update("/z/a", b("2"), r1).await.expect("update");
    let r3 = s.update("/z/a", b("3"), r2).await.expect("update");
    s.compact(r2).await.expect("compact");
    assert!(matches!(s.watch("/z/", r1).await, Err(StoreError::Compacted { .. })));
    assert!(matches!(
        s.list("/z/", ListOptions { revision: Some(r1), ..Default::default() }).await,
        Err(StoreError::Compacted { .. })
    ));
    let mut w = s.watch("/z/", r2).await.expect("watch at compaction point");
    assert_eq!(next_event(&mut w).await.revision(), r3);
}

/// Generate one `#[tokio::test]` per conformance case for a backend.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make; create_get, cas, list_and_paginate, list_at_revision, watch_order_and_resume, concurrent_writes_are_ordered, compaction);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $make;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}
