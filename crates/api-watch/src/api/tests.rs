use std::time::{Duration, SystemTime};

use futures::channel::mpsc;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kube::runtime::watcher::{self, Event};
use serde_json::json;

use super::snapshot::TakeSnapshot;
use super::*;
use crate::ObjectKey;

fn service(name: &str, port: i64) -> core::Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"clusterIP": "10.43.0.10", "ports": [{"port": port}], "healthCheckNodePort": 31000},
    }))
    .unwrap()
}

fn slice(name: &str, ip: &str, trigger: Option<&str>) -> discovery::EndpointSlice {
    let mut annotations = serde_json::Map::new();
    if let Some(t) = trigger {
        annotations.insert(crate::LAST_CHANGE_TRIGGER_TIME_ANNOTATION.into(), t.into());
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations,
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"port": 8080}],
        "endpoints": [{"addresses": [ip]}],
    }))
    .unwrap()
}

fn node(name: &str, taint: bool) -> core::Node {
    let taints = if taint {
        json!([{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "a"}},
        "spec": {"podCIDR": "10.42.1.0/24", "taints": taints},
    }))
    .unwrap()
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("shop", name)
}

/// Lists every kind once: services and slices as given, one node.
fn list_all(t: &mut Tracker, services: Vec<core::Service>, slices: Vec<discovery::EndpointSlice>) {
    t.service(Event::Init);
    for s in services {
        t.service(Event::InitApply(s));
    }
    t.service(Event::InitDone);
    t.endpoint_slice(Event::Init);
    for s in slices {
        t.endpoint_slice(Event::InitApply(s));
    }
    t.endpoint_slice(Event::InitDone);
    t.node(Event::Init);
    t.node(Event::InitApply(node("node-1", false)));
    t.node(Event::InitDone);
}

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

#[test]
fn nothing_is_handed_out_until_all_three_kinds_have_listed() {
    let mut t = Tracker::new(start());
    t.service(Event::Init);
    t.service(Event::InitApply(service("web", 80)));
    t.service(Event::InitDone);
    t.endpoint_slice(Event::Init);
    t.endpoint_slice(Event::InitDone);
    assert!(!t.ready());
    assert_eq!(t.take_snapshot(), None, "nodes have not listed yet");
    t.node(Event::Init);
    t.node(Event::InitApply(node("node-1", false)));
    assert_eq!(t.take_snapshot(), None, "the node list is not done");
    t.node(Event::InitDone);
    let s = t.take_snapshot().expect("all three listed");
    assert_eq!(s.generation, 1);
    assert_eq!(s.state.services.len(), 1);
    assert_eq!(s.state.nodes.len(), 1);
    assert_eq!(t.take_snapshot(), None, "nothing changed since");
}

#[test]
fn an_empty_cluster_is_still_one_snapshot_once_listed() {
    let mut t = Tracker::new(start());
    list_all(&mut t, vec![], vec![]);
    // The node goes away in a re-list before anyone looked.
    t.node(Event::Init);
    t.node(Event::InitDone);
    let s = t.take_snapshot().unwrap();
    assert!(s.state.services.is_empty() && s.state.nodes.is_empty());
}

/// A slice of `service` named `name`.
fn slice_of(name: &str, service: &str, ip: &str) -> discovery::EndpointSlice {
    let mut s = slice(name, ip, None);
    s.metadata.labels = Some([("kubernetes.io/service-name".into(), service.into())].into());
    s
}

#[test]
fn snapshots_name_the_services_whose_service_or_slices_changed_and_whether_nodes_did() {
    let mut t = Tracker::new(start());
    list_all(
        &mut t,
        vec![service("web", 80), service("api", 80)],
        vec![slice_of("web-1", "web", "10.42.1.5")],
    );
    let first = t.take_snapshot().unwrap();
    assert_eq!(
        first.changed_services,
        [key("api"), key("web")].into(),
        "the first snapshot names every Service"
    );
    assert!(first.nodes_changed);

    t.endpoint_slice(Event::Apply(slice_of("web-1", "web", "10.42.1.6")));
    let s = t.take_snapshot().unwrap();
    assert_eq!(s.changed_services, [key("web")].into());
    assert!(!s.nodes_changed);

    // A slice that moves to another Service dirties both.
    t.endpoint_slice(Event::Apply(slice_of("web-1", "shop-db", "10.42.1.6")));
    let s = t.take_snapshot().unwrap();
    assert_eq!(s.changed_services, [key("shop-db"), key("web")].into());

    // A Service deleted, a slice deleted, a Node relabelled.
    t.service(Event::Delete(service("api", 80)));
    t.endpoint_slice(Event::Delete(slice_of("web-1", "shop-db", "10.42.1.6")));
    let mut n = node("node-1", false);
    n.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("topology.kubernetes.io/zone".into(), "b".into());
    t.node(Event::Apply(n));
    let s = t.take_snapshot().unwrap();
    assert_eq!(s.changed_services, [key("api"), key("shop-db")].into());
    assert!(s.nodes_changed);

    // An update that changes nothing in the model names nothing.
    t.service(Event::Apply(service("web", 80)));
    assert_eq!(t.take_snapshot(), None);
}

