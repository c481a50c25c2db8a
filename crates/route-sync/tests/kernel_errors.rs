//! How route-sync reports what the kernel refused, on the real kernel:
//! which route, which errno, the kernel's own message; a missing tunnel
//! device; and, with many requests in flight, each refusal matched to its
//! own route while every other route still goes in. Same set-up as
//! `kernel.rs` (a network namespace per test thread, `ip` as the
//! witness). Needs root.

use std::net::Ipv4Addr;

use api_watch::Node;
use route_sync::*;

mod common;
use common::*;

#[test]
fn a_missing_tunnel_device_refuses_its_routes_by_name_and_the_others_still_apply() {
    in_netns(|ns| {
        underlay(&ns, false);
        let mut k = NetlinkRoutes::open().unwrap();
        // IPIP plan, but nobody made tunl0 (no ensure_tunnel).
        let desired = plan_routes(&cluster(), &[], "node-2", &RouteConfig::default()).unwrap();
        let report = sync(&mut k, &desired, DEFAULT_PROTOCOL).unwrap();
        assert_eq!(report.applied.len(), 1, "{report:?}");
        assert_eq!(our_routes(&ns), ["blackhole 10.42.54.128/26 proto bird"]);
        let failed: Vec<String> = report
            .failed
            .iter()
            .map(|(op, e)| {
                assert!(
                    matches!(e, Error::NoDevice(d) if d == TUNNEL_DEVICE),
                    "{e:?}"
                );
                format!("{op}: {e}")
            })
            .collect();
        assert_eq!(
            failed,
            [
                "route add 10.42.187.64/26 via 172.31.4.10 dev tunl0 proto 12 onlink: no device \"tunl0\"",
                "route add 10.42.201.0/26 via 172.31.40.20 dev tunl0 proto 12 onlink: no device \"tunl0\"",
            ]
        );
    });
}

#[test]
fn a_refused_route_reports_its_errno_and_the_kernels_message() {
    in_netns(|ns| {
        underlay(&ns, false);
        let mut k = NetlinkRoutes::open().unwrap();
        let cfg = RouteConfig {
            mode: Mode::Direct,
            ..RouteConfig::default()
        };
        // node-4 (172.31.40.20) is outside eth0's /20: no route reaches it.
        let desired = plan_routes(&cluster(), &[], "node-2", &cfg).unwrap();
        let report = sync(&mut k, &desired, cfg.protocol).unwrap();
        assert_eq!(report.failed.len(), 1, "{report:?}");
        let (op, e) = &report.failed[0];
        assert_eq!(
            op.to_string(),
            "route add 10.42.201.0/26 via 172.31.40.20 proto 12"
        );
        let Error::Kernel {
            op: what,
            errno,
            ext_ack,
        } = e
        else {
            panic!("not a kernel refusal: {e:?}");
        };
        assert_eq!(what, &op.to_string(), "the error names the route");
        assert_eq!(*errno, 101, "ENETUNREACH");
        // `ip route add` prints the same text ("Error: Nexthop has invalid
        // gateway."); its wording is the kernel's, so only its presence is
        // checked.
        let text = ext_ack.as_deref().expect("the kernel's extended ack");
        assert!(!text.is_empty());
        let shown = e.to_string();
        assert!(
            shown.starts_with("kernel refused route add 10.42.201.0/26"),
            "{shown}"
        );
        assert!(
            shown.contains("unreachable") && shown.contains(text),
            "{shown}"
        );
    });
}

/// Peer `i` (1..) in eth0's /20, with pod CIDR 10.60.0.0/24 + i.
fn numbered(i: u32, gateway_offset: u32) -> Node {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 31, 1, 0)) + i + gateway_offset);
    let cidr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 60, 0, 0)) + (i << 8));
    node(
        &format!("peer-{i}"),
        &[&ip.to_string()],
        &[&format!("{cidr}/24")],
    )
}

#[test]
fn with_many_requests_in_flight_each_refusal_is_matched_to_its_own_route() {
    in_netns(|ns| {
        underlay(&ns, false);
        // A route of another owner holds node-150's prefix.
        ip(&ns, "route add 10.60.150.0/24 via 172.31.0.1 proto static");
        let cfg = RouteConfig {
            mode: Mode::Direct,
            blackhole_own_cidrs: false,
            ..RouteConfig::default()
        };
        let mut k = NetlinkRoutes::open().unwrap();
        for offset in [0, 1000] {
            // 300 nodes, then all of them on new addresses (replaces).
            let mut nodes = vec![node("node-2", &["172.31.11.157"], &[])];
            nodes.extend((1..=300).map(|i| numbered(i, offset)));
            let desired = plan_routes(&nodes, &[], "node-2", &cfg).unwrap();
            let report = sync(&mut k, &desired, cfg.protocol).unwrap();
            assert_eq!(report.applied.len(), 299, "offset {offset}");
            assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
            let (op, e) = &report.failed[0];
            assert_eq!(op.route().dst.to_string(), "10.60.150.0/24");
            assert_eq!(e.errno(), Some(17), "EEXIST: {e}");
            let routes = our_routes(&ns);
            assert_eq!(routes.len(), 299);
            let last = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 31, 1, 0)) + 300 + offset);
            assert!(
                routes.contains(&format!("10.61.44.0/24 via {last} dev eth0 proto bird")),
                "{:?}",
                &routes[..3]
            );
        }
        assert!(ip(&ns, "route show 10.60.150.0/24").contains("proto static"));
    });
}
