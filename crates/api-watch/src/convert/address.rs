//! Addresses and prefixes read as kube-proxy reads them: with
//! `netutils.ParseIPSloppy` and `ParseCIDRSloppy` (k8s.io/utils), which
//! keep Go 1.16's parser because objects stored before Go 1.17 may hold
//! IPv4 octets with leading zeros. Such an octet is decimal:
//! `172.30.0.071` is 172.30.0.71, not octal 57.
//!
//! What that parser accepts beyond Rust's `IpAddr::from_str`:
//!
//! * any number of leading zeros in an IPv4 octet (`010`, `0000001`), also
//!   in the IPv4 tail of an IPv6 address (`::ffff:127.001.002.003`);
//! * IPv6 groups longer than four hex digits while their value fits in 16
//!   bits (`0:0:0:0:000000:ffff:127.1.2.3`);
//! * leading zeros in a prefix length (`10.0.0.0/08`).
//!
//! An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, `::ffff:a00:1`) is the
//! IPv4 address: Go keeps every address in 16 bytes and kube-proxy tells
//! the families apart with `To4()`, which sees these as IPv4. A prefix
//! whose network is still IPv4-mapped after masking (`::ffff:10.0.0.0/104`)
//! is therefore the IPv4 prefix `10.0.0.0/8`.
//!
//! Rejected, as upstream rejects them: signs, octets above 255, missing or
//! extra octets or groups, zones (`fe80::1%eth0`), surrounding spaces,
//! prefix lengths beyond the family's width, and anything that is not an
//! address at all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Numbers this large stop a digit run (Go's `big`): far above anything
/// an octet or a group can hold, far below overflow.
const BIG: u32 = 0xFF_FFFF;

/// An IP address as `netutils.ParseIPSloppy` reads it: dotted-decimal
/// IPv4 (leading zeros allowed, read as decimal) or IPv6 (an IPv4-mapped
/// one is its IPv4 address). `None` when upstream rejects it too.
pub(crate) fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    // The first '.' or ':' decides the family, as in Go's ParseIP.
    match s.bytes().find(|&b| b == b'.' || b == b':')? {
        b'.' => ipv4(s.as_bytes()).map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        _ => ipv6(s.as_bytes()).map(from_16_bytes),
    }
}

/// A prefix as `netutils.ParseCIDRSloppy` reads it, reduced to its
/// network (host bits cleared) and length. An IPv4-mapped network is the
/// IPv4 prefix it stands for (length minus 96).
pub(crate) fn parse_cidr_sloppy(s: &str) -> Option<(IpAddr, u8)> {
    let (address, length) = s.split_once('/')?;
    let length = length.as_bytes();
    // Go tries IPv4 first, then IPv6, over the whole address part.
    let (bytes, width) = match ipv4(address.as_bytes()) {
        Some(a) => (mapped(a), 32),
        None => (ipv6(address.as_bytes())?, 128),
    };
    let (len, used) = decimal(length)?;
    if used != length.len() || len > width {
        return None;
    }
    let len = u8::try_from(len).ok()?;
    if width == 32 {
        let network = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]])
            & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        return Some((IpAddr::V4(Ipv4Addr::from(network)), len));
    }
    let network =
        u128::from_be_bytes(bytes) & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    match from_16_bytes(network.to_be_bytes()) {
        // Still IPv4-mapped after masking, so the length is at least 96.
        v4 @ IpAddr::V4(_) => Some((v4, len - 96)),
        v6 => Some((v6, len)),
    }
}

/// `a.b.c.d`, each part decimal 0..=255 with any leading zeros; the whole
/// input must be used.
fn ipv4(mut s: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    for (i, octet) in out.iter_mut().enumerate() {
        if i > 0 {
            s = s.strip_prefix(b".")?;
        }
        let (n, used) = decimal(s)?;
        *octet = u8::try_from(n).ok()?;
        s = &s[used..];
    }
    s.is_empty().then_some(out)
}

/// RFC 4291 text: hex groups separated by ':', at most one `::`, an
/// optional IPv4 tail in the last 32 bits.
fn ipv6(mut s: &[u8]) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    // Where `::` stands, as a byte offset into `out`.
    let mut gap: Option<usize> = None;
    if let Some(rest) = s.strip_prefix(b"::") {
        gap = Some(0);
        s = rest;
        if s.is_empty() {
            return Some(out);
        }
    }
    let mut filled = 0;
    while filled < 16 {
        let (n, used) = hex(s)?;
        let group = u16::try_from(n).ok()?;
        if s.get(used) == Some(&b'.') {
            // An IPv4 tail: only in the last 32 bits unless `::` pads.
            if (gap.is_none() && filled != 12) || filled + 4 > 16 {
                return None;
            }
            out[filled..filled + 4].copy_from_slice(&ipv4(s)?);
            filled += 4;
            s = &[];
            break;
        }
        out[filled..filled + 2].copy_from_slice(&group.to_be_bytes());
        filled += 2;
        s = &s[used..];
        if s.is_empty() {
            break;
        }
        // A group is followed by ':' and more.
        if s[0] != b':' || s.len() == 1 {
            return None;
        }
        s = &s[1..];
        if s[0] == b':' {
            if gap.is_some() {
                return None;
            }
            gap = Some(filled);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return None;
    }
    match gap {
        // Too few groups and nothing to pad them with.
        None if filled < 16 => None,
        None => Some(out),
        // `::` must stand for at least one group.
        Some(_) if filled == 16 => None,
        Some(at) => {
            let shift = 16 - filled;
            out.copy_within(at..filled, at + shift);
            out[at..at + shift].fill(0);
            Some(out)
        }
    }
}

