//! The API server stand-in against the real kube-rs client: list, watch,
//! 410 re-lists, restarts, bookmarks, and binding inside a namespace.
//! Only `stand_in_inside_a_network_namespace` needs root.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource as _, ResourceExt};
use nftopo_integration::apiserver::{ApiServer, Restart};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn local() -> ApiServer {
    ApiServer::start("127.0.0.1:0".parse().unwrap()).expect("start stand-in")
}

async fn client(server: &ApiServer) -> Client {
    let kc = Kubeconfig::from_yaml(&server.kubeconfig_yaml()).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

fn service(ns: &str, name: &str, port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
           "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "type": "ClusterIP",
                    "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": 8080}]}})
}

fn slice(ns: &str, name: &str, svc: &str, addrs: &[&str]) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
           "addressType": "IPv4",
           "endpoints": addrs.iter().map(|a| json!({"addresses": [a], "conditions": {"ready": true}})).collect::<Vec<_>>(),
           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}

fn node(name: &str, zone: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
           "spec": {"podCIDR": "10.244.0.0/24"}})
}

/// A reflector fed by `watcher(...).default_backoff()`, and a log of what
/// the watcher yielded ("Init", "InitApply x", "InitDone", "Apply x",
/// "Delete x", "Err ...").
struct Watched<K: kube::Resource + Clone + 'static>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store: Store<K>,
    log: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

fn watch<K>(api: Api<K>, cfg: watcher::Config) -> Watched<K>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Default,
{
    let (store, writer) = reflector::store();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let stream = reflector::reflector(writer, watcher(api, cfg).default_backoff());
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let line = match ev {
                Ok(watcher::Event::Init) => "Init".to_string(),
                Ok(watcher::Event::InitApply(o)) => format!("InitApply {}", o.name_any()),
                Ok(watcher::Event::InitDone) => "InitDone".to_string(),
                Ok(watcher::Event::Apply(o)) => format!("Apply {}", o.name_any()),
                Ok(watcher::Event::Delete(o)) => format!("Delete {}", o.name_any()),
                Err(e) => format!("Err {e}"),
            };
            l.lock().unwrap().push(line);
        }
    });
    Watched { store, log, task }
}

impl<K: kube::Resource + Clone + 'static> Watched<K>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    /// Waits (up to 15 s) until the store, rendered by `show` and sorted,
    /// equals `want`.
    async fn wait_for(&self, show: impl Fn(&K) -> String, want: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut got: Vec<String> = self.store.state().iter().map(|o| show(o)).collect();
            got.sort();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "store never reached {want:?}; last {got:?}; watcher log {:?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl<K: kube::Resource + Clone + 'static> Drop for Watched<K>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn show_svc(s: &Service) -> String {
    let ports: Vec<String> = s
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|p| p.iter().map(|p| p.port.to_string()).collect())
        .unwrap_or_default();
    format!(
        "{}/{}:{}",
        s.namespace().unwrap_or_default(),
        s.name_any(),
        ports.join(",")
    )
}

fn show_slice(s: &EndpointSlice) -> String {
    let addrs: Vec<String> = s
        .endpoints
        .iter()
        .flatten()
        .flat_map(|e| e.addresses.clone())
        .collect();
    format!(
        "{}/{}:{}",
        s.namespace().unwrap_or_default(),
        s.name_any(),
        addrs.join(",")
    )
}

fn show_node(n: &Node) -> String {
    let zone = n
        .labels()
        .get("topology.kubernetes.io/zone")
        .cloned()
        .unwrap_or_default();
    format!("{}:{zone}", n.name_any())
}

