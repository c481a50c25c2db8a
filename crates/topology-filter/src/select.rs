//! [`plan`]: for every service port, gather its endpoints from the
//! Service's EndpointSlices, keep the candidates, then let the topology
//! rules (in `rules.rs`) choose among them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use api_watch::{
    AddressType, ClusterState, Endpoint, EndpointSlice, Service, ServicePort, ServiceType,
};

use crate::keys::{keys_source, topology_keys};
use crate::rules::{self, Rule};
use crate::{Decision, EndpointTarget, Problem, ProxyPlan, ServicePortPlan};

/// One endpoint address of one service port, with the port resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    /// The endpoint's first address.
    pub ip: IpAddr,
    /// The slice port that matches the service port.
    pub port: u16,
    /// The endpoint it came from.
    pub endpoint: &'a Endpoint,
}

/// What a step decided for one candidate.
#[derive(Debug, Clone)]
pub(crate) struct Verdict<'a> {
    /// The endpoint.
    pub candidate: Candidate<'a>,
    /// Whether traffic may go to it.
    pub kept: bool,
    /// A sentence for `nftopo explain`, starting with `kept:` or `dropped:`.
    pub reason: String,
}

/// Plans every Service port for `node`.
///
/// Services are taken in key order, each one's ports by (name, protocol);
/// ExternalName and headless Services (no cluster IP) are not proxied.
/// The same input always gives the same plan.
pub fn plan(state: &ClusterState, node: &str) -> ProxyPlan {
    let mut plan = ProxyPlan {
        node: node.to_string(),
        ..ProxyPlan::default()
    };
    let slices = state.slices_by_service();
    for service in state.services.values() {
        if service.service_type == ServiceType::ExternalName || service.cluster_ips.is_empty() {
            continue;
        }
        let rule = match topology_keys(service) {
            Ok(keys) => Rule::for_service(service, keys),
            Err(error) => {
                plan.problems.push(Problem {
                    object: service.key.clone(),
                    message: format!(
                        "{} ignored: {error}; endpoints are not filtered by topology keys",
                        keys_source(service)
                    ),
                });
                Rule::for_service(service, None)
            }
        };
        let mut ports: Vec<&ServicePort> = service.ports.iter().collect();
        ports.sort_by(|a, b| (&a.name, a.protocol, a.port).cmp(&(&b.name, b.protocol, b.port)));
        for port in ports {
            let service_slices = slices.get(&service.key).map(Vec::as_slice).unwrap_or(&[]);
            plan.services
                .push(port_plan(state, service_slices, node, service, port, &rule));
        }
    }
    plan
}

fn port_plan(
    state: &ClusterState,
    slices: &[&EndpointSlice],
    node: &str,
    service: &Service,
    port: &ServicePort,
    rule: &Rule,
) -> ServicePortPlan {
    let (candidates, mut verdicts) = candidates(gather(slices, port));
    verdicts.extend(rules::apply(rule, state, node, candidates));
    verdicts.sort_by_key(|v| (v.candidate.ip, v.candidate.port));
    let mut endpoints: Vec<EndpointTarget> = verdicts
        .iter()
        .filter(|v| v.kept)
        .map(|v| EndpointTarget {
            ip: v.candidate.ip,
            port: v.candidate.port,
            node_name: v.candidate.endpoint.node_name.clone(),
        })
        .collect();
    endpoints.sort();
    ServicePortPlan {
        service: service.key.clone(),
        port_name: port.name.clone(),
        protocol: port.protocol,
        cluster_ips: service.cluster_ips.clone(),
        port: port.port,
        endpoints,
        decisions: verdicts
            .into_iter()
            .map(|v| Decision {
                ip: v.candidate.ip,
                kept: v.kept,
                reason: v.reason,
            })
            .collect(),
    }
}

/// Every endpoint address of the service port, deduplicated by (address,
/// port), in slice-name order (the first occurrence wins).
///
/// The target port comes from the slice port with the service port's name
/// and protocol; this is how named `targetPort`s resolve. A slice without
/// that port, and FQDN slices, contribute nothing. An endpoint is its first
/// address, as in kube-proxy.
fn gather<'a>(slices: &[&'a EndpointSlice], port: &ServicePort) -> Vec<Candidate<'a>> {
    let mut seen = BTreeSet::new();
    let mut all = Vec::new();
    for slice in slices.iter().copied() {
        if slice.address_type == AddressType::Fqdn {
            continue;
        }
        let Some(slice_port) = slice
            .ports
            .iter()
            .find(|p| p.name == port.name && p.protocol == port.protocol)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let Some(&ip) = endpoint.addresses.first() else {
                continue;
            };
            if seen.insert((ip, slice_port.port)) {
                all.push(Candidate {
                    ip,
                    port: slice_port.port,
                    endpoint,
                });
            }
        }
    }
    all
}

/// Splits the endpoints into candidates (ready) and verdicts for the rest.
///
/// This is the place for kube-proxy's terminating-endpoint fallback (use
/// serving, terminating endpoints when a traffic policy leaves no ready
/// one): it is not implemented yet, so endpoints that are not ready are
/// always dropped.
fn candidates(all: Vec<Candidate<'_>>) -> (Vec<Candidate<'_>>, Vec<Verdict<'_>>) {
    let (ready, not_ready): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|c| c.endpoint.conditions.ready);
    let dropped = not_ready
        .into_iter()
        .map(|candidate| Verdict {
            candidate,
            kept: false,
            reason: if candidate.endpoint.conditions.terminating {
                "dropped: not ready (terminating)".to_string()
            } else {
                "dropped: not ready".to_string()
            },
        })
        .collect();
    (ready, dropped)
}

#[cfg(test)]
mod tests;
