//! `--detect-local-mode` over the fake kernel: for each mode, which
//! packets count as from pods (not masqueraded on their way to a cluster
//! IP; short-circuited to every endpoint on their way to an
//! externalTrafficPolicy Local service), and, for NodeCIDR, that the rules
//! follow the Node's pod CIDRs.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use api_watch::Protocol;
use common::state;
use nft_writer::{
    plan_ruleset, trace, Cidr, DetectLocal, Dirty, Family, IfacePattern, IncrementalPlanner,
    Outcome, Packet, Path, PlannerConfig, Ruleset,
};

const NODE_IP: &str = "172.31.11.85";
/// A pod of node-2 (inside the cluster CIDR and node-2's pod CIDR).
const POD: &str = "10.42.2.7";
/// A pod of node-3 (inside the cluster CIDR, outside node-2's pod CIDR).
const OTHER_NODE_POD: &str = "10.42.3.9";
const OUTSIDE: &str = "192.0.2.99";
const REMOTE_EP: (&str, u16) = ("10.42.3.20", 8080);

fn node(pod_cidrs: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: node-2}}\nspec: {{podCIDRs: [{pod_cidrs}]}}\n\
         status: {{addresses: [{{type: InternalIP, address: {NODE_IP}}}]}}\n"
    )
}

/// `web`: a ClusterIP service; `ext`: NodePort 30080 with external IP
/// 203.0.113.5 and externalTrafficPolicy Local. Their only endpoint is on
/// node-3.
const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.43.0.10, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.43.0.20
  externalIPs: [203.0.113.5]
  externalTrafficPolicy: Local
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: "", port: 8080, protocol: TCP}]
endpoints: [{addresses: ["10.42.3.20"], conditions: {ready: true}, nodeName: node-3}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext-1, namespace: default, labels: {kubernetes.io/service-name: ext}}
addressType: IPv4
ports: [{name: "", port: 8080, protocol: TCP}]
endpoints: [{addresses: ["10.42.3.20"], conditions: {ready: true}, nodeName: node-3}]
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ruleset(mode: DetectLocal, pod_cidrs: &str) -> Ruleset {
    let st = state(&[&node(pod_cidrs), SERVICES]);
    let plan = topology_filter::plan(&st, "node-2");
    let cfg = PlannerConfig {
        detect_local: mode,
        ..PlannerConfig::default()
    };
    let (rs, problems) = plan_ruleset(&plan, &cfg);
    assert!(problems.is_empty(), "{problems:?}");
    rs
}

/// Where a new TCP connection from `src` (arriving on `iif`) to
/// `dst:port` ends.
fn go(rs: &Ruleset, src: &str, iif: &str, dst: &str, port: u16) -> BTreeSet<Outcome> {
    let table = rs
        .tables
        .iter()
        .find(|t| t.family == Family::Ip)
        .expect("ip table");
    trace(
        table,
        &Packet {
            src: ip(src),
            dst: ip(dst),
            proto: Protocol::Tcp,
            dport: port,
            path: Path::Forwarded,
            iifname: iif.into(),
            node_addrs: vec![ip(NODE_IP)],
        },
    )
}

fn to_remote(masquerade: bool) -> BTreeSet<Outcome> {
    [Outcome::Accepted {
        dnat: Some((ip(REMOTE_EP.0), REMOTE_EP.1)),
        masquerade,
    }]
    .into()
}

fn dropped() -> BTreeSet<Outcome> {
    [Outcome::Dropped].into()
}

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
}

/// (case, mode, a source from pods as (address, interface), a source not
/// from pods).
type Case = (
    &'static str,
    DetectLocal,
    (&'static str, &'static str),
    (&'static str, &'static str),
);

fn cases() -> Vec<Case> {
    vec![
        (
            "ClusterCIDR: a pod of any node is from pods, an address outside the CIDR is not",
            DetectLocal::ClusterCidr(cidrs(&["10.42.0.0/16"])),
            (OTHER_NODE_POD, "eth0"),
            (OUTSIDE, "eth0"),
        ),
        (
            "NodeCIDR: a pod of this node is from pods, a pod of another node is not",
            DetectLocal::NodeCidr,
            (POD, "eth0"),
            (OTHER_NODE_POD, "eth0"),
        ),
        (
            "BridgeInterface: what arrives on the bridge is from pods, whatever its address",
            DetectLocal::BridgeInterface(IfacePattern::exact("cbr0").unwrap()),
            (OUTSIDE, "cbr0"),
            (POD, "cbr01"),
        ),
        (
            "InterfaceNamePrefix: what arrives on cali* is from pods, other interfaces are not",
            DetectLocal::InterfaceNamePrefix(IfacePattern::prefix("cali").unwrap()),
            (OUTSIDE, "cali4f2a"),
            (POD, "eth0"),
        ),
    ]
}

#[test]
fn traffic_to_a_cluster_ip_is_masqueraded_unless_it_is_from_pods() {
    for (name, mode, (pod, pod_if), (other, other_if)) in cases() {
        let rs = ruleset(mode, "10.42.2.0/24");
        assert_eq!(
            go(&rs, pod, pod_if, "10.43.0.10", 80),
            to_remote(false),
            "{name}"
        );
        assert_eq!(
            go(&rs, other, other_if, "10.43.0.10", 80),
            to_remote(true),
            "{name}"
        );
    }
}

