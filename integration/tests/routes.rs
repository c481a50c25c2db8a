//! route-sync end to end (needs root): `nftopo apply --route-mode …` in
//! each node of a [`RoutedCluster`] — three node namespaces on one bridge
//! with no pod routes of their own — and real TCP connections from the
//! client pod on node-2 to pods on node-3 and node-4. `ip route` is the
//! witness of the exact route set.
//!
//! * direct mode carries traffic: `direct_mode_routes_pods_across_nodes`
//! * cross-subnet mode (Calico IPAM blocks, Calico address annotation as
//!   the next hop) goes direct to node-3 and over tunl0 to node-4 in
//!   another subnet: `cross_subnet_goes_direct_in_the_subnet_and_over_tunl0_beyond`
//! * ipip mode: the exact `via … dev tunl0 onlink` set, foreign routes
//!   survive, a removed node's route goes, a changed podCIDR is replaced:
//!   `ipip_routes_are_exact_and_follow_node_changes_leaving_foreign_routes`
//! * without tunl0 the ipip error is plain and the blackhole still goes
//!   in: `without_an_ipip_device_apply_says_so_and_still_applies_the_rest`

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nftopo_integration::*;

const POD_C: Ipv4Addr = Ipv4Addr::new(10, 42, 54, 130);
const POD_D: Ipv4Addr = Ipv4Addr::new(10, 42, 54, 131);
const POD_E: Ipv4Addr = Ipv4Addr::new(10, 42, 201, 2);

fn cluster(node4_elsewhere: bool, with_tunl0: bool) -> RoutedCluster {
    require_root();
    RoutedCluster::start(
        Path::new(env!("CARGO_BIN_EXE_testpod")),
        routed_nodes(node4_elsewhere),
        with_tunl0,
    )
    .unwrap_or_else(|e| panic!("routed cluster: {e}"))
}

