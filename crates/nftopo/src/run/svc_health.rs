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
        serde_json::Value::from(service.namespace.as_ref()),
        serde_json::Value::from(service.name.as_ref()),
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
mod tests;
