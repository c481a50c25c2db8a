//! UDP conntrack clean-up on the real kernel, with real datagrams. Each
//! test runs in a thread that moved into a network namespace of its own
//! (`unshare(CLONE_NEWNET)` changes only the calling thread), so nothing
//! touches the host's conntrack table, and the namespace goes with the
//! thread even when an assertion fails. `ip` and `nft` (run with
//! `nsenter` into that thread's namespace) set the scene; the kernel's
//! own `/proc/net/nf_conntrack` of the namespace, where the kernel has it,
//! is the independent witness of what conntrack holds, next to
//! [`Conntrack::dump_udp`]. Needs root.
//!
//! Services, endpoints and clients all live on `lo`: the client's
//! datagram to the service address is DNATed in `nat output`, delivered
//! locally to the endpoint's socket, and the answer (the endpoint's own
//! address as text) is un-NATed on its way back.
//!
//! The rule is kube-proxy's (`CleanStaleEntries`, with #139629 and
//! #141371): a flow goes when its DNAT target is not a serving endpoint of
//! the service port, whatever the policies and topology choose for new
//! connections; the tests that say so take what serves from a real plan
//! ([`topology_filter::plan`] and [`nft_writer::udp_services`]).

mod common;

use common::in_netns;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use api_watch::{
    AddressType, ClusterState, Conditions, Endpoint, EndpointPort, EndpointSlice, ObjectKey,
    Protocol, Service, ServicePort, TargetPort,
};
use nft_writer::conntrack::{clean_udp, Conntrack, Flow, Scope, UdpCleanup, UdpEntry, UdpService};

/// Runs `tool args…` inside the namespace, feeding `stdin`; panics with
/// its stderr on failure.
fn run(ns: &str, tool: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .arg(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nsenter");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ip(ns: &str, args: &str) {
    run(ns, "ip", &args.split_whitespace().collect::<Vec<_>>(), None);
}

fn nft(ns: &str, script: &str) {
    run(ns, "nft", &["-f", "-"], Some(script));
}

/// `lo` up with the client's, the endpoints' and (routed, not local) the
/// services' addresses, for one family.
fn set_up_lo(ns: &str, v6: bool) {
    ip(ns, "link set lo up");
    if v6 {
        for a in ["fd42::1", "fd42::5", "fd42::6"] {
            ip(ns, &format!("-6 addr add {a}/128 dev lo nodad"));
        }
        ip(ns, "-6 route add fd43::/64 dev lo");
        ip(ns, "-6 route add fd44::/64 dev lo");
    } else {
        for a in ["10.42.0.1", "10.42.0.5", "10.42.0.6"] {
            ip(ns, &format!("addr add {a}/32 dev lo"));
        }
        ip(ns, "route add 10.43.0.0/16 dev lo");
        ip(ns, "route add 10.44.0.0/16 dev lo");
    }
}

/// A UDP server on `addr` that answers every datagram with its own
/// address, until nobody has asked for a while.
fn udp_endpoint(addr: &str) {
    let sock = UdpSocket::bind(addr).expect("bind endpoint");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let me = sock.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((_, peer)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(me.as_bytes(), peer);
        }
    });
}