#[test]
fn external_traffic_from_pods_short_circuits_externaltrafficpolicy_local() {
    for (name, mode, (pod, pod_if), (other, other_if)) in cases() {
        let rs = ruleset(mode, "10.42.2.0/24");
        for (dst, port) in [("203.0.113.5", 80), (NODE_IP, 30080)] {
            // From pods: every endpoint, as the cluster IP; not masqueraded.
            assert_eq!(
                go(&rs, pod, pod_if, dst, port),
                to_remote(false),
                "{name}: {dst}"
            );
            // From elsewhere: the local endpoints only, of which there are none.
            assert_eq!(
                go(&rs, other, other_if, dst, port),
                dropped(),
                "{name}: {dst}"
            );
        }
    }
}

#[test]
fn the_rules_say_how_each_mode_detects_pods() {
    let text = |mode| {
        let rs = ruleset(mode, "10.42.2.0/24, fd00:42:2::/64");
        rs.to_string()
    };
    let cases = [
        (
            DetectLocal::ClusterCidr(cidrs(&["10.42.0.0/16"])),
            [
                "ip saddr != 10.42.0.0/16 meta mark set",
                "ip saddr 10.42.0.0/16 goto",
            ],
        ),
        (
            DetectLocal::NodeCidr,
            [
                "ip saddr != 10.42.2.0/24 meta mark set",
                "ip saddr 10.42.2.0/24 goto",
            ],
        ),
        (
            DetectLocal::BridgeInterface(IfacePattern::exact("cbr0").unwrap()),
            ["iifname != \"cbr0\" meta mark set", "iifname \"cbr0\" goto"],
        ),
        (
            DetectLocal::InterfaceNamePrefix(IfacePattern::prefix("cali").unwrap()),
            [
                "iifname != \"cali*\" meta mark set",
                "iifname \"cali*\" goto",
            ],
        ),
    ];
    for (mode, wanted) in cases {
        let name = mode.mode_name();
        let t = text(mode);
        for w in wanted {
            assert!(t.contains(w), "{name}: no {w:?} in\n{t}");
        }
    }
}

#[test]
fn nodecidr_without_a_pod_cidr_of_the_family_detects_nothing_of_it() {
    // kube-proxy's NoOpLocalDetector: no masquerade by source, no
    // short-circuit.
    let rs = ruleset(DetectLocal::NodeCidr, "");
    assert_eq!(go(&rs, POD, "eth0", "10.43.0.10", 80), to_remote(false));
    assert_eq!(go(&rs, OUTSIDE, "eth0", "10.43.0.10", 80), to_remote(false));
    assert_eq!(go(&rs, POD, "eth0", "203.0.113.5", 80), dropped());
}

#[test]
fn nodecidr_follows_the_nodes_pod_cidrs_where_kube_proxy_restarts() {
    let cfg = PlannerConfig {
        detect_local: DetectLocal::NodeCidr,
        ..PlannerConfig::default()
    };
    let mut planner = IncrementalPlanner::new(cfg);
    let plan = |cidrs: &str| topology_filter::plan(&state(&[&node(cidrs), SERVICES]), "node-2");
    planner.update(&plan(""), Dirty::All);
    let nothing = Default::default();
    for (cidrs, pod, full) in [
        ("10.42.2.0/24", POD, true),
        ("10.42.2.0/24", POD, false),
        ("10.42.3.0/24", OTHER_NODE_POD, true),
    ] {
        // A Node change re-plans no Service: the pod CIDRs alone decide.
        let changes = planner.update(&plan(cidrs), Dirty::Services(&nothing));
        assert_eq!(changes.full, full, "{cidrs}");
        let rs = planner.ruleset();
        assert_eq!(
            go(&rs, pod, "eth0", "10.43.0.10", 80),
            to_remote(false),
            "{cidrs}"
        );
        assert_eq!(
            go(&rs, OUTSIDE, "eth0", "10.43.0.10", 80),
            to_remote(true),
            "{cidrs}"
        );
    }
    // The interface modes do not look at the Node: its pod CIDRs changing
    // re-plans nothing.
    let cfg = PlannerConfig {
        detect_local: DetectLocal::InterfaceNamePrefix(IfacePattern::prefix("cali").unwrap()),
        ..PlannerConfig::default()
    };
    let mut planner = IncrementalPlanner::new(cfg);
    planner.update(&plan("10.42.2.0/24"), Dirty::All);
    let changes = planner.update(&plan("10.42.3.0/24"), Dirty::Services(&nothing));
    assert!(!changes.full && changes.now.is_empty());
}

#[test]
fn the_node_itself_is_not_a_pod_in_the_interface_modes() {
    // Its packets have no input interface: masqueraded, as kube-proxy's
    // `iifname != …` does.
    let rs = ruleset(
        DetectLocal::InterfaceNamePrefix(IfacePattern::prefix("cali").unwrap()),
        "10.42.2.0/24",
    );
    let table = rs.tables.iter().find(|t| t.family == Family::Ip).unwrap();
    let out = trace(
        table,
        &Packet {
            src: ip(NODE_IP),
            dst: ip("10.43.0.10"),
            proto: Protocol::Tcp,
            dport: 80,
            path: Path::Local,
            iifname: "cali0".into(),
            node_addrs: vec![ip(NODE_IP)],
        },
    );
    assert_eq!(out, to_remote(true));
}