fn ok<T>(r: Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Applies `args` (after the manifests) on every node.
fn apply_everywhere(c: &RoutedCluster, manifests: &[PathBuf], args: &[&str]) {
    for n in ["node-2", "node-3", "node-4"] {
        ok(c.apply(n, manifests, args), &format!("apply on {n}"));
    }
}

/// The client on node-2 reaches each of `pods` (waiting for servers and
/// neighbours), then 20 more connections to each all answer.
fn assert_reachable(c: &RoutedCluster, pods: &[Ipv4Addr]) {
    for &pod in pods {
        let first = ok(
            c.wait_reachable("client", pod, Duration::from_secs(10)),
            "probe",
        );
        assert!(
            first.answered().contains(&pod),
            "{pod} unreachable from the client on node-2: {first}"
        );
        let r = ok(c.probe("client", pod, 20), "probe");
        assert_eq!(r.answered_count(), 20, "to {pod}: {r}");
    }
}

#[test]
fn direct_mode_routes_pods_across_nodes() {
    let c = cluster(false, false);
    let nodes = ok(TempFile::new("nodes.yaml", &nodes_yaml(&c.spec)), "nodes");
    // Before nftopo: no route to the other nodes' pods.
    let before = ok(c.probe("client", POD_C, 1), "probe");
    assert!(before.answered().is_empty(), "{before}");

    apply_everywhere(
        &c,
        std::slice::from_ref(&nodes.0),
        &["--route-mode", "direct"],
    );
    assert_eq!(
        ok(c.bird_routes("node-2"), "routes"),
        [
            "10.42.201.0/26 via 172.31.11.212 dev eth0",
            "10.42.54.128/26 via 172.31.11.157 dev eth0",
            "blackhole 10.42.187.64/26",
        ]
    );
    assert_reachable(&c, &[POD_C, POD_D, POD_E]);
}

#[test]
fn cross_subnet_goes_direct_in_the_subnet_and_over_tunl0_beyond() {
    let c = cluster(true, true);
    // Calico IPAM: the Nodes carry no podCIDR the routes could come from;
    // the blocks do, and the next hop is Calico's address annotation.
    let mut nodes_only = c.spec.clone();
    for n in &mut nodes_only {
        n.block = "10.255.255.0/24";
    }
    let nodes = ok(
        TempFile::new("nodes.yaml", &nodes_yaml(&nodes_only)),
        "nodes",
    );
    let blocks = ok(
        TempFile::new("blocks.yaml", &block_affinities_yaml(&c.spec)),
        "blocks",
    );
    let args = [
        "--route-mode",
        "cross-subnet",
        "--pod-cidr-source",
        "calico-ipam",
        "--route-next-hop",
        "calico-annotation",
    ];
    apply_everywhere(&c, &[nodes.0.clone(), blocks.0.clone()], &args);
    assert_eq!(
        ok(c.bird_routes("node-2"), "routes"),
        [
            "10.42.201.0/26 via 172.31.40.20 dev tunl0 onlink",
            "10.42.54.128/26 via 172.31.11.157 dev eth0",
            "blackhole 10.42.187.64/26",
        ]
    );
    // node-4 sees node-2 and node-3 beyond its subnet.
    assert_eq!(
        ok(c.bird_routes("node-4"), "routes"),
        [
            "10.42.187.64/26 via 172.31.11.85 dev tunl0 onlink",
            "10.42.54.128/26 via 172.31.11.157 dev tunl0 onlink",
            "blackhole 10.42.201.0/26",
        ]
    );
    // The tunnel's MTU follows eth0's (1500) minus the IPIP header.
    let tunl0 = ok(
        c.node("node-2").ip(&["link", "show", "dev", "tunl0"]),
        "link",
    );
    assert!(
        tunl0.contains("mtu 1480") && tunl0.contains(",UP"),
        "{tunl0}"
    );
    assert_reachable(&c, &[POD_C, POD_D, POD_E]);
}

#[test]
fn ipip_routes_are_exact_and_follow_node_changes_leaving_foreign_routes() {
    let c = cluster(false, true);
    let n2 = c.node("node-2");
    // Routes of other owners in the same prefix space.
    ok(
        n2.ip(&[
            "route",
            "add",
            "10.42.99.0/24",
            "via",
            "172.31.11.1",
            "proto",
            "static",
        ]),
        "foreign route",
    );
    ok(
        n2.ip(&[
            "route",
            "add",
            "10.42.201.0/27",
            "via",
            "172.31.11.1",
            "proto",
            "static",
        ]),
        "foreign route",
    );
    let foreign = |c: &RoutedCluster| -> Vec<String> {
        let out = ok(
            c.node("node-2").ip(&["route", "show", "proto", "static"]),
            "routes",
        );
        out.lines().map(|l| l.trim().to_string()).collect()
    };
    let foreign_before = foreign(&c);
    assert_eq!(foreign_before.len(), 2, "{foreign_before:?}");

    let nodes = ok(TempFile::new("nodes.yaml", &nodes_yaml(&c.spec)), "nodes");
    let args = ["--route-mode", "ipip", "--tunnel-mtu", "1440"];
    ok(
        c.apply("node-2", std::slice::from_ref(&nodes.0), &args),
        "apply",
    );
    assert_eq!(
        ok(c.bird_routes("node-2"), "routes"),
        [
            "10.42.201.0/26 via 172.31.11.212 dev tunl0 onlink",
            "10.42.54.128/26 via 172.31.11.157 dev tunl0 onlink",
            "blackhole 10.42.187.64/26",
        ]
    );
    let tunl0 = ok(n2.ip(&["link", "show", "dev", "tunl0"]), "link");
    assert!(tunl0.contains("mtu 1440"), "{tunl0}");

    // node-4 removed: its route goes. node-3's podCIDR changed: replaced.
    let mut changed = c.spec.clone();
    changed.retain(|n| n.name != "node-4");
    changed[1].block = "10.42.55.0/26";
    let nodes2 = ok(TempFile::new("nodes2.yaml", &nodes_yaml(&changed)), "nodes");
    ok(
        c.apply("node-2", std::slice::from_ref(&nodes2.0), &args),
        "apply",
    );
    assert_eq!(
        ok(c.bird_routes("node-2"), "routes"),
        [
            "10.42.55.0/26 via 172.31.11.157 dev tunl0 onlink",
            "blackhole 10.42.187.64/26",
        ]
    );
    assert_eq!(foreign(&c), foreign_before, "foreign routes untouched");

    // A route of ours deleted by hand comes back on the next apply.
    ok(n2.ip(&["route", "del", "10.42.55.0/26"]), "delete by hand");
    ok(
        c.apply("node-2", std::slice::from_ref(&nodes2.0), &args),
        "apply",
    );
    assert!(ok(c.bird_routes("node-2"), "routes")
        .contains(&"10.42.55.0/26 via 172.31.11.157 dev tunl0 onlink".to_string()));

    // `render` shows the same routes, as comments after the nft script.
    let bin = ok(nftopo_bin(), "nftopo");
    let nodes2_path = nodes2.0.display().to_string();
    let out = std::process::Command::new(&bin)
        .args(["render", "--node", "node-2", "--manifests", &nodes2_path])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "# ip route replace 10.42.55.0/26 via 172.31.11.157 dev tunl0 proto 12 onlink"
        ),
        "{text}"
    );
    assert!(text.contains("# ip link set tunl0 up mtu 1440"), "{text}");

    // `cleanup --routes` removes nftopo's tables and routes, nobody else's.
    ok(n2.exec(&bin, &["cleanup", "--routes"]), "cleanup --routes");
    assert_eq!(ok(c.bird_routes("node-2"), "routes"), Vec::<String>::new());
    assert_eq!(foreign(&c), foreign_before, "foreign routes untouched");
    assert!(!ok(nft_tables(n2), "nft").contains("nftopo"));
}

#[test]
fn without_an_ipip_device_apply_says_so_and_still_applies_the_rest() {
    let c = cluster(false, false);
    let nodes = ok(TempFile::new("nodes.yaml", &nodes_yaml(&c.spec)), "nodes");
    let err = c
        .apply(
            "node-2",
            std::slice::from_ref(&nodes.0),
            &["--route-mode", "ipip"],
        )
        .expect_err("no ipip on this kernel, and no tunl0 stand-in");
    let msg = err.to_string();
    assert!(msg.contains("no ipip support"), "{msg}");
    assert!(msg.contains("use direct mode"), "{msg}");
    // The nftables table and the blackhole went in regardless.
    assert_eq!(
        ok(c.bird_routes("node-2"), "routes"),
        ["blackhole 10.42.187.64/26"]
    );
    assert!(ok(nft_tables(c.node("node-2")), "nft").contains("nftopo"));
}
