//! vkube-core: the shared, I/O-free vocabulary of vkube.
//!
//! Start with [`status::ApiError`] (every API failure, turned into a Kubernetes `Status`
//! object in one place), [`selector::LabelSelector`] and [`selector::FieldSelector`]
//! (parsed from query strings, matched against JSON objects), and [`meta`] (helpers
//! for `metadata` of objects held as `serde_json::Value`), and [`pod`] (pod state, on
//! the k8s-openapi type, as kube-core builds on it).

pub mod admission;
pub mod cron;
pub mod meta;
pub mod pod;
pub mod quantity;
pub mod quota;
pub mod selector;
pub mod status;

pub use status::ApiError;
