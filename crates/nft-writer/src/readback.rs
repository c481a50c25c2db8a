//! Read-back: nftopo's tables dumped over NETLINK_NETFILTER
//! (NFT_MSG_GETTABLE, GETCHAIN, GETSET, GETRULE, GETSETELEM) and decoded
//! into the ruleset model the planner produces (`decode.rs`), as `nft
//! list table ip nftopo` and `nft list table ip6 nftopo` read them.
//!
//! Each dump is received whole (several datagrams) before it is decoded,
//! so that it lasts only as long as the kernel takes to write it: a dump
//! the kernel marks interrupted (NLM_F_DUMP_INTR: some commit, in any
//! table of the namespace, happened while it ran) is started again, up
//! to [`MAX_DUMP_STARTS`] times, and the whole read when a dump stays
//! interrupted or an object vanished under it (ENOENT).
//!
//! A set's elements can also come back incomplete without any mark: the
//! kernel writes a large set in several datagrams, walking its hash table
//! from the start for each and skipping as many elements as it already
//! sent; when the table resizes in between (it does, in the background,
//! for a while after many elements were added or removed), the order
//! changes under the skip, and as many elements are missed as are sent
//! twice (seen: 74,000 of a set's 100,000 elements read right after the
//! commit that added them). So an element dump that holds a key twice is
//! taken again, from an empty set, up to [`MAX_DUMP_STARTS`] times: one
//! without repeats missed nothing (the set's elements did not change
//! under it: a commit would have marked the dump interrupted).
//!
//! The dumps are not one snapshot: a commit to our own table between two
//! of them (a hand edit, a second writer) can mix two generations, which
//! the next full sync repairs. Checking the ruleset generation (GETGEN)
//! around the whole read, as `nft` does, would exclude that, but any
//! commit anywhere in the namespace would then restart a read that takes
//! a second at 10k services: another agent committing once a second
//! would starve it. nftopo is its table's only writer, so the check buys
//! little and costs the read-back under churn.

use netlink_sys::Socket;

use crate::decode::{self, Decoder, NFPROTO_IPV4, NFPROTO_IPV6, SUBSYS_NFTABLES};
use crate::error::{libc_errno, Error};
use crate::model::{Family, Ruleset};
use crate::names::TABLE;

/// NFT_MSG_GETTABLE, GETCHAIN, GETRULE, GETSET, GETSETELEM.
const GETTABLE: u16 = 1;
const GETCHAIN: u16 = 4;
const GETRULE: u16 = 7;
const GETSET: u16 = 10;
const GETSETELEM: u16 = 13;
/// NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
/// NFTA_SET_ELEM_LIST_TABLE: all 1. NFTA_SET_ELEM_LIST_SET: 2.
const ATTR_TABLE: u16 = 1;
const ATTR_SET: u16 = 2;
/// NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE.
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP (ROOT | MATCH), NLM_F_DUMP_INTR.
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;

/// The receive buffer: a dump datagram is at most 32 KiB (the kernel
/// sizes them after our buffer, up to that), a single answer at most a
/// little over 64 KiB; a large buffer costs nothing and never truncates.
const RECV_BUFFER: usize = 1 << 20;
/// Reads of both tables before giving up.
const MAX_READS: usize = 4;
/// Starts of one dump before the read counts as interrupted.
const MAX_DUMP_STARTS: usize = 4;

/// Dumps nftopo's tables in the socket's namespace (`nft list table ip
/// nftopo`, and `ip6`), numbering requests from `seq`. A table that does
/// not exist is absent from the result. Elements of sets the data path
/// fills are not read.
pub(crate) fn dump(socket: &Socket, seq: &mut u32) -> Result<Ruleset, Error> {
    dump_tables(socket, seq, false)
}

/// [`dump`] with the elements of the sets the data path fills too (the
/// clients session affinity pinned, for `nftopo trace`).
pub(crate) fn dump_with_dynamic(socket: &Socket, seq: &mut u32) -> Result<Ruleset, Error> {
    dump_tables(socket, seq, true)
}