#[test]
fn changes_are_counted_since_the_last_snapshot() {
    let mut t = Tracker::new(start());
    list_all(
        &mut t,
        vec![service("web", 80)],
        vec![slice("web-1", "10.42.1.5", None)],
    );
    let first = t.take_snapshot().unwrap();
    assert_eq!((first.services_changed, first.endpoints_changed), (1, 1));

    // An update that changes nothing in the model is not a change.
    t.service(Event::Apply(service("web", 80)));
    assert_eq!(t.take_snapshot(), None);

    t.service(Event::Apply(service("web", 81)));
    t.service(Event::Apply(service("api", 90)));
    t.endpoint_slice(Event::Apply(slice("web-1", "10.42.1.6", None)));
    t.endpoint_slice(Event::Delete(slice("web-1", "10.42.1.6", None)));
    let s = t.take_snapshot().unwrap();
    assert_eq!(s.generation, 2);
    assert_eq!((s.services_changed, s.endpoints_changed), (2, 2));
    assert_eq!(s.state.services[&key("web")].ports[0].port, 81);
    assert!(s.state.endpoint_slices.is_empty());
}

#[test]
fn a_relist_replaces_the_kind_atomically_and_drops_what_is_gone() {
    let mut t = Tracker::new(start());
    list_all(
        &mut t,
        vec![service("web", 80), service("old", 80)],
        vec![slice("web-1", "10.42.1.5", None)],
    );
    t.take_snapshot().unwrap();
    // After a 410 Gone the watcher lists again.
    t.service(Event::Init);
    t.service(Event::InitApply(service("web", 80)));
    assert_eq!(t.take_snapshot(), None, "half a re-list is never shown");
    t.service(Event::InitApply(service("new", 80)));
    t.service(Event::InitDone);
    let s = t.take_snapshot().unwrap();
    let names: Vec<_> = s.state.services.keys().map(|k| &*k.name).collect();
    assert_eq!(names, ["new", "web"]);
    assert_eq!(
        s.services_changed, 2,
        "old deleted, new added; web unchanged"
    );
    assert_eq!(s.state.endpoint_slices.len(), 1, "other kinds untouched");
}

#[test]
fn a_bad_object_is_skipped_with_one_error_naming_kind_object_and_field() {
    let mut t = Tracker::new(start());
    list_all(&mut t, vec![service("web", 80), service("bad", 0)], vec![]);
    let s = t.take_snapshot().unwrap();
    assert_eq!(s.state.services.len(), 1);
    assert_eq!(
        s.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["Service shop/bad: spec.ports[0].port: port 0 is not in 1..=65535"]
    );
    assert_eq!(s.errors[0].kind, Kind::Service);

    // Fixed: the error goes, the service comes.
    t.service(Event::Apply(service("bad", 80)));
    let s = t.take_snapshot().unwrap();
    assert!(s.errors.is_empty());
    assert_eq!(s.state.services.len(), 2);

    // A good object turning bad leaves the model: a change.
    t.service(Event::Apply(service("web", 70000)));
    let s = t.take_snapshot().unwrap();
    assert_eq!(s.services_changed, 1);
    assert!(!s.state.services.contains_key(&key("web")));
    assert_eq!(s.errors[0].object, "shop/web");

    // Deleting the bad object clears its error.
    t.service(Event::Delete(service("web", 70000)));
    assert!(t.take_snapshot().unwrap().errors.is_empty());
}

