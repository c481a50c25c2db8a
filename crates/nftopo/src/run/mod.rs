//! `nftopo run`: the daemon. This module wires and waits: configuration,
//! logs, the metrics and health servers, the cluster source, the kernel
//! syncer and the sync loop, then a signal. The decisions live in the
//! submodules and the libraries.

pub mod config;
pub mod conntrack_settings;
pub mod debug;
pub mod duration;
pub mod events;
pub mod health;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod service_events;
pub mod source;
pub mod svc_health;
pub mod sync_loop;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::ArgMatches;
use nft_writer::{NetlinkKernel, Syncer};
use tokio::net::TcpListener;

use config::{Config, RunArgs};
use health::ProxyHealth;
use http::Response;
use metrics::Metrics;
use sync_loop::{Outputs, Settings};

/// Runs the daemon (or `--cleanup`) with flags `args` parsed from
/// `matches`.
pub fn main(args: &RunArgs, matches: &ArgMatches) -> Result<()> {
    let cfg = config::load(args, matches, config::default_node_name)?;
    if args.cleanup {
        // Routes too when the configuration has nftopo program them.
        return crate::cleanup::cleanup(cfg.routes.map(|r| r.config.protocol));
    }
    // As kube-proxy, before anything is programmed; never fatal (see
    // conntrack_settings).
    conntrack_settings::apply_logged(&cfg.conntrack);
    let open_files = http::raise_fd_limit()
        .map_err(|e| tracing::warn!(error = %e, "cannot raise the open-file limit"))
        .ok();
    tracing::info!(node = %cfg.node_name, min_sync_period = %duration::format(cfg.min_sync_period),
        sync_period = %duration::format(cfg.sync_period),
        full_sync_period = %duration::format(cfg.full_sync_period), ?open_files, "starting");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(daemon(cfg))
}

async fn daemon(cfg: Config) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Mutex::new(ProxyHealth::new(cfg.sync_period)));
    let mut debug_requests = None;
    if let Some(addr) = cfg.metrics_bind_address {
        let m = metrics.clone();
        // The sync loop's answers about its decisions (debug.rs), next to
        // the metrics: loopback unless the metrics address is opened.
        let (handle, requests) = debug::channel();
        debug_requests = Some(requests);
        serve_with(
            addr,
            "metrics",
            Arc::new(move |path: &str| match path {
                "/metrics" => Response::text(
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    m.encode(),
                ),
                _ => Response::not_found(),
            }),
            Some(handle.routes()),
        )
        .await?;
    }
    if let Some(addr) = cfg.healthz_bind_address {
        let h = health.clone();
        serve(
            addr,
            "healthz",
            Arc::new(move |path: &str| {
                let h = h.lock().expect("health lock");
                let (now, wall) = (tokio::time::Instant::now(), SystemTime::now());
                match path {
                    "/healthz" => h.healthz(now, wall),
                    "/livez" => h.livez(now, wall),
                    _ => Response::not_found(),
                }
            }),
        )
        .await?;
    }
    let client = api_watch::api::connect(cfg.kubeconfig.as_deref())
        .await
        .context("connecting to the API server")?;
    // Best effort, in the background: never fails or delays the start.
    tokio::spawn(events::record_starting(
        client.clone(),
        cfg.node_name.clone(),
    ));
    // Nothing is programmed until Services, EndpointSlices and Nodes have
    // all listed once (the snapshots wait for it): a restart never wipes
    // the rules of a running node.
    let block_affinities = cfg
        .routes
        .as_ref()
        .is_some_and(|r| r.needs_block_affinities());
    // Warning Events on Services with problems, written in the background.
    let service_events = service_events::ServiceEvents::spawn(
        client.clone(),
        cfg.node_name.clone(),
        metrics.service_events.clone(),
    );
    let source = source::ApiSource::new(api_watch::api::watch(client, block_affinities));
    let kernel = NetlinkKernel::open().context("opening the nf_tables netlink socket")?;
    let outputs = Outputs {
        metrics,
        health: health.clone(),
        service_health: Some(svc_health::ServiceHealthServers::new(
            cfg.planner.nodeport_addresses.clone(),
            Box::new(local_addresses),
            health,
        )),
        service_events: Some(service_events),
        debug: debug_requests,
    };
    let routes = match cfg.routes {
        Some(settings) => Some(RouteProgrammer {
            settings,
            kernel: route_sync::NetlinkRoutes::open().context("opening the rtnetlink socket")?,
            node: cfg.node_name.clone(),
        }),
        None => None,
    };
    let settings = Settings {
        node: cfg.node_name,
        planner: cfg.planner,
        min_sync_period: cfg.min_sync_period,
        sync_period: cfg.sync_period,
        full_sync_period: cfg.full_sync_period,
    };
    let conntrack =
        nft_writer::conntrack::Conntrack::open().context("opening the ctnetlink socket")?;
    sync_loop::run(
        settings,
        source,
        KernelProgrammer {
            syncer: Syncer::new(kernel),
            conntrack,
            routes,
        },
        outputs,
        shutdown_signal(),
    )
    .await
}

