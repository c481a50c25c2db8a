//! [`BatchWriter`]: a batch's bytes, framed message by message as the
//! encoder produces them, in pages that are sent with one `sendmsg`.
//!
//! A first sync at 10k services is tens of thousands of messages. Held
//! as message trees and then copied into one buffer, the transaction
//! took about three times its encoded size at the peak; framed at once,
//! only the bytes are held. Pages grow geometrically instead of one
//! buffer being reallocated (which briefly holds the old and the new
//! copy), and the kernel takes them as one batch through an iovec, as
//! `nft` sends libmnl's batch pages.

use std::io::IoSlice;
use std::os::fd::AsRawFd;

use netlink_packet_core::{NetlinkMessage, NLM_F_ACK};
use netlink_packet_netfilter::{
    none::ControlMessage, NetfilterHeader, NetfilterMessage, NetfilterProtoFamily,
};
use netlink_sys::Socket;

use super::{message, nfproto, SUBSYS_NFTABLES};
use crate::encode::Encoded;

/// The first page's size; each next page is as large as the batch so far,
/// up to [`MAX_PAGE`] (a large transaction stays well under the kernel's
/// 1024 iovecs per call: 1 GiB at 4 MiB a page).
const FIRST_PAGE: usize = 16 << 10;
const MAX_PAGE: usize = 4 << 20;
/// Offset of the flags in a netlink header (len u32, type u16, flags u16).
const FLAGS_AT: usize = 6;

/// A batch being framed: batch begin, the operations' messages numbered
/// in order, and (at [`BatchWriter::finish`]) batch end.
#[derive(Debug)]
pub struct BatchWriter {
    pages: Vec<Vec<u8>>,
    first: u32,
    /// The operation each message came from, in message order.
    ops_of: Vec<u32>,
    /// Where the last operation message starts (page, offset).
    last: Option<(usize, usize)>,
    bytes: usize,
}

/// A framed batch, ready to send.
#[derive(Debug)]
pub struct Framed {
    pub(super) pages: Vec<Vec<u8>>,
    /// Sequence number of the batch begin.
    pub first: u32,
    /// The operation each message between begin and end came from.
    pub ops_of: Vec<u32>,
    /// Bytes in all.
    pub bytes: usize,
}

impl BatchWriter {
    /// A batch whose begin message is numbered `first_seq`.
    pub fn new(first_seq: u32) -> Self {
        let mut w = Self {
            pages: Vec::new(),
            first: first_seq,
            ops_of: Vec::new(),
            last: None,
            bytes: 0,
        };
        w.append(control(ControlMessage::BatchBegin, first_seq));
        w
    }

    /// Frames `e` as the next message.
    pub fn push(&mut self, e: Encoded) {
        let seq = self.next_seq();
        let inner = NetfilterMessage::new(NetfilterHeader::new(nfproto(e.family), 0, 0), e.message);
        self.last = Some(self.append(message(inner, e.flags, seq)));
        self.ops_of.push(e.op_index as u32);
    }

    /// Whether no operation message was framed.
    pub fn is_empty(&self) -> bool {
        self.ops_of.is_empty()
    }

    /// Asks for an ack of the last operation message (so that success is
    /// reported too; failures are reported for any message) and ends the
    /// batch.
    pub fn finish(mut self) -> Framed {
        if let Some((page, at)) = self.last {
            let flags = &mut self.pages[page][at + FLAGS_AT..at + FLAGS_AT + 2];
            let set = u16::from_ne_bytes([flags[0], flags[1]]) | NLM_F_ACK;
            flags.copy_from_slice(&set.to_ne_bytes());
        }
        let seq = self.next_seq();
        self.append(control(ControlMessage::BatchEnd, seq));
        Framed {
            pages: self.pages,
            first: self.first,
            ops_of: self.ops_of,
            bytes: self.bytes,
        }
    }

    fn next_seq(&self) -> u32 {
        self.first.wrapping_add(1 + self.ops_of.len() as u32)
    }

