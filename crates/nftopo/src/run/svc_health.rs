//! One HTTP server per `healthCheckNodePort` of an
//! `externalTrafficPolicy: Local` Service, as kube-proxy's
//! `ServiceHealthServer`: 200 with the number of local endpoints when
//! this node has some (and the proxy is healthy), 503 otherwise, so that
//! cloud load balancers send traffic only to nodes that can serve it.
//! Servers start and stop as Services come and go.
//!
//! They listen where node ports are served, as kube-proxy's do: on the
//! addresses `--nodeport-addresses` selects ([`listen_on`]): this node's
//! primary address of each family for `primary`, the local addresses
//! inside the CIDRs for a list of CIDRs, every address for `all`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use api_watch::ObjectKey;
use nft_writer::NodePortAddresses;
use tokio::task::JoinHandle;

use super::health::ProxyHealth;
use super::http::{self, Response};

/// Where the health-check servers listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Every address (both families when the kernel allows).
    Any,
    /// Each of these addresses; none: no server can start.
    On(BTreeSet<IpAddr>),
}

/// kube-proxy's node IPs for its service health server
/// (`NodePortAddresses.GetNodeIPs`): for `primary`, the first address of
/// each family in `node_addresses` (this node's Node object's addresses,
/// as the planner picks the node-port address), skipped when loopback;
/// for CIDRs, the addresses of `local` inside them (`None`: they could
/// not be read, so every address, as kube-proxy falls back to); for
/// `all`, every address.
pub fn listen_on(
    nodeport: &NodePortAddresses,
    node_addresses: &[IpAddr],
    local: Option<&[IpAddr]>,
) -> Listen {
    match nodeport {
        NodePortAddresses::All => Listen::Any,
        NodePortAddresses::Primary => Listen::On(
            [
                node_addresses.iter().find(|ip| ip.is_ipv4()),
                node_addresses.iter().find(|ip| ip.is_ipv6()),
            ]
            .into_iter()
            .flatten()
            .filter(|ip| !ip.is_loopback())
            .copied()
            .collect(),
        ),
        NodePortAddresses::Cidrs(cidrs) => match local {
            None => Listen::Any,
            Some(local) => Listen::On(
                local
                    .iter()
                    .filter(|ip| cidrs.iter().any(|c| c.contains(ip)))
                    .copied()
                    .collect(),
            ),
        },
    }
}

pub use proxier::Wanted;

struct Server {
    service: ObjectKey,
    local_endpoints: Arc<AtomicUsize>,
    /// One per address listened on.
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Reads this node's local addresses (`ip addr show scope global`), for
/// `--nodeport-addresses` CIDRs.
pub type LocalAddresses = Box<dyn FnMut() -> anyhow::Result<Vec<IpAddr>> + Send>;

/// The running servers.
pub struct ServiceHealthServers {
    nodeport: NodePortAddresses,
    local_addresses: LocalAddresses,
    /// Where the running servers listen.
    listen: Option<Listen>,
    health: Arc<Mutex<ProxyHealth>>,
    servers: BTreeMap<u16, Server>,
}

impl ServiceHealthServers {
    /// Servers that listen where `nodeport` says (`local_addresses` is
    /// asked for this node's addresses when it lists CIDRs) and report
    /// `health` as `serviceProxyHealthy`.
    pub fn new(
        nodeport: NodePortAddresses,
        local_addresses: LocalAddresses,
        health: Arc<Mutex<ProxyHealth>>,
    ) -> Self {
        ServiceHealthServers {
            nodeport,
            local_addresses,
            listen: None,
            health,
            servers: BTreeMap::new(),
        }
    }

    /// The ports served now.
    #[cfg(test)]
    pub fn ports(&self) -> Vec<u16> {
        self.servers.keys().copied().collect()
    }