/// The kernel side of the daemon: nftables through [`Syncer`],
/// conntrack clean-up of UDP flows after each sync, and routes.
struct KernelProgrammer {
    syncer: Syncer<NetlinkKernel>,
    conntrack: nft_writer::conntrack::Conntrack,
    routes: Option<RouteProgrammer>,
}

/// Routes over rtnetlink. The loop asks for a pass when the proxier says
/// routes are due (Nodes or Calico blocks changed, or the last pass
/// failed) and on every full sync (which restores routes deleted behind
/// our back).
struct RouteProgrammer {
    settings: crate::routes::Routes,
    kernel: route_sync::NetlinkRoutes,
    node: String,
}

impl RouteProgrammer {
    fn sync(&mut self, state: &api_watch::ClusterState) -> Result<Option<sync_loop::RouteSummary>> {
        let done = self
            .settings
            .converge(&mut self.kernel, state, &self.node)?;
        let failed = done.report.failed.len() + usize::from(done.tunnel_error.is_some());
        Ok(Some(sync_loop::RouteSummary {
            desired: done.desired.routes.len(),
            applied: done.report.applied.len(),
            failed,
        }))
    }
}

impl sync_loop::Programmer for KernelProgrammer {
    fn sync_changes(
        &mut self,
        planner: &nft_writer::IncrementalPlanner,
        changes: nft_writer::Changes,
        full: bool,
    ) -> Result<nft_writer::SyncStats> {
        Ok(self.syncer.sync_changes(planner, changes, full)?)
    }

    fn repair_notes(&self) -> Vec<String> {
        self.syncer.repair_notes().to_vec()
    }

    fn has_deferred(&self) -> bool {
        self.syncer.has_deferred()
    }

    fn clean_udp(
        &mut self,
        scope: &nft_writer::conntrack::Scope,
        udp: &[nft_writer::conntrack::UdpService],
    ) -> Result<usize> {
        Ok(nft_writer::conntrack::clean_udp(
            &mut self.conntrack,
            scope,
            udp,
        )?)
    }

    fn sync_routes(
        &mut self,
        state: &api_watch::ClusterState,
    ) -> Result<Option<sync_loop::RouteSummary>> {
        match &mut self.routes {
            Some(r) => r.sync(state),
            None => Ok(None),
        }
    }
}

/// This node's global-scope addresses (`ip addr show scope global`), for
/// the health-check servers when `--nodeport-addresses` lists CIDRs.
fn local_addresses() -> Result<Vec<std::net::IpAddr>> {
    use route_sync::RouteKernel;
    let interfaces = route_sync::NetlinkRoutes::open()
        .and_then(|mut k| k.interfaces())
        .context("listing the local addresses")?;
    Ok(interfaces
        .into_iter()
        .flat_map(|i| i.addresses.into_iter().map(|(ip, _)| ip))
        .collect())
}

/// Binds `addr` and serves `handler` in the background.
async fn serve(addr: SocketAddr, what: &str, handler: http::Handler) -> Result<()> {
    serve_with(addr, what, handler, None).await
}

/// [`serve`], with `routes` answered first.
async fn serve_with(
    addr: SocketAddr,
    what: &str,
    handler: http::Handler,
    routes: Option<http::Routes>,
) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} address {addr}"))?;
    tracing::info!(%addr, "serving {what}");
    tokio::spawn(http::serve_with(listener, handler, routes));
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch SIGTERM");
                    std::future::pending::<()>().await
                }
            }
        };
        tokio::select! {
            () = term => tracing::info!("SIGTERM"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
        }
    }
}
