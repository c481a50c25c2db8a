//! Sections 4 and 5: `nftopo run` against the API server stand-in
//! holding N services x 10 endpoints. Its memory (VmHWM, VmRSS, from
//! /proc/PID/status) next to the same daemon on an empty cluster, and the
//! time from the stand-in applying an EndpointSlice change to the element
//! in the kernel (daemon-reported, kernel-checked; see the section text).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use nftopo_integration::apiserver::ApiServer;
use nftopo_integration::daemon::{http_get, metric_value, Daemon, METRICS_ADDR};
use nftopo_integration::{unique_prefix, Netns, NFTOPO_BIN_ENV};
use serde_json::{json, Value};

use crate::plot::{self, Chart, Series};
use crate::util::pct;
use crate::Config;

const NODES: u32 = 3;

fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a2b_0001 + i)
}

fn pod(i: u32, j: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a40_0000 + i * 16 + j)
}

/// A uid for object `kind` number `i` (the API server's are random; these
/// are as long).
fn uid(kind: u32, i: u32) -> String {
    format!("{kind:08x}-{:04x}-4000-8000-{i:012x}", i >> 16)
}

/// What the API server and the controllers put into every object's
/// metadata besides name and namespace: uid, resourceVersion,
/// creationTimestamp, and the `managedFields` entries of the managers
/// that wrote it (`fields` is the FieldsV1 tree of the last one). nftopo
/// reads none of it, but the watch decodes it all: the issue's
/// "realistic objects".
fn metadata(name: &str, namespace: Option<&str>, uid: String, fields: Value) -> Value {
    let mut meta = json!({
        "name": name, "uid": uid, "resourceVersion": "1",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [
            {"manager": "kubectl-client-side-apply", "operation": "Update",
             "apiVersion": "v1", "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:annotations": {".": {},
                 "f:kubectl.kubernetes.io/last-applied-configuration": {}},
                 "f:labels": {".": {}, "f:app": {}}}}},
            {"manager": "kube-controller-manager", "operation": "Update",
             "apiVersion": "v1", "time": "2026-01-01T00:00:01Z", "fieldsType": "FieldsV1",
             "fieldsV1": fields}]});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    meta
}

fn node(i: u32) -> Value {
    let name = format!("node-{i}");
    let mut meta = metadata(
        &name,
        None,
        uid(1, i),
        json!({"f:status": {"f:addresses": {}, "f:conditions": {}}}),
    );
    meta["labels"] = json!({
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "m5.large",
        "topology.kubernetes.io/region": "region-1",
        "topology.kubernetes.io/zone": if i % 2 == 1 { "zone-a" } else { "zone-b" }});
    json!({"apiVersion": "v1", "kind": "Node", "metadata": meta,
        "spec": {"podCIDR": format!("10.42.{i}.0/24"), "podCIDRs": [format!("10.42.{i}.0/24")]},
        "status": {"addresses": [
            {"type": "InternalIP", "address": format!("172.31.11.{}", 10 + i)},
            {"type": "Hostname", "address": name}]}})
}

fn service(i: u32) -> Value {
    let name = format!("svc-{i}");
    let spec = json!({"type": "ClusterIP", "clusterIP": vip(i).to_string(),
        "clusterIPs": [vip(i).to_string()], "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
        "sessionAffinity": "None", "selector": {"app": name},
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]});
    let mut meta = metadata(&name, Some("bench"), uid(2, i), json!({}));
    meta["labels"] = json!({"app": name});
    // kubectl apply's copy of what it applied.
    let applied = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"labels": {"app": name}, "name": name, "namespace": "bench"},
        "spec": {"ports": spec["ports"], "selector": spec["selector"]}});
    meta["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": applied.to_string()});
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec,
        "status": {"loadBalancer": {}}})
}

