//! Subcommands: `render`, `apply`, `diff`, `explain`, `trace`, `cleanup`,
//! `run`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::run::config::{LogFormat, RunArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use nft_writer::conntrack::{clean_udp, Conntrack, Scope};
use nft_writer::{
    converge, plan_ruleset, udp_services, Kernel, NetlinkKernel, PlannerConfig, Ruleset, Syncer,
    Transaction,
};
use route_sync::NetlinkRoutes;
use topology_filter::ProxyPlan;

use crate::planner_args::PlannerArgs;
use crate::routes::{RouteArgs, Routes};
use api_watch::ClusterState;

/// nftopo: topology-aware service proxy for Kubernetes nodes (nftables).
#[derive(Debug, Parser)]
#[command(name = "nftopo", about,
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("NFTOPO_GIT_COMMIT"), ")"))]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the nft script (for `nft -f`) that node NAME should run.
    Render(Manifests),
    /// Converge the current network namespace to what node NAME should
    /// hold, sending only the differences in one transaction, and exit.
    Apply(Manifests),
    /// Print, in nft syntax, what `apply` would send to the current
    /// network namespace (nothing when in step). Exit code 0 when in
    /// step, 1 when there are differences, 2 on error (as diff(1)).
    Diff(Manifests),
    /// Show which endpoints each port of NAMESPACE/SERVICE uses on node
    /// NAME, and why each other endpoint was dropped.
    Explain(crate::explain::ExplainArgs),
    /// Show what nftopo's tables in the current network namespace do with
    /// one packet: base chain, map elements, service chain, DNAT
    /// candidates with their chances (or the endpoint session affinity
    /// pins), masquerade, reject or drop and why. Reads the tables back
    /// from the kernel; evaluates nftopo's tables only.
    Trace(crate::trace_cmd::TraceArgs),
    /// Remove every table nftopo owns (and, with --routes, its routes).
    Cleanup {
        /// Also delete every route of --route-protocol in the main table:
        /// only on nodes where nftopo programmed the routes (with BIRD
        /// running, `bird` routes are BIRD's).
        #[arg(long)]
        routes: bool,
        /// The protocol nftopo's routes carry (a number or a name from
        /// /etc/iproute2/rt_protos).
        #[arg(long, default_value = "bird")]
        route_protocol: String,
    },
    /// Run the node daemon: watch the API server and keep the kernel in
    /// step (kube-proxy's flags and configuration file).
    Run(RunArgs),
    /// Write the man pages into DIR (for packaging).
    #[command(hide = true)]
    Man {
        /// Where to write the pages.
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct Manifests {
    /// The node to plan for (as in `--hostname-override`).
    #[arg(long)]
    node: String,
    /// YAML or JSON files with Services, EndpointSlices and Nodes.
    #[arg(long, num_args = 1.., required = true)]
    manifests: Vec<PathBuf>,
    #[command(flatten)]
    planner: PlannerArgs,
    #[command(flatten)]
    routes: RouteArgs,
}

impl Cli {
    /// Whether this is `nftopo diff` (whose errors exit with 2, as
    /// diff(1)'s do).
    pub fn is_diff(&self) -> bool {
        matches!(self.command, Command::Diff(_))
    }

    /// Log format and verbosity (`None`: the quiet default of the one-shot
    /// subcommands).
    pub fn log_settings(&self) -> (LogFormat, Option<u8>) {
        match &self.command {
            Command::Run(a) => (a.log_format, Some(a.verbose)),
            _ => (LogFormat::Text, None),
        }
    }
}

/// Runs one subcommand; `matches` are the parsed arguments `cli` came
/// from (`run` needs to know which flags were given).
pub fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<ExitCode> {
    let done: Result<()> = match cli.command {
        Command::Render(m) => {
            let routes = Routes::from_args(&m.routes)?;
            let (state, plan, cfg) = load_plan_lean(&m)?;
            let mut text = ruleset(&plan, &cfg).to_string();
            if let Some(routes) = routes {
                text.push_str(&routes.render(&state, &m.node)?);
            }
            stdout(&text)
        }
        Command::Apply(m) => {
            let routes = Routes::from_args(&m.routes)?;
            let (state, plan, cfg) = load_plan_lean(&m)?;
            let kernel = NetlinkKernel::open().context("opening the nf_tables netlink socket")?;
            let mut syncer = Syncer::new(kernel);
            // The ruleset moves into the transaction (built again in the
            // rare case of a second one): held once, not twice.
            let stats = syncer
                .converge_owned(ruleset(&plan, &cfg))
                .context("applying the ruleset")?;
            tracing::info!(
                operations = stats.operations,
                messages = stats.messages,
                differences = stats.repairs.total(),
                "applied"
            );
            // Chains and sets the first transaction stopped using are
            // deleted in a second one (see nft_writer's engine); if the
            // kernel still holds them busy, the next apply deletes them.
            if syncer.has_deferred() {
                if let Err(e) = syncer.converge_owned(ruleset(&plan, &cfg)) {
                    tracing::warn!(error = %e, "left unused chains or sets for the next apply");
                }
            }
            // UDP flows cached towards endpoints that are gone (or while a
            // service had none) would keep going there: delete just those.
            let mut ct = Conntrack::open().context("opening the ctnetlink socket")?;
            let deleted = clean_udp(&mut ct, &Scope::Everything, &udp_services(&plan))
                .context("cleaning stale UDP conntrack entries")?;
            tracing::info!(deleted, "conntrack clean-up");
            if let Some(routes) = routes {
                let mut kernel = NetlinkRoutes::open().context("opening the rtnetlink socket")?;
                let done = routes.converge(&mut kernel, &state, &m.node)?;
                if let Some(failed) = crate::routes::failures(&done) {
                    bail!("the ruleset is applied, but not every route: {failed}");
                }
            }
            Ok(())
        }
        Command::Diff(m) => return diff(&m),
        Command::Explain(args) => {
            let service = args.service()?;
            let text = match args.source() {
                crate::explain::Source::Manifests(manifests) => {
                    let (_, plan, _) = load_plan_of(
                        args.node.as_deref().unwrap_or_default(),
                        manifests,
                        &args.planner,
                    )?;
                    crate::explain::explain(&plan, &service, args.output)?
                }
                crate::explain::Source::Daemon(url) => {
                    crate::explain::from_daemon(url, &service, args.output)?
                }
                crate::explain::Source::Api(kubeconfig) => crate::explain::from_api(
                    kubeconfig,
                    args.node.as_deref().unwrap_or_default(),
                    &service,
                    args.output,
                )?,
            };
            stdout(&text)
        }
        Command::Trace(args) => stdout(&crate::trace_cmd::trace(&args)?),
        Command::Run(args) => {
            let sub = matches
                .subcommand_matches("run")
                .context("the run subcommand's arguments")?;
            crate::run::main(&args, sub)
        }
        Command::Cleanup {
            routes,
            route_protocol,
        } => {
            let protocol = match routes {
                true => Some(crate::routes::protocol_number(&route_protocol)?),
                false => None,
            };
            crate::cleanup::cleanup(protocol)
        }
        Command::Man { dir } => crate::man::write(&dir),
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// `nftopo diff`: what `apply` would send, as `nft` commands; exit code 1
/// when that is anything.
fn diff(m: &Manifests) -> Result<ExitCode> {
    let (_, plan, cfg) = load_plan_lean(m)?;
    let want = ruleset(&plan, &cfg);
    let mut kernel = NetlinkKernel::open().context("opening the nf_tables netlink socket")?;
    let held = kernel
        .read_back()
        .context("reading nftopo's tables back from the kernel")?;
    let c = converge(&held, &want);
    let mut text = String::new();
    if !c.first.is_empty() {
        text.push_str("# first, in a transaction of its own:\n");
        text.push_str(&c.first.to_string());
        text.push_str("# then:\n");
    }
    text.push_str(&c.now.to_string());
    if !c.later.is_empty() {
        text.push_str("# then, in a second transaction:\n");
        text.push_str(&Transaction { ops: c.later }.to_string());
    }
    stdout(&text)?;
    Ok(if text.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Writes `text` to stdout; a reader that went away (`nftopo render |
/// head`) is not an error.
fn stdout(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

/// The ruleset for `plan`; reports the planner's problems on stderr.
fn ruleset(plan: &ProxyPlan, cfg: &PlannerConfig) -> Ruleset {
    let (ruleset, problems) = plan_ruleset(plan, cfg);
    for p in &problems {
        eprintln!("nftopo: {}: {}", p.object, p.message);
    }
    ruleset
}

/// [`load_plan`] for `render`, `apply` and `diff`: the plan without its
/// per-endpoint explanations (only `explain` reads them), and the state
/// without its Services and EndpointSlices (only the routes read the
/// rest), so that neither sits next to the ruleset while it is built and
/// sent (about 40 MiB at 10k services x 10 endpoints).
fn load_plan_lean(m: &Manifests) -> Result<(ClusterState, ProxyPlan, PlannerConfig)> {
    let (mut state, mut plan, cfg) = load_plan(m)?;
    for sp in &mut plan.services {
        sp.decisions = Vec::new();
    }
    state.services = Default::default();
    state.endpoint_slices = Default::default();
    Ok((state, plan, cfg))
}

/// Reads the manifests and plans for the node; reports skipped objects
/// and planning problems on stderr.
fn load_plan(m: &Manifests) -> Result<(ClusterState, ProxyPlan, PlannerConfig)> {
    load_plan_of(&m.node, &m.manifests, &m.planner)
}

/// [`load_plan`] from its parts (`explain` has no route flags).
fn load_plan_of(
    node: &str,
    manifests: &[PathBuf],
    planner: &PlannerArgs,
) -> Result<(ClusterState, ProxyPlan, PlannerConfig)> {
    let cfg = planner.config()?;
    let api_watch::file::Loaded {
        state,
        errors,
        ignored,
    } = api_watch::file::read_files(manifests);
    // A file that cannot be read is a mistake on the command line; a bad
    // object inside a file is skipped so that the others still work.
    if let Some(e) = errors.iter().find(|e| e.document == 0) {
        bail!("cannot load {}: {}", e.file, e.message);
    }
    for e in &errors {
        eprintln!("nftopo: skipped: {e}");
    }
    // Not an error (a manifest may hold Deployments too), but a typo in
    // `kind:` must not be a silent no-op.
    match ignored.total() {
        0 => {}
        1 => eprintln!("nftopo: ignored 1 object of a kind nftopo does not read: {ignored}"),
        n => eprintln!("nftopo: ignored {n} objects of kinds nftopo does not read: {ignored}"),
    }
    if state.services.is_empty() && !errors.is_empty() {
        bail!(
            "no usable Service in the manifests ({} errors)",
            errors.len()
        );
    }
    let plan = topology_filter::plan(&state, node);
    for p in &plan.problems {
        eprintln!("nftopo: {}: {}", p.object, p.message);
    }
    Ok((state, plan, cfg))
}
