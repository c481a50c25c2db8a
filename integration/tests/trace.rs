//! `nftopo trace` on the real kernel (issue 17, item 2): nftopo applied in
//! node-2, the trace run there reads its tables back and must name what
//! real traffic then shows. The seed scenario with and without
//! topologyKeys (`SeedCluster`); externalTrafficPolicy Local, session
//! affinity (before and after the client is pinned), a Service without
//! endpoints, loadBalancerSourceRanges, IPv6 and the JSON schema in the
//! edge cluster, whose outcome helpers also check each probe against the
//! trace (`trace_check`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use nftopo_integration::edge::{self, sa, EdgeCluster, THIS_NODE};
use nftopo_integration::outcome::ok;
use nftopo_integration::trace_check::{self, run_trace};
use nftopo_integration::{Probe, SeedCluster};
use serde_json::Value;

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 20, 1);
const LB_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn edge() -> EdgeCluster {
    nftopo_integration::require_root();
    trace_check::enable();
    ok(
        EdgeCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))),
        "edge cluster",
    )
}

fn apply(c: &EdgeCluster, files: &[&str]) {
    ok(c.apply(files, &[]), &format!("nftopo apply {files:?}"));
}

fn v4(pod: &str) -> IpAddr {
    edge::pod_spec(pod).ip4.into()
}

fn json(text: &str) -> Value {
    ok(serde_json::from_str(text), "nftopo trace JSON")
}

/// The candidates' addresses and chances.
fn candidates(v: &Value) -> Vec<(IpAddr, f64)> {
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap().parse().unwrap(),
                c["probability"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn addresses(v: &Value) -> BTreeSet<IpAddr> {
    candidates(v).into_iter().map(|(a, _)| a).collect()
}

fn assert_even(v: &Value, n: usize) {
    let c = candidates(v);
    assert_eq!(c.len(), n, "{v:#}");
    for (a, p) in c {
        assert!((p - 1.0 / n as f64).abs() < 1e-9, "{a}: {p} in {v:#}");
    }
}

/// The seed article: from the client pod, all five pods without
/// topologyKeys, node-2's two with `[kubernetes.io/hostname]`; the
/// traffic agrees each time.
#[test]
fn seed_scenario_with_and_without_topology_keys() {
    nftopo_integration::require_root();
    let c = ok(
        SeedCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))),
        "seed cluster",
    );
    let service = nftopo_integration::service_addr();
    let to = service.to_string();
    let client = nftopo_integration::PODS
        .iter()
        .find(|p| p.name == nftopo_integration::CLIENT)
        .unwrap()
        .ip
        .to_string();
    let node = c.node(THIS_NODE);
    let cases: [(&str, Vec<&str>); 2] = [
        ("svc-plain.yaml", vec!["node-2", "node-3", "node-4"]),
        ("svc-hostname.yaml", vec!["node-2"]),
    ];
    for (svc, nodes) in cases {
        ok(
            c.apply(&["nodes.yaml", svc, "slices-v1beta1.yaml"], &[]),
            "apply",
        );
        let want: BTreeSet<IpAddr> = nftopo_integration::backends_on(&nodes)
            .into_iter()
            .map(IpAddr::from)
            .collect();
        let args = ["--from", &client, "--to", &to, "--output", "json"];
        let v = json(&ok(run_trace(node, &args), "trace"));
        assert_eq!(v["verdict"], "dnat", "{svc}: {v:#}");
        assert_eq!(addresses(&v), want, "{svc}");
        assert_even(&v, want.len());
        assert_eq!(v["masquerade"], false, "{svc}: a pod keeps its source");
        assert!(v["service_chain"].is_null(), "{svc}: {v:#}");
        let entry = v["plain_entry"].as_str().unwrap();
        assert!(entry.starts_with("@plain-cluster-ips holds "), "{entry}");
        let r = ok(
            c.probe_from_pod(nftopo_integration::CLIENT, service, 100, false),
            "probe",
        );
        assert_eq!(r.pods(), want, "{svc}: the traffic: {r}");
        // The table form names the scope and the candidates.
        let text = ok(run_trace(node, &["--from", &client, "--to", &to]), "trace");
        assert!(text.contains("nftopo's own tables only"), "{text}");
        for ip in &want {
            let pct = format!("{:.2}%", 100.0 / want.len() as f64);
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{ip}:5000")))
                .unwrap_or_else(|| panic!("{svc}: no candidate line for {ip}:\n{text}"));
            assert!(line.contains(&pct), "{line}");
        }
        // The node's own connection (nat output) is masqueraded.
        let v = json(&ok(
            run_trace(node, &["--local", "--to", &to, "--output", "json"]),
            "trace --local",
        ));
        assert_eq!(addresses(&v), want);
        assert_eq!(v["packet"]["path"], "local");
    }
}

