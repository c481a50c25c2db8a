//! UDP conntrack clean-up, stateless: compare the kernel's UDP flows with
//! what may serve each service entry now, and delete only the flows that
//! disagree. Never a flush, and nothing on restart that the desired state
//! does not call for (kube-proxy #122740).
//!
//! UDP has no connection to end: a client that keeps sending keeps its
//! conntrack entry alive, and with it the DNAT decision (or the lack of
//! one) taken for its first datagram. The rule is kube-proxy's
//! `CleanStaleEntries` (pkg/proxy/conntrack/cleanup.go), with the two
//! fixes merged after it (#139629, #141371):
//!
//! * a flow to a service entry (cluster IP, external IP or load-balancer
//!   IP at the port, or the node port on any address) is deleted when
//!   its DNAT target, the reply source (IP and port), is not a *serving*
//!   endpoint of the service port: ready, or serving and terminating,
//!   whatever the traffic policies, topology keys and hints choose for new
//!   connections. A change of the Service or of its topology does not cut
//!   a flow whose endpoint still serves, as it does not cut a TCP
//!   connection;
//! * so a flow tracked without DNAT (while the port had no endpoint)
//!   goes once the port has one, and every flow of a port left without
//!   a serving endpoint goes (its clients then get the port's reject);
//! * a service port that is deleted is cleaned once as if it had no
//!   endpoint ([`UdpCleanup`] remembers it until a clean-up goes through).
//!
//! A clean-up looks only where something can be stale ([`Scope`]): at the
//! entries whose serving endpoints lost a member, or gained their first
//! one, since the last clean-up that went through, and at deleted service
//! ports. A sync that took no UDP endpoint away dumps nothing, and the
//! dumps it does make are filtered by the kernel (entry by entry, UDP
//! only), so the cost follows the change, not the node's conntrack table.
//!
//! [`stale_flows`] decides (pure); [`Conntrack`] talks ctnetlink (thin);
//! [`clean_udp`] wires the two.

mod ctnetlink;
mod flow;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use api_watch::ObjectKey;

pub use ctnetlink::Conntrack;
pub use flow::*;

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

/// One UDP service port (kube-proxy's service port of one protocol): where
/// its clients send, and which endpoints may answer them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpService {
    /// The Service. With [`Self::port_name`], what tells between two plans
    /// that a service port was deleted.
    pub service: ObjectKey,
    /// The service port's name (empty when unnamed).
    pub port_name: String,
    /// Where clients send: the cluster IPs, external IPs and
    /// load-balancer IPs at the port, and the node port.
    pub entries: Vec<UdpEntry>,
    /// Every serving endpoint (IP and target port) of the port: ready, or
    /// serving and terminating, whatever the traffic policies and topology
    /// choose. Empty: the port has none (every flow to it is stale).
    pub serving: BTreeSet<SocketAddr>,
}

/// The clean-up's view of one port plan: where its clients send and who
/// serves them; `None` for a port of another protocol.
pub fn udp_service(sp: &topology_filter::ServicePortPlan) -> Option<UdpService> {
    if sp.protocol != api_watch::Protocol::Udp {
        return None;
    }
    let addrs = sp
        .cluster_ips
        .iter()
        .chain(&sp.external_ips)
        .chain(&sp.load_balancer_ips);
    let mut entries: Vec<UdpEntry> = addrs
        .map(|ip| UdpEntry::Addr(SocketAddr::new(*ip, sp.port)))
        .collect();
    entries.extend(sp.node_port.map(UdpEntry::NodePort));
    Some(UdpService {
        service: sp.service.clone(),
        port_name: sp.port_name.clone(),
        entries,
        serving: sp.serving_endpoints().into_iter().collect(),
    })
}

/// The clean-up's memory between syncs: the UDP service ports of the last
/// plan, those deleted since the last clean-up that went through
/// (kube-proxy #141371: a deleted Service is cleaned as one without
/// endpoints, once), and what each entry's serving endpoints were at that
/// clean-up. A restart forgets the deleted ones, as kube-proxy's does.
///
/// Kept up to date per Service ([`UdpCleanup::update_service`]), so that
/// a sync costs what changed: only the entries of the Services updated
/// since the last clean-up are looked at by [`UdpCleanup::scope`].
#[derive(Debug, Clone, Default)]
pub struct UdpCleanup {
    /// The plan's UDP service ports, by (Service, port name).
    ports: BTreeMap<(ObjectKey, String), UdpService>,
    /// Service ports deleted since the last clean-up, without serving
    /// endpoints.
    deleted: BTreeMap<(ObjectKey, String), UdpService>,
    /// Which service ports (current or deleted) claim each entry.
    by_entry: BTreeMap<UdpEntry, BTreeSet<(ObjectKey, String)>>,
    /// Entries of Services updated since the last clean-up.
    touched: BTreeSet<UdpEntry>,
    /// The serving endpoints of each entry at the last clean-up that went
    /// through; `None` before the first (everything is looked at then).
    cleaned: Option<BTreeMap<UdpEntry, BTreeSet<SocketAddr>>>,
}