    /// Starts, stops and updates servers to match `wanted`, listening
    /// where [`listen_on`] says for this node's `node_addresses` (its
    /// Node object's, as the plan has them); when that changed, every
    /// server moves. A port that cannot be bound is logged and tried
    /// again on the next call.
    pub fn sync(&mut self, wanted: &BTreeMap<u16, Wanted>, node_addresses: &[IpAddr]) {
        let listen = if wanted.is_empty() {
            self.listen.clone()
        } else {
            Some(self.listen_now(node_addresses))
        };
        let moved = listen != self.listen;
        if moved {
            if !self.servers.is_empty() {
                tracing::info!(from = ?self.listen, to = ?listen, "health check servers move");
            }
            for s in std::mem::take(&mut self.servers).values() {
                s.stop();
            }
            self.listen = listen;
        }
        self.servers.retain(|port, s| {
            let keep = wanted.get(port).is_some_and(|w| w.service == s.service);
            if !keep {
                tracing::info!(port, service = %s.service, "stopping health check server");
                s.stop();
            }
            keep
        });
        let Some(listen) = self.listen.clone() else {
            return;
        };
        if matches!(&listen, Listen::On(ips) if ips.is_empty()) {
            if moved {
                tracing::warn!(
                    nodeport_addresses = ?self.nodeport,
                    "no local address to serve health check node ports on"
                );
            }
            return;
        }
        for (&port, w) in wanted {
            if let Some(s) = self.servers.get(&port) {
                s.local_endpoints
                    .store(w.local_endpoints, Ordering::Relaxed);
                continue;
            }
            match self.start(&listen, port, w) {
                Ok(s) => {
                    tracing::info!(port, service = %w.service, listen = ?listen, "started health check server");
                    self.servers.insert(port, s);
                }
                Err(e) => {
                    tracing::error!(port, service = %w.service, error = %e, "cannot serve health check node port")
                }
            }
        }
    }

    fn listen_now(&mut self, node_addresses: &[IpAddr]) -> Listen {
        let local = match &self.nodeport {
            NodePortAddresses::Cidrs(_) => match (self.local_addresses)() {
                Ok(ips) => Some(ips),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"),
                        "cannot read the local addresses; health check node ports listen on every address");
                    None
                }
            },
            _ => None,
        };
        listen_on(&self.nodeport, node_addresses, local.as_deref())
    }

    fn start(&self, listen: &Listen, port: u16, w: &Wanted) -> std::io::Result<Server> {
        let listeners = match listen {
            Listen::On(ips) => ips
                .iter()
                .map(|ip| std::net::TcpListener::bind(SocketAddr::new(*ip, port)))
                .collect::<std::io::Result<Vec<_>>>()?,
            Listen::Any => vec![std::net::TcpListener::bind(SocketAddr::new(
                Ipv6Addr::UNSPECIFIED.into(),
                port,
            ))
            .or_else(|_| std::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))))?],
        };
        let count = Arc::new(AtomicUsize::new(w.local_endpoints));
        let handler: http::Handler = {
            let (count, health, service) = (count.clone(), self.health.clone(), w.service.clone());
            Arc::new(move |_path: &str| {
                let healthy = health
                    .lock()
                    .expect("health lock")
                    .healthy(tokio::time::Instant::now());
                respond(&service, count.load(Ordering::Relaxed), healthy)
            })
        };
        let mut tasks = Vec::new();
        for l in listeners {
            l.set_nonblocking(true)?;
            let l = tokio::net::TcpListener::from_std(l)?;
            tasks.push(tokio::spawn(http::serve(l, handler.clone())));
        }
        Ok(Server {
            service: w.service.clone(),
            local_endpoints: count,
            tasks,
        })
    }
}

impl Drop for ServiceHealthServers {
    fn drop(&mut self) {
        for s in self.servers.values() {
            s.stop();
        }
    }
}

/// kube-proxy's answer, on any path.
pub fn respond(service: &ObjectKey, local_endpoints: usize, proxy_healthy: bool) -> Response {
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {},\n\t\"serviceProxyHealthy\": {}\n}}",
        serde_json::Value::from(service.namespace.as_str()),
        serde_json::Value::from(service.name.as_str()),
        local_endpoints,
        proxy_healthy
    );
    let status = if local_endpoints > 0 && proxy_healthy {
        200
    } else {
        503
    };
    let mut r = Response::json(status, body);
    r.headers.push((
        "X-Load-Balancing-Endpoint-Weight",
        local_endpoints.to_string(),
    ));
    r
}

#[cfg(test)]
mod tests {
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
        let want = |n: usize| Wanted {
            service: ObjectKey::new("ns", "a"),
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
        // The old port's listener closes once its task is aborted.
        let mut closed = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr(pa)).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(closed, "port {pa} still served");
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
}
