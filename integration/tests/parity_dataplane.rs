//! Issue 14, data-plane items 1–7, on a real kernel (needs root): what
//! kube-proxy's nftables mode does (kubernetes/kubernetes
//! pkg/proxy/nftables/proxier.go), proven with real connections in the
//! edge cluster (`integration/src/edge.rs`: node-2 programmed by `nftopo
//! apply`, or by `nftopo run` against the API stand-in; pods a, b on
//! node-2, c, d on node-3; clients outside the cluster on the underlay).
//!
//! Outcomes are observed, never read from rules: which backend answered
//! and which source it saw, a refusal within 1 s (reject), time-outs only
//! (drop), and a long-lived TCP connection that keeps exchanging data
//! (an established flow that nothing cut). Where "not dropped" must be
//! visible, something answers behind the node: `outside2` holds the
//! address (or the load-balancer IP) and answers with it.
//!
//! Manifests beyond the edge set are written by each test, next to its
//! assertions.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nftopo_integration::apiserver::{ApiServer, Resource};
use nftopo_integration::daemon::{yaml_objects, Daemon};
use nftopo_integration::edge::*;
use nftopo_integration::outcome::{ok, Scratch};
use nftopo_integration::{require_root, spawn_in_netns, Probe};

/// The cluster IP of `default/web` in the edge manifests.
const SVC4: Ipv4Addr = Ipv4Addr::new(10, 43, 20, 1);
/// Its IPv6 cluster IP (svc-dual.yaml).
const SVC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x43, 0, 0, 0, 0, 0, 0x14);
/// `web`'s load-balancer IP.
const LB_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// An address of the service range that no Service holds; `outside2`
/// holds it, behind node-2, and answers on port 5000.
const UNALLOCATED: Ipv4Addr = Ipv4Addr::new(10, 43, 99, 99);
/// A port no Service port defines (the backends listen on it, so a
/// connection that got through would be answered).
const NO_SERVICE_PORT: u16 = 5000;
const HTTP: u16 = 80;
const NODE_PORT_TCP: u16 = 30080;
/// Bound of every wait for the daemon to follow the stand-in.
const CONVERGE: Duration = Duration::from_secs(15);

fn cluster() -> EdgeCluster {
    require_root();
    ok(
        EdgeCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))),
        "edge cluster",
    )
}

/// `nftopo apply` in node-2 with these manifests (edge file names or
/// absolute paths).
fn apply(c: &EdgeCluster, files: &[&str]) {
    ok(c.apply(files, &[]), &format!("nftopo apply {files:?}"));
}

fn set(ips: &[IpAddr]) -> BTreeSet<IpAddr> {
    ips.iter().copied().collect()
}

fn all4() -> BTreeSet<IpAddr> {
    ips4(&["a", "b", "c", "d"])
}

const SERVICE_CIDR: &str = "
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: kubernetes}
spec: {cidrs: [10.43.0.0/16, 'fd00:43::/112']}
";

// ------------------------------------------------------------ items 1, 2

