//! The kernel seen through one trait, so that planning and syncing are
//! tested against [`crate::FakeKernel`] and run against
//! [`crate::NetlinkKernel`].

use crate::error::Error;
use crate::model::Ruleset;
use crate::transaction::{Op, Transaction};

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

    /// [`Kernel::apply`], taking `tx`: an implementation may drop each
    /// operation once it is encoded, so that a large transaction (a first
    /// sync's elements) is not held twice, as operations and as bytes.
    fn apply_owned(&mut self, tx: Transaction) -> Result<ApplyStats, Error> {
        self.apply(&tx)
    }

    /// [`Kernel::apply_owned`] of the operations `ops` gives, in order:
    /// an implementation may take each only when it encodes it (a full
    /// sync's maps then come a piece at a time, each dropped once encoded).
    fn apply_iter(&mut self, ops: &mut dyn Iterator<Item = Op>) -> Result<ApplyStats, Error> {
        self.apply_owned(Transaction { ops: ops.collect() })
    }

    /// What the kernel holds of nftopo's own tables (`table ip nftopo`
    /// and `table ip6 nftopo`, those that exist), as `nft list table`
    /// shows them: chains with their rules, sets and maps with their
    /// elements, except the elements of sets the data path fills
    /// ([`crate::MapKind::is_dynamic`]), which are traffic state and
    /// come back empty. What the model has no words for is kept raw
    /// (`Stmt::Unknown`, `ElemKey::Raw`, `MapKind::Other`, …).
    fn read_back(&mut self) -> Result<Ruleset, Error>;
}