/// Where a clean-up must look for stale flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Nothing can be stale: no dump at all.
    Nothing,
    /// Only the flows to these entries can be stale: one kernel-filtered
    /// dump each.
    Entries(BTreeSet<UdpEntry>),
    /// Every UDP flow (the first clean-up, or too many entries to dump
    /// one by one).
    Everything,
}

/// Past this many entries, one UDP dump is cheaper than a filtered dump
/// per entry (each filtered dump walks the kernel's whole table).
const MAX_ENTRY_DUMPS: usize = 16;

type PortKey = (ObjectKey, String);

impl UdpCleanup {
    /// Takes the UDP service ports of a whole new plan
    /// ([`crate::udp_services`]): every Service is updated, and those not
    /// in `services` lose their UDP ports.
    pub fn update(&mut self, services: Vec<UdpService>) {
        let mut by_service: BTreeMap<ObjectKey, Vec<UdpService>> = BTreeMap::new();
        for s in services {
            by_service.entry(s.service.clone()).or_default().push(s);
        }
        let gone: BTreeSet<ObjectKey> = self
            .ports
            .keys()
            .map(|(svc, _)| svc.clone())
            .filter(|svc| !by_service.contains_key(svc))
            .collect();
        for svc in gone {
            self.update_service(&svc, Vec::new());
        }
        for (svc, ports) in by_service {
            self.update_service(&svc, ports);
        }
    }

    /// Takes one Service's UDP service ports from a new plan (none: it has
    /// none, or is gone). Its ports the plan no longer has (same Service
    /// and port name) were deleted: they are kept, without serving
    /// endpoints, until a clean-up goes through.
    pub fn update_service(&mut self, service: &ObjectKey, ports: Vec<UdpService>) {
        let from = (service.clone(), String::new());
        let before: Vec<PortKey> = self
            .ports
            .range(from..)
            .take_while(|((svc, _), _)| svc == service)
            .map(|(k, _)| k.clone())
            .collect();
        let now: BTreeSet<PortKey> = ports
            .iter()
            .map(|p| (p.service.clone(), p.port_name.clone()))
            .collect();
        for key in before {
            let old = self.ports.remove(&key).expect("listed above");
            self.unindex(&key, &old);
            if !now.contains(&key) {
                let mut deleted = UdpService {
                    serving: BTreeSet::new(),
                    ..old
                };
                self.index(&key, &deleted);
                // Deleted before too (and created again in between): both
                // copies' entries are cleaned.
                if let Some(earlier) = self.deleted.remove(&key) {
                    for e in earlier.entries {
                        if !deleted.entries.contains(&e) {
                            deleted.entries.push(e);
                        }
                    }
                }
                self.deleted.insert(key, deleted);
            }
        }
        for port in ports {
            let key = (port.service.clone(), port.port_name.clone());
            self.index(&key, &port);
            self.ports.insert(key, port);
        }
    }

    fn index(&mut self, key: &PortKey, port: &UdpService) {
        for e in &port.entries {
            self.by_entry.entry(*e).or_default().insert(key.clone());
            self.touched.insert(*e);
        }
    }

    fn unindex(&mut self, key: &PortKey, port: &UdpService) {
        for e in &port.entries {
            self.touched.insert(*e);
            // A deleted copy of the same port may still claim the entry.
            if self.deleted.get(key).is_some_and(|d| d.entries.contains(e)) {
                continue;
            }
            if let Some(claims) = self.by_entry.get_mut(e) {
                claims.remove(key);
                if claims.is_empty() {
                    self.by_entry.remove(e);
                }
            }
        }
    }

    /// What the next clean-up compares the flows with ([`clean_udp`]):
    /// the plan's service ports, then the deleted ones with no serving
    /// endpoint. Builds the list: call it when a clean-up is due.
    pub fn desired(&self) -> Vec<UdpService> {
        self.ports
            .values()
            .chain(self.deleted.values())
            .cloned()
            .collect()
    }

