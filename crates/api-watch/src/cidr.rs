//! [`Cidr`]: an IP prefix (`10.42.0.0/16`, `fd00:43::/112`), the one type
//! every crate of nftopo uses for prefixes. A value is always a network:
//! its host bits are zero and its length fits its family, whichever way
//! it was made.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A network prefix: the address with its host bits cleared, and the
/// prefix length. Ordered by family (IPv4 first), address, then length.
/// Prints as `ADDR/LEN`; serializes as that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a text was refused as a prefix: it holds the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a CIDR: {0:?}")]
pub struct CidrError(pub String);

impl Cidr {
    /// The prefix of `len` bits that holds `addr` (host bits cleared);
    /// `None` when `len` is beyond the family's width.
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        (len <= width(&addr)).then(|| Cidr {
            addr: mask(addr, len),
            len,
        })
    }

    /// The prefix holding `addr` alone (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr {
            addr,
            len: width(&addr),
        }
    }

    /// Parses `ADDR/LEN` strictly: Rust's address syntax, a length of
    /// decimal digits only, no spaces; the host bits are cleared
    /// (`172.31.11.157/20` is `172.31.0.0/20`).
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let (addr, cidr) = Self::parse_host(s)?;
        debug_assert!(cidr.contains(&addr));
        Ok(cidr)
    }

    /// Parses `ADDR/LEN` as [`Cidr::parse`] does and also returns the
    /// address as written (Calico's `projectcalico.org/IPv4Address`
    /// annotation carries the node's address with its subnet length:
    /// `172.31.11.157/20`).
    pub fn parse_host(s: &str) -> Result<(IpAddr, Cidr), CidrError> {
        let bad = || CidrError(s.to_string());
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr = IpAddr::from_str(a).map_err(|_| bad())?;
        if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let len: u8 = l.parse().map_err(|_| bad())?;
        let cidr = Cidr::new(addr, len).ok_or_else(bad)?;
        Ok((addr, cidr))
    }

    /// Parses a prefix as kube-proxy reads one from an API object
    /// (`netutils.ParseCIDRSloppy`: IPv4 octets with leading zeros are
    /// decimal, an IPv4-mapped network is the IPv4 prefix it stands for;
    /// see `convert/address.rs`); the host bits are cleared. `None` when
    /// upstream rejects it too.
    pub fn parse_sloppy(s: &str) -> Option<Cidr> {
        crate::convert::parse_cidr_sloppy(s)
    }

    /// The network address (host bits are zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether the prefix holds one address only (`/32`, `/128`).
    pub fn is_host(&self) -> bool {
        self.len == width(&self.addr)
    }

    /// True for an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `ip` lies inside this prefix (same family only).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(*ip, self.len) == self.addr
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The family's width in bits.
fn width(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// `ip` with all but its first `len` bits cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

#[cfg(test)]
mod tests;
