//! The node.k8s.io/v1 kinds.

pub mod runtimeclass;
