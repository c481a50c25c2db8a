//! The real kernel: one nfnetlink batch per transaction on a
//! NETLINK_NETFILTER socket (what `nft -f` does).
//!
//! How a batch ends: the kernel answers every message it refuses with an
//! NLMSG_ERROR carrying that message's sequence number, and acks the
//! last operation (the only one sent with NLM_F_ACK) when the batch was
//! committed. A failure of the batch as a whole (an unknown subsystem,
//! EOPNOTSUPP when nf_tables cannot load, ENOMEM, a commit that fails) is
//! reported against the batch-begin message, and then nothing else comes.
//! So the first error within the batch's sequence range ends the wait,
//! with its errno and the index of the message; answers outside the range
//! (left over from an earlier batch) are skipped. With NETLINK_CAP_ACK
//! errors do not echo the request, and with NETLINK_EXT_ACK they carry
//! the kernel's message text and the offset of the attribute it refused.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};

use crate::encode::{encode_each, Encoded};
use crate::error::Error;
use crate::kernel::{ApplyStats, Kernel};
use crate::model::Family;
use crate::transaction::{Op, Transaction};
use described::Described;

/// NFNL_SUBSYS_NFTABLES, carried in the res_id of batch begin/end.
const SUBSYS_NFTABLES: u16 = 10;
/// NLMSG_ERROR.
const NLMSG_ERROR: u16 = 2;
/// NLM_F_ACK_TLVS: an NLMSG_ERROR carries extended-ack attributes.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// NLM_F_CAPPED: the request echoed in an NLMSG_ERROR is its header only.
const NLM_F_CAPPED: u16 = 0x100;
/// NLMSGERR_ATTR_MSG: the kernel's message text (NUL-terminated).
const NLMSGERR_ATTR_MSG: u16 = 1;
/// NLMSGERR_ATTR_OFFS: offset of the refused attribute in the request.
const NLMSGERR_ATTR_OFFS: u16 = 2;
mod batch;
mod described;

pub use batch::{BatchWriter, Framed};

/// Positive errnos handled here (Linux numbering).
const EINTR: i32 = 4;
const EAGAIN: i32 = 11;
const ENOBUFS: i32 = 105;

/// nf_tables over netlink in the current network namespace.
pub struct NetlinkKernel {
    socket: Socket,
    seq: u32,
}

impl NetlinkKernel {
    /// Opens and binds a NETLINK_NETFILTER socket.
    pub fn open() -> Result<Self, Error> {
        let (socket, seq) = open_netfilter()?;
        // Answers are errors and one ack: a few MiB are plenty, and forcing
        // the size avoids ENOBUFS when a large batch fails everywhere.
        let _ = setsockopt(&socket, sockopt::RcvBufForce, &(8 << 20));
        // Errors without the request echoed (a refused 1 MiB set-element
        // message would come back whole), with the kernel's reason
        // (Linux 4.2 and 4.12; older kernels refuse, which costs only the
        // text). The read-back reads only each answer's error code.
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_ext_ack(true);
        Ok(Self { socket, seq })
    }

    /// Sends `batch` and waits for its end: the ack of its last
    /// operation, or the first error within its sequence range.
    /// `Err(Failure)` for a refusal, with the message's index in the batch.
    fn exchange(&mut self, batch: &Framed) -> Outcome {
        let (first, messages, acked) = (batch.first, batch.messages(), batch.acked());
        // The whole batch must travel in one sendmsg: the kernel handles
        // one batch per skb. Let the socket take it (as nft does).
        setsockopt(&self.socket, sockopt::SndBufForce, &(batch.bytes + 4096))
            .map_err(|e| Error::Io(e.into()))?;
        let sent = loop {
            match batch.send(&self.socket) {
                Err(e) if e.raw_os_error() == Some(EINTR) => continue,
                sent => break sent.map_err(Error::Io)?,
            }
        };
        if sent != batch.bytes {
            return Err(Error::Protocol(format!("sent {sent} of {} bytes", batch.bytes)).into());
        }
        loop {
            let data = match self.socket.recv_from_full() {
                Ok((data, _)) => data,
                Err(e) => match e.raw_os_error() {
                    Some(EINTR) => continue,
                    // Answers were dropped: the batch may or may not have
                    // been committed. The engine's Syncer reads the kernel
                    // back after any error and converges.
                    Some(ENOBUFS) => {
                        self.drain();
                        return Err(Error::Protocol(
                            "the socket dropped answers (ENOBUFS): whether the batch was \
                             applied is unknown; the next sync reads the kernel back"
                                .into(),
                        )
                        .into());
                    }
                    Some(EAGAIN) => {
                        return Err(Error::Protocol(
                            "no answer to the batch within 30 s: whether it was applied is \
                             unknown; the next sync reads the kernel back"
                                .into(),
                        )
                        .into())
                    }
                    _ => return Err(Error::Io(e).into()),
                },
            };
            for answer in parse_errors(&data)? {
                let index = answer.seq.wrapping_sub(first);
                if index >= messages {
                    continue; // an answer to an earlier batch or request
                }
                if answer.errno != 0 {
                    return Err(Failure::Refused {
                        index: index as usize,
                        errno: answer.errno,
                        text: answer.text(),
                    });
                }
                if answer.seq == acked {
                    return Ok(());
                }
            }
        }
    }
}

