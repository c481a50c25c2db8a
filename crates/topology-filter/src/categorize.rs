//! One service port's endpoints, split into the cluster-wide set and the
//! node-local set: kube-proxy's `CategorizeEndpoints`, plus topology keys.
//!
//! * Families: kube-proxy runs one proxier per IP family, each with the
//!   endpoints of its family only, so the readiness fallback, the hints
//!   and "has any endpoint" are decided for IPv4 and IPv6 endpoints apart
//!   ([`categorize`]).
//! * Readiness: ready endpoints; when none is ready, serving and
//!   terminating ones (the cluster set ignores hints then, as kube-proxy
//!   does; topology keys still apply, see [`cluster_by_keys`]). The local
//!   set falls back the same way, on this node only.
//! * Policies: the port uses cluster endpoints unless its internal traffic
//!   is Local and it is not externally accessible (eTP Local keeps them for
//!   short-circuit traffic); it uses local endpoints when its internal
//!   traffic is Local, or its external traffic is Local and it is
//!   externally accessible.
//! * Valid topology keys choose the cluster set and make
//!   `internalTrafficPolicy: Local` void; otherwise hints narrow the
//!   cluster set wherever every ready endpoint has them. The local set is
//!   never filtered by topology.

use api_watch::{ClusterState, Service, ServicePort, TrafficPolicy};

use crate::candidate::{Candidate, Part};
use crate::hints::{self, Outcome, PREFER_SAME_NODE, PREFER_SAME_ZONE, ZONE_LABEL};
use crate::keys_filter;
use crate::Rule;

/// The Service-wide settings a port is categorized with.
pub(crate) struct Settings<'a> {
    /// The Service's topology keys, when present and valid.
    pub keys: Option<&'a [String]>,
}

/// The result for one service port; the vectors run parallel to the
/// candidates.
pub(crate) struct Categorized {
    pub uses_cluster: bool,
    pub uses_local: bool,
    /// `endpoints` is the local set.
    pub internal_local: bool,
    /// External traffic uses the local set.
    pub external_local: bool,
    pub cluster: Vec<Part>,
    pub local: Vec<Part>,
    /// Some IPv4 endpoint is ready, or serving and terminating, anywhere.
    pub has_any_v4: bool,
    /// Some IPv6 endpoint is ready, or serving and terminating, anywhere.
    pub has_any_v6: bool,
    pub rule: Rule,
}

