//! `nftopo run`'s configuration: kube-proxy's flags, its configuration
//! file (`KubeProxyConfiguration`, kubeproxy.config.k8s.io/v1alpha1, the
//! fields that mean something here) and the defaults, merged per field.
//!
//! Precedence, per field: a flag given on the command line (even when it
//! repeats the default value), then the file, then the default. kube-proxy
//! gets this wrong (kubernetes/kubernetes#108737: with `--config`, most
//! flags are silently ignored); here every field is decided by where its
//! value came from (`ArgMatches::value_source`), never by comparing it
//! with the default.
//!
//! The periods are kube-proxy's: `--min-sync-period` (at most one sync per
//! it) and `--sync-period` (at least one sync per it, default 30 s, and
//! twice it is the `/healthz` timeout). The full sync, which reads the
//! kernel's tables back and repairs them, has nftopo's own
//! `--full-sync-period` (`fullSyncPeriod`, default 1 h: kube-proxy
//! hard-codes the same hour).

mod file;

pub use file::*;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, ValueEnum};
use nft_writer::PlannerConfig;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::duration;
use crate::planner_args::{detect_local, parse_nodeport_addresses, LocalMode, PlannerArgs};
use crate::routes::{CidrSource, NextHop, RouteArgs, RouteMode, Routes};

/// The API group and version of the file this module reads.
pub const API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `nftopo run`, named as kube-proxy's.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Path to a kubeconfig file; in-cluster configuration when absent.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// A KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) YAML
    /// file; flags given on the command line win over it, field by field.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's name (default: $NODE_NAME, else the kernel's hostname).
    #[arg(long)]
    pub hostname_override: Option<String>,
    #[command(flatten)]
    pub planner: PlannerArgs,
    /// Minimum interval between two syncs (e.g. 1s, 500ms; 0 syncs on
    /// every change).
    #[arg(long, default_value = "1s", value_parser = duration::parse)]
    pub min_sync_period: Duration,
    /// Longest interval between two syncs, as kube-proxy's (a sync with
    /// nothing to do sends nothing); `/healthz` turns unhealthy when an
    /// update is not applied within twice this.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub sync_period: Duration,
    /// Interval between two full syncs, which read nftopo's tables back
    /// from the kernel and repair whatever differs (nftopo's own;
    /// kube-proxy hard-codes 1h).
    #[arg(long, default_value = "1h0m0s", value_parser = duration::parse)]
    pub full_sync_period: Duration,
    /// Address (IP:port, or IP) of the metrics server; empty disables it.
    #[arg(long, default_value = "127.0.0.1:10249")]
    pub metrics_bind_address: String,
    /// Address (IP:port, or IP) of the /healthz and /livez server; empty
    /// disables it.
    #[arg(long, default_value = "0.0.0.0:10256")]
    pub healthz_bind_address: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More logs: -v for debug, -vv for trace ($NFTOPO_LOG overrides).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Remove nftopo's tables (and its routes, when the configuration has
    /// a route mode) and exit.
    #[arg(long)]
    pub cleanup: bool,
    #[command(flatten)]
    pub routes: RouteArgs,
    // Boxed: keeps `run` from being the one large subcommand variant.
    #[command(flatten)]
    pub conntrack: Box<super::conntrack_settings::ConntrackArgs>,
}

/// The merged configuration the daemon runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Kubeconfig path; `None` for in-cluster configuration.
    pub kubeconfig: Option<PathBuf>,
    /// This node's name.
    pub node_name: String,
    /// What the ruleset planner needs.
    pub planner: PlannerConfig,
    /// At most one sync per this interval.
    pub min_sync_period: Duration,
    /// A sync at least this often; the health timeout is twice this.
    pub sync_period: Duration,
    /// A full sync (read back, repair) at least this often.
    pub full_sync_period: Duration,
    /// Metrics server address; `None` when disabled.
    pub metrics_bind_address: Option<SocketAddr>,
    /// Health server address; `None` when disabled.
    pub healthz_bind_address: Option<SocketAddr>,
    /// Routes to the other nodes' pod CIDRs; `None` when off.
    pub routes: Option<Routes>,
    /// kube-proxy's conntrack sysctls, set at start.
    pub conntrack: super::conntrack_settings::ConntrackSettings,
}

