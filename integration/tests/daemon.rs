//! The daemon (`nftopo run`) against the API server stand-in, on a real
//! kernel (needs root).
//!
//! Each test builds its own seed cluster (node-2, node-3, node-4, five
//! `swansea-city-api` pods, a client on node-2), starts the stand-in
//! inside node-2's namespace on 127.0.0.1, feeds it the seed manifests
//! (YAML converted to JSON values) and runs `nftopo run
//! --hostname-override node-2 --min-sync-period 0s` there as a child
//! process. The witnesses are independent of nftopo: `nft list`, and real
//! connections whose answers name the pod that served them, so the
//! assertions are exact sets of pod IPs. Every wait for convergence is
//! bounded; no assertion is about time.
//!
//! The tests take one lock and run one at a time: each builds a dozen
//! namespaces and processes, and the latency test measures the daemon,
//! not its neighbours.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nftopo_integration::apiserver::{ApiServer, Restart};
use nftopo_integration::daemon::*;
use nftopo_integration::*;
use serde_json::{json, Value};

/// Connections per probe: with five backends the chance that a working
/// random spread misses one is 5 * 0.8^100, about 1e-9.
const CONNS: usize = 100;
/// Bound of every wait for the kernel to follow the stand-in.
const CONVERGE: Duration = Duration::from_secs(10);
/// Bound of the re-list after the stand-in was down (see
/// `stand_in_stopped_mid_churn_keeps_rules_then_relists`): one step of
/// the watchers' backoff past its 30 s cap.
const RELIST_CONVERGE: Duration = Duration::from_secs(40);

/// A second service, added through the stand-in.
const WEB_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 118, 40);
const WEB_PORT: u16 = 8080;