/// externalTrafficPolicy Local: from outside, the load-balancer IP goes
/// to node-2's own pods only, unmasqueraded; with none on node-2, the
/// packet is dropped and the trace says why.
#[test]
fn external_traffic_policy_local() {
    let c = edge();
    apply(&c, &["nodes.yaml", "svc-lb-local.yaml", "slices-all.yaml"]);
    let outside = edge::outside_spec("outside").ip4;
    let p = Probe::tcp(sa(LB_IP, 80), 30);
    let t = c.trace("outside", &p);
    assert_eq!(t.verdict(), "dnat");
    assert_eq!(addresses(&t.json), BTreeSet::from([v4("a"), v4("b")]));
    assert_even(&t.json, 2);
    assert_eq!(t.json["masquerade"], false);
    // The helper traces again and compares.
    let local = BTreeSet::from([v4("a"), v4("b")]);
    c.expect_served_from("outside", &p, &local, outside, "eTP Local");

    apply(
        &c,
        &["nodes.yaml", "svc-lb-local.yaml", "slices-node-3.yaml"],
    );
    let t = c.trace("outside", &p);
    assert_eq!(t.verdict(), "drop", "{:#}", t.json);
    let reason = t.json["outcomes"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("Local"), "{reason}");
    c.expect_dropped(
        "outside",
        sa(LB_IP, 80),
        false,
        "eTP Local, no local endpoint",
    );
}

/// Session affinity: a new client has four candidates (inline draws,
/// 1/4 each); once a connection pinned it, the trace names the set and
/// the one endpoint, read from the kernel's affinity set.
#[test]
fn session_affinity_pins_the_client() {
    let c = edge();
    apply(&c, &["nodes.yaml", "svc-affinity.yaml", "slices-all.yaml"]);
    let p = Probe::tcp(sa(CLUSTER_IP, 80), 1);
    let t = c.trace("client", &p);
    assert_eq!(t.verdict(), "dnat");
    assert_even(&t.json, 4);
    assert!(t.json["affinity"].is_null());
    let r = c.run_probe("client", &p);
    let pinned = r.pods();
    assert_eq!(pinned.len(), 1, "{r}");
    // Within the 3 s timeout: the client is in one endpoint's set.
    let t = c.trace("client", &p);
    assert_eq!(addresses(&t.json), pinned, "{:#}", t.json);
    assert_eq!(candidates(&t.json)[0].1, 1.0);
    let aff = &t.json["affinity"];
    assert!(aff["set"].as_str().unwrap().starts_with("aff-"), "{aff}");
    let ep: IpAddr = aff["endpoint"]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(BTreeSet::from([ep]), pinned);
    // Another client is pinned to nothing.
    let t = c.trace("client2", &p);
    assert!(t.json["affinity"].is_null());
    assert_even(&t.json, 4);
}

/// A Service without endpoints: refused (TCP reset, ICMP for UDP), the
/// reason naming no-endpoint-services.
#[test]
fn no_endpoints_are_rejected_with_the_reason() {
    let c = edge();
    apply(
        &c,
        &["nodes.yaml", "svc-cluster-ip.yaml", "slices-empty.yaml"],
    );
    for (p, refusal) in [
        (Probe::tcp(sa(CLUSTER_IP, 80), 2), "tcp-reset"),
        (Probe::udp(sa(CLUSTER_IP, 53), 2), "icmp-port-unreachable"),
    ] {
        let t = c.trace("client", &p);
        assert_eq!(t.verdict(), "reject", "{:#}", t.json);
        let o = &t.json["outcomes"][0];
        assert_eq!(o["refusal"], refusal);
        let reason = o["reason"].as_str().unwrap();
        assert!(reason.contains("no usable endpoint"), "{reason}");
        assert!(reason.contains("@no-endpoint-reject"), "{reason}");
        c.expect_refused("client", &p, "no endpoints");
    }
}

