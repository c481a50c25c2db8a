//! The user data `nft` attaches to tables and sets (libnftnl's TLV
//! format: type u8, length u8, value; integers in host byte order). The
//! kernel stores it without looking; `nft list` reads it to print a
//! table's `comment` and a set's `type`/`typeof` lines, so we write what
//! `nft` 1.0.6 writes for the same declaration and the listing of a
//! ruleset we applied reads like the one `nft -f` applied.

use crate::model::{Family, MapKind};

/// NFTNL_UDATA_SET_KEYBYTEORDER, DATABYTEORDER, KEY_TYPEOF, DATA_TYPEOF,
/// DATA_INTERVAL.
const KEY_BYTEORDER: u8 = 0;
const DATA_BYTEORDER: u8 = 1;
const KEY_TYPEOF: u8 = 3;
const DATA_TYPEOF: u8 = 4;
const DATA_INTERVAL: u8 = 6;
/// BYTEORDER_BIG_ENDIAN in nft's byte-order enum.
const BYTEORDER_BIG_ENDIAN: u32 = 2;

/// nft expression type ids in typeof descriptions.
const EXPR_PAYLOAD: u32 = 7;
const EXPR_META: u32 = 9;
const EXPR_CONCAT: u32 = 13;
const EXPR_NUMGEN: u32 = 23;

/// nft protocol descriptions and their field indexes.
const PROTO_IP: u32 = 12;
const PROTO_IP6: u32 = 13;
const PROTO_TH: u32 = 11;
const IP_DADDR: u32 = 12;
const IP6_DADDR: u32 = 9;
const TH_DPORT: u32 = 2;
/// NFT_META_L4PROTO.
const META_L4PROTO: u32 = 16;

/// NFTNL_UDATA_TABLE_COMMENT: a NUL-terminated string.
const TABLE_COMMENT: u8 = 0;
/// What the table comment says before the layout number.
const LAYOUT_COMMENT: &str = "nftopo layout ";

/// The table comment that records layout `layout`: `nftopo layout N`.
pub fn layout_comment(layout: u32) -> String {
    format!("{LAYOUT_COMMENT}{layout}")
}

/// The user data of nftopo's tables: the comment `nftopo layout N` (N =
/// [`crate::names::LAYOUT`]), which `nft list table` shows as `comment
/// "nftopo layout 2"` and a read-back turns into [`crate::Table::layout`].
pub fn table_userdata() -> Vec<u8> {
    let mut comment = layout_comment(crate::names::LAYOUT).into_bytes();
    comment.push(0);
    let mut out = Vec::new();
    tlv(&mut out, TABLE_COMMENT, &comment);
    out
}

/// The layout number in a table's user data, if it holds a well-formed
/// comment `nftopo layout N` (what [`table_userdata`] writes); `None` for
/// anything else (no comment, another comment, broken TLVs).
pub fn table_layout(udata: &[u8]) -> Option<u32> {
    let mut rest = udata;
    while let [t, len, tail @ ..] = rest {
        let len = usize::from(*len);
        let value = tail.get(..len)?;
        if *t == TABLE_COMMENT {
            let text = value.strip_suffix(&[0])?;
            let text = std::str::from_utf8(text).ok()?;
            let number = text.strip_prefix(LAYOUT_COMMENT)?;
            // Digits only: `u32::from_str` would take a leading `+`.
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            return number.parse().ok();
        }
        rest = &tail[len..];
    }
    None
}

fn tlv(out: &mut Vec<u8>, t: u8, value: &[u8]) {
    out.push(t);
    out.push(u8::try_from(value.len()).expect("udata attribute under 256 bytes"));
    out.extend_from_slice(value);
}

fn u32_tlv(out: &mut Vec<u8>, t: u8, v: u32) {
    tlv(out, t, &v.to_ne_bytes());
}

/// One typeof expression: its type and its own description.
fn expr(t: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    u32_tlv(&mut out, 0, t);
    tlv(&mut out, 1, inner);
    out
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut inner = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        tlv(&mut inner, i as u8, p);
    }
    expr(EXPR_CONCAT, &inner)
}

fn payload(desc: u32, field: u32) -> Vec<u8> {
    let mut inner = Vec::new();
    u32_tlv(&mut inner, 0, desc);
    u32_tlv(&mut inner, 1, field);
    expr(EXPR_PAYLOAD, &inner)
}

fn daddr(family: Family) -> Vec<u8> {
    match family {
        Family::Ip => payload(PROTO_IP, IP_DADDR),
        Family::Ip6 => payload(PROTO_IP6, IP6_DADDR),
    }
}

