//! The tracer's two front ends must agree (issue 17, item 3), shared by
//! `tests/trace_property.rs` (seeded random states, in `cargo test`) and
//! the fuzz target `trace` (`fuzz/src/lib.rs` includes this file):
//! for packets drawn from the table itself (every key of the verdict
//! maps, the cluster IPs on an undefined port, node ports), from a pod,
//! an outside client, an endpoint (hairpin) and the node, `explain` over
//! the fake kernel's read-back (what `nftopo trace` evaluates, in memory)
//! never panics, has branches whose chances are positive and sum to 1,
//! whose elements are in the table, and gives exactly the outcomes of
//! `trace` over the planned table (the packet tracer the tests use). A
//! client put into one session-affinity set is pinned: every new
//! connection that reaches a rule testing that set goes to one endpoint.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::IpAddr;

use api_watch::Protocol;
use nft_writer::{
    explain, trace, ElemKey, ElemValue, Event, FakeKernel, Family, Kernel, MapKind, Outcome,
    Packet, Path, Ruleset, Stmt, Table, Transaction,
};

fn parse(s: &str) -> IpAddr {
    s.parse().expect("a literal address")
}

/// Sources: (address, input interface) per family.
fn sources(family: Family, table: &Table) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = match family {
        Family::Ip => ["10.42.0.5", "172.31.0.200", "172.31.0.10", "127.0.0.1"],
        Family::Ip6 => ["fd00:42::5", "fd00:31::200", "fd00:31::10", "::1"],
    }
    .map(parse)
    .to_vec();
    // An endpoint (hairpin through its own service).
    let endpoint = table
        .maps
        .values()
        .flat_map(|m| m.elements.values())
        .find_map(|v| match v {
            ElemValue::Dnat(ip, _) => Some(*ip),
            _ => None,
        });
    out.extend(endpoint);
    out
}

/// Destinations drawn from the table: the keys of the verdict maps, the
/// cluster IPs on a port no service defines, the node ports on the node's
/// addresses.
fn destinations(family: Family, table: &Table) -> BTreeSet<(IpAddr, Protocol, u16)> {
    let nodes: Vec<IpAddr> = match family {
        Family::Ip => vec![parse("172.31.0.10"), parse("127.0.0.1")],
        Family::Ip6 => vec![parse("fd00:31::10")],
    };
    let mut out = BTreeSet::new();
    for m in table.maps.values() {
        for k in m.elements.keys() {
            match k {
                ElemKey::Service {
                    addr,
                    proto,
                    port,
                    index: None,
                } => {
                    out.insert((*addr, *proto, *port));
                }
                ElemKey::Port {
                    proto,
                    port,
                    index: None,
                } => out.extend(nodes.iter().map(|n| (*n, *proto, *port))),
                ElemKey::Addr(a) if m.kind == MapKind::AddrSet => {
                    out.insert((*a, Protocol::Tcp, 9));
                    out.insert((*a, Protocol::Udp, 9));
                }
                _ => {}
            }
        }
    }
    out
}

/// Every check above for every table of `planned`: the packets checked
/// and how many of them a pinned client sent through its affinity set;
/// `Err` says which packet and what differs.
pub fn check_trace(planned: &Ruleset) -> Result<(usize, usize), String> {
    let mut kernel = FakeKernel::new();
    kernel
        .apply(&Transaction::replace(planned))
        .map_err(|e| format!("the fake kernel refuses the plan: {e}"))?;
    let held = kernel.read_back().map_err(|e| e.to_string())?;
    let (mut checked, mut pinned) = (0, 0);
    for table in &planned.tables {
        let Some(read) = held.tables.iter().find(|t| t.family == table.family) else {
            return Err(format!("no {:?} table read back", table.family));
        };
        let node_addrs: Vec<IpAddr> = match table.family {
            Family::Ip => vec![parse("172.31.0.10"), parse("127.0.0.1")],
            Family::Ip6 => vec![parse("fd00:31::10"), parse("::1")],
        };
        for (dst, proto, dport) in destinations(table.family, table) {
            for src in sources(table.family, table) {
                for path in [Path::Forwarded, Path::Local] {
                    let pkt = Packet {
                        src,
                        dst,
                        proto,
                        dport,
                        path,
                        iifname: "eth0".into(),
                        node_addrs: node_addrs.clone(),
                    };
                    check_packet(table, read, &pkt)?;
                    checked += 1;
                }
            }
        }
        pinned += check_affinity(read, &node_addrs)?;
    }
    Ok((checked, pinned))
}

