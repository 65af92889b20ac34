//! The conformance suite on the watch cache in front of etcd (as `vkube` runs it): the
//! shared test etcd, each case under a key prefix of its own, so other cases write to
//! the same etcd meanwhile and the cache must catch up by progress reports.
use std::sync::Arc;
use vkube_store::{CachedStore, EtcdConfig, EtcdStore, Store};

async fn make() -> (Arc<dyn Store>, Option<vkube_etcdkit::EtcdCluster>) {
    let (endpoints, guard) = vkube_etcdkit::shared().expect("an etcd to test against");
    let config = EtcdConfig { endpoints, prefix: vkube_etcdkit::unique_prefix("cached"), ..Default::default() };
    let inner = EtcdStore::connect(config).await.expect("connect");
    let store = CachedStore::start(Arc::new(inner)).await.expect("cache");
    (Arc::new(store), guard)
}

vkube_store::conformance_suite!(make().await);

/// Writes elsewhere in etcd (another virtual cluster's prefix) move etcd's revision with
/// no event under ours; the cache learns by progress reports that it is still current,
/// and serves consistent lists from memory, never stale ones.
#[tokio::test]
async fn writes_elsewhere_in_etcd_do_not_send_reads_to_etcd() {
    let (endpoints, _guard) = vkube_etcdkit::shared().expect("an etcd to test against");
    let connect = |prefix: String| {
        let config = EtcdConfig { endpoints: endpoints.clone(), prefix, ..Default::default() };
        EtcdStore::connect(config)
    };
    let elsewhere = connect(vkube_etcdkit::unique_prefix("elsewhere")).await.expect("connect");
    let inner = connect(vkube_etcdkit::unique_prefix("ours")).await.expect("connect");
    let cached = CachedStore::start(Arc::new(inner)).await.expect("cache");
    cached.create("/r/pods/a", "1".into()).await.expect("create");
    for round in 0..5 {
        for i in 0..5 {
            elsewhere.create(&format!("/r/{round}/{i}"), "x".into()).await.expect("create elsewhere");
        }
        let ours = cached.create(&format!("/r/pods/{round}"), "v".into()).await.expect("create");
        for i in 0..5 {
            elsewhere.create(&format!("/r/{round}/after-{i}"), "x".into()).await.expect("create elsewhere");
        }
        let list = cached.list("/r/pods/", Default::default()).await.expect("list");
        assert!(list.revision >= ours, "the list is as new as the write before it");
        assert_eq!(list.items.len(), round + 2);
    }
    let stats = cached.stats();
    assert_eq!(stats.from_inner, 0, "{stats:?}");
    assert_eq!(stats.from_memory, 5);
}
