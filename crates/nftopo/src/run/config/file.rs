//! The configuration file: a `KubeProxyConfiguration` (kube-proxy's own
//! format), read strictly.

use super::*;

/// The fields of a `KubeProxyConfiguration` file. Fields kube-proxy has
/// but nftopo does not use are accepted and ignored, so that an existing
/// kube-proxy file works; anything else is an error naming the field.
/// nftopo's own fields: `fullSyncPeriod` and the `routes:` section.
// kube-proxy's fields that mean nothing here are read (so that an
// existing file loads) and never used.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileConfig {
    pub(super) api_version: Option<String>,
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) client_connection: ClientConnection,
    pub(super) hostname_override: Option<String>,
    #[serde(rename = "clusterCIDR")]
    pub(super) cluster_cidr: Option<String>,
    pub(super) metrics_bind_address: Option<String>,
    pub(super) healthz_bind_address: Option<String>,
    pub(super) node_port_addresses: Option<Vec<String>>,
    pub(super) masquerade_all: Option<bool>,
    pub(super) sync_period: Option<String>,
    pub(super) min_sync_period: Option<String>,
    /// `ClusterCIDR` (also when empty), `NodeCIDR`, `BridgeInterface` or
    /// `InterfaceNamePrefix`.
    pub(super) detect_local_mode: Option<String>,
    #[serde(default)]
    pub(super) detect_local: DetectLocalConfig,
    /// nftopo's own (kube-proxy hard-codes its full sync at 1h).
    pub(super) full_sync_period: Option<String>,
    #[serde(default)]
    pub(super) iptables: ModeConfig,
    #[serde(default)]
    pub(super) nftables: ModeConfig,
    /// nftopo's own section (kube-proxy has no routes).
    #[serde(default)]
    pub(super) routes: RoutesConfig,
    // Accepted and ignored (kube-proxy's, meaningless here).
    pub(super) feature_gates: Option<IgnoredAny>,
    pub(super) bind_address: Option<IgnoredAny>,
    pub(super) bind_address_hard_fail: Option<IgnoredAny>,
    pub(super) enable_profiling: Option<IgnoredAny>,
    pub(super) show_hidden_metrics_for_version: Option<IgnoredAny>,
    pub(super) mode: Option<IgnoredAny>,
    pub(super) ipvs: Option<IgnoredAny>,
    pub(super) winkernel: Option<IgnoredAny>,
    pub(super) oom_score_adj: Option<IgnoredAny>,
    /// kube-proxy's `conntrack:` section (read, not ignored).
    #[serde(default)]
    pub(super) conntrack: crate::run::conntrack_settings::ConntrackConfig,
    pub(super) config_sync_period: Option<IgnoredAny>,
    pub(super) port_range: Option<IgnoredAny>,
    pub(super) logging: Option<IgnoredAny>,
    pub(super) windows_run_as_service: Option<IgnoredAny>,
}

// kube-proxy's fields that mean nothing here are read (so that an
// existing file loads) and never used.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ClientConnection {
    pub(super) kubeconfig: Option<String>,
    pub(super) accept_content_types: Option<IgnoredAny>,
    pub(super) content_type: Option<IgnoredAny>,
    pub(super) qps: Option<IgnoredAny>,
    pub(super) burst: Option<IgnoredAny>,
}

/// `iptables:` and `nftables:` sections.
// kube-proxy's fields that mean nothing here are read (so that an
// existing file loads) and never used.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ModeConfig {
    pub(super) masquerade_bit: Option<i32>,
    pub(super) masquerade_all: Option<bool>,
    pub(super) sync_period: Option<String>,
    pub(super) min_sync_period: Option<String>,
    pub(super) localhost_node_ports: Option<IgnoredAny>,
}

/// `detectLocal:` (v1alpha1's fields).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct DetectLocalConfig {
    pub(super) bridge_interface: Option<String>,
    pub(super) interface_name_prefix: Option<String>,
}

/// `routes:`, nftopo's section: the route flags by other names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RoutesConfig {
    pub(super) mode: Option<RouteMode>,
    #[serde(rename = "podCIDRSource")]
    pub(super) pod_cidr_source: Option<CidrSource>,
    pub(super) next_hop: Option<NextHop>,
    pub(super) protocol: Option<String>,
    #[serde(rename = "tunnelMTU")]
    pub(super) tunnel_mtu: Option<u32>,
    #[serde(rename = "blackholeOwnCIDRs")]
    pub(super) blackhole_own_cidrs: Option<bool>,
}

impl FileConfig {
    /// Parses a file's text; `source` names it in errors.
    pub fn parse(source: &str, text: &str) -> Result<Self> {
        // YAML to a tree first, then the tree to the configuration, so that
        // a wrong field is named by its path (`routes.mode: unknown
        // variant …`) as well as a syntax error by its line.
        let tree: serde_json::Value =
            serde_saphyr::from_str(text).with_context(|| format!("config file {source}"))?;
        let tree = if tree.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            tree
        };
        let file: FileConfig = serde_path_to_error::deserialize(tree)
            .map_err(|e| anyhow::anyhow!("config file {source}: {}: {}", e.path(), e.inner()))?;
        if let Some(v) = &file.api_version {
            if v != API_VERSION {
                bail!("config file {source}: apiVersion {v:?} is not {API_VERSION}");
            }
        }
        if let Some(k) = &file.kind {
            if k != "KubeProxyConfiguration" {
                bail!("config file {source}: kind {k:?} is not KubeProxyConfiguration");
            }
        }
        Ok(file)
    }

    pub(super) fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        Self::parse(&path.display().to_string(), &text)
    }
}

/// Builds the configuration: reads `--config` if given and merges.
/// `node_name_default` is called only when neither flag nor file names
/// the node.
pub fn load(
    args: &RunArgs,
    matches: &ArgMatches,
    node_name_default: impl FnOnce() -> Result<String>,
) -> Result<Config> {
    let file = match &args.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    merge(args, matches, &file, node_name_default)
}
