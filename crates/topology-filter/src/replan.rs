//! Re-planning a few Services: [`replan`] brings a [`ProxyPlan`] made by
//! [`crate::plan`] up to date with a new [`ClusterState`] when only the
//! given Services (or their EndpointSlices) changed, in time proportional
//! to those Services rather than to the cluster.

use std::collections::{BTreeMap, BTreeSet};

use api_watch::{ClusterState, EndpointSlice, ObjectKey, SliceIndex};

use crate::select::{node_addresses, node_pod_cidrs, plan_service};
use crate::ProxyPlan;

/// Below this many Services, their slices are found by scanning each
/// Service's namespace; above it, by one pass over every slice.
const RANGE_SCAN_LIMIT: usize = 8;

/// Updates `plan` (from [`crate::plan`] for `plan.node`) to `state`,
/// re-planning only `services`: afterwards `plan` equals
/// `plan(state, &plan.node)` provided every other Service plans the same
/// in `state` as before (their Service, their slices and, for Services
/// with topology keys or hints, the Nodes did not change). This node's
/// addresses, its pod CIDRs and the ServiceCIDRs are read again.
///
/// Services in `services` that are gone from `state` lose their port plans
/// and problems.
pub fn replan(plan: &mut ProxyPlan, state: &ClusterState, services: &BTreeSet<ObjectKey>) {
    replan_indexed(plan, state, None, services)
}