    /// Serializes `msg` at the end of the last page (a new one when it
    /// does not fit); returns where it starts.
    fn append(&mut self, msg: NetlinkMessage<NetfilterMessage>) -> (usize, usize) {
        let len = msg.buffer_len();
        let fits = self
            .pages
            .last()
            .is_some_and(|p| p.capacity() - p.len() >= len);
        if !fits {
            let size = self.bytes.clamp(FIRST_PAGE, MAX_PAGE).max(len);
            self.pages.push(Vec::with_capacity(size));
        }
        let index = self.pages.len() - 1;
        let page = &mut self.pages[index];
        let at = page.len();
        page.resize(at + len, 0);
        msg.serialize(&mut page[at..]);
        self.bytes += len;
        (index, at)
    }
}

impl Framed {
    /// Messages in the batch, begin and end included.
    pub fn messages(&self) -> u32 {
        self.ops_of.len() as u32 + 2
    }

    /// Sequence number of the last operation message (the one acked).
    pub fn acked(&self) -> u32 {
        self.first.wrapping_add(self.ops_of.len() as u32)
    }

    /// The batch as one buffer (tests and the fuzz target).
    pub fn to_vec(&self) -> Vec<u8> {
        self.pages.concat()
    }

    /// Sends the whole batch in one `sendmsg` (the kernel handles one
    /// batch per call); returns the bytes sent.
    pub(super) fn send(&self, socket: &Socket) -> std::io::Result<usize> {
        let iov: Vec<IoSlice<'_>> = self.pages.iter().map(|p| IoSlice::new(p)).collect();
        nix::sys::socket::sendmsg::<()>(
            socket.as_raw_fd(),
            &iov,
            &[],
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .map_err(std::io::Error::from)
    }
}

pub(super) fn control(msg: ControlMessage, seq: u32) -> NetlinkMessage<NetfilterMessage> {
    message(
        NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, SUBSYS_NFTABLES),
            msg,
        ),
        0,
        seq,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::encode_each;
    use crate::model::{Family, Verdict};
    use crate::transaction::{Op, TableRef};

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// A batch larger than several pages: every message whole in one page,
    /// numbered in order, the ack asked of the last operation only, and
    /// each message traced back to its operation.
    #[test]
    fn a_large_batch_is_framed_in_pages_in_order() {
        let table = TableRef {
            family: Family::Ip,
            name: "t".into(),
        };
        let mut ops = vec![Op::AddTable(table.clone())];
        for i in 0..600 {
            ops.push(Op::AddChain {
                table: table.clone(),
                name: format!("chain-with-a-long-name-{i}"),
                base: None,
            });
            ops.push(Op::AddRule {
                table: table.clone(),
                chain: format!("chain-with-a-long-name-{i}"),
                rule: crate::model::Rule(vec![crate::model::Stmt::Verdict(Verdict::Accept)]),
            });
        }
        let first = 7_000u32;
        let mut w = BatchWriter::new(first);
        encode_each(&ops, |e| w.push(e));
        let framed = w.finish();
        assert!(framed.pages.len() > 2, "{} pages", framed.pages.len());
        assert_eq!(framed.messages() as usize, ops.len() + 2);
        assert_eq!(framed.acked(), first + ops.len() as u32);
        let mut index = 0u32;
        let mut total = 0;
        for page in &framed.pages {
            let mut at = 0;
            while at < page.len() {
                let len = u32_at(page, at) as usize;
                assert!(len >= 16 && at + len <= page.len(), "message {index} split");
                assert_eq!(u32_at(page, at + 8), first + index, "sequence of {index}");
                let ack = u16_at(page, at + FLAGS_AT) & NLM_F_ACK != 0;
                assert_eq!(ack, index as usize == ops.len(), "ack flag of {index}");
                at += (len + 3) & !3;
                index += 1;
            }
            total += page.len();
        }
        assert_eq!(index, framed.messages());
        assert_eq!(total, framed.bytes);
        assert_eq!(framed.to_vec().len(), framed.bytes);
        // One message per operation here: each maps back to its own.
        let expect: Vec<u32> = (0..ops.len() as u32).collect();
        assert_eq!(framed.ops_of, expect);
    }
}
