//! The pure planner: [`ProxyPlan`] in, [`Ruleset`] out. Same input,
//! byte-identical output; no I/O.
//!
//! Layout (see BENCHMARKS.md for the measurements behind it), per family:
//!
//! * `services` looks up `daddr . l4proto . dport` in the `service-ips`
//!   verdict map (cluster IPs to `svc-…`, external and load-balancer IPs
//!   to `ext-…`), and node ports, on the addresses `--nodeport-addresses`
//!   selects, in `service-nodeports` (to `np-…`);
//! * the service port's chains mark traffic for masquerade where needed,
//!   then DNAT into one endpoint set: `goto spread`, where `spread` holds
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
//! * services without usable endpoints sit in `no-endpoint-services` /
//!   `no-endpoint-nodeports`, checked in the filter chains: `drop` when
//!   endpoints exist elsewhere but the traffic policy allows none here,
//!   else `goto reject-chain`;
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
//! removed changes elements only; their commit still visits every chain
//! of the table once (`nf_tables_commit` swaps each chain's rule
//! generation), so it grows with the number of per-service chains. The price is on the data path: a new connection tries the `spread`
//! rules in increasing N until one finds its element (one hash lookup
//! each; the counts in use are few), instead of one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use api_watch::Protocol;
use topology_filter::{EndpointTarget, Problem, ProblemKind, ProxyPlan, ServicePortPlan};