/// Categorizes the candidates of one port of `service` for `node`, each
/// IP family on its own (the candidates come sorted by address, so the
/// IPv4 ones come first). The families' parts are put back together in
/// candidate order; when the families' rules differ, the rule says both.
pub(crate) fn categorize(
    state: &ClusterState,
    node: &str,
    service: &Service,
    port: &ServicePort,
    settings: &Settings<'_>,
    candidates: &[Candidate<'_>],
) -> Categorized {
    let split = candidates.partition_point(|c| c.ip.is_ipv4());
    let (v4, v6) = candidates.split_at(split);
    let one = |family: &[Candidate<'_>], ipv6: bool| {
        categorize_family(state, node, service, port, settings, family, ipv6)
    };
    if v6.is_empty() {
        return one(v4, false);
    }
    if v4.is_empty() {
        return one(v6, true);
    }
    let mut c = one(v4, false);
    let c6 = one(v6, true);
    c.cluster.extend(c6.cluster);
    c.local.extend(c6.local);
    c.has_any_v6 = c6.has_any_v6;
    if c.rule != c6.rule {
        c.rule = Rule::PerFamily {
            ipv4: Box::new(c.rule),
            ipv6: Box::new(c6.rule),
        };
    }
    c
}

/// [`categorize`] for the candidates of one family (IPv6 when `ipv6`).
fn categorize_family(
    state: &ClusterState,
    node: &str,
    service: &Service,
    port: &ServicePort,
    settings: &Settings<'_>,
    candidates: &[Candidate<'_>],
    ipv6: bool,
) -> Categorized {
    let accessible = service.is_externally_accessible() || port.node_port.is_some();
    let internal_local =
        service.internal_traffic_policy == TrafficPolicy::Local && settings.keys.is_none();
    let external_local = accessible && service.external_traffic_policy == TrafficPolicy::Local;
    let uses_cluster = !internal_local || accessible;
    let uses_local = internal_local || external_local;

    let (cluster, cluster_rule) = if !uses_cluster {
        (Vec::new(), Rule::None)
    } else if let Some(keys) = settings.keys {
        let local_ignored = service.internal_traffic_policy == TrafficPolicy::Local;
        cluster_by_keys(keys, local_ignored, state, node, candidates)
    } else {
        let zone = state
            .nodes
            .get(node)
            .and_then(|n| n.labels.get(ZONE_LABEL))
            .map(String::as_str);
        let outcome = hints::evaluate(candidates, node, zone);
        cluster_by_hints(&outcome, candidates)
    };
    let local = if uses_local {
        local_set(
            policy_name(internal_local, external_local),
            node,
            candidates,
        )
    } else {
        Vec::new()
    };
    let has_any = candidates
        .iter()
        .any(|c| ready(c) || serving_terminating(c));
    // With valid keys the port always uses cluster endpoints, so the rule
    // is the keys'.
    let rule = if internal_local {
        Rule::InternalLocal
    } else {
        cluster_rule
    };
    Categorized {
        uses_cluster,
        uses_local,
        internal_local,
        external_local,
        cluster,
        local,
        has_any_v4: has_any && !ipv6,
        has_any_v6: has_any && ipv6,
        rule,
    }
}

fn ready(c: &Candidate<'_>) -> bool {
    c.endpoint.conditions.ready
}

fn serving_terminating(c: &Candidate<'_>) -> bool {
    let conditions = c.endpoint.conditions;
    !conditions.ready && conditions.serving && conditions.terminating
}

/// Why an endpoint that is not ready is left out; `scope` narrows "no
/// endpoint" for the local set.
fn not_ready(c: &Candidate<'_>, scope: &str) -> Part {
    let conditions = c.endpoint.conditions;
    Part::dropped(if serving_terminating(c) {
        format!("serving but terminating, used only when no endpoint{scope} is ready")
    } else if conditions.terminating {
        "not ready (terminating)".to_string()
    } else {
        "not ready".to_string()
    })
}

/// Topology keys over the usable endpoints: the ready ones, or, when no
/// endpoint is ready, the serving and terminating ones. Unlike hints, the
/// keys still apply on that fallback: they are a hard rule (a Service with
/// only `kubernetes.io/hostname` must never leave the node), not a
/// preference.
fn cluster_by_keys(
    keys: &[String],
    local_ignored: bool,
    state: &ClusterState,
    node: &str,
    candidates: &[Candidate<'_>],
) -> (Vec<Part>, Rule) {
    let fallback = !candidates.iter().any(ready);
    let usable = |c: &Candidate<'_>| {
        if fallback {
            serving_terminating(c)
        } else {
            ready(c)
        }
    };
    let pool: Vec<Candidate<'_>> = candidates.iter().copied().filter(|c| usable(c)).collect();
    let (matched, mut pool_parts) = keys_filter::filter(keys, state, node, &pool);
    let mut notes = String::new();
    if fallback {
        notes.push_str("; serving but terminating, used because no endpoint is ready");
    }
    if local_ignored {
        notes.push_str(
            "; internalTrafficPolicy Local is ignored because topology keys take precedence",
        );
    }
    pool_parts.reverse();
    let parts = candidates
        .iter()
        .map(|c| {
            if usable(c) {
                let part = pool_parts.pop().expect("one part per usable candidate");
                part.with_note(&notes)
            } else {
                not_ready(c, "")
            }
        })
        .collect();
    let rule = Rule::TopologyKeys {
        keys: keys.to_vec(),
        matched,
    };
    (parts, rule)
}

/// Ready endpoints allowed by the hints outcome; when there are none,
/// every serving and terminating endpoint, without topology (kube-proxy:
/// hints were already ignored if no ready endpoint matched them, so the
/// problem is that no endpoint is ready anywhere).
fn cluster_by_hints(outcome: &Outcome, candidates: &[Candidate<'_>]) -> (Vec<Part>, Rule) {
    let fallback = !candidates.iter().any(|c| ready(c) && outcome.allows(c));
    let unfiltered = match outcome {
        Outcome::Absent => "no topology rules".to_string(),
        Outcome::Unused { why } => format!("topology-aware hints not used: {why}"),
        Outcome::SameNode { .. } | Outcome::SameZone { .. } => String::new(),
    };
    let parts = candidates
        .iter()
        .map(|c| {
            if fallback && serving_terminating(c) {
                return Part::kept(
                    "serving but terminating, used because no endpoint is ready (topology is not applied)",
                );
            }
            if !ready(c) {
                return not_ready(c, "");
            }
            match outcome {
                Outcome::SameNode { node } if outcome.allows(c) => {
                    Part::kept(format!("hinted for this node {node} ({PREFER_SAME_NODE})"))
                }
                Outcome::SameNode { node } => Part::dropped(format!(
                    "hinted for {}, not this node {node} ({PREFER_SAME_NODE})",
                    list("node", c.endpoint.hint_nodes())
                )),
                Outcome::SameZone { zone } if outcome.allows(c) => {
                    Part::kept(format!("hinted for this node's zone {zone} ({PREFER_SAME_ZONE})"))
                }
                Outcome::SameZone { zone } => Part::dropped(format!(
                    "hinted for {}, not this node's zone {zone} ({PREFER_SAME_ZONE})",
                    list("zone", c.endpoint.hint_zones())
                )),
                _ => Part::kept(&unfiltered),
            }
        })
        .collect();
    let rule = match outcome {
        Outcome::SameNode { node } => Rule::Hints {
            mode: PREFER_SAME_NODE.to_string(),
            value: node.clone(),
        },
        Outcome::SameZone { zone } => Rule::Hints {
            mode: PREFER_SAME_ZONE.to_string(),
            value: zone.clone(),
        },
        _ => Rule::None,
    };
    (parts, rule)
}

/// "zone zone-b" or "zones zone-b, zone-c".
fn list(kind: &str, names: &[String]) -> String {
    let plural = if names.len() == 1 { "" } else { "s" };
    format!("{kind}{plural} {}", names.join(", "))
}

fn policy_name(internal_local: bool, external_local: bool) -> &'static str {
    match (internal_local, external_local) {
        (true, true) => "internalTrafficPolicy and externalTrafficPolicy Local",
        (true, false) => "internalTrafficPolicy Local",
        _ => "externalTrafficPolicy Local",
    }
}

/// The endpoints on this node: ready ones, else serving and terminating
/// ones. Topology keys and hints never narrow this set.
fn local_set(policy: &str, node: &str, candidates: &[Candidate<'_>]) -> Vec<Part> {
    let on_node = |c: &Candidate<'_>| c.endpoint.node_name.as_deref() == Some(node);
    let fallback = !candidates.iter().any(|c| on_node(c) && ready(c));
    candidates
        .iter()
        .map(|c| match c.endpoint.node_name.as_deref() {
            Some(n) if n == node => {
                if ready(c) {
                    Part::kept(format!("{policy} and the endpoint runs on this node"))
                } else if fallback && serving_terminating(c) {
                    Part::kept(format!(
                        "{policy} and the endpoint runs on this node; serving but terminating, \
                         used because no endpoint on this node is ready"
                    ))
                } else {
                    not_ready(c, " on this node")
                }
            }
            Some(n) => Part::dropped(format!("{policy} and the endpoint runs on node {n}")),
            None => Part::dropped(format!("{policy} and the endpoint's node is not known")),
        })
        .collect()
}

#[cfg(test)]
mod tests;
