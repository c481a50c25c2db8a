//! [`plan`]: for every service port, gather its endpoints from the
//! Service's EndpointSlices, read the Service's topology settings once,
//! and let `categorize` split the endpoints into the cluster and local
//! sets.

use std::collections::btree_map::{BTreeMap, Entry};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use api_watch::{
    AddressType, Cidr, ClusterState, EndpointSlice, ObjectKey, Service, ServicePort, ServiceType,
};

use crate::candidate::{Candidate, Part};
use crate::categorize::{categorize, Categorized, Settings};
use crate::hints;
use crate::keys::{keys_source, topology_keys};
use crate::{Decision, EndpointTarget, Problem, ProblemKind, ProxyPlan, ServicePortPlan};

/// Plans every Service port for `node`.
///
/// Services are taken in key order, each one's ports by (name, protocol);
/// ExternalName and headless Services (no cluster IP) are not proxied.
/// The same input always gives the same plan.
pub fn plan(state: &ClusterState, node: &str) -> ProxyPlan {
    let mut plan = ProxyPlan {
        node: node.to_string(),
        node_addresses: node_addresses(state, node),
        node_pod_cidrs: node_pod_cidrs(state, node),
        service_cidrs: prefixes(&state.service_cidr_prefixes()),
        ..ProxyPlan::default()
    };
    let slices = state.slices_by_service();
    for service in state.services.values() {
        let service_slices = slices.get(&service.key).map(Vec::as_slice).unwrap_or(&[]);
        let one = plan_service(state, service_slices, node, service);
        plan.services.extend(one.ports);
        plan.problems.extend(one.problems);
    }
    // Kept as long as the daemon runs: without the growth's slack (up to
    // half the vector).
    plan.services.shrink_to_fit();
    plan.problems.shrink_to_fit();
    plan
}

/// The model's prefixes as [`Cidr`]s, in their order. api-watch keeps
/// them as the text of the [`Cidr`] it read (`Cidr::parse_sloppy`, host
/// bits cleared), which always parses back; anything else is left out.
pub(crate) fn prefixes(texts: &[String]) -> Vec<Cidr> {
    texts.iter().filter_map(|t| Cidr::parse(t).ok()).collect()
}

/// What [`plan`] gives for one Service: its port plans (sorted by port
/// name, protocol, port) and its problems, in plan order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServicePlan {
    /// The Service's port plans; empty for ExternalName and headless
    /// Services.
    pub ports: Vec<ServicePortPlan>,
    /// What was skipped or ignored in the Service or its slices.
    pub problems: Vec<Problem>,
}

/// Plans one Service for `node`, given its EndpointSlices in slice-name
/// order: exactly its part of [`plan`]'s output.
pub fn plan_service(
    state: &ClusterState,
    slices: &[&EndpointSlice],
    node: &str,
    service: &Service,
) -> ServicePlan {
    let mut out = ServicePlan::default();
    if service.service_type == ServiceType::ExternalName || service.cluster_ips.is_empty() {
        return out;
    }
    let keys = match topology_keys(service) {
        Ok(keys) => keys,
        Err(error) => {
            out.problems.push(Problem {
                object: service.key.clone(),
                kind: ProblemKind::InvalidTopologyKeys,
                message: format!(
                    "{} ignored: {error}; endpoints are not filtered by topology keys",
                    keys_source(service)
                ),
            });
            None
        }
    };
    let (_, problems) = hints::request(service);
    out.problems
        .extend(problems.into_iter().map(|(kind, message)| Problem {
            object: service.key.clone(),
            kind,
            message,
        }));
    let settings = Settings {
        keys: keys.as_deref(),
    };
    let mut ports: Vec<&ServicePort> = service.ports.iter().collect();
    ports.sort_by(|a, b| (&a.name, a.protocol, a.port).cmp(&(&b.name, b.protocol, b.port)));
    out.problems.extend(
        slices
            .iter()
            .filter(|s| s.address_type == AddressType::Fqdn)
            .map(|s| Problem {
                object: service.key.clone(),
                kind: ProblemKind::FqdnSliceIgnored,
                message: format!("EndpointSlice {} has addressType FQDN; not proxied", s.key),
            }),
    );
    for port in ports {
        out.ports
            .push(port_plan(state, slices, node, service, port, &settings));
    }
    out
}

