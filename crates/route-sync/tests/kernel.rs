//! route-sync on the real kernel. Each test runs in a thread that moved
//! into a network namespace of its own (`unshare(CLONE_NEWNET)` changes
//! only the calling thread), so nothing touches the host's namespace and
//! the namespace disappears with the thread even when an assertion fails.
//! `ip` (run with `nsenter` into that thread's namespace) sets up the
//! links and is the independent witness. Needs root.

use std::collections::BTreeMap;
use std::process::Command;

use api_watch::Node;
use route_sync::*;

/// Runs `f` on a thread inside a fresh network namespace; `f` gets the
/// path of that namespace for `nsenter --net=`.
fn in_netns<F: FnOnce(String) + Send + 'static>(f: F) {
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
fn ip(ns: &str, args: &str) -> String {
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
fn underlay(ns: &str, with_tunl0: bool) {
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
fn our_routes(ns: &str) -> Vec<String> {
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

fn node(name: &str, ips: &[&str], cidrs: &[&str]) -> Node {
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

fn cluster() -> Vec<Node> {
    vec![
        node("node-2", &["172.31.11.157"], &["10.42.54.128/26"]),
        node("node-3", &["172.31.4.10"], &["10.42.187.64/26"]),
        node("node-4", &["172.31.40.20"], &["10.42.201.0/26"]),
    ]
}

fn sync_to(k: &mut NetlinkRoutes, nodes: &[Node], cfg: &RouteConfig) -> SyncReport {
    let desired = plan_routes(nodes, &[], "node-2", cfg).unwrap();
    assert!(desired.problems.is_empty(), "{:?}", desired.problems);
    let report = sync(k, &desired, cfg.protocol).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    report
}

#[test]
fn ipip_routes_converge_and_foreign_routes_survive_node_changes() {
    in_netns(|ns| {
        underlay(&ns, true);
        // Routes of other owners in the same prefix space.
        ip(&ns, "route add 10.42.0.0/16 via 172.31.0.1 proto static");
        ip(
            &ns,
            "route add 10.42.201.0/26 via 172.31.0.1 metric 50 proto static",
        );
        let foreign = |ns: &str| {
            ip(ns, "-4 route show proto static")
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
        };
        let foreign_before = foreign(&ns);
        assert_eq!(foreign_before.len(), 2, "{foreign_before:?}");

        let mut k = NetlinkRoutes::open().unwrap();
        let cfg = RouteConfig::default(); // ipip, proto bird
        let mut with_addr = cluster();
        with_addr[0]
            .annotations
            .insert(IPIP_TUNNEL_ADDR_ANNOTATION.into(), "10.42.54.128".into());
        let plan = plan_routes(&with_addr, &[], "node-2", &cfg).unwrap();
        k.ensure_tunnel(plan.tunnel.as_ref().unwrap(), Some(1480))
            .unwrap();
        let link = ip(&ns, "addr show dev tunl0");
        assert!(link.contains("mtu 1480") && link.contains(",UP"), "{link}");
        assert!(link.contains("inet 10.42.54.128/32"), "{link}");
        // Idempotent.
        k.ensure_tunnel(plan.tunnel.as_ref().unwrap(), Some(1480))
            .unwrap();

        let report = sync_to(&mut k, &cluster(), &cfg);
        assert_eq!(report.applied.len(), 3);
        assert_eq!(
            our_routes(&ns),
            [
                "10.42.187.64/26 via 172.31.4.10 dev tunl0 proto bird onlink",
                "10.42.201.0/26 via 172.31.40.20 dev tunl0 proto bird onlink",
                "blackhole 10.42.54.128/26 proto bird",
            ]
        );
        assert_eq!(foreign(&ns), foreign_before);

        // What we read back is what we planned: a second sync does nothing.
        assert!(sync_to(&mut k, &cluster(), &cfg).applied.is_empty());

        // node-4 removed: its route goes, the foreign one for its prefix stays.
        let mut nodes = cluster();
        nodes.retain(|n| n.name != "node-4");
        sync_to(&mut k, &nodes, &cfg);
        assert_eq!(
            our_routes(&ns),
            [
                "10.42.187.64/26 via 172.31.4.10 dev tunl0 proto bird onlink",
                "blackhole 10.42.54.128/26 proto bird",
            ]
        );
        assert_eq!(foreign(&ns), foreign_before);

        // node-3's address changes: its route is replaced in place.
        nodes[1].addresses = vec![("InternalIP".into(), "172.31.4.11".parse().unwrap())];
        let report = sync_to(&mut k, &nodes, &cfg);
        assert_eq!(
            report
                .applied
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>(),
            ["route replace 10.42.187.64/26 via 172.31.4.11 dev tunl0 proto 12 onlink"]
        );

        // node-3's podCIDR changes: the old prefix goes, the new one comes.
        nodes[1].pod_cidrs = vec!["10.42.188.0/26".into()];
        sync_to(&mut k, &nodes, &cfg);
        assert_eq!(
            our_routes(&ns),
            [
                "10.42.188.0/26 via 172.31.4.11 dev tunl0 proto bird onlink",
                "blackhole 10.42.54.128/26 proto bird",
            ]
        );
        assert_eq!(foreign(&ns), foreign_before);
    });
}

#[test]
fn direct_routes_with_ipv6_go_via_the_node_on_the_interface_that_reaches_it() {
    in_netns(|ns| {
        underlay(&ns, false);
        let nodes = vec![
            node(
                "node-2",
                &["172.31.11.157", "fd00:31::2"],
                &["10.42.54.128/26", "fd00:42:2::/64"],
            ),
            node(
                "node-3",
                &["172.31.4.10", "fd00:31::3"],
                &["10.42.187.64/26", "fd00:42:3::/64"],
            ),
        ];
        let cfg = RouteConfig {
            mode: Mode::Direct,
            ..RouteConfig::default()
        };
        let mut k = NetlinkRoutes::open().unwrap();
        sync_to(&mut k, &nodes, &cfg);
        let got = our_routes(&ns);
        let want = [
            "10.42.187.64/26 via 172.31.4.10 dev eth0 proto bird",
            "blackhole 10.42.54.128/26 proto bird",
            "blackhole fd00:42:2::/64 dev lo proto bird metric 1024 pref medium",
            "fd00:42:3::/64 via fd00:31::3 dev eth0 proto bird metric 1024 pref medium",
        ];
        assert_eq!(got, want);
        assert!(sync_to(&mut k, &nodes, &cfg).applied.is_empty());
        // Everything of ours goes when the cluster is only this node
        // without CIDRs.
        let alone = vec![node("node-2", &["172.31.11.157"], &[])];
        sync_to(&mut k, &alone, &cfg);
        assert!(our_routes(&ns).is_empty(), "{:?}", our_routes(&ns));
    });
}

#[test]
fn without_tunl0_the_ipip_link_is_created_or_the_error_says_the_kernel_lacks_ipip() {
    in_netns(|ns| {
        underlay(&ns, false);
        let mut k = NetlinkRoutes::open().unwrap();
        let plan = TunnelPlan {
            device: TUNNEL_DEVICE.into(),
            address: None,
        };
        match k.ensure_tunnel(&plan, Some(1480)) {
            Ok(_) => assert!(ip(&ns, "-d link show dev tunl0").contains("ipip")),
            Err(e) => {
                assert!(matches!(e, Error::NoIpipSupport(_)), "{e:?}");
                assert!(e.to_string().contains("no ipip support"), "{e}");
                // Direct routes still work: node-3 shares this node's
                // /20; node-4 does not, and its refusal (ENETUNREACH) is
                // reported without stopping the others.
                let cfg = RouteConfig {
                    mode: Mode::Direct,
                    ..RouteConfig::default()
                };
                let desired = plan_routes(&cluster(), &[], "node-2", &cfg).unwrap();
                let report = sync(&mut k, &desired, cfg.protocol).unwrap();
                assert_eq!(report.applied.len(), 2, "{report:?}");
                assert_eq!(report.failed.len(), 1, "{report:?}");
                assert_eq!(report.failed[0].0.route().dst.to_string(), "10.42.201.0/26");
                assert_eq!(report.failed[0].1.errno(), Some(101));
                assert_eq!(
                    our_routes(&ns),
                    [
                        "10.42.187.64/26 via 172.31.4.10 dev eth0 proto bird",
                        "blackhole 10.42.54.128/26 proto bird",
                    ]
                );
            }
        }
    });
}

#[test]
fn a_foreign_route_with_our_exact_key_is_never_overwritten() {
    in_netns(|ns| {
        underlay(&ns, true);
        ip(&ns, "link set tunl0 up");
        ip(&ns, "route add 10.42.187.64/26 via 172.31.0.1 proto static");
        let mut k = NetlinkRoutes::open().unwrap();
        let desired = plan_routes(&cluster(), &[], "node-2", &RouteConfig::default()).unwrap();
        let report = sync(&mut k, &desired, DEFAULT_PROTOCOL).unwrap();
        assert_eq!(report.applied.len(), 2, "{report:?}");
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(report.failed[0].1.errno(), Some(17), "EEXIST");
        assert!(
            ip(&ns, "route show 10.42.187.64/26").contains("via 172.31.0.1 dev eth0 proto static")
        );
    });
}

#[test]
fn converge_takes_the_tunnel_mtu_and_local_subnets_from_the_interfaces() {
    in_netns(|ns| {
        underlay(&ns, true);
        ip(&ns, "link set eth0 mtu 9001");
        let mut k = NetlinkRoutes::open().unwrap();
        let eth0 = k
            .interfaces()
            .unwrap()
            .into_iter()
            .find(|i| i.name == "eth0")
            .expect("eth0 listed");
        assert_eq!(eth0.mtu, Some(9001));
        assert!(
            eth0.addresses
                .contains(&("172.31.11.157".parse().unwrap(), 20)),
            "{eth0:?}"
        );
        assert!(
            !eth0
                .addresses
                .iter()
                .any(|(ip, _)| ip.to_string().starts_with("fe80")),
            "link-local addresses are left out: {eth0:?}"
        );
        // node-3 (172.31.4.10) is inside eth0's /20, node-4 is not.
        let nodes = cluster();
        let refs: Vec<&Node> = nodes.iter().collect();
        let cfg = RouteConfig {
            mode: Mode::CrossSubnet,
            ..RouteConfig::default()
        };
        let done = converge(&mut k, &refs, &[], "node-2", &cfg, TunnelMtu::Auto).unwrap();
        assert!(done.report.failed.is_empty(), "{:?}", done.report.failed);
        assert!(done.tunnel_error.is_none());
        assert_eq!(done.tunnel_mtu, Some(8981));
        assert!(ip(&ns, "link show dev tunl0").contains("mtu 8981"));
        assert_eq!(
            our_routes(&ns),
            [
                "10.42.187.64/26 via 172.31.4.10 dev eth0 proto bird",
                "10.42.201.0/26 via 172.31.40.20 dev tunl0 proto bird onlink",
                "blackhole 10.42.54.128/26 proto bird",
            ]
        );
    });
}