/// [`replan`], finding each Service's slices through `index` (kept in
/// step with `state` by its owner) instead of scanning `state`'s slices:
/// the cost is the re-planned Services', whatever the cluster holds.
pub fn replan_indexed(
    plan: &mut ProxyPlan,
    state: &ClusterState,
    index: Option<&SliceIndex>,
    services: &BTreeSet<ObjectKey>,
) {
    plan.node_addresses = node_addresses(state, &plan.node);
    plan.node_pod_cidrs = node_pod_cidrs(state, &plan.node);
    plan.service_cidrs = crate::select::prefixes(&state.service_cidr_prefixes());
    let slices = match index {
        Some(index) => services
            .iter()
            .map(|k| (k.clone(), index.slices_of(state, k)))
            .collect(),
        None => slices_of(state, services),
    };
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
                .map(|(_, s)| &**s)
                .filter(|s| *s.service_name == *key.name)
                .collect();
            out.insert(key.clone(), own);
        }
        return out;
    }
    let wanted: BTreeSet<(&str, &str)> = services
        .iter()
        .map(|k| (k.namespace.as_ref(), k.name.as_ref()))
        .collect();
    for slice in state.endpoint_slices.values() {
        if wanted.contains(&(slice.key.namespace.as_ref(), slice.service_name.as_str())) {
            out.entry(slice.service_key()).or_default().push(slice);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crate::{depends_on_nodes, plan};

    /// Three copies of the test Service (`svc`, `svc-b`, `svc-c`), each with
    /// its own slice, on nodes in two zones; `svc-b` routes by zone.
    fn cluster() -> ClusterState {
        let nodes = vec![
            node("node-1", &[("topology.kubernetes.io/zone", "a")]),
            node("node-2", &[("topology.kubernetes.io/zone", "b")]),
        ];
        let mut st = state(
            service(),
            vec![ep("10.42.0.1", "node-1", Ready::Yes)],
            nodes,
        );
        for (name, ip, svc_ip) in [
            ("svc-b", "10.42.0.2", "10.43.0.2"),
            ("svc-c", "10.42.0.3", "10.43.0.3"),
        ] {
            let mut s = service();
            s.key = ObjectKey::new("default", name);
            s.cluster_ips = vec![svc_ip.parse().unwrap()];
            if name == "svc-b" {
                s = keys(s, &["topology.kubernetes.io/zone", "*"]);
            }
            let mut sl = st.endpoint_slices.values().next().unwrap().clone();
            sl.key = ObjectKey::new("default", format!("{name}-1"));
            sl.service_name = name.into();
            sl.endpoints = vec![
                ep(ip, "node-1", Ready::Yes),
                ep("10.42.9.9", "node-2", Ready::Yes),
            ];
            st.services.insert(s.key.clone(), Box::new(s));
            st.endpoint_slices.insert(sl.key.clone(), sl);
        }
        st
    }

    #[test]
    fn replanning_the_changed_services_gives_the_plan_of_the_new_state() {
        let before = cluster();
        let mut kept = plan(&before, "node-1");
        let mut after = before.clone();
        // svc-c gains an endpoint, svc goes away, svc-d arrives.
        let c = ObjectKey::new("default", "svc-c-1");
        let extra = ep("10.42.0.4", "node-2", Ready::Yes);
        after
            .endpoint_slices
            .get_mut(&c)
            .unwrap()
            .endpoints
            .push(extra);
        let gone = ObjectKey::new("default", "svc");
        after.services.remove(&gone);
        let mut d = service();
        d.key = ObjectKey::new("default", "svc-d");
        after.services.insert(d.key.clone(), Box::new(d.clone()));
        let changed: BTreeSet<ObjectKey> = [gone, ObjectKey::new("default", "svc-c"), d.key].into();
        replan(&mut kept, &after, &changed);
        assert_eq!(kept, plan(&after, "node-1"));
    }

    #[test]
    fn both_ways_of_finding_slices_agree() {
        let mut st = cluster();
        let template = st.endpoint_slices.values().next().unwrap().clone();
        for i in 0..12 {
            for part in ["x", "y"] {
                let mut sl = template.clone();
                sl.key = ObjectKey::new("default", format!("other-{part}-{i}"));
                sl.service_name = format!("s{i}");
                st.endpoint_slices.insert(sl.key.clone(), sl);
            }
        }
        let keys: BTreeSet<ObjectKey> = (0..12)
            .map(|i| ObjectKey::new("default", format!("s{i}")))
            .chain([ObjectKey::new("default", "svc-b")])
            .collect();
        assert!(keys.len() > RANGE_SCAN_LIMIT);
        let together = slices_of(&st, &keys);
        for k in &keys {
            let alone = slices_of(&st, &[k.clone()].into());
            assert_eq!(
                together.get(k),
                alone.get(k).filter(|v| !v.is_empty()),
                "{k}"
            );
        }
        assert_eq!(together[&ObjectKey::new("default", "s3")].len(), 2);
        // The index kept by the API source's store finds the same slices,
        // in the same order.
        let index = SliceIndex::build(&st);
        for k in &keys {
            let indexed = index.slices_of(&st, k);
            assert_eq!(together.get(k).cloned().unwrap_or_default(), indexed, "{k}");
        }
    }

    #[test]
    fn replanning_through_the_index_gives_the_same_plan() {
        let before = cluster();
        let mut kept = plan(&before, "node-1");
        let mut after = before.clone();
        let c = ObjectKey::new("default", "svc-c-1");
        after
            .endpoint_slices
            .get_mut(&c)
            .unwrap()
            .endpoints
            .push(ep("10.42.0.4", "node-2", Ready::Yes));
        let changed: BTreeSet<ObjectKey> = [ObjectKey::new("default", "svc-c")].into();
        replan_indexed(
            &mut kept,
            &after,
            Some(&SliceIndex::build(&after)),
            &changed,
        );
        assert_eq!(kept, plan(&after, "node-1"));
    }

    #[test]
    fn a_node_label_change_needs_only_the_services_that_depend_on_nodes() {
        let before = cluster();
        let mut kept = plan(&before, "node-1");
        let mut after = before.clone();
        after.nodes.insert(
            "node-2".into(),
            node("node-2", &[("topology.kubernetes.io/zone", "a")]),
        );
        let dependent: BTreeSet<ObjectKey> = after
            .services
            .values()
            .filter(|s| depends_on_nodes(s))
            .map(|s| s.key.clone())
            .collect();
        assert_eq!(dependent, [ObjectKey::new("default", "svc-b")].into());
        replan(&mut kept, &after, &dependent);
        let fresh = plan(&after, "node-1");
        assert_ne!(fresh, plan(&before, "node-1"), "the zone change matters");
        assert_eq!(kept, fresh);
    }
}