/// Merges flags, file and defaults, per field (see the module doc).
pub fn merge(
    args: &RunArgs,
    matches: &ArgMatches,
    file: &FileConfig,
    node_name_default: impl FnOnce() -> Result<String>,
) -> Result<Config> {
    let flag = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    // `flag_or(id, flag value, file value)`: the flag when given, else the
    // file's value when set, else the flag's (default) value.
    fn pick<T>(given: bool, flag: T, file: Option<T>) -> T {
        match (given, file) {
            (false, Some(f)) => f,
            _ => flag,
        }
    }
    let file_duration = |field: &str, v: Option<&String>| -> Result<Option<Duration>> {
        v.map(|s| duration::parse(s).map_err(|e| anyhow::anyhow!("config file field {field}: {e}")))
            .transpose()
    };
    let nft = &file.nftables;
    let ipt = &file.iptables;

    let kubeconfig = pick(
        flag("kubeconfig"),
        args.kubeconfig.clone(),
        file.client_connection
            .kubeconfig
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| Some(PathBuf::from(s))),
    );
    let node_name = match pick(
        flag("hostname_override"),
        args.hostname_override.clone(),
        file.hostname_override
            .clone()
            .filter(|s| !s.is_empty())
            .map(Some),
    ) {
        Some(n) if !n.trim().is_empty() => n.trim().to_lowercase(),
        _ => node_name_default()?,
    };
    let cluster_cidr = pick(
        flag("cluster_cidr"),
        args.planner.cluster_cidr.clone(),
        file.cluster_cidr.as_ref().map(|s| {
            s.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        }),
    );
    let file_mode = match file.detect_local_mode.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(m) => Some(LocalMode::from_str(m, false).map_err(|_| {
            anyhow::anyhow!(
                "config file field detectLocalMode: {m:?} is not one of ClusterCIDR, NodeCIDR, \
                 BridgeInterface, InterfaceNamePrefix"
            )
        })?),
    };
    let p = &args.planner;
    let local = detect_local(
        pick(flag("detect_local_mode"), p.detect_local_mode, file_mode),
        &cluster_cidr,
        &pick(
            flag("pod_bridge_interface"),
            p.pod_bridge_interface.clone(),
            file.detect_local.bridge_interface.clone(),
        ),
        &pick(
            flag("pod_interface_name_prefix"),
            p.pod_interface_name_prefix.clone(),
            file.detect_local.interface_name_prefix.clone(),
        ),
    )?;
    let nodeport = pick(
        flag("nodeport_addresses"),
        args.planner.nodeport_addresses.clone(),
        file.node_port_addresses.clone(),
    );
    let masquerade_all = pick(
        flag("masquerade_all"),
        args.planner.masquerade_all,
        file.masquerade_all
            .or(nft.masquerade_all)
            .or(ipt.masquerade_all),
    );
    let file_bit = match nft.masquerade_bit.or(ipt.masquerade_bit) {
        Some(b) if !(0..=31).contains(&b) => {
            bail!("config file field nftables.masqueradeBit: {b} is not in 0..=31")
        }
        b => b.map(|b| b as u8),
    };
    let masquerade_bit = pick(
        flag("masquerade_bit"),
        args.planner.masquerade_bit,
        file_bit,
    );
    let file_min = file_duration("minSyncPeriod", file.min_sync_period.as_ref())?
        .or(file_duration(
            "nftables.minSyncPeriod",
            nft.min_sync_period.as_ref(),
        )?)
        .or(file_duration(
            "iptables.minSyncPeriod",
            ipt.min_sync_period.as_ref(),
        )?);
    let min_sync_period = pick(flag("min_sync_period"), args.min_sync_period, file_min);
    let file_sync = file_duration("syncPeriod", file.sync_period.as_ref())?
        .or(file_duration(
            "nftables.syncPeriod",
            nft.sync_period.as_ref(),
        )?)
        .or(file_duration(
            "iptables.syncPeriod",
            ipt.sync_period.as_ref(),
        )?);
    let sync_period = pick(flag("sync_period"), args.sync_period, file_sync);
    if sync_period.is_zero() {
        bail!("--sync-period must be greater than 0");
    }
    let full_sync_period = pick(
        flag("full_sync_period"),
        args.full_sync_period,
        file_duration("fullSyncPeriod", file.full_sync_period.as_ref())?,
    );
    if full_sync_period.is_zero() {
        bail!("--full-sync-period (fullSyncPeriod) must be greater than 0");
    }
    if min_sync_period > sync_period {
        bail!(
            "--min-sync-period ({}) must not exceed --sync-period ({})",
            duration::format(min_sync_period),
            duration::format(sync_period)
        );
    }
    let metrics = pick(
        flag("metrics_bind_address"),
        args.metrics_bind_address.clone(),
        file.metrics_bind_address.clone(),
    );
    let healthz = pick(
        flag("healthz_bind_address"),
        args.healthz_bind_address.clone(),
        file.healthz_bind_address.clone(),
    );
    let r = &file.routes;
    let a = &args.routes;
    let routes = Routes::new(
        pick(flag("route_mode"), a.route_mode, r.mode),
        pick(
            flag("pod_cidr_source"),
            a.pod_cidr_source,
            r.pod_cidr_source,
        ),
        pick(flag("route_next_hop"), a.route_next_hop, r.next_hop),
        &pick(
            flag("route_protocol"),
            a.route_protocol.clone(),
            r.protocol.clone(),
        ),
        pick(flag("tunnel_mtu"), a.tunnel_mtu, r.tunnel_mtu.map(Some)),
        pick(
            flag("blackhole_own_cidrs"),
            a.blackhole_own_cidrs,
            r.blackhole_own_cidrs,
        ),
    )?;
    Ok(Config {
        routes,
        kubeconfig,
        node_name,
        planner: PlannerConfig {
            detect_local: local,
            masquerade_all,
            masquerade_bit,
            nodeport_addresses: parse_nodeport_addresses(&nodeport)?,
        },
        min_sync_period,
        sync_period,
        full_sync_period,
        metrics_bind_address: bind_address(&metrics, 10249, "metrics-bind-address")?,
        healthz_bind_address: bind_address(&healthz, 10256, "healthz-bind-address")?,
        conntrack: super::conntrack_settings::merge(&args.conntrack, &file.conntrack, &flag)?,
    })
}

/// A bind address as kube-proxy takes it: `IP:port`, `[IPv6]:port`, a
/// bare IP (with `default_port`), or empty (disabled).
pub fn bind_address(s: &str, default_port: u16, flag: &str) -> Result<Option<SocketAddr>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(Some(a));
    }
    match s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => Ok(Some(SocketAddr::new(ip, default_port))),
        Err(_) => bail!("--{flag} {s:?} is not IP:port"),
    }
}

/// The default node name: `$NODE_NAME`, else the kernel's hostname (read
/// from /proc, no name-service lookup), lower-cased as kube-proxy does.
pub fn default_node_name() -> Result<String> {
    if let Ok(n) = std::env::var("NODE_NAME") {
        if !n.trim().is_empty() {
            return Ok(n.trim().to_lowercase());
        }
    }
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading /proc/sys/kernel/hostname (give --hostname-override)")?;
    match h.trim() {
        "" => bail!("the hostname is empty: give --hostname-override"),
        h => Ok(h.to_lowercase()),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