#[test]
fn trigger_times_come_from_changes_after_the_first_list_and_after_start() {
    let mut t = Tracker::new(start());
    let before = "2023-11-14T22:00:00Z"; // before start()
    let after = "2023-11-14T22:20:00.5Z"; // 1700000400.5
    list_all(
        &mut t,
        vec![],
        vec![slice("web-1", "10.42.1.5", Some(after))],
    );
    let s = t.take_snapshot().unwrap();
    assert!(
        s.trigger_times.is_empty(),
        "the first list is not a change we programmed late"
    );

    t.endpoint_slice(Event::Apply(slice("web-1", "10.42.1.6", Some(after))));
    t.endpoint_slice(Event::Apply(slice("web-2", "10.42.1.7", Some(before))));
    t.endpoint_slice(Event::Apply(slice(
        "web-3",
        "10.42.1.8",
        Some("not a time"),
    )));
    let s = t.take_snapshot().unwrap();
    assert_eq!(
        s.trigger_times,
        [SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_400_500)]
    );
    assert_eq!(s.state.endpoint_slices.len(), 3);
}

#[test]
fn nodes_being_deleted_and_health_check_ports_reach_the_model() {
    let mut t = Tracker::new(start());
    list_all(&mut t, vec![service("web", 80)], vec![]);
    t.node(Event::Apply(node("node-2", true)));
    let s = t.take_snapshot().unwrap();
    assert!(!s.state.nodes["node-1"].deleting);
    assert!(s.state.nodes["node-2"].deleting);
    assert_eq!(
        s.state.services[&key("web")].health_check_node_port,
        Some(31000)
    );
}

type Item<K> = Result<Event<K>, watcher::Error>;
type Sender<K> = mpsc::UnboundedSender<Item<K>>;

struct Feeds {
    services: Sender<core::Service>,
    slices: Sender<discovery::EndpointSlice>,
    nodes: Sender<core::Node>,
}

fn watches() -> (Watches, Feeds) {
    use futures::StreamExt;
    let (services, s) = mpsc::unbounded::<Item<core::Service>>();
    let (slices, e) = mpsc::unbounded::<Item<discovery::EndpointSlice>>();
    let (nodes, n) = mpsc::unbounded::<Item<core::Node>>();
    (
        Watches::from_streams(
            s.map(|r| r.map(decoded)),
            e.map(|r| r.map(decoded)),
            n.map(|r| r.map(decoded)),
        ),
        Feeds {
            services,
            slices,
            nodes,
        },
    )
}

/// One store, applied in place: the merged stream's events reach the
/// state the owner reads, with no copy in between.
#[tokio::test(start_paused = true)]
async fn next_waits_for_all_three_lists_then_coalesces_bursts() {
    let (mut watches, feeds) = watches();
    for event in [
        Event::Init,
        Event::InitApply(service("web", 80)),
        Event::InitDone,
    ] {
        feeds.services.unbounded_send(Ok(event)).unwrap();
    }
    for event in [Event::Init, Event::InitDone] {
        feeds.slices.unbounded_send(Ok(event)).unwrap();
    }
    let early = tokio::time::timeout(Duration::from_secs(5), watches.next()).await;
    assert!(
        early.is_err(),
        "nothing handed out before nodes have listed"
    );
    assert!(!watches.ready());
    assert_eq!(watches.state().services.len(), 1, "applied as they came");

    // A watch error is logged and skipped; the stream goes on.
    feeds
        .nodes
        .unbounded_send(Err(watcher::Error::NoResourceVersion))
        .unwrap();
    for event in [
        Event::Init,
        Event::InitApply(node("node-1", false)),
        Event::InitDone,
    ] {
        feeds.nodes.unbounded_send(Ok(event)).unwrap();
    }
    let first = watches.next().await.unwrap();
    assert_eq!(first.generation, 1);
    assert_eq!(first.changed_services, [key("web")].into());
    assert_eq!(watches.state().nodes.len(), 1);

    // A burst of changes while the consumer is busy is one hand-out, and
    // the store holds the latest state.
    for port in 81..=90 {
        feeds
            .services
            .unbounded_send(Ok(Event::Apply(service("web", port))))
            .unwrap();
    }
    let second = watches.next().await.unwrap();
    assert_eq!(second.generation, 2);
    assert_eq!(watches.state().services[&key("web")].ports[0].port, 90);
    assert_eq!(second.services_changed, 10);
    let idle = tokio::time::timeout(Duration::from_secs(5), watches.next()).await;
    assert!(idle.is_err(), "nothing stale is queued behind it");

    // A change after the consumer started waiting wakes it.
    let waiter = tokio::spawn(async move {
        let changes = watches.next().await.unwrap();
        (changes, watches)
    });
    tokio::task::yield_now().await;
    feeds
        .slices
        .unbounded_send(Ok(Event::Apply(slice("web-1", "10.42.1.5", None))))
        .unwrap();
    let (third, mut watches) = waiter.await.unwrap();
    assert_eq!((third.generation, third.endpoints_changed), (3, 1));

    // Every stream ended: no more hand-outs.
    drop(feeds);
    assert_eq!(watches.next().await, None);
}