/// Service i's slice, as the EndpointSlice controller writes it: its 10
/// endpoints (each with its Pod as `targetRef`, its zone, all three
/// conditions), plus `extra` if given; owned by the Service.
fn slice(i: u32, extra: Option<Ipv4Addr>) -> Value {
    let svc = format!("svc-{i}");
    let endpoint = |ip: Ipv4Addr, node: u32, pod: String| {
        json!({"addresses": [ip.to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": format!("node-{node}"),
            "zone": if node % 2 == 1 { "zone-a" } else { "zone-b" },
            "targetRef": {"kind": "Pod", "namespace": "bench", "name": pod,
                "uid": uid(3, u32::from(ip))}})
    };
    let mut eps: Vec<Value> = (0..10)
        .map(|j| {
            endpoint(
                pod(i, j),
                1 + (i + j) % NODES,
                format!("{svc}-7d9c8b6f5-{j:05x}"),
            )
        })
        .collect();
    if let Some(ip) = extra {
        eps.push(endpoint(ip, 1, format!("{svc}-7d9c8b6f5-extra")));
    }
    let name = format!("{svc}-1");
    let mut meta = metadata(
        &name,
        Some("bench"),
        uid(4, i),
        json!({"f:addressType": {}, "f:endpoints": {}, "f:ports": {},
            "f:metadata": {"f:labels": {".": {}, "f:app": {},
                "f:endpointslice.kubernetes.io/managed-by": {},
                "f:kubernetes.io/service-name": {}},
                "f:ownerReferences": {".": {}, "k:{\"uid\":\"…\"}": {}}}}),
    );
    meta["generateName"] = json!(format!("{svc}-"));
    meta["labels"] = json!({"app": svc, "kubernetes.io/service-name": svc,
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"});
    meta["annotations"] =
        json!({"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z"});
    meta["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Service", "name": svc,
        "uid": uid(2, i), "controller": true, "blockOwnerDeletion": true}]);
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps})
}

/// Memory of a process, KiB, from /proc/PID/status.
#[derive(Default, Clone, Copy)]
struct Mem {
    hwm: u64,
    rss: u64,
    anon: u64,
    file: u64,
}

fn mem(pid: u32) -> Mem {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Mem {
        hwm: get("VmHWM:"),
        rss: get("VmRSS:"),
        anon: get("RssAnon:"),
        file: get("RssFile:"),
    }
}

/// A daemon on a stand-in with `services` services; returns it, the
/// stand-in, the namespace and the seconds from start to the first sync.
fn start(cfg: &Config, services: u32) -> (Daemon, ApiServer, Netns, f64) {
    let ns = Netns::create(format!("{}-d", unique_prefix())).expect("daemon ns");
    let api =
        ApiServer::start_in_netns(ns.name(), "127.0.0.1:0".parse().unwrap()).expect("stand-in");
    for i in 1..=NODES {
        api.apply(node(i)).expect("node");
    }
    for i in 0..services {
        api.apply(service(i)).expect("service");
        api.apply(slice(i, None)).expect("slice");
    }
    let kubeconfig = cfg.tmp.join(format!("kubeconfig-{}", ns.name()));
    api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let t = Instant::now();
    let mut d = Daemon::start(&ns, &kubeconfig, &[]).expect("nftopo run");
    // Synced once the last-sync timestamp is set.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(st) = d.exited() {
            panic!("nftopo run exited ({st}):\n{}", d.log());
        }
        let synced = http_get(ns.name(), METRICS_ADDR.parse().unwrap(), "/metrics")
            .ok()
            .and_then(|(_, body)| {
                metric_value(&body, "kubeproxy_sync_proxy_rules_last_timestamp_seconds")
            })
            .is_some_and(|v| v > 0.0);
        if synced {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no first sync in 120 s:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t.elapsed().as_secs_f64();
    if services > 0 {
        // Witness: the last service is in the kernel.
        let key = format!("{{ {} . tcp . 80 }}", vip(services - 1));
        ns.exec(
            "nft",
            &["get", "element", "ip", "nftopo", "service-ips", &key],
        )
        .expect("the last service is in the kernel after the first sync");
    }
    (d, api, ns, took)
}

/// Whether the kernel's `service-endpoints` map holds, for service `i`'s
/// 11th endpoint, the endpoint `ip` (`nft get element`: one key, not a
/// listing of the map). Layout 3 keys a port with N endpoints from
/// N(N-1)/2 on (nft-writer's `names::spread_offset`): the 11th of 11 is
/// at 55 + 10.
fn holds(ns: &Netns, i: u32, ip: Ipv4Addr) -> bool {
    const N: u32 = 11;
    let key = format!("{{ {} . tcp . 80 . {} }}", vip(i), N * (N - 1) / 2 + 10);
    ns.exec(
        "nft",
        &["get", "element", "ip", "nftopo", "service-endpoints", &key],
    )
    .is_ok_and(|out| out.contains(&format!(": {ip} . ")))
}

