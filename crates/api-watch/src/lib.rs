//! `api-watch` owns the cluster's state as one node needs it: Services,
//! EndpointSlices (discovery.k8s.io/v1, and v1beta1 with its `topology`
//! map) and Nodes, reduced to the plain [`ClusterState`] model that the
//! planner consumes.
//!
//! It does not decide anything about traffic (that is `topology-filter`)
//! and it never talks to the kernel. Today it has one source, manifest
//! files ([`file`]); the API-server source (kube-rs reflectors) produces
//! the same [`ClusterState`].
//!
//! Main types: [`ClusterState`], [`Service`], [`EndpointSlice`], [`Node`],
//! and [`LoadError`] for objects that were skipped.

pub mod api;
mod convert;
pub mod file;
mod model;

pub use model::*;
