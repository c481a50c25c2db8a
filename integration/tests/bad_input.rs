//! Bad input on a real kernel (needs root), from manifest files and from
//! the API server stand-in (issue 9): each bad object is skipped with one
//! line naming it and the field, the daemon counts it in
//! `nftopo_objects_skipped_total{kind,reason}`, and every other Service
//! is still programmed, proved by real connections from the client pod.
//! The unit-level table of cases (35 of them, through the fake kernel)
//! is `crates/nft-writer/tests/bad_input.rs`.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nftopo_integration::apiserver::ApiServer;
use nftopo_integration::daemon::*;
use nftopo_integration::*;
use serde_json::{json, Value};

const CONNS: usize = 100;
const CONVERGE: Duration = Duration::from_secs(15);

const A: Ipv4Addr = Ipv4Addr::new(10, 42, 187, 66);
const B: Ipv4Addr = Ipv4Addr::new(10, 42, 187, 67);
const C: Ipv4Addr = Ipv4Addr::new(10, 42, 54, 130);
const D: Ipv4Addr = Ipv4Addr::new(10, 42, 54, 131);
const E: Ipv4Addr = Ipv4Addr::new(10, 42, 201, 2);

/// One namespace cluster at a time: each test builds a dozen namespaces.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn ok<T, E: Display>(r: std::result::Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn cluster() -> SeedCluster {
    require_root();
    ok(
        SeedCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))),
        "seed cluster",
    )
}

fn svc_ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 43, 0, last)
}

/// A Service `ns/name` on `ip`:80 → 5000, with `extra` spec fields.
fn service(ns: &str, name: &str, ip: Ipv4Addr, extra: Value) -> Value {
    let mut spec =
        json!({"clusterIP": ip.to_string(), "ports": [{"port": 80, "targetPort": 5000}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// An IPv4 EndpointSlice `name` of Service `default/service` with port
/// 5000 (named `port_name`) and these endpoint addresses.
fn slice(service: &str, name: &str, port_name: &str, addresses: &[&str]) -> Value {
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}, "nodeName": "node-2"}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": name, "namespace": "default",
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4",
           "ports": [{"name": port_name, "port": 5000, "protocol": "TCP"}],
           "endpoints": endpoints})
}

/// The bad objects both sources are given (schema-valid, so that the API
/// server stand-in serves them as a real one would if its validation let
/// them through), with the (kind, metric reason) each is skipped for.
fn bad_objects() -> Vec<(Value, Option<(&'static str, &'static str)>)> {
    let mut bad_ip = service("default", "bad-ip", svc_ip(53), json!({}));
    bad_ip["spec"]["clusterIP"] = json!("10.43.0.300");
    let mut port0 = service("default", "port0", svc_ip(50), json!({}));
    port0["spec"]["ports"][0]["port"] = json!(0);
    let mut port_big = service("default", "port-big", svc_ip(51), json!({}));
    port_big["spec"]["ports"][0]["port"] = json!(70000);
    let mut icmp = service("default", "icmp", svc_ip(52), json!({}));
    icmp["spec"]["ports"][0]["protocol"] = json!("ICMP");
    let mut hostile_annotations = service("default", "noted", svc_ip(60), json!({}));
    hostile_annotations["metadata"]["annotations"] = json!({
        "a\"b": "c\n}; flush ruleset; #",
        "nftopo.io/topology-keys": "bogus;;, \"*\"",
    });
    vec![
        (bad_ip, Some(("Service", "spec.clusterIP"))),
        (port0, Some(("Service", "spec.ports[].port"))),
        (port_big, Some(("Service", "spec.ports[].port"))),
        (icmp, Some(("Service", "spec.ports[].protocol"))),
        (
            service(
                "default",
                "we b\"; flush ruleset;\n#",
                svc_ip(54),
                json!({}),
            ),
            Some(("Service", "metadata.name")),
        ),
        (
            service("ns{x}", "web", svc_ip(55), json!({})),
            Some(("Service", "metadata.namespace")),
        ),
        (
            service("default", &"s".repeat(64), svc_ip(56), json!({})),
            Some(("Service", "metadata.name")),
        ),
        (
            service(
                "default",
                "mixed",
                svc_ip(57),
                json!({"clusterIPs": ["10.43.0.57", "10.43.0.58"]}),
            ),
            Some(("Service", "spec.clusterIPs[]")),
        ),
        // An IPv6 address in an IPv4 slice: the slice is skipped, its
        // Service has no endpoints and refuses.
        (service("default", "v6in4", svc_ip(61), json!({})), None),
        (
            slice("v6in4", "v6in4-1", "", &["10.42.187.66", "fd00::1"]),
            Some(("EndpointSlice", "endpoints[].addresses[]")),
        ),
        // Duplicate endpoints are used once.
        (service("default", "dups", svc_ip(62), json!({})), None),
        (
            slice(
                "dups",
                "dups-1",
                "",
                &["10.42.187.66", "10.42.187.66", "10.42.187.67"],
            ),
            None,
        ),
        // A named port no slice resolves: refused.
        (
            service(
                "default",
                "unresolved",
                svc_ip(63),
                json!({"ports": [{"name": "web", "port": 80, "targetPort": "http"}]}),
            ),
            None,
        ),
        (
            slice("unresolved", "unresolved-1", "metrics", &["10.42.187.66"]),
            None,
        ),
        // A Service without slices refuses; a slice without a Service is
        // ignored.
        (service("default", "lonely", svc_ip(64), json!({})), None),
        (slice("ghost", "ghost-1", "", &["10.42.187.66"]), None),
        // Invalid topology keys are ignored (a planner problem): node-3's
        // pod keeps answering, which a valid hostname key would forbid.
        (hostile_annotations, None),
        (
            slice("noted", "noted-1", "", &["10.42.187.66", "10.42.54.130"]),
            None,
        ),
    ]
}

