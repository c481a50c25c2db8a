//! EndpointSlices as the model keeps them, and the index from Services to
//! their slices.

use std::sync::Arc;

use super::*;

/// `addressType` of an EndpointSlice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    /// IPv4 addresses.
    IPv4,
    /// IPv6 addresses.
    IPv6,
    /// DNS names; not proxied.
    Fqdn,
}

/// One port of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    /// Name matching the Service port's name (empty when unnamed).
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The port number on the endpoints.
    pub port: u16,
}

/// Readiness of an endpoint (`conditions`), with the API's reading of
/// missing fields already applied, as kube-proxy applies it (ready: true;
/// serving: true; terminating: false).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    /// `conditions.ready`.
    pub ready: bool,
    /// `conditions.serving`.
    pub serving: bool,
    /// `conditions.terminating`.
    pub terminating: bool,
}

impl Default for Conditions {
    fn default() -> Self {
        Self {
            ready: true,
            serving: true,
            terminating: false,
        }
    }
}

/// One endpoint of a slice, kept small (the model holds one per pod of
/// every Service): its first address inline, its node and zone names
/// shared ([`Names`](super::Names)), and the rarely set hints and v1beta1
/// topology map behind one pointer, absent when all are empty. Build one
/// with [`Endpoint::new`] and the `on_node`, `in_zone`, `for_zones`,
/// `for_nodes`, `with_topology` methods.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// The first of `addresses`, the one kube-proxy uses (the others are
    /// checked when the slice is converted, then dropped). `None` for the
    /// endpoints of FQDN slices, or an endpoint that lists none.
    pub address: Option<IpAddr>,
    /// Readiness.
    pub conditions: Conditions,
    /// `nodeName` (v1), or `topology["kubernetes.io/hostname"]` (v1beta1);
    /// one copy per name, shared through [`Names`](super::Names).
    pub node_name: Option<Arc<str>>,
    /// `zone` (v1), or `topology["topology.kubernetes.io/zone"]` (v1beta1);
    /// shared as `node_name`.
    pub zone: Option<Arc<str>>,
    /// Hints and topology; `None` when all three are empty.
    pub(crate) extras: Option<Box<EndpointExtras>>,
}

/// The parts of an [`Endpoint`] most endpoints do not have.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct EndpointExtras {
    hint_zones: Vec<String>,
    hint_nodes: Vec<String>,
    topology: BTreeMap<String, String>,
}

impl EndpointExtras {
    fn is_empty(&self) -> bool {
        self.hint_zones.is_empty() && self.hint_nodes.is_empty() && self.topology.is_empty()
    }
}

static NO_TOPOLOGY: BTreeMap<String, String> = BTreeMap::new();

impl Endpoint {
    /// An endpoint at `address` with `conditions`, on no known node or
    /// zone, without hints or topology.
    pub fn new(address: IpAddr, conditions: Conditions) -> Self {
        Endpoint {
            address: Some(address),
            conditions,
            ..Endpoint::default()
        }
    }

    /// This endpoint on node `name`.
    pub fn on_node(mut self, name: impl Into<Arc<str>>) -> Self {
        self.node_name = Some(name.into());
        self
    }

    /// This endpoint in zone `zone`.
    pub fn in_zone(mut self, zone: impl Into<Arc<str>>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// This endpoint with `hints.forZones` `zones` (replacing any).
    pub fn for_zones<S: Into<String>>(mut self, zones: impl IntoIterator<Item = S>) -> Self {
        let zones = zones.into_iter().map(Into::into).collect();
        self.change_extras(|x| x.hint_zones = zones);
        self
    }

    /// This endpoint with `hints.forNodes` `nodes` (replacing any).
    pub fn for_nodes<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        let nodes = nodes.into_iter().map(Into::into).collect();
        self.change_extras(|x| x.hint_nodes = nodes);
        self
    }

    /// This endpoint with the v1beta1 `topology` map `topology`.
    pub fn with_topology(mut self, topology: BTreeMap<String, String>) -> Self {
        self.set_topology(topology);
        self
    }

    /// Sets the v1beta1 `topology` map.
    pub fn set_topology(&mut self, topology: BTreeMap<String, String>) {
        self.change_extras(|x| x.topology = topology);
    }

    /// `hints.forZones[].name`.
    pub fn hint_zones(&self) -> &[String] {
        self.extras.as_ref().map_or(&[], |x| &x.hint_zones)
    }

    /// `hints.forNodes[].name`.
    pub fn hint_nodes(&self) -> &[String] {
        self.extras.as_ref().map_or(&[], |x| &x.hint_nodes)
    }

    /// The endpoint has hints (of either kind).
    pub fn has_hints(&self) -> bool {
        !self.hint_zones().is_empty() || !self.hint_nodes().is_empty()
    }

    /// The v1beta1 `topology` map as written (empty for v1 slices). Used
    /// for topology keys when the endpoint's Node object is unknown.
    pub fn topology(&self) -> &BTreeMap<String, String> {
        self.extras.as_ref().map_or(&NO_TOPOLOGY, |x| &x.topology)
    }

