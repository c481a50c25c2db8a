//! A packet tracer over a [`Table`]: where does the first packet of a new
//! connection end up ([`trace`]), and a later packet of an established
//! one ([`trace_established`])? It follows base chains in hook and
//! priority order, jumps, gotos and verdict maps, and forks on `numgen` so
//! that every possible endpoint is reported. This tests behaviour apart
//! from rule text.

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
    /// The interface it arrives on (`iifname`), for [`Path::Forwarded`];
    /// a packet the node sends ([`Path::Local`]) has none, whatever this
    /// holds.
    pub iifname: String,
    /// The node's own addresses (`fib … type local`); a packet to one of
    /// them that is not DNATed goes to the input hook, not forward.
    pub node_addrs: Vec<IpAddr>,
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
    /// `ct state new`: the first packet of a connection. Later packets
    /// skip the nat chains (conntrack applies the translation it
    /// recorded) and match no `ct state new`.
    new: bool,
    /// For a later packet: the DNAT conntrack recorded for the connection,
    /// applied where the nat chains would run (priority -100).
    tracked: Option<(IpAddr, u16)>,
}

/// NF_IP_PRI_NAT_DST: where the DNAT of prerouting and output happens.
const NAT_DST_PRIORITY: i32 = -100;

enum Flow {
    /// The chain ran to its end or returned.
    Continue,
    /// Accept, or a nat statement: this hook is done.
    Accept,
    Drop,
    Reject(Refusal),
}

/// Every outcome the first packet of a connection can have (several when
/// `numgen` spreads it).
pub fn trace(table: &Table, pkt: &Packet) -> BTreeSet<Outcome> {
    run(table, pkt, true, None)
}

/// What happens to a later packet (original direction) of a connection
/// conntrack already tracks, which its first packet DNATed to `dnat` (or
/// not at all): the nat chains are not consulted again and `ct state new`
/// does not hold, so only the filter rules that ignore the connection
/// state can still drop or refuse it. `Accepted` reports the recorded
/// DNAT, and no masquerade (that too is conntrack's).
pub fn trace_established(
    table: &Table,
    pkt: &Packet,
    dnat: Option<(IpAddr, u16)>,
) -> BTreeSet<Outcome> {
    run(table, pkt, false, dnat)
}

fn run(
    table: &Table,
    pkt: &Packet,
    new: bool,
    tracked: Option<(IpAddr, u16)>,
) -> BTreeSet<Outcome> {
    let mut out = BTreeSet::new();
    let start = State {
        src: pkt.src,
        dst: pkt.dst,
        dport: pkt.dport,
        mark: 0,
        dnat: None,
        masquerade: false,
        new,
        tracked,
    };
    let first = match pkt.path {
        Path::Forwarded => HookPoint::Prerouting,
        Path::Local => HookPoint::Output,
    };
    for s in run_hook(table, pkt, first, vec![start], &mut out) {
        let local_dst = s.dnat.is_none() && pkt.node_addrs.contains(&s.dst);
        let rest: &[HookPoint] = match (pkt.path, local_dst) {
            (Path::Forwarded, true) => &[HookPoint::Input],
            (Path::Forwarded, false) => &[HookPoint::Forward, HookPoint::Postrouting],
            (Path::Local, true) => &[HookPoint::Input],
            (Path::Local, false) => &[HookPoint::Postrouting],
        };
        let mut states = vec![s];
        for hook in rest {
            states = run_hook(table, pkt, *hook, states, &mut out);
        }
        for s in states {
            out.insert(Outcome::Accepted {
                dnat: s.dnat,
                masquerade: s.masquerade,
            });
        }
    }
    out
}

