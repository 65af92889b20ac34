//! The certificates.k8s.io/v1 kinds.

pub mod certificatesigningrequest;
