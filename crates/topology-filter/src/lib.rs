//! `topology-filter` decides, for every service port, which endpoints this
//! node may send traffic to, and records why. It is pure: plain data in
//! ([`api_watch::ClusterState`] and the node's name), plain data out
//! ([`ProxyPlan`]); no I/O, no clock, no environment.
//!
//! It does not build rules (that is `nft-writer`) and does not read the
//! cluster (that is `api-watch`).
//!
//! For each service port the rules apply in this order: topology keys
//! (`spec.topologyKeys` or the annotation `nftopo.io/topology-keys`; when a
//! Service has them, its `internalTrafficPolicy: Local` is ignored, the
//! keys take precedence), then `internalTrafficPolicy: Local`, then no
//! rule. Invalid topology keys are reported as a [`Problem`] and ignored,
//! never turned into an outage.
//!
//! Main items: [`plan`], [`ProxyPlan`], [`ServicePortPlan`],
//! [`EndpointTarget`], [`Decision`], [`topology_keys`].

mod keys;
mod plan;
mod rules;
mod select;

pub use keys::{topology_keys, TopologyKeysError, ANY_KEY, MAX_TOPOLOGY_KEYS};
pub use plan::*;
pub use select::plan;