fn numgen_mod_1() -> Vec<u8> {
    let mut numgen = Vec::new();
    u32_tlv(&mut numgen, 0, 1); // NFT_NG_RANDOM
    u32_tlv(&mut numgen, 1, 1); // mod 1
    u32_tlv(&mut numgen, 2, 0); // offset 0
    expr(EXPR_NUMGEN, &numgen)
}

fn l4proto() -> Vec<u8> {
    let mut l4proto = Vec::new();
    u32_tlv(&mut l4proto, 0, META_L4PROTO);
    expr(EXPR_META, &l4proto)
}

/// The user data of a set or map of shape `kind`.
pub fn set_userdata(family: Family, kind: MapKind) -> Vec<u8> {
    let mut out = Vec::new();
    // `type ipv4_addr`: a single big-endian key type.
    match kind {
        MapKind::AffinitySet { .. } | MapKind::AddrSet => {
            u32_tlv(&mut out, KEY_BYTEORDER, BYTEORDER_BIG_ENDIAN);
            return out;
        }
        MapKind::Other { .. } => return out,
        _ => {}
    }
    u32_tlv(&mut out, KEY_BYTEORDER, 0);
    if kind.is_map() {
        u32_tlv(&mut out, DATA_BYTEORDER, 0);
    }
    let endpoint = || concat(&[daddr(family), payload(PROTO_TH, TH_DPORT)]);
    match kind {
        // `type a . b [: verdict]`: a concatenation without typeof parts.
        MapKind::ServiceVerdict
        | MapKind::PortVerdict
        | MapKind::ServiceSet
        | MapKind::PortSet
        | MapKind::AddrPairSet => tlv(&mut out, KEY_TYPEOF, &expr(EXPR_CONCAT, &[])),
        MapKind::EndpointDnat => {
            let key = concat(&[
                daddr(family),
                l4proto(),
                payload(PROTO_TH, TH_DPORT),
                numgen_mod_1(),
            ]);
            tlv(&mut out, KEY_TYPEOF, &key);
            tlv(&mut out, DATA_TYPEOF, &endpoint());
        }
        MapKind::PortEndpointDnat => {
            let key = concat(&[l4proto(), payload(PROTO_TH, TH_DPORT), numgen_mod_1()]);
            tlv(&mut out, KEY_TYPEOF, &key);
            tlv(&mut out, DATA_TYPEOF, &endpoint());
        }
        MapKind::AffinitySet { .. } | MapKind::AddrSet | MapKind::Other { .. } => {
            unreachable!("handled above")
        }
    }
    if kind.is_map() {
        u32_tlv(&mut out, DATA_INTERVAL, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// Bytes nft 1.0.6 sent for
    /// `map m { type ipv4_addr . inet_proto . inet_service : verdict; }`.
    #[test]
    fn a_service_verdict_map_carries_the_bytes_nft_writes() {
        let want = hex(
            "00 04 00 00 00 00 01 04 00 00 00 00 03 08 00 04 0d 00 00 00 01 00 06 04 00 00 00 00",
        );
        assert_eq!(set_userdata(Family::Ip, MapKind::ServiceVerdict), want);
    }

    /// Bytes nft 1.0.6 sent for `typeof ip daddr . meta l4proto . th dport
    /// . numgen random mod 1 : ip daddr . th dport`.
    #[test]
    fn the_endpoint_map_carries_the_typeof_bytes_nft_writes() {
        let want = hex(
            "00 04 00 00 00 00 01 04 00 00 00 00 03 60 00 04 0d 00 00 00 01 58 00 14 00 04 07 00 \
             00 00 01 0c 00 04 0c 00 00 00 01 04 0c 00 00 00 01 0e 00 04 09 00 00 00 01 06 00 04 \
             10 00 00 00 02 14 00 04 07 00 00 00 01 0c 00 04 0b 00 00 00 01 04 02 00 00 00 03 1a \
             00 04 17 00 00 00 01 12 00 04 01 00 00 00 01 04 01 00 00 00 02 04 00 00 00 00 04 34 \
             00 04 0d 00 00 00 01 2c 00 14 00 04 07 00 00 00 01 0c 00 04 0c 00 00 00 01 04 0c 00 \
             00 00 01 14 00 04 07 00 00 00 01 0c 00 04 0b 00 00 00 01 04 02 00 00 00 06 04 00 00 \
             00 00",
        );
        assert_eq!(set_userdata(Family::Ip, MapKind::EndpointDnat), want);
    }

    /// Bytes nft 1.0.6 sent for the same map in an `ip6` table.
    #[test]
    fn the_ip6_endpoint_map_describes_ip6_daddr() {
        let want = hex(
            "00 04 00 00 00 00 01 04 00 00 00 00 03 60 00 04 0d 00 00 00 01 58 00 14 00 04 07 00 \
             00 00 01 0c 00 04 0d 00 00 00 01 04 09 00 00 00 01 0e 00 04 09 00 00 00 01 06 00 04 \
             10 00 00 00 02 14 00 04 07 00 00 00 01 0c 00 04 0b 00 00 00 01 04 02 00 00 00 03 1a \
             00 04 17 00 00 00 01 12 00 04 01 00 00 00 01 04 01 00 00 00 02 04 00 00 00 00 04 34 \
             00 04 0d 00 00 00 01 2c 00 14 00 04 07 00 00 00 01 0c 00 04 0d 00 00 00 01 04 09 00 \
             00 00 01 14 00 04 07 00 00 00 01 0c 00 04 0b 00 00 00 01 04 02 00 00 00 06 04 00 00 \
             00 00",
        );
        assert_eq!(set_userdata(Family::Ip6, MapKind::EndpointDnat), want);
    }

    /// Bytes nft 1.0.6 sent for `typeof meta l4proto . th dport . numgen
    /// random mod 1 : ip daddr . th dport`.
    #[test]
    fn the_node_port_endpoint_map_carries_the_typeof_bytes_nft_writes() {
        let want = hex(
            "00 04 00 00 00 00 01 04 00 00 00 00 03 4a 00 04 0d 00 00 00 01 42 00 0e 00 04 09 00 \
             00 00 01 06 00 04 10 00 00 00 01 14 00 04 07 00 00 00 01 0c 00 04 0b 00 00 00 01 04 \
             02 00 00 00 02 1a 00 04 17 00 00 00 01 12 00 04 01 00 00 00 01 04 01 00 00 00 02 04 \
             00 00 00 00 04 34 00 04 0d 00 00 00 01 2c 00 14 00 04 07 00 00 00 01 0c 00 04 0c 00 \
             00 00 01 04 0c 00 00 00 01 14 00 04 07 00 00 00 01 0c 00 04 0b 00 00 00 01 04 02 00 \
             00 00 06 04 00 00 00 00",
        );
        assert_eq!(set_userdata(Family::Ip, MapKind::PortEndpointDnat), want);
    }

    #[test]
    fn the_table_comment_names_the_layout_and_reads_back() {
        let udata = table_userdata();
        let mut want = vec![0, 16];
        want.extend_from_slice(b"nftopo layout 2\0");
        if crate::names::LAYOUT == 2 {
            assert_eq!(udata, want);
        }
        assert_eq!(table_layout(&udata), Some(crate::names::LAYOUT));
    }

    #[test]
    fn a_table_comment_that_is_not_ours_has_no_layout() {
        // A comment TLV with `value` as its bytes.
        let comment = |value: &[u8]| {
            let mut out = vec![0, value.len() as u8];
            out.extend_from_slice(value);
            out
        };
        let cases: [(&str, Vec<u8>); 9] = [
            ("no user data", vec![]),
            ("another comment", comment(b"hello\0")),
            ("no NUL at the end", comment(b"nftopo layout 2")),
            (
                "a length past the end",
                b"\x00\x40nftopo layout 2\x00".to_vec(),
            ),
            ("no number", comment(b"nftopo layout \0")),
            ("a sign", comment(b"nftopo layout +2\0")),
            (
                "a number too large",
                comment(b"nftopo layout 99999999999\0"),
            ),
            ("invalid UTF-8", comment(b"\xff\xfe\0")),
            ("a lone type byte", vec![0]),
        ];
        for (case, udata) in cases {
            assert_eq!(table_layout(&udata), None, "{case}");
        }
    }

    #[test]
    fn other_user_data_before_the_comment_is_skipped() {
        let mut udata = vec![7, 2, 0xaa, 0xbb];
        udata.extend(table_userdata());
        assert_eq!(table_layout(&udata), Some(crate::names::LAYOUT));
    }

    /// Bytes nft 1.0.6 sent for `set s { type ipv4_addr . ipv4_addr; }` and
    /// for `type ipv4_addr; flags dynamic,timeout`.
    #[test]
    fn pair_and_affinity_sets_carry_the_bytes_nft_writes() {
        assert_eq!(
            set_userdata(Family::Ip, MapKind::AddrPairSet),
            hex("00 04 00 00 00 00 03 08 00 04 0d 00 00 00 01 00")
        );
        assert_eq!(
            set_userdata(Family::Ip, MapKind::AffinitySet { timeout: 10800 }),
            hex("00 04 02 00 00 00")
        );
    }
}
