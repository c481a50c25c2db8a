use super::*;
use clap::{CommandFactory, FromArgMatches, Parser};
use nft_writer::{Cidr, DetectLocal, IfacePattern, NodePortAddresses};

#[derive(Debug, Parser)]
struct Cmd {
    #[command(flatten)]
    args: RunArgs,
}

fn config(argv: &[&str], file: &str) -> Result<Config> {
    let argv = std::iter::once("run").chain(argv.iter().copied());
    let matches = Cmd::command().try_get_matches_from(argv)?;
    let cmd = Cmd::from_arg_matches(&matches)?;
    let file = FileConfig::parse("test.yaml", file)?;
    merge(&cmd.args, &matches, &file, || Ok("from-hostname".into()))
}

const FILE: &str = "
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: /etc/file.kubeconfig
  qps: 5
hostnameOverride: file-node
clusterCIDR: 10.42.0.0/16,fd00:42::/48
metricsBindAddress: 0.0.0.0:9999
healthzBindAddress: 127.0.0.1:8888
nodePortAddresses: [192.168.0.0/16]
masqueradeAll: true
fullSyncPeriod: 2h
nftables:
  masqueradeBit: 5
  minSyncPeriod: 3s
  syncPeriod: 30m
conntrack:
  maxPerCore: 0
routes:
  mode: ipip
  podCIDRSource: calico-ipam
  nextHop: calico-annotation
  protocol: zebra
  tunnelMTU: 1400
  blackholeOwnCIDRs: false
";

#[test]
fn without_flags_or_file_the_defaults_are_kube_proxys() {
    let c = config(&[], "").unwrap();
    assert_eq!(c.kubeconfig, None);
    assert_eq!(c.node_name, "from-hostname");
    assert_eq!(c.min_sync_period, Duration::from_secs(1));
    assert_eq!(
        c.sync_period,
        Duration::from_secs(30),
        "kube-proxy's syncPeriod default"
    );
    assert_eq!(
        c.full_sync_period,
        Duration::from_secs(3600),
        "kube-proxy's hard-coded full sync interval"
    );
    assert_eq!(
        c.metrics_bind_address,
        Some("127.0.0.1:10249".parse().unwrap())
    );
    assert_eq!(
        c.healthz_bind_address,
        Some("0.0.0.0:10256".parse().unwrap())
    );
    assert!(!c.planner.masquerade_all);
    assert_eq!(c.planner.masquerade_bit, 14);
    assert_eq!(c.planner.nodeport_addresses, NodePortAddresses::Primary);
    assert_eq!(c.planner.detect_local, DetectLocal::ClusterCidr(vec![]));
    assert_eq!(c.routes, None, "routes are off unless asked for");
}

#[test]
fn the_file_wins_over_every_default() {
    let c = config(&[], FILE).unwrap();
    assert_eq!(c.kubeconfig, Some(PathBuf::from("/etc/file.kubeconfig")));
    assert_eq!(c.node_name, "file-node");
    assert!(matches!(&c.planner.detect_local, DetectLocal::ClusterCidr(v) if v.len() == 2));
    assert_eq!(
        c.metrics_bind_address,
        Some("0.0.0.0:9999".parse().unwrap())
    );
    assert_eq!(
        c.healthz_bind_address,
        Some("127.0.0.1:8888".parse().unwrap())
    );
    assert_eq!(
        c.planner.nodeport_addresses,
        NodePortAddresses::Cidrs(vec![Cidr::parse("192.168.0.0/16").unwrap()])
    );
    assert!(c.planner.masquerade_all);
    assert_eq!(c.planner.masquerade_bit, 5);
    assert_eq!(c.min_sync_period, Duration::from_secs(3));
    assert_eq!(c.sync_period, Duration::from_secs(1800));
    assert_eq!(c.full_sync_period, Duration::from_secs(7200));
    let r = c.routes.expect("routes on");
    assert_eq!(r.config.mode, route_sync::Mode::Ipip);
    assert_eq!(
        r.config.pod_cidr_source,
        route_sync::PodCidrSource::CalicoIpam
    );
    assert_eq!(
        r.config.next_hop,
        route_sync::NextHopSource::CalicoAnnotation
    );
    assert_eq!(r.config.protocol, 11, "zebra");
    assert_eq!(r.mtu, route_sync::TunnelMtu::Fixed(1400));
    assert!(!r.config.blackhole_own_cidrs);
    assert!(r.needs_block_affinities());
}

