//! The kernel seen through one trait, so that planning and syncing are
//! tested against [`crate::FakeKernel`] and run against
//! [`crate::NetlinkKernel`].

use crate::error::Error;
use crate::transaction::Transaction;

/// What applying a transaction cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyStats {
    /// Operations in the transaction.
    pub operations: usize,
    /// Netlink messages sent, batch begin and end included.
    pub messages: usize,
    /// Bytes sent.
    pub bytes: usize,
}

/// Something that applies transactions atomically: all operations take
/// effect together, or none does and the error says which one failed.
pub trait Kernel {
    /// Applies `tx` as one transaction.
    fn apply(&mut self, tx: &Transaction) -> Result<ApplyStats, Error>;
}
