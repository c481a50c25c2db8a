//! Session affinity state is named by identity (UPSTREAM.md, session
//! affinity): one client set per endpoint of a service port, named from
//! the service port and the endpoint, shared by every entry point (cluster
//! IP, external and load-balancer IPs, node port), and untouched by
//! changes to the other endpoints. Planner level: the sets each plan
//! declares and the set each chain checks before it DNATs to an endpoint.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use api_watch::{ObjectKey, Protocol};
use common::*;
use nft_writer::{names, Family, MapKind, Ruleset, Stmt, Table};

/// `default/sticky`: LoadBalancer 10.43.0.20:80 -> 5000, external IP
/// 192.0.2.20, ingress 203.0.113.20, node port 30081, ClientIP affinity
/// with `timeout` seconds and the given externalTrafficPolicy.
fn sticky(timeout: u32, etp: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: sticky, namespace: default}}
spec:
  type: LoadBalancer
  clusterIP: 10.43.0.20
  externalIPs: [192.0.2.20]
  externalTrafficPolicy: {etp}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: {timeout}}}}}
  ports: [{{port: 80, targetPort: 5000, nodePort: 30081}}]
status: {{loadBalancer: {{ingress: [{{ip: 203.0.113.20}}]}}}}
"#
    )
}

/// The slice of `sticky` with endpoints (address, node).
fn sticky_slice(endpoints: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: sticky-1, namespace: default, labels: {kubernetes.io/service-name: sticky}}\naddressType: IPv4\nports: [{port: 5000}]\nendpoints:\n",
    );
    for (ip, node) in endpoints {
        s.push_str(&format!("- {{addresses: [\"{ip}\"], nodeName: {node}}}\n"));
    }
    s
}

/// node-2's IPv4 table for `sticky` with these endpoints.
fn plan(timeout: u32, etp: &str, endpoints: &[(&str, &str)]) -> Table {
    let rs: Ruleset = ruleset(
        &state(&[NODES, &sticky(timeout, etp), &sticky_slice(endpoints)]),
        "node-2",
    );
    rs.tables
        .into_iter()
        .find(|t| t.family == Family::Ip)
        .expect("an IPv4 table")
}

/// The affinity sets the table declares.
fn affinity_sets(t: &Table) -> BTreeSet<String> {
    t.maps
        .values()
        .filter(|m| matches!(m.kind, MapKind::AffinitySet { .. }))
        .map(|m| m.name.clone())
        .collect()
}

/// For every chain, the set each rule that DNATs to an endpoint checks
/// (`ip saddr @set … dnat to ENDPOINT`): chain -> endpoint address -> set.
fn checks(t: &Table) -> BTreeMap<String, BTreeMap<IpAddr, String>> {
    let mut out: BTreeMap<String, BTreeMap<IpAddr, String>> = BTreeMap::new();
    for chain in t.chains.values() {
        for rule in &chain.rules {
            let set = rule.0.iter().find_map(|s| match s {
                Stmt::SaddrInSet { set } => Some(set.clone()),
                _ => None,
            });
            let dnat = rule.0.iter().find_map(|s| match s {
                Stmt::DnatTo(ip, _) => Some(*ip),
                _ => None,
            });
            if let (Some(set), Some(ip)) = (set, dnat) {
                let prev = out
                    .entry(chain.name.clone())
                    .or_default()
                    .insert(ip, set.clone());
                assert!(prev.is_none(), "{}: two checks for {ip}", chain.name);
            }
        }
    }
    out
}