/// The daemon's `kubeproxy_sync_proxy_rules_last_timestamp_seconds`.
fn last_sync(ns: &Netns) -> Option<f64> {
    http_get(ns.name(), METRICS_ADDR.parse().unwrap(), "/metrics")
        .ok()
        .and_then(|(_, body)| {
            metric_value(&body, "kubeproxy_sync_proxy_rules_last_timestamp_seconds")
        })
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Applies `obj` to the stand-in and waits for the daemon's next sync;
/// returns the ms from the apply to the end of that sync (the daemon's
/// timestamp, set when the kernel acknowledged the transaction), None
/// after 30 s.
fn change_to_sync(api: &ApiServer, ns: &Netns, obj: Value) -> Option<f64> {
    let before = last_sync(ns).unwrap_or(0.0);
    let sent = unix_now();
    api.apply(obj).expect("slice");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if let Some(at) = last_sync(ns).filter(|&v| v > before && v >= sent) {
            return Some((at - sent) * 1000.0);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// The static binary `make static` builds (what the Debian package and the
/// image ship), or `$NFTOPO_BENCH_DAEMON` (another build, or a wrapper that
/// execs one under a heap profiler); panics with how to build it.
fn static_bin() -> std::path::PathBuf {
    let p = std::env::var_os("NFTOPO_BENCH_DAEMON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/packaging/static/nftopo")
        });
    assert!(
        p.is_file(),
        "{} missing: make static (make bench builds it)",
        p.display()
    );
    p
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs the sections; returns their Markdown.
pub fn run(cfg: &Config) -> String {
    // The daemon's debug logs would be the largest part of its work.
    std::env::set_var("NFTOPO_LOG", "info");
    // The binary must keep its memory down by itself: what the systemd
    // unit and the DaemonSet set is not set here.
    for var in [
        "MALLOC_ARENA_MAX",
        "GLIBC_TUNABLES",
        "MALLOC_TRIM_THRESHOLD_",
    ] {
        std::env::remove_var(var);
    }
    // The shipped binary (`make static`, which `make bench` builds), for
    // this section only.
    let before = std::env::var_os(NFTOPO_BIN_ENV);
    std::env::set_var(NFTOPO_BIN_ENV, static_bin());
    let md = measure(cfg);
    match before {
        Some(v) => std::env::set_var(NFTOPO_BIN_ENV, v),
        None => std::env::remove_var(NFTOPO_BIN_ENV),
    }
    md
}

fn measure(cfg: &Config) -> String {
    // 500 of each direction: the "after 1,000 changes".
    let (services, changes) = if cfg.quick { (1000, 10) } else { (10000, 500) };

    // Baseline: the same daemon on an empty cluster (three nodes).
    let (mut d0, api0, ns0, t0) = start(cfg, 0);
    std::thread::sleep(Duration::from_secs(1));
    let base = mem(d0.pid().expect("pid"));
    let _ = d0.terminate(Duration::from_secs(5));
    drop((d0, api0, ns0));

    let (mut d, api, ns, t_full) = start(cfg, services);
    std::thread::sleep(Duration::from_secs(1));
    let pid = d.pid().expect("pid");
    let loaded = mem(pid);
    eprintln!(
        "bench: daemon at {services}: first sync {t_full:.1} s, VmHWM {:.0} MiB, VmRSS {:.0} MiB",
        mib(loaded.hwm),
        mib(loaded.rss)
    );

    // Event to kernel; every tenth change is checked in the kernel.
    let extra = |k: u32| Ipv4Addr::from(0x0a80_0000 + k);
    let (mut added, mut removed, mut lost, mut checked, mut wrong) =
        (Vec::new(), Vec::new(), 0, 0, 0);
    for k in 0..changes {
        if lost >= 3 {
            break;
        }
        let i = (k * 7919) % services;
        let ip = extra(k);
        for (add, into) in [(true, &mut added), (false, &mut removed)] {
            let obj = slice(i, add.then_some(ip));
            match change_to_sync(&api, &ns, obj) {
                Some(ms) => into.push(ms),
                None => lost += 1,
            }
            if k % 10 == 0 {
                checked += 1;
                if holds(&ns, i, ip) != add {
                    wrong += 1;
                }
            }
        }
    }
    let after = mem(pid);
    let _ = d.terminate(Duration::from_secs(10));
    drop((d, api, ns));

    let mut md = String::new();
    let _ = writeln!(
        md,
        "## 4. Memory\n\n\
         The shipped static binary (`make static`) as `nftopo run`, in a namespace of its own \
         against the API server stand-in (`integration/src/apiserver`), with no allocator \
         environment variable set (`MALLOC_ARENA_MAX` and `GLIBC_TUNABLES` removed). The \
         objects are realistic: `managedFields` of two managers, uid, `ownerReferences` and \
         annotations (the Services' `last-applied-configuration`), each endpoint with its \
         Pod as `targetRef`, its zone and all three conditions. From /proc/PID/status: VmHWM \
         (peak RSS), VmRSS, and RSS split into anonymous memory and mapped files (the \
         binary). Baseline: the same daemon on a cluster of three nodes and no services, in \
         the same run. Goal: 64 MiB with 10k services x 10 endpoints, after the first sync \
         and after 1,000 changes.\n"
    );
    let _ = writeln!(
        md,
        "| cluster | first sync s | VmHWM MiB | VmRSS MiB | RssAnon MiB | RssFile MiB |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for (label, t, m) in [
        ("3 nodes, no services (baseline)".to_string(), t0, base),
        (
            format!("{services} services x 10 endpoints, after the first sync"),
            t_full,
            loaded,
        ),
        (
            format!("the same after {} EndpointSlice changes", 2 * changes),
            f64::NAN,
            after,
        ),
    ] {
        let t = if t.is_nan() {
            "–".into()
        } else {
            format!("{t:.1}")
        };
        let _ = writeln!(
            md,
            "| {label} | {t} | {:.0} | {:.0} | {:.0} | {:.0} |",
            mib(m.hwm),
            mib(m.rss),
            mib(m.anon),
            mib(m.file)
        );
    }
    let per_service =
        (after.rss.max(loaded.rss) as f64 - base.rss as f64) * 1024.0 / services as f64;
    let _ = writeln!(
        md,
        "\nPeak {:.0} MiB against the 64 MiB goal ({:.1}x); {:.1} KiB of resident memory per \
         service above the baseline. `first sync` is from starting the daemon to its first \
         sync (list of all three kinds, plan, one transaction).\n",
        mib(after.hwm),
        mib(after.hwm) / 64.0,
        per_service / 1024.0
    );

    let _ = writeln!(
        md,
        "## 5. Event to kernel ({services} services x 10 endpoints)\n\n\
         The stand-in applies an EndpointSlice change (one endpoint added to a service, then \
         removed again); the time runs from just before the stand-in's apply to the end of \
         the daemon's next sync, by the daemon's own `kubeproxy_sync_proxy_rules_last_timestamp_seconds` \
         (wall clock, set when the kernel has acknowledged the transaction; polled every 2 ms, \
         the poll does not add to the figure). Includes the watch event, the daemon's re-plan \
         of the changed Service and the commit. The kernel is the witness on every \
         tenth change (`nft get element` of that key): {checked} checked, {wrong} not as \
         expected. {changes} changes of each direction, `--min-sync-period 0s`. \
         (`nft monitor elements` as the witness was tried first; nft 1.0.6's monitor printed \
         the first add and delete, then nothing more; and `nft get element` takes a whole \
         cache fill, 170 ms at 1k services, too coarse to poll with.)\n"
    );
    let _ = writeln!(md, "| change | samples | p50 ms | p99 ms | max ms |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for (label, v) in [("endpoint added", &added), ("endpoint removed", &removed)] {
        let max = v.iter().cloned().fold(f64::NAN, f64::max);
        let _ = writeln!(
            md,
            "| {label} | {} | {:.1} | {:.1} | {:.1} |",
            v.len(),
            pct(v, 0.5),
            pct(v, 0.99),
            max
        );
    }
    if lost > 0 {
        let _ = writeln!(md, "\n{lost} changes never showed up within 30 s.");
    }
    let series: Vec<Series> = [("endpoint added", &added), ("endpoint removed", &removed)]
        .into_iter()
        .map(|(label, v)| {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            Series {
                label: label.into(),
                points: v
                    .iter()
                    .enumerate()
                    .map(|(i, &ms)| (100.0 * (i + 1) as f64 / n, ms))
                    .collect(),
            }
        })
        .collect();
    let png = plot::chart(
        cfg,
        &Chart {
            file: "event-to-kernel.png",
            title: &format!("EndpointSlice change to kernel, {services} services"),
            x: "percentile of changes",
            y: "ms",
            log_x: false,
            log_y: false,
            goal: None,
        },
        &series,
    );
    let _ = writeln!(md, "\n{png}\n");
    md
}
