//! The conformance suite on the memory backend.
use std::sync::Arc;
use vkube_store::{MemoryStore, Store};

vkube_store::conformance_suite!((Arc::new(MemoryStore::new()) as Arc<dyn Store>, ()));