/// Runs the base chains of `hook` in priority order; returns the states
/// that go on and records the ones that end.
fn run_hook(
    table: &Table,
    pkt: &Packet,
    hook: HookPoint,
    mut states: Vec<State>,
    out: &mut BTreeSet<Outcome>,
) -> Vec<State> {
    let mut chains: Vec<&Chain> = table
        .chains
        .values()
        .filter(|c| c.base.is_some_and(|b| b.hook == hook))
        .collect();
    chains.sort_by_key(|c| c.base.map(|b| b.priority));
    let nat_dst = matches!(hook, HookPoint::Prerouting | HookPoint::Output);
    for chain in chains {
        let base = chain.base.expect("base chains only");
        let mut next = Vec::new();
        for mut s in states {
            if !s.new && nat_dst && base.priority > NAT_DST_PRIORITY {
                conntrack_dnat(&mut s);
            }
            if !s.new && base.chain_type == ChainType::Nat {
                next.push(s);
                continue;
            }
            for (s, flow) in run_chain(table, chain, s, pkt, 0) {
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
    if nat_dst {
        states
            .iter_mut()
            .filter(|s| !s.new)
            .for_each(conntrack_dnat);
    }
    states
}

/// Applies the DNAT conntrack recorded for a later packet, once.
fn conntrack_dnat(s: &mut State) {
    if let Some((ip, port)) = s.tracked.take() {
        s.dnat = Some((ip, port));
        s.dst = ip;
        s.dport = port;
    }
}

fn run_chain(
    table: &Table,
    chain: &Chain,
    s: State,
    pkt: &Packet,
    depth: usize,
) -> Vec<(State, Flow)> {
    assert!(depth < 32, "jump depth exceeded at chain {}", chain.name);
    let mut done = Vec::new();
    let mut live = vec![s];
    for rule in &chain.rules {
        let mut next = Vec::new();
        for s in live {
            for (s, flow) in run_rule(table, rule, s, pkt, depth) {
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

fn lookup<'a>(table: &'a Table, map: &str, key: &ElemKey) -> Option<&'a ElemValue> {
    table.maps.get(map).and_then(|m| m.elements.get(key))
}

fn dnat(mut s: State, value: Option<&ElemValue>) -> (State, RuleFlow) {
    match value {
        Some(ElemValue::Dnat(ip, port)) => {
            s.dnat = Some((*ip, *port));
            s.dst = *ip;
            s.dport = *port;
            (s, RuleFlow::Stop(Flow::Accept))
        }
        // No element: the lookup fails and the rule does not match.
        _ => (s, RuleFlow::Next),
    }
}

/// The outcomes of the draws of one `numgen` DNAT: every DNAT it can
/// make, and (once) going on with the next rule when some draw finds no
/// element (another rule serves that number of endpoints).
fn spread(draws: impl Iterator<Item = (State, RuleFlow)>) -> Vec<(State, RuleFlow)> {
    let mut out = Vec::new();
    let mut missed = false;
    for (s, flow) in draws {
        match flow {
            RuleFlow::Next if missed => {}
            RuleFlow::Next => {
                missed = true;
                out.push((s, flow));
            }
            _ => out.push((s, flow)),
        }
    }
    out
}

/// The name `meta iifname` loads: none ("") for a packet the node sends.
fn input_interface(pkt: &Packet) -> &str {
    match pkt.path {
        Path::Forwarded => &pkt.iifname,
        Path::Local => "",
    }
}

fn run_rule(
    table: &Table,
    rule: &Rule,
    mut s: State,
    pkt: &Packet,
    depth: usize,
) -> Vec<(State, RuleFlow)> {
    let proto = pkt.proto;
    let service_key = |s: &State, index| ElemKey::Service {
        addr: s.dst,
        proto,
        port: s.dport,
        index,
    };
    let port_key = |s: &State, index| ElemKey::Port {
        proto,
        port: s.dport,
        index,
    };
    for (i, stmt) in rule.0.iter().enumerate() {
        let holds = match stmt {
            Stmt::SaddrIn(c) => c.contains(&s.src),
            Stmt::SaddrNotIn(c) => !c.contains(&s.src),
            Stmt::IifnameIs(i) => i.matches(input_interface(pkt)),
            Stmt::IifnameIsNot(i) => !i.matches(input_interface(pkt)),
            Stmt::DaddrIn(c) => c.contains(&s.dst),
            Stmt::DaddrNotIn(c) => !c.contains(&s.dst),
            Stmt::FibDaddrLocal => pkt.node_addrs.contains(&s.dst),
            Stmt::FibSaddrLocal => pkt.path == Path::Local,
            Stmt::AddrPairInSet { set } => {
                lookup(table, set, &ElemKey::Pair(s.src, s.dst)).is_some()
            }
            // Affinity sets are filled by traffic; a new client is in none.
            Stmt::SaddrInSet { .. } => false,
            Stmt::DaddrInSet { set } => lookup(table, set, &ElemKey::Addr(s.dst)).is_some(),
            Stmt::CtStateNew => s.new,
            Stmt::L4ProtoIs(p) => *p == proto,
            Stmt::MarkBitsClear(bits) => s.mark & bits == 0,
            Stmt::NumgenIs { modulus, value } => {
                // Fork: the branch where the random number equals `value`
                // goes on with this rule, the others skip it.
                let rest = Rule(rule.0[i + 1..].to_vec());
                let mut out: Vec<(State, RuleFlow)> = Vec::new();
                if *modulus > 1 {
                    out.push((s.clone(), RuleFlow::Next));
                }
                if value < modulus {
                    out.extend(run_rule(table, &rest, s, pkt, depth));
                }
                return out;
            }
            Stmt::MarkSetBits(bits) => {
                s.mark |= bits;
                true
            }
            Stmt::MarkToggleBits(bits) => {
                s.mark ^= bits;
                true
            }
            Stmt::UpdateSaddr { .. } => true,
            // Something this version cannot evaluate (a read-back rule
            // edited by hand): taken as a match that does not hold.
            Stmt::Unknown { .. } => false,
            Stmt::Masquerade => {
                s.masquerade = true;
                return vec![(s, RuleFlow::Stop(Flow::Accept))];
            }
            Stmt::Reject => return vec![(s, RuleFlow::Stop(Flow::Reject(Refusal::Icmp)))],
            Stmt::RejectTcpReset => {
                return vec![(s, RuleFlow::Stop(Flow::Reject(Refusal::TcpReset)))]
            }
            Stmt::DnatTo(ip, port) => {
                return vec![dnat(s, Some(&ElemValue::Dnat(*ip, *port)))];
            }
            Stmt::DnatSpread {
                modulus,
                offset,
                map,
            } => {
                return spread((*offset..offset + modulus).map(|n| {
                    let v = lookup(table, map, &service_key(&s, Some(n)));
                    dnat(s.clone(), v)
                }));
            }
            Stmt::DnatSpreadPort {
                modulus,
                offset,
                map,
            } => {
                return spread((*offset..offset + modulus).map(|n| {
                    let v = lookup(table, map, &port_key(&s, Some(n)));
                    dnat(s.clone(), v)
                }));
            }
            Stmt::DestVmap { map } | Stmt::PortVmap { map } => {
                let key = if matches!(stmt, Stmt::DestVmap { .. }) {
                    service_key(&s, None)
                } else {
                    port_key(&s, None)
                };
                let v = match lookup(table, map, &key) {
                    Some(ElemValue::Verdict(v)) => v.clone(),
                    _ => return vec![(s, RuleFlow::Next)],
                };
                return verdict(table, &v, s, pkt, depth);
            }
            Stmt::Verdict(v) => return verdict(table, v, s, pkt, depth),
        };
        if !holds {
            return vec![(s, RuleFlow::Next)];
        }
    }
    vec![(s, RuleFlow::Next)]
}

fn verdict(
    table: &Table,
    v: &Verdict,
    s: State,
    pkt: &Packet,
    depth: usize,
) -> Vec<(State, RuleFlow)> {
    match v {
        Verdict::Accept => vec![(s, RuleFlow::Stop(Flow::Accept))],
        Verdict::Drop => vec![(s, RuleFlow::Stop(Flow::Drop))],
        Verdict::Return => vec![(s, RuleFlow::Stop(Flow::Continue))],
        Verdict::Jump(c) | Verdict::Goto(c) => {
            let is_goto = matches!(v, Verdict::Goto(_));
            run_chain(table, &table.chains[c], s, pkt, depth + 1)
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
