//! kube-proxy's UDP conntrack clean-up with real traffic (needs root):
//! after a sync, a UDP flow keeps its pod as long as that pod *serves*
//! (ready, or serving and terminating), whatever new connections use
//! (kubernetes/kubernetes pkg/proxy/conntrack/cleanup.go,
//! `CleanStaleEntries`: "we do not take traffic policies, topology, or
//! terminating status of the service into account"); a flow whose pod
//! stopped serving goes, and its next datagram reaches a serving pod.
//!
//! One [`EdgeCluster`] (node-2 programmed; pods a, b on node-2; the client
//! `client` on node-2) and one Service written here, `default/dgram`
//! (10.43.40.1, UDP 53 -> `testpod`'s 5000, every answer naming the pod).
//! Each sync is an `nftopo apply` in node-2, which converges the ruleset
//! and then cleans node-2's UDP conntrack table, as the daemon does after
//! every sync. The client holds its flows (fixed source ports) in this
//! process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nftopo_integration::daemon::yaml_objects;
use nftopo_integration::edge::{edge_manifests_dir, pod_spec, sa, EdgeCluster};
use nftopo_integration::{require_root, spawn_in_netns, unique_prefix};
use serde_json::{json, Value};

/// `default/dgram`'s cluster IP and port.
const DGRAM_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 40, 1);
const DGRAM_PORT: u16 = 53;
/// The port `testpod serve` answers UDP on in every backend.
const TESTPOD_PORT: u16 = 5000;
/// How long an answer may take.
const ANSWER: Duration = Duration::from_secs(2);
/// The client's flows: one per source port.
const FLOW_PORTS: [u16; 3] = [41001, 41002, 41003];

fn ok<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn ip4(pod: &str) -> IpAddr {
    IpAddr::V4(pod_spec(pod).ip4)
}

/// An endpoint's conditions.
#[derive(Debug, Clone, Copy)]
enum Cond {
    Ready,
    /// Being deleted, still answering (its readiness probe passes).
    ServingTerminating,
    /// Being deleted, no longer answering for the Service.
    Terminating,
}

/// The edge nodes, `dgram` and its one slice with `endpoints`.
fn objects(endpoints: &[(&str, Cond)]) -> Vec<Value> {
    let nodes = ok(
        std::fs::read_to_string(edge_manifests_dir().join("nodes.yaml")),
        "edge nodes.yaml",
    );
    let mut all = ok(yaml_objects(&nodes), "edge nodes.yaml");
    all.push(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "dgram", "namespace": "default"},
        "spec": {"type": "ClusterIP", "clusterIP": DGRAM_IP.to_string(),
                 "clusterIPs": [DGRAM_IP.to_string()],
                 "ports": [{"port": DGRAM_PORT, "protocol": "UDP", "targetPort": TESTPOD_PORT}]}}));
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(pod, cond)| {
            let (ready, serving, terminating) = match cond {
                Cond::Ready => (true, true, false),
                Cond::ServingTerminating => (false, true, true),
                Cond::Terminating => (false, false, true),
            };
            json!({"addresses": [pod_spec(pod).ip4.to_string()],
                   "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                   "nodeName": pod_spec(pod).node})
        })
        .collect();
    all.push(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "dgram-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "dgram"}},
        "addressType": "IPv4",
        "ports": [{"name": "", "port": TESTPOD_PORT, "protocol": "UDP"}],
        "endpoints": eps}),
    );
    all
}

/// The edge cluster and a scratch directory for the state file.
struct World {
    cluster: EdgeCluster,
    dir: PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl World {
    fn new() -> World {
        require_root();
        let cluster = ok(
            EdgeCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))),
            "edge cluster",
        );
        let dir = std::env::temp_dir().join(format!("{}-parity-ct", unique_prefix()));
        ok(std::fs::create_dir_all(&dir), "scratch dir");
        World { cluster, dir }
    }

    /// One sync: `nftopo apply` of `dgram` with `endpoints`; returns its
    /// log (stderr).
    fn sync(&self, endpoints: &[(&str, Cond)]) -> String {
        let path = self.dir.join("state.json");
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects(endpoints)});
        ok(std::fs::write(&path, list.to_string()), "write state.json");
        let file = path.display().to_string();
        ok(self.cluster.apply(&[&file], &[]), "nftopo apply").1
    }

    /// A UDP socket in `client`, bound to `port`, connected to `dgram`.
    fn flow(&self, port: u16) -> UdpSocket {
        let target: SocketAddr = sa(DGRAM_IP, DGRAM_PORT);
        let socket = ok(
            ok(
                spawn_in_netns(self.cluster.ns("client").name(), move || {
                    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?;
                    s.connect(target)?;
                    Ok::<_, std::io::Error>(s)
                })
                .join()
                .expect("bind thread"),
                "join the client's namespace",
            ),
            &format!("UDP socket client:{port}"),
        );
        ok(socket.set_read_timeout(Some(ANSWER)), "read timeout");
        socket
    }
}

/// Sends one datagram; the pod that answered.
fn ask(socket: &UdpSocket) -> Result<IpAddr, String> {
    socket
        .send(b"who are you?\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 1500];
    let n = socket
        .recv(&mut buf)
        .map_err(|e| format!("no answer: {e}"))?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("bad answer {text:?}"))
}

/// Which pod each flow reaches now, by source port.
fn reached(flows: &[(u16, UdpSocket)]) -> Vec<(u16, Result<IpAddr, String>)> {
    flows.iter().map(|(port, s)| (*port, ask(s))).collect()
}

fn all_on(pod: &str) -> Vec<(u16, Result<IpAddr, String>)> {
    FLOW_PORTS.iter().map(|p| (*p, Ok(ip4(pod)))).collect()
}

#[test]
fn a_udp_flow_to_a_terminating_but_serving_pod_keeps_going_after_a_sync() {
    let w = World::new();
    // Only a: every flow lands on a.
    w.sync(&[("a", Cond::Ready)]);
    let flows: Vec<(u16, UdpSocket)> = FLOW_PORTS.iter().map(|p| (*p, w.flow(*p))).collect();
    assert_eq!(reached(&flows), all_on("a"), "before the change");

    // a is being deleted but still serves; b is ready. New flows go to b
    // only; a's flows stay on a after the sync and its clean-up.
    let log = w.sync(&[("a", Cond::ServingTerminating), ("b", Cond::Ready)]);
    let fresh = w.flow(41010);
    for _ in 0..4 {
        assert_eq!(
            ask(&fresh),
            Ok(ip4("b")),
            "a new flow goes to the ready pod"
        );
    }
    assert_eq!(
        reached(&flows),
        all_on("a"),
        "flows to a serving, terminating pod are kept; apply said:\n{log}"
    );

    // a stops serving: its flows go, and their next datagram reaches b.
    let log = w.sync(&[("a", Cond::Terminating), ("b", Cond::Ready)]);
    assert_eq!(
        reached(&flows),
        all_on("b"),
        "flows to a pod that no longer serves are deleted; apply said:\n{log}"
    );
    assert_eq!(ask(&fresh), Ok(ip4("b")));
}
