//! One module per synced kind. Virtual → host kinds implement
//! [`crate::engine::ResourceSyncer`] (or, for pods, run their own reconcile on the same
//! wiring); host → virtual kinds (nodes, events, storage classes) follow the host.

pub mod claims;
pub mod config;
pub mod endpoints;
pub mod events;
pub mod ingresses;
pub mod node_edits;
pub mod nodes;
pub mod pods;
pub mod serviceaccounts;
pub mod services;
pub mod storageclasses;
