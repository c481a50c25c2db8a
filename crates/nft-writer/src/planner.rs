//! The pure planner: [`ProxyPlan`] in, [`Ruleset`] out. Same input,
//! byte-identical output; no I/O.
//!
//! Layout (see BENCHMARKS.md for the measurements behind it), per family:
//!
//! * `services` sends the *plain* service ports (no session affinity,
//!   usable endpoints, and for external IPs, load-balancer IPs and node
//!   ports externalTrafficPolicy Cluster) by data, with no chain of their
//!   own: their cluster IPs are in the set `plain-cluster-ips` (marked for
//!   masquerade as `--masquerade-all` / `--detect-local-mode` ask, then
//!   `goto spread`), their external and load-balancer IPs in
//!   `plain-external-ips` and their node ports, on the addresses
//!   `--nodeport-addresses` selects, in `plain-nodeports` (marked, then
//!   `goto spread` / `spread-port`);
//! * the other service ports have chains of their own, reached through
//!   the verdict maps `service-ips` (cluster IPs to `svc-…`, external and
//!   load-balancer IPs to `ext-…`) and `service-nodeports` (to `np-…`):
//!   they mark as their policy asks, then DNAT the same way or inline;
//! * DNAT into one endpoint set: `goto spread`, where `spread` holds
//!   one rule per endpoint count N in use,
//!   `dnat to daddr . l4proto . dport . numgen random mod N offset O(N) map @service-endpoints`
//!   with O(N) = N(N-1)/2 (node ports: `spread-port` over
//!   `nodeport-endpoints`, keyed by protocol and port); the endpoints of
//!   every service port sit in those shared maps, keyed by the address
//!   (or node port) the client used and O(N) + i, so the rule of another
//!   count finds no element and the next rule is tried;
//! * the local endpoints of externalTrafficPolicy Local (`loc-…`) and every
//!   set under session affinity are small: they DNAT with inline rules,
//!   `numgen random mod (N-i) 0 … dnat to A:P`, and affinity adds one
//!   dynamic set of clients per endpoint, checked and refreshed in the same
//!   rules;
//! * services without usable endpoints sit in the sets
//!   `no-endpoint-drop` / `no-endpoint-nodeports-drop` when endpoints
//!   exist elsewhere but the traffic policy allows none here, else in
//!   `no-endpoint-reject` / `no-endpoint-nodeports-reject`; the filter
//!   chains drop or `goto reject-chain` for them;
//! * load-balancer IPs with `loadBalancerSourceRanges` (of the table's
//!   family) go through `fw-…` in `filter-prerouting` (traffic arriving)
//!   and `filter-output` (the node's own), before DNAT, whether or not the
//!   port has endpoints;
//! * traffic that no service took is checked after DNAT (`filter-forward`,
//!   and `filter-output-post-dnat` at priority -90) in `cluster-ips-check`:
//!   to an active cluster IP (the `cluster-ips` set) it is refused (a port
//!   no service port defines), to another address of a ServiceCIDR it is
//!   dropped (an unallocated service address);
//! * every filter check (no endpoints, source ranges, cluster IPs) applies
//!   to `ct state new` only: an established connection is never cut
//!   because its service lost its endpoints or its source ranges changed.
//!
//! Why shared maps reached from one `spread` chain rather than one map
//! per service: the kernel looks sets up by walking the table's list of
//! sets, and checks every chain it validates against every set, so 10,000
//! per-service maps cost seconds of kernel time; and every rule that binds
//! a map makes each new element walk all of that map's bindings, so the
//! shared map must be bound by few rules: one per distinct N.
//!
//! Why N is in the elements' indices and not in the service port's chain
//! (`goto spread-N`, layout 2): a rule with a jump, a goto, a lookup, a
//! nat or a `meta mark set` makes the kernel validate the whole table at
//! commit (`nf_tables_newrule` → `nf_tables_validate` →
//! `nft_table_validate`, which walks every base chain, every verdict-map
//! element and the chains they reach: O(services)), and every rule that
//! binds `service-endpoints` walks all of its elements when added
//! (`nf_tables_bind_set`). With N in the indices, an endpoint added or
//! removed changes elements only. The price is on the data path: a new
//! connection tries the `spread` rules in increasing N until one finds
//! its element (one hash lookup each; the counts in use are few),
//! instead of one.
//!
//! Why plain service ports have no chain (layout 4): every commit visits
//! every chain of the table (`nf_tables_commit` swaps each chain's rule
//! generation), so a per-service chain makes every change cost O(services);
//! and a Service added with a chain adds rules with a `goto` and a verdict
//! element, each of which makes the kernel validate the whole table. Sets
//! without verdicts do neither: a plain Service added, removed, losing or
//! regaining its endpoints changes elements only, and the number of
//! chains no longer grows with the cluster. The price: one more set
//! lookup per new connection (plain set, then the verdict map).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use api_watch::Protocol;
use topology_filter::{EndpointTarget, Problem, ProblemKind, ProxyPlan, ServicePortPlan};

