//! route-sync on the real kernel. Each test runs in a thread that moved
//! into a network namespace of its own (`unshare(CLONE_NEWNET)` changes
//! only the calling thread), so nothing touches the host's namespace and
//! the namespace disappears with the thread even when an assertion fails.
//! `ip` (run with `nsenter` into that thread's namespace) sets up the
//! links and is the independent witness. Needs root.

use api_watch::Node;
use route_sync::*;

mod common;
use common::*;

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

#[test]
fn the_blocking_api_works_from_inside_an_async_runtime_as_the_daemon_calls_it() {
    in_netns(|ns| {
        underlay(&ns, true);
        ip(&ns, "link set tunl0 up");
        // The daemon's loop is the future of a multi-thread runtime's
        // block_on; a current-thread runtime is checked too. Opening,
        // syncing and dropping must neither panic nor deadlock there.
        let runtimes = [
            tokio::runtime::Builder::new_multi_thread().build().unwrap(),
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        ];
        for rt in runtimes {
            rt.block_on(async {
                let mut k = NetlinkRoutes::open().unwrap();
                sync_to(&mut k, &cluster(), &RouteConfig::default());
                assert_eq!(our_routes(&ns).len(), 3);
                let none = route_sync::DesiredRoutes::default();
                sync(&mut k, &none, DEFAULT_PROTOCOL).unwrap();
                assert!(our_routes(&ns).is_empty());
            });
        }
    });
}
