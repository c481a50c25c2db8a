//! The plain model of the objects nftopo reads. Everything here is already
//! validated: addresses parsed, ports in range, protocols known.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

mod intern;
mod slice;

pub use intern::Names;
pub use slice::*;

/// Annotation carrying ordered topology keys for clusters whose API server
/// drops `spec.topologyKeys` (removed from Kubernetes in 1.22).
pub const TOPOLOGY_KEYS_ANNOTATION: &str = "nftopo.io/topology-keys";

/// Taint the cluster autoscaler puts on a node it is about to delete
/// (kube-proxy's `/healthz` answers 503 on such a node).
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// Annotation on an EndpointSlice with the time of the last change that
/// triggered it (RFC 3339); kube-proxy's network programming latency is
/// measured from it.
pub const LAST_CHANGE_TRIGGER_TIME_ANNOTATION: &str =
    "endpoints.kubernetes.io/last-change-trigger-time";

/// Label on an EndpointSlice naming the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Label that hands a Service to another proxy. kube-proxy's informers
/// leave out Services and EndpointSlices that carry it (whatever its
/// value), and so does nftopo. The EndpointSlice controller copies a
/// Service's labels onto its slices.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";

/// Label the EndpointSlice controller puts on the slices of a headless
/// Service; kube-proxy's informers leave out objects that carry it, and
/// so does nftopo.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// `namespace/name` of a namespaced object. Serialized as
/// `{"namespace": …, "name": …}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct ObjectKey {
    /// Namespace of the object.
    pub namespace: Arc<str>,
    /// Name of the object.
    pub name: Arc<str>,
}

impl ObjectKey {
    /// Builds a key from namespace and name. A key is cloned into the
    /// store, the index, the planner's entries and claims and the plan:
    /// shared strings make each copy a reference count, not two
    /// allocations.
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Layer-4 protocol of a service or endpoint port. Serialized in the
/// Kubernetes spelling (`"TCP"`, `"UDP"`, `"SCTP"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Protocol {
    /// TCP (the Kubernetes default).
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    /// The IANA protocol number (`meta l4proto`).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// The lowercase name `nft` uses (`tcp`, `udp`, `sctp`).
    pub fn nft_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// Parses the Kubernetes spelling (`TCP`, `UDP`, `SCTP`).
    pub fn from_k8s(s: &str) -> Option<Self> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.nft_name())
    }
}

/// A Service's `targetPort`: a number, or the name of a container port that
/// the EndpointSlice's ports resolve.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A named container port.
    Name(String),
}

/// `internalTrafficPolicy` / `externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    /// Any ready endpoint in the cluster (the default).
    #[default]
    Cluster,
    /// Only endpoints on this node.
    Local,
}

/// `spec.type` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceType {
    /// A virtual IP inside the cluster (the default).
    #[default]
    ClusterIp,
    /// ClusterIP plus a port on every node.
    NodePort,
    /// NodePort plus load-balancer ingress IPs.
    LoadBalancer,
    /// A DNS alias; kube-proxy ignores it and so do we.
    ExternalName,
}

/// An IP family, as in `spec.ipFamilies`. Serialized in the Kubernetes
/// spelling (`"IPv4"`, `"IPv6"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum IpFamily {
    /// IPv4.
    #[serde(rename = "IPv4")]
    V4,
    /// IPv6.
    #[serde(rename = "IPv6")]
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// Parses the Kubernetes spelling (`IPv4`, `IPv6`).
    pub fn from_k8s(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(IpFamily::V4),
            "IPv6" => Some(IpFamily::V6),
            _ => None,
        }
    }

    /// The Kubernetes spelling (`IPv4`, `IPv6`).
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `spec.sessionAffinityConfig.clientIP.timeoutSeconds` when it is not
/// written (Kubernetes' default: 3 hours).
pub const DEFAULT_SESSION_AFFINITY_TIMEOUT: u32 = 10800;

/// The largest `timeoutSeconds` Kubernetes accepts (one day).
pub const MAX_SESSION_AFFINITY_TIMEOUT: u32 = 86400;

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name; empty when the Service has a single unnamed port.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The port on the cluster IP.
    pub port: u16,
    /// Where traffic goes on the endpoint.
    pub target_port: TargetPort,
    /// The node port, when allocated.
    pub node_port: Option<u16>,
}

