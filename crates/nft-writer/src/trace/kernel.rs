//! The tracer's kernel front end: nftopo's tables as the kernel of the
//! current network namespace holds them, read back over netlink (no
//! `nft`), with the members of the session-affinity sets, which the
//! engine's read-back leaves out (they are traffic state).

use crate::error::Error;
use crate::model::Ruleset;

/// `table ip nftopo` and `table ip6 nftopo` (those that exist) of the
/// current network namespace, with every element of every set, the
/// clients session affinity pinned included (one GETSETELEM dump per
/// affinity set; the kernel lists only members whose timeout has not
/// expired).
pub fn kernel_tables() -> Result<Ruleset, Error> {
    let (socket, mut seq) = crate::netlink::open_netfilter()?;
    crate::readback::dump_with_dynamic(&socket, &mut seq)
}
