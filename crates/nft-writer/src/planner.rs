//! The pure planner: [`ProxyPlan`] in, [`Ruleset`] out. Same input,
//! byte-identical output; no I/O.
//!
//! Layout (see BENCHMARKS.md for the measurements behind it):
//!
//! * `services` looks up `daddr . l4proto . dport` in the `service-ips`
//!   verdict map and jumps to the service port's own chain `svc-…`;
//! * `svc-…` marks packets from outside the cluster CIDR for masquerade,
//!   then `goto spread-N`, where N is its number of endpoints;
//! * `spread-N` holds one rule,
//!   `dnat to daddr . l4proto . dport . numgen random mod N map @service-endpoints`:
//!   the endpoints of every service port sit in that one named map, keyed
//!   by the service's address, protocol, port and an index 0..N.
//!
//! Why one shared map reached from a few `spread-N` chains rather than one
//! map per service: the kernel looks sets up by walking the table's list of
//! sets, and checks every chain it validates against every set, so 10,000
//! per-service maps cost seconds of kernel time; and every rule that binds
//! a map makes each new element walk all of that map's bindings, so the
//! shared map must be bound by few rules: one per distinct N.

use std::collections::BTreeSet;

use api_watch::Protocol;
use topology_filter::{EndpointTarget, Problem, ProblemKind, ProxyPlan, ServicePortPlan};

use crate::model::*;
use crate::names;

/// Settings that shape the ruleset (kube-proxy's flags of the same name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannerConfig {
    /// `--cluster-cidr`: traffic to services from outside it is masqueraded.
    /// `None`: no masquerading of off-cluster traffic.
    pub cluster_cidr: Option<Cidr>,
    /// `--masquerade-bit` (default 14): the packet-mark bit used to ask
    /// postrouting to masquerade.
    pub masquerade_bit: u8,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            cluster_cidr: None,
            masquerade_bit: 14,
        }
    }
}

impl PlannerConfig {
    fn mark(&self) -> u32 {
        1u32 << self.masquerade_bit
    }
}

/// Builds the ruleset for `plan`: `table ip nftopo` with everything
/// ClusterIP services need. IPv6 service ports are left out for now (no
/// `ip6` table yet).
///
/// Returns, next to the ruleset, the service ports that were left out
/// because an earlier service (in plan order) already owns the same
/// address, protocol and port: the first one wins, deterministically,
/// and the others are reported instead of mixing their endpoints.
pub fn plan_ruleset(plan: &ProxyPlan, cfg: &PlannerConfig) -> (Ruleset, Vec<Problem>) {
    let mut problems = Vec::new();
    let table = plan_table(plan, cfg, Family::Ip, &mut problems);
    (
        Ruleset {
            tables: vec![table],
        },
        problems,
    )
}

fn plan_table(
    plan: &ProxyPlan,
    cfg: &PlannerConfig,
    family: Family,
    problems: &mut Vec<Problem>,
) -> Table {
    let mut table = Table::new(family, names::TABLE);
    add_fixed_chains(&mut table, cfg);

    let mut spreads = BTreeSet::new();
    let mut owners = std::collections::BTreeMap::new();
    for sp in &plan.services {
        for ip in sp.cluster_ips.iter().filter(|ip| family.contains(ip)) {
            let owner = owners
                .entry((*ip, sp.protocol, sp.port))
                .or_insert_with(|| (sp.service.clone(), sp.port_name.clone()));
            if (&owner.0, &owner.1) != (&sp.service, &sp.port_name) {
                problems.push(Problem {
                    kind: ProblemKind::DuplicateServicePort,
                    object: sp.service.clone(),
                    message: format!(
                        "{ip} {}/{} is already served by {} port {:?}; port {:?} is left out",
                        sp.protocol, sp.port, owner.0, owner.1, sp.port_name
                    ),
                });
                continue;
            }
            let endpoints: Vec<&EndpointTarget> = sp
                .endpoints
                .iter()
                .filter(|e| family.contains(&e.ip))
                .collect();
            add_service_port(&mut table, cfg, sp, ip, &endpoints, &mut spreads);
        }
    }
    for n in spreads {
        let name = names::spread_chain(n);
        let rule = Rule(vec![Stmt::DnatSpread {
            modulus: n as u32,
            map: names::SERVICE_ENDPOINTS.into(),
        }]);
        table
            .chains
            .insert(name.clone(), Chain::regular(name, vec![rule]));
    }
    table
}

