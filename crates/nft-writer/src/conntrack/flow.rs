//! [`Flow`]s as the kernel reports them, and which of them are stale.

use super::*;

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
/// `service-ips` is consulted before `service-nodeports` (kube-proxy checks
/// both, so a flow to a cluster IP whose port number is also some node
/// port can be deleted for the node port's endpoints; not here).
///
/// A flow addressed to an entry is stale when its reply source (IP and
/// port) is not a serving endpoint of a service port with that entry: a
/// DNAT to an endpoint that is gone or no longer serving, or no DNAT at
/// all (the flow was tracked while the port had no endpoint). An entry
/// several service ports claim is served by the union of their endpoints.
///
/// Flows to anything else are never touched, and an empty `desired`
/// deletes nothing. The caller passes the complete desired state: an entry
/// left out is "not a service" (its flows are kept), an entry with no
/// serving endpoint loses all its flows.
///
/// Equivalent to a `conntrack -D -p udp --orig-dst … --dport …
/// --reply-src … --reply-port-src …` per stale (entry, reply source),
/// without ever touching the others.
pub fn stale_flows(flows: &[Flow], desired: &[UdpService]) -> Vec<Flow> {
    let mut addrs: BTreeMap<SocketAddr, BTreeSet<SocketAddr>> = BTreeMap::new();
    let mut ports: BTreeMap<u16, BTreeSet<SocketAddr>> = BTreeMap::new();
    for svc in desired {
        for entry in &svc.entries {
            let serving = match *entry {
                UdpEntry::Addr(a) => addrs.entry(a).or_default(),
                UdpEntry::NodePort(p) => ports.entry(p).or_default(),
            };
            serving.extend(svc.serving.iter().copied());
        }
    }
    flows
        .iter()
        .filter(|f| {
            let serving = match addrs.get(&f.orig_dst) {
                Some(serving) => serving,
                None => match ports.get(&f.orig_dst.port()) {
                    Some(serving) => serving,
                    None => return false,
                },
            };
            !serving.contains(&f.reply_src)
        })
        .copied()
        .collect()
}
