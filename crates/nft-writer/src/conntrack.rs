//! UDP conntrack clean-up, stateless: compare the kernel's UDP flows with
//! what should serve each service entry now, and delete only the flows
//! that disagree. Never a flush, and nothing on restart that the desired
//! state does not call for (kube-proxy #122740).
//!
//! UDP has no connection to end: a client that keeps sending keeps its
//! conntrack entry alive, and with it the DNAT decision (or the lack of
//! one) taken for its first datagram. So when an endpoint goes away, the
//! flows it answers must be deleted for the client to reach another one;
//! and when a service gets its first endpoint, flows to it that were
//! tracked without DNAT must go for the client to reach that endpoint.
//!
//! [`stale_flows`] decides (pure); [`Conntrack`] talks ctnetlink (thin);
//! [`clean_udp`] wires the two.

mod ctnetlink;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

pub use ctnetlink::Conntrack;

use crate::error::Error;

/// Where UDP clients address a service: an IP:port (cluster IP, external
/// IP, load-balancer IP) or a node port on any local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UdpEntry {
    /// `conntrack -L -p udp --orig-dst <ip> --dport <port>`.
    Addr(SocketAddr),
    /// `conntrack -L -p udp --dport <port>`, on whatever local address the
    /// client used.
    NodePort(u16),
}

/// What should serve one entry now: the endpoints (IP and target port)
/// that its DNAT may choose. Empty means the service has none (traffic to
/// it is rejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpService {
    /// Where clients send.
    pub entry: UdpEntry,
    /// The endpoints that answer for it now.
    pub endpoints: BTreeSet<SocketAddr>,
}

/// One UDP conntrack flow as the kernel reports it (one line of
/// `conntrack -L -p udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    /// `src=… sport=…` of the original direction: the client.
    pub orig_src: SocketAddr,
    /// `dst=… dport=…` of the original direction: where the client sent.
    pub orig_dst: SocketAddr,
    /// `src=… sport=…` of the reply direction: who answers (the endpoint,
    /// after DNAT).
    pub reply_src: SocketAddr,
    /// `dst=… dport=…` of the reply direction (the client, or the node
    /// after masquerade).
    pub reply_dst: SocketAddr,
    /// The flow was DNATed: status bit IPS_DST_NAT, the flows
    /// `conntrack -L --dst-nat` lists.
    pub dnat: bool,
}

impl std::fmt::Display for Flow {
    /// Prints the `conntrack -D` that deletes this flow.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let family = if self.orig_src.is_ipv6() {
            "ipv6"
        } else {
            "ipv4"
        };
        write!(
            f,
            "conntrack -D -f {family} -p udp --orig-src {} --orig-dst {} --sport {} --dport {}",
            self.orig_src.ip(),
            self.orig_dst.ip(),
            self.orig_src.port(),
            self.orig_dst.port()
        )
    }
}

/// Pure: the flows to delete, in the order given.
///
/// A flow is addressed to an entry when its original destination is an
/// [`UdpEntry::Addr`], or, failing that, when its original destination port
/// is an [`UdpEntry::NodePort`] (on any address: which addresses are local
/// is not known here, and kube-proxy matches node ports the same way).
/// Address entries win over node ports, as in the ruleset, where
/// `service-ips` is consulted before `service-nodeports`. A flow addressed
/// to an entry is stale when
///  (a) it was DNATed and its reply source (the endpoint that answers, IP
///      and port) is not among the entry's endpoints now, or
///  (b) it was not DNATed (it was tracked while the service had no
///      endpoint) and the entry has endpoints now.
///
/// Flows to anything else are never touched, and an empty `desired`
/// deletes nothing. The caller passes the complete desired state: an
/// entry left out is "not a service" (its flows are kept), an entry with
/// no endpoints loses its DNATed flows.
///
/// Equivalent to a `conntrack -D -p udp --orig-dst … --dport …` per stale
/// `(entry, reply source)`, without ever touching the others.
pub fn stale_flows(flows: &[Flow], desired: &[UdpService]) -> Vec<Flow> {
    let mut addrs: BTreeMap<SocketAddr, BTreeSet<SocketAddr>> = BTreeMap::new();
    let mut ports: BTreeMap<u16, BTreeSet<SocketAddr>> = BTreeMap::new();
    // The same entry twice (say, from two slices of one service) serves
    // the union of its endpoints.
    for svc in desired {
        let eps = match svc.entry {
            UdpEntry::Addr(a) => addrs.entry(a).or_default(),
            UdpEntry::NodePort(p) => ports.entry(p).or_default(),
        };
        eps.extend(svc.endpoints.iter().copied());
    }
    flows
        .iter()
        .filter(|f| {
            let endpoints = match addrs.get(&f.orig_dst) {
                Some(eps) => eps,
                None => match ports.get(&f.orig_dst.port()) {
                    Some(eps) => eps,
                    None => return false,
                },
            };
            if f.dnat {
                !endpoints.contains(&f.reply_src)
            } else {
                !endpoints.is_empty()
            }
        })
        .copied()
        .collect()
}

