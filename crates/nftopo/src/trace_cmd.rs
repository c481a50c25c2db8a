//! `nftopo trace`: what nftopo's tables in the current network namespace
//! do with one packet. The tables are read back from the kernel over
//! netlink (no `nft`), with the clients session affinity pinned, and
//! evaluated by nft-writer's tracer ([`nft_writer::explain`], the one the
//! tests use on planned tables); the report (`report.rs`) is a table or
//! JSON of a fixed schema.

mod report;

use std::net::{IpAddr, SocketAddr, UdpSocket};

use anyhow::{bail, Context, Result};
use api_watch::Protocol;
use clap::Args;
use nft_writer::{Family, Packet, Path, Stmt, Table};

use crate::explain::Output;
use report::Report;

/// `nftopo trace` arguments.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The packet's source address, and optionally its source port
    /// (`10.42.0.5`, `10.42.0.5:40000`, `[fd00::5]:40000`). Required for
    /// a packet that arrives; with --local, the address the kernel
    /// would choose for the destination when left out.
    #[arg(long, value_name = "SRC[:PORT]")]
    from: Option<String>,
    /// The destination, port and protocol (tcp, udp or sctp; tcp when
    /// left out): `10.43.0.10:80`, `[fd00:43::a]:53/udp`.
    #[arg(long, value_name = "DST:PORT[/PROTO]")]
    to: String,
    /// The interface the packet arrives on (only needed when the tables
    /// match on it: --detect-local-mode BridgeInterface or
    /// InterfaceNamePrefix).
    #[arg(long, value_name = "IFACE", conflicts_with = "local")]
    iif: Option<String>,
    /// The packet is sent by a process on this node (output hook), not
    /// routed through it.
    #[arg(long)]
    local: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// Runs `nftopo trace` and returns its output.
pub fn trace(args: &TraceArgs) -> Result<String> {
    let (dst, dport, proto) = parse_to(&args.to)?;
    let from = args.from.as_deref().map(parse_from).transpose()?;
    let family = if dst.is_ipv4() {
        Family::Ip
    } else {
        Family::Ip6
    };
    let (src, sport) = match from {
        Some((src, sport)) => {
            if src.is_ipv4() != dst.is_ipv4() {
                bail!("--from {src} and --to {dst} are of different address families");
            }
            (src, sport)
        }
        None if args.local => (kernel_source(dst, dport)?, None),
        None => bail!(
            "--from is required for a packet that arrives at the node \
             (or give --local for one the node sends)"
        ),
    };
    let tables = nft_writer::kernel_tables()
        .context("reading nftopo's tables back from the kernel (nf_tables netlink)")?;
    // No table: nothing of nftopo's touches the packet (said as such).
    let empty = Table {
        layout: None,
        ..Table::new(family, nft_writer::names::TABLE)
    };
    let held = tables.tables.iter().find(|t| t.family == family);
    let table = held.unwrap_or(&empty);
    if !args.local && args.iif.is_none() && matches_iifname(table) {
        bail!(
            "the table matches on the input interface (--detect-local-mode \
             BridgeInterface or InterfaceNamePrefix): give --iif IFACE"
        );
    }
    let pkt = Packet {
        src,
        dst,
        proto,
        dport,
        path: if args.local {
            Path::Local
        } else {
            Path::Forwarded
        },
        iifname: args.iif.clone().unwrap_or_default(),
        node_addrs: if is_local_address(dst) {
            vec![dst]
        } else {
            Vec::new()
        },
    };
    let branches = nft_writer::explain(table, &pkt);
    let mut report = Report::new(table, &pkt, sport, &branches);
    report.table_found = held.is_some();
    Ok(match args.output {
        Output::Json => serde_json::to_string_pretty(&report)? + "\n",
        Output::Table => report.table(),
    })
}

/// Whether any rule of `table` matches on `iifname`.
fn matches_iifname(table: &Table) -> bool {
    table.chains.values().any(|c| {
        c.rules.iter().any(|r| {
            r.0.iter()
                .any(|s| matches!(s, Stmt::IifnameIs(_) | Stmt::IifnameIsNot(_)))
        })
    })
}

/// The source address the kernel picks for a packet from this node to
/// `dst` (a connected UDP socket sends nothing).
fn kernel_source(dst: IpAddr, port: u16) -> Result<IpAddr> {
    let any: SocketAddr = match dst {
        IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).context("a UDP socket to find the source address")?;
    socket
        .connect((dst, port.max(1)))
        .with_context(|| format!("no route from this node to {dst}: give --from"))?;
    Ok(socket.local_addr()?.ip())
}

/// Whether `addr` is an address of this node (`fib daddr type local`):
/// whether a socket can bind it.
fn is_local_address(addr: IpAddr) -> bool {
    UdpSocket::bind((addr, 0)).is_ok()
}

/// `DST:PORT[/PROTO]`.
fn parse_to(text: &str) -> Result<(IpAddr, u16, Protocol)> {
    let (addr, proto) = match text.rsplit_once('/') {
        Some((a, p)) => (a, protocol(p)?),
        None => (text, Protocol::Tcp),
    };
    let sa: SocketAddr = addr.parse().map_err(|_| {
        anyhow::anyhow!(
            "--to {text:?}: expected DST:PORT[/PROTO] (`10.43.0.10:80`, `[fd00::a]:53/udp`)"
        )
    })?;
    if sa.port() == 0 {
        bail!("--to {text:?}: the port must be 1 to 65535");
    }
    Ok((sa.ip(), sa.port(), proto))
}

/// `SRC[:PORT]`.
fn parse_from(text: &str) -> Result<(IpAddr, Option<u16>)> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    let sa: SocketAddr = text.parse().map_err(|_| {
        anyhow::anyhow!(
            "--from {text:?}: expected SRC or SRC:PORT (`10.42.0.5`, `[fd00::5]:40000`)"
        )
    })?;
    Ok((sa.ip(), Some(sa.port())))
}

fn protocol(text: &str) -> Result<Protocol> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "sctp" => Ok(Protocol::Sctp),
        _ => bail!("--to: protocol {text:?} is not tcp, udp or sctp"),
    }
}

#[cfg(test)]
mod tests;
