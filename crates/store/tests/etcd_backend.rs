//! What only the etcd backend has: etcd's own compaction, and members that die.
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use vkube_etcdkit::EtcdCluster;
use vkube_store::{EtcdConfig, EtcdStore, ListOptions, Store, StoreError};

async fn store(endpoints: Vec<String>, prefix: &str, compaction: Option<Duration>) -> EtcdStore {
    let config =
        EtcdConfig { endpoints, prefix: prefix.to_string(), compaction_interval: compaction, ..Default::default() };
    EtcdStore::connect(config).await.expect("connect")
}

/// Wait until `counter` shows 50 acknowledged writes; fail after 30 s.
async fn wait_writes(counter: &AtomicUsize, phase: &str) {
    let start = counter.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while counter.load(Ordering::Relaxed) < start + 50 {
        assert!(tokio::time::Instant::now() < deadline, "writes stalled {phase}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn etcd_compaction_answers_compacted() {
    // A private etcd: compaction is cluster-wide.
    let etcd = EtcdCluster::start(1).expect("etcd");
    let s = store(etcd.endpoints(), "/t", Some(Duration::from_millis(200))).await;
    let r1 = s.create("/a", "1".into()).await.expect("create");
    let r2 = s.update("/a", "2".into(), r1).await.expect("update");
    // The compactor compacts to the revision it saw one period earlier.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match s.watch("/", r1).await {
            Err(StoreError::Compacted { requested, .. }) => {
                assert_eq!(requested, r1);
                break;
            }
            Ok(_) => assert!(tokio::time::Instant::now() < deadline, "etcd was never compacted"),
            Err(e) => panic!("unexpected {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old = s.list("/", ListOptions { revision: Some(r1), ..Default::default() }).await;
    assert!(matches!(old, Err(StoreError::Compacted { .. })), "{old:?}");
    // The latest state is intact.
    assert_eq!(s.get("/a").await.expect("get").expect("present").mod_revision, r2);
}

#[tokio::test]
async fn a_member_killed_and_restarted_under_load_loses_nothing() {
    let mut etcd = EtcdCluster::start(3).expect("etcd");
    let s = Arc::new(store(etcd.endpoints(), "/t", None).await);
    let start = s.current_revision().await.expect("rev");
    let mut watch = s.watch("/load/", start).await.expect("watch");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let phase = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let per_phase: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
    let writer = {
        let (s, stop, phase, per_phase) = (s.clone(), stop.clone(), phase.clone(), per_phase.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("/load/{i:06}");
                if let Ok(rev) = s.create(&key, "x".into()).await {
                    acked.push((key, rev));
                    per_phase[phase.load(Ordering::Relaxed)].fetch_add(1, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            acked
        })
    };
    // Each phase lasts until writes have gone on in it (or fails at a deadline).
    wait_writes(&per_phase[0], "before the kill").await;
    etcd.kill(0);
    phase.store(1, Ordering::Relaxed);
    wait_writes(&per_phase[1], "with a member down").await;
    let etcd =
        tokio::task::spawn_blocking(move || etcd.restart(0).map(|()| etcd)).await.expect("join").expect("restart");
    phase.store(2, Ordering::Relaxed);
    wait_writes(&per_phase[2], "after the restart").await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    // Every acknowledged write is stored, also on the restarted member.
    let listed = s.list("/load/", ListOptions::default()).await.expect("list");
    let stored: BTreeSet<&str> = listed.items.iter().map(|kv| kv.key.as_str()).collect();
    for (k, _) in &acked {
        assert!(stored.contains(k.as_str()), "acknowledged {k} lost");
    }
    let restarted = store(vec![etcd.endpoints()[0].clone()], "/t", None).await;
    let there = restarted.list("/load/", ListOptions::default()).await.expect("list on the restarted member");
    assert!(there.items.len() >= acked.len(), "the restarted member did not catch up");
    // The watch saw each exactly once, in order, across the failure. (It may also see
    // writes whose answer was lost to the failure: committed, never acknowledged.)
    let mut seen = BTreeSet::new();
    let mut last = start;
    while acked.iter().any(|(k, _)| !seen.contains(k)) {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("watch stalled")
            .expect("watch ended")
            .expect("watch error");
        assert!(ev.revision() > last, "watch went back or repeated");
        last = ev.revision();
        assert!(seen.insert(ev.kv.key.clone()), "watch repeated {}", ev.kv.key);
    }
    drop(etcd);
}
