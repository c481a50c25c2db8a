//! The output of the filter: a [`ProxyPlan`], plain data for `nft-writer`.

use std::net::IpAddr;

use api_watch::{ObjectKey, Protocol};

/// What the proxy should do on one node: every service port with the
/// endpoints its traffic may go to, in a deterministic order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyPlan {
    /// Name of the node the plan is for.
    pub node: String,
    /// One entry per service port (with all its cluster IPs, and endpoints
    /// of every family), sorted by service key, then port name, then
    /// protocol.
    pub services: Vec<ServicePortPlan>,
    /// Objects or settings that were skipped or ignored, with the reason.
    pub problems: Vec<Problem>,
}

/// One service port as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortPlan {
    /// The Service.
    pub service: ObjectKey,
    /// The Service port's name (empty when unnamed).
    pub port_name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The cluster IPs this port listens on (one per family).
    pub cluster_ips: Vec<IpAddr>,
    /// The service port.
    pub port: u16,
    /// Endpoints that traffic to the cluster IP from this node may use, in
    /// a deterministic order (sorted by address, then port). Empty means
    /// the traffic is rejected.
    pub endpoints: Vec<EndpointTarget>,
    /// Why each endpoint of the service was kept or dropped.
    pub decisions: Vec<Decision>,
}

/// A destination that traffic can be DNATed to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointTarget {
    /// The endpoint's address.
    pub ip: IpAddr,
    /// The resolved target port.
    pub port: u16,
    /// The node the endpoint runs on, if known.
    pub node_name: Option<String>,
}

/// Why an endpoint was kept or dropped for one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The endpoint's address.
    pub ip: IpAddr,
    /// Whether the endpoint is used.
    pub kept: bool,
    /// A sentence for `nftopo explain`, e.g. "kept: node node-2 has
    /// kubernetes.io/hostname=node-2 like this node (topology key 1 of 2)".
    pub reason: String,
}

/// Something that was skipped or ignored while planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The object concerned (`namespace/name`).
    pub object: ObjectKey,
    /// What was wrong and what was done instead.
    pub message: String,
}
