//! A packet tracer over a [`Table`]: where does the first packet of a new
//! connection end up? It follows base chains in hook and priority order,
//! jumps, gotos and verdict maps, and forks on `numgen` so that every
//! possible endpoint is reported. This tests behaviour apart from rule text.

use std::collections::BTreeSet;
use std::net::IpAddr;

use api_watch::Protocol;

use crate::model::*;

/// Where a packet comes from, which decides the hooks it crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// From a pod or the network, routed through the node: prerouting,
    /// forward, postrouting.
    Forwarded,
    /// From a process on the node: output, postrouting.
    Local,
}

/// The first packet of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol.
    pub proto: Protocol,
    /// Destination port.
    pub dport: u16,
    /// Hooks it crosses.
    pub path: Path,
}

/// How a refused packet is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// ICMP port unreachable.
    Icmp,
    /// TCP reset.
    TcpReset,
}

/// How the packet leaves the ruleset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// It goes on, possibly DNATed to (address, port) and masqueraded.
    Accepted {
        /// The DNAT target, if any.
        dnat: Option<(IpAddr, u16)>,
        /// Whether postrouting masquerades it.
        masquerade: bool,
    },
    /// Refused: with ICMP port unreachable, or a TCP reset.
    Rejected(Refusal),
    /// Dropped.
    Dropped,
}

#[derive(Debug, Clone)]
struct State {
    src: IpAddr,
    dst: IpAddr,
    dport: u16,
    mark: u32,
    dnat: Option<(IpAddr, u16)>,
    masquerade: bool,
}

enum Flow {
    /// The chain ran to its end or returned.
    Continue,
    /// Accept, or a nat statement: this hook is done.
    Accept,
    Drop,
    Reject(Refusal),
}

/// Every outcome the packet can have (several when `numgen` spreads it).
pub fn trace(table: &Table, pkt: &Packet) -> BTreeSet<Outcome> {
    let hooks: &[HookPoint] = match pkt.path {
        Path::Forwarded => &[
            HookPoint::Prerouting,
            HookPoint::Forward,
            HookPoint::Postrouting,
        ],
        Path::Local => &[HookPoint::Output, HookPoint::Postrouting],
    };
    let mut chains: Vec<&Chain> = table.chains.values().filter(|c| c.base.is_some()).collect();
    chains.sort_by_key(|c| {
        let b = c.base.expect("base chains only");
        (hooks.iter().position(|h| *h == b.hook), b.priority)
    });
    let mut states = vec![State {
        src: pkt.src,
        dst: pkt.dst,
        dport: pkt.dport,
        mark: 0,
        dnat: None,
        masquerade: false,
    }];
    let mut out = BTreeSet::new();
    for chain in chains {
        let b = chain.base.expect("base chains only");
        if !hooks.contains(&b.hook) {
            continue;
        }
        let mut next = Vec::new();
        for s in states {
            for (s, flow) in run_chain(table, chain, s, pkt.proto, 0) {
                match flow {
                    Flow::Continue | Flow::Accept => next.push(s),
                    Flow::Drop => {
                        out.insert(Outcome::Dropped);
                    }
                    Flow::Reject(how) => {
                        out.insert(Outcome::Rejected(how));
                    }
                }
            }
        }
        states = next;
    }
    for s in states {
        out.insert(Outcome::Accepted {
            dnat: s.dnat,
            masquerade: s.masquerade,
        });
    }
    out
}

fn run_chain(
    table: &Table,
    chain: &Chain,
    s: State,
    proto: Protocol,
    depth: usize,
) -> Vec<(State, Flow)> {
    assert!(depth < 32, "jump depth exceeded at chain {}", chain.name);
    let mut done = Vec::new();
    let mut live = vec![s];
    for rule in &chain.rules {
        let mut next = Vec::new();
        for s in live {
            for (s, flow) in run_rule(table, rule, s, proto, depth) {
                match flow {
                    RuleFlow::Next => next.push(s),
                    RuleFlow::Stop(f) => done.push((s, f)),
                }
            }
        }
        live = next;
    }
    done.extend(live.into_iter().map(|s| (s, Flow::Continue)));
    done
}

