//! The ruleset planner's flags, declared once and parsed once: flattened
//! into `render`, `apply`, `diff`, `explain` and `run` (where a
//! configuration file may set them too, and a flag given wins).

use anyhow::{bail, Result};
use clap::Args;
use nft_writer::{Cidr, NodePortAddresses, PlannerConfig};

/// kube-proxy's flags that shape the ruleset.
#[derive(Debug, Clone, Args)]
pub struct PlannerArgs {
    /// Pod CIDR(s) of the cluster, at most one per family, comma-separated:
    /// traffic to services from outside them is masqueraded, and traffic
    /// from inside them to externalTrafficPolicy Local services uses every
    /// endpoint (kube-proxy's --cluster-cidr).
    #[arg(long, value_delimiter = ',')]
    pub cluster_cidr: Vec<String>,
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

impl PlannerArgs {
    /// The planner's configuration from the flags alone.
    pub fn config(&self) -> Result<PlannerConfig> {
        Ok(PlannerConfig {
            cluster_cidrs: parse_cluster_cidrs(&self.cluster_cidr)?,
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
