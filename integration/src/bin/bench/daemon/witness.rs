//! The kernel as the witness of one set element: an nf_tables
//! `NFT_MSG_GETSETELEM` request for one key (not a dump), answered by the
//! kernel's own lookup. `nft get element` reads the whole ruleset into its
//! cache first: 170 ms at 1k services, and at 100k services more than a
//! minute and 2.7 GiB, so it cannot be the witness of a change there.

use std::io::{self, Read, Write};
use std::net::Ipv4Addr;

use socket2::{Domain, Protocol, Socket, Type};

const AF_NETLINK: i32 = 16;
const NETLINK_NETFILTER: i32 = 12;
const NFPROTO_IPV4: u8 = 2;
/// NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM.
const GETSETELEM: u16 = (10 << 8) | 13;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 1 << 15;
/// NFTA_SET_ELEM_LIST_{TABLE,SET,ELEMENTS}, NFTA_LIST_ELEM,
/// NFTA_SET_ELEM_{KEY,DATA}, NFTA_DATA_VALUE.
const LIST_TABLE: u16 = 1;
const LIST_SET: u16 = 2;
const LIST_ELEMENTS: u16 = 3;
const LIST_ELEM: u16 = 1;
const ELEM_KEY: u16 = 1;
const ELEM_DATA: u16 = 2;
const DATA_VALUE: u16 = 1;

fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// The attributes of `buf`, as (type without flags, payload).
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind, &buf[4..len]));
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    out
}

fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf)
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v)
}

/// Element `key` of set `set` in table `ip <table>` inside namespace
/// `netns`: `Some(data)` (the element's data value; empty for verdict data)
/// when the kernel holds it, `None` when it does not.
pub fn get_element(netns: &str, table: &str, set: &str, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let (netns, table, set, key) = (
        netns.to_string(),
        table.to_string(),
        set.to_string(),
        key.to_vec(),
    );
    // Namespaces are per thread: join it in a thread of its own.
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{netns}"))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        query(&table, &set, &key)
    })
    .join()
    .map_err(|_| io::Error::other("witness thread panicked"))?
}

fn query(table: &str, set: &str, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut sock = Socket::new(
        Domain::from(AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(NETLINK_NETFILTER)),
    )?;
    let mut body = vec![NFPROTO_IPV4, 0, 0, 0];
    attr(&mut body, LIST_TABLE, &cstr(table));
    attr(&mut body, LIST_SET, &cstr(set));
    let mut k = Vec::new();
    attr(&mut k, DATA_VALUE, key);
    let mut elem = Vec::new();
    attr(&mut elem, ELEM_KEY | NLA_F_NESTED, &k);
    let mut list = Vec::new();
    attr(&mut list, LIST_ELEM | NLA_F_NESTED, &elem);
    attr(&mut body, LIST_ELEMENTS | NLA_F_NESTED, &list);
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&GETSETELEM.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&body);
    sock.write_all(&msg)?;
    // The element (a NEWSETELEM message), then the acknowledgement; or an
    // error (ENOENT: no such element).
    let mut found = None;
    let mut buf = vec![0u8; 65536];
    loop {
        let n = sock.read(&mut buf)?;
        let mut rest = &buf[..n];
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            if len < 16 || len > rest.len() {
                return Err(io::Error::other("truncated netlink message"));
            }
            let payload = &rest[16..len];
            if kind == NLMSG_ERROR {
                let code = i32::from_ne_bytes(payload[0..4].try_into().unwrap());
                return match code {
                    0 => Ok(found),
                    -2 => Ok(None),
                    c => Err(io::Error::from_raw_os_error(-c)),
                };
            }
            // nfgenmsg, then the element list.
            let data = payload
                .get(4..)
                .and_then(|a| find(a, LIST_ELEMENTS))
                .and_then(|l| find(l, LIST_ELEM))
                .map(|e| {
                    find(e, ELEM_DATA)
                        .and_then(|d| find(d, DATA_VALUE))
                        .unwrap_or_default()
                        .to_vec()
                });
            if data.is_some() {
                found = data;
            }
            rest = &rest[((len + 3) & !3).min(rest.len())..];
        }
    }
}

/// `addr . proto . port` with each part padded to 32 bits, as nftopo's
/// maps key a service port (nft-writer's `encode::set::key_bytes`).
pub fn service_key(addr: Ipv4Addr, proto: u8, port: u16) -> Vec<u8> {
    let mut b = addr.octets().to_vec();
    b.extend_from_slice(&[proto, 0, 0, 0]);
    b.extend_from_slice(&port.to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b
}
