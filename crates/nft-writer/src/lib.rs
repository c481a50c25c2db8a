//! `nft-writer` owns nftopo's nftables ruleset: it plans a [`Ruleset`]
//! from a [`topology_filter::ProxyPlan`] ([`plan_ruleset`]), expresses
//! changes as a [`Transaction`] of [`Op`]s that prints as `nft` commands,
//! encodes them as nf_tables netlink messages and applies them as one
//! atomic batch ([`NetlinkKernel`]), or in memory ([`FakeKernel`]) for
//! tests, where [`trace`] follows a packet through the result.
//!
//! It does not choose endpoints (`topology-filter` does) and does not
//! read the cluster (`api-watch` does).
//!
//! Main types: [`Ruleset`], [`Transaction`], [`Kernel`], [`Error`];
//! [`IncrementalPlanner`] and [`Syncer::sync_changes`] for syncs that cost
//! what changed, not what the cluster holds.

pub mod conntrack;
mod decode;
pub mod encode;
mod engine;
mod error;
mod fake;
mod incremental;
mod kernel;
mod model;
pub mod names;
mod netlink;
mod planner;
mod readback;
mod render;
mod trace;
mod transaction;
mod udata;

pub use decode::decode_dump;
pub use engine::{converge, Batch, Convergence, Repairs, SyncStats, Syncer, MAX_NOTES};
pub use error::{libc_errno, Error, ErrorKind};
pub use fake::FakeKernel;
pub use incremental::{Changes, Dirty, IncrementalPlanner, Merged};
pub use kernel::{ApplyStats, Kernel};
pub use model::*;
pub use netlink::{build_batch, NetlinkKernel};
pub use planner::{plan_ruleset, udp_services, DetectLocal, NodePortAddresses, PlannerConfig};
pub use render::{element_text, rule_text};
pub use trace::{
    explain, kernel_tables, trace, trace_established, Branch, Event, Outcome, Packet, Path,
    Refusal, Step,
};
pub use transaction::{Op, TableRef, Transaction};
