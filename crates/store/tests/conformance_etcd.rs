//! The conformance suite on the etcd backend: the cluster `scripts/test` started (or a
//! private one-member cluster), each case under a key prefix of its own.
use std::sync::Arc;
use vkube_store::{EtcdConfig, EtcdStore, Store};

async fn make() -> (Arc<dyn Store>, Option<vkube_etcdkit::EtcdCluster>) {
    let (endpoints, guard) = vkube_etcdkit::shared().expect("an etcd to test against");
    let config = EtcdConfig { endpoints, prefix: vkube_etcdkit::unique_prefix("conformance"), ..Default::default() };
    let store = EtcdStore::connect(config).await.expect("connect");
    (Arc::new(store), guard)
}

vkube_store::conformance_suite!(make().await);