/// A run of decimal digits at the start of `s`: its value and length.
/// `None` without digits or when the value reaches [`BIG`].
fn decimal(s: &[u8]) -> Option<(u32, usize)> {
    digits(s, 10)
}

/// A run of hex digits at the start of `s`, as [`decimal`].
fn hex(s: &[u8]) -> Option<(u32, usize)> {
    digits(s, 16)
}

fn digits(s: &[u8], radix: u32) -> Option<(u32, usize)> {
    let mut n = 0u32;
    let mut used = 0;
    for &b in s {
        let Some(d) = char::from(b).to_digit(radix) else {
            break;
        };
        n = n * radix + d;
        if n >= BIG {
            return None;
        }
        used += 1;
    }
    (used > 0).then_some((n, used))
}

/// The IPv4-mapped form of an IPv4 address (`::ffff:a.b.c.d`).
fn mapped(a: [u8; 4]) -> [u8; 16] {
    Ipv4Addr::from(a).to_ipv6_mapped().octets()
}

/// 16 bytes as Go's `net.IP` presents them: IPv4 when IPv4-mapped.
fn from_16_bytes(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// k8s.io/utils `internal/third_party/forked/golang/net/ip_test.go`
    /// (`parseIPTests`) and `net/ips_test.go`, as cases.
    #[test]
    fn addresses_parse_as_parse_ip_sloppy_reads_them() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "a plain IPv4 address parses",
                "127.0.1.2",
                Some("127.0.1.2"),
            ),
            (
                "an IPv4 octet with leading zeros is decimal (issue 100895)",
                "127.001.002.003",
                Some("127.1.2.3"),
            ),
            (
                "octets 008 and 009 are decimal, not invalid octal",
                "127.007.008.009",
                Some("127.7.8.9"),
            ),
            (
                "octet 010 is ten, not octal eight",
                "127.010.020.030",
                Some("127.10.20.30"),
            ),
            (
                "the issue's example cluster IP reads as 172.30.0.71",
                "172.30.0.071",
                Some("172.30.0.71"),
            ),
            (
                "any number of leading zeros is one octet",
                "10.0.0.0000000001",
                Some("10.0.0.1"),
            ),
            (
                "an all-zero octet written 000 is zero",
                "123.000.000.000",
                Some("123.0.0.0"),
            ),
            (
                "an IPv4-mapped IPv6 address is the IPv4 address (Go's To4)",
                "::ffff:127.1.2.3",
                Some("127.1.2.3"),
            ),
            (
                "leading zeros in an IPv4 tail are decimal too",
                "::ffff:127.010.020.030",
                Some("127.10.20.30"),
            ),
            (
                "an IPv4-mapped address written in hex is IPv4",
                "::ffff:7f01:0203",
                Some("127.1.2.3"),
            ),
            (
                "a written-out IPv4-mapped prefix is IPv4",
                "0:0:0:0:0000:ffff:127.1.2.3",
                Some("127.1.2.3"),
            ),
            (
                "an IPv6 group of six hex digits is accepted while its value fits",
                "0:0:0:0:000000:ffff:127.1.2.3",
                Some("127.1.2.3"),
            ),
            (
                "a mapped prefix with :: inside is IPv4",
                "0:0:0:0::ffff:127.1.2.3",
                Some("127.1.2.3"),
            ),
            (
                "a compressed IPv6 address parses",
                "2001:4860:0:2001::68",
                Some("2001:4860:0:2001::68"),
            ),
            (
                "a written-out IPv6 address parses",
                "2001:4860:0000:2001:0000:0000:0000:0068",
                Some("2001:4860:0:2001::68"),
            ),
            (
                "an IPv4-compatible (not mapped) tail stays IPv6",
                "::1.2.3.4",
                Some("::102:304"),
            ),
            ("only :: is the unspecified IPv6 address", "::", Some("::")),
            ("a trailing :: pads the rest", "fd00::", Some("fd00::")),
            ("upper-case hex parses", "FD00::A", Some("fd00::a")),
            (
                "a sign before the first octet is rejected",
                "-0.0.0.0",
                None,
            ),
            ("a sign in the second octet is rejected", "0.-1.0.0", None),
            ("a sign in the third octet is rejected", "0.0.-2.0", None),
            ("a sign in the last octet is rejected", "0.0.0.-3", None),
            ("an octet above 255 is rejected", "127.0.0.256", None),
            ("leading zeros do not make 0256 fit", "10.0.0.0256", None),
            ("a word is rejected", "abc", None),
            (
                "a group with nothing after its colon is rejected",
                "123:",
                None,
            ),
            ("a zone is rejected", "fe80::1%lo0", None),
            ("a numeric zone is rejected", "fe80::1%911", None),
            ("an empty string is rejected", "", None),
            (
                "nine groups around :: are rejected (Go issue 6628)",
                "a1:a2:a3:a4::b1:b2:b3:b4",
                None,
            ),
            ("an empty octet is rejected", "1.2..4", None),
            ("three octets are rejected", "172.31.11", None),
            ("five octets are rejected", "1.2.3.4.5", None),
            (
                "an IPv6 address with a hostname part is rejected",
                "fd00::zz",
                None,
            ),
            ("a group above 16 bits is rejected", "fd00::10000", None),
            ("two :: are rejected", "1::2::3", None),
            (
                "a :: standing for no group is rejected",
                "1:2:3:4:5:6:7::8",
                None,
            ),
            (
                "seven groups without :: are rejected",
                "1:2:3:4:5:6:7",
                None,
            ),
            (
                "an IPv4 tail in the middle is rejected",
                "1:2:3:4:5:1.2.3.4:8",
                None,
            ),
            ("surrounding spaces are rejected", " 10.0.0.1", None),
            ("a host name is rejected", "lb.example.com", None),
            ("an address with a port is rejected", "10.0.0.1:80", None),
            ("a prefix is not an address", "10.0.0.0/8", None),
        ];
        for (name, input, want) in cases {
            let want = want.map(|w| w.parse::<IpAddr>().unwrap());
            assert_eq!(parse_ip_sloppy(input), want, "{name}: {input:?}");
        }
    }

    /// k8s.io/utils forked `parseCIDRTests` and `net/ips_test.go`, as cases.
    #[test]
    fn prefixes_parse_as_parse_cidr_sloppy_reads_them() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "an IPv4 host prefix parses",
                "135.104.0.1/32",
                Some("135.104.0.1/32"),
            ),
            (
                "host bits are cleared",
                "135.104.0.1/24",
                Some("135.104.0.0/24"),
            ),
            ("the zero prefix parses", "0.0.0.0/0", Some("0.0.0.0/0")),
            (
                "leading zeros in octets are decimal (issue 100895)",
                "127.000.000.001/32",
                Some("127.0.0.1/32"),
            ),
            (
                "octets 007, 008 and 009 are decimal",
                "127.007.008.009/32",
                Some("127.7.8.9/32"),
            ),
            (
                "octet 010 is ten",
                "172.030.010.000/24",
                Some("172.30.10.0/24"),
            ),
            (
                "leading zeros in the length are decimal",
                "10.0.0.0/08",
                Some("10.0.0.0/8"),
            ),
            ("an IPv6 host prefix parses", "::1/128", Some("::1/128")),
            (
                "an IPv6 prefix keeps its network",
                "abcd:2345::/65",
                Some("abcd:2345::/65"),
            ),
            (
                "IPv6 host bits are cleared",
                "abcd:2345::/24",
                Some("abcd:2300::/24"),
            ),
            (
                "upper-case IPv6 parses",
                "2001:DB8::1/48",
                Some("2001:db8::/48"),
            ),
            (
                "an IPv4-mapped network is the IPv4 prefix",
                "::ffff:10.1.2.3/104",
                Some("10.0.0.0/8"),
            ),
            (
                "a mapped address under a short length is an IPv6 prefix",
                "::ffff:10.1.2.3/64",
                Some("::/64"),
            ),
            (
                "a dotted mask is rejected",
                "192.168.1.1/255.255.255.0",
                None,
            ),
            (
                "an IPv4 length above 32 is rejected",
                "192.168.1.1/35",
                None,
            ),
            ("an IPv6 length above 128 is rejected", "fd00::/129", None),
            ("a negative length is rejected", "2001:db8::1/-1", None),
            ("a negative zero length is rejected", "2001:db8::1/-0", None),
            ("a plus sign in the length is rejected", "10.0.0.0/+8", None),
            ("an empty length is rejected", "10.0.0.0/", None),
            ("a sign in an octet is rejected", "0.-1.0.0/32", None),
            (
                "a length of zero with a sign is rejected",
                "0.0.0.0/-0",
                None,
            ),
            ("an address without a length is rejected", "192.0.2.1", None),
            ("a host name is rejected", "office.example/24", None),
            ("an empty string is rejected", "", None),
            ("a zone is rejected", "fe80::1%eth0/64", None),
            (
                "spaces are rejected (callers trim source ranges first)",
                " 10.0.0.0/8",
                None,
            ),
        ];
        for (name, input, want) in cases {
            let got = parse_cidr_sloppy(input).map(|(network, len)| format!("{network}/{len}"));
            assert_eq!(got.as_deref(), *want, "{name}: {input:?}");
        }
    }
}