fn dump_tables(socket: &Socket, seq: &mut u32, dynamic: bool) -> Result<Ruleset, Error> {
    let mut link = Link {
        socket,
        seq,
        buf: Vec::with_capacity(RECV_BUFFER),
        answers: Vec::new(),
        spans: Vec::new(),
    };
    for _ in 0..MAX_READS {
        let mut decoder = Decoder::default();
        decoder.keep_dynamic = dynamic;
        if read(&mut link, &mut decoder)? {
            return Ok(decoder.finish());
        }
    }
    Err(Error::Protocol(format!(
        "the ruleset changed during each of {MAX_READS} read-backs \
         (a dump interrupted {MAX_DUMP_STARTS} times, or an object gone)"
    )))
}

fn nfproto(family: Family) -> u8 {
    match family {
        Family::Ip => NFPROTO_IPV4,
        Family::Ip6 => NFPROTO_IPV6,
    }
}

/// One read of both tables into `decoder`: `Ok(false)` when a dump was
/// interrupted too often or an object vanished under it (read again).
fn read(link: &mut Link, decoder: &mut Decoder) -> Result<bool, Error> {
    for family in [Family::Ip, Family::Ip6] {
        let f = nfproto(family);
        let table = [(ATTR_TABLE, TABLE)];
        let what = format!("list table {} {TABLE}", family.nft_name());
        // `nft list table`: a plain get, answered by ENOENT if missing.
        match link.request(GETTABLE, f, NLM_F_ACK, &table, |k, p| decoder.message(k, p))? {
            Answer::Done => {}
            Answer::Errno(libc_errno::ENOENT) => continue,
            Answer::Errno(errno) => return Err(refused(&what, errno)),
            Answer::Interrupted => return Ok(false),
        }
        // Chains, then sets, then rules (which name both), then elements.
        for msg in [GETCHAIN, GETSET, GETRULE] {
            if !link.dump(msg, f, &table, &what, decoder)? {
                return Ok(false);
            }
        }
        for (set, kind) in decoder.maps(family, TABLE) {
            if kind.is_dynamic() && !decoder.keep_dynamic {
                continue;
            }
            let attrs = [(ATTR_TABLE, TABLE), (ATTR_SET, set.as_str())];
            let mut whole = false;
            for _ in 0..MAX_DUMP_STARTS {
                decoder.restart_elements(family, &set);
                if !link.dump(GETSETELEM, f, &attrs, &what, decoder)? {
                    return Ok(false);
                }
                if decoder.repeated_elements == 0 {
                    whole = true;
                    break;
                }
            }
            if !whole {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn refused(what: &str, errno: i32) -> Error {
    Error::Rejected {
        op_index: None,
        op: what.to_string(),
        errno,
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// NLMSG_DONE (a dump) or the ack (a get).
    Done,
    /// NLMSG_ERROR with this positive errno, or a dump that ended with one.
    Errno(i32),
    /// A dump whose answer carried NLM_F_DUMP_INTR.
    Interrupted,
}

/// The socket, the sequence numbers, one receive buffer, and the answer
/// of the current request (payloads, and each message's type and range).
struct Link<'a> {
    socket: &'a Socket,
    seq: &'a mut u32,
    buf: Vec<u8>,
    answers: Vec<u8>,
    spans: Vec<(u16, usize, usize)>,
}

impl Link<'_> {
    /// One dump into `decoder`, started again while the kernel marks it
    /// interrupted; `Ok(false)` after [`MAX_DUMP_STARTS`] interrupted
    /// starts or when the table or set is gone (ENOENT).
    fn dump(
        &mut self,
        msg: u16,
        family: u8,
        attrs: &[(u16, &str)],
        what: &str,
        decoder: &mut Decoder,
    ) -> Result<bool, Error> {
        for _ in 0..MAX_DUMP_STARTS {
            match self.request(msg, family, NLM_F_DUMP, attrs, |k, p| decoder.message(k, p))? {
                Answer::Done => return Ok(true),
                Answer::Interrupted => {}
                Answer::Errno(libc_errno::ENOENT) => return Ok(false),
                Answer::Errno(errno) => return Err(refused(what, errno)),
            }
        }
        Ok(false)
    }

    /// Sends one request and, once the dump ended or the ack came, hands
    /// each answer message to `each` (type and payload); nothing when it
    /// failed or was interrupted.
    fn request(
        &mut self,
        msg: u16,
        family: u8,
        flags: u16,
        attrs: &[(u16, &str)],
        mut each: impl FnMut(u16, &[u8]),
    ) -> Result<Answer, Error> {
        let answer = self.exchange(msg, family, flags, attrs)?;
        if answer == Answer::Done {
            for &(kind, start, end) in &self.spans {
                each(kind, &self.answers[start..end]);
            }
        }
        Ok(answer)
    }

    /// Sends one request and keeps the payloads of the answer messages of
    /// its sequence number in `answers` until the dump ends or the ack or
    /// an error comes. Messages of other sequence numbers (answers to
    /// earlier requests) are skipped.
    fn exchange(
        &mut self,
        msg: u16,
        family: u8,
        flags: u16,
        attrs: &[(u16, &str)],
    ) -> Result<Answer, Error> {
        *self.seq = self.seq.wrapping_add(1);
        let seq = *self.seq;
        let request = request_bytes(msg, family, flags, seq, attrs);
        loop {
            match self.socket.send(&request, 0) {
                Ok(n) if n == request.len() => break,
                Ok(n) => {
                    return Err(Error::Protocol(format!(
                        "sent {n} of {} bytes",
                        request.len()
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.answers.clear();
        self.spans.clear();
        let mut interrupted = false;
        loop {
            self.buf.clear();
            let n = match self.socket.recv(&mut self.buf, 0) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n > self.buf.len() {
                return Err(Error::Protocol(format!(
                    "a datagram of {n} bytes does not fit {} bytes",
                    self.buf.len()
                )));
            }
            for frame in decode::frames(&self.buf)? {
                if frame.seq != seq {
                    continue;
                }
                interrupted |= frame.flags & NLM_F_DUMP_INTR != 0;
                let code = || {
                    frame
                        .payload
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                };
                match frame.kind {
                    NLMSG_NOOP => {}
                    NLMSG_ERROR => {
                        let code =
                            code().ok_or_else(|| Error::Protocol("short NLMSG_ERROR".into()))?;
                        return Ok(match code {
                            0 => Answer::Done,
                            c => Answer::Errno(-c),
                        });
                    }
                    NLMSG_DONE => {
                        return Ok(match code() {
                            Some(c) if c < 0 => Answer::Errno(-c),
                            _ if interrupted => Answer::Interrupted,
                            _ => Answer::Done,
                        });
                    }
                    // Once interrupted, the rest is read but not kept.
                    kind if !interrupted => {
                        let start = self.answers.len();
                        self.answers.extend_from_slice(frame.payload);
                        self.spans.push((kind, start, self.answers.len()));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// An nf_tables request: nlmsghdr, nfgenmsg (`family`, version 0, res_id
/// 0) and string attributes.
fn request_bytes(msg: u16, family: u8, flags: u16, seq: u32, attrs: &[(u16, &str)]) -> Vec<u8> {
    let mut body = vec![family, 0, 0, 0];
    for (kind, value) in attrs {
        let len = 4 + value.len() + 1;
        body.extend_from_slice(&(len as u16).to_ne_bytes());
        body.extend_from_slice(&kind.to_ne_bytes());
        body.extend_from_slice(value.as_bytes());
        body.push(0);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
    out.extend_from_slice(&((SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_request_names_the_table_in_a_padded_attribute() {
        let got = request_bytes(
            GETCHAIN,
            NFPROTO_IPV4,
            NLM_F_DUMP,
            7,
            &[(ATTR_TABLE, "nftopo")],
        );
        let mut want = Vec::new();
        want.extend_from_slice(&32u32.to_ne_bytes());
        want.extend_from_slice(&0x0a04u16.to_ne_bytes());
        want.extend_from_slice(&0x0301u16.to_ne_bytes());
        want.extend_from_slice(&7u32.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&[2, 0, 0, 0]);
        want.extend_from_slice(&11u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(b"nftopo\0\0");
        assert_eq!(got, want);
    }
}
