//! `nftopo explain`: which endpoints each port of one Service uses on a
//! node, and why, as a table or as JSON.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use topology_filter::{EndpointTarget, ProxyPlan, ServicePortPlan};

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
    let Some((namespace, name)) = service.split_once('/') else {
        bail!("{service:?} is not NAMESPACE/NAME");
    };
    let ports: Vec<&ServicePortPlan> = plan
        .services
        .iter()
        .filter(|p| p.service.namespace == namespace && p.service.name == name)
        .collect();
    let problems: Vec<_> = plan
        .problems
        .iter()
        .filter(|p| p.object.namespace == namespace && p.object.name == name)
        .collect();
    if ports.is_empty() && problems.is_empty() {
        bail!("service {service} not found in the manifests (or it has no cluster IP)");
    }
    Ok(match output {
        Output::Json => {
            let value = serde_json::json!({
                "node": plan.node,
                "service": service,
                "ports": ports,
                "problems": problems,
            });
            serde_json::to_string_pretty(&value)? + "\n"
        }
        Output::Table => table(&plan.node, service, &ports, &problems),
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

fn table(
    node: &str,
    service: &str,
    ports: &[&ServicePortPlan],
    problems: &[&topology_filter::Problem],
) -> String {
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
        let verdict = if p.endpoints.is_empty() {
            if p.has_any_endpoints {
                "rejected on this node (no endpoint allowed here)".to_string()
            } else {
                "rejected (no usable endpoint anywhere)".to_string()
            }
        } else {
            list(&p.endpoints)
        };
        let _ = writeln!(out, "  cluster IP goes to: {verdict}");
        let rows: Vec<[String; 6]> = p
            .decisions
            .iter()
            .map(|d| {
                let node = d.node_name.clone().unwrap_or_else(|| "-".into());
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
