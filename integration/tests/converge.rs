//! Issue 13 on a real kernel (needs root): what a client has must survive
//! whatever nftopo does to the ruleset around it. Session affinity
//! (ClientIP) keeps a client on its pod, a long-lived TCP connection keeps
//! working and a UDP flow (one 5-tuple: the client keeps its source port)
//! keeps reaching its pod when
//!
//! * (a) an endpoint whose address sorts before all others is added,
//! * (b) another endpoint is removed,
//! * (c) the same state is applied again (`nftopo apply` twice),
//! * (d) the daemon is killed and started again on the same API state,
//! * (e) the daemon's periodic full sync runs;
//!
//! and one client reaching an affine Service through its cluster IP and
//! through its node port lands on the same pod (one set per endpoint,
//! shared by every entry point).
//!
//! Each test builds its own [`EdgeCluster`] (node-2 programmed; pods a, b
//! on node-2 and c, d on node-3; clients `client`, `client2` on node-2
//! and `outside`, `outside2` on the underlay; see
//! `integration/src/edge.rs`). Two Services, written here:
//!
//! * `sticky` (10.43.30.1:80 -> 5000, node port 30080, ClientIP): five
//!   clients are pinned with a burst of fresh connections each (`client`,
//!   `client2` and node-2 itself through the cluster IP, `outside` and
//!   `outside2` through the node port), then probed again;
//! * `flows` (10.43.30.2, no affinity): TCP 7000 -> 7000, where this test
//!   process serves an echo in every backend pod (each line is answered
//!   with the pod's address), and UDP 53 -> `testpod`'s 5000. `client` and
//!   `client2` each hold one TCP connection and three UDP flows.
//!
//! Every answer names the pod that gave it, so each assertion is "the
//! same pod as before", never "some pod". A client that lost its affinity,
//! or a UDP flow that lost its conntrack entry, lands on a random pod: with
//! five affinity clients and six UDP flows over four pods a broken case
//! passes by chance with probability 4^-5 (affinity) or 4^-6 (UDP); in (b),
//! which leaves three pods and skips the clients and flows of the removed
//! one, at most 3^-4 (about 1/80). A test reports every client and flow
//! that moved, not only the first.
//!
//! (a), (b), (d) and (e) run `nftopo run` against the API server stand-in
//! in node-2 (as tests/daemon.rs does); (c) and the entry-point test run
//! `nftopo apply`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nftopo_integration::apiserver::ApiServer;
use nftopo_integration::daemon::{
    http_get, kernel_endpoints, metric_value, yaml_objects, Daemon, METRICS_ADDR,
};
use nftopo_integration::edge::{
    edge_manifests_dir, pod_spec, sa, EdgeCluster, CLUSTER_CIDRS, NODE2_IP4, THIS_NODE,
};
use nftopo_integration::{require_root, spawn_in_netns, unique_prefix, Probe};
use serde_json::{json, Value};

/// `default/sticky`'s cluster IP, port and node port.
const STICKY_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 30, 1);
const STICKY_PORT: u16 = 80;
const STICKY_NODE_PORT: u16 = 30080;
/// `default/flows`'s cluster IP and ports.
const FLOWS_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 30, 2);
const LONG_PORT: u16 = 7000;
const UDP_PORT: u16 = 53;
/// The port `testpod serve` answers UDP on in every backend.
const TESTPOD_PORT: u16 = 5000;
/// Affinity timeout long enough that nothing expires during a test.
const LONG_AFFINITY: u32 = 600;

/// The backends, by the order of their addresses: c (10.42.54.130) sorts
/// first, then d, a, b.
const BACKENDS: [&str; 4] = ["a", "b", "c", "d"];

/// Fresh connections per pin or check of one client: a client without
/// affinity hits one pod of four in all of them with probability 4^-5.
const BURST: usize = 6;
/// Bound of every wait for nftopo.
const CONVERGE: Duration = Duration::from_secs(15);
/// How long a TCP echo or UDP answer may take.
const ANSWER: Duration = Duration::from_secs(2);

/// How an affinity client reaches `sticky`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    ClusterIp,
    NodePort,
}

