//! One rule of the tracer: its statements evaluated in order, matches,
//! `numgen` forks with their chances, map lookups, DNAT, verdicts and the
//! chains they lead to.

use super::*;

pub(super) enum RuleFlow {
    /// Go on with the next rule.
    Next,
    /// Leave the chain with this flow.
    Stop(Flow),
}

/// Where a rule sits: its chain and index.
#[derive(Clone, Copy)]
pub(super) struct At<'a> {
    pub(super) chain: &'a str,
    pub(super) rule: usize,
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
pub(super) fn run_rule(
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
            acts(&mut s, at);
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
            Stmt::DestInSet { set } => {
                let key = service_key(&s, None);
                found(table, &mut s, at, set, key).is_some()
            }
            Stmt::PortInSet { set } => {
                let key = port_key(&s, None);
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
                    acts(&mut s, at);
                }
                found(table, &mut s, at, map, key);
                return verdict(table, &v, at, s, pkt, depth);
            }
            Stmt::Verdict(v) => return verdict(table, v, at, s, pkt, depth),
        };
        if !holds {
            // The elements its matches found did not decide anything.
            let mine = own_elements(&s, at);
            s.steps.truncate(s.steps.len() - mine);
            return vec![(s, RuleFlow::Next)];
        }
    }
    vec![(s, RuleFlow::Next)]
}

/// How many of the last steps are elements the rule at `at` found.
fn own_elements(s: &State, at: At) -> usize {
    s.steps
        .iter()
        .rev()
        .take_while(|st| {
            st.chain == at.chain
                && st.rule == Some(at.rule)
                && matches!(st.event, Event::Element { .. })
        })
        .count()
}

/// The rule at `at` acts: its step goes before the elements its matches
/// found (a rule, then what it found).
fn acts(s: &mut State, at: At) {
    let at_rule = s.steps.len() - own_elements(s, at);
    s.steps.insert(
        at_rule,
        Step {
            chain: at.chain.to_string(),
            rule: Some(at.rule),
            event: Event::Rule,
        },
    );
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
