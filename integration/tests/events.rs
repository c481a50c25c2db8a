//! Warning Events on Services (issue 17 item 4): the daemon (`nftopo
//! run`, needs root) against the API server stand-in, in a namespace of
//! each test, and kube-rs's Recorder against the stand-in's events
//! endpoints.
//!
//! * an invalid `nftopo.io/topology-keys` annotation gets one Warning
//!   event on its Service and nothing on the others; it stays one (no
//!   count) while the problem stays, nothing more comes once it is fixed,
//!   and the same problem again is the same event with `series.count` 2:
//!   `an_invalid_topology_keys_annotation_gets_one_warning_until_it_is_fixed`
//! * a port another Service serves, and a Service that does not decode:
//!   `a_port_conflict_and_a_malformed_service_get_their_own_reasons`
//! * the stand-in takes what kube-rs's Recorder writes (create, then a
//!   merge patch of the series) and refuses an incomplete event as the
//!   API server does: `the_recorder_creates_then_counts_and_the_stand_in_validates`
//!
//! The witnesses are the stand-in's stored events and request log. "No
//! further event" is checked after syncs the daemon has counted in
//! `/metrics` (the events are written right after the sync that found
//! the problem), and a short settle.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nftopo_integration::apiserver::ApiServer;
use nftopo_integration::daemon::*;
use nftopo_integration::*;
use serde_json::{json, Value};

