//! The report of `nftopo trace`, JSON schema [`SCHEMA`] (a stable
//! contract: fields are only ever added; README, "nftopo trace"):
//!
//! ```text
//! schema        "nftopo.io/trace/v1"
//! scope         what was evaluated (nftopo's tables only)
//! table         "ip nftopo" | "ip6 nftopo"
//! table_found   false when the namespace holds no such table (then nothing is translated)
//! packet        {protocol, from, from_port|null, to, port, path: "forwarded"|"local", iif|null}
//! verdict       "dnat" | "accept" | "reject" | "drop" | "mixed"
//! service_chain the chain service-ips / service-nodeports led to, or null
//! plain_entry   a plain service port (no chain of its own): "@SET holds KEY", the element
//!               of plain-cluster-ips / plain-external-ips / plain-nodeports that sent the
//!               packet to spread or spread-port; else null
//! affinity      {set, endpoint: {address, port}} when a session-affinity set pins the client, or null
//! masquerade    true | false | null (null: depends on the branch)
//! candidates    [{address, port, probability, masquerade}]   the DNAT targets
//! outcomes      [{verdict: "accept"|"reject"|"drop", dnat: {address, port}|null, masquerade,
//!                 refusal: "tcp-reset"|"icmp-port-unreachable"|null, probability, reason|null,
//!                 path: [{chain, rule|null, rule_text|null, event, map|null, element|null}]}]
//! ```
//!
//! `event` is one of `hook` (a base chain), `enter` (jump or goto),
//! `rule` (the rule's matches held and it acts), `element` (found in
//! `map`), `draw-held` / `draw-missed` (a `numgen` match), `conntrack`,
//! `jump-stack-exceeded`, `missing-chain`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use nft_writer::{names, Branch, ElemValue, Event, Outcome, Packet, Path, Refusal, Table, Verdict};
use serde::Serialize;

/// The JSON schema's name and version.
pub const SCHEMA: &str = "nftopo.io/trace/v1";

/// What the trace looked at, said in every report.
const SCOPE: &str = "nftopo's own tables only (read back from the kernel of this network \
                     namespace): other nftables tables, iptables, routing and conntrack \
                     entries of existing connections are not evaluated";

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    schema: &'static str,
    scope: &'static str,
    table: String,
    /// Whether the namespace holds the table (`false`: the packet was
    /// evaluated against none, and nothing of nftopo's touches it).
    pub table_found: bool,
    packet: PacketJson,
    verdict: &'static str,
    service_chain: Option<String>,
    plain_entry: Option<String>,
    affinity: Option<Affinity>,
    masquerade: Option<bool>,
    candidates: Vec<Candidate>,
    outcomes: Vec<OutcomeJson>,
}

