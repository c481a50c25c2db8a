use super::*;
use crate::run::http::tests::fetch;
use nft_writer::Cidr;
use std::time::Duration;

#[test]
fn answers_200_with_local_endpoints_and_503_without() {
    let svc = ObjectKey::new("default", "web");
    let cases = [
        ("local endpoints and a healthy proxy", 2, true, 200),
        ("no local endpoint", 0, true, 503),
        ("an unhealthy proxy", 2, false, 503),
    ];
    for (name, n, healthy, status) in cases {
        let r = respond(&svc, n, healthy);
        assert_eq!(r.status, status, "{name}");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["service"]["namespace"], "default", "{name}");
        assert_eq!(v["service"]["name"], "web", "{name}");
        assert_eq!(v["localEndpoints"], n, "{name}");
        assert_eq!(v["serviceProxyHealthy"], healthy, "{name}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Servers on loopback: `--nodeport-addresses` CIDRs with `local`
/// as this node's addresses.
fn on_loopback(cidrs: &[&str], local: Arc<Mutex<Vec<IpAddr>>>) -> ServiceHealthServers {
    let health = Arc::new(Mutex::new(ProxyHealth::new(Duration::from_secs(60))));
    ServiceHealthServers::new(
        NodePortAddresses::Cidrs(cidrs.iter().map(|c| Cidr::parse(c).unwrap()).collect()),
        Box::new(move || Ok(local.lock().unwrap().clone())),
        health,
    )
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[tokio::test]
async fn servers_start_update_and_stop_with_the_services() {
    let local = Arc::new(Mutex::new(ips(&["127.0.0.1"])));
    let mut servers = on_loopback(&["127.0.0.1/32"], local);
    let (pa, pb) = (free_port(), free_port());
    // A name no other test's server answers with (see `answers_as`).
    let want = |n: usize| Wanted {
        service: ObjectKey::new("ns", "start-update-stop"),
        local_endpoints: n,
    };
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));

    servers.sync(&BTreeMap::from([(pa, want(1))]), &[]);
    let r = fetch(addr(pa), "GET / HTTP/1.1\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("\"localEndpoints\": 1"),
        "{r}"
    );

    servers.sync(&BTreeMap::from([(pa, want(0))]), &[]);
    let r = fetch(addr(pa), "GET /healthz HTTP/1.1\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.1 503") && r.contains("\"localEndpoints\": 0"),
        "{r}"
    );

    servers.sync(&BTreeMap::from([(pb, want(3))]), &[]);
    assert_eq!(servers.ports(), vec![pb]);
    tokio::task::yield_now().await;
    let r = fetch(addr(pb), "GET / HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(answers_as(addr(pb), "start-update-stop").await);
    // The old port's listener closes once its task is aborted. Once it
    // has, the port is free for anyone: a test running alongside may get
    // it from `free_port` and listen there (a connect that succeeds is
    // not ours), so the question is whether our server still answers.
    let mut closed = false;
    for _ in 0..100 {
        if !answers_as(addr(pa), "start-update-stop").await {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed, "port {pa} still served");
}

/// Whether a health-check server for a service named `name` answers at
/// `addr` (within a second).
async fn answers_as(addr: SocketAddr, name: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let request = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    if s.write_all(request).await.is_err() {
        return false;
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut out)).await;
    matches!(read, Ok(Ok(_))) && String::from_utf8_lossy(&out).contains(&format!("\"{name}\""))
}

/// Whether a TCP connection to `addr` is refused (nothing listens).
async fn refused(addr: SocketAddr) -> bool {
    for _ in 0..100 {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    false
}

/// kube-proxy's `newServiceHealthServer`: the servers listen on the
/// node IPs `--nodeport-addresses` selects, not on every address
/// (127.0.0.2 is a local address too: all of 127.0.0.0/8 is).
#[tokio::test]
async fn servers_listen_only_on_the_nodeport_addresses_and_follow_them() {
    let local = Arc::new(Mutex::new(ips(&["127.0.0.1", "10.99.0.1"])));
    let mut servers = on_loopback(&["127.0.0.0/24"], local.clone());
    let port = free_port();
    let want = BTreeMap::from([(
        port,
        Wanted {
            service: ObjectKey::new("ns", "a"),
            local_endpoints: 1,
        },
    )]);
    let at = |ip: [u8; 4]| SocketAddr::from((ip, port));
    servers.sync(&want, &[]);
    let r = fetch(at([127, 0, 0, 1]), "GET / HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        refused(at([127, 0, 0, 2])).await,
        "127.0.0.2 is not a local address inside the CIDRs"
    );
    // The local addresses change: the server moves.
    *local.lock().unwrap() = ips(&["127.0.0.2"]);
    servers.sync(&want, &[]);
    tokio::task::yield_now().await;
    let r = fetch(at([127, 0, 0, 2]), "GET / HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(refused(at([127, 0, 0, 1])).await, "left 127.0.0.1");
}

#[test]
fn listen_addresses_follow_nodeport_addresses_as_kube_proxy() {
    let on = |list: &[&str]| Listen::On(ips(list).into_iter().collect());
    let cidrs = |list: &[&str]| {
        NodePortAddresses::Cidrs(list.iter().map(|c| Cidr::parse(c).unwrap()).collect())
    };
    let node = ips(&["172.31.11.85", "172.31.11.86", "fd00:31::85", "fd00:31::86"]);
    let local = ips(&["172.31.11.85", "192.168.7.2", "fd00:31::85", "10.0.0.1"]);
    type Case<'a> = (
        &'a str,
        NodePortAddresses,
        &'a [IpAddr],
        Option<&'a [IpAddr]>,
        Listen,
    );
    let cases: &[Case] = &[
        (
            "primary: the first address of each family of the Node",
            NodePortAddresses::Primary,
            &node,
            Some(&local),
            on(&["172.31.11.85", "fd00:31::85"]),
        ),
        (
            "primary on a single-stack node",
            NodePortAddresses::Primary,
            &node[..2],
            None,
            on(&["172.31.11.85"]),
        ),
        (
            "primary without a node address: nowhere, as no node port is served",
            NodePortAddresses::Primary,
            &[],
            None,
            on(&[]),
        ),
        (
            "primary skips a loopback address, as the planner",
            NodePortAddresses::Primary,
            &ips(&["127.0.0.1", "172.31.11.85"]),
            None,
            on(&[]),
        ),
        (
            "CIDRs: the local addresses inside them",
            cidrs(&["192.168.0.0/16", "fd00:31::/64"]),
            &node,
            Some(&local),
            on(&["192.168.7.2", "fd00:31::85"]),
        ),
        (
            "CIDRs that hold no local address: nowhere",
            cidrs(&["203.0.113.0/24"]),
            &node,
            Some(&local),
            on(&[]),
        ),
        (
            "CIDRs when the local addresses cannot be read: everywhere, as kube-proxy",
            cidrs(&["192.168.0.0/16"]),
            &node,
            None,
            Listen::Any,
        ),
        (
            "all: everywhere",
            NodePortAddresses::All,
            &node,
            Some(&local),
            Listen::Any,
        ),
    ];
    for (name, npa, node_addresses, local, want) in cases {
        assert_eq!(listen_on(npa, node_addresses, *local), *want, "{name}");
    }
}