fn block(name: &str, node: &str, state: &str) -> kube::api::DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
        "metadata": {"name": name},
        "spec": {"cidr": "10.42.54.128/26", "node": node, "state": state, "deleted": "false"},
    }))
    .unwrap()
}

/// With Calico IPAM, BlockAffinities gate the routes only: the Services
/// are handed out without them (a cluster without Calico's CRD, or
/// without RBAC for it, still gets its service rules), and routes become
/// ready when they list.
#[test]
fn block_affinities_gate_routes_not_services() {
    let mut plain = Tracker::new(start());
    list_all(&mut plain, vec![], vec![]);
    assert!(plain.take_changes().is_some_and(|c| c.routes_ready));

    let mut t = Tracker::new(start()).with_block_affinities();
    list_all(&mut t, vec![service("web", 80)], vec![]);
    let first = t.take_changes().expect("three kinds are enough");
    assert!(!first.routes_ready, "block affinities have not listed");
    // The CRD is missing: the failure changes nothing for Services.
    t.failed(Kind::BlockAffinity);
    assert!(!t.routes_ready());
    t.service(Event::Apply(service("web", 81)));
    assert!(t.take_changes().is_some_and(|c| !c.routes_ready));
    t.block_affinity(Event::Init);
    t.block_affinity(Event::InitApply(block("node-3-a", "node-3", "confirmed")));
    t.block_affinity(Event::InitApply(block("", "node-3", "confirmed")));
    t.block_affinity(Event::InitDone);
    let s = t.take_snapshot().expect("listed");
    assert!(s.blocks_changed && t.routes_ready(), "routes are due now");
    assert_eq!(
        s.state.block_affinities.keys().collect::<Vec<_>>(),
        ["node-3-a"]
    );
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert_eq!(s.errors[0].kind, Kind::BlockAffinity);
    assert_eq!(s.errors[0].field, "metadata.name");

    // A state change is a change; a delete removes it.
    t.block_affinity(Event::Apply(block("node-3-a", "node-3", "pendingDeletion")));
    let s = t.take_snapshot().expect("changed");
    assert_eq!(
        s.state.block_affinities["node-3-a"].state,
        "pendingDeletion"
    );
    t.block_affinity(Event::Delete(block(
        "node-3-a",
        "node-3",
        "pendingDeletion",
    )));
    assert!(t.take_snapshot().unwrap().state.block_affinities.is_empty());
}

#[test]
fn access_lists_what_the_watchers_request() {
    let plain: Vec<(String, String)> = access(false)
        .into_iter()
        .map(|a| {
            assert_eq!(a.verbs, ["list", "watch"]);
            (a.group, a.resource)
        })
        .collect();
    let expected = [
        ("", "services"),
        ("discovery.k8s.io", "endpointslices"),
        ("", "nodes"),
        ("networking.k8s.io", "servicecidrs"),
    ]
    .map(|(g, r)| (g.to_string(), r.to_string()));
    assert_eq!(plain, expected);
    let calico = access(true);
    assert_eq!(calico.len(), 5);
    assert_eq!(calico[4].group, "crd.projectcalico.org");
    assert_eq!(calico[4].resource, "blockaffinities");
}

fn service_cidr(name: &str, cidrs: &[&str]) -> k8s_openapi::api::networking::v1::ServiceCIDR {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"cidrs": cidrs}})).unwrap()
}