/// Item 1 (upstream: `cluster-ips` set, `cluster-ips-check` after the
/// service dispatch): TCP to a port no Service port defines, and UDP to a
/// TCP-only port, are refused at once, from a pod and from node-2, over
/// both families. Item 2 (`ip daddr { serviceCIDRs } drop`): an address of
/// a ServiceCIDR that no Service holds is dropped, and only while a
/// ServiceCIDR says it is a service address; without one it reaches
/// whatever stands behind the node (here `outside2`).
#[test]
fn undefined_ports_of_cluster_ips_are_refused_and_unallocated_service_addresses_dropped() {
    let c = cluster();
    let s = Scratch::new();
    c.answer_behind_node2(UNALLOCATED, 5000);
    let cidrs = s.file("service-cidr.yaml", SERVICE_CIDR);
    let unallocated = SocketAddr::new(UNALLOCATED.into(), 5000);
    let behind = set(&[UNALLOCATED.into()]);

    apply(&c, &["nodes.yaml", "svc-lb.yaml", "slices-all.yaml"]);
    let case = "item 1: a port no service port defines";
    for from in ["client", THIS_NODE] {
        c.expect_refused(from, &Probe::tcp(sa(SVC4, NO_SERVICE_PORT), 10), case);
        c.expect_refused(
            from,
            &Probe::udp(sa(SVC4, HTTP), 2),
            "item 1: UDP to a TCP-only port",
        );
        c.expect_served(
            from,
            &Probe::tcp(sa(SVC4, HTTP), 40),
            &all4(),
            "the defined port",
        );
    }
    let case = "item 2: without ServiceCIDRs an unallocated address is not dropped";
    c.expect_served("client", &Probe::tcp(unallocated, 3), &behind, case);
    c.expect_served(THIS_NODE, &Probe::tcp(unallocated, 3), &behind, case);

    apply(
        &c,
        &["nodes.yaml", "svc-lb.yaml", "slices-all.yaml", &cidrs],
    );
    let case = "item 2: an unallocated address of a ServiceCIDR is dropped";
    c.expect_dropped("client", unallocated, false, case);
    c.expect_dropped(THIS_NODE, unallocated, false, case);
    c.expect_dropped("client", unallocated, true, case);
    c.expect_refused(
        "client",
        &Probe::tcp(sa(SVC4, NO_SERVICE_PORT), 10),
        "item 2: a cluster IP on an undefined port is still refused, not dropped",
    );
    c.expect_served(
        "client",
        &Probe::tcp(sa(SVC4, HTTP), 40),
        &all4(),
        "item 2: served",
    );

    apply(&c, &["nodes.yaml", "svc-lb.yaml", "slices-all.yaml"]);
    c.expect_served(
        "client",
        &Probe::tcp(unallocated, 3),
        &behind,
        "item 2: the ServiceCIDR gone, the address is not dropped any more",
    );

    // IPv6: the dual-stack web (fd00:43::14), undefined port and
    // unallocated address.
    apply(
        &c,
        &[
            "nodes.yaml",
            "svc-dual.yaml",
            "slices-all.yaml",
            "slices-v6.yaml",
            &cidrs,
        ],
    );
    for from in ["client", THIS_NODE] {
        c.expect_refused(
            from,
            &Probe::tcp(sa(SVC6, NO_SERVICE_PORT), 10),
            "item 1: IPv6 cluster IP, undefined port",
        );
    }
    let unallocated6 = SocketAddr::new(Ipv6Addr::new(0xfd00, 0x43, 0, 0, 0, 0, 0, 0x99).into(), 80);
    c.expect_dropped("client", unallocated6, false, "item 2: IPv6 ServiceCIDR");
}

// ---------------------------------------------------------------- item 3

/// A TCP echo server on `port` inside namespace `ns` (threads that joined
/// it): every line is written back. Stops with the value.
struct EchoServer(Arc<AtomicBool>);

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn echo_server(ns: &str, port: u16) -> EchoServer {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready, up) = mpsc::channel();
    let flag = stop.clone();
    drop(spawn_in_netns(ns, move || {
        let listener = TcpListener::bind(("::", port))
            .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
            .expect("echo server bind");
        listener.set_nonblocking(true).expect("non-blocking");
        ready.send(()).expect("test waits");
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((conn, _)) => {
                    let flag = flag.clone();
                    std::thread::spawn(move || echo(conn, &flag));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }));
    up.recv_timeout(Duration::from_secs(5))
        .expect("echo server listening");
    EchoServer(stop)
}