/// Bound of every wait.
const CONVERGE: Duration = Duration::from_secs(15);
/// A Service's topology keys, as nftopo reads them.
const KEYS: &str = "nftopo.io/topology-keys";

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn ok<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A namespace with the stand-in (seed Nodes, `swansea-city-api` and its
/// slices) and the daemon as node-2. Drops the daemon first.
struct Env {
    daemon: Option<Daemon>,
    api: ApiServer,
    ns: Netns,
    dir: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.daemon = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Env {
    fn new(extra: &[Value]) -> Env {
        let guard = serial();
        require_root();
        let ns = ok(Netns::create(format!("{}-ev", unique_prefix())), "netns");
        let api = ok(
            ApiServer::start_in_netns(ns.name(), "127.0.0.1:0".parse().unwrap()),
            "stand-in",
        );
        let dir = std::env::temp_dir().join(format!("{}-events-test", unique_prefix()));
        ok(std::fs::create_dir_all(&dir), "scratch dir");
        let kubeconfig = dir.join("kubeconfig");
        ok(api.write_kubeconfig(&kubeconfig), "kubeconfig");
        for f in ["nodes.yaml", "svc-plain.yaml", "slices-v1.yaml"] {
            for obj in ok(seed_objects(f), f) {
                ok(api.apply(obj), "apply");
            }
        }
        for obj in extra {
            ok(api.apply(obj.clone()), "apply");
        }
        let daemon = ok(Daemon::start(&ns, &kubeconfig, &[]), "nftopo run");
        Env {
            daemon: Some(daemon),
            api,
            ns,
            dir,
            _serial: guard,
        }
    }

    fn log(&self) -> String {
        let all = self.daemon.as_ref().map(Daemon::log).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The stored events regarding Service `name`.
    fn events(&self, name: &str) -> Vec<Value> {
        (self.api.events().into_iter())
            .filter(|e| e["regarding"]["kind"] == "Service" && e["regarding"]["name"] == name)
            .collect()
    }

    /// Waits until Service `name` has an event with `series.count` (1
    /// without a series) `count`, and returns it; fails on a second
    /// event.
    fn wait_event(&self, name: &str, count: u64, case: &str) -> Value {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let evs = self.events(name);
            assert!(evs.len() <= 1, "{case}: one event, got {evs:#?}");
            if let Some(e) = evs.first() {
                if e["series"]["count"].as_u64().unwrap_or(1) == count {
                    return e.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{case}: no event with count {count} on {name}: {evs:#?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn metrics(&self) -> String {
        let addr: SocketAddr = METRICS_ADDR.parse().unwrap();
        match http_get(self.ns.name(), addr, "/metrics") {
            Ok((200, text)) => text,
            _ => String::new(),
        }
    }

    fn syncs(&self) -> f64 {
        metric_value(
            &self.metrics(),
            "kubeproxy_sync_proxy_rules_duration_seconds_count",
        )
        .unwrap_or(0.0)
    }

    /// Applies `obj` and waits for the sync after it.
    fn apply_and_sync(&self, obj: Value, case: &str) {
        let before = self.syncs();
        ok(self.api.apply(obj), "apply");
        let deadline = Instant::now() + CONVERGE;
        while self.syncs() <= before {
            assert!(Instant::now() < deadline, "{case}: no sync\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `nftopo_service_events_total{result="..."}`.
    fn sent(&self, result: &str) -> f64 {
        let line = format!("nftopo_service_events_total{{result=\"{result}\"}} ");
        (self.metrics().lines())
            .find_map(|l| l.strip_prefix(&line)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Event writes (create or patch) the stand-in received so far.
    fn event_writes(&self) -> usize {
        (self.api.requests().iter())
            .filter(|r| r.contains("/apis/events.k8s.io/") && !r.starts_with("GET"))
            .count()
    }
}

/// A ClusterIP Service `name` at 10.43.0.`host`, with `annotations`,
/// `ports` and `external_ips`.
fn service(name: &str, host: u8, annotations: Value, ports: Value, external_ips: Value) -> Value {
    let ip = format!("10.43.0.{host}");
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default", "annotations": annotations},
           "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                    "externalIPs": external_ips, "ports": ports}})
}

fn port(n: u16) -> Value {
    json!({"name": format!("p{n}"), "port": n, "protocol": "TCP", "targetPort": 8080})
}

fn zoned(keys: &str, ports: &[u16]) -> Value {
    let ports: Vec<Value> = ports.iter().map(|p| port(*p)).collect();
    service("zoned", 60, json!({ KEYS: keys }), json!(ports), json!([]))
}

#[test]
fn an_invalid_topology_keys_annotation_gets_one_warning_until_it_is_fixed() {
    let env = Env::new(&[zoned("*,kubernetes.io/hostname", &[80])]);
    let e = env.wait_event("zoned", 1, "invalid keys");
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["reason"], "InvalidTopologyKeys");
    assert_eq!(e["action"], "IgnoreTopologyKeys");
    let note = e["note"].as_str().unwrap();
    assert!(
        note.contains(KEYS) && note.contains("\"*\" must be the last topology key"),
        "the note names the field and the rule: {note}"
    );
    assert_eq!(e["reportingController"], "nftopo");
    assert_eq!(e["reportingInstance"], "nftopo-node-2");
    assert_eq!(e["metadata"]["namespace"], "default");
    let svc = env.api.get("Service", "default", "zoned").unwrap();
    assert_eq!(
        e["regarding"]["uid"], svc["metadata"]["uid"],
        "kubectl describe finds events by the Service's UID"
    );
    assert_eq!(env.events("swansea-city-api"), Vec::<Value>::new());

    // The problem stays through a change of the Service and a sync: no
    // second event, no count.
    env.apply_and_sync(zoned("*,kubernetes.io/hostname", &[80, 81]), "persist");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.wait_event("zoned", 1, "persisting"), e);
    assert_eq!(env.sent("sent"), 1.0);

    // Fixed: syncs go by, nothing is written.
    let writes = env.event_writes();
    env.apply_and_sync(zoned("kubernetes.io/hostname,*", &[80, 81]), "fixed");
    env.apply_and_sync(zoned("kubernetes.io/hostname,*", &[80]), "fixed, changed");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.event_writes(), writes, "{:?}", env.api.requests());
    assert_eq!(env.wait_event("zoned", 1, "fixed"), e);
    assert_eq!(env.sent("sent"), 1.0);

    // Broken again within minutes: the same event, counted.
    env.apply_and_sync(zoned("*,kubernetes.io/hostname", &[80]), "again");
    let again = env.wait_event("zoned", 2, "broken again");
    assert_eq!(again["metadata"]["name"], e["metadata"]["name"]);
    assert_eq!(again["note"], e["note"]);
    assert_eq!(env.events("swansea-city-api"), Vec::<Value>::new());
}

#[test]
fn a_port_conflict_and_a_malformed_service_get_their_own_reasons() {
    let shared = json!(["192.0.2.10"]);
    let bad_port = json!([{"name": "web", "port": "eighty", "protocol": "TCP"}]);
    let env = Env::new(&[
        service(
            "a-first",
            61,
            json!({}),
            json!([port(80), port(81)]),
            shared.clone(),
        ),
        service(
            "b-second",
            62,
            json!({}),
            json!([port(80), port(81)]),
            shared,
        ),
        service("c-bad", 63, json!({}), bad_port, json!([])),
    ]);
    let conflict = env.wait_event("b-second", 1, "port conflict");
    assert_eq!(conflict["reason"], "PortConflict");
    let note = conflict["note"].as_str().unwrap();
    // Both ports in the one event (kube-rs's Recorder would count a
    // second event of the same reason into the first, note and all).
    for p in [80, 81] {
        let taken = format!("192.0.2.10 tcp/{p} is already served by default/a-first");
        assert!(note.contains(&taken), "{note}");
    }
    let bad = env.wait_event("c-bad", 1, "malformed");
    assert_eq!(bad["reason"], "MalformedObject");
    assert_eq!(bad["action"], "SkipService");
    let note = bad["note"].as_str().unwrap();
    assert!(note.starts_with("spec.ports[0].port: "), "{note}");
    let svc = env.api.get("Service", "default", "c-bad").unwrap();
    assert_eq!(bad["regarding"]["uid"], svc["metadata"]["uid"]);
    for quiet in ["a-first", "swansea-city-api"] {
        assert_eq!(env.events(quiet), Vec::<Value>::new(), "{quiet}");
    }
}

#[test]
fn the_recorder_creates_then_counts_and_the_stand_in_validates() {
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};

    let api = ApiServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = api.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = rt.block_on(async move {
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        let reporter = Reporter {
            controller: "nftopo".into(),
            instance: Some("nftopo-node-2".into()),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some("shop".into()),
            name: Some("web".into()),
            uid: Some("u-1".into()),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "PortConflict".into(),
            note: Some("TCP/80 is already served".into()),
            action: "SkipServicePort".into(),
            secondary: None,
        };
        for _ in 0..2 {
            recorder.publish(&event, &regarding).await.unwrap();
        }
        // What a hand-written client might forget: the API server's
        // rules refuse it.
        let events: kube::Api<K8sEvent> = kube::Api::namespaced(client, "shop");
        let incomplete = K8sEvent {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web.incomplete".into()),
                ..Default::default()
            },
            reason: Some("PortConflict".into()),
            type_: Some("Warning".into()),
            regarding: Some(regarding),
            ..Default::default()
        };
        events
            .create(&Default::default(), &incomplete)
            .await
            .unwrap_err()
    });
    let stored = api.events();
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stored[0]["series"]["count"], 2, "{stored:#?}");
    assert_eq!(stored[0]["note"], "TCP/80 is already served");
    let text = refused.to_string();
    for field in ["eventTime", "reportingController", "action"] {
        assert!(text.contains(field), "{field} in {text}");
    }
    assert!(
        api.requests()
            .iter()
            .any(|r| r.starts_with("PATCH /apis/events.k8s.io/v1/namespaces/shop/events/")),
        "{:?}",
        api.requests()
    );
}