/// Endpoint address -> the one set every chain checks for it; panics if
/// two chains check different sets for the same endpoint.
fn set_per_endpoint(t: &Table) -> BTreeMap<IpAddr, String> {
    let mut out: BTreeMap<IpAddr, String> = BTreeMap::new();
    for (chain, by_ep) in checks(t) {
        for (ip, set) in by_ep {
            let first = out.entry(ip).or_insert_with(|| set.clone());
            assert_eq!(*first, set, "{chain} checks another set for {ip}");
        }
    }
    out
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const TWO: [(&str, &str); 2] = [("10.42.187.67", "node-2"), ("10.42.54.131", "node-3")];

#[test]
fn an_endpoint_whose_address_sorts_first_leaves_every_other_set_name_alone() {
    for etp in ["Cluster", "Local"] {
        let before = plan(60, etp, &TWO);
        let mut three = TWO.to_vec();
        three.push(("10.42.0.5", "node-3"));
        let after = plan(60, etp, &three);
        let (old, new) = (set_per_endpoint(&before), set_per_endpoint(&after));
        for (ep, set) in &old {
            assert_eq!(new.get(ep), Some(set), "eTP {etp}: {ep} changed sets");
        }
        let added: Vec<String> = affinity_sets(&after)
            .difference(&affinity_sets(&before))
            .cloned()
            .collect();
        assert_eq!(added, vec![new[&ip("10.42.0.5")].clone()], "eTP {etp}");
        assert!(affinity_sets(&before).is_subset(&affinity_sets(&after)));
    }
}

#[test]
fn every_entry_point_checks_the_same_set_for_the_same_endpoint() {
    for etp in ["Cluster", "Local"] {
        let t = plan(60, etp, &TWO);
        let by_chain = checks(&t);
        let key = ObjectKey::new("default", "sticky");
        let chain = |kind: &str| names::port_chain(kind, &key, "", Protocol::Tcp, 80);
        // Cluster IP; external, LB IPs and node port (eTP Cluster: their
        // own chains; eTP Local: the cluster chains for pods and the node,
        // the local chain for the rest).
        let entries: Vec<String> = match etp {
            "Cluster" => vec![chain("svc"), chain("ext"), chain("np")],
            _ => vec![chain("svc"), chain("clu"), chain("clunp"), chain("loc")],
        };
        for e in &entries {
            assert!(by_chain.contains_key(e), "eTP {etp}: no checks in {e}");
        }
        let sets = set_per_endpoint(&t);
        assert_eq!(sets.len(), 2, "eTP {etp}: {sets:?}");
        assert_eq!(
            affinity_sets(&t),
            sets.values().cloned().collect(),
            "eTP {etp}: one declared set per endpoint, no other"
        );
        for (ep, set) in &sets {
            assert_eq!(
                *set,
                names::affinity_set(&key, "", Protocol::Tcp, 80, (*ep, 5000), 60),
                "eTP {etp}"
            );
        }
        // Under eTP Local the local chain holds node-2's endpoint only,
        // with the same set the cluster IP uses for it.
        if etp == "Local" {
            let local = &by_chain[&chain("loc")];
            assert_eq!(local.keys().copied().collect::<Vec<_>>(), [ip(TWO[0].0)]);
            assert_eq!(local[&ip(TWO[0].0)], by_chain[&chain("svc")][&ip(TWO[0].0)]);
        }
    }
}

#[test]
fn removing_an_endpoint_removes_exactly_its_set() {
    let three = [TWO[0], TWO[1], ("10.42.0.5", "node-3")];
    let before = plan(60, "Cluster", &three);
    let after = plan(60, "Cluster", &[three[0], three[2]]);
    let gone: Vec<String> = affinity_sets(&before)
        .difference(&affinity_sets(&after))
        .cloned()
        .collect();
    assert_eq!(gone, vec![set_per_endpoint(&before)[&ip(TWO[1].0)].clone()]);
    assert!(affinity_sets(&after).is_subset(&affinity_sets(&before)));
}

#[test]
fn a_new_affinity_timeout_is_a_new_set_for_every_endpoint() {
    let short = plan(60, "Cluster", &TWO);
    let long = plan(600, "Cluster", &TWO);
    assert_eq!(affinity_sets(&short).len(), 2);
    assert!(affinity_sets(&short).is_disjoint(&affinity_sets(&long)));
    for m in long.maps.values() {
        if let MapKind::AffinitySet { timeout } = m.kind {
            assert_eq!(timeout, 600, "{}", m.name);
        }
    }
}

#[test]
fn the_same_plan_twice_names_the_same_sets() {
    let a = plan(60, "Local", &TWO);
    let b = plan(60, "Local", &[TWO[1], TWO[0]]);
    assert_eq!(affinity_sets(&a), affinity_sets(&b));
    assert_eq!(set_per_endpoint(&a), set_per_endpoint(&b));
}
