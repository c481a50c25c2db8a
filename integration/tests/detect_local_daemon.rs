//! `nftopo run --detect-local-mode NodeCIDR` against the API server
//! stand-in, in the edge cluster (needs root): where kube-proxy waits for
//! its Node's `spec.podCIDRs` at start and exits when they change,
//! nftopo programs the services at once and follows the Node, in the
//! same process. The witnesses are `nft list` and the source address a
//! backend on node-3 sees for connections from `client` (10.42.187.80, a
//! pod of node-2) to a cluster IP: its own while it counts as a pod,
//! node-2's 172.31.11.85 once node-2's pod CIDR no longer holds it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use nftopo_integration::apiserver::ApiServer;
use nftopo_integration::daemon::{yaml_objects, Daemon};
use nftopo_integration::edge::*;
use nftopo_integration::outcome::{ok, Scratch};
use nftopo_integration::{nft_list, require_root, Probe};
use serde_json::{json, Value};

const CONVERGE: Duration = Duration::from_secs(10);
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 20, 1);

fn node2(pod_cidrs: &[&str]) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": "node-2", "labels": {"kubernetes.io/hostname": "node-2"}},
           "spec": {"podCIDRs": pod_cidrs},
           "status": {"addresses": [{"type": "InternalIP", "address": NODE2_IP4.to_string()}]}})
}

/// Waits until node-2's ruleset satisfies `want`; panics with the
/// listing and the daemon's log otherwise.
fn wait_listing(c: &EdgeCluster, d: &Daemon, want: impl Fn(&str) -> bool, case: &str) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let text = nft_list(c.node(THIS_NODE)).unwrap_or_default();
        if want(&text) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{case}: not within {CONVERGE:?}:\n{text}\nlog:\n{}",
                d.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn node_cidr_follows_the_nodes_pod_cidrs_without_a_restart() {
    require_root();
    let c = ok(
        EdgeCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))),
        "edge cluster",
    );
    let node2_ns = c.node(THIS_NODE).name().to_owned();
    let api = ok(
        ApiServer::start_in_netns(&node2_ns, "127.0.0.1:0".parse().unwrap()),
        "stand-in in node-2",
    );
    let scratch = Scratch::new();
    let kubeconfig = scratch.path("kubeconfig");
    ok(api.write_kubeconfig(&kubeconfig), "kubeconfig");
    // node-2 without pod CIDRs yet; web (eTP Local, cluster IP
    // 10.43.20.1) with endpoints c and d on node-3.
    ok(api.apply(node2(&[])), "node-2");
    for f in ["svc-lb-local.yaml", "slices-node-3.yaml"] {
        let text = ok(std::fs::read_to_string(edge_manifests_dir().join(f)), f);
        for obj in ok(yaml_objects(&text), f) {
            ok(api.apply(obj), f);
        }
    }
    let mut d = ok(
        Daemon::start(
            c.node(THIS_NODE),
            &kubeconfig,
            &["--detect-local-mode", "NodeCIDR"],
        ),
        "nftopo run",
    );
    let client = IpAddr::V4(pod_spec("client").ip4);
    let probe = Probe::tcp(sa(CLUSTER_IP, 80), 16);
    let backends = ips4(&["c", "d"]);

    // No pod CIDR: the services are programmed, nothing counts as a pod
    // (kube-proxy would still be waiting).
    wait_listing(
        &c,
        &d,
        // Its endpoints are in the map (`… . 80 . INDEX : ENDPOINT`).
        |t| t.contains("10.43.20.1 . tcp . 80 . ") && !t.contains("ip saddr !="),
        "programmed without a pod CIDR",
    );
    c.expect_served_from("client", &probe, &backends, client, "no pod CIDR yet");

    // The pod CIDR arrives: client is a pod.
    ok(api.apply(node2(&["10.42.187.64/26"])), "node-2's pod CIDR");
    wait_listing(
        &c,
        &d,
        |t| t.contains("ip saddr != 10.42.187.64/26"),
        "the pod CIDR arrived",
    );
    c.expect_served_from(
        "client",
        &probe,
        &backends,
        client,
        "client in the pod CIDR",
    );

    // It changes (kube-proxy exits here): client is no pod any more.
    ok(
        api.apply(node2(&["10.42.99.0/24"])),
        "node-2's new pod CIDR",
    );
    wait_listing(
        &c,
        &d,
        |t| t.contains("ip saddr != 10.42.99.0/24") && !t.contains("10.42.187.64/26"),
        "the pod CIDR changed",
    );
    c.expect_served_from(
        "client",
        &probe,
        &backends,
        NODE2_IP4,
        "client outside the new pod CIDR: masqueraded",
    );
    assert_eq!(d.exited(), None, "still running:\n{}", d.log());
}