#[derive(Debug, Serialize)]
struct PacketJson {
    protocol: &'static str,
    from: IpAddr,
    from_port: Option<u16>,
    to: IpAddr,
    port: u16,
    path: &'static str,
    iif: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Endpoint {
    address: IpAddr,
    port: u16,
}

#[derive(Debug, Serialize)]
struct Affinity {
    set: String,
    endpoint: Endpoint,
}

#[derive(Debug, Serialize)]
struct Candidate {
    address: IpAddr,
    port: u16,
    probability: f64,
    masquerade: bool,
}

#[derive(Debug, Serialize)]
struct OutcomeJson {
    verdict: &'static str,
    dnat: Option<Endpoint>,
    masquerade: bool,
    refusal: Option<&'static str>,
    probability: f64,
    reason: Option<String>,
    path: Vec<StepJson>,
}

#[derive(Debug, PartialEq, Serialize)]
struct StepJson {
    chain: String,
    rule: Option<usize>,
    rule_text: Option<String>,
    event: String,
    map: Option<String>,
    element: Option<String>,
}

impl Report {
    /// The report of `branches`, the ways `pkt` goes through `table`.
    pub fn new(table: &Table, pkt: &Packet, sport: Option<u16>, branches: &[Branch]) -> Self {
        // One entry per distinct outcome: the chances summed, the path of
        // its first branch.
        let mut grouped: BTreeMap<&Outcome, (f64, &Branch)> = BTreeMap::new();
        for b in branches {
            grouped.entry(&b.outcome).or_insert((0.0, b)).0 += b.probability;
        }
        let outcomes: Vec<OutcomeJson> = grouped
            .iter()
            .map(|(o, (p, b))| outcome_json(table, o, *p, b))
            .collect();
        let candidates = grouped
            .iter()
            .filter_map(|(o, (p, _))| match o {
                Outcome::Accepted {
                    dnat: Some((address, port)),
                    masquerade,
                } => Some(Candidate {
                    address: *address,
                    port: *port,
                    probability: *p,
                    masquerade: *masquerade,
                }),
                _ => None,
            })
            .collect();
        let verdicts: Vec<&str> = outcomes.iter().map(|o| o.verdict).collect();
        let all_dnat = grouped
            .keys()
            .all(|o| matches!(o, Outcome::Accepted { dnat: Some(_), .. }));
        let verdict = match verdicts.as_slice() {
            [] => "drop",
            _ if all_dnat => "dnat",
            [one] => one,
            _ => "mixed",
        };
        let masq: Vec<bool> = outcomes.iter().map(|o| o.masquerade).collect();
        let masquerade = match masq.first() {
            Some(m) if masq.iter().all(|x| x == m) => Some(*m),
            _ => None,
        };
        let affinity = branches.iter().find_map(|b| {
            let set = b.affinity_set(table)?;
            let (address, port) = b.dnat()?;
            Some(Affinity {
                set: set.to_string(),
                endpoint: Endpoint { address, port },
            })
        });
        Report {
            schema: SCHEMA,
            scope: SCOPE,
            table: format!("{} {}", table.family.nft_name(), table.name),
            table_found: true,
            packet: PacketJson {
                protocol: pkt.proto.nft_name(),
                from: pkt.src,
                from_port: sport,
                to: pkt.dst,
                port: pkt.dport,
                path: match pkt.path {
                    Path::Forwarded => "forwarded",
                    Path::Local => "local",
                },
                iif: (pkt.path == Path::Forwarded && !pkt.iifname.is_empty())
                    .then(|| pkt.iifname.clone()),
            },
            verdict,
            service_chain: branches.iter().find_map(service_chain),
            plain_entry: branches.iter().find_map(plain_entry),
            affinity,
            masquerade,
            candidates,
            outcomes,
        }
    }

    /// The report as text.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let p = &self.packet;
        let from = match p.from_port {
            Some(port) => format!("{}", std::net::SocketAddr::new(p.from, port)),
            None => p.from.to_string(),
        };
        let to = std::net::SocketAddr::new(p.to, p.port);
        let how = match (&p.iif, p.path) {
            (_, "local") => "sent by this node".to_string(),
            (Some(i), _) => format!("arriving on {i}"),
            (None, _) => "arriving".to_string(),
        };
        let _ = writeln!(out, "packet:     {} {from} -> {to}, {how}", p.protocol);
        let _ = writeln!(out, "table:      {} ({})", self.table, self.scope);
        if !self.table_found {
            let _ = writeln!(out, "            this namespace holds no such table");
        }
        if let Some(c) = &self.service_chain {
            let _ = writeln!(out, "service:    chain {c}");
        }
        if let Some(e) = &self.plain_entry {
            let _ = writeln!(
                out,
                "service:    {e} (a plain service port: no chain of its own)"
            );
        }
        if let Some(a) = &self.affinity {
            let _ = writeln!(
                out,
                "affinity:   the client is in @{}: pinned to {}",
                a.set,
                std::net::SocketAddr::new(a.endpoint.address, a.endpoint.port)
            );
        }
        if !self.candidates.is_empty() {
            let _ = writeln!(out, "candidates:");
            for c in &self.candidates {
                let _ = writeln!(
                    out,
                    "  {:<28} {:>6.2}%   masquerade: {}",
                    std::net::SocketAddr::new(c.address, c.port).to_string(),
                    c.probability * 100.0,
                    if c.masquerade { "yes" } else { "no" }
                );
            }
        }
        // The first outcome of each verdict shows its whole path; the
        // others only the steps where they differ from it.
        let mut shown: BTreeMap<(&str, bool), &Vec<StepJson>> = BTreeMap::new();
        for o in &self.outcomes {
            let what = match (o.verdict, o.dnat, o.refusal) {
                ("accept", Some(d), _) => {
                    format!("DNAT to {}", std::net::SocketAddr::new(d.address, d.port))
                }
                ("accept", None, _) => "accepted, not translated".to_string(),
                ("reject", _, Some(r)) => format!("rejected ({r})"),
                (v, _, _) => v.to_string(),
            };
            let masq = if o.masquerade { ", masqueraded" } else { "" };
            let _ = writeln!(out, "\n{what}{masq}: {:.2}%", o.probability * 100.0);
            if let Some(r) = &o.reason {
                let _ = writeln!(out, "  why: {r}");
            }
            let kind = (o.verdict, o.dnat.is_some());
            match shown.get(&kind) {
                None => {
                    shown.insert(kind, &o.path);
                    for s in &o.path {
                        let _ = writeln!(out, "  {}", step_line(s));
                    }
                }
                Some(first) => {
                    let _ = writeln!(out, "  (the path above, but:)");
                    for s in o.path.iter().filter(|s| !first.contains(s)) {
                        let _ = writeln!(out, "  {}", step_line(s));
                    }
                }
            }
        }
        let _ = writeln!(out, "\nverdict:    {}", self.verdict);
        out
    }
}

