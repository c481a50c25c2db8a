//! `nftopo explain`: which endpoints each port of one Service uses on a
//! node, and why, as a table or as JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use api_watch::{ClusterState, EndpointSlice, ObjectKey, SliceIndex};
use topology_filter::{EndpointTarget, Problem, ProxyPlan, ServicePortPlan};

use crate::planner_args::PlannerArgs;

/// Where `--daemon` asks when given no URL: the daemon's default metrics
/// address.
pub const DEFAULT_DAEMON: &str = "http://127.0.0.1:10249";

/// How long `--kubeconfig` waits for the lists.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// `nftopo explain`'s arguments: the Service, and where the cluster comes
/// from (manifest files, a running daemon, or an API server).
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The node to plan for (as in `--hostname-override`); with
    /// --manifests or --kubeconfig.
    #[arg(long, required_unless_present = "daemon")]
    pub node: Option<String>,
    /// YAML or JSON files with Services, EndpointSlices and Nodes.
    #[arg(long, num_args = 1.., required_unless_present_any = ["daemon", "kubeconfig"],
        conflicts_with_all = ["daemon", "kubeconfig"])]
    pub manifests: Vec<PathBuf>,
    /// Ask the daemon running on this node (its metrics address; the
    /// default when no URL is given: http://127.0.0.1:10249) what it holds
    /// for the Service, instead of planning from files.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = DEFAULT_DAEMON,
        conflicts_with = "kubeconfig")]
    pub daemon: Option<String>,
    /// List the objects once from the API server of this kubeconfig
    /// (no daemon needed) and plan for --node.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub planner: PlannerArgs,
    /// The Service, as NAMESPACE/NAME. It may follow the manifest
    /// files directly (`--manifests a.yaml b.yaml default/web`).
    pub service: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Where the cluster comes from.
pub enum Source<'a> {
    /// Manifest files.
    Manifests(&'a [PathBuf]),
    /// A running daemon, at this URL.
    Daemon(&'a str),
    /// An API server, through this kubeconfig.
    Api(&'a Path),
}

impl ExplainArgs {
    /// The Service asked about. `--manifests` takes every following word,
    /// so a trailing NAMESPACE/NAME lands there: it is taken back if it
    /// is no file.
    pub fn service(&self) -> Result<String> {
        if let Some(s) = &self.service {
            return Ok(s.clone());
        }
        match self.trailing_service() {
            Some((last, _)) => Ok(last.to_string_lossy().into_owned()),
            None => bail!("explain needs the Service as NAMESPACE/NAME"),
        }
    }

    /// Without a positional Service, a last `--manifests` word that is no
    /// file (after at least one that may be): that word, and the files
    /// before it.
    fn trailing_service(&self) -> Option<(&PathBuf, &[PathBuf])> {
        if self.service.is_some() {
            return None;
        }
        self.manifests
            .split_last()
            .filter(|(last, rest)| !last.exists() && !rest.is_empty())
    }

    /// Where the cluster comes from (clap allows only one).
    pub fn source(&self) -> Source<'_> {
        if let Some(url) = &self.daemon {
            return Source::Daemon(url);
        }
        if let Some(k) = &self.kubeconfig {
            return Source::Api(k);
        }
        Source::Manifests(
            self.trailing_service()
                .map_or(&self.manifests[..], |(_, files)| files),
        )
    }
}

/// Output format of `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A readable table.
    Table,
    /// The plan's entries for the service, as JSON.
    Json,
}

/// Renders the explanation of `service` (`namespace/name`) from `plan`.
pub fn explain(plan: &ProxyPlan, service: &str, output: Output) -> Result<String> {
    let key = service_key(service)?;
    let ports: Vec<&ServicePortPlan> = plan.services.iter().filter(|p| p.service == key).collect();
    let problems: Vec<&Problem> = plan.problems.iter().filter(|p| p.object == key).collect();
    if ports.is_empty() && problems.is_empty() {
        bail!("service {service} not found in the manifests (or it has no cluster IP)");
    }
    render(&plan.node, service, &ports, &problems, output)
}

/// Asks the daemon at `url` (its metrics address) to explain `service`
/// from its own state: `GET URL/debug/explain/NAMESPACE/NAME`.
pub fn from_daemon(url: &str, service: &str, output: Output) -> Result<String> {
    let key = service_key(service)?;
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("--daemon {url:?} is not a URL such as {DEFAULT_DAEMON}"))?;
    if uri.scheme_str().is_some_and(|s| s != "http") {
        bail!("--daemon {url:?}: only http:// is served (the metrics address)");
    }
    let Some(authority) = uri.authority().cloned() else {
        bail!("--daemon {url:?} names no host:port");
    };
    let query = match output {
        Output::Json => "",
        Output::Table => "?output=table",
    };
    let path = format!(
        "{}/debug/explain/{}/{}{query}",
        uri.path().trim_end_matches('/'),
        key.namespace,
        key.name
    );
    let (status, body) = runtime()?
        .block_on(get(&authority, &path))
        .with_context(|| format!("asking the daemon at {url}"))?;
    match status {
        200 => Ok(body),
        _ => {
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| body.trim().to_string());
            bail!("the daemon at {url} answered {status}: {message}")
        }
    }
}

/// The one-shot runtime of `--daemon` and `--kubeconfig`.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// One HTTP/1.1 GET: status and body.
async fn get(authority: &hyper::http::uri::Authority, path: &str) -> Result<(u16, String)> {
    use http_body_util::{BodyExt, Empty};
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((authority.host(), port)),
    )
    .await
    .context("connecting: timed out")??;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority.as_str())
        .body(Empty::<hyper::body::Bytes>::new())?;
    let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
        .await
        .context("no answer within 30 s")??;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Lists Services, EndpointSlices, Nodes and ServiceCIDRs once from the
