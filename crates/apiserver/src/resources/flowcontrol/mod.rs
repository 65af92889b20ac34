//! The flowcontrol.apiserver.k8s.io/v1 kinds (API Priority and Fairness). They are
//! stored, defaulted and listed as kube-apiserver does; vkube does not queue requests
//! by them.

pub mod flowschema;
pub mod prioritylevelconfiguration;