impl NetlinkKernel {
    /// Reads and drops every answer queued on the socket, without
    /// waiting. After an overrun the kernel drops every new answer until
    /// the queue has been read down (the socket stays "congested"), so
    /// the read-back that follows would wait out the timeout.
    fn drain(&self) {
        let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
        // Bounded: at most the 8 MiB receive buffer's worth of answers.
        for _ in 0..1 << 17 {
            buf.clear();
            match self.socket.recv(&mut buf, nix::libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(EINTR) => {}
                Err(_) => break, // EAGAIN: empty
            }
        }
    }
}

impl NetlinkKernel {
    /// Sends the batch `w` framed for `operations` operations; a refused
    /// message is described by `describe(operation index, which of that
    /// operation's messages)`.
    fn send(
        &mut self,
        w: BatchWriter,
        operations: usize,
        describe: impl Fn(usize, usize) -> String,
    ) -> Result<ApplyStats, Error> {
        if w.is_empty() {
            return Ok(ApplyStats::default());
        }
        let batch = w.finish();
        let messages = batch.messages();
        self.seq = self.seq.wrapping_add(messages);
        match self.exchange(&batch) {
            Ok(()) => Ok(ApplyStats {
                operations,
                messages: messages as usize,
                bytes: batch.bytes,
            }),
            Err(Failure::Other(e)) => Err(e),
            Err(Failure::Refused { index, errno, text }) => {
                // Message 0 is the batch begin, the last one the batch end.
                let at = index.checked_sub(1).filter(|&i| i < batch.ops_of.len());
                let op_index = at.map(|i| batch.ops_of[i] as usize);
                let mut op = match at {
                    Some(i) => {
                        let of = batch.ops_of[i];
                        let nth = batch.ops_of[..i]
                            .iter()
                            .rev()
                            .take_while(|&&o| o == of)
                            .count();
                        describe(of as usize, nth)
                    }
                    None if index == 0 => format!("batch begin (message 0 of {messages})"),
                    None => format!("batch end (message {index} of {messages})"),
                };
                if let Some(text) = text {
                    // Shown as `op`, kernel: `text`.
                    op.push_str("`, kernel: `");
                    op.push_str(&text);
                }
                Err(Error::Rejected {
                    op_index,
                    op,
                    errno,
                })
            }
        }
    }
}

/// A bound and connected NETLINK_NETFILTER socket with a receive timeout,
/// and a first sequence number (the clock's seconds), for nf_tables and
/// ctnetlink alike. The kernel answers while our send() runs, so answers
/// are queued by the time we read; the timeout only guards against one
/// that never comes (a kernel bug) hanging the agent.
pub(crate) fn open_netfilter() -> Result<(Socket, u32), Error> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    setsockopt(
        &socket,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(30, 0),
    )
    .map_err(|e| Error::Io(e.into()))?;
    let seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1);
    Ok((socket, seq))
}

fn nfproto(family: Family) -> NetfilterProtoFamily {
    match family {
        Family::Ip => NetfilterProtoFamily::IPv4,
        Family::Ip6 => NetfilterProtoFamily::IPv6,
    }
}

/// `inner` as a netlink request numbered `seq`, its lengths set.
fn message(inner: NetfilterMessage, flags: u16, seq: u32) -> NetlinkMessage<NetfilterMessage> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    msg.finalize();
    msg
}

/// Frames `encoded` between batch begin and end, numbering messages from
/// `first_seq`, as one buffer ([`NetlinkKernel`] sends the pages of a
/// [`BatchWriter`] instead). The last operation asks for an ack so that
/// success is reported too; failures are reported for any message.
pub fn build_batch(encoded: &[Encoded], first_seq: u32) -> Vec<u8> {
    let mut w = BatchWriter::new(first_seq);
    for e in encoded {
        w.push(e.clone());
    }
    w.finish().to_vec()
}

impl Kernel for NetlinkKernel {
    fn apply(&mut self, tx: &Transaction) -> Result<ApplyStats, Error> {
        let mut w = BatchWriter::new(self.seq);
        encode_each(&tx.ops, |e| w.push(e));
        self.send(w, tx.ops.len(), |op, _| tx.ops[op].to_string())
    }

