//! `route-sync` will own this node's routes to the other nodes' pod CIDRs,
//! the way Calico's BIRD programs them:
//!
//! ```text
//! 10.42.54.128/26 via 172.31.11.157 dev tunl0 proto bird onlink
//! ```
//!
//! From the Nodes in `api-watch`'s `ClusterState` it will plan, purely, the
//! routes this node should hold (one per remote pod CIDR, via the remote
//! node's address, over the IPIP `tunl0` device or directly over the node's
//! interface), read back the routes it owns from the kernel over rtnetlink
//! (`ip route show proto …`), and converge them: add what is missing,
//! replace what changed, delete what it owns and no longer wants. It never
//! touches a route it did not create, and it manages the tunnel device.
//!
//! It does not decide anything about Services (that is `topology-filter`
//! and `nft-writer`), and it does not write nftables.
//!
//! Status: a skeleton. The planner, the rtnetlink adapter and the tunnel
//! land with their own issue; the integration harness (`integration/`)
//! meanwhile lays these routes with `ip route` so that the seed scenario
//! has the article's underlay.

/// Name of the IPIP tunnel device the routes go over when encapsulation
/// is on (Calico's name, so that `ip route` output reads like the article's).
pub const TUNNEL_DEVICE: &str = "tunl0";