fn add_service_port(
    table: &mut Table,
    cfg: &PlannerConfig,
    sp: &ServicePortPlan,
    ip: &std::net::IpAddr,
    endpoints: &[&EndpointTarget],
    spreads: &mut BTreeSet<usize>,
) {
    let key = ElemKey {
        addr: *ip,
        proto: sp.protocol,
        port: sp.port,
        index: None,
    };
    if endpoints.is_empty() {
        map_mut(table, names::NO_ENDPOINT_SERVICES).elements.insert(
            key,
            ElemValue::Verdict(Verdict::Goto(names::REJECT_CHAIN.into())),
        );
        return;
    }
    let chain = names::service_chain(&sp.service, &sp.port_name, sp.protocol, sp.port);
    let mut rules = Vec::new();
    // A /0 cluster CIDR contains every source: nothing to masquerade.
    if let Some(cidr) = cfg
        .cluster_cidr
        .filter(|c| c.family() == table.family && c.prefix > 0)
    {
        rules.push(Rule(vec![
            Stmt::SaddrNotIn(cidr),
            Stmt::MarkSetBits(cfg.mark()),
        ]));
    }
    rules.push(Rule(vec![Stmt::Verdict(Verdict::Goto(
        names::spread_chain(endpoints.len()),
    ))]));
    spreads.insert(endpoints.len());
    // Two cluster IPs of one family cannot happen, so the chain name (from
    // the service port) is unique within the table.
    table
        .chains
        .insert(chain.clone(), Chain::regular(chain.clone(), rules));
    map_mut(table, names::SERVICE_IPS)
        .elements
        .insert(key.clone(), ElemValue::Verdict(Verdict::Goto(chain)));
    let eps = map_mut(table, names::SERVICE_ENDPOINTS);
    for (i, ep) in endpoints.iter().enumerate() {
        let k = ElemKey {
            index: Some(i as u32),
            ..key.clone()
        };
        eps.elements.insert(k, ElemValue::Dnat(ep.ip, ep.port));
    }
}

fn map_mut<'a>(table: &'a mut Table, name: &str) -> &'a mut Map {
    table.maps.get_mut(name).expect("fixed maps exist")
}

fn add_fixed_chains(table: &mut Table, cfg: &PlannerConfig) {
    let base = |name: &str, chain_type, hook, priority, rules| Chain {
        name: name.to_string(),
        base: Some(BaseChain {
            chain_type,
            hook,
            priority,
        }),
        rules,
    };
    let jump_services = || {
        vec![Rule(vec![Stmt::Verdict(Verdict::Jump(
            names::SERVICES.into(),
        ))])]
    };
    let reject_no_endpoints = || {
        vec![Rule(vec![Stmt::DestVmap {
            map: names::NO_ENDPOINT_SERVICES.into(),
        }])]
    };
    let mark = cfg.mark();
    let chains = [
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
                Rule(vec![
                    Stmt::MarkBitsClear(mark),
                    Stmt::Verdict(Verdict::Return),
                ]),
                Rule(vec![Stmt::MarkToggleBits(mark)]),
                Rule(vec![Stmt::Masquerade]),
            ],
        ),
        base(
            names::FILTER_FORWARD,
            ChainType::Filter,
            HookPoint::Forward,
            -110,
            reject_no_endpoints(),
        ),
        base(
            names::FILTER_OUTPUT,
            ChainType::Filter,
            HookPoint::Output,
            -110,
            reject_no_endpoints(),
        ),
        Chain::regular(
            names::SERVICES,
            vec![Rule(vec![Stmt::DestVmap {
                map: names::SERVICE_IPS.into(),
            }])],
        ),
        Chain::regular(
            names::REJECT_CHAIN,
            vec![
                Rule(vec![Stmt::L4ProtoIs(Protocol::Tcp), Stmt::RejectTcpReset]),
                Rule(vec![Stmt::Reject]),
            ],
        ),
    ];
    for c in chains {
        table.chains.insert(c.name.clone(), c);
    }
    for (name, kind) in [
        (names::SERVICE_IPS, MapKind::ServiceVerdict),
        (names::NO_ENDPOINT_SERVICES, MapKind::ServiceVerdict),
        (names::SERVICE_ENDPOINTS, MapKind::EndpointDnat),
    ] {
        table.maps.insert(name.into(), Map::new(name, kind));
    }
}
