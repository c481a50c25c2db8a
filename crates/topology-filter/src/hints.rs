//! Topology-aware routing with EndpointSlice hints, as kube-proxy does it
//! since 1.33 (and with `PreferSameNode`, 1.35): the hints are used
//! whenever every ready endpoint has them, whatever the Service asks
//! ([`evaluate`], kube-proxy's `topologyModeFromHints`). What the Service
//! asks (`spec.trafficDistribution`: `PreferSameNode`, `PreferSameZone` or
//! its older name `PreferClose`; the annotations
//! `service.kubernetes.io/topology-mode` and the older
//! `service.kubernetes.io/topology-aware-hints`) only tells the
//! EndpointSlice controller to write hints ([`request`]): nftopo reads it
//! to report values Kubernetes does not know and to know which Services a
//! change of this node's zone can affect.

use api_watch::Service;

use crate::candidate::Candidate;
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

/// What a Service asks the EndpointSlice controller for. It does not
/// decide whether hints are used (their presence does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// No hints.
    Off,
    /// Zone hints (`forZones`).
    Zone,
    /// Node hints (`forNodes`), with zone hints for older proxies.
    Node,
}

/// Reads the Service's hint settings. `spec.trafficDistribution`, when it
/// asks for hints, wins over the annotations (it is the newer API and the
/// only one that can ask for node hints). Of the annotations, the older
/// `topology-aware-hints` wins when both are present, as in the
/// EndpointSlice controller. Unknown values are returned as problems and
/// ask for nothing.
pub(crate) fn request(service: &Service) -> (Request, Vec<(ProblemKind, String)>) {
    let mut problems = Vec::new();
    let from_spec = match service.traffic_distribution.as_deref() {
        None | Some("") => None,
        Some(PREFER_CLOSE | PREFER_SAME_ZONE) => Some(Request::Zone),
        Some(PREFER_SAME_NODE) => Some(Request::Node),
        Some(other) => {
            problems.push((
                ProblemKind::UnknownTrafficDistribution,
                format!(
                    "spec.trafficDistribution {other:?} ignored: expected {PREFER_CLOSE}, \
                     {PREFER_SAME_ZONE} or {PREFER_SAME_NODE}; hints are used where the \
                     EndpointSlices have them, whatever the Service asks"
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
        Some((_, "Auto" | "auto")) => Some(Request::Zone),
        Some((name, other)) => {
            problems.push((
                ProblemKind::UnknownHintsAnnotation,
                format!(
                    "annotation {name} {other:?} ignored: expected Auto, auto, Disabled, \
                     disabled or empty; hints are used where the EndpointSlices have them, \
                     whatever the Service asks"
                ),
            ));
            None
        }
    };
    let request = from_spec.or(from_annotation).unwrap_or(Request::Off);
    (request, problems)
}

/// Whether and how this node uses the hints of one service port (of one
/// IP family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No ready endpoint has a hint (or none is ready): nothing to use.
    Absent,
    /// Some ready endpoints have hints, but they cannot be used here; the
    /// sentence says why.
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
            Outcome::SameNode { node } => candidate.endpoint.hint_nodes().contains(node),
            Outcome::SameZone { zone } => candidate.endpoint.hint_zones().contains(zone),
            _ => true,
        }
    }
}

/// kube-proxy's `topologyModeFromHints` (1.35: `PreferSameNode` is GA,
/// and since 1.33 hints are used whatever the Service asks), over the
/// ready endpoints of one IP family: node hints are used when every ready
/// endpoint has one and at least one names this node; otherwise zone hints
/// are used when every ready endpoint has one and at least one names this
/// node's zone (`topology.kubernetes.io/zone` of its Node); otherwise
/// nothing.
pub(crate) fn evaluate(candidates: &[Candidate<'_>], node: &str, zone: Option<&str>) -> Outcome {
    let ready: Vec<&Candidate<'_>> = candidates
        .iter()
        .filter(|c| c.endpoint.conditions.ready)
        .collect();
    let node_why = match check(&ready, Kind::Node, node) {
        Check::Usable => {
            return Outcome::SameNode {
                node: node.to_string(),
            }
        }
        Check::Absent => None,
        Check::Missing(why) | Check::NoMatch(why) => Some(why),
    };
    let zone_why = match zone.filter(|z| !z.is_empty()) {
        Some(zone) => match check(&ready, Kind::Zone, zone) {
            Check::Usable => {
                return Outcome::SameZone {
                    zone: zone.to_string(),
                }
            }
            Check::Absent => None,
            Check::Missing(why) | Check::NoMatch(why) => Some(why),
        },
        // kube-proxy checks the hints first: a missing hint is the reason
        // even when the node has no zone.
        None => match check(&ready, Kind::Zone, "") {
            Check::Absent => None,
            Check::Missing(why) => Some(why),
            Check::Usable | Check::NoMatch(_) => {
                Some(format!("this node has no {ZONE_LABEL} label"))
            }
        },
    };
    match (node_why, zone_why) {
        (None, None) => Outcome::Absent,
        (Some(why), None) | (None, Some(why)) => Outcome::Unused { why },
        (Some(node_why), Some(zone_why)) => Outcome::Unused {
            why: format!("{node_why}, and {zone_why}"),
        },
    }
}

/// The label naming a node's zone.
pub(crate) const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Node hints (`forNodes`) or zone hints (`forZones`).
#[derive(Clone, Copy)]
enum Kind {
    Node,
    Zone,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Zone => "zone",
        }
    }

    fn of<'a>(self, c: &Candidate<'a>) -> &'a [String] {
        match self {
            Kind::Node => c.endpoint.hint_nodes(),
            Kind::Zone => c.endpoint.hint_zones(),
        }
    }
}

/// What the hints of one kind allow.
enum Check {
    /// Every ready endpoint has one, and one names the wanted value.
    Usable,
    /// No ready endpoint has one (nothing worth explaining).
    Absent,
    /// Some ready endpoint has none; the sentence names it.
    Missing(String),
    /// Every ready endpoint has one, but none names the wanted value.
    NoMatch(String),
}

fn check(ready: &[&Candidate<'_>], kind: Kind, wanted: &str) -> Check {
    let name = kind.name();
    if ready.iter().all(|c| kind.of(c).is_empty()) {
        return Check::Absent;
    }
    if let Some(missing) = ready.iter().find(|c| kind.of(c).is_empty()) {
        return Check::Missing(format!("endpoint {} has no {name} hint", missing.ip));
    }
    if ready.iter().any(|c| kind.of(c).iter().any(|h| h == wanted)) {
        Check::Usable
    } else {
        Check::NoMatch(format!("no endpoint is hinted for {name} {wanted}"))
    }
}

#[cfg(test)]
mod tests;
