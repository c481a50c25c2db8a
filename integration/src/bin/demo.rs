//! `demo` (run by `make demo`, needs root): the seed article in one
//! minute. Builds the seed cluster in network namespaces, applies nftopo
//! on node-2 without and then with `topologyKeys: ["kubernetes.io/hostname"]`,
//! prints which pods answered 200 connections from a client pod each
//! time, shows node-2's nftopo ruleset, and cleans up. Then the article's
//! Calico routes (`10.42.54.128/26 via 172.31.11.157 dev tunl0 proto bird
//! onlink`), programmed by `nftopo apply --route-mode ipip` in a cluster
//! that had no pod routes, with connections before and after. It ends
//! back on the seed cluster's node-2 with one `nftopo trace` of a packet
//! from the client pod to the Service: node-2's two pods are the
//! candidates.

use std::process::ExitCode;

use nftopo_integration::*;

const CONNS: usize = 200;

fn main() -> ExitCode {
    require_root();
    match run_demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_demo() -> Result<()> {
    let nftopo = nftopo_bin()?;
    println!("nftopo under test: {}", nftopo.display());
    println!("building the seed cluster (node-2, node-3, node-4, five swansea-city-api pods)…");
    let cluster = SeedCluster::start(&testpod_sibling()?)?;
    for pod in PODS {
        println!("  {:<20} {:<7} {}", pod.name, pod.node, pod.ip);
    }
    let service = service_addr();

    cluster.apply(
        &["nodes.yaml", "svc-plain.yaml", "slices-v1beta1.yaml"],
        &[],
    )?;
    let r = cluster.probe_from_pod(CLIENT, service, CONNS, false)?;
    println!("\n{CONNS} connections from the client pod on node-2 to {service}");
    println!("without topologyKeys:                       {r}");

    cluster.apply(
        &["nodes.yaml", "svc-hostname.yaml", "slices-v1beta1.yaml"],
        &[],
    )?;
    let r = cluster.probe_from_pod(CLIENT, service, CONNS, false)?;
    println!("with topologyKeys [kubernetes.io/hostname]: {r}");

    cluster.apply(
        &[
            "nodes.yaml",
            "svc-zone-fallback.yaml",
            "slices-without-node-2.yaml",
        ],
        &[],
    )?;
    let r = cluster.probe_from_pod(CLIENT, service, CONNS, false)?;
    println!("node-2's pods gone, keys [hostname, zone]:  {r}");

    cluster.apply(
        &["nodes.yaml", "svc-hostname.yaml", "slices-v1beta1.yaml"],
        &[],
    )?;
    let node = cluster.node(THIS_NODE);
    println!(
        "\n# ip netns exec {} nft list table ip nftopo   (node-2, excerpt)",
        node.name()
    );
    let ruleset = node.exec("nft", &["list", "table", "ip", "nftopo"])?;
    let lines: Vec<&str> = ruleset.lines().collect();
    for line in lines.iter().take(60) {
        println!("{line}");
    }
    if lines.len() > 60 {
        println!("… ({} more lines)", lines.len() - 60);
    }
    routes_demo()?;
    trace_demo(&cluster)?;
    cluster.cleanup()?;
    let tables = nft_tables(node)?;
    println!(
        "\nnftopo cleanup: table ip nftopo {}",
        if tables.contains("nftopo") {
            "STILL THERE"
        } else {
            "gone"
        }
    );
    drop(cluster);
    println!("namespaces deleted.");
    Ok(())
}

/// `nftopo trace` in node-2 of the seed cluster (topologyKeys
/// `[kubernetes.io/hostname]` applied): a packet from the client pod to
/// the Service, whose candidates must be node-2's two pods.
fn trace_demo(cluster: &SeedCluster) -> Result<()> {
    let node = cluster.node(THIS_NODE);
    let client = PODS.iter().find(|p| p.name == CLIENT).map(|p| p.ip);
    let client = client
        .ok_or_else(|| Error("no client pod".into()))?
        .to_string();
    let to = service_addr().to_string();
    let args = ["--from", client.as_str(), "--to", to.as_str()];
    // The JSON form checks what the table form below shows.
    let mut json_args = args.to_vec();
    json_args.extend(["--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&trace_check::run_trace(node, &json_args)?)
        .map_err(|e| Error(format!("nftopo trace --output json: {e}")))?;
    let got: std::collections::BTreeSet<String> = v["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["address"].as_str().map(str::to_string))
        .collect();
    let want: std::collections::BTreeSet<String> = backends_on(&[THIS_NODE])
        .iter()
        .map(|ip| ip.to_string())
        .collect();
    if got != want {
        return Err(Error(format!(
            "nftopo trace names {got:?} as candidates, not node-2's pods {want:?}"
        )));
    }
    println!("\nback on the seed cluster (topologyKeys [kubernetes.io/hostname]):");
    println!(
        "# ip netns exec {} nftopo trace {}",
        node.name(),
        args.join(" ")
    );
    print!("{}", trace_check::run_trace(node, &args)?);
    Ok(())
}

/// The article's Calico routes, programmed by nftopo: a cluster whose
/// nodes know no route to each other's pods until `nftopo apply
/// --route-mode ipip` runs on each.
fn routes_demo() -> Result<()> {
    println!("\nbuilding a cluster without pod routes (node-2, node-3, node-4 on one bridge)…");
    let cluster = RoutedCluster::start(&testpod_sibling()?, routed_nodes(false), true)?;
    let nodes = TempFile::new("nodes.yaml", &nodes_yaml(&cluster.spec))?;
    let pods = [
        ("pod-c on node-3", std::net::Ipv4Addr::new(10, 42, 54, 130)),
        ("pod-e on node-4", std::net::Ipv4Addr::new(10, 42, 201, 2)),
    ];
    for (name, ip) in pods {
        let r = cluster.probe("client", ip, 1)?;
        println!("before: client on node-2 -> {name} ({ip}): {r}");
    }
    let args = ["--route-mode", "ipip"];
    for node in ["node-2", "node-3", "node-4"] {
        cluster.apply(node, std::slice::from_ref(&nodes.0), &args)?;
    }
    let node2 = cluster.node("node-2");
    println!(
        "\n# nftopo apply --node node-2 --route-mode ipip …   then: ip -n {} route",
        node2.name()
    );
    print!("{}", ip_route(node2)?);
    println!("(tunl0 here is a veth on the same bridge: this kernel has no ipip module)");
    for (name, ip) in pods {
        cluster.wait_reachable("client", ip, std::time::Duration::from_secs(10))?;
        let r = cluster.probe("client", ip, 20)?;
        println!("after:  client on node-2 -> {name} ({ip}): {r}");
    }
    drop(cluster);
    println!("namespaces deleted.");
    Ok(())
}
