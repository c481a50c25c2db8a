//! Reliability on a real kernel (needs root): nothing a crash, a bad
//! kernel answer, a meddling administrator or a shortage of privileges
//! does may leave a node with half a ruleset or without service.
//!
//! * `apply` killed (SIGKILL) at random points, 100 times: the kernel
//!   always holds exactly the previous or the new ruleset:
//!   `apply_killed_at_random_leaves_the_old_or_the_new_ruleset_never_a_mix`
//! * the daemon killed and restarted under a long-lived TCP flow through
//!   a service: the flow keeps going:
//!   `an_established_flow_survives_daemon_kills_and_restarts`
//! * a transaction the kernel refuses (made to fail by deleting the map
//!   element it will delete) is logged naming the operation, counted,
//!   and followed by a full sync that converges:
//!   `a_refused_transaction_is_logged_counted_and_followed_by_a_full_sync`
//! * a rule added, a chain deleted, the table flushed or deleted by hand:
//!   the periodic full sync restores the exact ruleset with only the
//!   operations the tampering needs, and counts it as drift:
//!   `tampering_is_undone_by_the_periodic_full_sync`
//! * the daemon with CAP_NET_ADMIN only, as an unprivileged user:
//!   `the_daemon_needs_only_cap_net_admin`
//!
//! The API-fault cases (dropped watches, 410 Gone, slow and restarted
//! API servers; rules never flushed while the API is away) are in
//! `tests/daemon.rs`; route tampering in `tests/routes.rs` and the route
//! daemon test there.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nftopo_integration::apiserver::ApiServer;
use nftopo_integration::daemon::*;
use nftopo_integration::*;
use serde_json::{json, Value};

const CONVERGE: Duration = Duration::from_secs(10);
const SEED: [&str; 3] = ["nodes.yaml", "svc-plain.yaml", "slices-v1.yaml"];
const E: Ipv4Addr = Ipv4Addr::new(10, 42, 201, 2);

