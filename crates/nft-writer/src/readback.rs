//! Read-back: nftopo's tables dumped over NETLINK_NETFILTER
//! (NFT_MSG_GETTABLE, GETCHAIN, GETRULE, GETSET, GETSETELEM) and decoded
//! into the ruleset model the planner produces.

use netlink_sys::Socket;

use crate::error::Error;
use crate::model::Ruleset;

/// Dumps nftopo's tables in the socket's namespace (`nft list table ip
/// nftopo`, and `ip6`), numbering requests from `seq`.
pub(crate) fn dump(socket: &Socket, seq: &mut u32) -> Result<Ruleset, Error> {
    let _ = (socket, seq);
    unimplemented!("read-back: being written")
}
