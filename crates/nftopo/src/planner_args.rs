//! The ruleset planner's flags, declared once and parsed once: flattened
//! into `render`, `apply`, `diff`, `explain` and `run` (where a
//! configuration file may set them too, and a flag given wins).

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use nft_writer::{Cidr, DetectLocal, IfacePattern, NodePortAddresses, PlannerConfig};

/// kube-proxy's flags that shape the ruleset.
#[derive(Debug, Clone, Args)]
pub struct PlannerArgs {
    /// Pod CIDR(s) of the cluster, at most one per family, comma-separated:
    /// with --detect-local-mode ClusterCIDR (the default), traffic to
    /// services from outside them is masqueraded, and traffic from inside
    /// them to externalTrafficPolicy Local services uses every endpoint
    /// (kube-proxy's --cluster-cidr).
    #[arg(long, value_delimiter = ',')]
    pub cluster_cidr: Vec<String>,
    /// Which traffic comes from pods: ClusterCIDR (sources in
    /// --cluster-cidr), NodeCIDR (sources in this Node's spec.podCIDRs),
    /// BridgeInterface (arriving on --pod-bridge-interface),
    /// InterfaceNamePrefix (arriving on an interface named
    /// --pod-interface-name-prefix*) (kube-proxy's --detect-local-mode).
    #[arg(long, value_enum, default_value = "ClusterCIDR")]
    pub detect_local_mode: LocalMode,
    /// The bridge pods are attached to, for --detect-local-mode
    /// BridgeInterface (e.g. cbr0).
    #[arg(long, default_value = "")]
    pub pod_bridge_interface: String,
    /// The prefix of pods' interface names, for --detect-local-mode
    /// InterfaceNamePrefix (e.g. cali for Calico).
    #[arg(long, default_value = "")]
    pub pod_interface_name_prefix: String,
    /// Local addresses that serve node ports: `primary` (this node's
    /// primary InternalIP of each family, the default), `all`, or
    /// comma-separated CIDRs (kube-proxy's --nodeport-addresses).
    #[arg(long, value_delimiter = ',')]
    pub nodeport_addresses: Vec<String>,
    /// Masquerade all traffic to cluster IPs (kube-proxy's
    /// --masquerade-all; `--masquerade-all=false` overrides a
    /// configuration file that sets it).
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    pub masquerade_all: bool,
    /// Packet-mark bit that asks for masquerading (kube-proxy's
    /// --masquerade-bit).
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u8).range(0..=31))]
    pub masquerade_bit: u8,
}

/// kube-proxy's `--detect-local-mode` values (`detectLocalMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LocalMode {
    /// Sources inside `--cluster-cidr`.
    #[value(name = "ClusterCIDR")]
    ClusterCidr,
    /// Sources inside this Node's `spec.podCIDRs`.
    #[value(name = "NodeCIDR")]
    NodeCidr,
    /// Packets arriving on `--pod-bridge-interface`.
    #[value(name = "BridgeInterface")]
    BridgeInterface,
    /// Packets arriving on an interface named `--pod-interface-name-prefix…`.
    #[value(name = "InterfaceNamePrefix")]
    InterfaceNamePrefix,
}

/// The detector of `mode`, from the values of `--cluster-cidr`,
/// `--pod-bridge-interface` and `--pod-interface-name-prefix` (flag or
/// file). The interface of the other interface mode is not looked at
/// (kube-proxy ignores it too), so an existing configuration loads.
pub fn detect_local(
    mode: LocalMode,
    cluster_cidr: &[String],
    bridge: &str,
    prefix: &str,
) -> Result<DetectLocal> {
    let cidrs = parse_cluster_cidrs(cluster_cidr)?;
    Ok(match mode {
        LocalMode::ClusterCidr => DetectLocal::ClusterCidr(cidrs),
        LocalMode::NodeCidr => DetectLocal::NodeCidr,
        LocalMode::BridgeInterface => {
            DetectLocal::BridgeInterface(IfacePattern::exact(bridge.trim()).map_err(|e| {
                anyhow::anyhow!(
                    "--pod-bridge-interface (detectLocal.bridgeInterface) {e}: \
                     --detect-local-mode BridgeInterface needs the bridge pods are attached to"
                )
            })?)
        }
        LocalMode::InterfaceNamePrefix => {
            DetectLocal::InterfaceNamePrefix(IfacePattern::prefix(prefix.trim()).map_err(|e| {
                anyhow::anyhow!(
                    "--pod-interface-name-prefix (detectLocal.interfaceNamePrefix) {e}: \
                     --detect-local-mode InterfaceNamePrefix needs the prefix of pods' \
                     interface names (e.g. cali)"
                )
            })?)
        }
    })
}

impl PlannerArgs {
    /// The planner's configuration from the flags alone.
    pub fn config(&self) -> Result<PlannerConfig> {
        Ok(PlannerConfig {
            detect_local: detect_local(
                self.detect_local_mode,
                &self.cluster_cidr,
                &self.pod_bridge_interface,
                &self.pod_interface_name_prefix,
            )?,
            masquerade_all: self.masquerade_all,
            masquerade_bit: self.masquerade_bit,
            nodeport_addresses: parse_nodeport_addresses(&self.nodeport_addresses)?,
        })
    }
}

