//! `nftopo cleanup` and `nftopo run --cleanup`: remove what nftopo owns
//! in the kernel. Its own module, so that neither the CLI nor the daemon
//! reaches into the other for it.

use anyhow::{bail, Context, Result};
use nft_writer::{names, Family, Kernel, NetlinkKernel, TableRef, Transaction};
use route_sync::NetlinkRoutes;

/// Removes nftopo's tables (`nft delete table ip nftopo; nft delete table
/// ip6 nftopo`) and, when `route_protocol` is given, every route of that
/// protocol in the main table.
pub fn cleanup(route_protocol: Option<u8>) -> Result<()> {
    let tables = [Family::Ip, Family::Ip6].map(|family| TableRef {
        family,
        name: names::TABLE.into(),
    });
    let mut kernel = NetlinkKernel::open().context("opening the nf_tables netlink socket")?;
    kernel
        .apply(&Transaction::delete_tables(&tables))
        .context("removing nftopo's tables")?;
    if let Some(protocol) = route_protocol {
        let mut routes = NetlinkRoutes::open().context("opening the rtnetlink socket")?;
        let report = route_sync::sync(&mut routes, &route_sync::DesiredRoutes::default(), protocol)
            .context("reading the routes back")?;
        if let Some((op, e)) = report.failed.first() {
            bail!("removing routes: {op}: {e}");
        }
    }
    Ok(())
}