impl Entry {
    fn target(self) -> SocketAddr {
        match self {
            Entry::ClusterIp => sa(STICKY_IP, STICKY_PORT),
            Entry::NodePort => sa(NODE2_IP4, STICKY_NODE_PORT),
        }
    }
}

/// The affinity clients and the entry they use.
const STICKY_CLIENTS: [(&str, Entry); 5] = [
    ("client", Entry::ClusterIp),
    ("client2", Entry::ClusterIp),
    (THIS_NODE, Entry::ClusterIp),
    ("outside", Entry::NodePort),
    ("outside2", Entry::NodePort),
];

/// The clients holding `flows` connections, and the UDP source ports each
/// uses (one flow per port).
const FLOW_CLIENTS: [&str; 2] = ["client", "client2"];
const UDP_SOURCE_PORTS: [u16; 3] = [40001, 40002, 40003];

fn ok<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn ip4(pod: &str) -> IpAddr {
    IpAddr::V4(pod_spec(pod).ip4)
}

// ------------------------------------------------------------ the state

/// What the cluster holds: the endpoints (backend names) of each Service
/// and sticky's affinity timeout.
#[derive(Debug, Clone)]
struct State {
    sticky: Vec<&'static str>,
    flows: Vec<&'static str>,
    timeout: u32,
}

impl State {
    fn new(endpoints: &[&'static str]) -> State {
        State {
            sticky: endpoints.to_vec(),
            flows: endpoints.to_vec(),
            timeout: LONG_AFFINITY,
        }
    }

    fn endpoints(pods: &[&str]) -> Vec<Value> {
        pods.iter()
            .map(|p| {
                json!({"addresses": [pod_spec(p).ip4.to_string()],
                       "conditions": {"ready": true, "serving": true, "terminating": false},
                       "nodeName": pod_spec(p).node})
            })
            .collect()
    }

    fn sticky_slice(&self) -> Value {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "sticky-1", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "sticky"}},
               "addressType": "IPv4",
               "ports": [{"name": "", "port": TESTPOD_PORT, "protocol": "TCP"}],
               "endpoints": Self::endpoints(&self.sticky)})
    }

    fn flows_slice(&self) -> Value {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "flows-1", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "flows"}},
               "addressType": "IPv4",
               "ports": [{"name": "long", "port": LONG_PORT, "protocol": "TCP"},
                         {"name": "dns", "port": TESTPOD_PORT, "protocol": "UDP"}],
               "endpoints": Self::endpoints(&self.flows)})
    }

    /// Every object: the edge nodes, both Services and their slices.
    fn objects(&self) -> Vec<Value> {
        let nodes = ok(
            std::fs::read_to_string(edge_manifests_dir().join("nodes.yaml")),
            "edge nodes.yaml",
        );
        let mut all = ok(yaml_objects(&nodes), "edge nodes.yaml");
        all.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "sticky", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": STICKY_IP.to_string(),
                     "clusterIPs": [STICKY_IP.to_string()],
                     "sessionAffinity": "ClientIP",
                     "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": self.timeout}},
                     "ports": [{"port": STICKY_PORT, "protocol": "TCP",
                                "targetPort": TESTPOD_PORT, "nodePort": STICKY_NODE_PORT}]}}));
        all.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "flows", "namespace": "default"},
            "spec": {"type": "ClusterIP", "clusterIP": FLOWS_IP.to_string(),
                     "clusterIPs": [FLOWS_IP.to_string()],
                     "ports": [{"name": "long", "port": LONG_PORT, "protocol": "TCP", "targetPort": LONG_PORT},
                               {"name": "dns", "port": UDP_PORT, "protocol": "UDP", "targetPort": TESTPOD_PORT}]}}));
        all.push(self.sticky_slice());
        all.push(self.flows_slice());
        all
    }
}

// ------------------------------------------------------------ the world

