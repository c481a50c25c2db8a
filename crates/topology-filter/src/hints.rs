//! Topology-aware routing with EndpointSlice hints: whether a Service asks
//! for it (`spec.trafficDistribution`, or the annotations
//! `service.kubernetes.io/topology-mode` and the older
//! `service.kubernetes.io/topology-aware-hints`), and whether this node can
//! use the hints (kube-proxy's `topologyModeFromHints`).

use api_watch::Service;

use crate::select::Candidate;
use crate::ProblemKind;

/// The annotation that turns on zone hints (Kubernetes 1.27+).
pub const TOPOLOGY_MODE_ANNOTATION: &str = "service.kubernetes.io/topology-mode";
/// The older annotation (1.21–1.26); when both are set, this one wins, as
/// in kube-proxy.
pub const TOPOLOGY_AWARE_HINTS_ANNOTATION: &str = "service.kubernetes.io/topology-aware-hints";
/// `spec.trafficDistribution` asking for zone hints (deprecated name of
/// `PreferSameZone`).
pub const PREFER_CLOSE: &str = "PreferClose";
/// `spec.trafficDistribution` asking for zone hints; also the mode name for
/// zone hints.
pub const PREFER_SAME_ZONE: &str = "PreferSameZone";
/// `spec.trafficDistribution` asking for node hints; also the mode name for
/// node hints.
pub const PREFER_SAME_NODE: &str = "PreferSameNode";

/// What a Service asks of the hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Nothing: hints are not used.
    Off,
    /// Zone hints (`forZones`); `by` says which setting asked.
    Zone { by: String },
    /// Node hints (`forNodes`), falling back to zone hints.
    Node { by: String },
}

/// Reads the Service's hint settings. `spec.trafficDistribution`, when it
/// asks for hints, wins over the annotations (it is the newer API and the
/// only one that can ask for node hints). Of the annotations, the older
/// `topology-aware-hints` wins when both are present, as in kube-proxy.
/// Unknown values are returned as problems and ask for nothing.
pub(crate) fn request(service: &Service) -> (Request, Vec<(ProblemKind, String)>) {
    let mut problems = Vec::new();
    let from_spec = match service.traffic_distribution.as_deref() {
        None | Some("") => None,
        Some(v @ (PREFER_CLOSE | PREFER_SAME_ZONE)) => Some(Request::Zone {
            by: format!("trafficDistribution {v}"),
        }),
        Some(PREFER_SAME_NODE) => Some(Request::Node {
            by: format!("trafficDistribution {PREFER_SAME_NODE}"),
        }),
        Some(other) => {
            problems.push((
                ProblemKind::UnknownTrafficDistribution,
                format!(
                    "spec.trafficDistribution {other:?} ignored: expected {PREFER_CLOSE}, \
                     {PREFER_SAME_ZONE} or {PREFER_SAME_NODE}; endpoints are not filtered by it"
                ),
            ));
            None
        }
    };
    let annotation = [TOPOLOGY_AWARE_HINTS_ANNOTATION, TOPOLOGY_MODE_ANNOTATION]
        .into_iter()
        .find_map(|name| service.annotations.get(name).map(|v| (name, v.as_str())));
    let from_annotation = match annotation {
        None | Some((_, "" | "Disabled" | "disabled")) => None,
        Some((name, value @ ("Auto" | "auto"))) => Some(Request::Zone {
            by: format!("annotation {name}: {value}"),
        }),
        Some((name, other)) => {
            problems.push((
                ProblemKind::UnknownHintsAnnotation,
                format!(
                    "annotation {name} {other:?} ignored: expected Auto, auto, Disabled, \
                     disabled or empty; it does not turn on topology-aware hints"
                ),
            ));
            None
        }
    };
    let request = from_spec.or(from_annotation).unwrap_or(Request::Off);
    (request, problems)
}

/// Whether and how this node uses the hints of one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The Service does not ask for hints; `present` when some ready
    /// endpoint has hints all the same (said in the explanation).
    NotRequested { present: bool },
    /// Asked for, but not usable here; the sentence says why.
    Unused { why: String },
    /// Filter by node hints for `node`.
    SameNode { node: String },
    /// Filter by zone hints for `zone`.
    SameZone { zone: String },
}

impl Outcome {
    /// Whether the endpoint passes the filter (always, when hints are not
    /// used).
    pub(crate) fn allows(&self, candidate: &Candidate<'_>) -> bool {
        match self {
            Outcome::SameNode { node } => candidate.endpoint.hint_nodes.contains(node),
            Outcome::SameZone { zone } => candidate.endpoint.hint_zones.contains(zone),
            _ => true,
        }
    }
}

/// kube-proxy's rules, over the ready endpoints: node hints (when asked for
/// with PreferSameNode) are used when every ready endpoint has one and at
/// least one names this node; otherwise zone hints are used when every
/// ready endpoint has one and at least one names this node's zone
/// (`topology.kubernetes.io/zone` of its Node); otherwise nothing.
pub(crate) fn evaluate(
    request: &Request,
    candidates: &[Candidate<'_>],
    node: &str,
    zone: Option<&str>,
) -> Outcome {
    let ready: Vec<&Candidate<'_>> = candidates
        .iter()
        .filter(|c| c.endpoint.conditions.ready)
        .collect();
    let want_node = match request {
        Request::Off => {
            let present = ready
                .iter()
                .any(|c| !c.endpoint.hint_zones.is_empty() || !c.endpoint.hint_nodes.is_empty());
            return Outcome::NotRequested { present };
        }
        Request::Zone { .. } => false,
        Request::Node { .. } => true,
    };
    if ready.is_empty() {
        return Outcome::Unused {
            why: "no endpoint is ready".to_string(),
        };
    }
    let mut node_why = None;
    if want_node {
        match check(&ready, "node", node) {
            Ok(()) => {
                return Outcome::SameNode {
                    node: node.to_string(),
                }
            }
            Err(why) => node_why = Some(why),
        }
    }
    let zone_result = match zone.filter(|z| !z.is_empty()) {
        Some(zone) => check(&ready, "zone", zone).map(|()| zone.to_string()),
        // kube-proxy checks the hints first: a missing hint is the reason
        // even when the node has no zone.
        None => check(&ready, "zone", "").and(Err(
            "this node has no topology.kubernetes.io/zone label".to_string(),
        )),
    };
    match (zone_result, node_why) {
        (Ok(zone), _) => Outcome::SameZone { zone },
        (Err(zone_why), None) => Outcome::Unused { why: zone_why },
        (Err(zone_why), Some(node_why)) => Outcome::Unused {
            why: format!("{node_why}, and {zone_why}"),
        },
    }
}

/// Every ready endpoint has a hint of this kind, and one names `wanted`.
fn check(ready: &[&Candidate<'_>], kind: &str, wanted: &str) -> Result<(), String> {
    if let Some(missing) = ready.iter().find(|c| hints_of(c, kind).is_empty()) {
        return Err(format!("endpoint {} has no {kind} hint", missing.ip));
    }
    if ready
        .iter()
        .any(|c| hints_of(c, kind).iter().any(|h| h == wanted))
    {
        Ok(())
    } else {
        Err(format!("no endpoint is hinted for {kind} {wanted}"))
    }
}

/// The endpoint's `forNodes` (kind "node") or `forZones` names.
fn hints_of<'a>(c: &Candidate<'a>, kind: &str) -> &'a [String] {
    if kind == "node" {
        &c.endpoint.hint_nodes
    } else {
        &c.endpoint.hint_zones
    }
}

#[cfg(test)]
mod tests;