/// kubernetes/kubernetes#108737: a flag given on the command line wins
/// over the file, even when its value is the flag's default.
#[test]
fn a_flag_on_the_command_line_wins_over_the_file_field_by_field() {
    type Check = fn(&Config) -> bool;
    let cases: &[(&str, &[&str], Check)] = &[
        ("--kubeconfig", &["--kubeconfig", "/flag"], |c| {
            c.kubeconfig == Some(PathBuf::from("/flag"))
        }),
        (
            "--hostname-override",
            &["--hostname-override", "Flag-Node"],
            |c| c.node_name == "flag-node",
        ),
        ("--cluster-cidr", &["--cluster-cidr", "10.1.0.0/16"], |c| {
            c.planner.detect_local
                == DetectLocal::ClusterCidr(vec![Cidr::parse("10.1.0.0/16").unwrap()])
        }),
        (
            "--nodeport-addresses set to its default",
            &["--nodeport-addresses", "primary"],
            |c| c.planner.nodeport_addresses == NodePortAddresses::Primary,
        ),
        (
            "--masquerade-all=false against a file that sets it",
            &["--masquerade-all=false"],
            |c| !c.planner.masquerade_all,
        ),
        (
            "--masquerade-bit set to its default",
            &["--masquerade-bit", "14"],
            |c| c.planner.masquerade_bit == 14,
        ),
        (
            "--min-sync-period set to its default",
            &["--min-sync-period", "1s"],
            |c| c.min_sync_period == Duration::from_secs(1),
        ),
        ("--min-sync-period 0", &["--min-sync-period", "0"], |c| {
            c.min_sync_period.is_zero()
        }),
        (
            "--sync-period set to its default",
            &["--sync-period", "30s"],
            |c| c.sync_period == Duration::from_secs(30),
        ),
        (
            "--full-sync-period set to its default",
            &["--full-sync-period", "1h0m0s"],
            |c| c.full_sync_period == Duration::from_secs(3600),
        ),
        (
            "--metrics-bind-address set to its default",
            &["--metrics-bind-address", "127.0.0.1:10249"],
            |c| c.metrics_bind_address == Some("127.0.0.1:10249".parse().unwrap()),
        ),
        (
            "--healthz-bind-address set to its default",
            &["--healthz-bind-address", "0.0.0.0:10256"],
            |c| c.healthz_bind_address == Some("0.0.0.0:10256".parse().unwrap()),
        ),
        ("--route-mode none", &["--route-mode", "none"], |c| {
            c.routes.is_none()
        }),
        ("--route-mode direct", &["--route-mode", "direct"], |c| {
            c.routes.as_ref().unwrap().config.mode == route_sync::Mode::Direct
        }),
        (
            "--pod-cidr-source node-spec set to its default",
            &["--pod-cidr-source", "node-spec"],
            |c| !c.routes.as_ref().unwrap().needs_block_affinities(),
        ),
        (
            "--route-next-hop internal-ip set to its default",
            &["--route-next-hop", "internal-ip"],
            |c| c.routes.as_ref().unwrap().config.next_hop == route_sync::NextHopSource::InternalIp,
        ),
        (
            "--route-protocol bird set to its default",
            &["--route-protocol", "bird"],
            |c| c.routes.as_ref().unwrap().config.protocol == 12,
        ),
        ("--tunnel-mtu", &["--tunnel-mtu", "1480"], |c| {
            c.routes.as_ref().unwrap().mtu == route_sync::TunnelMtu::Fixed(1480)
        }),
        (
            "--blackhole-own-cidrs set to its default",
            &["--blackhole-own-cidrs=true"],
            |c| c.routes.as_ref().unwrap().config.blackhole_own_cidrs,
        ),
    ];
    let from_file = config(&[], FILE).unwrap();
    for (name, argv, check) in cases {
        assert!(
            !check(&from_file),
            "{name}: the file alone must differ, or the case proves nothing"
        );
        let c = config(argv, FILE).unwrap();
        assert!(check(&c), "{name}: {c:#?}");
    }
}

#[test]
fn masquerade_all_as_a_bare_flag_is_true() {
    assert!(
        config(&["--masquerade-all"], "")
            .unwrap()
            .planner
            .masquerade_all
    );
}

#[test]
fn top_level_sync_periods_win_over_the_nftables_section() {
    let c = config(
        &[],
        "syncPeriod: 10m\nminSyncPeriod: 2s\nnftables: {syncPeriod: 20m, minSyncPeriod: 4s}\niptables: {masqueradeBit: 7}\n",
    )
    .unwrap();
    assert_eq!(c.sync_period, Duration::from_secs(600));
    assert_eq!(c.min_sync_period, Duration::from_secs(2));
    assert_eq!(
        c.planner.masquerade_bit, 7,
        "iptables.masqueradeBit when nftables has none"
    );
}