fn check_packet(planned: &Table, read: &Table, pkt: &Packet) -> Result<(), String> {
    let branches = explain(read, pkt);
    let ctx = || format!("{pkt:?}");
    let total: f64 = branches.iter().map(|b| b.probability).sum();
    if branches.is_empty() || (total - 1.0).abs() > 1e-9 {
        return Err(format!("{}: chances sum to {total}: {branches:?}", ctx()));
    }
    for b in &branches {
        if b.probability <= 0.0 {
            return Err(format!("{}: a branch of chance {}", ctx(), b.probability));
        }
        if b.steps.first().map(|s| &s.event) != Some(&Event::Hook) {
            return Err(format!("{}: a branch not starting at a hook: {b:?}", ctx()));
        }
        for (map, key, value) in b.elements() {
            let held = read.maps.get(map).and_then(|m| m.elements.get(key));
            if held != Some(value) {
                return Err(format!("{}: element {key:?} not in @{map}", ctx()));
            }
        }
    }
    let explained: BTreeSet<Outcome> = branches.into_iter().map(|b| b.outcome).collect();
    let traced = trace(planned, pkt);
    if explained != traced {
        return Err(format!(
            "{}: the read-back gives {explained:?}, the plan {traced:?}",
            ctx()
        ));
    }
    Ok(())
}

/// For each affinity set: a client put into it is pinned, wherever a rule
/// tests the set: every branch that found the client there DNATs to the
/// one endpoint that rule names. Returns how many packets did.
fn check_affinity(read: &Table, node_addrs: &[IpAddr]) -> Result<usize, String> {
    let mut pinned_packets = 0;
    let client = match read.family {
        Family::Ip => parse("10.42.0.77"),
        Family::Ip6 => parse("fd00:42::77"),
    };
    for (name, map) in &read.maps {
        if !matches!(map.kind, MapKind::AffinitySet { .. }) {
            continue;
        }
        let mut pinned = read.clone();
        if let Some(m) = pinned.maps.get_mut(name) {
            m.elements.insert(ElemKey::Addr(client), ElemValue::Member);
        }
        // The endpoint the set's rules DNAT to.
        let target = read.chains.values().flat_map(|c| &c.rules).find_map(|r| {
            let tests =
                r.0.iter()
                    .any(|s| matches!(s, Stmt::SaddrInSet { set } if set == name));
            let to = r.0.iter().find_map(|s| match s {
                Stmt::DnatTo(ip, port) => Some((*ip, *port)),
                _ => None,
            });
            if tests {
                to
            } else {
                None
            }
        });
        for (dst, proto, dport) in destinations(read.family, read) {
            let pkt = Packet {
                src: client,
                dst,
                proto,
                dport,
                path: Path::Forwarded,
                iifname: "eth0".into(),
                node_addrs: node_addrs.to_vec(),
            };
            let branches = explain(&pinned, &pkt);
            let total: f64 = branches.iter().map(|b| b.probability).sum();
            if (total - 1.0).abs() > 1e-9 {
                return Err(format!("{pkt:?} pinned: chances sum to {total}"));
            }
            let mut hit = false;
            for b in &branches {
                if b.affinity_set(&pinned) == Some(name.as_str()) {
                    hit = true;
                    if b.dnat() != target {
                        return Err(format!(
                            "{pkt:?} pinned in {name}: DNAT {:?}, the set's rule says {target:?}",
                            b.dnat()
                        ));
                    }
                }
            }
            pinned_packets += usize::from(hit);
        }
    }
    Ok(pinned_packets)
}