/// One namespace-heavy test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn ok<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Waits (bounded) for `cond`; panics with `what` and `context()`.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + CONVERGE;
    while !cond() {
        if Instant::now() > deadline {
            panic!("{what} did not happen within {CONVERGE:?}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A seed cluster, the API stand-in in node-2 holding the seed objects,
/// and (once started) the daemon there.
struct World {
    daemon: Option<Daemon>,
    api: ApiServer,
    cluster: SeedCluster,
    dir: PathBuf,
    kubeconfig: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

impl Drop for World {
    fn drop(&mut self) {
        self.daemon = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl World {
    fn new() -> World {
        let guard = serial();
        require_root();
        let cluster = ok(
            SeedCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))),
            "seed cluster",
        );
        let api = ok(
            ApiServer::start_in_netns(
                cluster.node(THIS_NODE).name(),
                "127.0.0.1:0".parse().unwrap(),
            ),
            "stand-in",
        );
        let dir = std::env::temp_dir().join(format!("{}-reliability", unique_prefix()));
        ok(std::fs::create_dir_all(&dir), "scratch dir");
        let kubeconfig = dir.join("kubeconfig");
        ok(api.write_kubeconfig(&kubeconfig), "kubeconfig");
        for f in SEED {
            for obj in ok(seed_objects(f), f) {
                ok(api.apply(obj), "stand-in apply");
            }
        }
        World {
            daemon: None,
            api,
            cluster,
            dir,
            kubeconfig,
            _serial: guard,
        }
    }

    fn node2(&self) -> &Netns {
        self.cluster.node(THIS_NODE)
    }

    fn start(&mut self, extra: &[&str]) {
        self.start_as(extra, &[]);
    }

    fn start_as(&mut self, extra: &[&str], wrapper: &[&str]) {
        self.daemon = Some(ok(
            Daemon::start_as(self.node2(), &self.kubeconfig, extra, wrapper),
            "nftopo run",
        ));
    }

    fn log(&self) -> String {
        let all = self.daemon.as_ref().map(Daemon::log).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn endpoints(&self, ip: Ipv4Addr, port: u16) -> Option<std::collections::BTreeSet<Ipv4Addr>> {
        ok(kernel_endpoints(self.node2(), ip, port), "nft list map")
    }

    /// Waits until the seed service has exactly `want` in the kernel.
    fn wait_endpoints(&self, want: &std::collections::BTreeSet<Ipv4Addr>, what: &str) {
        wait_for(
            what,
            || self.endpoints(SERVICE_IP, SERVICE_PORT).as_ref() == Some(want),
            || self.log(),
        );
    }

    /// 50 connections from the client pod, all answered, by exactly `want`.
    fn assert_serves(&self, want: &std::collections::BTreeSet<Ipv4Addr>, what: &str) {
        let r = ok(
            self.cluster
                .probe_from_pod(CLIENT, service_addr(), 50, false),
            "probe",
        );
        assert_eq!(r.answered_count(), 50, "{what}: {r}");
        assert_eq!(&r.answered(), want, "{what}: {r}");
    }

    fn metrics(&self) -> String {
        let addr: SocketAddr = METRICS_ADDR.parse().unwrap();
        match http_get(self.node2().name(), addr, "/metrics") {
            Ok((200, text)) => text,
            _ => String::new(),
        }
    }
}

/// `nftopo_drift_repairs_total` by kind, from the metrics text.
fn drift(metrics: &str) -> std::collections::BTreeMap<String, u64> {
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("nftopo_drift_repairs_total{kind=\"")?;
            let (kind, value) = rest.split_once("\"} ")?;
            Some((kind.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Rules in `table ip nftopo` (one line each in `nft list`), and those of
/// the base chain `nat-prerouting`.
fn rule_counts(ns: &Netns) -> (u64, u64) {
    let text = ok(
        ns.exec("nft", &["list", "table", "ip", "nftopo"]),
        "nft list",
    );
    let (mut all, mut prerouting) = (0, 0);
    let mut chain: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("chain ") {
            chain = Some(name.trim_end_matches(" {").to_string());
        } else if t == "}" {
            chain = None;
        } else if chain.is_some() && !t.is_empty() && !t.starts_with("type ") {
            all += 1;
            if chain.as_deref() == Some("nat-prerouting") {
                prerouting += 1;
            }
        }
    }
    (all, prerouting)
}

/// The operations of the last full sync that sent any (`synced
/// full=true operations=N`, logged at -v; the periodic syncs after a
/// repair send none).
fn last_full_sync_operations(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter(|l| l.contains("synced") && l.contains("full=true"))
        .filter_map(|l| l.split("operations=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter_map(|n| n.parse().ok())
        .find(|n| *n > 0)
}

#[test]
fn tampering_is_undone_by_the_periodic_full_sync() {
    let mut w = World::new();
    w.start(&["--full-sync-period", "2s", "-v"]);
    w.wait_endpoints(&backends(), "first sync");
    // Let one periodic sync pass so that the baseline is a steady state.
    std::thread::sleep(Duration::from_millis(2500));
    let baseline = canonical_table(w.node2());
    assert!(!baseline.is_empty());
    assert_eq!(drift(&w.metrics()), Default::default(), "no drift yet");
    let (rules, prerouting) = rule_counts(w.node2());
    assert!(
        rules > 5 && prerouting >= 1,
        "{rules} rules, {prerouting} in nat-prerouting"
    );
    let node2 = w.node2().name().to_string();
    let nft = |args: &str| -> Result<String> {
        let ns = w.node2();
        ns.exec("nft", &args.split_whitespace().collect::<Vec<_>>())
    };
    // What each tampering needs repaired (drift by kind) and how many
    // operations the repair takes: no more than what was changed.
    type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, u64)], Option<u64>);
    let cases: [Case; 4] = [
        (
            "a rule added that drops the service",
            &["insert rule ip nftopo nat-prerouting ip daddr 10.43.118.32 drop"],
            &[("rule", 1)],
            // flush the chain, add its rules back
            Some(1 + prerouting),
        ),
        (
            "a base chain deleted",
            &["delete chain ip nftopo nat-prerouting"],
            &[("chain", 1)],
            // add the chain, add its rules
            Some(1 + prerouting),
        ),
        (
            "the table flushed",
            &["flush table ip nftopo"],
            &[("rule", rules)],
            // every rule added back; no element or set touched
            Some(rules),
        ),
        (
            "the table deleted",
            &["delete table ip nftopo"],
            &[("table", 1)],
            None,
        ),
    ];
    for (what, commands, repairs, operations) in cases {
        let before = drift(&w.metrics());
        for c in commands {
            ok(nft(c), &format!("{what}: nft {c} in {node2}"));
        }
        assert_ne!(
            canonical_table(w.node2()),
            baseline,
            "{what}: the tampering took"
        );
        wait_for(
            &format!("{what}: restored"),
            || canonical_table(w.node2()) == baseline,
            || w.log(),
        );
        w.assert_serves(&backends(), what);
        let mut want = before.clone();
        for (kind, n) in repairs {
            *want.entry(kind.to_string()).or_default() += n;
        }
        wait_for(
            &format!("{what}: drift counted"),
            || drift(&w.metrics()) == want,
            || {
                format!(
                    "drift {:?}, want {want:?}\n{}",
                    drift(&w.metrics()),
                    w.log()
                )
            },
        );
        let log = w.daemon.as_ref().map(Daemon::log).unwrap_or_default();
        assert!(
            log.contains("drift repaired: "),
            "{what}: logged\n{}",
            w.log()
        );
        if let Some(n) = operations {
            assert_eq!(
                last_full_sync_operations(&log),
                Some(n),
                "{what}: operations of the repair\n{}",
                w.log()
            );
        }
    }
}

/// The seed slices with node-4's pod (10.42.201.2) left out of the slice
/// that holds it.
fn slices_without_e() -> Vec<Value> {
    let mut slices = ok(seed_objects("slices-v1.yaml"), "slices");
    for s in &mut slices {
        if let Some(list) = s["endpoints"].as_array() {
            let kept: Vec<Value> = list
                .iter()
                .filter(|e| e["addresses"][0] != json!(E.to_string()))
                .cloned()
                .collect();
            s["endpoints"] = kept.into();
        }
    }
    slices
}

#[test]
fn a_refused_transaction_is_logged_counted_and_followed_by_a_full_sync() {
    let mut w = World::new();
    w.start(&[]);
    w.wait_endpoints(&backends(), "first sync");
    // The service spreads over five endpoints, indexes 0..=4. Delete the
    // element with index 4 behind the daemon's back: its next
    // incremental sync (the service losing a pod) deletes that element
    // too, and the kernel refuses the whole transaction (ENOENT).
    ok(
        w.node2().exec(
            "nft",
            &[
                "delete",
                "element",
                "ip",
                "nftopo",
                "service-endpoints",
                "{ 10.43.118.32 . tcp . 80 . 14 }",
            ],
        ),
        "delete an element by hand",
    );
    for s in slices_without_e() {
        ok(w.api.apply(s), "stand-in apply");
    }
    let mut want = backends();
    want.remove(&E);
    wait_for(
        "the refusal, logged with the operation",
        || {
            let log = w.daemon.as_ref().map(Daemon::log).unwrap_or_default();
            log.contains("sync failed") && log.contains("service-endpoints")
        },
        || w.log(),
    );
    wait_for(
        "the refusal counted",
        || {
            metric_value(
                &w.metrics(),
                "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
            )
            .is_some_and(|v| v >= 1.0)
        },
        || w.metrics(),
    );
    // The retry (after 1 s of backoff) is a full sync, and it converges:
    // the hand-deleted element was the one to go, so only the full
    // listing tells that the kernel again holds the plan.
    wait_for(
        "a full sync after the refusal",
        || {
            let log = w.daemon.as_ref().map(Daemon::log).unwrap_or_default();
            log.find("sync failed")
                .is_some_and(|at| log[at..].contains("synced full=true"))
        },
        || w.log(),
    );
    w.wait_endpoints(&want, "converged after the refusal");
    let log = w.daemon.as_ref().map(Daemon::log).unwrap_or_default();
    assert!(
        log.contains("the kernel refused operation"),
        "the failing operation is named:\n{}",
        w.log()
    );
    w.assert_serves(&want, "after the refusal");
}

#[test]
fn the_daemon_needs_only_cap_net_admin() {
    let mut w = World::new();
    let setpriv = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all,+net_admin",
        "--ambient-caps=-all,+net_admin",
        "--bounding-set=-all,+net_admin",
        "--",
    ];
    // The unprivileged user must be able to read the kubeconfig.
    for p in [&w.dir, &w.kubeconfig] {
        ok(
            Command::new("chmod")
                .args(["a+rX", &p.display().to_string()])
                .status(),
            "chmod",
        );
    }
    w.start_as(&[], &setpriv);
    w.wait_endpoints(&backends(), "first sync without root");
    w.assert_serves(&backends(), "programmed by an unprivileged daemon");
    let pid = w.daemon.as_ref().and_then(Daemon::pid).expect("running");
    let status = ok(
        std::fs::read_to_string(format!("/proc/{pid}/status")),
        "status",
    );
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    // CAP_NET_ADMIN is capability 12.
    assert_eq!(field("CapEff:"), "0000000000001000", "{status}");
    assert_eq!(field("CapBnd:"), "0000000000001000", "{status}");
    assert!(field("Uid:").starts_with("65534"), "{status}");
    // It keeps up with changes too (incremental syncs, conntrack).
    for s in slices_without_e() {
        ok(w.api.apply(s), "stand-in apply");
    }
    let mut want = backends();
    want.remove(&E);
    w.wait_endpoints(&want, "an incremental sync without root");
    assert!(!w.log().contains("ERROR"), "{}", w.log());
}

/// A TCP echo server on `port` in `netns` until `stop` is set.
fn echo_server(netns: &str, port: u16, stop: Arc<AtomicBool>) {
    let _ = spawn_in_netns(netns, move || {
        let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind echo");
        listener.set_nonblocking(true).expect("nonblocking");
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    conn.set_nonblocking(false).expect("blocking");
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64];
                        conn.set_read_timeout(Some(Duration::from_millis(200))).ok();
                        while !stop.load(Ordering::Relaxed) {
                            match conn.read(&mut buf) {
                                Ok(0) => return,
                                Ok(n) => {
                                    if conn.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
}

#[test]
fn an_established_flow_survives_daemon_kills_and_restarts() {
    const ECHO_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 118, 50);
    const C: Ipv4Addr = Ipv4Addr::new(10, 42, 54, 130);
    let mut w = World::new();
    for obj in [
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "echo", "namespace": "default"},
               "spec": {"type": "ClusterIP", "clusterIP": ECHO_IP.to_string(), "clusterIPs": [ECHO_IP.to_string()],
                        "ports": [{"port": 7000, "protocol": "TCP", "targetPort": 5001}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "echo-1", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "echo"}},
               "addressType": "IPv4",
               "ports": [{"name": "", "port": 5001, "protocol": "TCP"}],
               "endpoints": [{"addresses": [C.to_string()], "conditions": {"ready": true}, "nodeName": "node-3"}]}),
    ] {
        ok(w.api.apply(obj), "stand-in apply");
    }
    let stop = Arc::new(AtomicBool::new(false));
    echo_server(
        w.cluster.pod("swansea-city-api-c").name(),
        5001,
        stop.clone(),
    );
    w.start(&[]);
    wait_for(
        "the echo service programmed",
        || w.endpoints(ECHO_IP, 7000).is_some_and(|e| e.contains(&C)),
        || w.log(),
    );
    // One connection, a round trip every 20 ms for the whole test.
    let done = Arc::new(AtomicBool::new(false));
    let client_done = done.clone();
    let client = spawn_in_netns(
        w.cluster.pod(CLIENT).name(),
        move || -> std::result::Result<u64, String> {
            let target = SocketAddr::from((ECHO_IP, 7000));
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))
                .map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(3))).ok();
            let mut n: u64 = 0;
            while !client_done.load(Ordering::Relaxed) {
                s.write_all(&n.to_be_bytes())
                    .map_err(|e| format!("write after {n} round trips: {e}"))?;
                let mut back = [0u8; 8];
                s.read_exact(&mut back)
                    .map_err(|e| format!("read after {n} round trips: {e}"))?;
                if u64::from_be_bytes(back) != n {
                    return Err(format!("echo mismatch at {n}"));
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(n)
        },
    );
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        // Dropping the daemon kills it with SIGKILL; the next one takes
        // the kernel's tables back and converges them in one transaction.
        w.daemon = None;
        w.start(&[]);
        wait_for(
            &format!("restart {round}: synced"),
            || {
                metric_value(
                    &w.metrics(),
                    "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                )
                .is_some_and(|t| t > 0.0)
            },
            || w.log(),
        );
    }
    std::thread::sleep(Duration::from_millis(700));
    done.store(true, Ordering::Relaxed);
    let result = client.join().expect("client thread");
    stop.store(true, Ordering::Relaxed);
    let trips = ok(ok(result, "setns"), "the long-lived flow");
    assert!(trips > 50, "only {trips} round trips");
    println!("long-lived flow: {trips} round trips across 3 daemon kills and restarts");
}

/// A small deterministic generator (xorshift64*), seeded from the clock
/// and printed, so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    /// Seeded from `NFTOPO_KILL_SEED`, else from the clock; prints the seed.
    fn seeded() -> Rng {
        let seed = std::env::var("NFTOPO_KILL_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        println!("NFTOPO_KILL_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Whether `got` is ruleset `new` as the first of apply's two
/// transactions leaves it: `apply` converges in one transaction and
/// deletes, in a second one, the chains that transaction stopped using
/// (left empty) and the endpoint elements it stopped using (left as
/// they were in `old`). So `got` holds all of `new`, and anything more
/// is an atom of `old` (no atom of anything else).
fn is_new_with_leftovers_of_old(got: &[String], new: &[String], old: &[String]) -> bool {
    let mut extra: Vec<&String> = Vec::new();
    let mut n = new.iter().peekable();
    for g in got {
        match n.peek() {
            Some(x) if *x == g => {
                n.next();
            }
            _ => extra.push(g),
        }
    }
    n.peek().is_none() && extra.iter().all(|e| old.contains(e))
}

#[test]
fn apply_killed_at_random_leaves_the_old_or_the_new_ruleset_never_a_mix() {
    let _serial = serial();
    require_root();
    let kills: usize = std::env::var("NFTOPO_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut rng = Rng::seeded();
    let ns = ok(Netns::create(format!("{}-kill", unique_prefix())), "netns");
    let dir = std::env::temp_dir().join(format!("{}-kill", unique_prefix()));
    ok(std::fs::create_dir_all(&dir), "dir");
    let gen = |endpoints: u64, file: &str| -> PathBuf {
        let bin = Path::new(env!("CARGO_BIN_EXE_gen-manifests"));
        ok(
            gen_manifests(bin, 1000, endpoints, dir.join(file)),
            "gen-manifests",
        )
    };
    // Two rulesets that differ everywhere: 1,000 services with 10 and
    // with 9 endpoints.
    let a = gen(10, "a.yaml");
    let b = gen(9, "b.yaml");
    let bin = ok(nftopo_bin(), "nftopo");
    let apply_cmd = |m: &Path| {
        let mut c = ns.command(&bin, &["apply", "--node", "node-0", "--manifests"]);
        c.arg(m);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let apply = |m: &Path| {
        let st = apply_cmd(m).status().expect("apply");
        assert!(st.success(), "apply {}", m.display());
    };
    let started = Instant::now();
    apply(&b);
    let full = started.elapsed();
    let canon_b = canonical_table(&ns);
    apply(&a);
    let canon_a = canonical_table(&ns);
    assert_ne!(canon_a, canon_b);
    assert!(!canon_a.is_empty() && !canon_b.is_empty());
    let (mut now_a, mut stayed, mut switched) = (true, 0, 0);
    for i in 0..kills {
        let target = if now_a { &b } else { &a };
        let mut child = apply_cmd(target).spawn().expect("spawn apply");
        // Anywhere from the start to a bit past a whole apply.
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64 * 12 / 10 + 1));
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let got = canonical_table(&ns);
        let is_a = got == canon_a || is_new_with_leftovers_of_old(&got, &canon_a, &canon_b);
        let is_b = got == canon_b || is_new_with_leftovers_of_old(&got, &canon_b, &canon_a);
        assert!(
            is_a || is_b,
            "kill {i} after {delay:?} left neither ruleset ({} atoms; a {}, b {})",
            got.len(),
            canon_a.len(),
            canon_b.len()
        );
        if is_a == now_a {
            stayed += 1;
        } else {
            switched += 1;
        }
        now_a = is_a;
    }
    // The next run converges: after one more apply, nothing differs and
    // no leftover chain remains.
    let last = if now_a { &a } else { &b };
    apply(last);
    assert_eq!(
        canonical_table(&ns),
        if now_a {
            canon_a.clone()
        } else {
            canon_b.clone()
        },
        "the apply after the kills converged"
    );
    let diff = ns
        .command(&bin, &["diff", "--node", "node-0", "--manifests"])
        .arg(last)
        .output()
        .expect("nftopo diff");
    assert_eq!(
        diff.status.code(),
        Some(0),
        "in step after the kills: {}",
        String::from_utf8_lossy(&diff.stdout)
    );
    println!(
        "{kills} kills of nftopo apply (a full apply takes {full:?}): {stayed} left the old ruleset, \
         {switched} the new one, 0 a mix"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_daemon_killed_at_random_leaves_the_old_or_the_new_ruleset_never_a_mix() {
    let _serial = serial();
    require_root();
    let kills: usize = std::env::var("NFTOPO_RUN_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut rng = Rng::seeded();
    let ns = ok(
        Netns::create(format!("{}-runkill", unique_prefix())),
        "netns",
    );
    let dir = std::env::temp_dir().join(format!("{}-runkill", unique_prefix()));
    ok(std::fs::create_dir_all(&dir), "dir");
    let gen = |endpoints: u64, file: &str| -> PathBuf {
        let bin = Path::new(env!("CARGO_BIN_EXE_gen-manifests"));
        ok(
            gen_manifests(bin, 1000, endpoints, dir.join(file)),
            "gen-manifests",
        )
    };
    // The kernel starts from A (apply, 9 endpoints per service); the API
    // holds B (10 endpoints per service), to which the daemon converges
    // the kernel in one transaction when it starts.
    let a = gen(9, "a.yaml");
    let b = gen(10, "b.yaml");
    let api = ok(
        ApiServer::start_in_netns(ns.name(), "127.0.0.1:0".parse().unwrap()),
        "stand-in",
    );
    let kubeconfig = dir.join("kubeconfig");
    ok(api.write_kubeconfig(&kubeconfig), "kubeconfig");
    let text = ok(std::fs::read_to_string(&b), "read");
    for o in ok(yaml_objects(&text), "yaml") {
        ok(api.apply(o), "stand-in apply");
    }
    let reset = || {
        ok(
            apply(
                &ns,
                THIS_NODE,
                std::slice::from_ref(&a),
                &["--cluster-cidr", CLUSTER_CIDR],
            ),
            "apply A",
        )
    };
    reset();
    let canon_a = canonical_table(&ns);
    // B as the daemon programs it, and how long that takes.
    let started = Instant::now();
    let daemon = ok(Daemon::start(&ns, &kubeconfig, &[]), "nftopo run");
    wait_for(
        "the daemon's first sync",
        || daemon.log().contains("converged the kernel's tables"),
        || daemon.log(),
    );
    let full = started.elapsed();
    drop(daemon);
    let canon_b = canonical_table(&ns);
    assert!(!canon_a.is_empty() && !canon_b.is_empty() && canon_a != canon_b);
    // B's new endpoint count (10) has its `spread` rule sent in a
    // transaction of its own before the one that moves the elements
    // (nft-writer's engine/ahead.rs): A with that rule is a state the
    // daemon leaves on purpose, and a new connection meets the same
    // rules and elements as in A (the rule finds no element until the
    // next transaction). Anything else in between is a mix.
    let ahead: Vec<&String> = canon_b
        .iter()
        .filter(|a| a.contains("numgen random mod") && !canon_a.contains(a))
        .collect();
    assert!(!ahead.is_empty(), "B's spread rule for 10 endpoints");
    let mut canon_ahead = canon_a.clone();
    canon_ahead.extend(ahead.into_iter().cloned());
    canon_ahead.sort();
    let (mut old, mut new, mut between) = (0, 0, 0);
    for i in 0..kills {
        reset();
        let daemon = ok(Daemon::start(&ns, &kubeconfig, &[]), "nftopo run");
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64 * 12 / 10 + 1));
        std::thread::sleep(delay);
        drop(daemon); // SIGKILL
        let got = canonical_table(&ns);
        if got == canon_a {
            old += 1;
        } else if got == canon_ahead {
            between += 1;
        } else if got == canon_b {
            new += 1;
        } else {
            panic!(
                "kill {i} after {delay:?} left neither ruleset ({} atoms)",
                got.len()
            );
        }
    }
    println!(
        "{kills} kills of nftopo run (start to first sync takes {full:?}): {old} left the old \
         ruleset, {between} the old one with the new count's rule sent ahead, {new} the new \
         one, 0 a mix"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