#[test]
fn bad_files_are_refused_naming_the_field() {
    let cases = [
        (
            "an unknown top-level field",
            "clusterCidr: 10.0.0.0/8\n",
            "clusterCidr",
        ),
        (
            "an unknown nested field",
            "nftables:\n  masqBit: 3\n",
            "masqBit",
        ),
        ("another apiVersion", "apiVersion: v1\n", "apiVersion"),
        ("another kind", "kind: KubeletConfiguration\n", "kind"),
        ("a bad duration", "syncPeriod: 1 hour\n", "syncPeriod"),
        (
            "a bad full sync period",
            "fullSyncPeriod: hourly\n",
            "fullSyncPeriod",
        ),
        (
            "a zero full sync period",
            "fullSyncPeriod: 0s\n",
            "fullSyncPeriod",
        ),
        (
            "fullSyncPeriod is top-level only (nftopo's own, not kube-proxy's nftables section)",
            "nftables: {fullSyncPeriod: 1h}\n",
            "fullSyncPeriod",
        ),
        (
            "a bit out of range",
            "nftables: {masqueradeBit: 40}\n",
            "masqueradeBit",
        ),
    ];
    for (name, file, field) in cases {
        let err = format!("{:#}", config(&[], file).unwrap_err());
        assert!(err.contains(field), "{name}: {err}");
    }
}

#[test]
fn bind_addresses_read_as_kube_proxy_reads_them() {
    let cases = [
        ("IP and port", "127.0.0.1:1", Some("127.0.0.1:1")),
        (
            "a bare IP takes the default port",
            "0.0.0.0",
            Some("0.0.0.0:10256"),
        ),
        ("IPv6", "[::]:5", Some("[::]:5")),
        ("a bare IPv6", "::", Some("[::]:10256")),
        ("empty disables the server", "", None),
    ];
    for (name, text, want) in cases {
        let got = bind_address(text, 10256, "x").unwrap();
        assert_eq!(got, want.map(|w| w.parse().unwrap()), "{name}");
    }
    assert!(bind_address("nowhere:80", 1, "x").is_err());
}

#[test]
fn min_sync_period_may_not_exceed_sync_period() {
    assert!(config(&["--min-sync-period", "2h"], "").is_err());
    let e = config(&["--min-sync-period", "45s"], "").unwrap_err();
    assert!(
        format!("{e:#}").contains("--sync-period (30s)"),
        "against the 30 s default: {e:#}"
    );
    assert!(
        config(
            &["--min-sync-period", "45s", "--full-sync-period", "1m"],
            ""
        )
        .is_err(),
        "the full sync period does not bound it"
    );
}

/// `--sync-period` keeps kube-proxy's meaning (the longest time between
/// syncs); the periodic full sync has its own setting, and neither sets
/// the other.
#[test]
fn sync_period_and_full_sync_period_are_separate_settings() {
    let c = config(&["--sync-period", "2s"], "").unwrap();
    assert_eq!(
        (c.sync_period, c.full_sync_period),
        (Duration::from_secs(2), Duration::from_secs(3600))
    );
    let c = config(&["--full-sync-period", "2s"], "").unwrap();
    assert_eq!(
        (c.sync_period, c.full_sync_period),
        (Duration::from_secs(30), Duration::from_secs(2))
    );
    let c = config(&[], "syncPeriod: 10s\n").unwrap();
    assert_eq!(
        (c.sync_period, c.full_sync_period),
        (Duration::from_secs(10), Duration::from_secs(3600)),
        "the file's syncPeriod is kube-proxy's"
    );
    let c = config(&["--full-sync-period", "5m"], "fullSyncPeriod: 2h\n").unwrap();
    assert_eq!(
        c.full_sync_period,
        Duration::from_secs(300),
        "the flag wins over the file"
    );
    let e = config(&["--full-sync-period", "0"], "").unwrap_err();
    assert!(format!("{e:#}").contains("--full-sync-period"), "{e:#}");
}

#[test]
fn an_unknown_route_protocol_or_mode_is_refused_naming_it() {
    let e = config(
        &["--route-mode", "direct", "--route-protocol", "nosuch"],
        "",
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("--route-protocol \"nosuch\""),
        "{e:#}"
    );
    let e = config(&["--route-mode", "direct", "--route-protocol", "2"], "").unwrap_err();
    assert!(format!("{e:#}").contains("route-protocol"), "{e:#}");
    let e = config(&[], "routes: {mode: sometimes}").unwrap_err();
    assert!(format!("{e:#}").contains("routes.mode"), "{e:#}");
    let e = config(&[], "routes: {tunnelMtu: 1400}").unwrap_err();
    assert!(format!("{e:#}").contains("tunnelMtu"), "{e:#}");
    assert_eq!(
        config(&["--route-mode", "direct", "--route-protocol", "77"], "")
            .unwrap()
            .routes
            .unwrap()
            .config
            .protocol,
        77
    );
}