    /// The serving endpoints of `entry` now: the union over the service
    /// ports that claim it (deleted ones add none).
    fn serving(&self, entry: &UdpEntry) -> BTreeSet<SocketAddr> {
        self.by_entry
            .get(entry)
            .into_iter()
            .flatten()
            .filter_map(|k| self.ports.get(k))
            .flat_map(|p| p.serving.iter().copied())
            .collect()
    }

    /// The clean-up went through: the deleted service ports are forgotten,
    /// and the serving endpoints now are the baseline of the next
    /// [`UdpCleanup::scope`].
    pub fn cleaned(&mut self) {
        let deleted = std::mem::take(&mut self.deleted);
        for (key, port) in &deleted {
            for e in &port.entries {
                let still = self.ports.get(key).is_some_and(|p| p.entries.contains(e));
                if !still {
                    if let Some(claims) = self.by_entry.get_mut(e) {
                        claims.remove(key);
                        if claims.is_empty() {
                            self.by_entry.remove(e);
                        }
                    }
                }
            }
        }
        let touched = std::mem::take(&mut self.touched);
        match &mut self.cleaned {
            None => {
                let all: BTreeMap<UdpEntry, BTreeSet<SocketAddr>> = self
                    .by_entry
                    .keys()
                    .map(|e| (*e, self.serving(e)))
                    .collect();
                self.cleaned = Some(all);
            }
            Some(_) => {
                let now: Vec<(UdpEntry, BTreeSet<SocketAddr>)> =
                    touched.iter().map(|e| (*e, self.serving(e))).collect();
                let baseline = self.cleaned.as_mut().expect("matched");
                for (e, serving) in now {
                    if self.by_entry.contains_key(&e) {
                        baseline.insert(e, serving);
                    } else {
                        baseline.remove(&e);
                    }
                }
            }
        }
    }

    /// Where the next clean-up must look. An entry's flows can be stale
    /// only if, since the last clean-up that went through, a serving
    /// endpoint of it went away (its flows may be DNATed there), or it
    /// went from none to some (its flows may have been tracked without
    /// DNAT), or its service port was deleted. An entry no service port
    /// has any more is not looked at: its flows are kept, as
    /// [`stale_flows`] keeps them. Costs the entries of the Services
    /// updated since the last clean-up, not all of them.
    pub fn scope(&self) -> Scope {
        let Some(before) = &self.cleaned else {
            return Scope::Everything;
        };
        let mut due = BTreeSet::new();
        for entry in &self.touched {
            if !self.by_entry.contains_key(entry) {
                continue;
            }
            let serving = self.serving(entry);
            let stale_possible = match before.get(entry) {
                None => !serving.is_empty(),
                Some(was) => (was.is_empty() && !serving.is_empty()) || !was.is_subset(&serving),
            };
            let deleted = self.deleted.values().any(|d| d.entries.contains(entry));
            if stale_possible || serving.is_empty() && deleted {
                due.insert(*entry);
            }
        }
        match due.len() {
            0 => Scope::Nothing,
            n if n > MAX_ENTRY_DUMPS => Scope::Everything,
            _ => Scope::Entries(due),
        }
    }
}

/// Dumps the kernel's UDP flows in `scope` (see [`UdpCleanup::scope`];
/// [`Scope::Nothing`] makes no system call), computes [`stale_flows`]
/// against `desired` and deletes them; returns how many were deleted
/// (flows that vanished on their own in between are not counted). Matches
/// `conntrack -L -p udp [--orig-dst …] [--dport …]` followed by one
/// `conntrack -D` per stale flow. Stops at the first deletion the kernel
/// refuses.
pub fn clean_udp(
    ct: &mut Conntrack,
    scope: &Scope,
    desired: &[UdpService],
) -> Result<usize, Error> {
    let flows: Vec<Flow> = match scope {
        Scope::Nothing => return Ok(0),
        Scope::Everything => ct.dump_udp()?,
        Scope::Entries(entries) => {
            // A flow can come back from two dumps (an address entry and a
            // node port of the same number): once is enough.
            let mut flows = BTreeSet::new();
            for entry in entries {
                flows.extend(ct.dump_udp_to(*entry)?);
            }
            flows.into_iter().collect()
        }
    };
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
mod tests;
