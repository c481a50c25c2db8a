//! The kinds the API source watches, and how each maps onto the
//! model: its identity, its conversion and its place in [`ClusterState`].

use std::fmt;
use std::time::SystemTime;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use serde_json::Value;

use crate::convert::{self, FieldError};
use crate::{ClusterState, ObjectKey, LAST_CHANGE_TRIGGER_TIME_ANNOTATION};

/// The kind of a watched object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1 Service`.
    Service,
    /// `discovery.k8s.io/v1 EndpointSlice`.
    EndpointSlice,
    /// `v1 Node`.
    Node,
    /// `crd.projectcalico.org/v1 BlockAffinity` (watched only when pod
    /// CIDRs come from Calico IPAM).
    BlockAffinity,
    /// `networking.k8s.io/v1 ServiceCIDR` (optional: a cluster that does
    /// not serve it, or does not let nftopo list it, has none).
    ServiceCidr,
}

impl Kind {
    /// The Kubernetes kind name (`Service`, `EndpointSlice`, `Node`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Node => "Node",
            Kind::BlockAffinity => "BlockAffinity",
            Kind::ServiceCidr => "ServiceCIDR",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A k8s-openapi type the source watches. Identity is `namespace/name`
/// from the metadata (namespace empty for Nodes), so that an object is
/// found again on delete even when it never converted.
pub(crate) trait Watched {
    /// The model type.
    type Model: Clone + PartialEq;
    /// Which kind this is.
    const KIND: Kind;
    /// The object's metadata.
    fn meta(&self) -> &ObjectMeta;
    /// Converts to the model.
    fn convert(&self) -> Result<Self::Model, FieldError>;
    /// The model entry of `id` in `state`.
    fn get<'a>(state: &'a ClusterState, id: &ObjectKey) -> Option<&'a Self::Model>;
    /// Puts `model` into `state` under `id`.
    fn insert(state: &mut ClusterState, id: &ObjectKey, model: Self::Model);
    /// Removes `id` from `state`.
    fn remove(state: &mut ClusterState, id: &ObjectKey);
    /// The ids of this kind in `state`.
    fn ids(state: &ClusterState) -> Vec<ObjectKey>;
    /// When the change this object carries was triggered (EndpointSlices'
    /// `endpoints.kubernetes.io/last-change-trigger-time`).
    fn trigger_time(&self) -> Option<SystemTime> {
        None
    }

    /// `namespace/name` of the object (namespace `default` when missing
    /// for namespaced kinds, as the converters read it; empty for the
    /// cluster-scoped Nodes, BlockAffinities and ServiceCIDRs).
    fn id(&self) -> ObjectKey {
        let meta = self.meta();
        let name = meta.name.clone().unwrap_or_default();
        if matches!(
            Self::KIND,
            Kind::Node | Kind::BlockAffinity | Kind::ServiceCidr
        ) {
            return ObjectKey::new("", name);
        }
        let namespace = meta
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        ObjectKey::new(namespace, name)
    }
}

impl Watched for core::Service {
    type Model = crate::Service;
    const KIND: Kind = Kind::Service;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn convert(&self) -> Result<crate::Service, FieldError> {
        // The API server drops `spec.topologyKeys`: only the annotation
        // form of topology keys reaches us from it.
        convert::service(self, &Value::Null)
    }
    fn get<'a>(state: &'a ClusterState, id: &ObjectKey) -> Option<&'a crate::Service> {
        state.services.get(id).map(|s| &**s)
    }
    fn insert(state: &mut ClusterState, id: &ObjectKey, model: crate::Service) {
        state.services.insert(id.clone(), Box::new(model));
    }
    fn remove(state: &mut ClusterState, id: &ObjectKey) {
        state.services.remove(id);
    }
    fn ids(state: &ClusterState) -> Vec<ObjectKey> {
        state.services.keys().cloned().collect()
    }
}