fn step_line(s: &StepJson) -> String {
    let rule = s.rule.map(|r| format!(" rule {r}")).unwrap_or_default();
    match s.event.as_str() {
        "hook" | "enter" => format!("{} {}", s.event, s.chain),
        "rule" => format!(
            "  {}{rule}: {}",
            s.chain,
            s.rule_text.as_deref().unwrap_or("")
        ),
        "element" => format!(
            "    @{}: {}",
            s.map.as_deref().unwrap_or(""),
            s.element.as_deref().unwrap_or("")
        ),
        other => format!("    {other} ({}{rule})", s.chain),
    }
}

/// The chain a service map's element sends the packet to.
fn service_chain(b: &Branch) -> Option<String> {
    b.elements().find_map(|(map, _, value)| match (map, value) {
        (
            names::SERVICE_IPS | names::SERVICE_NODEPORTS,
            ElemValue::Verdict(Verdict::Goto(c) | Verdict::Jump(c)),
        ) => Some(c.clone()),
        _ => None,
    })
}

/// The element of a plain set that sent the packet to `spread` /
/// `spread-port`, as `@SET holds KEY`.
fn plain_entry(b: &Branch) -> Option<String> {
    b.elements().find_map(|(map, key, value)| match map {
        names::PLAIN_CLUSTER_IPS | names::PLAIN_EXTERNAL_IPS | names::PLAIN_NODEPORTS => Some(
            format!("@{map} holds {}", nft_writer::element_text(key, value)),
        ),
        _ => None,
    })
}

fn outcome_json(table: &Table, o: &Outcome, p: f64, b: &Branch) -> OutcomeJson {
    let (verdict, dnat, masquerade, refusal) = match o {
        Outcome::Accepted { dnat, masquerade } => (
            "accept",
            dnat.map(|(address, port)| Endpoint { address, port }),
            *masquerade,
            None,
        ),
        Outcome::Rejected(r) => (
            "reject",
            None,
            false,
            Some(match r {
                Refusal::TcpReset => "tcp-reset",
                Refusal::Icmp => "icmp-port-unreachable",
            }),
        ),
        Outcome::Dropped => ("drop", None, false, None),
    };
    OutcomeJson {
        verdict,
        dnat,
        masquerade,
        refusal,
        probability: p,
        reason: b.reason(),
        path: b.steps.iter().map(|s| step_json(table, s)).collect(),
    }
}

fn step_json(table: &Table, s: &nft_writer::Step) -> StepJson {
    let rule_text = s.rule.and_then(|i| {
        let rule = table.chains.get(&s.chain)?.rules.get(i)?;
        Some(nft_writer::rule_text(table.family, rule))
    });
    let (event, map, element) = match &s.event {
        Event::Hook => ("hook".to_string(), None, None),
        Event::Enter => ("enter".to_string(), None, None),
        Event::Rule => ("rule".to_string(), None, None),
        Event::Element { map, key, value } => (
            "element".to_string(),
            Some(map.clone()),
            Some(nft_writer::element_text(key, value)),
        ),
        Event::Draw { held, .. } => (
            if *held { "draw-held" } else { "draw-missed" }.to_string(),
            None,
            None,
        ),
        Event::Conntrack => ("conntrack".to_string(), None, None),
        Event::JumpStackExceeded => ("jump-stack-exceeded".to_string(), None, None),
        Event::MissingChain(c) => ("missing-chain".to_string(), None, Some(c.clone())),
    };
    StepJson {
        chain: s.chain.clone(),
        rule: s.rule,
        rule_text: if matches!(s.event, Event::Rule) {
            rule_text
        } else {
            None
        },
        event,
        map,
        element,
    }
}
