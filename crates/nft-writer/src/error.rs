//! The one error type of this crate.

/// What went wrong applying a transaction. In every case the kernel holds
/// the ruleset it held before: a batch is applied whole or not at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel (or the fake) refused the transaction. `op_index` names
    /// the failing operation when the answer points at one. Nothing was
    /// applied. The caller logs it, counts it, retries with backoff and
    /// follows with a full sync. A refused read-back request (EPERM, …)
    /// is reported the same way, with `op` the `nft list` command it
    /// stands for and no `op_index`.
    #[error("the kernel refused {}`{op}`: {} (errno {errno})", op_number(*op_index), errno_text(*errno))]
    Rejected {
        /// Index of the failing operation in the transaction, if known.
        op_index: Option<usize>,
        /// The failing operation as `nft` text (empty if unknown).
        op: String,
        /// The positive errno the kernel answered.
        errno: i32,
    },
    /// The netlink socket failed (no permission, no nf_tables, out of
    /// memory). Nothing was applied; retry later or give up if it persists.
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel's answer could not be understood, or the ruleset kept
    /// changing during every attempt of a read-back. Treat as "unknown
    /// state": retry with a full sync.
    #[error("unexpected netlink answer: {0}")]
    Protocol(String),
}

/// `operation 6 of the transaction: ` when the index is known.
fn op_number(index: Option<usize>) -> String {
    index.map_or(String::new(), |i| {
        format!("operation {i} of the transaction: ")
    })
}

/// Classes of refusals, by errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// ENOENT: a referenced table, chain or map does not exist.
    NotFound,
    /// EEXIST: an object or element exists already.
    Exists,
    /// EBUSY: an object is still referenced.
    Busy,
    /// EPERM/EACCES: not allowed (CAP_NET_ADMIN missing).
    Permission,
    /// EINVAL, ERANGE, EOPNOTSUPP, ELOOP…: the kernel does not accept what
    /// we sent.
    Invalid,
    /// Anything else.
    Other,
}

impl Error {
    /// The class of a refusal; socket and protocol errors are `Other`
    /// unless they carry an errno.
    pub fn kind(&self) -> ErrorKind {
        let errno = match self {
            Error::Rejected { errno, .. } => *errno,
            Error::Io(e) => e.raw_os_error().unwrap_or(0),
            Error::Protocol(_) => 0,
        };
        match errno {
            libc_errno::ENOENT => ErrorKind::NotFound,
            libc_errno::EEXIST => ErrorKind::Exists,
            libc_errno::EBUSY => ErrorKind::Busy,
            libc_errno::EPERM | libc_errno::EACCES => ErrorKind::Permission,
            libc_errno::EINVAL
            | libc_errno::ERANGE
            | libc_errno::EOPNOTSUPP
            | libc_errno::ELOOP
            | libc_errno::E2BIG => ErrorKind::Invalid,
            _ => ErrorKind::Other,
        }
    }
}

/// The errno values this crate classifies (Linux numbering).
pub mod libc_errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// Argument list too long.
    pub const E2BIG: i32 = 7;
    /// Permission denied.
    pub const EACCES: i32 = 13;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// File exists.
    pub const EEXIST: i32 = 17;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// Result too large.
    pub const ERANGE: i32 = 34;
    /// Too many symbolic links (nf_tables: a jump loop).
    pub const ELOOP: i32 = 40;
    /// Operation not supported.
    pub const EOPNOTSUPP: i32 = 95;
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}
