//! `api-watch` owns the cluster's state as one node needs it: Services,
//! EndpointSlices (discovery.k8s.io/v1, and v1beta1 with its `topology`
//! map) and Nodes, reduced to the plain [`ClusterState`] model that the
//! planner consumes.
//!
//! It does not decide anything about traffic (that is `topology-filter`)
//! and it never talks to the kernel. It has two sources with one output:
//! manifest files ([`file`](mod@file)) and the API server ([`api`]: kube-rs
//! watchers, merged into one store). Both convert
//! through the same code, so an object means the same from either.
//!
//! Main types: [`ClusterState`], [`Service`], [`EndpointSlice`], [`Node`];
//! [`Cidr`], the one IP prefix type of every crate (strict, or read as
//! kube-proxy reads an object's prefixes with [`Cidr::parse_sloppy`]);
//! [`file::LoadError`] and [`api::ObjectError`] for objects that were
//! skipped; [`api::Watches`] for the daemon.

pub mod api;
mod cidr;
mod convert;
pub mod file;
mod model;

pub use cidr::{Cidr, CidrError};
pub use model::*;