fn echo(conn: TcpStream, stop: &AtomicBool) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut lines = BufReader::new(conn);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        match lines.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                if out.write_all(line.as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// One long-lived TCP connection from namespace `ns` to `target` that
/// sends a line every 100 ms and waits (1 s at most) for its echo, until
/// stopped or until a round fails.
struct Conversation {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    thread: JoinHandle<nftopo_integration::Result<Result<usize, String>>>,
}

fn converse(ns: &str, target: SocketAddr) -> Conversation {
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let (flag, done) = (stop.clone(), rounds.clone());
    let thread = spawn_in_netns(ns, move || {
        let conn = TcpStream::connect_timeout(&target, Duration::from_secs(1))
            .map_err(|e| format!("connect: {e}"))?;
        conn.set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        let mut out = conn.try_clone().map_err(|e| e.to_string())?;
        let mut lines = BufReader::new(conn);
        let mut n = 0;
        while !flag.load(Ordering::SeqCst) {
            let sent = format!("round {n}\n");
            out.write_all(sent.as_bytes())
                .map_err(|e| format!("round {n}: send: {e}"))?;
            let mut got = String::new();
            lines
                .read_line(&mut got)
                .map_err(|e| format!("round {n}: receive: {e}"))?;
            if got != sent {
                return Err(format!("round {n}: got {got:?}"));
            }
            n += 1;
            done.store(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(n)
    });
    Conversation {
        stop,
        rounds,
        thread,
    }
}

impl Conversation {
    /// Waits (bounded) until `n` more rounds went through.
    fn more(&self, n: usize, case: &str) {
        let want = self.rounds.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.rounds.load(Ordering::SeqCst) < want {
            if self.thread.is_finished() || Instant::now() > deadline {
                panic!(
                    "{case}: the connection stopped after {} rounds",
                    self.rounds.load(Ordering::SeqCst)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it; every round must have gone through.
    fn finish(self, case: &str) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let result = self.thread.join().expect("conversation thread");
        match ok(result, "conversation namespace") {
            Ok(n) => n,
            Err(e) => panic!("{case}: the established connection was cut: {e}"),
        }
    }
}

/// `long`: a LoadBalancer (203.0.113.17, cluster IP 10.43.20.7) whose
/// port 80 goes to the echo server on pod a's port 7000; source ranges
/// `ranges`.
fn long_service(ranges: &str) -> String {
    format!(
        "
apiVersion: v1
kind: Service
metadata: {{name: long, namespace: default}}
spec:
  type: LoadBalancer
  clusterIP: 10.43.20.7
  externalTrafficPolicy: Cluster
  loadBalancerSourceRanges: [{ranges}]
  ports: [{{name: echo, port: 80, protocol: TCP, targetPort: 7000, nodePort: 30070}}]
status: {{loadBalancer: {{ingress: [{{ip: 203.0.113.17}}]}}}}
"
    )
}

fn long_slice(endpoints: &str) -> String {
    format!(
        "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: long-1, namespace: default, labels: {{kubernetes.io/service-name: long}}}}
addressType: IPv4
ports: [{{name: echo, port: 7000, protocol: TCP}}]
endpoints: [{endpoints}]
"
    )
}

/// Item 3 (upstream: service-endpoints-check and firewall-check are
/// jumped to with `ct state new`): node-2's connection to a cluster IP
/// keeps flowing after the service lost every endpoint, and an outside
/// client's connection to a load-balancer IP keeps flowing after the
/// source ranges stopped holding it; new connections are refused and
/// dropped as they should.
#[test]
fn established_connections_survive_emptied_endpoints_and_narrowed_source_ranges() {
    let c = cluster();
    let s = Scratch::new();
    let _echo = echo_server(c.ns("a").name(), 7000);
    let a = pod_spec("a").ip4;
    let in_range = s.file("long.yaml", &long_service("172.31.11.200/32"));
    let narrowed = s.file("long-narrow.yaml", &long_service("172.31.11.201/32"));
    let with_a = s.file(
        "long-a.yaml",
        &long_slice(&format!("{{addresses: ['{a}'], nodeName: node-2}}")),
    );
    let empty = s.file("long-empty.yaml", &long_slice(""));
    let cluster_ip = SocketAddr::new(Ipv4Addr::new(10, 43, 20, 7).into(), HTTP);
    let lb = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 17).into(), HTTP);

    apply(&c, &["nodes.yaml", &in_range, &with_a]);
    let node = converse(c.node(THIS_NODE).name(), cluster_ip);
    let outside = converse(c.ns("outside").name(), lb);
    node.more(3, "node-2 to the cluster IP");
    outside.more(3, "outside to the load-balancer IP");

    apply(&c, &["nodes.yaml", &in_range, &empty]);
    node.more(
        10,
        "item 3: node-2's connection after the endpoints went away",
    );
    outside.more(
        3,
        "item 3: outside's connection after the endpoints went away",
    );
    c.expect_refused(
        THIS_NODE,
        &Probe::tcp(cluster_ip, 5),
        "item 3: a new connection without endpoints is refused",
    );

    apply(&c, &["nodes.yaml", &narrowed, &empty]);
    outside.more(
        10,
        "item 3: outside's connection after the source ranges left it out",
    );
    c.expect_dropped(
        "outside",
        lb,
        false,
        "item 3: a new connection from outside the ranges is dropped",
    );
    node.finish("item 3: node-2 to the cluster IP");
    outside.finish("item 3: outside to the load-balancer IP");
}

// ---------------------------------------------------------------- item 4

/// `web` dual stack, LoadBalancer with one IPv4 and one IPv6 ingress IP
/// and IPv4 source ranges only.
const DUAL_LB_V4_RANGES: &str = "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.43.20.1
  clusterIPs: [10.43.20.1, 'fd00:43::14']
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  externalTrafficPolicy: Cluster
  loadBalancerSourceRanges: [172.31.11.201/32]
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 5000, nodePort: 30080}
  - {name: dns, port: 53, protocol: UDP, targetPort: 5000, nodePort: 30053}
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.10}, {ip: '2001:db8:113::10'}]
";

/// Item 4 (upstream: firewall-check from filter-prerouting and
/// filter-output; firewall-ips elements whether or not the port has
/// endpoints; each family's proxier sees only its family's ranges):
/// loadBalancerSourceRanges [172.31.11.200/32] drops node-2's own
/// connections to the load-balancer IP; without endpoints a source
/// outside the ranges is dropped while one inside is refused; IPv4 ranges
/// leave IPv6 traffic to the IPv6 load-balancer IP alone.
#[test]
fn source_ranges_hold_for_the_node_without_endpoints_and_per_family() {
    let c = cluster();
    let s = Scratch::new();
    let lb = sa(LB_IP, HTTP);

    apply(&c, &["nodes.yaml", "svc-lb-ranges.yaml", "slices-all.yaml"]);
    c.expect_served(
        "outside",
        &Probe::tcp(lb, 40),
        &all4(),
        "item 4: a client inside the ranges",
    );
    c.expect_dropped(
        THIS_NODE,
        lb,
        false,
        "item 4: node-2 itself is outside the ranges",
    );
    c.expect_dropped("client", lb, false, "item 4: a pod is outside the ranges");

    apply(
        &c,
        &["nodes.yaml", "svc-lb-ranges.yaml", "slices-empty.yaml"],
    );
    c.expect_dropped(
        "outside2",
        lb,
        false,
        "item 4: without endpoints, a client outside the ranges is dropped, not refused",
    );
    c.expect_refused(
        "outside",
        &Probe::tcp(lb, 10),
        "item 4: without endpoints, a client inside the ranges is refused",
    );

    let dual = s.file("dual-lb.yaml", DUAL_LB_V4_RANGES);
    let lb6: Ipv6Addr = "2001:db8:113::10".parse().unwrap();
    ok(
        c.ns("outside").ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:113::/64",
            "via",
            &NODE2_IP6.to_string(),
        ]),
        "IPv6 load-balancer route",
    );
    apply(
        &c,
        &["nodes.yaml", &dual, "slices-all.yaml", "slices-v6.yaml"],
    );
    c.expect_served(
        "outside",
        &Probe::tcp(sa(lb6, HTTP), 40),
        &ips6(&["a", "b", "c", "d"]),
        "item 4: IPv4 ranges only leave the IPv6 load-balancer IP unfiltered",
    );
    c.expect_dropped(
        "outside",
        lb,
        false,
        "item 4: the IPv4 ranges still hold for the IPv4 load-balancer IP",
    );
    c.expect_served(
        "outside2",
        &Probe::tcp(lb, 40),
        &all4(),
        "item 4: inside the IPv4 ranges",
    );
}