/// A good Service added after the bad objects: `default/after` on
/// 10.43.0.99 → node-2's two pods.
fn after() -> [Value; 2] {
    [
        service("default", "after", svc_ip(99), json!({})),
        slice("after", "after-1", "", &["10.42.187.66", "10.42.187.67"]),
    ]
}

/// What every test proves over traffic once nftopo has programmed the
/// bad objects next to the seed Service.
fn assert_traffic(c: &SeedCluster, case: &str) {
    let serves = |ip: Ipv4Addr, want: &[Ipv4Addr]| {
        let target = SocketAddrV4::new(ip, 80);
        let r = ok(
            c.probe_from_pod(CLIENT, target, CONNS, false),
            "probe from client",
        );
        let want: BTreeSet<Ipv4Addr> = want.iter().copied().collect();
        assert_eq!(r.answered(), want, "{case}: {target}: {r}");
        assert_eq!(r.answered_count(), CONNS, "{case}: {target}: {r}");
    };
    serves(SERVICE_IP, &[A, B, C, D, E]);
    serves(svc_ip(99), &[A, B]);
    serves(svc_ip(60), &[A, C]);
    serves(svc_ip(62), &[A, B]);
    for refused in [svc_ip(61), svc_ip(63), svc_ip(64)] {
        let target = SocketAddrV4::new(refused, 80);
        let r = ok(
            c.probe_from_pod(CLIENT, target, 20, false),
            "probe from client",
        );
        assert_eq!(r.count(REFUSED), 20, "{case}: {target} must refuse: {r}");
    }
}

