//! The DaemonSet's ClusterRole (packaging/kubernetes/rbac.yaml) allows
//! exactly the API calls the daemon makes: every (group, resource, verb)
//! the code derives from the types it watches (`api_watch::api::access`,
//! with Calico's BlockAffinities, which `routes.podCIDRSource:
//! calico-ipam` turns on) and writes (the Starting event, `run/events.rs`,
//! and the Warning events on Services, `run/service_events.rs`) is
//! granted, and nothing else is.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

// The binary crate has no library: the module is compiled in here as well.
#[path = "../src/run/events.rs"]
#[allow(dead_code)]
mod events;

type Grant = (String, String, String);

/// (group, resource, verb) triples the code asks for.
fn used() -> BTreeSet<Grant> {
    api_watch::api::access(true)
        .into_iter()
        .chain(events::access())
        .chain(events::service_access())
        .flat_map(|a| {
            a.verbs
                .iter()
                .map(|v| (a.group.clone(), a.resource.clone(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// (group, resource, verb) triples the ClusterRole `nftopo` grants.
fn granted() -> BTreeSet<Grant> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/kubernetes/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut roles = Vec::new();
    for v in serde_saphyr::from_multiple::<Value>(&text).unwrap() {
        if v["kind"] == "ClusterRole" && v["metadata"]["name"] == "nftopo" {
            roles.push(v);
        }
    }
    assert_eq!(
        roles.len(),
        1,
        "one ClusterRole nftopo in {}",
        path.display()
    );
    let list = |v: &Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("rule without {key}: {v:?}"))
            .iter()
            .map(|s| s.as_str().expect("a string").to_string())
            .collect()
    };
    let mut out = BTreeSet::new();
    for rule in roles[0]["rules"].as_array().expect("rules") {
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "rules are per group and resource only: {rule:?}"
        );
        for g in list(rule, "apiGroups") {
            for r in list(rule, "resources") {
                for v in list(rule, "verbs") {
                    assert!(g != "*" && r != "*" && v != "*", "no wildcards: {rule:?}");
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

#[test]
fn the_cluster_role_grants_every_api_call_the_daemon_makes_and_nothing_more() {
    let (used, granted) = (used(), granted());
    let missing: Vec<_> = used.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&used).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "rbac.yaml lacks {missing:?} and grants unused {extra:?}"
    );
}

/// Issue 17: events on Services need no verb the daemon did not have:
/// create and patch of events only, and the list of Services it makes
/// for its watch anyway.
#[test]
fn service_events_only_create_and_patch_events_and_list_services() {
    let mut got: Vec<(String, String, String)> = events::service_access()
        .into_iter()
        .flat_map(|a| {
            let (g, r) = (a.group.clone(), a.resource.clone());
            a.verbs
                .into_iter()
                .map(move |v| (g.clone(), r.clone(), v.to_string()))
        })
        .collect();
    got.sort();
    let want = [
        ("", "services", "list"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    ]
    .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()));
    assert_eq!(got, want);
    let granted = granted();
    assert!(got.iter().all(|g| granted.contains(g)), "{got:?}");
}

#[test]
fn the_daemon_watches_services_endpointslices_nodes_and_calico_blocks_and_writes_events() {
    let resources: BTreeSet<(String, String)> =
        used().into_iter().map(|(g, r, _)| (g, r)).collect();
    for (g, r) in [
        ("", "services"),
        ("discovery.k8s.io", "endpointslices"),
        ("", "nodes"),
        ("crd.projectcalico.org", "blockaffinities"),
        ("events.k8s.io", "events"),
    ] {
        assert!(
            resources.contains(&(g.to_string(), r.to_string())),
            "{g}/{r} not in {resources:?}"
        );
    }
}