// ------------------------------------------------------------ items 5–7

/// node-2 with two IPv4 InternalIPs: the first is its primary address.
const NODES_TWO_IPS: &str = "
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {kubernetes.io/hostname: node-2}}
status:
  addresses:
  - {type: InternalIP, address: 172.31.11.85}
  - {type: InternalIP, address: 172.31.11.86}
  - {type: InternalIP, address: 'fd00:31::85'}
---
apiVersion: v1
kind: Node
metadata: {name: node-3, labels: {kubernetes.io/hostname: node-3}}
status:
  addresses:
  - {type: InternalIP, address: 172.31.11.157}
  - {type: InternalIP, address: 'fd00:31::157'}
";

/// `web` LoadBalancer with a VIP ingress (203.0.113.10) and an `ipMode:
/// Proxy` one (203.0.113.11).
const LB_WITH_PROXY_INGRESS: &str = "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.43.20.1
  externalTrafficPolicy: Cluster
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 5000, nodePort: 30080}
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.10, ipMode: VIP}, {ip: 203.0.113.11, ipMode: Proxy}]
";

/// Pod a as web's only endpoint, in a slice that names no node.
const SLICE_A_WITHOUT_NODE: &str = "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-a, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 5000, protocol: TCP}]
endpoints: [{addresses: ['10.42.187.66']}]
";