/// API server of `kubeconfig` (as the daemon's first sync would) and
/// explains `service` for `node`.
pub fn from_api(kubeconfig: &Path, node: &str, service: &str, output: Output) -> Result<String> {
    let key = service_key(service)?;
    runtime()?.block_on(async {
        let client = api_watch::api::connect(Some(kubeconfig))
            .await
            .context("connecting to the API server")?;
        let mut watches = api_watch::api::watch(client, false);
        let first = tokio::time::timeout(LIST_TIMEOUT, watches.next())
            .await
            .context("the lists did not complete within 60 s")?
            .context("the watches ended before the lists completed")?;
        for e in &first.errors {
            eprintln!("nftopo: skipped: {e}");
        }
        match explain_service(
            watches.state(),
            Some(watches.slice_index()),
            node,
            &key,
            output,
        ) {
            Some(text) => text,
            None => bail!("service {service} not found on the API server (or it is not proxied)"),
        }
    })
}

/// `NAMESPACE/NAME` as a key.
pub fn service_key(service: &str) -> Result<ObjectKey> {
    match service.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
            Ok(ObjectKey::new(namespace, name))
        }
        _ => bail!("{service:?} is not NAMESPACE/NAME"),
    }
}

/// Plans `key` alone from `state` for `node`, with the reason for each
/// endpoint (what the daemon answers on `/debug/explain/`): `None` when
/// the state has no such Service. `slices` finds its EndpointSlices.
pub fn explain_service(
    state: &ClusterState,
    slices: Option<&SliceIndex>,
    node: &str,
    key: &ObjectKey,
    output: Output,
) -> Option<Result<String>> {
    let service = state.services.get(key)?;
    let own: Vec<&EndpointSlice> = match slices {
        Some(index) => index.slices_of(state, key),
        None => state.slices_for(key).collect(),
    };
    let one = topology_filter::plan_service(state, &own, node, service);
    let ports: Vec<&ServicePortPlan> = one.ports.iter().collect();
    let problems: Vec<&Problem> = one.problems.iter().collect();
    Some(render(node, &key.to_string(), &ports, &problems, output))
}

/// The explanation of one Service's port plans and problems.
pub fn render(
    node: &str,
    service: &str,
    ports: &[&ServicePortPlan],
    problems: &[&Problem],
    output: Output,
) -> Result<String> {
    Ok(match output {
        Output::Json => {
            let value = serde_json::json!({
                "node": node,
                "service": service,
                "ports": ports,
                "problems": problems,
            });
            serde_json::to_string_pretty(&value)? + "\n"
        }
        Output::Table => table(node, service, ports, problems),
    })
}

fn list(eps: &[EndpointTarget]) -> String {
    if eps.is_empty() {
        return "none".into();
    }
    eps.iter()
        .map(|e| match &e.node_name {
            Some(n) => format!("{}:{} ({n})", e.ip, e.port),
            None => format!("{}:{}", e.ip, e.port),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn table(node: &str, service: &str, ports: &[&ServicePortPlan], problems: &[&Problem]) -> String {
    let mut out = String::new();
    for p in problems {
        let _ = writeln!(out, "problem: {}", p.message);
    }
    for p in ports {
        let ips: Vec<String> = p.cluster_ips.iter().map(ToString::to_string).collect();
        let port_name = if p.port_name.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.port_name)
        };
        let _ = writeln!(
            out,
            "{service} port {}/{}{port_name} on {} from node {node}",
            p.port,
            p.protocol.nft_name(),
            ips.join(", ")
        );
        let _ = writeln!(out, "  rule:               {}", p.rule);
        let used = |uses: bool, eps: &[EndpointTarget]| {
            if uses {
                list(eps)
            } else {
                "not used by this service".to_string()
            }
        };
        let _ = writeln!(
            out,
            "  cluster endpoints:  {}",
            used(p.uses_cluster_endpoints, &p.cluster_endpoints)
        );
        let _ = writeln!(
            out,
            "  local endpoints:    {}",
            used(p.uses_local_endpoints, &p.local_endpoints)
        );
        let verdict = if p.endpoints().is_empty() {
            if p.has_any_endpoints {
                "rejected on this node (no endpoint allowed here)".to_string()
            } else {
                "rejected (no usable endpoint anywhere)".to_string()
            }
        } else {
            list(p.endpoints())
        };
        let _ = writeln!(out, "  cluster IP goes to: {verdict}");
        let rows: Vec<[String; 6]> = p
            .decisions
            .iter()
            .map(|d| {
                let node = d.node_name.as_deref().unwrap_or("-").to_string();
                [
                    d.ip.to_string(),
                    d.port.to_string(),
                    node,
                    yes(d.for_cluster).into(),
                    yes(d.for_local).into(),
                    d.reason.clone(),
                ]
            })
            .collect();
        let header = ["ENDPOINT", "PORT", "NODE", "CLUSTER", "LOCAL", "REASON"].map(String::from);
        let mut widths = header.clone().map(|h| h.len());
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        for r in std::iter::once(&header).chain(&rows) {
            let mut line = String::from("  ");
            for (i, (c, w)) in r.iter().zip(widths).enumerate() {
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    let _ = write!(line, "{c:<w$}  ");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out.push('\n');
    }
    out
}