use crate::model::*;
use crate::names;

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
    /// `--cluster-cidr` (one per family at most): traffic to services from
    /// outside it is masqueraded, and from inside it short-circuits
    /// externalTrafficPolicy Local. Empty: neither.
    pub cluster_cidrs: Vec<Cidr>,
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
            cluster_cidrs: Vec::new(),
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

    /// The cluster CIDR of `family`; a /0 is ignored (it holds every
    /// source, so nothing would be masqueraded and everything short-cut).
    fn cidr(&self, family: Family) -> Option<Cidr> {
        self.cluster_cidrs
            .iter()
            .copied()
            .find(|c| family.contains(&c.addr()) && c.prefix_len() > 0)
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
) -> Table {
    let mut table = Table::new(family, names::TABLE);
    fixed(&mut table, node_addresses, service_cidrs, cfg);
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

/// Adds service port `sp`'s part of the `family` table to `out`: `addrs`
/// are the addresses of `sp` in that family it owns (cluster IPs first, in
/// the plan's order), `node_port` its node port if it owns it, `node_ip`
/// this node's primary address of the family ([`primary_address`]).
pub(crate) fn contribute(
    cfg: &PlannerConfig,
    family: Family,
    node_ip: Option<IpAddr>,
    sp: &ServicePortPlan,
    addrs: &[IpAddr],
    node_port: Option<u16>,
    out: &mut Contribution,
) {
    let mut b = Builder {
        family,
        cfg,
        node_ip,
        out,
    };
    b.service_port(sp, addrs, node_port);
}

struct Builder<'a> {
    family: Family,
    cfg: &'a PlannerConfig,
    node_ip: Option<IpAddr>,
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

/// The rules that pick the node-port destinations, each ending in
/// `meta l4proto . th dport vmap @map`.
fn nodeport_rules(
    family: Family,
    cfg: &PlannerConfig,
    node_addresses: &[IpAddr],
    map: &str,
) -> Vec<Rule> {
    let vmap = Stmt::PortVmap { map: map.into() };
    match &cfg.nodeport_addresses {
        NodePortAddresses::Primary => primary_address(node_addresses, family)
            .map(|ip| rule(vec![Stmt::DaddrIn(Cidr::host(ip)), vmap.clone()]))
            .into_iter()
            .collect(),
        NodePortAddresses::All => {
            let loopback = match family {
                Family::Ip => Cidr::new(Ipv4Addr::LOCALHOST.into(), 8),
                Family::Ip6 => Cidr::new(Ipv6Addr::LOCALHOST.into(), 128),
            }
            .expect("a valid length");
            vec![rule(vec![
                Stmt::FibDaddrLocal,
                Stmt::DaddrNotIn(loopback),
                vmap,
            ])]
        }
        NodePortAddresses::Cidrs(cidrs) => cidrs
            .iter()
            .filter(|c| family.contains(&c.addr()))
            .map(|c| rule(vec![Stmt::FibDaddrLocal, Stmt::DaddrIn(*c), vmap.clone()]))
            .collect(),
    }
}

/// `rule` for new connections only: `ct state new` in front.
fn new_only(mut r: Rule) -> Rule {
    r.0.insert(0, Stmt::CtStateNew);
    r
}

fn fixed(
    table: &mut Table,
    node_addresses: &[IpAddr],
    service_cidrs: &[Cidr],
    cfg: &PlannerConfig,
) {
    let family = table.family;
    let base = |name: &str, chain_type, hook, priority, rules| Chain {
        name: name.to_string(),
        base: Some(BaseChain {
            chain_type,
            hook,
            priority,
            policy_drop: false,
        }),
        rules,
    };
    let jump_services = || {
        vec![rule(vec![Stmt::Verdict(Verdict::Jump(
            names::SERVICES.into(),
        ))])]
    };
    let dest_vmap = |map: &str| {
        new_only(rule(vec![Stmt::DestVmap {
            map: map.to_string(),
        }]))
    };
    let cluster_ips_check = || {
        new_only(rule(vec![Stmt::Verdict(Verdict::Jump(
            names::CLUSTER_IPS_CHECK.into(),
        ))]))
    };
    let mark = cfg.mark();
    // Refusals of new connections to service ports without endpoints:
    // their addresses, then the node ports on this node's addresses.
    let mut no_endpoints = vec![dest_vmap(names::NO_ENDPOINT_SERVICES)];
    no_endpoints.extend(
        nodeport_rules(family, cfg, node_addresses, names::NO_ENDPOINT_NODEPORTS)
            .into_iter()
            .map(new_only),
    );
    // The node's own traffic: as upstream's filter-output, the endpoint
    // checks, then loadBalancerSourceRanges.
    let mut output = no_endpoints.clone();
    output.push(dest_vmap(names::FIREWALL_IPS));
    let mut services = vec![rule(vec![Stmt::DestVmap {
        map: names::SERVICE_IPS.into(),
    }])];
    services.extend(nodeport_rules(
        family,
        cfg,
        node_addresses,
        names::SERVICE_NODEPORTS,
    ));
    // Traffic to a cluster IP that no service port took (after DNAT): a
    // port no service port defines is refused; an address of a
    // ServiceCIDR that is no cluster IP is dropped.
    let mut cluster_ips = vec![rule(vec![
        Stmt::DaddrInSet {
            set: names::CLUSTER_IPS.into(),
        },
        goto(names::REJECT_CHAIN),
    ])];
    cluster_ips.extend(
        family_cidrs(service_cidrs, family)
            .into_iter()
            .map(|c| rule(vec![Stmt::DaddrIn(c), Stmt::Verdict(Verdict::Drop)])),
    );
    let chains = [
        base(
            names::FILTER_PREROUTING,
            ChainType::Filter,
            HookPoint::Prerouting,
            -110,
            vec![dest_vmap(names::FIREWALL_IPS)],
        ),
        base(
            names::NAT_PREROUTING,
            ChainType::Nat,
            HookPoint::Prerouting,
            -100,
            jump_services(),
        ),
        base(
            names::NAT_OUTPUT,
            ChainType::Nat,
            HookPoint::Output,
            -100,
            jump_services(),
        ),
        base(
            names::NAT_POSTROUTING,
            ChainType::Nat,
            HookPoint::Postrouting,
            100,
            vec![
                rule(vec![
                    Stmt::AddrPairInSet {
                        set: names::HAIRPIN.into(),
                    },
                    Stmt::MarkSetBits(mark),
                ]),
                rule(vec![
                    Stmt::MarkBitsClear(mark),
                    Stmt::Verdict(Verdict::Return),
                ]),
                rule(vec![Stmt::MarkToggleBits(mark)]),
                rule(vec![Stmt::Masquerade]),
            ],
        ),
        base(
            names::FILTER_INPUT,
            ChainType::Filter,
            HookPoint::Input,
            -110,
            no_endpoints,
        ),
        base(
            names::FILTER_FORWARD,
            ChainType::Filter,
            HookPoint::Forward,
            -110,
            vec![dest_vmap(names::NO_ENDPOINT_SERVICES), cluster_ips_check()],
        ),
        base(
            names::FILTER_OUTPUT,
            ChainType::Filter,
            HookPoint::Output,
            -110,
            output,
        ),
        base(
            names::FILTER_OUTPUT_POST_DNAT,
            ChainType::Filter,
            HookPoint::Output,
            -90,
            vec![cluster_ips_check()],
        ),
        Chain::regular(names::SERVICES, services),
        // Filled with one rule per endpoint count in use
        // ([`add_spread_chains`]).
        Chain::regular(names::SPREAD, Vec::new()),
        Chain::regular(names::SPREAD_PORT, Vec::new()),
        Chain::regular(names::CLUSTER_IPS_CHECK, cluster_ips),
        Chain::regular(
            names::REJECT_CHAIN,
            vec![
                rule(vec![Stmt::L4ProtoIs(Protocol::Tcp), Stmt::RejectTcpReset]),
                rule(vec![Stmt::Reject]),
            ],
        ),
    ];
    for c in chains {
        table.chains.insert(c.name.clone(), c);
    }
    for (name, kind) in [
        (names::SERVICE_IPS, MapKind::ServiceVerdict),
        (names::SERVICE_NODEPORTS, MapKind::PortVerdict),
        (names::NO_ENDPOINT_SERVICES, MapKind::ServiceVerdict),
        (names::NO_ENDPOINT_NODEPORTS, MapKind::PortVerdict),
        (names::FIREWALL_IPS, MapKind::ServiceVerdict),
        (names::SERVICE_ENDPOINTS, MapKind::EndpointDnat),
        (names::NODEPORT_ENDPOINTS, MapKind::PortEndpointDnat),
        (names::HAIRPIN, MapKind::AddrPairSet),
        (names::CLUSTER_IPS, MapKind::AddrSet),
    ] {
        table.maps.insert(name.into(), Map::new(name, kind));
    }
}

impl Builder<'_> {
    fn family(&self) -> Family {
        self.family
    }

    fn map(&mut self, name: &'static str) -> &mut BTreeMap<ElemKey, ElemValue> {
        self.out.elements.entry(name).or_default()
    }

    fn add_chain(&mut self, name: String, rules: Vec<Rule>) {
        self.out
            .chains
            .insert(name.clone(), Chain::regular(name, rules));
    }

    /// Rules that DNAT into `eps`. Without affinity: `goto spread` and
    /// the elements under `keys`, at the indices of N endpoints; with
    /// affinity: inline rules and the endpoints' client sets.
    fn dnat_block(
        &mut self,
        sp: &ServicePortPlan,
        eps: &[&EndpointTarget],
        keys: &[Keyspace],
    ) -> Vec<Rule> {
        let n = eps.len();
        debug_assert!(n > 0);
        self.hairpin(eps);
        if sp.session_affinity_timeout.is_some() {
            // Affinity: rules of the service port's own.
            return self.inline_block(sp, eps);
        }
        // Past the shared index space (more than 92,681 endpoints), the
        // service port spreads with a rule of its own over indices 0..N:
        // only its chain looks its keys up, so they cannot meet another
        // count's. Such a port's endpoint count changes a rule again.
        let (offset, own_rule) = match names::spread_offset(n) {
            Some(o) => (o, false),
            None => (0, true),
        };
        let mut spread_port = false;
        for key in keys {
            for (i, ep) in eps.iter().enumerate() {
                let (map, k) = match *key {
                    Keyspace::Addr(addr) => (
                        names::SERVICE_ENDPOINTS,
                        ElemKey::Service {
                            addr,
                            proto: sp.protocol,
                            port: sp.port,
                            index: Some(offset + i as u32),
                        },
                    ),
                    Keyspace::Port => {
                        spread_port = true;
                        (
                            names::NODEPORT_ENDPOINTS,
                            ElemKey::Port {
                                proto: sp.protocol,
                                port: sp.node_port.expect("node port keys only with a node port"),
                                index: Some(offset + i as u32),
                            },
                        )
                    }
                };
                self.map(map).insert(k, ElemValue::Dnat(ep.ip, ep.port));
            }
        }
        if own_rule {
            let stmt = if spread_port {
                Stmt::DnatSpreadPort {
                    modulus: n as u32,
                    offset: 0,
                    map: names::NODEPORT_ENDPOINTS.into(),
                }
            } else {
                Stmt::DnatSpread {
                    modulus: n as u32,
                    offset: 0,
                    map: names::SERVICE_ENDPOINTS.into(),
                }
            };
            return vec![rule(vec![stmt])];
        }
        // The goto does not depend on N: an endpoint added or removed
        // changes elements only (no rule, no validation of the table).
        if spread_port {
            self.out.port_spreads.insert(n);
            vec![rule(vec![goto(names::SPREAD_PORT)])]
        } else {
            self.out.spreads.insert(n);
            vec![rule(vec![goto(names::SPREAD)])]
        }
    }

    /// Inline DNAT to `eps` (small sets): under session affinity the
    /// returning clients of each endpoint first, then endpoint i with
    /// probability 1/(N-i). An endpoint's client set is named from the
    /// service port and the endpoint ([`names::affinity_set`]), so every
    /// chain of `sp` that leads to the endpoint shares it.
    fn inline_block(&mut self, sp: &ServicePortPlan, eps: &[&EndpointTarget]) -> Vec<Rule> {
        let n = eps.len();
        let proto = sp.protocol;
        let sets: Vec<Option<String>> = eps
            .iter()
            .map(|ep| {
                sp.session_affinity_timeout.map(|timeout| {
                    let name = names::affinity_set(
                        &sp.service,
                        &sp.port_name,
                        proto,
                        sp.port,
                        (ep.ip, ep.port),
                        timeout,
                    );
                    self.out.sets.insert(
                        name.clone(),
                        Map::new(&name, MapKind::AffinitySet { timeout }),
                    );
                    name
                })
            })
            .collect();
        let dnat = |i: usize| {
            let mut v = Vec::new();
            if let Some(set) = &sets[i] {
                v.push(Stmt::UpdateSaddr { set: set.clone() });
            }
            v.push(Stmt::L4ProtoIs(proto));
            v.push(Stmt::DnatTo(eps[i].ip, eps[i].port));
            v
        };
        let mut rules = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            if let Some(set) = set {
                let mut r = vec![Stmt::SaddrInSet { set: set.clone() }];
                r.extend(dnat(i));
                rules.push(rule(r));
            }
        }
        for i in 0..n {
            let mut r = Vec::new();
            if i + 1 < n {
                r.push(Stmt::NumgenIs {
                    modulus: (n - i) as u32,
                    value: 0,
                });
            }
            r.extend(dnat(i));
            rules.push(rule(r));
        }
        rules
    }

    /// An endpoint may reach itself through its service: its (endpoint,
    /// endpoint) pair is masqueraded in postrouting, so that the answer
    /// comes back through this node's conntrack. Every endpoint, whatever
    /// node its slice names or whether it names one (kube-proxy marks
    /// `ip saddr <endpoint>` in every endpoint chain).
    fn hairpin(&mut self, eps: &[&EndpointTarget]) {
        for ep in eps {
            self.map(names::HAIRPIN)
                .insert(ElemKey::Pair(ep.ip, ep.ip), ElemValue::Member);
        }
    }

    /// What refuses traffic to an entry without usable endpoints: `drop`
    /// when the service port has endpoints of the table's family but the
    /// traffic policy allows none here, else the reject chain (each of
    /// kube-proxy's per-family proxiers sees its family's endpoints only).
    fn refusal(&self, sp: &ServicePortPlan, policy_local: bool) -> ElemValue {
        let has_any = match self.family() {
            Family::Ip => sp.has_any_ipv4_endpoints,
            Family::Ip6 => sp.has_any_ipv6_endpoints,
        };
        if has_any && policy_local {
            ElemValue::Verdict(Verdict::Drop)
        } else {
            ElemValue::Verdict(Verdict::Goto(names::REJECT_CHAIN.into()))
        }
    }

    fn service_port(&mut self, sp: &ServicePortPlan, addrs: &[IpAddr], node_port: Option<u16>) {
        let family = self.family();
        let of_family = |eps: &[EndpointTarget]| -> Vec<EndpointTarget> {
            eps.iter()
                .filter(|e| family.contains(&e.ip))
                .cloned()
                .collect()
        };
        let internal = of_family(&sp.endpoints);
        let cluster = of_family(&sp.cluster_endpoints);
        let local = of_family(&sp.local_endpoints);
        let chain =
            |kind: &str| names::port_chain(kind, &sp.service, &sp.port_name, sp.protocol, sp.port);
        let mark = self.cfg.mark();
        let cidr = self.cfg.cidr(family);
        let proto = sp.protocol;
        let svc_key = |addr: IpAddr| ElemKey::service(addr, proto, sp.port);

        // Every cluster IP of the family is active, whichever service port
        // owns which of its ports.
        for ip in sp.cluster_ips.iter().filter(|ip| family.contains(ip)) {
            self.map(names::CLUSTER_IPS)
                .insert(ElemKey::Addr(*ip), ElemValue::Member);
        }

        // Cluster IPs: the internal set.
        for ip in addrs.iter().filter(|ip| sp.cluster_ips.contains(ip)) {
            if internal.is_empty() {
                let v = self.refusal(sp, sp.internal_policy_local);
                self.map(names::NO_ENDPOINT_SERVICES)
                    .insert(svc_key(*ip), v);
                continue;
            }
            let name = chain("svc");
            let mut rules = Vec::new();
            if self.cfg.masquerade_all {
                rules.push(rule(vec![Stmt::MarkSetBits(mark)]));
            } else if let Some(c) = cidr {
                rules.push(rule(vec![Stmt::SaddrNotIn(c), Stmt::MarkSetBits(mark)]));
            }
            let eps: Vec<&EndpointTarget> = internal.iter().collect();
            rules.extend(self.dnat_block(sp, &eps, &[Keyspace::Addr(*ip)]));
            self.add_chain(name.clone(), rules);
            self.map(names::SERVICE_IPS)
                .insert(svc_key(*ip), ElemValue::Verdict(Verdict::Goto(name)));
        }

        // External entries: external IPs, load-balancer IPs, the node port.
        let external: Vec<IpAddr> = addrs
            .iter()
            .filter(|ip| !sp.cluster_ips.contains(ip))
            .copied()
            .collect();
        // Source ranges hold with or without endpoints: a blocked client
        // is dropped, never refused.
        self.firewall(sp, &external, &chain("fw"));
        if external.is_empty() && node_port.is_none() {
            return;
        }
        let cluster_eps: Vec<&EndpointTarget> = cluster.iter().collect();
        let local_eps: Vec<&EndpointTarget> = local.iter().collect();
        let usable = if sp.external_policy_local {
            !local_eps.is_empty() || !cluster_eps.is_empty()
        } else {
            !cluster_eps.is_empty()
        };
        if !usable {
            let v = self.refusal(sp, sp.external_policy_local);
            for ip in &external {
                self.map(names::NO_ENDPOINT_SERVICES)
                    .insert(svc_key(*ip), v.clone());
            }
            if let Some(np) = node_port {
                let k = ElemKey::Port {
                    proto,
                    port: np,
                    index: None,
                };
                self.map(names::NO_ENDPOINT_NODEPORTS).insert(k, v);
            }
            return;
        }
        let addr_keys: Vec<Keyspace> = external.iter().map(|ip| Keyspace::Addr(*ip)).collect();
        // (entry chain kind, cluster chain kind, keys) for addresses and the node port.
        let mut entries: Vec<(&str, &str, Vec<Keyspace>)> = Vec::new();
        if !external.is_empty() {
            entries.push(("ext", "clu", addr_keys));
        }
        if node_port.is_some() {
            entries.push(("np", "clunp", vec![Keyspace::Port]));
        }
        // The local endpoints, shared by both entries (eTP Local only).
        let local_chain = chain("loc");
        if sp.external_policy_local {
            let rules = if local_eps.is_empty() {
                vec![rule(vec![Stmt::Verdict(Verdict::Drop)])]
            } else {
                self.hairpin(&local_eps);
                self.inline_block(sp, &local_eps)
            };
            self.add_chain(local_chain.clone(), rules);
        }
        for (kind, cluster_kind, keys) in entries {
            let name = chain(kind);
            let mut rules = Vec::new();
            if sp.external_policy_local {
                // Short-circuit: pods and the node itself use every endpoint,
                // like traffic to the cluster IP (kube-proxy does the same).
                if !cluster_eps.is_empty() {
                    let cname = chain(cluster_kind);
                    let block = self.dnat_block(sp, &cluster_eps, &keys);
                    self.add_chain(cname.clone(), block);
                    if let Some(c) = cidr {
                        rules.push(rule(vec![Stmt::SaddrIn(c), goto(&cname)]));
                    }
                    rules.push(rule(vec![
                        Stmt::FibSaddrLocal,
                        Stmt::MarkSetBits(mark),
                        goto(&cname),
                    ]));
                }
                rules.push(rule(vec![goto(&local_chain)]));
            } else {
                rules.push(rule(vec![Stmt::MarkSetBits(mark)]));
                rules.extend(self.dnat_block(sp, &cluster_eps, &keys));
            }
            self.add_chain(name.clone(), rules);
            let to_chain = ElemValue::Verdict(Verdict::Goto(name));
            match kind {
                "ext" => {
                    for ip in &external {
                        self.map(names::SERVICE_IPS)
                            .insert(svc_key(*ip), to_chain.clone());
                    }
                }
                _ => {
                    let k = ElemKey::Port {
                        proto,
                        port: node_port.expect("np entry only with a node port"),
                        index: None,
                    };
                    self.map(names::SERVICE_NODEPORTS).insert(k, to_chain);
                }
            }
        }
    }

    /// loadBalancerSourceRanges: new connections to the load-balancer IPs
    /// among `external` (the port's addresses it owns) from outside the
    /// ranges are dropped before DNAT, whether they arrive or the node
    /// makes them; node ports and external IPs are not filtered. Only the
    /// ranges of the table's family count: a service with IPv4 ranges
    /// only leaves its IPv6 traffic unfiltered (kube-proxy's proxier of
    /// each family sees only its family's ranges). When a range holds this
    /// node's primary address, the load-balancer IPs are allowed sources
    /// too (a VIP bound on the node answers the node from the VIP).
    fn firewall(&mut self, sp: &ServicePortPlan, external: &[IpAddr], name: &str) {
        let family = self.family();
        let ranges: Vec<Cidr> = sp
            .load_balancer_source_ranges
            .iter()
            .copied()
            .filter(|c| family.contains(&c.addr()))
            .collect();
        let lbs: Vec<IpAddr> = external
            .iter()
            .filter(|ip| sp.load_balancer_ips.contains(ip))
            .copied()
            .collect();
        if ranges.is_empty() || lbs.is_empty() {
            return;
        }
        let from_node = self
            .node_ip
            .is_some_and(|ip| ranges.iter().any(|c| c.contains(&ip)));
        let mut allowed = ranges;
        if from_node {
            allowed.extend(lbs.iter().map(|ip| Cidr::host(*ip)));
        }
        let mut rules: Vec<Rule> = allowed
            .into_iter()
            .map(|c| rule(vec![Stmt::SaddrIn(c), Stmt::Verdict(Verdict::Return)]))
            .collect();
        rules.push(rule(vec![Stmt::Verdict(Verdict::Drop)]));
        self.add_chain(name.to_string(), rules);
        for ip in lbs {
            self.map(names::FIREWALL_IPS).insert(
                ElemKey::service(ip, sp.protocol, sp.port),
                ElemValue::Verdict(Verdict::Goto(name.to_string())),
            );
        }
    }
}

/// The UDP service ports of `plan`, for conntrack clean-up after a sync:
/// where clients send (cluster IPs, external IPs and load-balancer IPs at
/// the port, and the node port) and every serving endpoint of the port,
/// whatever the traffic policies, topology keys and hints choose for new
/// connections (kube-proxy's `CleanStaleEntries`).
pub fn udp_services(plan: &ProxyPlan) -> Vec<crate::conntrack::UdpService> {
    use crate::conntrack::{UdpEntry, UdpService};
    use std::net::SocketAddr;
    plan.services
        .iter()
        .filter(|sp| sp.protocol == Protocol::Udp)
        .map(|sp| {
            let addrs = sp
                .cluster_ips
                .iter()
                .chain(&sp.external_ips)
                .chain(&sp.load_balancer_ips);
            let mut entries: Vec<UdpEntry> = addrs
                .map(|ip| UdpEntry::Addr(SocketAddr::new(*ip, sp.port)))
                .collect();
            entries.extend(sp.node_port.map(UdpEntry::NodePort));
            UdpService {
                service: sp.service.clone(),
                port_name: sp.port_name.clone(),
                entries,
                serving: sp.serving_endpoints.iter().copied().collect(),
            }
        })
        .collect()
}