/// `--cluster-cidr`: at most one non-empty prefix per family.
pub fn parse_cluster_cidrs(list: &[String]) -> Result<Vec<Cidr>> {
    let mut out: Vec<Cidr> = Vec::new();
    for s in list {
        let c = Cidr::parse(s.trim()).map_err(|_| {
            anyhow::anyhow!("--cluster-cidr {s:?} is not a CIDR such as 10.42.0.0/16")
        })?;
        if c.prefix_len() == 0 || out.iter().any(|o| o.is_ipv4() == c.is_ipv4()) {
            bail!("--cluster-cidr {s:?}: give at most one non-empty prefix per family");
        }
        out.push(c);
    }
    Ok(out)
}

/// `--nodeport-addresses`: empty or `primary`, `all`, or CIDRs.
pub fn parse_nodeport_addresses(list: &[String]) -> Result<NodePortAddresses> {
    match list {
        [] => Ok(NodePortAddresses::Primary),
        [one] if one == "primary" => Ok(NodePortAddresses::Primary),
        [one] if one == "all" => Ok(NodePortAddresses::All),
        cidrs => cidrs
            .iter()
            .map(|s| {
                Cidr::parse(s.trim()).map_err(|_| {
                    anyhow::anyhow!("--nodeport-addresses {s:?} is not `primary`, `all` or a CIDR")
                })
            })
            .collect::<Result<_>>()
            .map(NodePortAddresses::Cidrs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        planner: PlannerArgs,
    }

    fn config(argv: &[&str]) -> Result<PlannerConfig> {
        let cmd = Cmd::try_parse_from(std::iter::once("render").chain(argv.iter().copied()))?;
        cmd.planner.config()
    }

    fn error(argv: &[&str]) -> String {
        format!("{:#}", config(argv).expect_err("an error"))
    }

    #[test]
    fn each_detect_local_mode_gets_its_detector() {
        let cali = IfacePattern::prefix("cali").unwrap();
        let cases: &[(&str, &[&str], DetectLocal)] = &[
            (
                "the default is ClusterCIDR with --cluster-cidr",
                &["--cluster-cidr", "10.42.0.0/16"],
                DetectLocal::ClusterCidr(vec![Cidr::parse("10.42.0.0/16").unwrap()]),
            ),
            (
                "ClusterCIDR without a cluster CIDR detects nothing (kube-proxy logs it)",
                &["--detect-local-mode", "ClusterCIDR"],
                DetectLocal::ClusterCidr(vec![]),
            ),
            (
                "NodeCIDR reads the Node",
                &[
                    "--detect-local-mode",
                    "NodeCIDR",
                    "--cluster-cidr",
                    "10.42.0.0/16",
                ],
                DetectLocal::NodeCidr,
            ),
            (
                "BridgeInterface with its bridge",
                &[
                    "--detect-local-mode",
                    "BridgeInterface",
                    "--pod-bridge-interface",
                    "cbr0",
                ],
                DetectLocal::BridgeInterface(IfacePattern::exact("cbr0").unwrap()),
            ),
            (
                "InterfaceNamePrefix with its prefix, the bridge flag ignored as kube-proxy does",
                &[
                    "--detect-local-mode=InterfaceNamePrefix",
                    "--pod-interface-name-prefix=cali",
                    "--pod-bridge-interface=cbr0",
                ],
                DetectLocal::InterfaceNamePrefix(cali),
            ),
        ];
        for (name, argv, want) in cases {
            assert_eq!(&config(argv).unwrap().detect_local, want, "{name}");
        }
    }

    #[test]
    fn a_detect_local_mode_without_what_it_needs_is_an_error_naming_the_flag() {
        let cases: &[(&str, &[&str], &str)] = &[
            (
                "BridgeInterface without a bridge",
                &["--detect-local-mode", "BridgeInterface"],
                "--pod-bridge-interface (detectLocal.bridgeInterface) must not be empty",
            ),
            (
                "InterfaceNamePrefix without a prefix",
                &["--detect-local-mode", "InterfaceNamePrefix"],
                "--pod-interface-name-prefix (detectLocal.interfaceNamePrefix) must not be empty",
            ),
            (
                "InterfaceNamePrefix with the bridge flag instead",
                &["--detect-local-mode", "InterfaceNamePrefix", "--pod-bridge-interface", "cbr0"],
                "--pod-interface-name-prefix (detectLocal.interfaceNamePrefix) must not be empty",
            ),
            (
                "a bridge name longer than the kernel allows",
                &[
                    "--detect-local-mode",
                    "BridgeInterface",
                    "--pod-bridge-interface",
                    "a-bridge-named-too-long",
                ],
                "--pod-bridge-interface (detectLocal.bridgeInterface) \"a-bridge-named-too-long\" is 23 bytes",
            ),
            (
                "a prefix written with nft's star",
                &["--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "cali*"],
                "--pod-interface-name-prefix (detectLocal.interfaceNamePrefix) \"cali*\" holds '*'",
            ),
            (
                "ClusterCIDR with a bad cluster CIDR",
                &["--cluster-cidr", "10.42.0.0"],
                "--cluster-cidr \"10.42.0.0\" is not a CIDR",
            ),
            (
                "a mode kube-proxy does not have (names are case-sensitive, as kube-proxy's)",
                &["--detect-local-mode", "nodecidr"],
                "invalid value 'nodecidr' for '--detect-local-mode <DETECT_LOCAL_MODE>'",
            ),
        ];
        for (name, argv, want) in cases {
            let got = error(argv);
            assert!(got.contains(want), "{name}: {got}");
        }
    }
}
