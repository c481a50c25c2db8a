//! `demo` (run by `make demo`, needs root): the seed article in one
//! minute. Builds the seed cluster in network namespaces, applies nftopo
//! on node-2 without and then with `topologyKeys: ["kubernetes.io/hostname"]`,
//! prints which pods answered 200 connections from a client pod each
//! time, shows node-2's nftopo ruleset and routes, and cleans up.

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
    println!("\n# ip -n {} route   (node-2)", node.name());
    print!("{}", ip_route(node)?);

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
