//! The fixed part of a table (what does not depend on the Services): base
//! chains, `services`, node-port dispatch, `reject-chain`,
//! `cluster-ips-check` with the ServiceCIDRs, and the shared maps, empty.

use super::*;

/// The rules that pick the node-port destinations (the addresses
/// `--nodeport-addresses` selects), each ending in `tail`.
pub(super) fn nodeport_rules(
    family: Family,
    cfg: &PlannerConfig,
    node_addresses: &[IpAddr],
    tail: &[Stmt],
) -> Vec<Rule> {
    let with_tail = |mut head: Vec<Stmt>| {
        head.extend_from_slice(tail);
        rule(head)
    };
    match &cfg.nodeport_addresses {
        NodePortAddresses::Primary => primary_address(node_addresses, family)
            .map(|ip| with_tail(vec![Stmt::DaddrIn(Cidr::host(ip))]))
            .into_iter()
            .collect(),
        NodePortAddresses::All => {
            let loopback = match family {
                Family::Ip => Cidr::new(Ipv4Addr::LOCALHOST.into(), 8),
                Family::Ip6 => Cidr::new(Ipv6Addr::LOCALHOST.into(), 128),
            }
            .expect("a valid length");
            vec![with_tail(vec![
                Stmt::FibDaddrLocal,
                Stmt::DaddrNotIn(loopback),
            ])]
        }
        NodePortAddresses::Cidrs(cidrs) => cidrs
            .iter()
            .filter(|c| family.contains(&c.addr()))
            .map(|c| with_tail(vec![Stmt::FibDaddrLocal, Stmt::DaddrIn(*c)]))
            .collect(),
    }
}

/// `ip daddr . meta l4proto . th dport @set`, then `then`.
fn dest_in(set: &str, then: Vec<Stmt>) -> Rule {
    let mut r = vec![Stmt::DestInSet { set: set.into() }];
    r.extend(then);
    rule(r)
}

/// `meta l4proto . th dport @set`, then `then`.
fn port_in(set: &str, then: Vec<Stmt>) -> Vec<Stmt> {
    let mut r = vec![Stmt::PortInSet { set: set.into() }];
    r.extend(then);
    r
}

/// The rules of `services`: the plain service ports by data (the
/// cluster IPs marked for masquerade as the settings ask, the external
/// entries always), then the verdict maps of the others' chains; for
/// cluster IPs, external IPs and load-balancer IPs, then for node ports
/// on the addresses that serve them.
fn services_rules(
    family: Family,
    cfg: &PlannerConfig,
    node_addresses: &[IpAddr],
    pods: Option<&PodMatch>,
) -> Vec<Rule> {
    let mark = Stmt::MarkSetBits(cfg.mark());
    let mut rules = Vec::new();
    if cfg.masquerade_all {
        rules.push(dest_in(names::PLAIN_CLUSTER_IPS, vec![mark.clone()]));
    } else if let Some(p) = pods {
        rules.push(dest_in(
            names::PLAIN_CLUSTER_IPS,
            vec![p.if_not_local(), mark.clone()],
        ));
    }
    rules.push(dest_in(names::PLAIN_CLUSTER_IPS, vec![goto(names::SPREAD)]));
    rules.push(dest_in(
        names::PLAIN_EXTERNAL_IPS,
        vec![mark.clone(), goto(names::SPREAD)],
    ));
    rules.push(rule(vec![Stmt::DestVmap {
        map: names::SERVICE_IPS.into(),
    }]));
    rules.extend(nodeport_rules(
        family,
        cfg,
        node_addresses,
        &port_in(names::PLAIN_NODEPORTS, vec![mark, goto(names::SPREAD_PORT)]),
    ));
    rules.extend(nodeport_rules(
        family,
        cfg,
        node_addresses,
        &[Stmt::PortVmap {
            map: names::SERVICE_NODEPORTS.into(),
        }],
    ));
    rules
}

/// `rule` for new connections only: `ct state new` in front.
pub(super) fn new_only(mut r: Rule) -> Rule {
    r.0.insert(0, Stmt::CtStateNew);
    r
}

pub(super) fn fixed(
    table: &mut Table,
    node_addresses: &[IpAddr],
    service_cidrs: &[Cidr],
    cfg: &PlannerConfig,
    pods: Option<&PodMatch>,
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
    let reject = || goto(names::REJECT_CHAIN);
    let drop = || Stmt::Verdict(Verdict::Drop);
    // New connections to service addresses without usable endpoints.
    let no_endpoint_services = || {
        vec![
            new_only(dest_in(names::NO_ENDPOINT_REJECT, vec![reject()])),
            new_only(dest_in(names::NO_ENDPOINT_DROP, vec![drop()])),
        ]
    };
    let cluster_ips_check = || {
        new_only(rule(vec![Stmt::Verdict(Verdict::Jump(
            names::CLUSTER_IPS_CHECK.into(),
        ))]))
    };
    let mark = cfg.mark();
    // Refusals of new connections to service ports without endpoints:
    // their addresses, then the node ports on this node's addresses.
    let mut no_endpoints = no_endpoint_services();
    for (set, verdict) in [
        (names::NO_ENDPOINT_NODEPORTS_REJECT, reject()),
        (names::NO_ENDPOINT_NODEPORTS_DROP, drop()),
    ] {
        no_endpoints.extend(
            nodeport_rules(family, cfg, node_addresses, &port_in(set, vec![verdict]))
                .into_iter()
                .map(new_only),
        );
    }
    // The node's own traffic: as upstream's filter-output, the endpoint
    // checks, then loadBalancerSourceRanges.
    let mut output = no_endpoints.clone();
    output.push(dest_vmap(names::FIREWALL_IPS));
    let services = services_rules(family, cfg, node_addresses, pods);
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
            {
                let mut rules = no_endpoint_services();
                rules.push(cluster_ips_check());
                rules
            },
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
        (names::PLAIN_CLUSTER_IPS, MapKind::ServiceSet),
        (names::PLAIN_EXTERNAL_IPS, MapKind::ServiceSet),
        (names::PLAIN_NODEPORTS, MapKind::PortSet),
        (names::NO_ENDPOINT_REJECT, MapKind::ServiceSet),
        (names::NO_ENDPOINT_DROP, MapKind::ServiceSet),
        (names::NO_ENDPOINT_NODEPORTS_REJECT, MapKind::PortSet),
        (names::NO_ENDPOINT_NODEPORTS_DROP, MapKind::PortSet),
        (names::FIREWALL_IPS, MapKind::ServiceVerdict),
        (names::SERVICE_ENDPOINTS, MapKind::EndpointDnat),
        (names::NODEPORT_ENDPOINTS, MapKind::PortEndpointDnat),
        (names::HAIRPIN, MapKind::AddrPairSet),
        (names::CLUSTER_IPS, MapKind::AddrSet),
    ] {
        table.maps.insert(name.into(), Map::new(name, kind));
    }
}
