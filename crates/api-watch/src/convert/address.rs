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

use crate::Cidr;

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
pub(crate) fn parse_cidr_sloppy(s: &str) -> Option<Cidr> {
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
        return Cidr::new(IpAddr::V4(Ipv4Addr::from(network)), len);
    }
    let network =
        u128::from_be_bytes(bytes) & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    match from_16_bytes(network.to_be_bytes()) {
        // Still IPv4-mapped after masking, so the length is at least 96.
        v4 @ IpAddr::V4(_) => Cidr::new(v4, len - 96),
        v6 => Cidr::new(v6, len),
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
mod tests;
