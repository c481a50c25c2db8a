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
mod step;

pub use kernel::kernel_tables;
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

enum RuleFlow {
    /// Go on with the next rule.
    Next,
    /// Leave the chain with this flow.
    Stop(Flow),
}

/// Where a rule sits: its chain and index.
#[derive(Clone, Copy)]
struct At<'a> {
    chain: &'a str,
    rule: usize,
}

fn lookup<'a>(table: &'a Table, map: &str, key: &ElemKey) -> Option<&'a ElemValue> {
    table.maps.get(map).and_then(|m| m.elements.get(key))
}

/// Looks `key` up in `map` and records the element when there is one.
fn found<'a>(
    table: &'a Table,
    s: &mut State,
    at: At,
    map: &str,
    key: ElemKey,
) -> Option<&'a ElemValue> {
    let v = lookup(table, map, &key)?;
    s.step(
        at.chain,
        Some(at.rule),
        Event::Element {
            map: map.to_string(),
            key,
            value: v.clone(),
        },
    );
    Some(v)
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
    let mut out: Vec<(State, RuleFlow)> = Vec::new();
    let mut missed: Option<usize> = None;
    for (s, flow) in draws {
        match (flow, missed) {
            (RuleFlow::Next, Some(i)) => out[i].0.p += s.p,
            (RuleFlow::Next, None) => {
                missed = Some(out.len());
                out.push((s, RuleFlow::Next));
            }
            (flow, _) => out.push((s, flow)),
        }
    }
    out
}

/// The draws `0..modulus` of a `numgen … map` DNAT, each with its share
/// of the chance (none: the rule cannot match, the packet goes on).
fn draws(s: &State, modulus: u32, offset: u32) -> impl Iterator<Item = (u32, State)> + '_ {
    let share = 1.0 / f64::from(modulus.max(1));
    (0..modulus).map(move |n| {
        let mut s = s.clone();
        s.p *= share;
        (offset.wrapping_add(n), s)
    })
}

/// The name `meta iifname` loads: none ("") for a packet the node sends.
fn input_interface(pkt: &Packet) -> &str {
    match pkt.path {
        Path::Forwarded => &pkt.iifname,
        Path::Local => "",
    }
}

