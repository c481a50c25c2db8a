//! Packet traces over the fake kernel for the full data plane (issue 4):
//! node ports, external and load-balancer IPs, externalTrafficPolicy,
//! source ranges, internalTrafficPolicy, hairpin, masquerade, dual stack
//! and session affinity, on tests/fixtures/edge.yaml planned for node-2.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use api_watch::Protocol;
use common::state;
use nft_writer::{
    plan_ruleset, trace, Cidr, FakeKernel, Family, Kernel, NodePortAddresses, Outcome, Packet,
    Path, PlannerConfig, Refusal, Transaction,
};

const NODE_IP: &str = "172.31.11.85";
const POD: &str = "10.42.187.70";
const OUTSIDE_IN_RANGE: &str = "198.51.100.9";
const OUTSIDE: &str = "192.0.2.99";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fixture(extra: &str) -> String {
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/edge.yaml"
    ))
    .unwrap();
    format!("{base}\n---\n{extra}")
}

/// A NodePort service with no endpoints at all.
const EMPTY: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: empty, namespace: default}\nspec: {type: NodePort, clusterIP: 10.43.0.40, ports: [{port: 80, nodePort: 30090}]}\n";

fn config(f: impl FnOnce(&mut PlannerConfig)) -> PlannerConfig {
    let mut cfg = PlannerConfig {
        detect_local: nft_writer::DetectLocal::ClusterCidr(
            ["10.42.0.0/16", "fd00:42::/48"]
                .iter()
                .filter_map(|c| Cidr::parse(c).ok())
                .collect(),
        ),
        ..PlannerConfig::default()
    };
    f(&mut cfg);
    cfg
}

struct World {
    kernel: FakeKernel,
    node_addrs: Vec<IpAddr>,
}

fn world(cfg: &PlannerConfig) -> World {
    let text = fixture(EMPTY);
    let plan = topology_filter::plan(&state(&[&text]), "node-2");
    let (rs, problems) = plan_ruleset(&plan, cfg);
    assert!(problems.is_empty(), "{problems:?}");
    let mut kernel = FakeKernel::new();
    kernel
        .apply(&Transaction::replace(&rs))
        .expect("the fake accepts it");
    World {
        kernel,
        node_addrs: vec![
            ip(NODE_IP),
            ip("172.31.11.86"),
            ip("fd00:31::85"),
            ip("127.0.0.1"),
        ],
    }
}

impl World {
    fn go(
        &self,
        src: &str,
        dst: &str,
        proto: Protocol,
        port: u16,
        path: Path,
    ) -> BTreeSet<Outcome> {
        let family = if ip(dst).is_ipv4() {
            Family::Ip
        } else {
            Family::Ip6
        };
        let table = self.kernel.table(family, "nftopo").expect("table");
        trace(
            table,
            &Packet {
                src: ip(src),
                dst: ip(dst),
                proto,
                dport: port,
                path,
                iifname: String::new(),
                node_addrs: self.node_addrs.clone(),
            },
        )
    }
}

fn dnat(targets: &[(&str, u16, bool)]) -> BTreeSet<Outcome> {
    targets
        .iter()
        .map(|(a, p, m)| Outcome::Accepted {
            dnat: Some((ip(a), *p)),
            masquerade: *m,
        })
        .collect()
}

fn one(o: Outcome) -> BTreeSet<Outcome> {
    [o].into_iter().collect()
}

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;
const FWD: Path = Path::Forwarded;

