//! `nftopo-integration` is the root-only test bench for nftopo: it builds
//! the seed article's cluster out of Linux network namespaces, runs the
//! real `nftopo` binary in the node it programs, and proves with hundreds
//! of real TCP and UDP connections which pods answer a Service.
//!
//! It owns the namespace harness ([`Netns`], a drop guard that kills what
//! it started and deletes the namespace even when a test panics), the seed
//! scenario ([`SeedCluster`]: node-2, node-3, node-4 on a bridged
//! underlay, Calico-style pods), the witnesses (`nft list`, `ip route`:
//! [`nft_list`], [`ip_route`]) and the binaries `testpod` (server and
//! prober run inside pods), `demo` (`make demo`) and `gen-manifests`
//! (synthetic clusters for benchmarks). It contains no nftopo logic and
//! links none of its crates: the product is driven as a binary only.
//!
//! [`apiserver::ApiServer`] is a Kubernetes API server stand-in (list,
//! watch, 410, bookmarks, restarts) for the daemon tests; it serves JSON
//! objects and links no Kubernetes crate either (the tests drive it with
//! the real kube-rs client).
//!
//! Main types: [`SeedCluster`], [`Netns`], [`ProbeResult`], [`apiserver::ApiServer`].

pub mod apiserver;
mod cluster;
pub mod daemon;
pub mod edge;
mod netns;
pub mod outcome;
mod probe;
mod routed;
mod tools;
pub mod trace_check;

pub use cluster::*;
pub use netns::{
    check, require_root, run, spawn_in_netns, sweep_stale, unique_prefix, Error, Netns, Result,
};
pub use probe::*;
pub use routed::*;
pub use tools::*;