impl Watched for discovery::EndpointSlice {
    type Model = crate::EndpointSlice;
    const KIND: Kind = Kind::EndpointSlice;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn convert(&self) -> Result<crate::EndpointSlice, FieldError> {
        convert::slice_v1(self)
    }
    fn get<'a>(state: &'a ClusterState, id: &ObjectKey) -> Option<&'a crate::EndpointSlice> {
        state.endpoint_slices.get(id).map(|s| &**s)
    }
    fn insert(state: &mut ClusterState, id: &ObjectKey, model: crate::EndpointSlice) {
        state.endpoint_slices.insert(id.clone(), Box::new(model));
    }
    fn remove(state: &mut ClusterState, id: &ObjectKey) {
        state.endpoint_slices.remove(id);
    }
    fn ids(state: &ClusterState) -> Vec<ObjectKey> {
        state.endpoint_slices.keys().cloned().collect()
    }
    fn trigger_time(&self) -> Option<SystemTime> {
        let written = self
            .metadata
            .annotations
            .as_ref()?
            .get(LAST_CHANGE_TRIGGER_TIME_ANNOTATION)?;
        let parsed = written.parse::<k8s_openapi::jiff::Timestamp>().ok()?;
        Some(SystemTime::from(parsed))
    }
}

impl Watched for core::Node {
    type Model = crate::Node;
    const KIND: Kind = Kind::Node;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn convert(&self) -> Result<crate::Node, FieldError> {
        convert::node(self)
    }
    fn get<'a>(state: &'a ClusterState, id: &ObjectKey) -> Option<&'a crate::Node> {
        state.nodes.get(&*id.name)
    }
    fn insert(state: &mut ClusterState, id: &ObjectKey, model: crate::Node) {
        state.nodes.insert(id.name.to_string(), model);
    }
    fn remove(state: &mut ClusterState, id: &ObjectKey) {
        state.nodes.remove(&*id.name);
    }
    fn ids(state: &ClusterState) -> Vec<ObjectKey> {
        state
            .nodes
            .keys()
            .map(|n| ObjectKey::new("", n.clone()))
            .collect()
    }
}

impl Watched for networking::ServiceCIDR {
    type Model = crate::ServiceCidr;
    const KIND: Kind = Kind::ServiceCidr;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn convert(&self) -> Result<crate::ServiceCidr, FieldError> {
        convert::service_cidr(self)
    }
    fn get<'a>(state: &'a ClusterState, id: &ObjectKey) -> Option<&'a crate::ServiceCidr> {
        state.service_cidrs.get(&*id.name)
    }
    fn insert(state: &mut ClusterState, id: &ObjectKey, model: crate::ServiceCidr) {
        state.service_cidrs.insert(id.name.to_string(), model);
    }
    fn remove(state: &mut ClusterState, id: &ObjectKey) {
        state.service_cidrs.remove(&*id.name);
    }
    fn ids(state: &ClusterState) -> Vec<ObjectKey> {
        state
            .service_cidrs
            .keys()
            .map(|n| ObjectKey::new("", n.clone()))
            .collect()
    }
}

/// Calico's `BlockAffinity` CRD: cluster-scoped, no k8s-openapi type, so
/// watched as a [`DynamicObject`].
pub(crate) fn block_affinity_resource() -> ApiResource {
    ApiResource {
        group: "crd.projectcalico.org".into(),
        version: "v1".into(),
        api_version: convert::CALICO_API_VERSION.into(),
        kind: "BlockAffinity".into(),
        plural: "blockaffinities".into(),
    }
}

impl Watched for DynamicObject {
    type Model = crate::BlockAffinity;
    const KIND: Kind = Kind::BlockAffinity;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn convert(&self) -> Result<crate::BlockAffinity, FieldError> {
        convert::block_affinity(self.metadata.name.as_deref(), &self.data["spec"])
    }
    fn get<'a>(state: &'a ClusterState, id: &ObjectKey) -> Option<&'a crate::BlockAffinity> {
        state.block_affinities.get(&*id.name)
    }
    fn insert(state: &mut ClusterState, id: &ObjectKey, model: crate::BlockAffinity) {
        state.block_affinities.insert(id.name.to_string(), model);
    }
    fn remove(state: &mut ClusterState, id: &ObjectKey) {
        state.block_affinities.remove(&*id.name);
    }
    fn ids(state: &ClusterState) -> Vec<ObjectKey> {
        state
            .block_affinities
            .keys()
            .map(|n| ObjectKey::new("", n.clone()))
            .collect()
    }
}
