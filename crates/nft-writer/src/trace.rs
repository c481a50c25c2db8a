//! A packet tracer over a [`Table`]: where does the first packet of a new
//! connection end up ([`trace`]), and a later packet of an established
//! one ([`trace_established`])? It follows base chains in hook and
//! priority order, jumps, gotos and verdict maps, and forks on `numgen` so
//! that every possible endpoint is reported. This tests behaviour apart
//! from rule text.
//!
//! One evaluator, two front ends: the tests trace the planned table (or
//! the fake kernel's), and `nftopo trace` the table read back from the
//! kernel ([`kernel_tables`], with the session-affinity sets' members,
//! which are traffic state). [`explain`] reports each way through the
//! table ([`Branch`]) with its probability and the steps that decided it;
//! [`trace`] is the set of its outcomes.

use std::collections::BTreeSet;
use std::net::IpAddr;

use api_watch::Protocol;

use crate::model::*;

mod kernel;
mod rule;
mod step;

pub use kernel::kernel_tables;
use rule::{run_rule, At, RuleFlow};
pub use step::{Branch, Event, Step};

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
    /// The chance of this state (the product of its `numgen` draws).
    p: f64,
    /// What decided it so far.
    steps: Vec<Step>,
}

impl State {
    fn step(&mut self, chain: &str, rule: Option<usize>, event: Event) {
        self.steps.push(Step {
            chain: chain.to_string(),
            rule,
            event,
        });
    }
}

/// NFT_JUMP_STACK_SIZE: jumps the kernel follows before it drops.
const JUMP_STACK: usize = 16;

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
    outcomes(run(table, pkt, true, None))
}

/// Every way the first packet of a connection can go through `table`,
/// with its probability and the steps that decided it. The members of a
/// session-affinity set count where the table holds them (a read-back
/// leaves them out, [`kernel_tables`] reads them): a client in one is
/// pinned to its endpoint.
pub fn explain(table: &Table, pkt: &Packet) -> Vec<Branch> {
    run(table, pkt, true, None)
}

fn outcomes(branches: Vec<Branch>) -> BTreeSet<Outcome> {
    branches.into_iter().map(|b| b.outcome).collect()
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
    outcomes(run(table, pkt, false, dnat))
}

fn ended(s: State, outcome: Outcome) -> Branch {
    Branch {
        outcome,
        probability: s.p,
        steps: s.steps,
    }
}

fn run(table: &Table, pkt: &Packet, new: bool, tracked: Option<(IpAddr, u16)>) -> Vec<Branch> {
    let mut out = Vec::new();
    let start = State {
        src: pkt.src,
        dst: pkt.dst,
        dport: pkt.dport,
        mark: 0,
        dnat: None,
        masquerade: false,
        new,
        tracked,
        p: 1.0,
        steps: Vec::new(),
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
            let outcome = Outcome::Accepted {
                dnat: s.dnat,
                masquerade: s.masquerade,
            };
            out.push(ended(s, outcome));
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
    out: &mut Vec<Branch>,
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
            s.step(&chain.name, None, Event::Hook);
            for (s, flow) in run_chain(table, chain, s, pkt, 0) {
                match flow {
                    Flow::Continue | Flow::Accept => next.push(s),
                    Flow::Drop => out.push(ended(s, Outcome::Dropped)),
                    Flow::Reject(how) => out.push(ended(s, Outcome::Rejected(how))),
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
        s.step("", None, Event::Conntrack);
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
    let mut done = Vec::new();
    let mut live = vec![s];
    for (index, rule) in chain.rules.iter().enumerate() {
        let at = At {
            chain: &chain.name,
            rule: index,
        };
        let mut next = Vec::new();
        for s in live {
            for (s, flow) in run_rule(table, &rule.0, at, false, s, pkt, depth) {
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