#[test]
fn external_traffic_follows_the_services_policies() {
    let w = world(&config(|_| {}));
    let untouched = one(Outcome::Accepted {
        dnat: None,
        masquerade: false,
    });
    let cases: Vec<(&str, BTreeSet<Outcome>, BTreeSet<Outcome>)> = vec![
        (
            "a client inside loadBalancerSourceRanges reaches only this node's endpoint (eTP Local), unmasqueraded",
            w.go(OUTSIDE_IN_RANGE, "203.0.113.7", TCP, 80, FWD),
            dnat(&[("10.42.187.66", 5000, false)]),
        ),
        (
            "a client outside loadBalancerSourceRanges is dropped at the load-balancer IP",
            w.go(OUTSIDE, "203.0.113.7", TCP, 80, FWD),
            one(Outcome::Dropped),
        ),
        (
            "the node port is not subject to loadBalancerSourceRanges",
            w.go(OUTSIDE, NODE_IP, TCP, 30080, FWD),
            dnat(&[("10.42.187.66", 5000, false)]),
        ),
        (
            "an external IP with eTP Local serves outside clients from this node's endpoint",
            w.go(OUTSIDE, "192.0.2.10", UDP, 53, FWD),
            dnat(&[("10.42.187.66", 5353, false)]),
        ),
        (
            "a pod reaching an eTP Local external IP uses every endpoint (kubernetes#131765)",
            w.go(POD, "192.0.2.10", TCP, 80, FWD),
            dnat(&[("10.42.187.66", 5000, false), ("10.42.54.130", 5000, false)]),
        ),
        (
            "the node reaching an eTP Local external IP uses every endpoint, masqueraded",
            w.go(NODE_IP, "192.0.2.10", TCP, 80, Path::Local),
            dnat(&[("10.42.187.66", 5000, true), ("10.42.54.130", 5000, true)]),
        ),
        (
            "an eTP Cluster node port masquerades and spreads over every endpoint",
            w.go(OUTSIDE, NODE_IP, TCP, 30081, FWD),
            dnat(&[("10.42.187.67", 5000, true), ("10.42.54.131", 5000, true)]),
        ),
        (
            "with the default primary node-port addresses a second local address does not serve node ports",
            w.go(OUTSIDE, "172.31.11.86", TCP, 30081, FWD),
            untouched.clone(),
        ),
        (
            "a node port on 127.0.0.1 is not served",
            w.go("127.0.0.1", "127.0.0.1", TCP, 30081, Path::Local),
            untouched,
        ),
        (
            "a node port without any endpoint is refused with a reset",
            w.go(OUTSIDE, NODE_IP, TCP, 30090, FWD),
            one(Outcome::Rejected(Refusal::TcpReset)),
        ),
        (
            "a cluster IP without any endpoint is refused",
            w.go(POD, "10.43.0.40", TCP, 80, FWD),
            one(Outcome::Rejected(Refusal::TcpReset)),
        ),
        (
            "internalTrafficPolicy Local without a local endpoint drops",
            w.go(POD, "10.43.0.30", TCP, 80, FWD),
            one(Outcome::Dropped),
        ),
        (
            "a pod reaching itself through its service is masqueraded (hairpin)",
            w.go("10.42.187.66", "10.43.0.10", TCP, 80, FWD),
            dnat(&[("10.42.187.66", 5000, true), ("10.42.54.130", 5000, false)]),
        ),
        (
            "an IPv6 cluster IP reaches the IPv6 endpoint",
            w.go("fd00:42::70", "fd00:43::10", TCP, 80, FWD),
            dnat(&[("fd00:42::66", 5000, false)]),
        ),
        (
            "an IPv6 node port is served on the node's IPv6 address",
            w.go("fd00:31::200", "fd00:31::85", TCP, 30080, FWD),
            dnat(&[("fd00:42::66", 5000, false)]),
        ),
        (
            "a new client of an affinity service may land on any endpoint",
            w.go(POD, "10.43.0.20", TCP, 80, FWD),
            dnat(&[("10.42.187.67", 5000, false), ("10.42.54.131", 5000, false)]),
        ),
    ];
    for (name, got, want) in cases {
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn nodeport_addresses_all_serves_every_local_address_but_loopback() {
    let w = world(&config(|c| c.nodeport_addresses = NodePortAddresses::All));
    assert_eq!(
        w.go(OUTSIDE, "172.31.11.86", TCP, 30081, FWD),
        dnat(&[("10.42.187.67", 5000, true), ("10.42.54.131", 5000, true)])
    );
    assert_eq!(
        w.go("127.0.0.1", "127.0.0.1", TCP, 30081, Path::Local),
        one(Outcome::Accepted {
            dnat: None,
            masquerade: false
        })
    );
}

#[test]
fn masquerade_all_masquerades_pod_traffic_too() {
    let plain = world(&config(|_| {}));
    let all = world(&config(|c| c.masquerade_all = true));
    let want = |m| dnat(&[("10.42.54.131", 5000, m), ("10.42.187.67", 5000, m)]);
    assert_eq!(plain.go(POD, "10.43.0.20", TCP, 80, FWD), want(false));
    assert_eq!(all.go(POD, "10.43.0.20", TCP, 80, FWD), want(true));
}

#[test]
fn the_masquerade_bit_is_configurable_and_cleared_in_postrouting() {
    let w = world(&config(|c| c.masquerade_bit = 5));
    let text = w.kernel.dump();
    assert!(
        text.contains("meta mark set meta mark | 0x00000020"),
        "{text}"
    );
    assert!(
        text.contains("meta mark set meta mark ^ 0x00000020"),
        "{text}"
    );
    assert!(!text.contains("0x00004000"), "{text}");
    assert_eq!(
        w.go(NODE_IP, "10.43.0.20", TCP, 80, Path::Local),
        dnat(&[("10.42.187.67", 5000, true), ("10.42.54.131", 5000, true)])
    );
}

/// The whole data plane as text: tests/fixtures/edge.golden.nft is what
/// `nftopo render --node node-2 --manifests tests/fixtures/edge.yaml
/// --cluster-cidr 10.42.0.0/16,fd00:42::/48` must print. A change to the
/// layout shows here as a readable diff; regenerate the file with that
/// command after reviewing it.
#[test]
fn the_full_data_plane_renders_as_the_golden_file() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/edge.yaml"
    ))
    .unwrap();
    let plan = topology_filter::plan(&state(&[&text]), "node-2");
    let (rs, _) = plan_ruleset(&plan, &config(|_| {}));
    let got = rs.to_string();
    let want = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/edge.golden.nft"
    ))
    .unwrap();
    if got != want {
        let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
        let at = g
            .iter()
            .zip(&w)
            .position(|(a, b)| a != b)
            .unwrap_or(g.len().min(w.len()));
        panic!(
            "rendering differs from the golden file at line {}:\n  want: {:?}\n  got:  {:?}\n--- got ---\n{got}",
            at + 1,
            w.get(at),
            g.get(at)
        );
    }
}