/// Item 5 (upstream: only `IsVIPMode` ingress IPs are LoadBalancerVIPs):
/// the `ipMode: Proxy` ingress IP is left to the load balancer (here
/// `outside2` holds it and answers), the VIP one is served by the pods.
/// Item 6 (upstream: every endpoint chain masquerades `ip saddr
/// <endpoint>`): pod a, in a slice naming no node, reaches itself through
/// its service, masqueraded. Item 7 (`--nodeport-addresses primary` is one
/// address per family): node ports answer on node-2's first IPv4
/// InternalIP only; the second is the sentinel's.
#[test]
fn proxy_mode_ingress_hairpin_without_node_name_and_primary_node_ports() {
    let c = cluster();
    let s = Scratch::new();
    let proxy_ip = Ipv4Addr::new(203, 0, 113, 11);
    c.answer_behind_node2(proxy_ip, HTTP);
    ok(
        c.node(THIS_NODE).ip(&[
            "addr",
            "add",
            &format!("{NODE2_SECOND_IP4}/24"),
            "dev",
            "eth0",
        ]),
        "second address on node-2",
    );
    let nodes = s.file("nodes-two-ips.yaml", NODES_TWO_IPS);
    let svc = s.file("lb-proxy.yaml", LB_WITH_PROXY_INGRESS);
    let slice = s.file("slice-a-no-node.yaml", SLICE_A_WITHOUT_NODE);
    apply(&c, &[&nodes, &svc, &slice]);
    let a = ips4(&["a"]);

    c.expect_served(
        "client",
        &Probe::tcp(sa(proxy_ip, HTTP), 5),
        &set(&[proxy_ip.into()]),
        "item 5: an ipMode Proxy ingress IP goes to the load balancer",
    );
    c.expect_served(
        "client",
        &Probe::tcp(sa(LB_IP, HTTP), 5),
        &a,
        "item 5: the VIP ingress IP is served by the pods",
    );

    let r = c.expect_served(
        "a",
        &Probe::tcp(sa(SVC4, HTTP), 10),
        &a,
        "item 6: an endpoint whose slice names no node reaches itself",
    );
    assert_eq!(
        r.peers(),
        set(&[NODE2_IP4.into()]),
        "item 6: masqueraded to node-2's address: {r}"
    );

    c.expect_served(
        "outside",
        &Probe::tcp(sa(NODE2_IP4, NODE_PORT_TCP), 5),
        &a,
        "item 7: the primary address serves node ports",
    );
    c.expect_served(
        "outside",
        &Probe::tcp(sa(NODE2_SECOND_IP4, NODE_PORT_TCP), 5),
        &set(&[NODE2_SECOND_IP4.into()]),
        "item 7: a second InternalIP does not (node-2's sentinel answers)",
    );
}

// ------------------------------------------------- item 2, in the daemon

/// The daemon and the stand-in in node-2, serving the edge manifests.
struct Running {
    daemon: Option<Daemon>,
    api: ApiServer,
    kubeconfig: PathBuf,
}

impl Running {
    fn start(c: &EdgeCluster, s: &Scratch, files: &[&str]) -> Running {
        let node2 = c.node(THIS_NODE).name().to_owned();
        let api = ok(
            ApiServer::start_in_netns(&node2, "127.0.0.1:0".parse().unwrap()),
            "stand-in in node-2",
        );
        let kubeconfig = s.path("kubeconfig");
        ok(api.write_kubeconfig(&kubeconfig), "kubeconfig");
        for f in files {
            let text = ok(std::fs::read_to_string(edge_manifests_dir().join(f)), f);
            for obj in ok(yaml_objects(&text), f) {
                ok(api.apply(obj), "stand-in apply");
            }
        }
        Running {
            daemon: None,
            api,
            kubeconfig,
        }
    }