    fn apply_owned(&mut self, tx: Transaction) -> Result<ApplyStats, Error> {
        self.apply_iter(&mut tx.ops.into_iter())
    }

    fn apply_iter(&mut self, ops: &mut dyn Iterator<Item = Op>) -> Result<ApplyStats, Error> {
        let mut w = BatchWriter::new(self.seq);
        let mut kept = Vec::new();
        for (i, op) in ops.enumerate() {
            encode_each(std::slice::from_ref(&op), |mut e| {
                e.op_index = i;
                w.push(e)
            });
            kept.push(Described::of(op));
        }
        self.send(w, kept.len(), |op, nth| kept[op].text(nth))
    }

    fn read_back(&mut self) -> Result<crate::model::Ruleset, Error> {
        crate::readback::dump(&self.socket, &mut self.seq)
    }
}

/// How a batch ended when it did not succeed.
enum Failure {
    /// The kernel refused message `index` of the batch (0: batch begin).
    Refused {
        index: usize,
        errno: i32,
        /// The extended ack, as [`ErrorAnswer::text`] shows it.
        text: Option<String>,
    },
    /// Anything else: the socket, the framing, the state unknown.
    Other(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Other(e)
    }
}

type Outcome = Result<(), Failure>;

/// One NLMSG_ERROR: an ack when `errno` is 0.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ErrorAnswer {
    /// The sequence number of the request it answers.
    seq: u32,
    /// Positive errno, or 0.
    errno: i32,
    /// NLMSGERR_ATTR_MSG.
    message: Option<String>,
    /// NLMSGERR_ATTR_OFFS.
    offset: Option<u32>,
}

impl ErrorAnswer {
    /// The extended ack as one line: the kernel's text and, when it
    /// names one, the offset of the refused attribute in the message.
    fn text(&self) -> Option<String> {
        let message = self
            .message
            .as_deref()
            .map(|m| m.escape_debug().to_string());
        match (message, self.offset) {
            (None, None) => None,
            (Some(m), None) => Some(m),
            (None, Some(o)) => Some(format!("attribute at byte {o} of the message")),
            (Some(m), Some(o)) => Some(format!("{m} (attribute at byte {o} of the message)")),
        }
    }
}

/// Every NLMSG_ERROR in a datagram, with its extended-ack attributes.
fn parse_errors(data: &[u8]) -> Result<Vec<ErrorAnswer>, Error> {
    let u16_at = |at: usize| u16::from_ne_bytes([data[at], data[at + 1]]);
    let u32_at = |at: usize| u32::from_ne_bytes(data[at..at + 4].try_into().expect("4 bytes"));
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= data.len() {
        let len = u32_at(at) as usize;
        if len < 16 || len > data.len() - at {
            return Err(Error::Protocol(format!("bad message length {len}")));
        }
        let (kind, flags, seq) = (u16_at(at + 4), u16_at(at + 6), u32_at(at + 8));
        if kind == NLMSG_ERROR {
            // The code, then the request's header (and, uncapped, its body).
            if len < 36 {
                return Err(Error::Protocol("short NLMSG_ERROR".into()));
            }
            let code = u32_at(at + 16) as i32;
            let mut answer = ErrorAnswer {
                seq,
                errno: code.checked_neg().unwrap_or(0),
                message: None,
                offset: None,
            };
            if flags & NLM_F_ACK_TLVS != 0 {
                let echoed = if flags & NLM_F_CAPPED != 0 {
                    16
                } else {
                    u32_at(at + 20) as usize
                };
                let mut tlv = at + 20 + ((echoed + 3) & !3);
                let end = at + len;
                while tlv + 4 <= end {
                    let (tlv_len, tlv_kind) = (u16_at(tlv) as usize, u16_at(tlv + 2));
                    if tlv_len < 4 || tlv + tlv_len > end {
                        break;
                    }
                    let value = &data[tlv + 4..tlv + tlv_len];
                    match tlv_kind & 0x3fff {
                        NLMSGERR_ATTR_MSG => {
                            let text = value.split(|&b| b == 0).next().unwrap_or(&[]);
                            answer.message = Some(String::from_utf8_lossy(text).into_owned());
                        }
                        NLMSGERR_ATTR_OFFS if value.len() >= 4 => {
                            answer.offset =
                                Some(u32::from_ne_bytes(value[..4].try_into().expect("4 bytes")));
                        }
                        _ => {}
                    }
                    tlv += (tlv_len + 3) & !3;
                }
            }
            out.push(answer);
        }
        at += ((len + 3) & !3).min(data.len() - at);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