    fn change_extras(&mut self, change: impl FnOnce(&mut EndpointExtras)) {
        let mut extras = self.extras.take().unwrap_or_default();
        change(&mut extras);
        self.extras = (!extras.is_empty()).then_some(extras);
    }

    /// Whether this copy of an endpoint replaces `kept`, an earlier copy
    /// of the same address and port from another slice of the same
    /// Service: only a copy that is not terminating replaces a terminating
    /// one (kube-proxy's endpointslicecache.go: a pod IP reused while the
    /// old pod terminates belongs to the running pod). Otherwise the
    /// earlier copy stays, so that the choice does not depend on anything
    /// but slice order.
    pub fn replaces(&self, kept: &Endpoint) -> bool {
        kept.conditions.terminating && !self.conditions.terminating
    }
}

/// An EndpointSlice, reduced to what the proxy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSlice {
    /// Namespace and name of the slice itself.
    pub key: ObjectKey,
    /// The Service it belongs to (label `kubernetes.io/service-name`).
    pub service_name: String,
    /// `addressType`.
    pub address_type: AddressType,
    /// Ports.
    pub ports: Vec<EndpointPort>,
    /// Endpoints.
    pub endpoints: Vec<Endpoint>,
}

impl EndpointSlice {
    /// The Service this slice belongs to.
    pub fn service_key(&self) -> ObjectKey {
        ObjectKey::new(self.key.namespace.clone(), self.service_name.clone())
    }
}

/// A Node, reduced to what the proxy and the route syncer need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `status.addresses` as (type, address), e.g. ("InternalIP", 172.31.11.157).
    pub addresses: Vec<(String, IpAddr)>,
    /// `spec.podCIDRs` (or `spec.podCIDR`), as written.
    pub pod_cidrs: Vec<String>,
    /// The node is going away: `metadata.deletionTimestamp` is set, or it
    /// carries the [`TO_BE_DELETED_TAINT`] taint.
    pub deleting: bool,
}

/// Calico IPAM's `BlockAffinity` (crd.projectcalico.org/v1): a block of
/// pod addresses and the node it is affine to. Only the route syncer uses
/// it, when pod CIDRs come from Calico IPAM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockAffinity {
    /// `metadata.name`.
    pub name: String,
    /// `spec.cidr`, as written (e.g. `10.42.54.128/26`).
    pub cidr: String,
    /// `spec.node`: the node the block belongs to.
    pub node: String,
    /// `spec.state`: `confirmed`, `pending` or `pendingDeletion`.
    pub state: String,
    /// `spec.deleted` is `"true"`: Calico is releasing the block.
    pub deleted: bool,
}

/// `networking.k8s.io/v1 ServiceCIDR`: a range cluster IPs are allocated
/// from. Traffic to an address inside one that no Service holds is
/// dropped (kube-proxy's `cluster-ips-check`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceCidr {
    /// `metadata.name`.
    pub name: String,
    /// `spec.cidrs`, each normalised to its network (`10.43.0.0/16`,
    /// `fd00:43::/112`: host bits cleared), in the order written.
    pub cidrs: Vec<String>,
}

/// Which EndpointSlices belong to each Service (by the slice's
/// `kubernetes.io/service-name`), kept next to a [`ClusterState`] by
/// whoever changes its slices (the API source's store does), so that
/// re-planning one Service finds its slices without scanning the others.
///
/// A Service's slices are a sorted vector: almost always one or two,
/// where a set's first insert allocates a whole tree leaf (11 slots,
/// about 540 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceIndex(BTreeMap<ObjectKey, Vec<ObjectKey>>);

impl SliceIndex {
    /// The index of every slice in `state` (one pass).
    pub fn build(state: &ClusterState) -> Self {
        let mut index = SliceIndex::default();
        for slice in state.endpoint_slices.values() {
            index.insert(slice);
        }
        index
    }

    /// `slice` was added (or is the new version of a changed slice).
    pub fn insert(&mut self, slice: &EndpointSlice) {
        let slices = self.0.entry(slice.service_key()).or_default();
        if let Err(at) = slices.binary_search(&slice.key) {
            slices.insert(at, slice.key.clone());
        }
    }

    /// `slice` (as it was) was removed or replaced.
    pub fn remove(&mut self, slice: &EndpointSlice) {
        let service = slice.service_key();
        if let Some(slices) = self.0.get_mut(&service) {
            if let Ok(at) = slices.binary_search(&slice.key) {
                slices.remove(at);
            }
            if slices.is_empty() {
                self.0.remove(&service);
            }
        }
    }

    /// The slices of `service` in `state`, in slice-name order (as
    /// [`ClusterState::slices_by_service`] gives them).
    pub fn slices_of<'a>(
        &self,
        state: &'a ClusterState,
        service: &ObjectKey,
    ) -> Vec<&'a EndpointSlice> {
        self.0
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|k| state.endpoint_slices.get(k).map(|s| &**s))
            .collect()
    }
}
