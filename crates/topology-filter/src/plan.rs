//! The output of the filter: a [`ProxyPlan`], plain data for `nft-writer`
//! and `nftopo explain` (every type here serializes to JSON).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use api_watch::{Cidr, ObjectKey, Protocol};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// What the proxy should do on one node: every service port with the
/// endpoints its traffic may go to, in a deterministic order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ProxyPlan {
    /// Name of the node the plan is for.
    pub node: String,
    /// This node's addresses from its Node object: the `InternalIP` ones,
    /// or the `ExternalIP` ones when it has no `InternalIP`, in the order
    /// of `status.addresses` (both families mixed). Empty when the Node is
    /// unknown.
    pub node_addresses: Vec<IpAddr>,
    /// This node's `spec.podCIDRs` (or `spec.podCIDR`), in order, those
    /// that parse (host bits cleared); empty when the Node is unknown or
    /// has none yet. Only `--detect-local-mode NodeCIDR` uses them.
    pub node_pod_cidrs: Vec<Cidr>,
    /// The prefixes of every `networking.k8s.io/v1` ServiceCIDR
    /// (`spec.cidrs`, normalised), sorted, without duplicates: traffic to
    /// an address inside them that no Service holds is dropped. Empty
    /// without ServiceCIDR objects.
    pub service_cidrs: Vec<Cidr>,
    /// One entry per service port (with all its cluster IPs, and endpoints
    /// of every family), sorted by service key, then port name, then
    /// protocol.
    pub services: Vec<ServicePortPlan>,
    /// Objects or settings that were skipped or ignored, with the reason.
    pub problems: Vec<Problem>,
}

/// One service port as the data plane sees it. Its JSON has the fields in
/// this order, with `endpoints` ([`Self::endpoints`]) after
/// `session_affinity_timeout`.
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
    /// The node port, when allocated.
    pub node_port: Option<u16>,
    /// The Service's `spec.externalIPs` (both families mixed).
    pub external_ips: Vec<IpAddr>,
    /// The Service's load-balancer ingress IPs (both families mixed).
    pub load_balancer_ips: Vec<IpAddr>,
    /// The Service's `spec.loadBalancerSourceRanges`, normalised
    /// (`10.0.0.0/8`, `2001:db8::/32`; both families mixed); empty means
    /// no firewall.
    pub load_balancer_source_ranges: Vec<Cidr>,
    /// External traffic (node port, external IPs, load-balancer IPs) uses
    /// [`Self::local_endpoints`]: `externalTrafficPolicy: Local` on an
    /// externally accessible Service (type NodePort or LoadBalancer, or
    /// with external or load-balancer IPs, or a node port).
    pub external_policy_local: bool,
    /// Internal traffic (to the cluster IPs) uses
    /// [`Self::local_endpoints`]: `internalTrafficPolicy: Local` without
    /// valid topology keys; exactly when [`Self::endpoints`] is the local
    /// set.
    pub internal_policy_local: bool,
    /// `Some(timeoutSeconds)` for `sessionAffinity: ClientIP`; `None`
    /// without affinity.
    pub session_affinity_timeout: Option<u32>,
    /// Whether the port ever uses cluster-wide endpoints (kube-proxy's
    /// `UsesClusterEndpoints`): false only for `internalTrafficPolicy:
    /// Local` without valid topology keys when external traffic is Local
    /// too or the Service is not externally accessible.
    pub uses_cluster_endpoints: bool,
    /// Whether the port ever uses node-local endpoints (kube-proxy's
    /// `UsesLocalEndpoints`): `internalTrafficPolicy: Local` (without
    /// valid topology keys), or `externalTrafficPolicy: Local` on an
    /// externally accessible Service.
    pub uses_local_endpoints: bool,
    /// The endpoints for cluster-wide traffic (after topology keys or
    /// hints); empty when [`Self::uses_cluster_endpoints`] is false.
    /// External traffic uses them when `externalTrafficPolicy` is Cluster;
    /// with eTP Local they still serve traffic from this node's own pods
    /// and host to the external addresses (the short circuit).
    pub cluster_endpoints: Vec<EndpointTarget>,
    /// The endpoints on this node (ready ones, else serving and terminating
    /// ones); empty when [`Self::uses_local_endpoints`] is false.
    pub local_endpoints: Vec<EndpointTarget>,
    /// Whether the port has any usable endpoint anywhere in the cluster (a
    /// ready one, or a serving and terminating one), of either family,
    /// whatever this node may use. The data plane decides per family:
    /// [`Self::has_any_endpoints_for`].
    pub has_any_endpoints: bool,
    /// [`Self::has_any_endpoints`] for the IPv4 endpoints alone.
    pub has_any_ipv4_endpoints: bool,
    /// [`Self::has_any_endpoints`] for the IPv6 endpoints alone.
    pub has_any_ipv6_endpoints: bool,
    /// Every serving endpoint of the port (ready, or serving and
    /// terminating; `conditions.serving`), whatever the traffic policies,
    /// topology keys and hints choose, sorted: the endpoints an existing
    /// UDP flow may keep (kube-proxy's conntrack clean-up keeps exactly
    /// these, so that a change of the Service does not cut flows, as it
    /// does not cut TCP connections): read by
    /// [`Self::serving_endpoints`]. `None` when they are the addresses of
    /// [`Self::cluster_endpoints`], as they are for most ports (one list
    /// per port less).
    pub serving_if_other: Option<Vec<SocketAddr>>,
    /// The rule that chose [`Self::endpoints`].
    pub rule: Rule,
    /// `spec.trafficDistribution` as written, for explanations.
    pub traffic_distribution: Option<String>,
    /// Why each endpoint of the service port is or is not in each set, one
    /// per endpoint address, sorted by address then port.
    pub decisions: Vec<Decision>,
}

