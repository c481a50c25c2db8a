//! `route-sync` owns this node's routes to the other nodes' pod CIDRs, the
//! way Calico's BIRD programs them:
//!
//! ```text
//! 10.42.54.128/26 via 172.31.11.157 dev tunl0 proto bird onlink
//! ```
//!
//! [`plan_routes`] decides, purely, the routes this node should hold from
//! the Nodes (and, with Calico IPAM, `BlockAffinity` objects): one route per
//! remote pod CIDR via the remote node's address, over the IPIP `tunl0`
//! device onlink ([`Mode::Ipip`]), directly ([`Mode::Direct`]), or directly
//! within this node's subnets and over IPIP beyond them
//! ([`Mode::CrossSubnet`]); plus a blackhole for each of this node's own
//! CIDRs. Bad nodes are reported in [`DesiredRoutes::problems`] without
//! stopping the others. [`reconcile`] diffs that plan against the kernel's
//! routes of our protocol ([`parse_protocol`], `bird` = 12 by default) into
//! [`RouteOp`]s; [`sync`] runs both against a [`RouteKernel`], of which
//! [`NetlinkRoutes`] is the rtnetlink implementation and [`FakeRoutes`]
//! the in-memory one for tests; it also manages the
//! tunnel device ([`NetlinkRoutes::ensure_tunnel`]). Routes of any other
//! protocol are never touched.
//!
//! It does not decide anything about Services (that is `topology-filter`
//! and `nft-writer`), it does not write nftables, and it does not read
//! files or the clock: the binary reads `rt_protos` and drives the loop.

mod converge;
mod fake;
mod netlink;
mod plan;
mod protocol;
mod reconcile;
mod route;

/// Prefixes are api-watch's one type.
pub use api_watch::{Cidr, CidrError};
pub use converge::{converge, Converged, TunnelMtu, IPIP_OVERHEAD};
pub use fake::FakeRoutes;
pub use netlink::{sync, Interface, NetlinkRoutes, RouteKernel, SyncReport};
pub use plan::{
    plan_routes, BlockAffinity, DesiredRoutes, Mode, NextHopSource, NodeProblem, PodCidrSource,
    Problem, RouteConfig, TunnelPlan, IPIP_TUNNEL_ADDR_ANNOTATION, IPV4_ADDRESS_ANNOTATION,
    IPV6_ADDRESS_ANNOTATION,
};
pub use protocol::{parse_protocol, DEFAULT_PROTOCOL};
pub use reconcile::reconcile;
pub use route::{Route, RouteKind, RouteOp};

/// Name of the IPIP tunnel device the routes go over when encapsulation
/// is on (Calico's name, so that `ip route` output reads like the article's).
pub const TUNNEL_DEVICE: &str = "tunl0";

/// route-sync's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This node is not among the Nodes: wait for it to appear (retry on
    /// the next Node event); nothing was planned.
    #[error("node {0:?} is not in the cluster")]
    UnknownThisNode(String),
    /// The kernel refused a request (positive errno): the route or link is
    /// skipped; retry on the next sync. `EEXIST` on an add means a route of
    /// another owner holds the prefix and is left alone.
    #[error(
        "kernel refused {op}: {}{}",
        std::io::Error::from_raw_os_error(*errno),
        ext_ack.as_ref().map(|m| format!(" ({m})")).unwrap_or_default()
    )]
    Kernel {
        /// The request, in `ip` syntax.
        op: String,
        /// Positive errno.
        errno: i32,
        /// The kernel's extended-ack text, when it gave one (e.g. `Nexthop
        /// has invalid gateway`). For people: classify by `errno`.
        ext_ack: Option<String>,
    },
    /// A route names a device that does not exist (e.g. `tunl0` when the
    /// tunnel could not be created): skipped; retry after fixing the device.
    #[error("no device {0:?}")]
    NoDevice(String),
    /// The kernel cannot create ipip links (no `ipip` module): IPIP routes
    /// cannot work here; use direct mode, or load the module. Direct routes
    /// are unaffected.
    #[error("this kernel has no ipip support (creating {0:?} as an ipip link failed: EOPNOTSUPP); load the ipip module or use direct mode")]
    NoIpipSupport(String),
    /// Socket I/O failed: give up on this sync and retry later.
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel's answer did not decode: a bug; give up on this sync.
    #[error("netlink protocol: {0}")]
    Protocol(String),
}

impl Error {
    /// The errno of a kernel refusal, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}
