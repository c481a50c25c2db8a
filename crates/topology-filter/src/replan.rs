//! Re-planning a few Services: [`replan`] brings a [`ProxyPlan`] made by
//! [`crate::plan`] up to date with a new [`ClusterState`] when only the
//! given Services (or their EndpointSlices) changed, in time proportional
//! to those Services rather than to the cluster.

use std::collections::{BTreeMap, BTreeSet};

use api_watch::{ClusterState, EndpointSlice, ObjectKey};

use crate::select::{node_addresses, plan_service};
use crate::ProxyPlan;

/// Below this many Services, their slices are found by scanning each
/// Service's namespace; above it, by one pass over every slice.
const RANGE_SCAN_LIMIT: usize = 8;

/// Updates `plan` (from [`crate::plan`] for `plan.node`) to `state`,
/// re-planning only `services`: afterwards `plan` equals
/// `plan(state, &plan.node)` provided every other Service plans the same
/// in `state` as before (their Service, their slices and, for Services
/// with topology keys or hints, the Nodes did not change). This node's
/// addresses are read again.
///
/// Services in `services` that are gone from `state` lose their port plans
/// and problems.
pub fn replan(plan: &mut ProxyPlan, state: &ClusterState, services: &BTreeSet<ObjectKey>) {
    plan.node_addresses = node_addresses(state, &plan.node);
    let slices = slices_of(state, services);
    for key in services {
        let one = match state.services.get(key) {
            Some(service) => {
                let own = slices.get(key).map(Vec::as_slice).unwrap_or(&[]);
                plan_service(state, own, &plan.node, service)
            }
            None => Default::default(),
        };
        let start = plan.services.partition_point(|p| p.service < *key);
        let end = start + plan.services[start..].partition_point(|p| p.service == *key);
        plan.services.splice(start..end, one.ports);
        let start = plan.problems.partition_point(|p| p.object < *key);
        let end = start + plan.problems[start..].partition_point(|p| p.object == *key);
        plan.problems.splice(start..end, one.problems);
    }
}

/// The slices of each of `services`, in slice-name order (as
/// [`ClusterState::slices_by_service`] gives them).
fn slices_of<'a>(
    state: &'a ClusterState,
    services: &BTreeSet<ObjectKey>,
) -> BTreeMap<ObjectKey, Vec<&'a EndpointSlice>> {
    let mut out: BTreeMap<ObjectKey, Vec<&EndpointSlice>> = BTreeMap::new();
    if services.len() <= RANGE_SCAN_LIMIT {
        for key in services {
            let from = ObjectKey::new(key.namespace.clone(), String::new());
            let own: Vec<&EndpointSlice> = state
                .endpoint_slices
                .range(from..)
                .take_while(|(k, _)| k.namespace == key.namespace)
                .map(|(_, s)| s)
                .filter(|s| s.service_name == key.name)
                .collect();
            out.insert(key.clone(), own);
        }
        return out;
    }
    let wanted: BTreeSet<(&str, &str)> = services
        .iter()
        .map(|k| (k.namespace.as_str(), k.name.as_str()))
        .collect();
    for slice in state.endpoint_slices.values() {
        if wanted.contains(&(slice.key.namespace.as_str(), slice.service_name.as_str())) {
            out.entry(slice.service_key()).or_default().push(slice);
        }
    }
    out
}