impl ServicePortPlan {
    /// Endpoints that traffic to the cluster IP from this node may use, in
    /// a deterministic order (sorted by address, then port). Empty means
    /// the traffic is rejected. This is [`Self::local_endpoints`] when the
    /// Service's internal traffic is node-local
    /// ([`Self::internal_policy_local`]: `internalTrafficPolicy: Local`
    /// without valid topology keys), else [`Self::cluster_endpoints`]; not
    /// a third list kept in the plan.
    pub fn endpoints(&self) -> &[EndpointTarget] {
        if self.internal_policy_local {
            &self.local_endpoints
        } else {
            &self.cluster_endpoints
        }
    }

    /// Every serving endpoint of the port, sorted (see
    /// [`Self::serving_if_other`]).
    pub fn serving_endpoints(&self) -> Vec<SocketAddr> {
        match &self.serving_if_other {
            Some(serving) => serving.clone(),
            None => self
                .cluster_endpoints
                .iter()
                .map(|e| SocketAddr::new(e.ip, e.port))
                .collect(),
        }
    }

    /// Whether the port has a usable endpoint anywhere in the cluster in
    /// the family of `addr` (kube-proxy decides it in each family's
    /// proxier): with one, traffic of that family that this node may not
    /// send anywhere is dropped; without, it is rejected.
    pub fn has_any_endpoints_for(&self, addr: &IpAddr) -> bool {
        if addr.is_ipv4() {
            self.has_any_ipv4_endpoints
        } else {
            self.has_any_ipv6_endpoints
        }
    }
}

/// The fields in declaration order, with [`ServicePortPlan::endpoints`]
/// where the list used to be stored: the JSON of `nftopo explain` and of
/// the daemon's `/debug/plan` is unchanged.
impl Serialize for ServicePortPlan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Destructured without `..`: a new field does not compile until it
        // is serialized here too.
        let ServicePortPlan {
            service,
            port_name,
            protocol,
            cluster_ips,
            port,
            node_port,
            external_ips,
            load_balancer_ips,
            load_balancer_source_ranges,
            external_policy_local,
            internal_policy_local,
            session_affinity_timeout,
            uses_cluster_endpoints,
            uses_local_endpoints,
            cluster_endpoints,
            local_endpoints,
            has_any_endpoints,
            has_any_ipv4_endpoints,
            has_any_ipv6_endpoints,
            serving_if_other: _,
            rule,
            traffic_distribution,
            decisions,
        } = self;
        let mut s = serializer.serialize_struct("ServicePortPlan", 24)?;
        s.serialize_field("service", service)?;
        s.serialize_field("port_name", port_name)?;
        s.serialize_field("protocol", protocol)?;
        s.serialize_field("cluster_ips", cluster_ips)?;
        s.serialize_field("port", port)?;
        s.serialize_field("node_port", node_port)?;
        s.serialize_field("external_ips", external_ips)?;
        s.serialize_field("load_balancer_ips", load_balancer_ips)?;
        s.serialize_field("load_balancer_source_ranges", load_balancer_source_ranges)?;
        s.serialize_field("external_policy_local", external_policy_local)?;
        s.serialize_field("internal_policy_local", internal_policy_local)?;
        s.serialize_field("session_affinity_timeout", session_affinity_timeout)?;
        s.serialize_field("endpoints", self.endpoints())?;
        s.serialize_field("uses_cluster_endpoints", uses_cluster_endpoints)?;
        s.serialize_field("uses_local_endpoints", uses_local_endpoints)?;
        s.serialize_field("cluster_endpoints", cluster_endpoints)?;
        s.serialize_field("local_endpoints", local_endpoints)?;
        s.serialize_field("has_any_endpoints", has_any_endpoints)?;
        s.serialize_field("has_any_ipv4_endpoints", has_any_ipv4_endpoints)?;
        s.serialize_field("has_any_ipv6_endpoints", has_any_ipv6_endpoints)?;
        s.serialize_field("serving_endpoints", &self.serving_endpoints())?;
        s.serialize_field("rule", rule)?;
        s.serialize_field("traffic_distribution", traffic_distribution)?;
        s.serialize_field("decisions", decisions)?;
        s.end()
    }
}