/// The Service's own reasons for its plan to depend on the Nodes: valid
/// topology keys (every Node's labels), or hints asked for (this node's
/// zone). Not the whole story since hints are used wherever the
/// EndpointSlices have them, whatever the Service asks: the Services to
/// re-plan when Nodes change are [`node_dependents`].
pub fn depends_on_nodes(service: &Service) -> bool {
    matches!(topology_keys(service), Ok(Some(_)))
        || hints::request(service).0 != hints::Request::Off
}

/// The Services whose plans can change when Nodes change: those that
/// [`depends_on_nodes`], and those with an endpoint that carries a hint
/// (this node's zone decides whether zone hints are used). Other Services
/// depend on the Nodes only through this node's addresses, which are not
/// part of a service plan. One pass over the Services and one over the
/// slices.
pub fn node_dependents(state: &ClusterState) -> BTreeSet<ObjectKey> {
    let mut out: BTreeSet<ObjectKey> = state
        .services
        .values()
        .filter(|s| depends_on_nodes(s))
        .map(|s| s.key.clone())
        .collect();
    for slice in state.endpoint_slices.values() {
        let hinted = slice.endpoints.iter().any(api_watch::Endpoint::has_hints);
        if hinted {
            let key = slice.service_key();
            if state.services.contains_key(&key) {
                out.insert(key);
            }
        }
    }
    out
}

/// The node's `spec.podCIDRs` that parse (as kube-proxy reads them,
/// leading zeros and host bits allowed), in order; empty when the Node is
/// unknown.
pub(crate) fn node_pod_cidrs(state: &ClusterState, node: &str) -> Vec<Cidr> {
    state
        .nodes
        .get(node)
        .map(|n| {
            n.pod_cidrs
                .iter()
                .filter_map(|c| Cidr::parse_sloppy(c))
                .collect()
        })
        .unwrap_or_default()
}

/// The node's `InternalIP` addresses, else its `ExternalIP` ones, in
/// `status.addresses` order; empty when the Node is unknown.
pub fn node_addresses(state: &ClusterState, node: &str) -> Vec<IpAddr> {
    let Some(node) = state.nodes.get(node) else {
        return Vec::new();
    };
    let of_type = |wanted: &str| -> Vec<IpAddr> {
        node.addresses
            .iter()
            .filter(|(t, _)| t == wanted)
            .map(|&(_, ip)| ip)
            .collect()
    };
    let internal = of_type("InternalIP");
    if internal.is_empty() {
        of_type("ExternalIP")
    } else {
        internal
    }
}

fn port_plan(
    state: &ClusterState,
    slices: &[&EndpointSlice],
    node: &str,
    service: &Service,
    port: &ServicePort,
    settings: &Settings<'_>,
) -> ServicePortPlan {
    let candidates = gather(slices, port);
    let categorized = categorize(state, node, service, port, settings, &candidates);
    assemble(service, port, &candidates, categorized)
}

