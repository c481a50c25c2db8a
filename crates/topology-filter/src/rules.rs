//! The topology rules, in order of precedence (see DESIGN.md, Topology):
//!
//! 1. topology keys (`spec.topologyKeys` or the annotation
//!    `nftopo.io/topology-keys`), with the original ServiceTopology
//!    semantics. When a Service has topology keys, its
//!    `internalTrafficPolicy: Local` is ignored: the keys take precedence.
//! 2. `internalTrafficPolicy: Local`: only endpoints on this node.
//! 3. otherwise every candidate.
//!
//! Still to come, as further [`Rule`]s: `externalTrafficPolicy`, the
//! terminating-endpoint fallback, EndpointSlice hints and
//! `trafficDistribution`.

use api_watch::{ClusterState, Endpoint, Service, TrafficPolicy};

use crate::keys::ANY_KEY;
use crate::select::{Candidate, Verdict};

/// Node label naming the node.
const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
/// Node label naming the zone.
const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// The rule that chooses a Service's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Ordered topology keys; the first key with a matching endpoint wins.
    TopologyKeys {
        /// The keys, validated.
        keys: Vec<String>,
        /// The Service asks for `internalTrafficPolicy: Local` too, which
        /// the keys override; said in every reason.
        local_ignored: bool,
    },
    /// `internalTrafficPolicy: Local`.
    InternalLocal,
    /// No rule: every candidate.
    All,
}

impl Rule {
    /// The rule for `service`, given its (valid) topology keys.
    pub(crate) fn for_service(service: &Service, keys: Option<Vec<String>>) -> Self {
        let local = service.internal_traffic_policy == TrafficPolicy::Local;
        match keys {
            Some(keys) => Rule::TopologyKeys {
                keys,
                local_ignored: local,
            },
            None if local => Rule::InternalLocal,
            None => Rule::All,
        }
    }
}

/// Applies `rule` for `node` to the candidates; one verdict each.
pub(crate) fn apply<'a>(
    rule: &Rule,
    state: &ClusterState,
    node: &str,
    candidates: Vec<Candidate<'a>>,
) -> Vec<Verdict<'a>> {
    match rule {
        Rule::TopologyKeys {
            keys,
            local_ignored,
        } => by_topology_keys(keys, *local_ignored, state, node, candidates),
        Rule::InternalLocal => candidates
            .into_iter()
            .map(|candidate| {
                let on = candidate.endpoint.node_name.as_deref();
                let (kept, reason) = match on {
                    Some(n) if n == node => (
                        true,
                        "kept: internalTrafficPolicy Local and the endpoint runs on this node"
                            .to_string(),
                    ),
                    Some(n) => (
                        false,
                        format!("dropped: internalTrafficPolicy Local and the endpoint runs on node {n}"),
                    ),
                    None => (
                        false,
                        "dropped: internalTrafficPolicy Local and the endpoint's node is not known"
                            .to_string(),
                    ),
                };
                verdict(candidate, kept, reason)
            })
            .collect(),
        Rule::All => candidates
            .into_iter()
            .map(|c| verdict(c, true, "kept: no topology rules".to_string()))
            .collect(),
    }
}

fn verdict(candidate: Candidate<'_>, kept: bool, reason: String) -> Verdict<'_> {
    Verdict {
        candidate,
        kept,
        reason,
    }
}

/// ServiceTopology: for each key in order, `*` keeps every candidate;
/// a key this node has no label for is skipped; otherwise the endpoints
/// whose value for the key equals this node's are kept, if there is at
/// least one. No key matching rejects the traffic (no endpoints).
fn by_topology_keys<'a>(
    keys: &[String],
    local_ignored: bool,
    state: &ClusterState,
    node: &str,
    candidates: Vec<Candidate<'a>>,
) -> Vec<Verdict<'a>> {
    let note = if local_ignored {
        "; internalTrafficPolicy Local is ignored because topology keys take precedence"
    } else {
        ""
    };
    let this_node = state.nodes.get(node);
    for (i, key) in keys.iter().enumerate() {
        let which = format!("topology key {key} ({} of {})", i + 1, keys.len());
        if key == ANY_KEY {
            let reason = format!("kept: {which} matches every endpoint{note}");
            return candidates
                .into_iter()
                .map(|c| verdict(c, true, reason.clone()))
                .collect();
        }
        let Some(wanted) = this_node.and_then(|n| n.labels.get(key)) else {
            continue;
        };
        let values: Vec<_> = candidates
            .iter()
            .map(|c| endpoint_value(state, c.endpoint, key))
            .collect();
        if !values.iter().any(|v| v.value == Some(wanted.as_str())) {
            continue;
        }
        return candidates
            .into_iter()
            .zip(values)
            .map(|(c, v)| {
                if v.value == Some(wanted.as_str()) {
                    let reason = format!(
                        "kept: {which}: {} has {wanted} like this node{note}",
                        v.whose
                    );
                    verdict(c, true, reason)
                } else {
                    let has = v.value.unwrap_or("no value");
                    let reason = format!(
                        "dropped: {which}: {} has {has}, this node has {wanted}{note}",
                        v.whose
                    );
                    verdict(c, false, reason)
                }
            })
            .collect();
    }
    let why = if this_node.is_none() {
        " (this node's Node object is not known)"
    } else {
        ""
    };
    let reason = format!("dropped: no topology key matched; traffic is rejected{why}{note}");
    candidates
        .into_iter()
        .map(|c| verdict(c, false, reason.clone()))
        .collect()
}

/// An endpoint's value for a topology key, and where it came from.
struct EndpointValue<'a> {
    value: Option<&'a str>,
    /// "endpoint's node node-2", or how the value was found without it.
    whose: String,
}

/// The endpoint's node's label for `key`; when that Node object is not
/// known, the endpoint's own topology: the v1beta1 `topology` map, then
/// `nodeName` for `kubernetes.io/hostname` and `zone` for
/// `topology.kubernetes.io/zone`.
fn endpoint_value<'a>(
    state: &'a ClusterState,
    endpoint: &'a Endpoint,
    key: &str,
) -> EndpointValue<'a> {
    let node_name = endpoint.node_name.as_deref();
    if let Some(node) = node_name.and_then(|n| state.nodes.get(n)) {
        return EndpointValue {
            value: node.labels.get(key).map(String::as_str),
            whose: format!("endpoint's node {}", node.name),
        };
    }
    let value = endpoint
        .topology
        .get(key)
        .map(String::as_str)
        .or(match key {
            HOSTNAME_KEY => node_name,
            ZONE_KEY => endpoint.zone.as_deref(),
            _ => None,
        });
    let whose = match node_name {
        Some(n) => format!("endpoint on unknown node {n} (per its EndpointSlice)"),
        None => "endpoint without a node (per its EndpointSlice)".to_string(),
    };
    EndpointValue { value, whose }
}