/// A TCP server on `addr` that answers every line with its own address.
fn tcp_endpoint(addr: &str) {
    let listener = TcpListener::bind(addr).expect("bind endpoint");
    let me = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let me = me.clone();
            std::thread::spawn(move || {
                let mut w = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    if line.is_err() || writeln!(w, "{me}").is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// A client socket with a fixed address and port, so that every datagram
/// it sends to one destination belongs to one conntrack flow.
fn client(addr: &str) -> UdpSocket {
    let sock = UdpSocket::bind(addr).expect("bind client");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    sock
}

/// Sends one datagram to `to`; the answering endpoint, if any answers.
fn ask(sock: &UdpSocket, to: &str) -> Option<String> {
    sock.send_to(b"who?", to).expect("send");
    let mut buf = [0u8; 512];
    sock.recv_from(&mut buf)
        .ok()
        .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A service port `default/svc` with one entry, served by `serving`.
fn service(entry: UdpEntry, serving: &[&str]) -> UdpService {
    UdpService {
        service: ObjectKey::new("default", "svc"),
        port_name: String::new(),
        entries: vec![entry],
        serving: serving.iter().map(|e| sa(e)).collect(),
    }
}

/// What a real plan says serves `default/dns` (10.43.0.10:53 → 5353) for
/// node-1, given its endpoints as (address, ready, serving, terminating).
fn planned(endpoints: &[(&str, bool, bool, bool)]) -> Vec<UdpService> {
    let svc = Service {
        key: ObjectKey::new("default", "dns"),
        cluster_ips: vec!["10.43.0.10".parse().unwrap()],
        ports: vec![ServicePort {
            name: String::new(),
            protocol: Protocol::Udp,
            port: 53,
            target_port: TargetPort::Number(5353),
            node_port: None,
        }],
        ..Service::default()
    };
    let slice = EndpointSlice {
        key: ObjectKey::new("default", "dns-1"),
        service_name: "dns".into(),
        address_type: AddressType::IPv4,
        ports: vec![EndpointPort {
            name: String::new(),
            protocol: Protocol::Udp,
            port: 5353,
        }],
        endpoints: endpoints
            .iter()
            .map(|&(ip, ready, serving, terminating)| {
                let conditions = Conditions {
                    ready,
                    serving,
                    terminating,
                };
                Endpoint::new(ip.parse().unwrap(), conditions).on_node("node-2")
            })
            .collect(),
    };
    let state = ClusterState {
        services: [(svc.key.clone(), Box::new(svc))].into_iter().collect(),
        endpoint_slices: [(slice.key.clone(), Box::new(slice))].into_iter().collect(),
        ..ClusterState::default()
    };
    nft_writer::udp_services(&topology_filter::plan(&state, "node-1"))
}

fn flows_to(flows: &[Flow], dst: &str) -> Vec<Flow> {
    flows
        .iter()
        .filter(|f| f.orig_dst == sa(dst))
        .copied()
        .collect()
}

/// The kernel's own listing of this namespace's conntrack table, where
/// the kernel has one (CONFIG_NF_CONNTRACK_PROCFS).
fn proc_conntrack() -> Option<String> {
    std::fs::read_to_string("/proc/thread-self/net/nf_conntrack").ok()
}

/// A nat table whose only DNAT is for another service.
const OTHER_SERVICE_ONLY: &str = "table ip t {
 chain out { type nat hook output priority -100;
  ip daddr 10.43.0.99 udp dport 53 dnat to 10.42.0.5:5353
 }
}
";

/// One endpoint replaced by another: the client keeps reaching the old one
/// through its conntrack flow until `clean_udp` deletes that flow.
struct Replaced {
    v6: bool,
    family: &'static str,
    /// `nft` match for the service entry.
    matcher: &'static str,
    entry: UdpEntry,
    send_to: &'static str,
    client: &'static str,
    old: &'static str,
    new: &'static str,
}

fn endpoint_replaced(s: Replaced) {
    in_netns(move |ns| {
        set_up_lo(&ns, s.v6);
        udp_endpoint(s.old);
        udp_endpoint(s.new);
        let dnat = |ep: &str| {
            let ep = sa(ep);
            let to = if s.v6 {
                format!("[{}]:{}", ep.ip(), ep.port())
            } else {
                ep.to_string()
            };
            format!("{} dnat to {to}", s.matcher)
        };
        nft(
            &ns,
            &format!(
                "table {f} t {{\n chain out {{ type nat hook output priority -100;\n  {}\n }}\n}}\n",
                dnat(s.old),
                f = s.family
            ),
        );
        let c = client(s.client);
        assert_eq!(ask(&c, s.send_to).as_deref(), Some(s.old));
        // The endpoint is replaced in one transaction (the hook stays).
        nft(
            &ns,
            &format!(
                "flush chain {f} t out\nadd rule {f} t out {}\n",
                dnat(s.new),
                f = s.family
            ),
        );
        assert_eq!(
            ask(&c, s.send_to).as_deref(),
            Some(s.old),
            "conntrack keeps the client on the old endpoint"
        );
        let mut ct = Conntrack::open().unwrap();
        let before = flows_to(&ct.dump_udp().unwrap(), s.send_to);
        assert_eq!(before.len(), 1, "{before:?}");
        assert!(
            before[0].dnat && before[0].reply_src == sa(s.old),
            "{before:?}"
        );

        let desired = [service(s.entry, &[s.new])];
        assert_eq!(clean_udp(&mut ct, &Scope::Everything, &desired).unwrap(), 1);
        assert_eq!(flows_to(&ct.dump_udp().unwrap(), s.send_to), vec![]);
        // (The kernel prints IPv6 addresses in full there: IPv4 only.)
        if let (Some(table), false) = (proc_conntrack(), s.v6) {
            let old_ip = format!("src={}", sa(s.old).ip());
            assert!(
                !table
                    .lines()
                    .any(|l| l.contains(" udp ") && l.contains(&old_ip)),
                "{table}"
            );
        }
        assert_eq!(
            ask(&c, s.send_to).as_deref(),
            Some(s.new),
            "the next datagram reaches the new endpoint"
        );
        // Converged: a second run finds nothing to delete.
        assert_eq!(clean_udp(&mut ct, &Scope::Everything, &desired).unwrap(), 0);
        assert_eq!(ask(&c, s.send_to).as_deref(), Some(s.new));
    });
}

#[test]
fn a_client_of_a_cluster_ip_reaches_the_new_endpoint_once_the_old_ones_flow_is_deleted() {
    endpoint_replaced(Replaced {
        v6: false,
        family: "ip",
        matcher: "ip daddr 10.43.0.10 udp dport 53",
        entry: UdpEntry::Addr(sa("10.43.0.10:53")),
        send_to: "10.43.0.10:53",
        client: "10.42.0.1:40000",
        old: "10.42.0.5:5353",
        new: "10.42.0.6:5353",
    });
}

#[test]
fn a_client_of_an_ipv6_cluster_ip_reaches_the_new_endpoint_once_the_old_ones_flow_is_deleted() {
    endpoint_replaced(Replaced {
        v6: true,
        family: "ip6",
        matcher: "ip6 daddr fd43::a udp dport 53",
        entry: UdpEntry::Addr(sa("[fd43::a]:53")),
        send_to: "[fd43::a]:53",
        client: "[fd42::1]:40000",
        old: "[fd42::5]:5353",
        new: "[fd42::6]:5353",
    });
}

#[test]
fn a_client_of_a_node_port_reaches_the_new_endpoint_once_the_old_ones_flow_is_deleted() {
    endpoint_replaced(Replaced {
        v6: false,
        family: "ip",
        matcher: "udp dport 30053",
        entry: UdpEntry::NodePort(30053),
        send_to: "10.42.0.1:30053",
        client: "10.42.0.1:40000",
        old: "10.42.0.5:5353",
        new: "10.42.0.6:5353",
    });
}

#[test]
fn a_flow_tracked_without_dnat_is_deleted_once_the_service_has_an_endpoint_and_unrelated_flows_survive(
) {
    in_netns(|ns| {
        set_up_lo(&ns, false);
        udp_endpoint("10.42.0.5:5353");
        udp_endpoint("10.42.0.6:5353");
        // Another service's DNAT is there (a `dnat` expression is what
        // turns conntrack on in a namespace), but this service has no
        // endpoint yet: its datagram is tracked as it is, routed to lo and
        // lost.
        nft(&ns, OTHER_SERVICE_ONLY);
        let c = client("10.42.0.1:40000");
        assert_eq!(ask(&c, "10.43.0.10:53"), None);
        // Unrelated: straight to an endpoint (answered), and to an address
        // that is no service (lost).
        let other = client("10.42.0.1:40001");
        assert_eq!(
            ask(&other, "10.42.0.5:5353").as_deref(),
            Some("10.42.0.5:5353")
        );
        assert_eq!(ask(&other, "10.44.0.1:53"), None);

        nft(
            &ns,
            "add rule ip t out ip daddr 10.43.0.10 udp dport 53 dnat to 10.42.0.6:5353\n",
        );
        assert_eq!(
            ask(&c, "10.43.0.10:53"),
            None,
            "the flow without DNAT outlives the new rule"
        );
        let mut ct = Conntrack::open().unwrap();
        let flows = ct.dump_udp().unwrap();
        let cached = flows_to(&flows, "10.43.0.10:53");
        assert_eq!(cached.len(), 1, "{flows:?}");
        assert!(!cached[0].dnat, "{cached:?}");

        let desired = [service(
            UdpEntry::Addr(sa("10.43.0.10:53")),
            &["10.42.0.6:5353"],
        )];
        assert_eq!(clean_udp(&mut ct, &Scope::Everything, &desired).unwrap(), 1);
        let after = ct.dump_udp().unwrap();
        assert_eq!(flows_to(&after, "10.43.0.10:53"), vec![]);
        assert_eq!(flows_to(&after, "10.42.0.5:5353").len(), 1, "{after:?}");
        assert_eq!(flows_to(&after, "10.44.0.1:53").len(), 1, "{after:?}");
        if let Some(table) = proc_conntrack() {
            assert!(!table.contains("dst=10.43.0.10"), "{table}");
            assert!(table.contains("dst=10.42.0.5 sport=40001"), "{table}");
            assert!(table.contains("dst=10.44.0.1 sport=40001"), "{table}");
        }
        assert_eq!(ask(&c, "10.43.0.10:53").as_deref(), Some("10.42.0.6:5353"));
    });
}

#[test]
fn tcp_connections_to_a_udp_entrys_address_and_port_are_never_touched() {
    in_netns(|ns| {
        set_up_lo(&ns, false);
        tcp_endpoint("10.42.0.5:5353");
        tcp_endpoint("10.42.0.6:5353");
        nft(
            &ns,
            "table ip t {\n chain out { type nat hook output priority -100;\n  ip daddr 10.43.0.10 tcp dport 53 dnat to 10.42.0.5:5353\n }\n}\n",
        );
        let stream = TcpStream::connect("10.43.0.10:53").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        writeln!(w, "who?").unwrap();
        r.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "10.42.0.5:5353");

        nft(
            &ns,
            "flush chain ip t out\nadd rule ip t out ip daddr 10.43.0.10 tcp dport 53 dnat to 10.42.0.6:5353\n",
        );
        let mut ct = Conntrack::open().unwrap();
        assert_eq!(ct.dump_udp().unwrap(), vec![], "the dump is UDP only");
        let desired = [service(
            UdpEntry::Addr(sa("10.43.0.10:53")),
            &["10.42.0.6:5353"],
        )];
        assert_eq!(clean_udp(&mut ct, &Scope::Everything, &desired).unwrap(), 0);
        if let Some(table) = proc_conntrack() {
            assert!(
                table.contains("tcp") && table.contains("dst=10.43.0.10"),
                "{table}"
            );
        }
        // Still the same connection to the same endpoint.
        line.clear();
        writeln!(w, "who?").unwrap();
        r.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "10.42.0.5:5353");
    });
}

#[test]
fn deleting_a_flow_that_is_already_gone_is_not_an_error() {
    in_netns(|ns| {
        set_up_lo(&ns, false);
        nft(&ns, OTHER_SERVICE_ONLY);
        let mut ct = Conntrack::open().unwrap();
        let flow = Flow {
            orig_src: sa("10.42.0.1:40000"),
            orig_dst: sa("10.43.0.10:53"),
            reply_src: sa("10.42.0.5:5353"),
            reply_dst: sa("10.42.0.1:40000"),
            dnat: true,
        };
        ct.delete(&flow).unwrap();
        assert_eq!(clean_udp(&mut ct, &Scope::Everything, &[]).unwrap(), 0);
    });
}

/// Sets up one client flow DNATed to 10.42.0.5:5353, then moves the DNAT
/// to 10.42.0.6:5353 (new connections go there); returns the client.
fn flow_on_the_first_endpoint_then_dnat_to_the_second(ns: &str) -> UdpSocket {
    set_up_lo(ns, false);
    udp_endpoint("10.42.0.5:5353");
    udp_endpoint("10.42.0.6:5353");
    nft(
        ns,
        "table ip t {\n chain out { type nat hook output priority -100;\n  ip daddr 10.43.0.10 udp dport 53 dnat to 10.42.0.5:5353\n }\n}\n",
    );
    let c = client("10.42.0.1:40000");
    assert_eq!(ask(&c, "10.43.0.10:53").as_deref(), Some("10.42.0.5:5353"));
    nft(
        ns,
        "flush chain ip t out\nadd rule ip t out ip daddr 10.43.0.10 udp dport 53 dnat to 10.42.0.6:5353\n",
    );
    let fresh = client("10.42.0.1:40001");
    assert_eq!(
        ask(&fresh, "10.43.0.10:53").as_deref(),
        Some("10.42.0.6:5353"),
        "new flows go to the second endpoint"
    );
    c
}

#[test]
fn a_flow_to_a_serving_and_terminating_endpoint_survives_the_clean_up() {
    in_netns(|ns| {
        let c = flow_on_the_first_endpoint_then_dnat_to_the_second(&ns);
        // The first endpoint is terminating but still serving: new
        // connections no longer go to it, its flows stay.
        let desired = planned(&[
            ("10.42.0.5", false, true, true),
            ("10.42.0.6", true, true, false),
        ]);
        let mut ct = Conntrack::open().unwrap();
        assert_eq!(clean_udp(&mut ct, &Scope::Everything, &desired).unwrap(), 0);
        assert_eq!(
            ask(&c, "10.43.0.10:53").as_deref(),
            Some("10.42.0.5:5353"),
            "the flow keeps its terminating endpoint"
        );
        assert_eq!(flows_to(&ct.dump_udp().unwrap(), "10.43.0.10:53").len(), 2);
    });
}

#[test]
fn a_flow_to_an_endpoint_that_stopped_serving_is_deleted_while_the_others_stay() {
    in_netns(|ns| {
        let c = flow_on_the_first_endpoint_then_dnat_to_the_second(&ns);
        let desired = planned(&[
            ("10.42.0.5", false, false, true),
            ("10.42.0.6", true, true, false),
        ]);
        let mut ct = Conntrack::open().unwrap();
        assert_eq!(clean_udp(&mut ct, &Scope::Everything, &desired).unwrap(), 1);
        let left = flows_to(&ct.dump_udp().unwrap(), "10.43.0.10:53");
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].reply_src, sa("10.42.0.6:5353"), "{left:?}");
        assert_eq!(ask(&c, "10.43.0.10:53").as_deref(), Some("10.42.0.6:5353"));
    });
}