fn lists(server: &ApiServer, path: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.starts_with(&format!("GET {path}?")) && !r.contains("watch="))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_added_modified_deleted() {
    let server = local();
    server.apply(service("default", "a", 80)).unwrap();
    server.apply(service("kube-system", "b", 53)).unwrap();
    let c = client(&server).await;
    let w = watch(Api::<Service>::all(c.clone()), watcher::Config::default());
    w.wait_for(show_svc, &["default/a:80", "kube-system/b:53"])
        .await;

    server.apply(service("default", "c", 443)).unwrap();
    server.apply(service("default", "a", 8080)).unwrap();
    assert!(server.delete("Service", "kube-system", "b").is_some());
    assert!(server.delete("Service", "kube-system", "b").is_none());
    w.wait_for(show_svc, &["default/a:8080", "default/c:443"])
        .await;
    assert_eq!(
        w.log(),
        [
            "Init",
            "InitApply a",
            "InitApply b",
            "InitDone",
            "Apply c",
            "Apply a",
            "Delete b"
        ]
    );

    // Namespaced watch on the same server sees only its namespace.
    let wn = watch(
        Api::<Service>::namespaced(c.clone(), "kube-system"),
        watcher::Config::default(),
    );
    wn.wait_for(show_svc, &[]).await;
    server.apply(service("kube-system", "dns", 53)).unwrap();
    server.apply(service("default", "d", 81)).unwrap();
    wn.wait_for(show_svc, &["kube-system/dns:53"]).await;
    w.wait_for(
        show_svc,
        &[
            "default/a:8080",
            "default/c:443",
            "default/d:81",
            "kube-system/dns:53",
        ],
    )
    .await;

    // resourceVersion and uid as the client sees them.
    let a = Api::<Service>::namespaced(c, "default")
        .get("a")
        .await
        .unwrap();
    let stored = server.get("Service", "default", "a").unwrap();
    assert_eq!(
        a.meta().resource_version.as_deref(),
        stored["metadata"]["resourceVersion"].as_str()
    );
    assert_eq!(a.meta().uid.as_deref(), stored["metadata"]["uid"].as_str());
    assert!(
        lists(&server, "/api/v1/services") == 1,
        "{:?}",
        server.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpointslices_and_nodes() {
    let server = local();
    server
        .apply(slice("default", "web-1", "web", &["10.244.1.5"]))
        .unwrap();
    server.apply(node("node-2", "zone-a")).unwrap();
    let c = client(&server).await;
    let ws = watch(
        Api::<EndpointSlice>::all(c.clone()),
        watcher::Config::default(),
    );
    let wsn = watch(
        Api::<EndpointSlice>::namespaced(c.clone(), "default"),
        watcher::Config::default(),
    );
    let wn = watch(Api::<Node>::all(c.clone()), watcher::Config::default());
    ws.wait_for(show_slice, &["default/web-1:10.244.1.5"]).await;
    wn.wait_for(show_node, &["node-2:zone-a"]).await;

    server
        .apply(slice(
            "default",
            "web-1",
            "web",
            &["10.244.1.5", "10.244.2.7"],
        ))
        .unwrap();
    server
        .apply(slice("other", "db-1", "db", &["10.244.3.9"]))
        .unwrap();
    server.apply(node("node-3", "zone-b")).unwrap();
    server.apply(node("node-2", "zone-b")).unwrap();
    ws.wait_for(
        show_slice,
        &[
            "default/web-1:10.244.1.5,10.244.2.7",
            "other/db-1:10.244.3.9",
        ],
    )
    .await;
    wsn.wait_for(show_slice, &["default/web-1:10.244.1.5,10.244.2.7"])
        .await;
    wn.wait_for(show_node, &["node-2:zone-b", "node-3:zone-b"])
        .await;

    server.delete("EndpointSlice", "default", "web-1").unwrap();
    server.delete("Node", "", "node-3").unwrap();
    ws.wait_for(show_slice, &["other/db-1:10.244.3.9"]).await;
    wsn.wait_for(show_slice, &[]).await;
    wn.wait_for(show_node, &["node-2:zone-b"]).await;
    assert_eq!(
        wn.log(),
        [
            "Init",
            "InitApply node-2",
            "InitDone",
            "Apply node-3",
            "Apply node-2",
            "Delete node-3"
        ]
    );

    // A label selector that stops matching turns MODIFIED into DELETED.
    let sel = watcher::Config::default().labels("kubernetes.io/service-name=db");
    let wsel = watch(Api::<EndpointSlice>::all(c), sel);
    wsel.wait_for(show_slice, &["other/db-1:10.244.3.9"]).await;
    server
        .apply(slice("other", "db-1", "db2", &["10.244.3.9"]))
        .unwrap();
    wsel.wait_for(show_slice, &[]).await;
    server
        .apply(slice("other", "db-1", "db", &["10.244.3.10"]))
        .unwrap();
    wsel.wait_for(show_slice, &["other/db-1:10.244.3.10"]).await;
    assert_eq!(
        wsel.log(),
        [
            "Init",
            "InitApply db-1",
            "InitDone",
            "Delete db-1",
            "Apply db-1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relists_after_compact_and_dropped_watches() {
    let server = local();
    server.apply(service("default", "a", 80)).unwrap();
    server.apply(service("default", "b", 81)).unwrap();
    let c = client(&server).await;
    let w = watch(Api::<Service>::all(c), watcher::Config::default());
    w.wait_for(show_svc, &["default/a:80", "default/b:81"])
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.open_watches() == 0 {
        assert!(Instant::now() < deadline, "no watch opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Every response now waits, so the reconnecting watch is answered
    // only after the changes and the compaction below: its version is gone.
    server.set_delay(Duration::from_millis(400));
    assert_eq!(server.drop_watches(), 1);
    server.apply(service("default", "c", 82)).unwrap();
    server.delete("Service", "default", "a").unwrap();
    server.apply(service("default", "b", 8081)).unwrap();
    server.compact();
    w.wait_for(show_svc, &["default/b:8081", "default/c:82"])
        .await;
    server.set_delay(Duration::ZERO);

    let log = w.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("Err") && l.contains("too old resource version")),
        "no 410 seen: {log:?}"
    );
    // Re-listed: a second Init with the new state, and no Delete event
    // (the reflector replaced its store).
    let second = log.iter().rposition(|l| l == "Init").unwrap();
    assert!(second > 0, "{log:?}");
    assert_eq!(
        log[second..]
            .iter()
            .filter(|l| !l.starts_with("Err"))
            .collect::<Vec<_>>(),
        ["Init", "InitApply b", "InitApply c", "InitDone"]
    );
    assert_eq!(
        lists(&server, "/api/v1/services"),
        2,
        "{:?}",
        server.requests()
    );

    // Watching again afterwards.
    server.apply(service("default", "d", 83)).unwrap();
    w.wait_for(
        show_svc,
        &["default/b:8081", "default/c:82", "default/d:83"],
    )
    .await;
    assert_eq!(w.log().last().unwrap(), "Apply d");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_restarts() {
    let server = local();
    let addr = server.addr();
    server.apply(node("node-2", "zone-a")).unwrap();
    server.apply(node("node-3", "zone-a")).unwrap();
    let c = client(&server).await;
    let w = watch(Api::<Node>::all(c), watcher::Config::default());
    w.wait_for(show_node, &["node-2:zone-a", "node-3:zone-a"])
        .await;

    // Down mid-churn; changes made meanwhile are kept; resumes its watch.
    server.stop();
    assert!(!server.is_running());
    server.apply(node("node-3", "zone-b")).unwrap();
    server.apply(node("node-4", "zone-b")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart(Restart::KeepAll).unwrap();
    assert_eq!(server.addr(), addr);
    w.wait_for(
        show_node,
        &["node-2:zone-a", "node-3:zone-b", "node-4:zone-b"],
    )
    .await;
    assert_eq!(
        lists(&server, "/api/v1/nodes"),
        1,
        "resumed, no re-list: {:?}",
        server.requests()
    );

    // A restart that loses the watch history: 410, re-list, same state.
    server.delete("Node", "", "node-2").unwrap();
    server.restart(Restart::KeepObjects).unwrap();
    w.wait_for(show_node, &["node-3:zone-b", "node-4:zone-b"])
        .await;
    server.apply(node("node-5", "zone-c")).unwrap();
    w.wait_for(
        show_node,
        &["node-3:zone-b", "node-4:zone-b", "node-5:zone-c"],
    )
    .await;

    // A restart that loses everything: the client ends up with nothing.
    server.restart(Restart::Empty).unwrap();
    w.wait_for(show_node, &[]).await;
    server.apply(node("node-6", "zone-a")).unwrap();
    w.wait_for(show_node, &["node-6:zone-a"]).await;
    assert!(
        lists(&server, "/api/v1/nodes") >= 2,
        "{:?}",
        server.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_and_streaming_lists() {
    let server = local();
    server.set_bookmark_interval(Duration::from_millis(50));
    server.apply(service("default", "a", 80)).unwrap();
    let c = client(&server).await;
    let w = watch(Api::<Service>::all(c.clone()), watcher::Config::default());
    let ws = watch(
        Api::<Service>::all(c),
        watcher::Config::default().streaming_lists(),
    );
    w.wait_for(show_svc, &["default/a:80"]).await;
    ws.wait_for(show_svc, &["default/a:80"]).await;
    for port in 1..=20u16 {
        server.apply(service("default", "a", port)).unwrap();
        server
            .apply(service("other", "churn", 1000 + port))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.delete("Service", "other", "churn").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Bookmarks moved the version along: a dropped watch resumes from
    // after the last change and needs no re-list even after a compaction.
    server.compact();
    server.drop_watches();
    server.apply(service("default", "b", 90)).unwrap();
    w.wait_for(show_svc, &["default/a:20", "default/b:90"])
        .await;
    ws.wait_for(show_svc, &["default/a:20", "default/b:90"])
        .await;
    for l in [w.log(), ws.log()] {
        assert_eq!(l.iter().filter(|l| *l == "Init").count(), 1, "{l:?}");
        assert!(
            l.iter().all(|l| !l.starts_with("Err")
                || l.contains("error reading a body")
                || l.contains("connection")),
            "{l:?}"
        );
    }
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .any(|r| r.contains("watch=true") && r.contains("allowWatchBookmarks=true")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter().any(|r| r.contains("sendInitialEvents=true")),
        "{reqs:?}"
    );
    assert_eq!(lists(&server, "/api/v1/services"), 1, "{reqs:?}");
}

/// One raw HTTP/1.1 GET; the body (de-chunked) and status code.
fn raw_get(addr: std::net::SocketAddr, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let code = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut chunked = false;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        chunked |= h
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked");
    }
    let mut body = String::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            body.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
    } else {
        r.read_to_string(&mut body).unwrap();
    }
    (code, body)
}

fn events(body: &str) -> Vec<(String, String)> {
    body.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let t = v["type"].as_str().unwrap().to_string();
            let o = &v["object"];
            let what = if t == "ERROR" {
                format!("{}", o["code"])
            } else {
                format!(
                    "{}@{}",
                    o["metadata"]["name"].as_str().unwrap_or(""),
                    o["metadata"]["resourceVersion"].as_str().unwrap()
                )
            };
            (t, what)
        })
        .collect()
}

#[test]
fn raw_protocol() {
    let server = local();
    let a = server.addr();
    for i in 0..5 {
        server
            .apply(service("default", &format!("s{i}"), 80))
            .unwrap(); // rv 1..=5
    }
    // Pagination with a consistent snapshot.
    let (code, body) = raw_get(a, "/api/v1/services?limit=2");
    assert_eq!(code, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["kind"], "ServiceList");
    assert_eq!(page["metadata"]["resourceVersion"], "5");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cont = page["metadata"]["continue"].as_str().unwrap().to_string();
    server.delete("Service", "default", "s4").unwrap(); // rv 6
    let (_, body) = raw_get(a, &format!("/api/v1/services?limit=10&continue={cont}"));
    let page: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["s2", "s3", "s4"]);
    assert_eq!(page["metadata"]["resourceVersion"], "5");
    assert!(page["metadata"].get("continue").is_none());
    // A continue token from before a compaction: HTTP 410 Expired.
    let (_, body) = raw_get(a, "/api/v1/services?limit=1");
    let cont = serde_json::from_str::<Value>(&body).unwrap()["metadata"]["continue"]
        .as_str()
        .unwrap()
        .to_string();
    server.apply(service("default", "s0", 81)).unwrap(); // rv 7
    server.compact();
    let (code, body) = raw_get(a, &format!("/api/v1/services?limit=1&continue={cont}"));
    assert_eq!(code, 410);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "Expired"
    );

    // Watch from before the compaction: 200 and one ERROR event with 410.
    let (code, body) = raw_get(
        a,
        "/api/v1/services?watch=1&resourceVersion=5&timeoutSeconds=1",
    );
    assert_eq!(code, 200);
    assert_eq!(events(&body), [("ERROR".to_string(), "410".to_string())]);
    // From the compaction point: the live changes, then a clean end at the timeout.
    server.apply(service("default", "s1", 82)).unwrap(); // rv 8
    server.delete("Service", "default", "s2").unwrap(); // rv 9
    server.apply(service("other", "x", 82)).unwrap(); // rv 10
    let t0 = Instant::now();
    let (_, body) = raw_get(
        a,
        "/api/v1/namespaces/default/services?watch=true&resourceVersion=7&timeoutSeconds=1",
    );
    assert!(t0.elapsed() >= Duration::from_millis(900));
    let ev = |t: &str, w: &str| (t.to_string(), w.to_string());
    assert_eq!(
        events(&body),
        [ev("MODIFIED", "s1@8"), ev("DELETED", "s2@9")]
    );
    // Bookmarks when asked, with the latest version.
    server.set_bookmark_interval(Duration::from_millis(300));
    let (_, body) = raw_get(
        a,
        "/api/v1/services?watch=1&resourceVersion=10&allowWatchBookmarks=true&timeoutSeconds=1",
    );
    let evs = events(&body);
    assert!(
        evs.len() >= 2 && evs.iter().all(|e| *e == ev("BOOKMARK", "@10")),
        "{evs:?}"
    );
    // No version: the current objects as ADDED first.
    let (_, body) = raw_get(
        a,
        "/api/v1/namespaces/other/services?watch=1&timeoutSeconds=1",
    );
    assert_eq!(events(&body), [ev("ADDED", "x@10")]);
    // Selectors, discovery, version, errors.
    let (_, body) = raw_get(
        a,
        "/api/v1/services?labelSelector=app%20in%20(s0%2Cs3)%2C!nope",
    );
    let names: Vec<String> = serde_json::from_str::<Value>(&body).unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["s0", "s3"]);
    let (_, body) = raw_get(
        a,
        "/api/v1/services?fieldSelector=metadata.namespace%3Dother",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["items"][0]["metadata"]["name"],
        "x"
    );
    assert_eq!(raw_get(a, "/version").0, 200);
    assert_eq!(raw_get(a, "/apis/discovery.k8s.io/v1").0, 200);
    assert_eq!(
        raw_get(a, "/api/v1/namespaces/default/services/nope").0,
        404
    );
    assert_eq!(raw_get(a, "/api/v1/pods").0, 404);
    assert_eq!(raw_get(a, "/api/v1/namespaces/x/nodes").0, 404);
}

/// kube-proxy's selector: Services (and slices) handed to another proxy,
/// or headless, are not listed, and leave or join a watch as their labels
/// change.
const PROXIED: &str = "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

fn labelled(name: &str, port: u16, labels: Value) -> Value {
    let mut s = service("default", name, port);
    s["metadata"]["labels"] = labels;
    s
}

#[test]
fn existence_selectors_list_and_watch_as_the_real_api_server() {
    let server = local();
    let a = server.addr();
    // Watch from a real version (0 would mean "the current state first").
    let from = server.apply(node("node-1", "zone-a")).unwrap();
    let other = json!({"service.kubernetes.io/service-proxy-name": "other"});
    server
        .apply(labelled("a", 80, json!({"app": "a"})))
        .unwrap(); // ADDED
    let gained = server.apply(labelled("a", 81, other.clone())).unwrap(); // DELETED
    server.apply(labelled("a", 82, json!({}))).unwrap(); // ADDED again
    server
        .apply(labelled(
            "b",
            80,
            json!({"service.kubernetes.io/headless": ""}),
        ))
        .unwrap(); // never seen
    server
        .apply(labelled(
            "b",
            81,
            json!({"service.kubernetes.io/headless": "x"}),
        ))
        .unwrap(); // still not seen
    server.delete("Service", "default", "b").unwrap(); // not seen either
    server.apply(labelled("c", 80, other)).unwrap(); // not listed

    let selector = PROXIED
        .replace('!', "%21")
        .replace(',', "%2C")
        .replace('/', "%2F");
    let (_, body) = raw_get(a, &format!("/api/v1/services?labelSelector={selector}"));
    let names: Vec<String> = serde_json::from_str::<Value>(&body).unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["a"],
        "a list leaves out objects carrying either key"
    );

    let (_, body) = raw_get(
        a,
        &format!("/api/v1/services?watch=1&resourceVersion={from}&labelSelector={selector}&timeoutSeconds=1"),
    );
    let ev = |t: &str, w: String| (t.to_string(), w);
    assert_eq!(
        events(&body),
        [
            ev("ADDED", format!("a@{}", from + 1)),
            ev("DELETED", format!("a@{gained}")),
            ev("ADDED", format!("a@{}", gained + 1)),
        ],
        "gaining a label the selector excludes is DELETED, losing it ADDED; \
         objects that never matched are never sent"
    );
    // The real watch cache sends the object as it was while it matched,
    // at the version of the change that made it stop matching.
    let deleted: Value = serde_json::from_str(body.lines().nth(1).unwrap()).unwrap();
    let object = &deleted["object"];
    assert_eq!(object["metadata"]["labels"], json!({"app": "a"}));
    assert_eq!(object["spec"]["ports"][0]["port"], 80);
    assert_eq!(object["metadata"]["resourceVersion"], gained.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_with_kube_proxys_selector_drops_and_regains_a_relabelled_service() {
    let server = local();
    server.apply(service("default", "web", 80)).unwrap();
    server
        .apply(labelled(
            "mesh",
            80,
            json!({"service.kubernetes.io/service-proxy-name": "mesh"}),
        ))
        .unwrap();
    let c = client(&server).await;
    let w = watch(
        Api::<Service>::all(c),
        watcher::Config::default().labels(PROXIED),
    );
    w.wait_for(show_svc, &["default/web:80"]).await;
    server
        .apply(labelled(
            "web",
            81,
            json!({"service.kubernetes.io/service-proxy-name": "mesh"}),
        ))
        .unwrap();
    w.wait_for(show_svc, &[]).await;
    server
        .apply(labelled("mesh", 82, json!({"app": "mesh"})))
        .unwrap();
    w.wait_for(show_svc, &["default/mesh:82"]).await;
    assert_eq!(
        w.log(),
        [
            "Init",
            "InitApply web",
            "InitDone",
            "Delete web",
            "Apply mesh"
        ]
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| !r.contains("/services?") || r.contains("labelSelector=")),
        "every list and watch carried the selector: {:?}",
        server.requests()
    );
}

#[test]
fn stand_in_inside_a_network_namespace() {
    nftopo_integration::require_root();
    let ns =
        nftopo_integration::Netns::create(format!("{}-api", nftopo_integration::unique_prefix()))
            .unwrap();
    let server = ApiServer::start_in_netns(ns.name(), "127.0.0.1:0".parse().unwrap()).unwrap();
    server.apply(service("default", "a", 80)).unwrap();
    let addr = server.addr();
    let name = ns.name().to_string();
    // kube-rs from a thread (and its runtime) inside the namespace.
    let in_ns = move || {
        let f = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let cfg = kube::Config::new(format!("http://{addr}").parse().unwrap());
                let c = Client::try_from(cfg).unwrap();
                let list = Api::<Service>::all(c)
                    .list(&Default::default())
                    .await
                    .unwrap();
                list.items.iter().map(show_svc).collect::<Vec<_>>()
            })
    };
    let got = std::thread::spawn(in_ns.clone()).join().unwrap();
    assert_eq!(got, ["default/a:80"]);
    // Not reachable from the host namespace (nothing there listens on it).
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err());
    // A restart binds in the namespace again.
    server.apply(service("default", "b", 81)).unwrap();
    server.restart(Restart::KeepAll).unwrap();
    let got = std::thread::spawn(in_ns).join().unwrap();
    assert_eq!(got, ["default/a:80", "default/b:81"]);
    drop(server);
}
