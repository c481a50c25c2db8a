//! Helpers of the kernel tests: a network namespace per test thread, `ip`
//! as the witness, this node's underlay and a small cluster.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Command;

use api_watch::Node;
use route_sync::*;

/// Runs `f` on a thread inside a fresh network namespace; `f` gets the
/// path of that namespace for `nsenter --net=`.
pub fn in_netns<F: FnOnce(String) + Send + 'static>(f: F) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kernel tests need root (network namespaces and CAP_NET_ADMIN)"
    );
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let path = format!(
            "/proc/{}/task/{}/ns/net",
            std::process::id(),
            nix::unistd::gettid()
        );
        f(path)
    })
    .join()
    .expect("test thread panicked");
}

/// `ip ARGS` in the namespace; panics on failure.
pub fn ip(ns: &str, args: &str) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .arg("ip")
        .args(args.split_whitespace())
        .output()
        .expect("nsenter ip");
    assert!(
        out.status.success(),
        "ip {args} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// This node (node-2) on 172.31.11.157/20 and fd00:31::2/64 over `eth0`
/// (a veth), and a veth named `tunl0` standing in for the IPIP device
/// this kernel cannot create.
pub fn underlay(ns: &str, with_tunl0: bool) {
    ip(ns, "link set lo up");
    ip(ns, "link add eth0 type veth peer name eth0p");
    ip(ns, "addr add 172.31.11.157/20 dev eth0");
    ip(ns, "addr add fd00:31::2/64 dev eth0 nodad");
    ip(ns, "link set eth0 up");
    ip(ns, "link set eth0p up");
    if with_tunl0 {
        ip(ns, "link add tunl0 type veth peer name tunl0p");
        ip(ns, "link set tunl0p up");
    }
}

/// Our routes as `ip` prints them, sorted; `proto bird` is 12.
pub fn our_routes(ns: &str) -> Vec<String> {
    let mut lines: Vec<String> = ["-4", "-6"]
        .iter()
        .flat_map(|fam| {
            ip(ns, &format!("{fam} route show table main"))
                .lines()
                .filter(|l| l.contains("proto bird"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

pub fn node(name: &str, ips: &[&str], cidrs: &[&str]) -> Node {
    Node {
        name: name.into(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        addresses: ips
            .iter()
            .map(|s| ("InternalIP".to_string(), s.parse().unwrap()))
            .collect(),
        pod_cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
        deleting: false,
    }
}

pub fn cluster() -> Vec<Node> {
    vec![
        node("node-2", &["172.31.11.157"], &["10.42.54.128/26"]),
        node("node-3", &["172.31.4.10"], &["10.42.187.64/26"]),
        node("node-4", &["172.31.40.20"], &["10.42.201.0/26"]),
    ]
}

pub fn sync_to(k: &mut NetlinkRoutes, nodes: &[Node], cfg: &RouteConfig) -> SyncReport {
    let desired = plan_routes(nodes, &[], "node-2", cfg).unwrap();
    assert!(desired.problems.is_empty(), "{:?}", desired.problems);
    let report = sync(k, &desired, cfg.protocol).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    report
}