#[test]
fn every_flow_of_a_port_left_without_a_serving_endpoint_is_deleted() {
    in_netns(|ns| {
        let _c = flow_on_the_first_endpoint_then_dnat_to_the_second(&ns);
        // kube-proxy #139629: no serving endpoint (scaled to zero, or every
        // pod not ready): the flows go, so that the port's reject answers
        // their next datagram instead of a gone pod.
        let desired = planned(&[("10.42.0.5", false, false, false)]);
        assert!(desired[0].serving.is_empty());
        let mut ct = Conntrack::open().unwrap();
        assert_eq!(clean_udp(&mut ct, &Scope::Everything, &desired).unwrap(), 2);
        assert_eq!(flows_to(&ct.dump_udp().unwrap(), "10.43.0.10:53"), vec![]);
    });
}

#[test]
fn the_flows_of_a_deleted_service_port_are_deleted_once() {
    in_netns(|ns| {
        let c = flow_on_the_first_endpoint_then_dnat_to_the_second(&ns);
        let both = [
            ("10.42.0.5", true, true, false),
            ("10.42.0.6", true, true, false),
        ];
        let mut cleanup = UdpCleanup::default();
        cleanup.update(planned(&both));
        let mut ct = Conntrack::open().unwrap();
        assert_eq!(
            clean_udp(&mut ct, &Scope::Everything, &cleanup.desired()).unwrap(),
            0
        );
        cleanup.cleaned();

        // The Service is deleted (its rules would go with it; the test's
        // DNAT stays, to show that the clean-up happens once).
        cleanup.update(vec![]);
        assert_eq!(
            clean_udp(&mut ct, &Scope::Everything, &cleanup.desired()).unwrap(),
            2
        );
        cleanup.cleaned();
        assert_eq!(flows_to(&ct.dump_udp().unwrap(), "10.43.0.10:53"), vec![]);

        assert_eq!(ask(&c, "10.43.0.10:53").as_deref(), Some("10.42.0.6:5353"));
        cleanup.update(vec![]);
        assert_eq!(
            clean_udp(&mut ct, &Scope::Everything, &cleanup.desired()).unwrap(),
            0,
            "once"
        );
        assert_eq!(flows_to(&ct.dump_udp().unwrap(), "10.43.0.10:53").len(), 1);
    });
}

