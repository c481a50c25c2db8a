//! Subcommands: `render`, `apply`, `cleanup`.

use std::path::PathBuf;

use crate::explain::Output;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use nft_writer::{
    names, plan_ruleset, Cidr, Family, Kernel, NetlinkKernel, PlannerConfig, Ruleset, TableRef,
    Transaction,
};
use topology_filter::ProxyPlan;

/// nftopo: topology-aware service proxy for Kubernetes nodes (nftables).
#[derive(Debug, Parser)]
#[command(name = "nftopo", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the nft script (for `nft -f`) that node NAME should run.
    Render(Manifests),
    /// Program the current network namespace in one transaction and exit.
    Apply(Manifests),
    /// Show which endpoints each port of NAMESPACE/SERVICE uses on node
    /// NAME, and why each other endpoint was dropped.
    Explain {
        #[command(flatten)]
        manifests: Manifests,
        /// The Service, as NAMESPACE/NAME. It may follow the manifest
        /// files directly (`--manifests a.yaml b.yaml default/web`).
        service: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Remove every table nftopo owns.
    Cleanup,
}

#[derive(Debug, Args)]
struct Manifests {
    /// The node to plan for (as in `--hostname-override`).
    #[arg(long)]
    node: String,
    /// YAML or JSON files with Services, EndpointSlices and Nodes.
    #[arg(long, num_args = 1.., required = true)]
    manifests: Vec<PathBuf>,
    /// Pod CIDR of the cluster; traffic to services from outside it is
    /// masqueraded (kube-proxy's --cluster-cidr).
    #[arg(long)]
    cluster_cidr: Option<String>,
    /// Packet-mark bit that asks for masquerading (kube-proxy's
    /// --masquerade-bit).
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u8).range(0..=31))]
    masquerade_bit: u8,
}

/// Runs one subcommand.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Render(m) => {
            let ruleset = plan(&m)?;
            print!("{ruleset}");
            Ok(())
        }
        Command::Apply(m) => {
            let ruleset = plan(&m)?;
            let tx = Transaction::replace(&ruleset);
            let mut kernel =
                NetlinkKernel::open().context("opening the nf_tables netlink socket")?;
            let stats = kernel.apply(&tx).context("applying the ruleset")?;
            tracing::info!(
                operations = stats.operations,
                messages = stats.messages,
                bytes = stats.bytes,
                "applied"
            );
            Ok(())
        }
        Command::Explain {
            mut manifests,
            service,
            output,
        } => {
            // `--manifests` takes every following word, so a trailing
            // NAMESPACE/NAME lands there: take it back if it is no file.
            let service = match service {
                Some(s) => s,
                None => match manifests.manifests.last() {
                    Some(last) if !last.exists() && manifests.manifests.len() > 1 => {
                        let s = last.to_string_lossy().into_owned();
                        manifests.manifests.pop();
                        s
                    }
                    _ => bail!("explain needs the Service as NAMESPACE/NAME"),
                },
            };
            let (plan, _) = load_plan(&manifests)?;
            print!("{}", crate::explain::explain(&plan, &service, output)?);
            Ok(())
        }
        Command::Cleanup => {
            let tables = [TableRef {
                family: Family::Ip,
                name: names::TABLE.into(),
            }];
            let mut kernel =
                NetlinkKernel::open().context("opening the nf_tables netlink socket")?;
            kernel
                .apply(&Transaction::delete_tables(&tables))
                .context("removing nftopo's tables")?;
            Ok(())
        }
    }
}

fn plan(m: &Manifests) -> Result<Ruleset> {
    let (plan, cfg) = load_plan(m)?;
    let (ruleset, problems) = plan_ruleset(&plan, &cfg);
    for p in &problems {
        eprintln!("nftopo: {}: {}", p.object, p.message);
    }
    Ok(ruleset)
}

/// Reads the manifests and plans for the node; reports skipped objects
/// and planning problems on stderr.
fn load_plan(m: &Manifests) -> Result<(ProxyPlan, PlannerConfig)> {
    let cluster_cidr = match &m.cluster_cidr {
        None => None,
        Some(s) => match Cidr::parse(s) {
            Some(c) if c.prefix > 0 => Some(c),
            _ => bail!("--cluster-cidr {s:?} is not a CIDR such as 10.42.0.0/16"),
        },
    };
    let (state, errors) = api_watch::file::load_files(&m.manifests);
    // A file that cannot be read is a mistake on the command line; a bad
    // object inside a file is skipped so that the others still work.
    if let Some(e) = errors.iter().find(|e| e.document == 0) {
        bail!("cannot load {}: {}", e.file, e.message);
    }
    for e in &errors {
        eprintln!("nftopo: skipped: {e}");
    }
    if state.services.is_empty() && !errors.is_empty() {
        bail!(
            "no usable Service in the manifests ({} errors)",
            errors.len()
        );
    }
    let plan = topology_filter::plan(&state, &m.node);
    for p in &plan.problems {
        eprintln!("nftopo: {}: {}", p.object, p.message);
    }
    Ok((
        plan,
        PlannerConfig {
            cluster_cidr,
            masquerade_bit: m.masquerade_bit,
        },
    ))
}