/// Dumps the kernel's UDP flows, computes [`stale_flows`] and deletes
/// them; returns how many were deleted (flows that vanished on their own
/// in between are not counted). Matches `conntrack -L -p udp` followed by
/// one `conntrack -D` per stale flow. Stops at the first deletion the
/// kernel refuses.
pub fn clean_udp(ct: &mut Conntrack, desired: &[UdpService]) -> Result<usize, Error> {
    let flows = ct.dump_udp()?;
    let stale = stale_flows(&flows, desired);
    let mut deleted = 0;
    for flow in &stale {
        if ct.delete_counted(flow)? {
            deleted += 1;
            tracing::debug!(%flow, "deleted a stale UDP conntrack flow");
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A flow from `client` to `dst`, answered by `reply` (DNATed when
    /// `reply` differs from `dst`).
    fn flow(client: &str, dst: &str, reply: &str) -> Flow {
        Flow {
            orig_src: sa(client),
            orig_dst: sa(dst),
            reply_src: sa(reply),
            reply_dst: sa(client),
            dnat: dst != reply,
        }
    }

    fn svc(entry: UdpEntry, eps: &[&str]) -> UdpService {
        UdpService {
            entry,
            endpoints: eps.iter().map(|e| sa(e)).collect(),
        }
    }

    fn addr(s: &str) -> UdpEntry {
        UdpEntry::Addr(sa(s))
    }

    struct Case {
        name: &'static str,
        flows: Vec<Flow>,
        desired: Vec<UdpService>,
        stale: Vec<Flow>,
    }

    fn cases() -> Vec<Case> {
        let to_a = flow("10.0.1.5:40000", "10.43.0.10:53", "10.42.0.5:5353");
        let to_b = flow("10.0.1.6:40000", "10.43.0.10:53", "10.42.0.6:5353");
        let rejected = flow("10.0.1.7:40000", "10.43.0.10:53", "10.43.0.10:53");
        let np_a = flow("192.0.2.9:41000", "172.31.0.2:30053", "10.42.0.5:5353");
        let np_b = flow("192.0.2.9:41001", "172.31.0.3:30053", "10.42.0.6:5353");
        let np_rejected = flow("192.0.2.9:41002", "172.31.0.2:30053", "172.31.0.2:30053");
        let elsewhere = flow("10.0.1.5:40001", "10.44.0.1:53", "10.44.0.1:53");
        let direct = flow("10.0.1.5:40002", "10.42.0.5:5353", "10.42.0.5:5353");
        let v6_a = flow("[fd00::1]:40000", "[fd43::a]:53", "[fd42::5]:5353");
        let v6_b = flow("[fd00::2]:40000", "[fd43::a]:53", "[fd42::6]:5353");
        let v6_rejected = flow("[fd00::3]:40000", "[fd43::a]:53", "[fd43::a]:53");
        vec![
            Case {
                name: "an endpoint removed: its DNATed flows are deleted, the other endpoint's kept",
                flows: vec![to_a, to_b],
                desired: vec![svc(addr("10.43.0.10:53"), &["10.42.0.6:5353"])],
                stale: vec![to_a],
            },
            Case {
                name: "an endpoint that only changed its port counts as removed",
                flows: vec![to_a],
                desired: vec![svc(addr("10.43.0.10:53"), &["10.42.0.5:5354"])],
                stale: vec![to_a],
            },
            Case {
                name: "nothing changed: nothing is deleted",
                flows: vec![to_a, to_b],
                desired: vec![svc(addr("10.43.0.10:53"), &["10.42.0.5:5353", "10.42.0.6:5353"])],
                stale: vec![],
            },
            Case {
                name: "the same entry twice serves the union of its endpoints",
                flows: vec![to_a, to_b, rejected],
                desired: vec![
                    svc(addr("10.43.0.10:53"), &["10.42.0.5:5353"]),
                    svc(addr("10.43.0.10:53"), &["10.42.0.6:5353"]),
                ],
                stale: vec![rejected],
            },
            Case {
                name: "the first endpoint: flows to the entry tracked without DNAT are deleted",
                flows: vec![rejected, elsewhere],
                desired: vec![svc(addr("10.43.0.10:53"), &["10.42.0.5:5353"])],
                stale: vec![rejected],
            },
            Case {
                name: "still no endpoint: flows without DNAT stay, DNATed ones go",
                flows: vec![rejected, to_a],
                desired: vec![svc(addr("10.43.0.10:53"), &[])],
                stale: vec![to_a],
            },
            Case {
                name: "another port of the same service IP is another entry",
                flows: vec![to_a, flow("10.0.1.5:40003", "10.43.0.10:54", "10.42.0.9:5354")],
                desired: vec![svc(addr("10.43.0.10:54"), &["10.42.0.9:5354"])],
                stale: vec![],
            },
            Case {
                name: "a node port: DNATed flows on any local address to a removed endpoint are deleted",
                flows: vec![np_a, np_b],
                desired: vec![svc(UdpEntry::NodePort(30053), &["10.42.0.6:5353"])],
                stale: vec![np_a],
            },
            Case {
                name: "a node port's first endpoint: flows to that port without DNAT are deleted",
                flows: vec![np_rejected, np_b],
                desired: vec![svc(UdpEntry::NodePort(30053), &["10.42.0.6:5353"])],
                stale: vec![np_rejected],
            },
            Case {
                name: "an address entry wins over a node port with the same port number",
                flows: vec![flow("10.0.1.5:40004", "10.43.0.20:30053", "10.42.0.7:53")],
                desired: vec![
                    svc(addr("10.43.0.20:30053"), &["10.42.0.7:53"]),
                    svc(UdpEntry::NodePort(30053), &["10.42.0.6:5353"]),
                ],
                stale: vec![],
            },
            Case {
                name: "flows to addresses that are no service entry are never touched",
                flows: vec![elsewhere, direct],
                desired: vec![svc(addr("10.43.0.10:53"), &["10.42.0.6:5353"])],
                stale: vec![],
            },
            Case {
                name: "no desired state deletes nothing (never a flush)",
                flows: vec![to_a, to_b, rejected, np_a, elsewhere],
                desired: vec![],
                stale: vec![],
            },
            Case {
                name: "IPv6: an endpoint removed and rejected flows after the first endpoint",
                flows: vec![v6_a, v6_b, v6_rejected, to_a],
                desired: vec![svc(addr("[fd43::a]:53"), &["[fd42::6]:5353"])],
                stale: vec![v6_a, v6_rejected],
            },
            Case {
                name: "an IPv4 entry never matches an IPv6 flow with the same port",
                flows: vec![v6_a],
                desired: vec![svc(addr("10.43.0.10:53"), &["10.42.0.6:5353"])],
                stale: vec![],
            },
        ]
    }

    #[test]
    fn stale_flows_follow_the_rules() {
        for c in cases() {
            assert_eq!(stale_flows(&c.flows, &c.desired), c.stale, "{}", c.name);
        }
    }

    #[test]
    fn a_flow_prints_as_the_conntrack_command_that_deletes_it() {
        let f = flow("10.0.1.5:40000", "10.43.0.10:53", "10.42.0.5:5353");
        assert_eq!(
            f.to_string(),
            "conntrack -D -f ipv4 -p udp --orig-src 10.0.1.5 --orig-dst 10.43.0.10 --sport 40000 --dport 53"
        );
    }
}