#[test]
fn bad_manifests_are_skipped_one_line_each_and_the_rest_carries_traffic() {
    let _serial = serial();
    let c = cluster();
    let dir = std::env::temp_dir().join(format!("{}-bad-input", unique_prefix()));
    ok(std::fs::create_dir_all(&dir), "scratch dir");
    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let path = dir.join(name);
        ok(std::fs::write(&path, bytes), "write manifest");
        path
    };
    let objects = bad_objects();
    let mut yaml = String::new();
    let good_after = after();
    for obj in objects.iter().map(|(o, _)| o).chain(&good_after) {
        // JSON is YAML: one document each.
        yaml.push_str(&format!("---\n{obj}\n"));
    }
    let mut bad_utf8 = service("default", "bad-utf8", svc_ip(70), json!({}));
    bad_utf8["metadata"]["annotations"] = json!({"note": "cafeX"});
    let mut non_utf8 = format!(
        "{bad_utf8}\n---\n{}\n",
        slice("bad-utf8", "bad-utf8-1", "", &["10.42.187.66"]),
    )
    .into_bytes();
    let at = non_utf8.iter().position(|&b| b == b'X').expect("marker");
    non_utf8[at] = 0xff;
    let mut bomb = String::from("apiVersion: v1\nkind: Service\nmetadata: {name: lol}\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let deep = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: deep}}\nspec: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    // 100,000 endpoints (not pods) in one Service, 100 slices of 1,000.
    let mut huge = format!("{}\n", service("default", "huge", svc_ip(80), json!({})));
    for n in 0..100u32 {
        let addresses: Vec<String> = (0..1000u32)
            .map(|i| {
                format!(
                    "10.{}.{}.{}",
                    100 + n / 50,
                    (n % 50) * 4 + i / 250,
                    i % 250 + 1
                )
            })
            .collect();
        let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
        huge.push_str(&format!(
            "---\n{}\n",
            slice("huge", &format!("huge-{n}"), "", &addresses)
        ));
    }
    let mut files: Vec<PathBuf> = ["nodes.yaml", "svc-plain.yaml", "slices-v1.yaml"]
        .iter()
        .map(|f| seed_manifest(f))
        .collect();
    files.push(write("bad.yaml", yaml.as_bytes()));
    files.push(write("non-utf8.yaml", &non_utf8));
    files.push(write("bomb.yaml", bomb.as_bytes()));
    files.push(write("deep.yaml", deep.as_bytes()));
    files.push(write("huge.yaml", huge.as_bytes()));

    let mut args = vec!["apply".to_string(), "--node".into(), THIS_NODE.into()];
    for f in &files {
        args.push("--manifests".into());
        args.push(f.display().to_string());
    }
    args.extend(["--cluster-cidr".into(), CLUSTER_CIDR.into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let bin = ok(nftopo_bin(), "nftopo binary");
    let started = Instant::now();
    let out = ok(
        c.node(THIS_NODE).command(&bin, &args).output(),
        "nftopo apply",
    );
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nftopo apply failed: {stderr}");
    eprintln!("nftopo apply with the bad manifests took {took:?}");

    // One line per skipped object, naming it and the field.
    let skipped: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("nftopo: skipped:"))
        .collect();
    let want = [
        "Service default/bad-ip: spec.clusterIP:",
        "Service default/port0: spec.ports[0].port:",
        "Service default/port-big: spec.ports[0].port:",
        "Service default/icmp: spec.ports[0].protocol:",
        r#"Service default/we b\"; flush ruleset;\n#: metadata.name:"#,
        "Service ns{x}/web: metadata.namespace:",
        "metadata.name: \"ssssssssssssssss",
        "Service default/mixed: spec.clusterIPs[1]:",
        "EndpointSlice default/v6in4-1: endpoints[1].addresses[0]:",
        "Service default/bad-utf8: metadata.annotations.note: not valid UTF-8",
        "bomb.yaml: document 1: document: budget breached",
        "deep.yaml: document 1: document: collections nested deeper than 256",
    ];
    for w in want {
        let n = skipped.iter().filter(|l| l.contains(w)).count();
        assert_eq!(n, 1, "{w:?} in exactly one line of:\n{stderr}");
    }
    assert_eq!(skipped.len(), want.len(), "{stderr}");
    assert!(
        stderr.contains("default/noted: annotation nftopo.io/topology-keys ignored"),
        "{stderr}"
    );

    assert_traffic(&c, "manifests");
    // The huge Service is in the kernel with all its endpoints.
    let elements = ok(service_endpoints(c.node(THIS_NODE)), "nft list map").unwrap_or_default();
    let huge_count = elements.iter().filter(|e| e.service == svc_ip(80)).count();
    assert_eq!(huge_count, 100_000);

    // The same manifests rendered as text are a script nft accepts.
    let mut render_args = args.clone();
    render_args[0] = "render";
    let rendered = ok(c.node(THIS_NODE).exec(&bin, &render_args), "nftopo render");
    let script = write("rendered.nft", rendered.as_bytes());
    ok(
        c.node(THIS_NODE)
            .exec("nft", &["-c", "-f", &script.display().to_string()]),
        "nft -c -f of the rendered script",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The skipped counter `{kind, reason}` in a metrics text (0 when absent).
fn skipped_count(metrics: &str, kind: &str, reason: &str) -> f64 {
    let prefix = format!("nftopo_objects_skipped_total{{kind=\"{kind}\",reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&prefix)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

#[test]
fn the_daemon_skips_bad_objects_from_the_api_counts_them_and_serves_the_rest() {
    let _serial = serial();
    let c = cluster();
    let node2 = c.node(THIS_NODE);
    let api = ok(
        ApiServer::start_in_netns(node2.name(), "127.0.0.1:0".parse().unwrap()),
        "stand-in in node-2",
    );
    let dir = std::env::temp_dir().join(format!("{}-bad-input-daemon", unique_prefix()));
    ok(std::fs::create_dir_all(&dir), "scratch dir");
    let kubeconfig = dir.join("kubeconfig");
    ok(api.write_kubeconfig(&kubeconfig), "kubeconfig");
    for f in ["nodes.yaml", "svc-plain.yaml", "slices-v1.yaml"] {
        for obj in ok(seed_objects(f), f) {
            ok(api.apply(obj), "stand-in apply");
        }
    }
    let objects = bad_objects();
    for (obj, _) in &objects {
        ok(api.apply(obj.clone()), "stand-in apply");
    }
    for obj in after() {
        ok(api.apply(obj), "stand-in apply");
    }
    let mut daemon = ok(Daemon::start(node2, &kubeconfig, &[]), "nftopo run");
    let wait = |daemon: &mut Daemon, ip: Ipv4Addr, want: &[Ipv4Addr]| {
        let want: BTreeSet<Ipv4Addr> = want.iter().copied().collect();
        let deadline = Instant::now() + CONVERGE;
        loop {
            let got = ok(kernel_endpoints(node2, ip, 80), "nft list map");
            if got.as_ref() == Some(&want) {
                return;
            }
            if let Some(st) = daemon.exited() {
                panic!("nftopo run exited ({st}):\n{}", daemon.log());
            }
            assert!(
                Instant::now() < deadline,
                "{ip}: kernel holds {got:?}, want {want:?}; log:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait(&mut daemon, SERVICE_IP, &[A, B, C, D, E]);
    wait(&mut daemon, svc_ip(99), &[A, B]);
    assert_traffic(&c, "stand-in");

    let metrics_addr: SocketAddr = METRICS_ADDR.parse().unwrap();
    let metrics = || {
        ok(
            http_get(node2.name(), metrics_addr, "/metrics"),
            "GET /metrics",
        )
        .1
    };
    let text = metrics();
    let mut want: Vec<(&str, &str, f64)> = Vec::new();
    for (_, reason) in &objects {
        if let Some((kind, reason)) = reason {
            match want.iter_mut().find(|w| (w.0, w.1) == (*kind, *reason)) {
                Some(w) => w.2 += 1.0,
                None => want.push((kind, reason, 1.0)),
            }
        }
    }
    for (kind, reason, n) in &want {
        assert_eq!(
            skipped_count(&text, kind, reason),
            *n,
            "{kind}/{reason} in:\n{text}"
        );
    }
    let bad_count = objects.iter().filter(|(_, r)| r.is_some()).count();
    let skip_lines = |log: &str| log.lines().filter(|l| l.contains("skipped:")).count();
    assert_eq!(skip_lines(&daemon.log()), bad_count, "{}", daemon.log());

    // While it runs: one more bad Service and one more good one. The good
    // one is programmed, the bad one counted and logged once, the earlier
    // ones not again.
    let mut late_bad = service("default", "late-bad", svc_ip(90), json!({}));
    late_bad["spec"]["ports"][0]["port"] = json!(0);
    ok(api.apply(late_bad), "stand-in apply");
    ok(
        api.apply(service("default", "late", svc_ip(91), json!({}))),
        "stand-in apply",
    );
    ok(
        api.apply(slice("late", "late-1", "", &["10.42.187.67"])),
        "stand-in apply",
    );
    wait(&mut daemon, svc_ip(91), &[B]);
    let r = ok(
        c.probe_from_pod(CLIENT, SocketAddrV4::new(svc_ip(91), 80), CONNS, false),
        "probe",
    );
    assert_eq!(r.answered(), BTreeSet::from([B]), "late service: {r}");
    assert_traffic(&c, "stand-in, after more changes");
    let text = metrics();
    assert_eq!(
        skipped_count(&text, "Service", "spec.ports[].port"),
        3.0,
        "{text}"
    );
    let log = daemon.log();
    assert_eq!(skip_lines(&log), bad_count + 1, "{log}");
    for line in log.lines().filter(|l| l.contains("skipped:")) {
        eprintln!("{line}");
    }
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