/// A Service, reduced to what the proxy needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    /// Namespace and name.
    pub key: ObjectKey,
    /// `spec.type`.
    pub service_type: ServiceType,
    /// `spec.clusterIPs` (or `spec.clusterIP`); empty for headless services.
    /// This list is what is proxied; when [`Self::ip_families`] is given
    /// too, the loader has checked that entry `i` is of family `i`.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.ipFamilies`, in order, without duplicates; empty when not
    /// written.
    pub ip_families: Vec<IpFamily>,
    /// `spec.ipFamilyPolicy`: `SingleStack`, `PreferDualStack` or
    /// `RequireDualStack`; `None` when not written.
    pub ip_family_policy: Option<String>,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// `spec.topologyKeys` exactly as written (validated by topology-filter).
    pub topology_keys: Option<Vec<String>>,
    /// `spec.internalTrafficPolicy`.
    pub internal_traffic_policy: TrafficPolicy,
    /// `spec.externalTrafficPolicy`.
    pub external_traffic_policy: TrafficPolicy,
    /// `spec.trafficDistribution` as written.
    pub traffic_distribution: Option<String>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` of the entries whose `ipMode`
    /// is `VIP` or unset (kube-proxy's `LoadBalancerVIPs`): entries with
    /// only a hostname, and those of `ipMode: Proxy` (the load balancer
    /// must see the traffic, e.g. for the PROXY protocol), are left out.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.loadBalancerSourceRanges`, each normalised to its network
    /// (`10.0.0.0/8`, `2001:db8::/32`: host bits cleared, no spaces), in
    /// the order written; IPv4 and IPv6 prefixes may be mixed.
    pub load_balancer_source_ranges: Vec<String>,
    /// `Some(timeoutSeconds)` for `spec.sessionAffinity: ClientIP` (from
    /// `spec.sessionAffinityConfig.clientIP.timeoutSeconds`, default
    /// [`DEFAULT_SESSION_AFFINITY_TIMEOUT`], in
    /// 1..=[`MAX_SESSION_AFFINITY_TIMEOUT`]); `None` without affinity.
    pub session_affinity_timeout: Option<u32>,
    /// `spec.healthCheckNodePort` (allocated for LoadBalancer services with
    /// `externalTrafficPolicy: Local`); `None` when not written or 0.
    pub health_check_node_port: Option<u16>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

impl Service {
    /// Whether traffic can reach the Service from outside the cluster: it
    /// is of type NodePort or LoadBalancer, or has external IPs or
    /// load-balancer ingress IPs (kube-proxy's `ExternallyAccessible`).
    /// `externalTrafficPolicy` only matters when this holds.
    pub fn is_externally_accessible(&self) -> bool {
        matches!(
            self.service_type,
            ServiceType::NodePort | ServiceType::LoadBalancer
        ) || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }
}

/// Everything the planner needs to know about the cluster, keyed for
/// deterministic iteration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterState {
    /// Services by namespace/name. Boxed: a Service is 288 bytes, and a
    /// tree filled in key order (a list) leaves its nodes half empty, so
    /// inline values cost about twice their size.
    pub services: BTreeMap<ObjectKey, Box<Service>>,
    /// EndpointSlices by the slice's own namespace/name (boxed, as the
    /// Services).
    pub endpoint_slices: BTreeMap<ObjectKey, Box<EndpointSlice>>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// Calico `BlockAffinity` objects by name (empty unless they are read:
    /// from manifests, or watched with Calico IPAM as the pod CIDR source).
    pub block_affinities: BTreeMap<String, BlockAffinity>,
    /// `ServiceCIDR` objects by name (empty when the cluster has none, or
    /// does not serve the API, or nftopo may not list them).
    pub service_cidrs: BTreeMap<String, ServiceCidr>,
}

impl ClusterState {
    /// Every service's slices, in slice-name order, built in one pass (use
    /// this rather than [`ClusterState::slices_for`] when visiting every
    /// service: that one scans all slices each time).
    pub fn slices_by_service(&self) -> BTreeMap<ObjectKey, Vec<&EndpointSlice>> {
        let mut index: BTreeMap<ObjectKey, Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in self.endpoint_slices.values() {
            index.entry(slice.service_key()).or_default().push(slice);
        }
        index
    }

    /// The prefixes of every ServiceCIDR, sorted, without duplicates.
    pub fn service_cidr_prefixes(&self) -> Vec<String> {
        let all: std::collections::BTreeSet<&String> =
            self.service_cidrs.values().flat_map(|s| &s.cidrs).collect();
        all.into_iter().cloned().collect()
    }

    /// The slices that belong to `service`, in name order.
    pub fn slices_for<'a>(
        &'a self,
        service: &'a ObjectKey,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.endpoint_slices
            .values()
            .map(|s| &**s)
            .filter(move |s| {
                s.key.namespace == service.namespace && *s.service_name == *service.name
            })
    }
}

#[cfg(test)]
mod tests;