use crate::model::*;
use crate::names;

mod firewall;
mod local;
mod service;
mod skeleton;

pub use local::DetectLocal;
pub(crate) use local::PodMatch;
use skeleton::*;

/// Which local addresses serve node ports (kube-proxy's
/// `--nodeport-addresses`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NodePortAddresses {
    /// This node's primary address of each family (the first of its
    /// Node's InternalIPs of the family, as kube-proxy's node IPs): the
    /// default.
    #[default]
    Primary,
    /// Every local address but loopback.
    All,
    /// Local addresses inside these prefixes.
    Cidrs(Vec<Cidr>),
}

/// Settings that shape the ruleset (kube-proxy's flags of the same name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannerConfig {
    /// `--detect-local-mode` with its `--cluster-cidr`,
    /// `--pod-bridge-interface` or `--pod-interface-name-prefix`: traffic
    /// to cluster IPs from anything but pods is masqueraded, and external
    /// traffic from pods short-circuits externalTrafficPolicy Local. A
    /// family it detects nothing of gets neither.
    pub detect_local: DetectLocal,
    /// `--masquerade-all`: masquerade all traffic to cluster IPs.
    pub masquerade_all: bool,
    /// `--masquerade-bit` (default 14): the packet-mark bit used to ask
    /// postrouting to masquerade; cleared there.
    pub masquerade_bit: u8,
    /// `--nodeport-addresses`.
    pub nodeport_addresses: NodePortAddresses,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            detect_local: DetectLocal::default(),
            masquerade_all: false,
            masquerade_bit: 14,
            nodeport_addresses: NodePortAddresses::Primary,
        }
    }
}

impl PlannerConfig {
    fn mark(&self) -> u32 {
        1u32 << self.masquerade_bit
    }
}

/// Builds the ruleset for `plan`: `table ip nftopo`, and `table ip6
/// nftopo` when any service has an IPv6 address. This is the
/// [`IncrementalPlanner`] run once on a fresh state: there is one planner.
///
/// Returns, next to the ruleset, the service ports that were left out
/// because another service port (the first in (Service, port name)
/// order) already owns the same address, protocol and port: one wins,
/// deterministically, and the others are reported instead of mixing
/// their endpoints.
///
/// [`IncrementalPlanner`]: crate::IncrementalPlanner
pub fn plan_ruleset(plan: &ProxyPlan, cfg: &PlannerConfig) -> (Ruleset, Vec<Problem>) {
    let mut planner = crate::IncrementalPlanner::new(cfg.clone());
    planner.update(plan, crate::Dirty::All);
    let problems = planner.problems().cloned().collect();
    (planner.ruleset(), problems)
}

/// How clients address what a block serves: the packet's destination, or
/// (node ports) only its protocol and port.
#[derive(Clone, Copy)]
enum Keyspace {
    Addr(IpAddr),
    Port,
}

/// What service ports add to one table on top of its [`skeleton`]: their
/// own chains and sets, their elements in the shared maps, and the
/// endpoint counts whose rules in `spread` / `spread-port` they need. [`plan_ruleset`]
/// builds one for the whole plan; the incremental planner one per Service,
/// with the same code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Contribution {
    /// Chains of their own, by name.
    pub chains: BTreeMap<String, Chain>,
    /// Sets of their own (session affinity), by name.
    pub sets: BTreeMap<String, Map>,
    /// Elements in the skeleton's maps, by map name.
    pub elements: BTreeMap<&'static str, BTreeMap<ElemKey, ElemValue>>,
    /// N of every rule of `spread` used.
    pub spreads: BTreeSet<usize>,
    /// N of every rule of `spread-port` used.
    pub port_spreads: BTreeSet<usize>,
}

/// The rule of `spread` for service ports with N endpoints: DNAT to one of
/// the N elements of the service address in `service-endpoints`, at
/// indices [`names::spread_offset`]`(N)` and on.
pub(crate) fn spread_rule(n: usize) -> Option<Rule> {
    Some(rule(vec![Stmt::DnatSpread {
        modulus: n as u32,
        offset: names::spread_offset(n)?,
        map: names::SERVICE_ENDPOINTS.into(),
    }]))
}

/// The same in `spread-port`, over `nodeport-endpoints`.
pub(crate) fn spread_port_rule(n: usize) -> Option<Rule> {
    Some(rule(vec![Stmt::DnatSpreadPort {
        modulus: n as u32,
        offset: names::spread_offset(n)?,
        map: names::NODEPORT_ENDPOINTS.into(),
    }]))
}

