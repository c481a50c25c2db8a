//! One HTTP server per `healthCheckNodePort` of an
//! `externalTrafficPolicy: Local` Service, as kube-proxy's
//! `ServiceHealthServer`: 200 with the number of local endpoints when
//! this node has some (and the proxy is healthy), 503 otherwise, so that
//! cloud load balancers send traffic only to nodes that can serve it.
//! Servers start and stop as Services come and go.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use api_watch::ObjectKey;
use tokio::task::JoinHandle;
use topology_filter::ProxyPlan;

use super::health::ProxyHealth;
use super::http::{self, Response};

/// What a health-check port serves: the Service and its local ready
/// endpoint count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The Service.
    pub service: ObjectKey,
    /// Ready endpoints on this node.
    pub local_endpoints: usize,
}

/// The health-check servers wanted for `plan`: every Service with a
/// `healthCheckNodePort` (from `ports`) that the plan proxies with an
/// external Local policy; its count is the largest number of local,
/// non-terminating endpoints over its ports.
pub fn wanted(plan: &ProxyPlan, ports: &BTreeMap<ObjectKey, u16>) -> BTreeMap<u16, Wanted> {
    let mut out: BTreeMap<u16, Wanted> = BTreeMap::new();
    for p in plan.services.iter().filter(|p| p.external_policy_local) {
        let Some(&port) = ports.get(&p.service) else {
            continue;
        };
        let local = p.local_endpoints.iter().filter(|e| !e.terminating).count();
        let w = out.entry(port).or_insert_with(|| Wanted {
            service: p.service.clone(),
            local_endpoints: 0,
        });
        if w.service == p.service {
            w.local_endpoints = w.local_endpoints.max(local);
        }
    }
    out
}

struct Server {
    service: ObjectKey,
    local_endpoints: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// The running servers.
pub struct ServiceHealthServers {
    bind: Option<IpAddr>,
    health: Arc<Mutex<ProxyHealth>>,
    servers: BTreeMap<u16, Server>,
}

impl ServiceHealthServers {
    /// Servers that bind `bind` (`None`: every address, both families
    /// when the kernel allows) and report `health` as
    /// `serviceProxyHealthy`.
    pub fn new(bind: Option<IpAddr>, health: Arc<Mutex<ProxyHealth>>) -> Self {
        ServiceHealthServers {
            bind,
            health,
            servers: BTreeMap::new(),
        }
    }

    /// The ports served now.
    #[cfg(test)]
    pub fn ports(&self) -> Vec<u16> {
        self.servers.keys().copied().collect()
    }

    /// Starts, stops and updates servers to match `wanted`. A port that
    /// cannot be bound is logged and tried again on the next call.
    pub fn sync(&mut self, wanted: &BTreeMap<u16, Wanted>) {
        self.servers.retain(|port, s| {
            let keep = wanted.get(port).is_some_and(|w| w.service == s.service);
            if !keep {
                tracing::info!(port, service = %s.service, "stopping health check server");
                s.task.abort();
            }
            keep
        });
        for (&port, w) in wanted {
            if let Some(s) = self.servers.get(&port) {
                s.local_endpoints
                    .store(w.local_endpoints, Ordering::Relaxed);
                continue;
            }
            match self.start(port, w) {
                Ok(s) => {
                    tracing::info!(port, service = %w.service, "started health check server");
                    self.servers.insert(port, s);
                }
                Err(e) => {
                    tracing::error!(port, service = %w.service, error = %e, "cannot serve health check node port")
                }
            }
        }
    }

    fn start(&self, port: u16, w: &Wanted) -> std::io::Result<Server> {
        let listener = match self.bind {
            Some(ip) => std::net::TcpListener::bind(SocketAddr::new(ip, port))?,
            None => {
                std::net::TcpListener::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))
                    .or_else(|_| {
                        std::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
                    })?
            }
        };
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
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
        Ok(Server {
            service: w.service.clone(),
            local_endpoints: count,
            task: tokio::spawn(http::serve(listener, handler)),
        })
    }
}

impl Drop for ServiceHealthServers {
    fn drop(&mut self) {
        for s in self.servers.values() {
            s.task.abort();
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

    #[tokio::test]
    async fn servers_start_update_and_stop_with_the_services() {
        let health = Arc::new(Mutex::new(ProxyHealth::new(Duration::from_secs(60))));
        let mut servers = ServiceHealthServers::new(Some([127, 0, 0, 1].into()), health);
        let (pa, pb) = (free_port(), free_port());
        let want = |n: usize| Wanted {
            service: ObjectKey::new("ns", "a"),
            local_endpoints: n,
        };
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));

        servers.sync(&BTreeMap::from([(pa, want(1))]));
        let r = fetch(addr(pa), "GET / HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.contains("\"localEndpoints\": 1"),
            "{r}"
        );

        servers.sync(&BTreeMap::from([(pa, want(0))]));
        let r = fetch(addr(pa), "GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("\"localEndpoints\": 0"),
            "{r}"
        );

        servers.sync(&BTreeMap::from([(pb, want(3))]));
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

    #[test]
    fn only_external_local_services_with_a_port_are_wanted() {
        use topology_filter::{EndpointTarget, ServicePortPlan};
        let ep = |ip: &str, terminating| EndpointTarget {
            ip: ip.parse().unwrap(),
            port: 80,
            node_name: Some("n".into()),
            terminating,
        };
        let port = |name: &str, local: bool, eps: Vec<EndpointTarget>| ServicePortPlan {
            service: ObjectKey::new("ns", name),
            port_name: String::new(),
            protocol: api_watch::Protocol::Tcp,
            cluster_ips: vec![],
            port: 80,
            node_port: Some(30080),
            external_ips: vec![],
            load_balancer_ips: vec![],
            load_balancer_source_ranges: vec![],
            external_policy_local: local,
            internal_policy_local: false,
            session_affinity_timeout: None,
            endpoints: eps.clone(),
            uses_cluster_endpoints: true,
            uses_local_endpoints: local,
            cluster_endpoints: eps.clone(),
            local_endpoints: eps,
            has_any_endpoints: true,
            has_any_ipv4_endpoints: true,
            has_any_ipv6_endpoints: false,
            serving_endpoints: vec![],
            rule: topology_filter::Rule::None,
            traffic_distribution: None,
            decisions: vec![],
        };
        let plan = ProxyPlan {
            services: vec![
                port(
                    "local",
                    true,
                    vec![ep("10.0.0.1", false), ep("10.0.0.2", true)],
                ),
                port("cluster", false, vec![ep("10.0.0.3", false)]),
                port("no-port", true, vec![]),
            ],
            ..ProxyPlan::default()
        };
        let ports = BTreeMap::from([
            (ObjectKey::new("ns", "local"), 30001),
            (ObjectKey::new("ns", "cluster"), 30002),
        ]);
        let got = wanted(&plan, &ports);
        assert_eq!(
            got,
            BTreeMap::from([(
                30001,
                Wanted {
                    service: ObjectKey::new("ns", "local"),
                    local_endpoints: 1
                }
            )])
        );
    }
}