/// A destination that traffic can be DNATed to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct EndpointTarget {
    /// The endpoint's address.
    pub ip: IpAddr,
    /// The resolved target port.
    pub port: u16,
    /// The node the endpoint runs on, if known (shared with the
    /// EndpointSlice's copy).
    pub node_name: Option<Arc<str>>,
    /// The endpoint is serving but terminating: it is used only because no
    /// ready endpoint was available (kube-proxy's terminating-endpoint
    /// fallback).
    pub terminating: bool,
}

/// Why one endpoint address is or is not used, for each set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The endpoint's address.
    pub ip: IpAddr,
    /// The resolved target port.
    pub port: u16,
    /// The node the endpoint runs on, if known (shared with the
    /// EndpointSlice's copy).
    pub node_name: Option<Arc<str>>,
    /// The endpoint is in [`ServicePortPlan::cluster_endpoints`].
    pub for_cluster: bool,
    /// The endpoint is in [`ServicePortPlan::local_endpoints`].
    pub for_local: bool,
    /// A sentence for `nftopo explain`. When the port uses one set, it
    /// starts with `kept:` or `dropped:`; when it uses both, it reads
    /// `cluster: kept: …; local: dropped: …` (or once, when both agree).
    pub reason: String,
}

impl Decision {
    /// Whether any traffic from this node may go to the endpoint.
    pub fn kept(&self) -> bool {
        self.for_cluster || self.for_local
    }
}

/// The rule that decided a service port's [`ServicePortPlan::endpoints`].
/// `Display` gives a short label for explanations; it serializes as that
/// label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Topology keys (`spec.topologyKeys` or `nftopo.io/topology-keys`).
    TopologyKeys {
        /// The keys, in order.
        keys: Vec<String>,
        /// 1-based position of the key that matched; `None` when none did
        /// (no endpoints: traffic is rejected).
        matched: Option<usize>,
    },
    /// EndpointSlice hints for this node's zone or name.
    Hints {
        /// `PreferSameZone` (zone hints) or `PreferSameNode` (node hints),
        /// the mode kube-proxy reports.
        mode: String,
        /// The zone or node name the hints matched.
        value: String,
    },
    /// `internalTrafficPolicy: Local`.
    InternalLocal,
    /// No topology rule: every usable endpoint.
    None,
    /// The IPv4 and the IPv6 endpoints were chosen by different rules
    /// (kube-proxy decides each family apart; say, every IPv4 endpoint has
    /// hints and an IPv6 one has none).
    PerFamily {
        /// The rule for the IPv4 endpoints.
        ipv4: Box<Rule>,
        /// The rule for the IPv6 endpoints.
        ipv6: Box<Rule>,
    },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::TopologyKeys { keys, matched } => {
                write!(f, "topologyKeys [{}] ", keys.join(", "))?;
                match matched {
                    Some(i) => write!(f, "(key {i} matched)"),
                    None => f.write_str("(no key matched)"),
                }
            }
            Rule::Hints { mode, value } => {
                let what = if mode == crate::hints::PREFER_SAME_NODE {
                    "node"
                } else {
                    "zone"
                };
                write!(f, "hints: {mode} ({what} {value})")
            }
            Rule::InternalLocal => f.write_str("internalTrafficPolicy: Local"),
            Rule::None => f.write_str("none"),
            Rule::PerFamily { ipv4, ipv6 } => write!(f, "IPv4: {ipv4}; IPv6: {ipv6}"),
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Something that was skipped or ignored while planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object concerned (`namespace/name`).
    pub object: ObjectKey,
    /// What kind of problem, for counting (a metric label).
    pub kind: ProblemKind,
    /// What was wrong and what was done instead.
    pub message: String,
}

/// The kinds of [`Problem`]. None of them stops traffic: the setting is
/// ignored and the Service keeps working without it; the fix is to correct
/// the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ProblemKind {
    /// The topology keys break a ServiceTopology rule; the Service is not
    /// filtered by topology keys.
    InvalidTopologyKeys,
    /// `service.kubernetes.io/topology-mode` (or the older
    /// `service.kubernetes.io/topology-aware-hints`) has a value other
    /// than Auto, auto, Disabled, disabled or empty; hints are not used
    /// because of it.
    UnknownHintsAnnotation,
    /// `spec.trafficDistribution` has a value nftopo does not know; hints
    /// are not used because of it.
    UnknownTrafficDistribution,
    /// A second service port claims an address, protocol and port already
    /// served (reported by `nft-writer`); it is left out.
    DuplicateServicePort,
    /// An EndpointSlice of a proxied Service has `addressType: FQDN`; its
    /// endpoints are not proxied (as in kube-proxy). One problem per slice.
    FqdnSliceIgnored,
}

impl ProblemKind {
    /// A stable snake_case name, e.g. `invalid_topology_keys`, for metric
    /// labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::InvalidTopologyKeys => "invalid_topology_keys",
            ProblemKind::UnknownHintsAnnotation => "unknown_hints_annotation",
            ProblemKind::UnknownTrafficDistribution => "unknown_traffic_distribution",
            ProblemKind::DuplicateServicePort => "duplicate_service_port",
            ProblemKind::FqdnSliceIgnored => "fqdn_slice_ignored",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
