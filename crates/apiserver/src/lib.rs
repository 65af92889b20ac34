//! vkube-apiserver: a Kubernetes API server over a vkube [`Store`](vkube_store::Store).
//!
//! Where to start: [`server::start`] (TLS, authentication, bootstrap), [`endpoints::handle`]
//! (authorization with [`authz`], routing and verbs), [`registry::Registry`] (the verbs' semantics over the store),
//! [`strategy`] (per-kind defaulting and validation), [`resources`] (what is served).
//!
//! The layering follows k8s.io/apiserver: handlers → registry → store, with per-kind
//! behaviour in strategies called in a fixed order, and storage errors turned into
//! `Status` objects in one place.

pub mod admission;
pub mod authn;
pub mod authz;
pub mod bootstrap;
pub mod conversion;
pub mod crd;
pub mod csr_signer;
pub mod endpoints;
pub mod namespaces;
pub mod pki;
pub mod registry;
pub mod resources;
pub mod server;

pub use axum::body::Body;
pub use server::{RunningServer, ServerConfig, start};
