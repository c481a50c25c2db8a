//! `topology-filter` decides, for every service port, which endpoints this
//! node may send traffic to, and records why. It is pure: plain data in
//! ([`api_watch::ClusterState`] and the node's name), plain data out
//! ([`ProxyPlan`]); no I/O, no clock, no environment.
//!
//! It does not build rules (that is `nft-writer`) and does not read the
//! cluster (that is `api-watch`).
//!
//! Main items: [`plan`], [`ProxyPlan`], [`ServicePortPlan`],
//! [`EndpointTarget`], [`Decision`], [`topology_keys`].

mod plan;

pub use plan::*;