const A: Ipv4Addr = Ipv4Addr::new(10, 42, 187, 66);
const B: Ipv4Addr = Ipv4Addr::new(10, 42, 187, 67);
const C: Ipv4Addr = Ipv4Addr::new(10, 42, 54, 130);
const D: Ipv4Addr = Ipv4Addr::new(10, 42, 54, 131);
const E: Ipv4Addr = Ipv4Addr::new(10, 42, 201, 2);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Unwraps with the harness error's readable message.
fn ok<T, E: Display>(r: std::result::Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn set(ips: &[Ipv4Addr]) -> BTreeSet<Ipv4Addr> {
    ips.iter().copied().collect()
}

/// One test's world. Fields drop in order: the daemon first, then the
/// stand-in, then the namespaces.
struct Env {
    daemon: Option<Daemon>,
    api: ApiServer,
    cluster: SeedCluster,
    dir: PathBuf,
    kubeconfig: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Env {
    /// A seed cluster and a stand-in in node-2 holding the objects of the
    /// given seed manifest files.
    fn new(files: &[&str]) -> Env {
        let guard = serial();
        require_root();
        let cluster = ok(
            SeedCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))),
            "seed cluster",
        );
        let node2 = cluster.node(THIS_NODE).name().to_owned();
        let api = ok(
            ApiServer::start_in_netns(&node2, "127.0.0.1:0".parse().unwrap()),
            "stand-in in node-2",
        );
        let dir = std::env::temp_dir().join(format!("{}-daemon-test", unique_prefix()));
        ok(std::fs::create_dir_all(&dir), "scratch dir");
        let kubeconfig = dir.join("kubeconfig");
        ok(api.write_kubeconfig(&kubeconfig), "kubeconfig");
        let env = Env {
            daemon: None,
            api,
            cluster,
            dir,
            kubeconfig,
            _serial: guard,
        };
        for f in files {
            for obj in ok(seed_objects(f), f) {
                env.apply(obj);
            }
        }
        env
    }

    fn apply(&self, obj: Value) {
        ok(self.api.apply(obj), "stand-in apply");
    }

    fn node2(&self) -> &Netns {
        self.cluster.node(THIS_NODE)
    }

    fn start_daemon(&mut self) {
        self.start_daemon_with(&[]);
    }

    fn start_daemon_with(&mut self, extra: &[&str]) {
        let d = ok(
            Daemon::start(self.node2(), &self.kubeconfig, extra),
            "nftopo run",
        );
        self.daemon = Some(d);
    }

    /// Waits (bounded) until node-2's `proto bird` routes are `want`.
    fn wait_routes(&mut self, want: &[&str], case: &str) {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let out = ok(
                self.node2().ip(&["route", "show", "proto", "bird"]),
                "ip route",
            );
            let mut got: Vec<String> = out
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            got.sort();
            if got == want {
                return;
            }
            if Instant::now() > deadline {
                panic!("{case}: routes {got:#?}, want {want:#?}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("daemon started")
    }

    /// The daemon's last 60 log lines.
    fn log(&self) -> String {
        let all = self.daemon.as_ref().map(Daemon::log).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Fails the test (with the daemon's log) if the daemon has exited.
    fn assert_running(&mut self) {
        if let Some(st) = self.daemon().exited() {
            panic!("nftopo run exited ({st}); log:\n{}", self.log());
        }
    }

    /// The endpoints the kernel holds for `ip:port/tcp`.
    fn kernel(&self, ip: Ipv4Addr, port: u16) -> Option<BTreeSet<Ipv4Addr>> {
        ok(kernel_endpoints(self.node2(), ip, port), "nft list map")
    }

    /// Waits (up to [`CONVERGE`]) until the kernel's map holds exactly
    /// `want` for `ip:port/tcp`; returns how long it took.
    fn wait_kernel(
        &mut self,
        ip: Ipv4Addr,
        port: u16,
        want: &BTreeSet<Ipv4Addr>,
        case: &str,
    ) -> Duration {
        self.wait_kernel_within(CONVERGE, ip, port, want, case)
    }

    /// [`Env::wait_kernel`] with its own bound.
    fn wait_kernel_within(
        &mut self,
        limit: Duration,
        ip: Ipv4Addr,
        port: u16,
        want: &BTreeSet<Ipv4Addr>,
        case: &str,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let got = self.kernel(ip, port);
            if got.as_ref() == Some(want) {
                return start.elapsed();
            }
            if start.elapsed() > limit {
                let requests = self.api.requests();
                let recent = &requests[requests.len().saturating_sub(30)..];
                panic!(
                    "{case}: the kernel never held {want:?} for {ip}:{port} within {limit:?}; \
                     last {got:?}; last stand-in requests {recent:?}; daemon log:\n{}",
                    self.log()
                );
            }
            self.assert_running();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `swansea-city-api` (10.43.118.32:80) converges to `want`, then
    /// serves exactly `want` from the client pod and from node-2.
    fn expect_api(&mut self, want: &[Ipv4Addr], case: &str) {
        let want = set(want);
        self.wait_kernel(SERVICE_IP, SERVICE_PORT, &want, case);
        self.assert_serves(service_addr(), &want, case);
    }

    /// Every one of CONNS connections from the client pod and from node-2
    /// is answered, by exactly the pods `want` (each at least once).
    fn assert_serves(&self, target: SocketAddrV4, want: &BTreeSet<Ipv4Addr>, case: &str) {
        let from_pod = ok(
            self.cluster.probe_from_pod(CLIENT, target, CONNS, false),
            "probe from client",
        );
        let from_node = ok(
            self.cluster
                .probe_from_node(THIS_NODE, target, CONNS, false),
            "probe from node-2",
        );
        for (path, r) in [
            ("from the client pod", from_pod),
            ("from node-2", from_node),
        ] {
            assert_eq!(r.answered(), *want, "{case}, {target} {path}: {r}");
            assert_eq!(
                r.answered_count(),
                CONNS,
                "{case}, {target} {path}: every connection must be answered: {r}"
            );
        }
    }

    fn has_table(&self) -> bool {
        ok(has_nftopo_table(self.node2()), "nft list tables")
    }

    fn get(&self, addr: &str, path: &str) -> (u16, String) {
        let addr: SocketAddr = addr.parse().unwrap();
        ok(http_get(self.node2().name(), addr, path), "http get")
    }

    /// The stored object (kind, default namespace, name).
    fn stored(&self, kind: &str, name: &str) -> Value {
        self.api
            .get(kind, "default", name)
            .unwrap_or_else(|| panic!("stand-in has no {kind} {name}"))
    }
}

/// The seed slice `name` of `slices-v1.yaml` with only the ready
/// endpoints whose address is in `keep` (not-ready ones always stay).
fn seed_slice(name: &str, keep: &[Ipv4Addr]) -> Value {
    let mut s = ok(seed_objects("slices-v1.yaml"), "slices-v1.yaml")
        .into_iter()
        .find(|o| o["metadata"]["name"] == json!(name))
        .unwrap_or_else(|| panic!("no slice {name} in slices-v1.yaml"));
    let endpoints: Vec<Value> = s["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let ip: Ipv4Addr = e["addresses"][0].as_str().unwrap().parse().unwrap();
            e["conditions"]["ready"] == json!(false) || keep.contains(&ip)
        })
        .cloned()
        .collect();
    s["endpoints"] = endpoints.into();
    s
}

/// `swansea-city-api-q9d4m` (node-3's .131, node-4's .2) keeping `keep`.
fn slice_q9d4m(keep: &[Ipv4Addr]) -> Value {
    seed_slice("swansea-city-api-q9d4m", keep)
}

/// `swansea-city-api-7xk2p` (node-2's .66, .67, the not-ready .68,
/// node-3's .130) keeping `keep` (and .68).
fn slice_7xk2p(keep: &[Ipv4Addr]) -> Value {
    seed_slice("swansea-city-api-7xk2p", keep)
}

fn strip_server_fields(obj: &mut Value) {
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
}

/// A Node from the stand-in with its zone label set to `zone`.
fn node_in_zone(env: &Env, name: &str, zone: &str) -> Value {
    let mut n = env.stored("Node", name);
    strip_server_fields(&mut n);
    n["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!(zone);
    n
}

/// `swansea-city-web`: 10.43.118.40:8080 → port 5000 of node-3's .130
/// and node-4's .2.
fn web_service() -> [Value; 2] {
    [
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "swansea-city-web", "namespace": "default"},
               "spec": {"type": "ClusterIP", "clusterIP": WEB_IP.to_string(), "clusterIPs": [WEB_IP.to_string()],
                        "ports": [{"port": WEB_PORT, "protocol": "TCP", "targetPort": 5000}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "swansea-city-web-1", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "swansea-city-web"}},
               "addressType": "IPv4",
               "ports": [{"name": "", "port": 5000, "protocol": "TCP"}],
               "endpoints": [
                   {"addresses": ["10.42.54.130"], "conditions": {"ready": true}, "nodeName": "node-3"},
                   {"addresses": ["10.42.201.2"], "conditions": {"ready": true}, "nodeName": "node-4"}]}),
    ]
}

const SEED: [&str; 3] = ["nodes.yaml", "svc-plain.yaml", "slices-v1.yaml"];

/// Seed cluster with all three kinds in the stand-in and the daemon
/// running and converged on the five pods.
fn running() -> Env {
    let mut env = Env::new(&SEED);
    env.start_daemon();
    env.wait_kernel(SERVICE_IP, SERVICE_PORT, &backends(), "first sync");
    env
}

#[test]
fn nothing_is_programmed_before_all_three_kinds_have_listed() {
    let mut env = Env::new(&SEED);
    // Every response (lists and watch starts) waits 3 s: the daemon is
    // connected but has no complete list yet.
    env.api.set_delay(Duration::from_secs(3));
    env.start_daemon();
    let until = Instant::now() + Duration::from_millis(2500);
    let mut checks = 0;
    while Instant::now() < until {
        env.assert_running();
        assert!(
            !env.has_table(),
            "nftopo programmed the kernel before its lists completed; requests {:?}; log:\n{}",
            env.api.requests(),
            env.log()
        );
        checks += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        checks >= 10,
        "only {checks} checks while the lists were delayed"
    );
    let lists = |kind: &str| {
        env.api
            .requests()
            .iter()
            .filter(|r| r.contains(kind) && !r.contains("watch="))
            .count()
    };
    assert!(
        lists("/services") >= 1 && lists("/endpointslices") >= 1 && lists("/nodes") >= 1,
        "the daemon should be waiting on its three lists: {:?}",
        env.api.requests()
    );
    env.api.set_delay(Duration::ZERO);
    env.expect_api(&[A, B, C, D, E], "after the lists completed");
}

#[test]
fn follows_new_services_removed_endpoints_and_node_labels() {
    let mut env = running();
    env.assert_serves(service_addr(), &backends(), "seed");

    // A Service added through the stand-in becomes reachable.
    for obj in web_service() {
        env.apply(obj);
    }
    let web = SocketAddrV4::new(WEB_IP, WEB_PORT);
    env.wait_kernel(WEB_IP, WEB_PORT, &set(&[C, E]), "new service");
    env.assert_serves(web, &set(&[C, E]), "new service");

    // An endpoint removed from its slice is no longer chosen.
    let s = slice_q9d4m(&[D]);
    env.apply(s);
    env.expect_api(&[A, B, C, D], "node-4's pod removed from the slice");
    let s = slice_7xk2p(&[A, C]);
    env.apply(s);
    env.expect_api(&[A, C, D], "node-2's .67 removed from the slice");
    let s = slice_7xk2p(&[A, B, C]);
    env.apply(s);
    let s = slice_q9d4m(&[D, E]);
    env.apply(s);
    env.expect_api(&[A, B, C, D, E], "both restored");

    // Zone topology (the annotation): node-2 and node-3 share eu-west-2a.
    let mut svc = env.stored("Service", "swansea-city-api");
    strip_server_fields(&mut svc);
    svc["metadata"]["annotations"] =
        json!({"nftopo.io/topology-keys": "topology.kubernetes.io/zone"});
    env.apply(svc);
    env.expect_api(&[A, B, C, D], "zone topology");
    // node-3 leaves node-2's zone: its pods go.
    let n = node_in_zone(&env, "node-3", "eu-west-2b");
    env.apply(n);
    env.expect_api(&[A, B], "node-3 moved to eu-west-2b");
    // node-4 joins it: its pod comes.
    let n = node_in_zone(&env, "node-4", "eu-west-2a");
    env.apply(n);
    env.expect_api(&[A, B, E], "node-4 moved to eu-west-2a");
    // node-2 itself moves to eu-west-2b: now node-3's pods are its zone.
    let n = node_in_zone(&env, "node-2", "eu-west-2b");
    env.apply(n);
    env.expect_api(&[A, B, C, D], "node-2 moved to eu-west-2b");
    // The other service has no topology and never changed.
    assert_eq!(env.kernel(WEB_IP, WEB_PORT), Some(set(&[C, E])));
}

/// kube-proxy's informers select
/// `!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless`
/// (cmd/kube-proxy/app/server.go): a Service labelled for another proxy
/// leaves the kernel (the API server sends DELETED for it), and comes back
/// when the label goes.
#[test]
fn a_service_handed_to_another_proxy_leaves_the_kernel_and_comes_back() {
    let mut env = running();
    for obj in web_service() {
        env.apply(obj);
    }
    env.wait_kernel(WEB_IP, WEB_PORT, &set(&[C, E]), "new service");
    let [mut svc, _] = web_service();
    svc["metadata"]["labels"] = json!({"service.kubernetes.io/service-proxy-name": "other-proxy"});
    env.apply(svc);
    env.wait_kernel(
        WEB_IP,
        WEB_PORT,
        &BTreeSet::new(),
        "labelled for another proxy",
    );
    assert_eq!(
        env.kernel(SERVICE_IP, SERVICE_PORT),
        Some(backends()),
        "the other Service is untouched"
    );
    let [svc, _] = web_service();
    env.apply(svc);
    env.wait_kernel(WEB_IP, WEB_PORT, &set(&[C, E]), "label removed");
    env.assert_running();
}

#[test]
fn stand_in_stopped_mid_churn_keeps_rules_then_relists() {
    let mut env = running();
    for obj in web_service() {
        env.apply(obj);
    }
    env.wait_kernel(WEB_IP, WEB_PORT, &set(&[C, E]), "web service");

    // Churn, and stop the stand-in right after the last change without
    // waiting for the daemon: it holds one of the churn's states, each of
    // which keeps at least two pods of the five.
    let states: [&[Ipv4Addr]; 4] = [&[D], &[], &[D, E], &[E]];
    for keep in states {
        let s = slice_q9d4m(keep);
        env.apply(s);
    }
    env.api.stop();
    let stopped = Instant::now();
    assert!(!env.api.is_running());

    // Down: the rules stay and traffic flows.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        env.assert_running();
        assert!(
            env.has_table(),
            "the table went while the stand-in was down"
        );
        let held = env.kernel(SERVICE_IP, SERVICE_PORT).expect("map");
        assert!(
            held.len() >= 3 && held.is_subset(&backends()),
            "while down the kernel holds {held:?}"
        );
        assert_eq!(env.kernel(WEB_IP, WEB_PORT), Some(set(&[C, E])));
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = ok(
        env.cluster
            .probe_from_pod(CLIENT, service_addr(), CONNS, false),
        "probe while down",
    );
    assert_eq!(
        r.answered_count(),
        CONNS,
        "traffic while the stand-in is down: {r}"
    );
    assert!(r.answered().is_subset(&backends()), "{r}");

    // Changes made while it is down: node-2's pods leave, the web service
    // is deleted (a deletion only a re-list can reveal), a third slice
    // state for node-3/4.
    let s = slice_7xk2p(&[C]);
    env.apply(s);
    let s = slice_q9d4m(&[D, E]);
    env.apply(s);
    assert!(env
        .api
        .delete("Service", "default", "swansea-city-web")
        .is_some());
    assert!(env
        .api
        .delete("EndpointSlice", "default", "swansea-city-web-1")
        .is_some());

    // Restarted without history: the daemon's watches get 410 and
    // re-list.
    //
    // The watchers retry every 0.25-0.5 s during the outage and at once
    // after the 410 (api-watch's OutageBackoff); the time is printed
    // (README gives 10 runs; kube-rs's default took 3.6-7.2 s), only
    // correctness is asserted.
    let down = stopped.elapsed();
    ok(env.api.restart(Restart::KeepObjects), "restart");
    let took = env.wait_kernel_within(
        RELIST_CONVERGE,
        SERVICE_IP,
        SERVICE_PORT,
        &set(&[C, D, E]),
        "after the restart",
    );
    eprintln!(
        "stand-in down ~{:.1} s, restarted (KeepObjects, 410): kernel matched after {:.2} s",
        down.as_secs_f64(),
        took.as_secs_f64()
    );
    env.assert_serves(service_addr(), &set(&[C, D, E]), "after the restart");
    env.wait_kernel(
        WEB_IP,
        WEB_PORT,
        &BTreeSet::new(),
        "web service deleted while down",
    );
    let relisted = env
        .api
        .requests()
        .iter()
        .filter(|r| r.contains("/endpointslices") && !r.contains("watch="))
        .count();
    assert!(
        relisted >= 2,
        "no re-list of EndpointSlices: {:?}",
        env.api.requests()
    );
    // Still the same process: it never exited.
    env.assert_running();
}

#[test]
fn changes_arrive_after_dropped_watches_and_compaction() {
    let mut env = running();
    let slice_lists = |env: &Env| {
        env.api
            .requests()
            .iter()
            .filter(|r| r.contains("/endpointslices") && !r.contains("watch="))
            .count()
    };
    let wait_watches = |env: &Env| {
        let deadline = Instant::now() + CONVERGE;
        while env.api.open_watches() < 4 {
            assert!(
                Instant::now() < deadline,
                "watches never reopened: {:?}",
                env.api.requests()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_watches(&env);
    assert_eq!(
        env.api.drop_watches(),
        4,
        "Services, EndpointSlices, Nodes, ServiceCIDRs"
    );
    let s = slice_q9d4m(&[D]);
    env.apply(s);
    env.expect_api(&[A, B, C, D], "after dropped watches");
    wait_watches(&env);

    // Compaction alone: the open watches keep streaming.
    env.api.compact();
    let s = slice_7xk2p(&[B, C]);
    env.apply(s);
    env.expect_api(&[B, C, D], "after compaction");

    // Dropped watches, then a change and compaction before the watches are
    // served again: the resumed watches get 410, the daemon re-lists and
    // sees both changes. The stand-in holds every request for a while, so
    // that the watches cannot resume before the compaction (a watch that
    // has already seen the newest version is not expired by compaction,
    // here as on a real API server: an earlier version of this test raced
    // on that and failed when the daemon was quick).
    let before = slice_lists(&env);
    env.api.set_delay(Duration::from_millis(1500));
    env.api.drop_watches();
    let s = slice_q9d4m(&[D, E]);
    env.apply(s);
    env.api.compact();
    let s = slice_7xk2p(&[A, B, C]);
    env.apply(s);
    env.expect_api(&[A, B, C, D, E], "after compaction and dropped watches");
    env.api.set_delay(Duration::ZERO);
    assert!(
        slice_lists(&env) > before,
        "expected a re-list of EndpointSlices after 410: {:?}",
        env.api.requests()
    );
}

#[test]
fn metrics_and_health() {
    let mut env = running();
    // Answers come once the sync is recorded; the map may be written a
    // moment before.
    let deadline = Instant::now() + CONVERGE;
    let (count, text) = loop {
        let (status, text) = env.get(METRICS_ADDR, "/metrics");
        assert_eq!(status, 200, "/metrics: {text}");
        let count =
            metric_value(&text, "kubeproxy_sync_proxy_rules_duration_seconds_count").unwrap_or(0.0);
        if count > 0.0 {
            break (count, text);
        }
        assert!(Instant::now() < deadline, "no sync counted:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let last = metric_value(&text, "kubeproxy_sync_proxy_rules_last_timestamp_seconds")
        .unwrap_or_else(|| panic!("no kubeproxy_sync_proxy_rules_last_timestamp_seconds:\n{text}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        last > now - 120.0 && last <= now + 1.0,
        "last sync at {last}, now {now}"
    );
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF:\n{text}"
    );

    let (status, body) = env.get(HEALTHZ_ADDR, "/healthz");
    assert_eq!(status, 200, "/healthz after syncing: {body}");
    let (status, body) = env.get(HEALTHZ_ADDR, "/livez");
    assert_eq!(status, 200, "/livez after syncing: {body}");

    // One more EndpointSlice change is one more sync and one more
    // endpoint change counted.
    let changes =
        metric_value(&text, "kubeproxy_sync_proxy_rules_endpoint_changes_total").unwrap_or(0.0);
    let s = slice_q9d4m(&[D]);
    env.apply(s);
    env.wait_kernel(
        SERVICE_IP,
        SERVICE_PORT,
        &set(&[A, B, C, D]),
        "endpoint removed",
    );
    let deadline = Instant::now() + CONVERGE;
    loop {
        let (_, text) = env.get(METRICS_ADDR, "/metrics");
        let n =
            metric_value(&text, "kubeproxy_sync_proxy_rules_duration_seconds_count").unwrap_or(0.0);
        let ch =
            metric_value(&text, "kubeproxy_sync_proxy_rules_endpoint_changes_total").unwrap_or(0.0);
        if n > count && ch > changes {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sync count {count} -> {n}, endpoint changes {changes} -> {ch}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `swansea-city-lb`: a LoadBalancer Service with `externalTrafficPolicy:
/// Local` and health-check node port [`HC_PORT`], served by node-2's two
/// pods (.66, .67).
fn local_lb_service() -> [Value; 2] {
    [
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "swansea-city-lb", "namespace": "default"},
               "spec": {"type": "LoadBalancer", "clusterIP": "10.43.118.50", "clusterIPs": ["10.43.118.50"],
                        "externalTrafficPolicy": "Local", "healthCheckNodePort": HC_PORT,
                        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 5000, "nodePort": 31080}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "swansea-city-lb-1", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "swansea-city-lb"}},
               "addressType": "IPv4",
               "ports": [{"name": "", "port": 5000, "protocol": "TCP"}],
               "endpoints": [
                   {"addresses": [A.to_string()], "conditions": {"ready": true}, "nodeName": "node-2"},
                   {"addresses": [B.to_string()], "conditions": {"ready": true}, "nodeName": "node-2"}]}),
    ]
}

/// `swansea-city-lb`'s health-check node port.
const HC_PORT: u16 = 32111;
/// node-2's InternalIP (its primary address).
const NODE2_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 11, 85);
/// A second local address of node-2, on `lo`, outside the node's subnet.
const NODE2_OTHER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 85);

impl Env {
    /// Waits until the health-check server at `ip` answers 200 for two
    /// local endpoints.
    fn wait_health_check(&mut self, ip: Ipv4Addr, case: &str) {
        let addr = SocketAddr::from((ip, HC_PORT));
        let deadline = Instant::now() + CONVERGE;
        loop {
            let got = http_get(self.node2().name(), addr, "/");
            if let Ok((200, body)) = &got {
                assert!(body.contains("\"localEndpoints\": 2"), "{case}: {body}");
                return;
            }
            self.assert_running();
            if Instant::now() > deadline {
                panic!("{case}: {addr} answers {got:?}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every connection from node-2 to `ip`'s health-check port is
    /// refused: nothing listens there.
    fn assert_no_health_check(&self, ip: Ipv4Addr, case: &str) {
        let target = SocketAddrV4::new(ip, HC_PORT);
        let r = ok(
            self.cluster.probe_from_node(THIS_NODE, target, 5, false),
            "probe from node-2",
        );
        assert_eq!(r.count(REFUSED), 5, "{case}: {target} from node-2: {r}");
    }
}

/// kube-proxy's service health server listens on the node IPs
/// `--nodeport-addresses` selects, not on every address: node-2 has a
/// second address (192.0.2.85 on lo) and loopback, and the health-check
/// node port is refused there unless the flag selects it.
#[test]
fn health_check_node_ports_listen_only_on_nodeport_addresses() {
    let mut env = Env::new(&SEED);
    ok(
        env.node2()
            .ip(&["addr", "add", &format!("{NODE2_OTHER_IP}/32"), "dev", "lo"]),
        "second address",
    );
    for obj in local_lb_service() {
        env.apply(obj);
    }

    // The default, `primary`: node-2's InternalIP only.
    env.start_daemon();
    env.wait_health_check(NODE2_IP, "primary");
    env.assert_no_health_check(NODE2_OTHER_IP, "primary, another local address");
    env.assert_no_health_check(Ipv4Addr::LOCALHOST, "primary, loopback");

    // CIDRs: the local addresses inside them.
    env.daemon = None;
    env.start_daemon_with(&["--nodeport-addresses", "192.0.2.0/24"]);
    env.wait_health_check(NODE2_OTHER_IP, "192.0.2.0/24");
    env.assert_no_health_check(NODE2_IP, "192.0.2.0/24, the InternalIP outside it");
    env.assert_no_health_check(Ipv4Addr::LOCALHOST, "192.0.2.0/24, loopback");
}

#[test]
fn sigterm_leaves_the_rules_and_cleanup_removes_them() {
    let mut env = running();
    let st = ok(env.daemon().terminate(Duration::from_secs(10)), "SIGTERM");
    assert!(
        st.success(),
        "nftopo run after SIGTERM: {st}; log:\n{}",
        env.log()
    );
    assert!(env.has_table(), "SIGTERM flushed the rules");
    assert_eq!(env.kernel(SERVICE_IP, SERVICE_PORT), Some(backends()));
    env.assert_serves(service_addr(), &backends(), "after SIGTERM");

    let bin = ok(nftopo_bin(), "nftopo binary");
    ok(
        env.node2().exec(&bin, &["run", "--cleanup"]),
        "nftopo run --cleanup",
    );
    let tables = ok(nft_tables(env.node2()), "nft list tables");
    assert!(
        !tables.contains("nftopo"),
        "tables left after --cleanup:\n{tables}"
    );
}

/// kube-proxy's #130119: a restart with an unchanged cluster changes
/// nothing in the kernel. `nft monitor` in node-2 is the witness; the
/// daemon's own `first sync done` line must say the same.
#[test]
fn a_restart_with_an_unchanged_cluster_sends_nothing() {
    let mut env = running();
    let st = ok(env.daemon().terminate(Duration::from_secs(10)), "SIGTERM");
    assert!(st.success(), "{st}; log:\n{}", env.log());
    let before = ok(nft_list(env.node2()), "nft list ruleset");
    let monitor = ok(NftMonitor::start(env.node2()), "nft monitor");
    env.start_daemon();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.log().contains("first sync done") {
        env.assert_running();
        assert!(
            Instant::now() < deadline,
            "no first sync; log:\n{}",
            env.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let events = ok(monitor.events(), "nft monitor");
    let log = env.log();
    let line = log
        .lines()
        .find(|l| l.contains("first sync done"))
        .expect("seen above");
    assert!(
        line.contains("operations=0") && line.contains("differences=0"),
        "{line}"
    );
    assert!(
        events.is_empty(),
        "the restart changed the kernel: {events:#?}"
    );
    assert_eq!(ok(nft_list(env.node2()), "nft list ruleset"), before);
    // And it still follows changes afterwards.
    env.apply(slice_q9d4m(&[D]));
    env.wait_kernel(
        SERVICE_IP,
        SERVICE_PORT,
        &set(&[A, B, C, D]),
        "a change after the restart",
    );
}

#[test]
fn event_to_kernel_latency() {
    let mut env = running();
    // Resolution: what one poll (`ip netns exec … nft list map`) costs.
    let t = Instant::now();
    for _ in 0..10 {
        env.kernel(SERVICE_IP, SERVICE_PORT);
    }
    let poll = t.elapsed() / 10;

    let mut samples = Vec::new();
    for i in 0..20 {
        let (keep, want): (&[Ipv4Addr], &[Ipv4Addr]) = if i % 2 == 0 {
            (&[D], &[A, B, C, D])
        } else {
            (&[D, E], &[A, B, C, D, E])
        };
        let s = slice_q9d4m(keep);
        let t = Instant::now();
        env.apply(s);
        env.wait_kernel(SERVICE_IP, SERVICE_PORT, &set(want), &format!("change {i}"));
        samples.push(t.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    // Nearest rank: p50 is the 10th of 20, p99 the 20th.
    let p50 = samples[samples.len().div_ceil(2) - 1];
    let p99 = samples[(samples.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "event-to-kernel latency over {} EndpointSlice changes (apply() to `nft list map` showing it, \
         polled every 5 ms, one poll ~{:.1} ms): p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
        samples.len(),
        ms(poll),
        ms(p50),
        ms(p99),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
    );
    env.assert_serves(service_addr(), &backends(), "after the changes");
}

/// A Calico BlockAffinity for the stand-in.
fn block(node: &str, cidr: &str, state: &str) -> Value {
    json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
           "metadata": {"name": format!("{node}-{}", cidr.replace(['.', '/'], "-"))},
           "spec": {"cidr": cidr, "node": node, "state": state, "deleted": "false"}})
}

#[test]
fn routes_follow_calico_blocks_and_come_back_when_deleted_by_hand() {
    let mut env = Env::new(&SEED);
    for (node, cidr) in [
        ("node-2", "10.42.187.64/26"),
        ("node-3", "10.42.54.128/26"),
        ("node-4", "10.42.201.0/26"),
    ] {
        env.apply(block(node, cidr, "confirmed"));
    }
    // The seed harness installed these same routes by hand (as BIRD
    // would have); the daemon adopts them: same protocol, same shape.
    let seed = [
        "10.42.201.0/26 via 172.31.11.212 dev eth0",
        "10.42.54.128/26 via 172.31.11.157 dev eth0",
        "blackhole 10.42.187.64/26",
    ];
    env.wait_routes(&seed, "seed routes");
    env.start_daemon_with(&[
        "--route-mode",
        "direct",
        "--pod-cidr-source",
        "calico-ipam",
        "--full-sync-period",
        "3s",
    ]);
    env.wait_kernel(SERVICE_IP, SERVICE_PORT, &backends(), "first sync");
    env.wait_routes(&seed, "after the first sync");

    // node-3 gets a second block: routed once confirmed, not before.
    env.apply(block("node-3", "10.42.54.192/26", "pending"));
    env.apply(block("node-2", "10.42.187.0/26", "confirmed"));
    let with_new = [
        "10.42.201.0/26 via 172.31.11.212 dev eth0",
        "10.42.54.128/26 via 172.31.11.157 dev eth0",
        "blackhole 10.42.187.0/26",
        "blackhole 10.42.187.64/26",
    ];
    env.wait_routes(
        &with_new,
        "node-2's new block; node-3's pending one not yet",
    );
    env.apply(block("node-3", "10.42.54.192/26", "confirmed"));
    let mut all = with_new.to_vec();
    all.insert(2, "10.42.54.192/26 via 172.31.11.157 dev eth0");
    env.wait_routes(&all, "node-3's block confirmed");

    // Deleted by hand: the periodic full sync (3 s) puts it back.
    ok(
        env.node2().ip(&["route", "del", "10.42.54.192/26"]),
        "delete by hand",
    );
    env.wait_routes(&all, "restored by the periodic sync");

    // A block released: its route goes; the others and the traffic stay.
    ok(
        env.api
            .delete("BlockAffinity", "", "node-3-10-42-54-192-26")
            .ok_or("no such block"),
        "delete block",
    );
    env.wait_routes(&with_new, "node-3's extra block released");
    env.assert_serves(
        service_addr(),
        &backends(),
        "pods on every node still reached",
    );
    let (_, text) = env.get(METRICS_ADDR, "/metrics");
    assert_eq!(
        metric_value(&text, "nftopo_routes_programmed"),
        Some(4.0),
        "{text}"
    );
}

/// One object of a kind that does not decode (a wrong JSON type in one
/// field) is skipped by itself, with one warning naming it and the field
/// and `nftopo_objects_skipped_total`; every other object of its kind is
/// used, whether it was there at the first list or came by watch.
#[test]
fn an_object_with_a_wrong_json_type_is_skipped_alone() {
    let mut env = Env::new(&SEED);
    let bad = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "default"},
               "spec": {"type": "ClusterIP", "clusterIP": "10.43.200.1",
                        "ports": [{"port": "eighty", "protocol": "TCP"}]}})
    };
    env.apply(bad("typo-at-list"));
    env.start_daemon();
    // The list of Services is not lost: the seed Service is programmed.
    env.wait_kernel(SERVICE_IP, SERVICE_PORT, &backends(), "first sync");
    // A bad one by watch, then a good one: the good one still comes.
    env.apply(bad("typo-by-watch"));
    for obj in web_service() {
        env.apply(obj);
    }
    env.wait_kernel(WEB_IP, WEB_PORT, &set(&[C, E]), "a Service after a bad one");
    let log = env.log();
    for name in ["typo-at-list", "typo-by-watch"] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(name) && l.contains("spec.ports[0].port"))
            .collect();
        assert!(
            !lines.is_empty(),
            "no warning naming {name} and its field:\n{log}"
        );
    }
    let (_, text) = env.get(METRICS_ADDR, "/metrics");
    let skipped = metric_value(
        &text,
        "nftopo_objects_skipped_total{kind=\"Service\",reason=\"spec.ports[].port\"}",
    );
    assert_eq!(skipped, Some(2.0), "{text}");
}

/// Idle connections cannot starve the HTTP endpoints (issue 16): with
/// 2,000 connections held open and idle against the healthz port, the
/// metrics, /healthz and a health-check node port each answer within
/// 1 s, and the watches still bring changes. Before, the daemon kept the
/// default soft limit of 1,024 descriptors and every connection until
/// its 10 s read time-out: accepts failed, and so did the watches.
#[test]
fn http_endpoints_answer_while_2000_idle_connections_are_held() {
    // This test holds 2,000 sockets too.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
        .expect("setrlimit");
    let mut env = Env::new(&SEED);
    for obj in local_lb_service() {
        env.apply(obj);
    }
    env.start_daemon();
    env.wait_kernel(SERVICE_IP, SERVICE_PORT, &backends(), "first sync");
    env.wait_health_check(NODE2_IP, "before the idle connections");

    let healthz: SocketAddr = HEALTHZ_ADDR.parse().unwrap();
    let held = ok(
        spawn_in_netns(env.node2().name(), move || {
            (0..2_000)
                .map(|_| std::net::TcpStream::connect(healthz))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .join()
        .expect("connecting thread"),
        "setns",
    );
    let held = ok(held, "2,000 idle connections");
    let netns = env.node2().name().to_owned();
    for (addr, path) in [
        (METRICS_ADDR.parse().unwrap(), "/metrics"),
        (healthz, "/healthz"),
        (SocketAddr::from((NODE2_IP, HC_PORT)), "/"),
    ] {
        let got = http_get_within(&netns, addr, path, Duration::from_secs(1));
        assert!(
            matches!(got, Ok((200, _))),
            "{addr}{path} with 2,000 idle connections held: {got:?}\n{}",
            env.log()
        );
    }
    for obj in web_service() {
        env.apply(obj);
    }
    env.wait_kernel(
        WEB_IP,
        WEB_PORT,
        &set(&[C, E]),
        "a change while they are held",
    );
    env.assert_running();
    drop(held);
}

/// `nftopo explain` with `--output json` in node-2's namespace, against
/// `source` (`--daemon URL`, or `--kubeconfig F --node node-2`).
fn explain_cli(env: &Env, source: &[&str], output: &str) -> String {
    let bin = ok(nftopo_bin(), "nftopo binary");
    let mut args = vec!["explain"];
    args.extend_from_slice(source);
    args.extend(["--output", output, "default/swansea-city-api"]);
    let out = ok(env.node2().command(&bin, &args).output(), "nftopo explain");
    assert!(
        out.status.success(),
        "nftopo explain {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The endpoints `/debug/explain` says the seed Service's port uses.
fn explained_endpoints(json: &str) -> BTreeSet<Ipv4Addr> {
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["ports"][0]["endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("no endpoints in {json}"))
        .iter()
        .map(|e| e["ip"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// The daemon answers `/debug/explain/` from its own state: it follows a
/// change within the sync that programs it, says 404 (JSON) for a
/// Service it does not hold, and `nftopo explain --daemon` prints it; the
/// same answer comes from `nftopo explain --kubeconfig` listing the
/// stand-in once. The metrics address (and so these endpoints) listens on
/// loopback unless told otherwise.
#[test]
fn debug_explain_follows_the_daemons_state_on_loopback() {
    let mut env = Env::new(&SEED);
    env.start_daemon_with(&["!--metrics-bind-address"]);
    env.wait_kernel(SERVICE_IP, SERVICE_PORT, &backends(), "first sync");
    let path = "/debug/explain/default/swansea-city-api";
    let (status, body) = env.get(METRICS_ADDR, path);
    assert_eq!(status, 200, "{body}");
    assert_eq!(explained_endpoints(&body), backends());

    // node-4's pod leaves its slice: once the kernel shows it, so does
    // the explanation (the same sync).
    env.apply(slice_q9d4m(&[D]));
    env.wait_kernel(SERVICE_IP, SERVICE_PORT, &set(&[A, B, C, D]), "E removed");
    let (status, body) = env.get(METRICS_ADDR, path);
    assert_eq!(status, 200, "{body}");
    assert_eq!(explained_endpoints(&body), set(&[A, B, C, D]));
    let reasons = body.matches("\"reason\"").count();
    assert!(reasons >= 4, "each endpoint has its reason: {body}");

    // The command line: the daemon's table, and the API server's JSON.
    let url = format!("http://{METRICS_ADDR}");
    let table = explain_cli(&env, &["--daemon", &url], "table");
    assert!(
        table.contains("default/swansea-city-api port 80/tcp") && table.contains("REASON"),
        "{table}"
    );
    for ip in [A, B, C, D] {
        assert!(table.contains(&ip.to_string()), "{ip} in\n{table}");
    }
    let kubeconfig = env.kubeconfig.display().to_string();
    let listed = explain_cli(
        &env,
        &["--kubeconfig", &kubeconfig, "--node", THIS_NODE],
        "json",
    );
    assert_eq!(listed, body, "explain --kubeconfig and the daemon agree");

    let (status, body) = env.get(METRICS_ADDR, "/debug/explain/default/no-such-service");
    assert_eq!(status, 404, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "service default/no-such-service not found");

    // Loopback only: node-2's own address, from node-2, is refused.
    let outside: SocketAddr = format!("{NODE2_IP}:10249").parse().unwrap();
    let refused = http_get(env.node2().name(), outside, path);
    assert!(
        refused.is_err(),
        "the metrics port answered on {outside}: {refused:?}"
    );
    env.assert_running();
}
