//! Churn soak (needs root): the daemon against the API stand-in with many
//! services while EndpointSlices change at a steady rate; afterwards the
//! kernel must hold exactly what a fresh `nftopo apply` of the final
//! objects programs, and the daemon's memory, threads and file
//! descriptors must be back where they were.
//!
//! `make test` runs a short version (1,000 services, 200 changes/s for
//! 5 s); `make reliability` the full one (10,000 services, 1,000
//! changes/s for 60 s) with the release binary. Knobs:
//! `NFTOPO_SOAK_SERVICES`, `NFTOPO_SOAK_RATE`, `NFTOPO_SOAK_SECONDS`.

use std::path::Path;
use std::time::{Duration, Instant};

use nftopo_integration::apiserver::ApiServer;
use nftopo_integration::daemon::*;
use nftopo_integration::*;
use serde_json::json;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ok<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// (VmRSS in KiB, threads, open file descriptors) of `pid`.
fn process_stats(pid: u32) -> (u64, u64, usize) {
    let status = ok(
        std::fs::read_to_string(format!("/proc/{pid}/status")),
        "status",
    );
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = ok(std::fs::read_dir(format!("/proc/{pid}/fd")), "fd").count();
    (field("VmRSS:"), field("Threads:"), fds)
}

#[test]
fn churn_settles_to_the_plan_without_leaks() {
    require_root();
    let services = knob("NFTOPO_SOAK_SERVICES", 1000);
    let rate = knob("NFTOPO_SOAK_RATE", 200);
    let seconds = knob("NFTOPO_SOAK_SECONDS", 5);
    let ns = ok(Netns::create(format!("{}-soak", unique_prefix())), "netns");
    let dir = std::env::temp_dir().join(format!("{}-soak", unique_prefix()));
    ok(std::fs::create_dir_all(&dir), "dir");
    let generated = ok(
        gen_manifests(
            Path::new(env!("CARGO_BIN_EXE_gen-manifests")),
            services,
            10,
            dir.join("cluster.yaml"),
        ),
        "gen-manifests",
    );
    let mut objects = ok(
        yaml_objects(&ok(std::fs::read_to_string(&generated), "read")),
        "yaml",
    );
    let api = ok(
        ApiServer::start_in_netns(ns.name(), "127.0.0.1:0".parse().unwrap()),
        "stand-in",
    );
    let kubeconfig = dir.join("kubeconfig");
    ok(api.write_kubeconfig(&kubeconfig), "kubeconfig");
    for o in &objects {
        ok(api.apply(o.clone()), "stand-in apply");
    }
    let slices: Vec<usize> = (0..objects.len())
        .filter(|&i| objects[i]["kind"] == json!("EndpointSlice"))
        .collect();

    let daemon = ok(Daemon::start(&ns, &kubeconfig, &[]), "nftopo run");
    let pid = daemon.pid().expect("running");
    let synced = |text: &str| {
        metric_value(text, "kubeproxy_sync_proxy_rules_last_timestamp_seconds")
            .is_some_and(|t| t > 0.0)
    };
    let metrics = || -> String {
        match http_get(ns.name(), METRICS_ADDR.parse().unwrap(), "/metrics") {
            Ok((200, t)) => t,
            _ => String::new(),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !synced(&metrics()) {
        assert!(
            Instant::now() < deadline,
            "no first sync:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let settle = |what: &str| {
        // Settled: no change pending and two metric reads a second apart
        // agree on the last sync time.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let a = metrics();
            std::thread::sleep(Duration::from_secs(1));
            let b = metrics();
            let pending = metric_value(&b, "kubeproxy_sync_proxy_rules_endpoint_changes_pending");
            let last =
                |t: &str| metric_value(t, "kubeproxy_sync_proxy_rules_last_timestamp_seconds");
            if pending == Some(0.0) && last(&a) == last(&b) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: never settled\n{}",
                daemon.log()
            );
        }
    };
    settle("after the first sync");
    let before = process_stats(pid);

    // Churn: flip one endpoint's readiness per change, `rate` per second.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let total = rate * seconds;
    let start = Instant::now();
    for n in 0..total {
        let i = slices[(next() % slices.len() as u64) as usize];
        let e = (next() % 10) as usize;
        let ready = &mut objects[i]["endpoints"][e]["conditions"]["ready"];
        *ready = json!(!ready.as_bool().unwrap_or(true));
        let mut o = objects[i].clone();
        if let Some(m) = o["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        ok(api.apply(o), "stand-in apply");
        let due = start + Duration::from_secs_f64((n + 1) as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let churn = start.elapsed();
    settle("after the churn");
    let after = process_stats(pid);

    // The kernel holds what a fresh apply of the final objects programs.
    let final_state = dir.join("final.json");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    ok(
        std::fs::write(&final_state, list.to_string()),
        "write final state",
    );
    let scratch = ok(
        Netns::create(format!("{}-soak-ref", unique_prefix())),
        "netns",
    );
    ok(
        apply(
            &scratch,
            THIS_NODE,
            &[final_state],
            &["--cluster-cidr", CLUSTER_CIDR],
        ),
        "reference apply",
    );
    let (got, want) = (canonical_table(&ns), canonical_table(&scratch));
    assert!(!want.is_empty());
    if got != want {
        let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).take(10).collect();
        let extra: Vec<&String> = got.iter().filter(|g| !want.contains(g)).take(10).collect();
        panic!(
            "read-back differs from the plan: {} vs {} atoms; missing {missing:?}; extra {extra:?}",
            got.len(),
            want.len()
        );
    }
    println!(
        "soak: {services} services, {total} slice changes in {churn:.1?} ({:.0}/s); \
         RSS {} -> {} KiB, threads {} -> {}, fds {} -> {}",
        total as f64 / churn.as_secs_f64(),
        before.0,
        after.0,
        before.1,
        after.1,
        before.2,
        after.2
    );
    assert_eq!(after.1, before.1, "threads: {before:?} -> {after:?}");
    assert!(
        after.2 <= before.2 + 2,
        "file descriptors: {before:?} -> {after:?}"
    );
    // Back to the plateau: allocator slack, not growth with the number of
    // changes (a leak of even 100 bytes per change would show at 60k).
    assert!(
        after.0 <= before.0 + before.0 / 4 + 16 * 1024,
        "RSS {} KiB -> {} KiB",
        before.0,
        after.0
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