enum RuleFlow {
    /// Go on with the next rule.
    Next,
    /// Leave the chain with this flow.
    Stop(Flow),
}

fn key(s: &State, proto: Protocol, index: Option<u32>) -> ElemKey {
    ElemKey {
        addr: s.dst,
        proto,
        port: s.dport,
        index,
    }
}

fn run_rule(
    table: &Table,
    rule: &Rule,
    mut s: State,
    proto: Protocol,
    depth: usize,
) -> Vec<(State, RuleFlow)> {
    for (i, stmt) in rule.0.iter().enumerate() {
        match stmt {
            Stmt::SaddrNotIn(cidr) => {
                if cidr.contains(&s.src) {
                    return vec![(s, RuleFlow::Next)];
                }
            }
            Stmt::MarkBitsClear(bits) => {
                if s.mark & bits != 0 {
                    return vec![(s, RuleFlow::Next)];
                }
            }
            Stmt::MarkSetBits(bits) => s.mark |= bits,
            Stmt::MarkToggleBits(bits) => s.mark ^= bits,
            Stmt::Masquerade => {
                s.masquerade = true;
                return vec![(s, RuleFlow::Stop(Flow::Accept))];
            }
            Stmt::L4ProtoIs(p) => {
                if *p != proto {
                    return vec![(s, RuleFlow::Next)];
                }
            }
            Stmt::Reject => return vec![(s, RuleFlow::Stop(Flow::Reject(Refusal::Icmp)))],
            Stmt::RejectTcpReset => {
                return vec![(s, RuleFlow::Stop(Flow::Reject(Refusal::TcpReset)))]
            }
            Stmt::DnatSpread { modulus, map } => {
                let m = &table.maps[map];
                return (0..*modulus)
                    .map(|n| {
                        let mut s = s.clone();
                        match m.elements.get(&key(&s, proto, Some(n))) {
                            Some(ElemValue::Dnat(ip, port)) => {
                                s.dnat = Some((*ip, *port));
                                s.dst = *ip;
                                s.dport = *port;
                                (s, RuleFlow::Stop(Flow::Accept))
                            }
                            // No element: the lookup fails and the rule
                            // does not match.
                            _ => (s, RuleFlow::Next),
                        }
                    })
                    .collect();
            }
            Stmt::DestVmap { map } => {
                let v = match table.maps[map].elements.get(&key(&s, proto, None)) {
                    Some(ElemValue::Verdict(v)) => v.clone(),
                    _ => return vec![(s, RuleFlow::Next)],
                };
                return verdict(table, &v, s, proto, depth, &rule.0[i + 1..]);
            }
            Stmt::Verdict(v) => return verdict(table, v, s, proto, depth, &rule.0[i + 1..]),
        }
    }
    vec![(s, RuleFlow::Next)]
}

fn verdict(
    table: &Table,
    v: &Verdict,
    s: State,
    proto: Protocol,
    depth: usize,
    rest: &[Stmt],
) -> Vec<(State, RuleFlow)> {
    debug_assert!(
        rest.is_empty(),
        "statements after a verdict are never reached"
    );
    match v {
        Verdict::Accept => vec![(s, RuleFlow::Stop(Flow::Accept))],
        Verdict::Drop => vec![(s, RuleFlow::Stop(Flow::Drop))],
        Verdict::Return => vec![(s, RuleFlow::Stop(Flow::Continue))],
        Verdict::Jump(c) | Verdict::Goto(c) => {
            let is_goto = matches!(v, Verdict::Goto(_));
            run_chain(table, &table.chains[c], s, proto, depth + 1)
                .into_iter()
                .map(|(s, f)| match f {
                    // After a jump the caller goes on; after a goto the
                    // caller's chain is left as if it had returned.
                    Flow::Continue if !is_goto => (s, RuleFlow::Next),
                    f => (s, RuleFlow::Stop(f)),
                })
                .collect()
        }
    }
}