/// loadBalancerSourceRanges [172.31.11.200/32]: `outside` reaches the
/// four pods, masqueraded (eTP Cluster); `outside2` is dropped before
/// DNAT, the reason naming the ranges.
#[test]
fn source_ranges_drop_other_clients() {
    let c = edge();
    apply(&c, &["nodes.yaml", "svc-lb-ranges.yaml", "slices-all.yaml"]);
    let p = Probe::tcp(sa(LB_IP, 80), 30);
    let t = c.trace("outside", &p);
    assert_eq!(t.verdict(), "dnat");
    assert_even(&t.json, 4);
    assert_eq!(t.json["masquerade"], true);
    let all = BTreeSet::from(["a", "b", "c", "d"].map(v4));
    c.expect_served_from("outside", &p, &all, edge::NODE2_IP4, "allowed source");

    let t = c.trace("outside2", &p);
    assert_eq!(t.verdict(), "drop", "{:#}", t.json);
    let reason = t.json["outcomes"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("loadBalancerSourceRanges"), "{reason}");
    c.expect_dropped("outside2", sa(LB_IP, 80), false, "blocked source");
}

/// The JSON of the real binary on the kernel, IPv6: every documented key
/// with its type; bad arguments are errors naming the flag.
#[test]
fn json_schema_on_the_kernel_and_bad_arguments() {
    let c = edge();
    apply(&c, &["nodes.yaml", "svc-dual.yaml", "slices-v6.yaml"]);
    let from = edge::pod_spec("client").ip6.to_string();
    let to = "[fd00:43::14]:80/tcp";
    let node = c.node(THIS_NODE);
    let v = json(&ok(
        run_trace(
            node,
            &[
                "--from",
                &format!("[{from}]:40000"),
                "--to",
                to,
                "--output",
                "json",
            ],
        ),
        "trace",
    ));
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        [
            "affinity",
            "candidates",
            "masquerade",
            "outcomes",
            "packet",
            "plain_entry",
            "schema",
            "scope",
            "service_chain",
            "table",
            "table_found",
            "verdict"
        ]
    );
    assert_eq!(v["schema"], "nftopo.io/trace/v1");
    assert_eq!(v["table"], "ip6 nftopo");
    assert_eq!(v["table_found"], true);
    assert_eq!(v["packet"]["from_port"], 40000);
    assert_eq!(v["packet"]["protocol"], "tcp");
    let want = BTreeSet::from(["a", "b", "c", "d"].map(|p| IpAddr::from(edge::pod_spec(p).ip6)));
    assert_eq!(addresses(&v), want);
    for o in v["outcomes"].as_array().unwrap() {
        assert!(o["probability"].is_f64() && o["masquerade"].is_boolean());
        assert!(o["dnat"]["address"].is_string() && o["dnat"]["port"].is_u64());
        for s in o["path"].as_array().unwrap() {
            assert!(s["chain"].is_string() && s["event"].is_string(), "{s}");
            assert!(s["rule"].is_null() || s["rule"].is_u64(), "{s}");
        }
    }
    let bin = ok(nftopo_integration::nftopo_bin(), "nftopo");
    for (args, flag) in [
        (vec!["trace", "--to", "fd00:43::14"], "--to"),
        (vec!["trace", "--to", "10.43.20.1:80"], "--from"),
        (
            vec![
                "trace",
                "--from",
                "10.42.187.80",
                "--to",
                "[fd00:43::14]:80",
            ],
            "--from",
        ),
    ] {
        let out = node.command(&bin, &args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(flag),
            "{args:?}: {err}"
        );
    }
}