fn assemble(
    service: &Service,
    port: &ServicePort,
    candidates: &[Candidate<'_>],
    c: Categorized,
) -> ServicePortPlan {
    let target = |cand: &Candidate<'_>| EndpointTarget {
        ip: cand.ip,
        port: cand.port,
        node_name: cand.endpoint.node_name.clone(),
        terminating: !cand.endpoint.conditions.ready,
    };
    let set = |parts: &[Part]| -> Vec<EndpointTarget> {
        let mut targets: Vec<EndpointTarget> = candidates
            .iter()
            .zip(parts)
            .filter(|(_, p)| p.kept)
            .map(|(cand, _)| target(cand))
            .collect();
        targets.sort();
        // Collected through a filter, the vector grew by doubling (16
        // slots for 10 endpoints); the plan keeps it.
        targets.shrink_to_fit();
        targets
    };
    let cluster_endpoints = set(&c.cluster);
    let local_endpoints = set(&c.local);
    let decisions = candidates
        .iter()
        .enumerate()
        .map(|(i, cand)| {
            let cluster = c.cluster.get(i);
            let local = c.local.get(i);
            let reason = match (cluster, local) {
                (Some(cl), Some(lo)) if cl == lo => cl.to_string(),
                (Some(cl), Some(lo)) => format!("cluster: {cl}; local: {lo}"),
                (Some(one), None) | (None, Some(one)) => one.to_string(),
                (None, None) => "dropped: the port uses no endpoints".to_string(),
            };
            Decision {
                ip: cand.ip,
                port: cand.port,
                node_name: cand.endpoint.node_name.clone(),
                for_cluster: cluster.is_some_and(|p| p.kept),
                for_local: local.is_some_and(|p| p.kept),
                reason,
            }
        })
        .collect();
    let serving = candidates
        .iter()
        .filter(|cand| cand.endpoint.conditions.serving)
        .map(|cand| SocketAddr::new(cand.ip, cand.port));
    let serving_if_other = if serving.clone().eq(cluster_endpoints
        .iter()
        .map(|e| SocketAddr::new(e.ip, e.port)))
    {
        None
    } else {
        Some(serving.collect())
    };
    ServicePortPlan {
        service: service.key.clone(),
        port_name: port.name.clone(),
        protocol: port.protocol,
        cluster_ips: service.cluster_ips.clone(),
        port: port.port,
        node_port: port.node_port,
        external_ips: service.external_ips.clone(),
        load_balancer_ips: service.load_balancer_ips.clone(),
        load_balancer_source_ranges: prefixes(&service.load_balancer_source_ranges),
        external_policy_local: c.external_local,
        internal_policy_local: c.internal_local,
        session_affinity_timeout: service.session_affinity_timeout,
        uses_cluster_endpoints: c.uses_cluster,
        uses_local_endpoints: c.uses_local,
        cluster_endpoints,
        local_endpoints,
        has_any_endpoints: c.has_any_v4 || c.has_any_v6,
        has_any_ipv4_endpoints: c.has_any_v4,
        has_any_ipv6_endpoints: c.has_any_v6,
        serving_if_other,
        rule: c.rule,
        traffic_distribution: service.traffic_distribution.clone(),
        decisions,
    }
}

/// Every endpoint address of the service port, deduplicated by (address,
/// port): a copy that is not terminating replaces a terminating one,
/// otherwise the first in slice-name order stays ([`Endpoint::replaces`]);
/// sorted by address then port so that every later step is deterministic.
///
/// The target port comes from the slice port with the service port's name
/// and protocol; this is how named `targetPort`s resolve. A slice without
/// that port, and FQDN slices (reported once per slice by [`plan`]),
/// contribute nothing. IPv4 and IPv6 endpoints share the list. An endpoint is its first
/// address, as in kube-proxy.
fn gather<'a>(slices: &[&'a EndpointSlice], port: &ServicePort) -> Vec<Candidate<'a>> {
    let mut seen = BTreeMap::new();
    let mut all: Vec<Candidate<'a>> = Vec::new();
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
            let Some(ip) = endpoint.address else {
                continue;
            };
            let candidate = Candidate {
                ip,
                port: slice_port.port,
                endpoint,
            };
            match seen.entry((ip, slice_port.port)) {
                Entry::Vacant(e) => {
                    e.insert(all.len());
                    all.push(candidate);
                }
                Entry::Occupied(e) if endpoint.replaces(all[*e.get()].endpoint) => {
                    all[*e.get()] = candidate;
                }
                Entry::Occupied(_) => {}
            }
        }
    }
    all.sort_by_key(|c| (c.ip, c.port));
    all
}

#[cfg(test)]
mod dataplane_tests;
#[cfg(test)]
mod precedence_tests;
#[cfg(test)]
mod tests;