/// Runs the statements `stmts` of the rule at `at` (all of them, or the
/// rest after a `numgen` fork); `acting` once the rule was recorded as
/// acting.
fn run_rule(
    table: &Table,
    stmts: &[Stmt],
    at: At,
    mut acting: bool,
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
    for (i, stmt) in stmts.iter().enumerate() {
        if !acting && is_action(stmt) {
            acting = true;
            s.step(at.chain, Some(at.rule), Event::Rule);
        }
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
                let key = ElemKey::Pair(s.src, s.dst);
                found(table, &mut s, at, set, key).is_some()
            }
            // Affinity sets are filled by traffic: a client is a member
            // only where the table holds it (a read-back leaves them
            // empty; `kernel_tables` reads them).
            Stmt::SaddrInSet { set } => {
                let key = ElemKey::Addr(s.src);
                found(table, &mut s, at, set, key).is_some()
            }
            Stmt::DaddrInSet { set } => {
                let key = ElemKey::Addr(s.dst);
                found(table, &mut s, at, set, key).is_some()
            }
            Stmt::CtStateNew => s.new,
            Stmt::L4ProtoIs(p) => *p == proto,
            Stmt::MarkBitsClear(bits) => s.mark & bits == 0,
            Stmt::NumgenIs { modulus, value } => {
                // Fork: the branch where the random number equals `value`
                // goes on with this rule, the others skip it.
                let (modulus, value) = (*modulus, *value);
                let can_hold = value < modulus;
                let can_fail = modulus > 1 || !can_hold;
                let share = if can_hold && can_fail {
                    1.0 / f64::from(modulus)
                } else {
                    1.0
                };
                let draw = |held| Event::Draw {
                    modulus,
                    value,
                    held,
                };
                let mut out: Vec<(State, RuleFlow)> = Vec::new();
                if can_fail {
                    let mut skip = s.clone();
                    skip.p *= 1.0 - if can_hold { share } else { 0.0 };
                    skip.step(at.chain, Some(at.rule), draw(false));
                    out.push((skip, RuleFlow::Next));
                }
                if can_hold {
                    s.p *= share;
                    s.step(at.chain, Some(at.rule), draw(true));
                    out.extend(run_rule(table, &stmts[i + 1..], at, acting, s, pkt, depth));
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
                return spread(draws(&s, *modulus, *offset).map(|(n, mut s)| {
                    let key = service_key(&s, Some(n));
                    let v = found(table, &mut s, at, map, key);
                    dnat(s, v)
                }))
                .into_iter()
                .chain(no_draw(&s, *modulus))
                .collect();
            }
            Stmt::DnatSpreadPort {
                modulus,
                offset,
                map,
            } => {
                return spread(draws(&s, *modulus, *offset).map(|(n, mut s)| {
                    let key = port_key(&s, Some(n));
                    let v = found(table, &mut s, at, map, key);
                    dnat(s, v)
                }))
                .into_iter()
                .chain(no_draw(&s, *modulus))
                .collect();
            }
            Stmt::DestVmap { map } | Stmt::PortVmap { map } => {
                let key = if matches!(stmt, Stmt::DestVmap { .. }) {
                    service_key(&s, None)
                } else {
                    port_key(&s, None)
                };
                // The rule acts only when the map holds the key.
                let v = match lookup(table, map, &key) {
                    Some(ElemValue::Verdict(v)) => v.clone(),
                    _ => return vec![(s, RuleFlow::Next)],
                };
                if !acting {
                    s.step(at.chain, Some(at.rule), Event::Rule);
                }
                found(table, &mut s, at, map, key);
                return verdict(table, &v, at, s, pkt, depth);
            }
            Stmt::Verdict(v) => return verdict(table, v, at, s, pkt, depth),
        };
        if !holds {
            return vec![(s, RuleFlow::Next)];
        }
    }
    vec![(s, RuleFlow::Next)]
}

/// `numgen random mod 0` draws nothing: the rule does not match.
fn no_draw(s: &State, modulus: u32) -> Option<(State, RuleFlow)> {
    (modulus == 0).then(|| (s.clone(), RuleFlow::Next))
}

/// Whether `stmt` acts (the rule's matches held up to it); a verdict map
/// acts only when it holds the key.
fn is_action(stmt: &Stmt) -> bool {
    matches!(
        stmt,
        Stmt::MarkSetBits(_)
            | Stmt::MarkToggleBits(_)
            | Stmt::UpdateSaddr { .. }
            | Stmt::Masquerade
            | Stmt::Reject
            | Stmt::RejectTcpReset
            | Stmt::DnatTo(..)
            | Stmt::DnatSpread { .. }
            | Stmt::DnatSpreadPort { .. }
            | Stmt::Verdict(_)
    )
}

fn verdict(
    table: &Table,
    v: &Verdict,
    at: At,
    mut s: State,
    pkt: &Packet,
    depth: usize,
) -> Vec<(State, RuleFlow)> {
    match v {
        Verdict::Accept => vec![(s, RuleFlow::Stop(Flow::Accept))],
        Verdict::Drop => vec![(s, RuleFlow::Stop(Flow::Drop))],
        Verdict::Return => vec![(s, RuleFlow::Stop(Flow::Continue))],
        Verdict::Jump(c) | Verdict::Goto(c) => {
            let is_goto = matches!(v, Verdict::Goto(_));
            if depth + 1 >= JUMP_STACK {
                s.step(at.chain, Some(at.rule), Event::JumpStackExceeded);
                return vec![(s, RuleFlow::Stop(Flow::Drop))];
            }
            let Some(chain) = table.chains.get(c) else {
                s.step(at.chain, Some(at.rule), Event::MissingChain(c.clone()));
                return vec![(s, RuleFlow::Next)];
            };
            s.step(c, None, Event::Enter);
            run_chain(table, chain, s, pkt, depth + 1)
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