/// The packaged configuration files say the periods as they are: the
/// Debian file's commented-out values are the defaults, and the
/// DaemonSet's ConfigMap sets them to the defaults too.
#[test]
fn the_packaged_files_hold_the_default_periods() {
    let debian = include_str!("../../../../packaging/debian/config.yaml");
    // Every option uncommented, as packaging/tests/deb.sh does.
    let all: String = debian
        .lines()
        .map(|l| {
            let body = l.trim_start();
            let indent = &l[..l.len() - body.len()];
            match body.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                    format!("{indent}{rest}\n")
                }
                _ => format!("{l}\n"),
            }
        })
        .collect();
    let configmap: serde_json::Value = serde_saphyr::from_str(include_str!(
        "../../../../packaging/kubernetes/configmap.yaml"
    ))
    .unwrap();
    let in_cluster = configmap["data"]["config.yaml"].as_str().unwrap();
    let defaults = config(&[], "").unwrap();
    for (name, text) in [
        ("debian, uncommented", all.as_str()),
        ("configmap", in_cluster),
    ] {
        let c = config(&[], text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(
            (c.min_sync_period, c.sync_period, c.full_sync_period),
            (
                defaults.min_sync_period,
                defaults.sync_period,
                defaults.full_sync_period
            ),
            "{name}"
        );
    }
}

/// `detectLocalMode` and `detectLocal` (v1alpha1: `bridgeInterface`,
/// `interfaceNamePrefix`), each field overridden by its flag.
#[test]
fn detect_local_comes_from_the_file_unless_a_flag_says_otherwise() {
    let file = |mode: &str| {
        format!(
            "clusterCIDR: 10.42.0.0/16\ndetectLocalMode: {mode:?}\n\
             detectLocal: {{bridgeInterface: cbr0, interfaceNamePrefix: cali}}\n"
        )
    };
    let cidr = DetectLocal::ClusterCidr(vec![Cidr::parse("10.42.0.0/16").unwrap()]);
    let cbr0 = DetectLocal::BridgeInterface(IfacePattern::exact("cbr0").unwrap());
    let cases: Vec<(&str, &[&str], &str, DetectLocal)> = vec![
        ("an empty mode is ClusterCIDR", &[], "", cidr.clone()),
        (
            "NodeCIDR from the file",
            &[],
            "NodeCIDR",
            DetectLocal::NodeCidr,
        ),
        (
            "BridgeInterface and its bridge from the file",
            &[],
            "BridgeInterface",
            cbr0,
        ),
        (
            "InterfaceNamePrefix and its prefix from the file",
            &[],
            "InterfaceNamePrefix",
            DetectLocal::InterfaceNamePrefix(IfacePattern::prefix("cali").unwrap()),
        ),
        (
            "--detect-local-mode at its default wins over the file",
            &["--detect-local-mode", "ClusterCIDR"],
            "NodeCIDR",
            cidr,
        ),
        (
            "--pod-interface-name-prefix wins over the file's prefix",
            &["--pod-interface-name-prefix", "veth"],
            "InterfaceNamePrefix",
            DetectLocal::InterfaceNamePrefix(IfacePattern::prefix("veth").unwrap()),
        ),
        (
            "--pod-bridge-interface wins over the file's bridge",
            &["--pod-bridge-interface", "br-pods"],
            "BridgeInterface",
            DetectLocal::BridgeInterface(IfacePattern::exact("br-pods").unwrap()),
        ),
    ];
    for (name, argv, mode, want) in cases {
        let c = config(argv, &file(mode)).unwrap();
        assert_eq!(c.planner.detect_local, want, "{name}");
    }
}

#[test]
fn a_bad_detect_local_setting_in_the_file_is_an_error_naming_the_field() {
    let cases = [
        (
            "detectLocalMode: nodeCIDR\n",
            "config file field detectLocalMode: \"nodeCIDR\" is not one of ClusterCIDR",
        ),
        (
            "detectLocalMode: BridgeInterface\n",
            "--pod-bridge-interface (detectLocal.bridgeInterface) must not be empty",
        ),
        (
            "detectLocalMode: InterfaceNamePrefix\ndetectLocal: {interfaceNamePrefix: \"\"}\n",
            "--pod-interface-name-prefix (detectLocal.interfaceNamePrefix) must not be empty",
        ),
        (
            // v1alpha2's field: this file is v1alpha1, whose clusterCIDR is
            // top-level.
            "detectLocal: {clusterCIDRs: [10.42.0.0/16]}\n",
            "detectLocal.clusterCIDRs: unknown field `clusterCIDRs`",
        ),
    ];
    for (file, want) in cases {
        let got = format!("{:#}", config(&[], file).expect_err(file));
        assert!(got.contains(want), "{file}: {got}");
    }
}