#[test]
fn service_cidrs_gate_the_first_snapshot_until_they_list_or_fail() {
    // A cluster with the API: the first snapshot waits for their list and
    // holds them; changes follow.
    let mut t = Tracker::new(start()).with_service_cidrs();
    list_all(&mut t, vec![], vec![]);
    assert_eq!(t.take_snapshot(), None, "ServiceCIDRs have not listed");
    t.service_cidr(Event::Init);
    t.service_cidr(Event::InitApply(service_cidr(
        "kubernetes",
        &["10.43.0.0/16"],
    )));
    t.service_cidr(Event::InitDone);
    let s = t.take_snapshot().expect("listed");
    assert_eq!(s.state.service_cidr_prefixes(), ["10.43.0.0/16"]);
    t.service_cidr(Event::Apply(service_cidr("extra", &["10.96.0.0/20"])));
    let s = t.take_snapshot().expect("changed");
    assert_eq!(
        s.state.service_cidr_prefixes(),
        ["10.43.0.0/16", "10.96.0.0/20"]
    );
    t.service_cidr(Event::Delete(service_cidr("kubernetes", &["10.43.0.0/16"])));
    let s = t.take_snapshot().expect("changed");
    assert_eq!(s.state.service_cidr_prefixes(), ["10.96.0.0/20"]);

    // A cluster without the API (404) or without the permission (403):
    // the first failure counts as "none", the Services are handed out.
    let mut t = Tracker::new(start()).with_service_cidrs();
    list_all(&mut t, vec![service("web", 80)], vec![]);
    assert_eq!(t.take_snapshot(), None);
    assert!(t.failed(Kind::ServiceCidr), "the first failure");
    let s = t.take_snapshot().expect("ready without ServiceCIDRs");
    assert!(s.state.service_cidrs.is_empty());
    assert_eq!(s.state.services.len(), 1);
    assert!(!t.failed(Kind::ServiceCidr), "only the first one counts");
    assert_eq!(
        t.take_snapshot(),
        None,
        "a retry failing again changes nothing"
    );
    // When the watcher's retry gets through, they come in.
    t.service_cidr(Event::Init);
    t.service_cidr(Event::InitApply(service_cidr(
        "kubernetes",
        &["10.43.0.0/16"],
    )));
    t.service_cidr(Event::InitDone);
    let s = t.take_snapshot().expect("listed at last");
    assert_eq!(s.state.service_cidr_prefixes(), ["10.43.0.0/16"]);

    // A required kind failing does not make the tracker ready.
    let mut t = Tracker::new(start());
    t.service(Event::Init);
    t.service(Event::InitDone);
    t.endpoint_slice(Event::Init);
    t.endpoint_slice(Event::InitDone);
    t.failed(Kind::Node);
    assert_eq!(t.take_snapshot(), None, "Nodes must list");
}

/// The store keeps its Service → slices index in step with its slices:
/// through applies, a slice that moves to another Service, deletes and a
/// re-list that drops one.
#[test]
fn the_slice_index_follows_every_change_of_the_slices() {
    let mut t = Tracker::new(start());
    list_all(
        &mut t,
        vec![service("web", 80), service("api", 80)],
        vec![
            slice_of("web-1", "web", "10.42.1.5"),
            slice_of("web-2", "web", "10.42.1.6"),
        ],
    );
    let names = |t: &Tracker, svc: &str| -> Vec<String> {
        t.slice_index()
            .slices_of(t.state(), &key(svc))
            .iter()
            .map(|s| s.key.name.to_string())
            .collect()
    };
    assert_eq!(names(&t, "web"), ["web-1", "web-2"]);
    t.endpoint_slice(Event::Apply(slice_of("web-2", "api", "10.42.1.6")));
    assert_eq!(names(&t, "web"), ["web-1"]);
    assert_eq!(names(&t, "api"), ["web-2"]);
    t.endpoint_slice(Event::Delete(slice_of("web-1", "web", "10.42.1.5")));
    assert!(names(&t, "web").is_empty());
    t.endpoint_slice(Event::Init);
    t.endpoint_slice(Event::InitApply(slice_of("api-9", "api", "10.42.1.9")));
    t.endpoint_slice(Event::InitDone);
    assert_eq!(names(&t, "api"), ["api-9"]);
    assert_eq!(
        *t.slice_index(),
        crate::SliceIndex::build(t.state()),
        "the same as built afresh"
    );
}

#[test]
fn the_slices_share_one_copy_of_each_node_and_zone_name() {
    let on_node = |name: &str, ip: &str| {
        let mut s = slice(name, ip, None);
        let e = &mut s.endpoints.as_mut().unwrap()[0];
        e.node_name = Some("node-1".into());
        e.zone = Some("zone-a".into());
        s
    };
    let mut t = Tracker::new(start());
    list_all(
        &mut t,
        vec![service("web", 80)],
        vec![on_node("web-1", "10.42.1.5")],
    );
    // A slice added by a watch event, after the list.
    t.endpoint_slice(Event::Apply(on_node("web-2", "10.42.1.6")));
    let slices = &t.state().endpoint_slices;
    let names = |name: &str| {
        let e = &slices[&key(name)].endpoints[0];
        (e.node_name.clone().unwrap(), e.zone.clone().unwrap())
    };
    let ((node1, zone1), (node2, zone2)) = (names("web-1"), names("web-2"));
    assert_eq!((&*node2, &*zone2), ("node-1", "zone-a"));
    assert!(std::sync::Arc::ptr_eq(&node1, &node2), "one node-1");
    assert!(std::sync::Arc::ptr_eq(&zone1, &zone2), "one zone-a");
}
