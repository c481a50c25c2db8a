//! The real kernel: one nfnetlink batch per transaction on a
//! NETLINK_NETFILTER socket (what `nft -f` does).

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_netfilter::{
    none::ControlMessage, NetfilterHeader, NetfilterMessage, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};

use crate::encode::{encode_ops, Encoded};
use crate::error::Error;
use crate::kernel::{ApplyStats, Kernel};
use crate::model::Family;
use crate::transaction::Transaction;

/// NFNL_SUBSYS_NFTABLES, carried in the res_id of batch begin/end.
const SUBSYS_NFTABLES: u16 = 10;
/// NLMSG_ERROR.
const NLMSG_ERROR: u16 = 2;

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
        Ok(Self { socket, seq })
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

fn frame(inner: NetfilterMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

fn control(msg: ControlMessage, seq: u32) -> Vec<u8> {
    frame(
        NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, SUBSYS_NFTABLES),
            msg,
        ),
        0,
        seq,
    )
}

/// Frames `encoded` between batch begin and end, numbering messages from
/// `first_seq`. The last operation asks for an ack so that success is
/// reported too; failures are reported for any message.
pub fn build_batch(encoded: &[Encoded], first_seq: u32) -> Vec<u8> {
    let mut buf = control(ControlMessage::BatchBegin, first_seq);
    for (i, e) in encoded.iter().enumerate() {
        let ack = if i + 1 == encoded.len() { NLM_F_ACK } else { 0 };
        let inner = NetfilterMessage::new(
            NetfilterHeader::new(nfproto(e.family), 0, 0),
            e.message.clone(),
        );
        buf.extend(frame(inner, e.flags | ack, first_seq + 1 + i as u32));
    }
    buf.extend(control(
        ControlMessage::BatchEnd,
        first_seq + 1 + encoded.len() as u32,
    ));
    buf
}

impl Kernel for NetlinkKernel {
    fn apply(&mut self, tx: &Transaction) -> Result<ApplyStats, Error> {
        let encoded = encode_ops(&tx.ops);
        if encoded.is_empty() {
            return Ok(ApplyStats::default());
        }
        let first = self.seq;
        self.seq = self.seq.wrapping_add(encoded.len() as u32 + 2);
        let buf = build_batch(&encoded, first);
        // The whole batch must travel in one sendmsg: the kernel handles
        // one batch per skb. Let the socket take it (as nft does).
        setsockopt(&self.socket, sockopt::SndBufForce, &(buf.len() + 4096))
            .map_err(|e| Error::Io(e.into()))?;
        let sent = self.socket.send(&buf, 0)?;
        if sent != buf.len() {
            return Err(Error::Protocol(format!(
                "sent {sent} of {} bytes",
                buf.len()
            )));
        }
        let last_seq = first + encoded.len() as u32;
        let mut first_error: Option<(u32, i32)> = None;
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            for (seq, code) in parse_errors(&data)? {
                if code != 0 && first_error.is_none_or(|(s, _)| seq < s) {
                    first_error = Some((seq, code));
                }
                if seq == last_seq || (seq == last_seq + 1 && code != 0) {
                    return match first_error {
                        None => Ok(ApplyStats {
                            operations: tx.ops.len(),
                            messages: encoded.len() + 2,
                            bytes: buf.len(),
                        }),
                        Some((seq, errno)) => {
                            let op_index = seq
                                .checked_sub(first + 1)
                                .and_then(|i| encoded.get(i as usize))
                                .map(|e| e.op_index);
                            Err(Error::Rejected {
                                op_index,
                                op: op_index.map(|i| tx.ops[i].to_string()).unwrap_or_default(),
                                errno,
                            })
                        }
                    };
                }
            }
        }
    }

    fn read_back(&mut self) -> Result<crate::model::Ruleset, Error> {
        crate::readback::dump(&self.socket, &mut self.seq)
    }
}

/// Reads (sequence number, positive errno or 0) from every NLMSG_ERROR in
/// a datagram.
fn parse_errors(data: &[u8]) -> Result<Vec<(u32, i32)>, Error> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= data.len() {
        let len = u32::from_ne_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(data[at + 4..at + 6].try_into().expect("2 bytes"));
        if len < 16 || at + len > data.len() {
            return Err(Error::Protocol(format!("bad message length {len}")));
        }
        if kind == NLMSG_ERROR {
            if len < 36 {
                return Err(Error::Protocol("short NLMSG_ERROR".into()));
            }
            let code = i32::from_ne_bytes(data[at + 16..at + 20].try_into().expect("4 bytes"));
            // The original request's header follows the code.
            let seq = u32::from_ne_bytes(data[at + 28..at + 32].try_into().expect("4 bytes"));
            out.push((seq, -code));
        }
        at += (len + 3) & !3;
    }
    Ok(out)
}
