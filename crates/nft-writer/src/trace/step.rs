//! What the tracer reports besides outcomes: each possible way through
//! the table ([`Branch`]) with its probability and the steps that decided
//! it (base chains entered, rules that acted, elements found, `numgen`
//! draws), and a one-line reason for a refusal or a drop.

use std::net::IpAddr;

use crate::model::*;
use crate::names;

use super::Outcome;

/// One way a packet can go through the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// Where it ends.
    pub outcome: Outcome,
    /// The chance of this way (the product of the `numgen` draws on it;
    /// the branches of one packet sum to 1).
    pub probability: f64,
    /// What decided it, in order.
    pub steps: Vec<Step>,
}

/// One step of a [`Branch`]: an event in chain `chain`, at rule `rule`
/// (its index in the chain) when a rule caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The chain.
    pub chain: String,
    /// The rule's index in the chain, if a rule caused the event.
    pub rule: Option<usize>,
    /// What happened.
    pub event: Event,
}

/// What happened at a [`Step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The packet enters a base chain (its hook, type and priority are
    /// the chain's `base`).
    Hook,
    /// The packet enters a regular chain by `jump` or `goto`.
    Enter,
    /// Every match of the rule held up to its first action: the rule acts
    /// (marks, jumps, looks up a verdict map, translates, refuses, …).
    Rule,
    /// The rule found this element in a set or map.
    Element {
        /// The set or map.
        map: String,
        /// Its key.
        key: ElemKey,
        /// Its value ([`ElemValue::Member`] in a set).
        value: ElemValue,
    },
    /// A `numgen random mod N VALUE` match: whether the draw equalled
    /// VALUE on this branch.
    Draw {
        /// N.
        modulus: u32,
        /// VALUE.
        value: u32,
        /// Whether the match held.
        held: bool,
    },
    /// A later packet: conntrack applied the DNAT it recorded.
    Conntrack,
    /// Jumps nested deeper than the kernel's stack allows
    /// (NFT_JUMP_STACK_SIZE): the kernel drops the packet.
    JumpStackExceeded,
    /// A jump or goto to a chain the table does not hold (only in a
    /// table edited by hand): taken as a chain without rules.
    MissingChain(String),
}

impl Branch {
    /// The DNAT target, if the packet is accepted and translated.
    pub fn dnat(&self) -> Option<(IpAddr, u16)> {
        match self.outcome {
            Outcome::Accepted { dnat, .. } => dnat,
            _ => None,
        }
    }

    /// The elements found on the way, in order (map, key, value).
    pub fn elements(&self) -> impl Iterator<Item = (&str, &ElemKey, &ElemValue)> {
        self.steps.iter().filter_map(|s| match &s.event {
            Event::Element { map, key, value } => Some((map.as_str(), key, value)),
            _ => None,
        })
    }

    /// The session-affinity set (in `table`) that pinned the client to
    /// its endpoint on this branch, if one did.
    pub fn affinity_set<'a>(&'a self, table: &Table) -> Option<&'a str> {
        self.elements().map(|(map, _, _)| map).find(|map| {
            table
                .maps
                .get(*map)
                .is_some_and(|m| matches!(m.kind, MapKind::AffinitySet { .. }))
        })
    }

    /// Why the packet is refused or dropped (`None` when it is accepted),
    /// from the maps and chains on its way.
    pub fn reason(&self) -> Option<String> {
        if matches!(self.outcome, Outcome::Accepted { .. }) {
            return None;
        }
        let last_element = self.elements().last();
        let chains: Vec<&str> = self.steps.iter().map(|s| s.chain.as_str()).collect();
        let last_chain = chains.last().copied().unwrap_or("");
        if self
            .steps
            .iter()
            .any(|s| s.event == Event::JumpStackExceeded)
        {
            return Some("jumps nested deeper than the kernel allows".into());
        }
        let why = match last_element {
            Some((
                set @ (names::NO_ENDPOINT_REJECT
                | names::NO_ENDPOINT_DROP
                | names::NO_ENDPOINT_NODEPORTS_REJECT
                | names::NO_ENDPOINT_NODEPORTS_DROP),
                key,
                value,
            )) => {
                let what = match set {
                    names::NO_ENDPOINT_DROP | names::NO_ENDPOINT_NODEPORTS_DROP => {
                        "the Service port has endpoints, but its traffic policy \
                         (Local) allows none on this node"
                    }
                    _ => "the Service port has no usable endpoint",
                };
                format!(
                    "{what} (@{} holds {})",
                    last_element.map(|e| e.0).unwrap_or_default(),
                    crate::render::element_text(key, value)
                )
            }
            Some((names::FIREWALL_IPS, _, _)) if last_chain.starts_with("fw-") => format!(
                "the source is not in the Service's loadBalancerSourceRanges (chain {last_chain})"
            ),
            Some((names::CLUSTER_IPS, _, _)) if last_chain == names::REJECT_CHAIN => {
                "a cluster IP on a port no Service port defines".into()
            }
            _ if last_chain.starts_with("loc-") => {
                "externalTrafficPolicy Local and no endpoint on this node".into()
            }
            _ if chains.contains(&names::CLUSTER_IPS_CHECK) => {
                "an address of a ServiceCIDR that no Service holds".into()
            }
            _ => format!("rule {} of chain {last_chain}", self.last_rule_text()),
        };
        Some(why)
    }

    fn last_rule_text(&self) -> String {
        self.steps
            .iter()
            .rev()
            .find_map(|s| s.rule)
            .map_or_else(|| "?".into(), |r| r.to_string())
    }
}