/// One test's world: the edge cluster, echo servers in the backends, a
/// scratch directory, and (for daemon cases) the stand-in and the daemon.
/// Fields drop in order: the daemon, the stand-in, the echo servers, the
/// namespaces.
struct World {
    daemon: Option<Daemon>,
    api: Option<ApiServer>,
    _echo: EchoServers,
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
        let echo = EchoServers::start(&cluster);
        let dir = std::env::temp_dir().join(format!("{}-converge", unique_prefix()));
        ok(std::fs::create_dir_all(&dir), "scratch dir");
        World {
            daemon: None,
            api: None,
            _echo: echo,
            cluster,
            dir,
        }
    }

    fn node2(&self) -> &nftopo_integration::Netns {
        self.cluster.node(THIS_NODE)
    }

    /// `nftopo apply` of `state` (one JSON `List` file).
    fn apply(&self, state: &State) {
        let path = self.dir.join("state.json");
        let list = json!({"apiVersion": "v1", "kind": "List", "items": state.objects()});
        ok(std::fs::write(&path, list.to_string()), "write state.json");
        let file = path.display().to_string();
        ok(self.cluster.apply(&[&file], &[]), "nftopo apply");
    }

    /// Starts the stand-in in node-2 holding `state`.
    fn serve(&mut self, state: &State) {
        let node2 = self.node2().name().to_owned();
        let api = ok(
            ApiServer::start_in_netns(&node2, "127.0.0.1:0".parse().unwrap()),
            "stand-in in node-2",
        );
        ok(api.write_kubeconfig(&self.kubeconfig()), "kubeconfig");
        for obj in state.objects() {
            ok(api.apply(obj), "stand-in apply");
        }
        self.api = Some(api);
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// Changes the slices in the stand-in to `state`'s.
    fn change(&self, state: &State) {
        let api = self.api.as_ref().expect("stand-in started");
        ok(api.apply(state.sticky_slice()), "stand-in apply sticky-1");
        ok(api.apply(state.flows_slice()), "stand-in apply flows-1");
    }

    /// Starts `nftopo run` against the stand-in and waits for its first
    /// full sync and for the kernel to hold `state`.
    fn start_daemon(&mut self, state: &State, extra: &[&str]) {
        let mut args = vec!["--cluster-cidr", CLUSTER_CIDRS];
        args.extend_from_slice(extra);
        let d = ok(
            Daemon::start(self.node2(), &self.kubeconfig(), &args),
            "nftopo run",
        );
        self.daemon = Some(d);
        self.wait_full_syncs(1, "the daemon's first sync");
        self.wait_kernel(state, "the daemon's first sync");
    }

    /// Kills the daemon (SIGKILL): its rules stay, as after a crash.
    fn kill_daemon(&mut self) {
        self.daemon = None;
    }

    /// The daemon's last 40 log lines.
    fn log(&self) -> String {
        let all = self.daemon.as_ref().map(Daemon::log).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// How many full syncs the running daemon has finished (`None` while
    /// its metrics server does not answer).
    fn full_syncs(&self) -> Option<u64> {
        let addr: SocketAddr = METRICS_ADDR.parse().unwrap();
        let (status, body) = http_get(self.node2().name(), addr, "/metrics").ok()?;
        if status != 200 {
            return None;
        }
        metric_value(
            &body,
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count",
        )
        .map(|v| v as u64)
    }

    /// Waits until the daemon has finished at least `n` full syncs.
    fn wait_full_syncs(&mut self, n: u64, case: &str) -> u64 {
        let deadline = Instant::now() + CONVERGE;
        loop {
            if let Some(st) = self.daemon.as_mut().and_then(Daemon::exited) {
                panic!("{case}: nftopo run exited ({st}); log:\n{}", self.log());
            }
            if let Some(got) = self.full_syncs().filter(|got| *got >= n) {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "{case}: no {n} full syncs within {CONVERGE:?} (metrics say {:?}); log:\n{}",
                    self.full_syncs(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until node-2's kernel holds `state`'s endpoints: `flows`'
    /// in the `service-endpoints` map, `sticky`'s in its inline affinity
    /// DNATs (`dnat to IP:5000`, the only rules of that shape here).
    fn wait_kernel(&self, state: &State, case: &str) {
        let want_flows: BTreeSet<Ipv4Addr> = state.flows.iter().map(|p| pod_spec(p).ip4).collect();
        let want_sticky: BTreeSet<Ipv4Addr> =
            state.sticky.iter().map(|p| pod_spec(p).ip4).collect();
        let deadline = Instant::now() + CONVERGE;
        loop {
            let flows = kernel_endpoints(self.node2(), FLOWS_IP, LONG_PORT)
                .ok()
                .flatten();
            let sticky = inline_dnats(self.node2());
            if flows.as_ref() == Some(&want_flows) && sticky == want_sticky {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{case}: the kernel never held flows {want_flows:?} (has {flows:?}) and \
                     sticky {want_sticky:?} (has {sticky:?}); log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The addresses of every `dnat to A.B.C.D:5000` in node-2's table.
fn inline_dnats(node: &nftopo_integration::Netns) -> BTreeSet<Ipv4Addr> {
    let text = node
        .exec("nft", &["list", "table", "ip", "nftopo"])
        .unwrap_or_default();
    text.split_whitespace()
        .filter_map(|w| w.parse::<SocketAddrV4>().ok())
        .filter(|a| a.port() == TESTPOD_PORT)
        .map(|a| *a.ip())
        .collect()
}

// ------------------------------------------------------------ echo servers

/// A TCP server on [`LONG_PORT`] in every backend pod, run by this test
/// process on threads that joined the pods' namespaces: it answers each
/// line with the pod's address, for as long as the client keeps the
/// connection (`testpod serve` closes after one answer). Dropping it stops
/// the listeners and every connection.
struct EchoServers {
    stop: Arc<AtomicBool>,
}

impl EchoServers {
    fn start(c: &EdgeCluster) -> EchoServers {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        for pod in BACKENDS {
            let (stop, tx) = (stop.clone(), tx.clone());
            let ip = pod_spec(pod).ip4;
            // The thread serves until `stop`; its handle is not kept.
            drop(spawn_in_netns(
                c.ns(pod).name(),
                move || match TcpListener::bind((ip, LONG_PORT)) {
                    Ok(l) => {
                        let _ = tx.send(Ok(()));
                        echo_listen(l, ip, &stop);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("echo server in {pod}: {e}")));
                    }
                },
            ));
        }
        for _ in BACKENDS {
            let r = rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|e| Err(format!("echo server did not start: {e}")));
            ok(r, "echo servers");
        }
        EchoServers { stop }
    }
}

impl Drop for EchoServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn echo_listen(l: TcpListener, ip: Ipv4Addr, stop: &Arc<AtomicBool>) {
    if l.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(Ordering::SeqCst) {
        match l.accept() {
            Ok((s, _)) => {
                let stop = stop.clone();
                std::thread::spawn(move || echo_conn(s, ip, &stop));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return,
        }
    }
}

fn echo_conn(s: TcpStream, ip: Ipv4Addr, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        match r.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                if w.write_all(format!("{ip}\n").as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

// ------------------------------------------------------------ clients

/// Probes `target` from `from` with [`BURST`] fresh connections: the one
/// pod that answered all of them, or what went wrong.
fn one_pod(c: &EdgeCluster, from: &str, target: SocketAddr) -> Result<IpAddr, String> {
    let r = c
        .probe(from, &Probe::tcp(target, BURST))
        .map_err(|e| e.to_string())?;
    let pods = r.pods();
    match (r.answered_count(), pods.len()) {
        (n, 1) if n == BURST => Ok(*pods.iter().next().expect("one pod")),
        _ => Err(format!("not one pod for all {BURST} connections: {r}")),
    }
}

/// Each affinity client's pod, from a burst of fresh connections.
fn pin(c: &EdgeCluster, case: &str) -> BTreeMap<&'static str, IpAddr> {
    STICKY_CLIENTS
        .iter()
        .map(|(from, entry)| {
            let pod = one_pod(c, from, entry.target())
                .unwrap_or_else(|e| panic!("{case}: before the change, {from} via {entry:?}: {e}"));
            (*from, pod)
        })
        .collect()
}

/// The affinity clients that left their pod (`skip`: the clients whose
/// pod was removed, which must move).
fn moved(
    c: &EdgeCluster,
    pinned: &BTreeMap<&'static str, IpAddr>,
    skip: &BTreeSet<IpAddr>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (from, entry) in STICKY_CLIENTS {
        let was = pinned[from];
        if skip.contains(&was) {
            continue;
        }
        match one_pod(c, from, entry.target()) {
            Ok(now) if now == was => {}
            Ok(now) => out.push(format!(
                "affinity: {from} via {entry:?} moved from {was} to {now}"
            )),
            Err(e) => out.push(format!(
                "affinity: {from} via {entry:?} (was on {was}): {e}"
            )),
        }
    }
    out
}

/// One long-lived TCP connection or one UDP flow to `flows`, held by this
/// process (its socket lives in the client's namespace), and the pod that
/// answered it first.
enum Flow {
    Tcp {
        from: &'static str,
        writer: TcpStream,
        reader: BufReader<TcpStream>,
        pod: IpAddr,
    },
    Udp {
        from: &'static str,
        socket: UdpSocket,
        pod: IpAddr,
    },
}

impl Flow {
    fn open_tcp(c: &EdgeCluster, from: &'static str) -> Flow {
        let target = sa(FLOWS_IP, LONG_PORT);
        let stream = ok(
            ok(
                spawn_in_netns(c.ns(from).name(), move || {
                    TcpStream::connect_timeout(&target, ANSWER)
                })
                .join()
                .expect("connect thread"),
                "join the client's namespace",
            ),
            &format!("TCP connection from {from} to {target}"),
        );
        ok(stream.set_read_timeout(Some(ANSWER)), "read timeout");
        let writer = ok(stream.try_clone(), "clone the stream");
        let mut flow = Flow::Tcp {
            from,
            writer,
            reader: BufReader::new(stream),
            pod: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let first = ok(flow.ask(), &format!("first echo on {flow}"));
        if let Flow::Tcp { pod, .. } = &mut flow {
            *pod = first;
        }
        flow
    }

    fn open_udp(c: &EdgeCluster, from: &'static str, port: u16) -> Flow {
        let target = sa(FLOWS_IP, UDP_PORT);
        let socket = ok(
            ok(
                spawn_in_netns(c.ns(from).name(), move || {
                    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?;
                    s.connect(target)?;
                    Ok::<_, std::io::Error>(s)
                })
                .join()
                .expect("bind thread"),
                "join the client's namespace",
            ),
            &format!("UDP socket {from}:{port} to {target}"),
        );
        ok(socket.set_read_timeout(Some(ANSWER)), "read timeout");
        let mut flow = Flow::Udp {
            from,
            socket,
            pod: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let first = ok(flow.ask(), &format!("first answer on {flow}"));
        if let Flow::Udp { pod, .. } = &mut flow {
            *pod = first;
        }
        flow
    }

    /// Sends one line (TCP) or datagram (UDP) and returns the pod that
    /// answered.
    fn ask(&mut self) -> Result<IpAddr, String> {
        let text = match self {
            Flow::Tcp { writer, reader, .. } => {
                writer
                    .write_all(b"who are you?\n")
                    .map_err(|e| format!("send: {e}"))?;
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) => return Err("connection closed".into()),
                    Ok(_) => line,
                    Err(e) => return Err(format!("no echo: {e}")),
                }
            }
            Flow::Udp { socket, .. } => {
                socket
                    .send(b"who are you?\n")
                    .map_err(|e| format!("send: {e}"))?;
                let mut buf = [0u8; 1500];
                let n = socket
                    .recv(&mut buf)
                    .map_err(|e| format!("no answer: {e}"))?;
                String::from_utf8_lossy(&buf[..n]).into_owned()
            }
        };
        text.split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| format!("bad answer {text:?}"))
    }

    fn pod(&self) -> IpAddr {
        match self {
            Flow::Tcp { pod, .. } | Flow::Udp { pod, .. } => *pod,
        }
    }
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flow::Tcp { from, writer, .. } => {
                let port = writer.local_addr().map(|a| a.port()).unwrap_or(0);
                write!(f, "TCP {from}:{port} -> {FLOWS_IP}:{LONG_PORT}")
            }
            Flow::Udp { from, socket, .. } => {
                let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
                write!(f, "UDP {from}:{port} -> {FLOWS_IP}:{UDP_PORT}")
            }
        }
    }
}

/// One TCP connection and three UDP flows from each flow client.
fn open_flows(c: &EdgeCluster) -> Vec<Flow> {
    let mut flows = Vec::new();
    for from in FLOW_CLIENTS {
        flows.push(Flow::open_tcp(c, from));
        for port in UDP_SOURCE_PORTS {
            flows.push(Flow::open_udp(c, from, port));
        }
    }
    flows
}

/// The flows that broke or reached another pod (`skip`: flows whose pod
/// was removed).
fn broken(flows: &mut [Flow], skip: &BTreeSet<IpAddr>) -> Vec<String> {
    let mut out = Vec::new();
    for flow in flows.iter_mut() {
        let was = flow.pod();
        if skip.contains(&was) {
            continue;
        }
        match flow.ask() {
            Ok(now) if now == was => {}
            Ok(now) => out.push(format!("{flow}: reached {now}, was {was}")),
            Err(e) => out.push(format!("{flow} (was on {was}): {e}")),
        }
    }
    out
}

/// The pinned clients and open flows before a change.
struct Before {
    pinned: BTreeMap<&'static str, IpAddr>,
    flows: Vec<Flow>,
}

fn before(c: &EdgeCluster, case: &str) -> Before {
    let pinned = pin(c, case);
    let flows = open_flows(c);
    Before { pinned, flows }
}

/// Checks every client and flow after the change; `removed`: the pods no
/// longer in the state (their clients and flows are not checked). Panics
/// with everything that moved.
fn assert_kept(c: &EdgeCluster, b: &mut Before, removed: &BTreeSet<IpAddr>, case: &str) {
    let mut failures = moved(c, &b.pinned, removed);
    failures.extend(broken(&mut b.flows, removed));
    let pins: Vec<String> = b.pinned.iter().map(|(k, v)| format!("{k}->{v}")).collect();
    let flows: Vec<String> = b
        .flows
        .iter()
        .map(|f| format!("{f}->{}", f.pod()))
        .collect();
    assert!(
        failures.is_empty(),
        "{case}: {} of {} clients and flows lost their pod:\n  {}\n(pinned: {}; flows: {})",
        failures.len(),
        STICKY_CLIENTS.len() + b.flows.len(),
        failures.join("\n  "),
        pins.join(", "),
        flows.join(", ")
    );
}

/// The backend of `among` that the fewest pinned clients and flows use.
fn least_used(b: &Before, among: &[&'static str], flows: bool) -> &'static str {
    let uses = |pod: &str| {
        let ip = ip4(pod);
        if flows {
            b.flows.iter().filter(|f| f.pod() == ip).count()
        } else {
            b.pinned.values().filter(|p| **p == ip).count()
        }
    };
    among
        .iter()
        .copied()
        .min_by_key(|p| uses(p))
        .expect("some backend")
}

// ------------------------------------------------------------ the cases

/// (a) c (10.42.54.130) sorts before a, b and d: with sets named by
/// position every existing endpoint's set would change hands.
#[test]
fn an_endpoint_that_sorts_first_joins_without_moving_clients_or_flows() {
    let case = "(a) endpoint sorting first added";
    let mut w = World::new();
    let state = State::new(&["a", "b", "d"]);
    w.serve(&state);
    w.start_daemon(&state, &[]);
    let mut b = before(&w.cluster, case);
    let grown = State::new(&["a", "b", "c", "d"]);
    w.change(&grown);
    w.wait_kernel(&grown, case);
    assert_kept(&w.cluster, &mut b, &BTreeSet::new(), case);
}

/// (b) The least used endpoint of each Service leaves; everyone else
/// stays where they are.
#[test]
fn another_endpoint_leaves_without_moving_clients_or_flows() {
    let case = "(b) another endpoint removed";
    let mut w = World::new();
    let state = State::new(&BACKENDS);
    w.serve(&state);
    w.start_daemon(&state, &[]);
    let mut b = before(&w.cluster, case);
    let (gone_sticky, gone_flows) = (
        least_used(&b, &BACKENDS, false),
        least_used(&b, &BACKENDS, true),
    );
    let shrunk = State {
        sticky: BACKENDS.into_iter().filter(|p| *p != gone_sticky).collect(),
        flows: BACKENDS.into_iter().filter(|p| *p != gone_flows).collect(),
        timeout: LONG_AFFINITY,
    };
    w.change(&shrunk);
    w.wait_kernel(&shrunk, case);
    // A client of the removed sticky endpoint must move; a flow of the
    // removed flows endpoint may die: neither is checked.
    let mut failures = moved(&w.cluster, &b.pinned, &BTreeSet::from([ip4(gone_sticky)]));
    failures.extend(broken(&mut b.flows, &BTreeSet::from([ip4(gone_flows)])));
    assert!(
        failures.is_empty(),
        "{case} (sticky lost {gone_sticky}, flows lost {gone_flows}):\n  {}",
        failures.join("\n  ")
    );
}

/// (c) `nftopo apply` of the state it already applied.
#[test]
fn applying_the_same_state_again_moves_no_client_or_flow() {
    let case = "(c) the same state applied again";
    let w = World::new();
    let state = State::new(&BACKENDS);
    w.apply(&state);
    let mut b = before(&w.cluster, case);
    w.apply(&state);
    assert_kept(&w.cluster, &mut b, &BTreeSet::new(), case);
}

/// (d) The daemon dies (SIGKILL) and a new one starts on the same API
/// state: its first sync must leave clients and flows alone.
#[test]
fn a_daemon_restart_moves_no_client_or_flow() {
    let case = "(d) daemon killed and started again";
    let mut w = World::new();
    let state = State::new(&BACKENDS);
    w.serve(&state);
    w.start_daemon(&state, &[]);
    let mut b = before(&w.cluster, case);
    w.kill_daemon();
    w.start_daemon(&state, &[]);
    assert_kept(&w.cluster, &mut b, &BTreeSet::new(), case);
}

/// (e) `--full-sync-period 2s`: clients are pinned and flows opened right
/// after one full sync, and checked after two more have finished (so one
/// started after they were set up).
#[test]
fn the_periodic_full_sync_moves_no_client_or_flow() {
    let case = "(e) periodic full sync";
    let mut w = World::new();
    let state = State::new(&BACKENDS);
    w.serve(&state);
    w.start_daemon(&state, &["--full-sync-period", "2s"]);
    let n = w.full_syncs().unwrap_or(1);
    let n = w.wait_full_syncs(n + 1, case);
    let mut b = before(&w.cluster, case);
    w.wait_full_syncs(n + 2, case);
    assert_kept(&w.cluster, &mut b, &BTreeSet::new(), case);
}

/// One client, two entry points, one pod: the cluster IP and the node
/// port of `sticky` share each endpoint's client set. Affinity expires
/// after 3 s between two rounds, and the second round starts at the node
/// port, so each round is a fresh choice: entry points with their own
/// sets agree for all three clients in both rounds with probability
/// 4^-6.
#[test]
fn one_client_lands_on_one_pod_through_the_cluster_ip_and_the_node_port() {
    let w = World::new();
    let state = State {
        timeout: 3,
        ..State::new(&BACKENDS)
    };
    w.apply(&state);
    let mut failures = Vec::new();
    for round in 0..2 {
        if round > 0 {
            std::thread::sleep(Duration::from_secs(4));
        }
        let entries = if round == 0 {
            [Entry::ClusterIp, Entry::NodePort]
        } else {
            [Entry::NodePort, Entry::ClusterIp]
        };
        for from in ["client", "client2", THIS_NODE] {
            let first = one_pod(&w.cluster, from, entries[0].target())
                .unwrap_or_else(|e| panic!("round {round}, {from} via {:?}: {e}", entries[0]));
            match one_pod(&w.cluster, from, entries[1].target()) {
                Ok(second) if second == first => {}
                Ok(second) => failures.push(format!(
                    "round {round}: {from} reached {first} via {:?} but {second} via {:?}",
                    entries[0], entries[1]
                )),
                Err(e) => failures.push(format!("round {round}: {from} via {:?}: {e}", entries[1])),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the cluster IP and the node port must share a client's pod:\n  {}",
        failures.join("\n  ")
    );
}