/// The rules of the shared chains `spread` (one per N in `spreads`, in
/// order) and `spread-port` (N in `ports`).
pub(crate) fn spread_rules(spreads: &[usize], ports: &[usize]) -> [Vec<Rule>; 2] {
    [
        spreads.iter().filter_map(|n| spread_rule(*n)).collect(),
        ports.iter().filter_map(|n| spread_port_rule(*n)).collect(),
    ]
}

/// Fills the shared chains `spread` (N in `spreads`, in order) and
/// `spread-port` (N in `ports`) of `table`.
pub(crate) fn add_spread_chains(table: &mut Table, spreads: &[usize], ports: &[usize]) {
    let [a, p] = spread_rules(spreads, ports);
    for (name, rules) in [(names::SPREAD, a), (names::SPREAD_PORT, p)] {
        table
            .chains
            .insert(name.into(), Chain::regular(name, rules));
    }
}

/// The part of a table that does not depend on the services: the table,
/// base chains, `services`, `reject-chain`, `cluster-ips-check` and the
/// shared maps (empty). Depends on this node's addresses (node ports), the
/// ServiceCIDRs (`ProxyPlan::service_cidrs`) and the settings.
pub(crate) fn skeleton(
    node_addresses: &[IpAddr],
    service_cidrs: &[Cidr],
    cfg: &PlannerConfig,
    family: Family,
    pods: Option<&PodMatch>,
) -> Table {
    let mut table = Table::new(family, names::TABLE);
    fixed(&mut table, node_addresses, service_cidrs, cfg, pods);
    table
}

/// This node's primary address of `family`: the first of its addresses of
/// the family (kube-proxy's node IP of each family, from the Node's
/// InternalIPs), unless it is a loopback address.
pub(crate) fn primary_address(node_addresses: &[IpAddr], family: Family) -> Option<IpAddr> {
    node_addresses
        .iter()
        .copied()
        .find(|ip| family.contains(ip))
        .filter(|ip| !ip.is_loopback())
}

/// The ServiceCIDRs of `family`.
pub(crate) fn family_cidrs(service_cidrs: &[Cidr], family: Family) -> Vec<Cidr> {
    service_cidrs
        .iter()
        .copied()
        .filter(|c| family.contains(&c.addr()))
        .collect()
}

/// What one table's service ports are planned with, besides the
/// settings: this node's primary address of the family
/// ([`primary_address`]) and how traffic from pods is told apart there
/// ([`DetectLocal::resolve`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeView<'a> {
    pub node_ip: Option<IpAddr>,
    pub pods: Option<&'a PodMatch>,
}

/// Adds service port `sp`'s part of the `family` table to `out`: `addrs`
/// are the addresses of `sp` in that family it owns (cluster IPs first, in
/// the plan's order), `node_port` its node port if it owns it.
pub(crate) fn contribute(
    cfg: &PlannerConfig,
    family: Family,
    node: NodeView<'_>,
    sp: &ServicePortPlan,
    addrs: &[IpAddr],
    node_port: Option<u16>,
    out: &mut Contribution,
) {
    let mut b = Builder {
        family,
        cfg,
        node_ip: node.node_ip,
        pods: node.pods,
        out,
    };
    b.service_port(sp, addrs, node_port);
}

struct Builder<'a> {
    family: Family,
    cfg: &'a PlannerConfig,
    node_ip: Option<IpAddr>,
    pods: Option<&'a PodMatch>,
    out: &'a mut Contribution,
}

pub(crate) fn duplicate(
    sp: &ServicePortPlan,
    what: &str,
    port: u16,
    owner: (&api_watch::ObjectKey, &str),
) -> Problem {
    Problem {
        kind: ProblemKind::DuplicateServicePort,
        object: sp.service.clone(),
        message: format!(
            "{what} {}/{port} is already served by {} port {:?}; port {:?} is left out there",
            sp.protocol, owner.0, owner.1, sp.port_name
        ),
    }
}

fn rule(stmts: Vec<Stmt>) -> Rule {
    Rule(stmts)
}

fn goto(chain: &str) -> Stmt {
    Stmt::Verdict(Verdict::Goto(chain.to_string()))
}

/// The UDP service ports of `plan`, for conntrack clean-up after a sync:
/// where clients send (cluster IPs, external IPs and load-balancer IPs at
/// the port, and the node port) and every serving endpoint of the port,
/// whatever the traffic policies, topology keys and hints choose for new
/// connections (kube-proxy's `CleanStaleEntries`).
pub fn udp_services(plan: &ProxyPlan) -> Vec<crate::conntrack::UdpService> {
    plan.services
        .iter()
        .filter_map(crate::conntrack::udp_service)
        .collect()
}
