//! ServiceTopology (`spec.topologyKeys`, Kubernetes 1.17–1.21, and the
//! annotation `nftopo.io/topology-keys`): kube-proxy's
//! `FilterTopologyEndpoint`, with one generalisation: a key compares this
//! node's label with the label of the **endpoint's Node** (so any node
//! label works), falling back to the endpoint's own topology when that Node
//! is not known.

use api_watch::{ClusterState, Endpoint};

use crate::candidate::{Candidate, Part};
use crate::keys::ANY_KEY;

/// Node label naming the node.
const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
/// Node label naming the zone.
const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// For each key in order: `*` keeps every candidate; a key this node has no
/// label for (or every key, when this node's Node is unknown) is skipped;
/// otherwise the candidates whose value for the key equals this node's are
/// kept, if there is at least one. No key matching keeps nothing (the
/// traffic is rejected).
///
/// Returns the 1-based position of the key that matched, and one part per
/// candidate.
pub(crate) fn filter(
    keys: &[String],
    state: &ClusterState,
    node: &str,
    candidates: &[Candidate<'_>],
) -> (Option<usize>, Vec<Part>) {
    let this_node = state.nodes.get(node);
    for (i, key) in keys.iter().enumerate() {
        let which = format!("topology key {key} ({} of {})", i + 1, keys.len());
        if key == ANY_KEY {
            let why = format!("{which} matches every endpoint");
            return (
                Some(i + 1),
                candidates.iter().map(|_| Part::kept(&why)).collect(),
            );
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
        let parts = values
            .into_iter()
            .map(|v| {
                if v.value == Some(wanted.as_str()) {
                    Part::kept(format!("{which}: {} has {wanted} like this node", v.whose))
                } else {
                    let has = v.value.unwrap_or("no value");
                    Part::dropped(format!(
                        "{which}: {} has {has}, this node has {wanted}",
                        v.whose
                    ))
                }
            })
            .collect();
        return (Some(i + 1), parts);
    }
    let why = if this_node.is_none() {
        "no topology key matched; traffic is rejected (this node's Node object is not known)"
    } else {
        "no topology key matched; traffic is rejected"
    };
    (
        None,
        candidates.iter().map(|_| Part::dropped(why)).collect(),
    )
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
        .topology()
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

#[cfg(test)]
mod tests;