    fn run_daemon(&mut self, c: &EdgeCluster) {
        if let Some(mut d) = self.daemon.take() {
            ok(d.terminate(Duration::from_secs(10)), "nftopo run stops");
        }
        self.daemon = Some(ok(
            Daemon::start(
                c.node(THIS_NODE),
                &self.kubeconfig,
                &["--cluster-cidr", CLUSTER_CIDRS],
            ),
            "nftopo run",
        ));
    }

    fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }
}

/// Waits (up to [`CONVERGE`]) until `probe` from `from` is answered by
/// exactly `want`.
fn eventually_served(
    c: &EdgeCluster,
    r: &Running,
    from: &str,
    probe: &Probe,
    want: &BTreeSet<IpAddr>,
    case: &str,
) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let got = c.run_probe(from, probe);
        if got.pods() == *want && got.answered_count() == probe.count {
            return;
        }
        if Instant::now() > deadline {
            panic!("{case}: {got}\ndaemon log:\n{}", r.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (up to [`CONVERGE`]) until node-2's `cluster-ips-check` chain
/// drops the service range (`holds`) or does not.
fn eventually_drops_the_range(c: &EdgeCluster, r: &Running, holds: bool, case: &str) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let chain = c
            .node(THIS_NODE)
            .exec(
                "nft",
                &["list", "chain", "ip", "nftopo", "cluster-ips-check"],
            )
            .unwrap_or_default();
        if chain.contains("ip daddr 10.43.0.0/16 drop") == holds {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{case}: cluster-ips-check is\n{chain}\ndaemon log:\n{}",
                r.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Item 2 in the daemon: a cluster whose API server does not serve
/// ServiceCIDRs (404) or does not let nftopo list them (403) still gets
/// its Services programmed, and drops nothing; one that serves them gets
/// the unallocated addresses dropped, and no longer once the ServiceCIDR
/// is deleted (a watch event).
#[test]
fn the_daemon_watches_service_cidrs_and_works_without_them() {
    let c = cluster();
    let s = Scratch::new();
    c.answer_behind_node2(UNALLOCATED, 5000);
    let unallocated = SocketAddr::new(UNALLOCATED.into(), 5000);
    let behind = set(&[UNALLOCATED.into()]);
    let mut r = Running::start(&c, &s, &["nodes.yaml", "svc-lb.yaml", "slices-all.yaml"]);
    ok(
        r.api.apply(yaml_objects(SERVICE_CIDR).unwrap().remove(0)),
        "ServiceCIDR",
    );
    let served = Probe::tcp(sa(SVC4, HTTP), 40);

    for code in [404, 403] {
        r.api.refuse(Resource::ServiceCidr, Some(code));
        r.run_daemon(&c);
        let case = format!("servicecidrs answered {code}");
        eventually_served(
            &c,
            &r,
            "client",
            &served,
            &all4(),
            &format!("{case}: Services are programmed"),
        );
        c.expect_served(
            "client",
            &Probe::tcp(unallocated, 3),
            &behind,
            &format!("{case}: nothing is dropped"),
        );
        c.expect_refused(
            "client",
            &Probe::tcp(sa(SVC4, NO_SERVICE_PORT), 5),
            &format!("{case}: undefined ports are still refused"),
        );
    }

    r.api.refuse(Resource::ServiceCidr, None);
    r.run_daemon(&c);
    eventually_served(&c, &r, "client", &served, &all4(), "served ServiceCIDRs");
    eventually_drops_the_range(&c, &r, true, "the ServiceCIDR is watched");
    c.expect_dropped(
        "client",
        unallocated,
        false,
        "the daemon drops an unallocated address",
    );

    r.api.delete("ServiceCIDR", "", "kubernetes");
    eventually_drops_the_range(&c, &r, false, "the ServiceCIDR was deleted");
    c.expect_served(
        "client",
        &Probe::tcp(unallocated, 3),
        &behind,
        "the ServiceCIDR gone, nothing is dropped",
    );
}
