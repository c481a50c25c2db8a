//! `topology-filter` decides, for every service port, which endpoints this
//! node may send traffic to, and records why. It is pure: plain data in
//! ([`api_watch::ClusterState`] and the node's name), plain data out
//! ([`ProxyPlan`], serializable to JSON); no I/O, no clock, no environment.
//!
//! It does not build rules (that is `nft-writer`) and does not read the
//! cluster (that is `api-watch`).
//!
//! Per service port it follows kube-proxy's `CategorizeEndpoints` (as of
//! Kubernetes 1.35): a cluster-wide set and a node-local set, ready
//! endpoints first and serving-but-terminating ones when none is ready,
//! and whether the port has any endpoint at all, all decided for the IPv4
//! and the IPv6 endpoints apart, as kube-proxy's per-family proxiers do.
//! The rules, in order of precedence:
//!
//! 1. **Topology keys** (`spec.topologyKeys` or the annotation
//!    `nftopo.io/topology-keys`, the original ServiceTopology; nftopo's
//!    own extension, kube-proxy dropped them in 1.22): when valid, they
//!    choose the cluster set, and the Service's `internalTrafficPolicy:
//!    Local` and the EndpointSlice hints are ignored (said in every
//!    reason). Invalid keys are reported as a [`Problem`] and ignored,
//!    never turned into an outage.
//! 2. **Traffic policies**: `internalTrafficPolicy: Local` makes the local
//!    set the one cluster-IP traffic uses; `externalTrafficPolicy: Local`
//!    (only on externally accessible Services) adds the local set for
//!    external traffic and keeps the cluster set for short-circuit traffic.
//!    The local set is never filtered by topology.
//! 3. **Hints** (`hints.forNodes`, then `hints.forZones` of the
//!    EndpointSlices): narrow the cluster set to the endpoints hinted for
//!    this node, else for its zone, when every ready endpoint has such a
//!    hint and one matches; used whenever present, whatever the Service
//!    asks (`spec.trafficDistribution` `PreferSameNode`, `PreferSameZone`
//!    or its alias `PreferClose`, and the `topology-mode` annotations,
//!    only tell the EndpointSlice controller to write them).
//!
//! Main items: [`plan`] (and per Service: [`plan_service`], [`replan`],
//! with [`node_dependents`] for Node changes),
//! [`ProxyPlan`], [`ServicePortPlan`],
//! [`EndpointTarget`], [`Decision`], [`Rule`], [`Problem`],
//! [`topology_keys`].

mod candidate;
mod categorize;
mod hints;
mod keys;
mod keys_filter;
mod plan;
mod replan;
mod select;
#[cfg(test)]
mod test_support;

pub use hints::{
    PREFER_CLOSE, PREFER_SAME_NODE, PREFER_SAME_ZONE, TOPOLOGY_AWARE_HINTS_ANNOTATION,
    TOPOLOGY_MODE_ANNOTATION,
};
pub use keys::{topology_keys, TopologyKeysError, ANY_KEY, MAX_TOPOLOGY_KEYS};
pub use plan::*;
pub use replan::{replan, replan_indexed};
pub use select::{
    depends_on_nodes, node_addresses, node_dependents, plan, plan_service, ServicePlan,
};