/// The kernel filters a clean-up's dumps (CTA_FILTER): an entry's dump
/// lists the flows to that address and port only, a node port's dump the
/// flows to that port on any address, and a clean-up scoped to one entry
/// deletes nothing elsewhere, even where a flow elsewhere is stale.
#[test]
fn a_scoped_clean_up_dumps_and_deletes_only_the_flows_of_its_entries() {
    in_netns(|ns| {
        set_up_lo(&ns, false);
        udp_endpoint("10.42.0.5:5353");
        nft(
            &ns,
            "table ip t {\n chain out { type nat hook output priority -100;\n  ip daddr { 10.43.0.10, 10.44.0.1 } udp dport { 53, 54 } dnat to 10.42.0.5:5353\n }\n}\n",
        );
        let c = client("10.42.0.1:40000");
        for to in ["10.43.0.10:53", "10.43.0.10:54", "10.44.0.1:53"] {
            assert_eq!(ask(&c, to).as_deref(), Some("10.42.0.5:5353"), "{to}");
        }
        let mut ct = Conntrack::open().unwrap();
        let dsts = |flows: Vec<Flow>| {
            let mut d: Vec<String> = flows.iter().map(|f| f.orig_dst.to_string()).collect();
            d.sort();
            d
        };
        assert_eq!(
            dsts(ct.dump_udp_to(UdpEntry::Addr(sa("10.43.0.10:53"))).unwrap()),
            ["10.43.0.10:53"]
        );
        assert_eq!(
            dsts(ct.dump_udp_to(UdpEntry::NodePort(53)).unwrap()),
            ["10.43.0.10:53", "10.44.0.1:53"]
        );
        assert_eq!(
            dsts(ct.dump_udp().unwrap()),
            ["10.43.0.10:53", "10.43.0.10:54", "10.44.0.1:53"]
        );

        // All three flows go to an endpoint that no longer serves; the
        // clean-up looks at 10.43.0.10:54 only.
        let desired: Vec<UdpService> = ["10.43.0.10:53", "10.43.0.10:54", "10.44.0.1:53"]
            .iter()
            .map(|e| service(UdpEntry::Addr(sa(e)), &["10.42.0.6:5353"]))
            .collect();
        let scope = Scope::Entries([UdpEntry::Addr(sa("10.43.0.10:54"))].into());
        assert_eq!(clean_udp(&mut ct, &scope, &desired).unwrap(), 1);
        assert_eq!(
            dsts(ct.dump_udp().unwrap()),
            ["10.43.0.10:53", "10.44.0.1:53"]
        );
        assert_eq!(clean_udp(&mut ct, &Scope::Nothing, &desired).unwrap(), 0);
        assert_eq!(
            dsts(ct.dump_udp().unwrap()).len(),
            2,
            "Nothing dumps nothing"
        );
        assert!(
            ct.kernel_filters(),
            "this kernel (6.x) filters dumps itself"
        );
    });
}
