//! The events.k8s.io/v1 kinds.

pub mod event;
