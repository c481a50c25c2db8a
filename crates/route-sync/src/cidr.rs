//! An IP prefix (`10.42.54.128/26`, `fd00:42::/64`), parsed strictly.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A network prefix: the address with its host bits cleared, and the
/// prefix length. Ordered by family, address, then length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The network address (host bits are zero).
    pub addr: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub len: u8,
}

/// Why a CIDR string was refused (carried in [`crate::NodeProblem`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(pub String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a CIDR: {:?}", self.0)
    }
}

impl Cidr {
    /// Parses `ADDR/LEN`; the host bits are cleared (Calico's
    /// `projectcalico.org/IPv4Address` carries the host address, e.g.
    /// `172.31.11.157/20`: use [`Cidr::parse_host`] to keep it).
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let (addr, len) = Self::parse_host(s)?;
        Ok(Cidr {
            addr: mask(addr, len),
            len,
        })
    }

    /// Parses `ADDR/LEN` and returns the address as written with the length.
    pub fn parse_host(s: &str) -> Result<(IpAddr, u8), CidrError> {
        let bad = || CidrError(s.to_string());
        let (a, l) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr = IpAddr::from_str(a).map_err(|_| bad())?;
        if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let len: u8 = l.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(bad());
        }
        Ok((addr, len))
    }

    /// Whether `ip` lies inside this prefix (same family only).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }

    /// True for an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
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
mod tests {
    use super::*;

    #[test]
    fn parsing_clears_host_bits_and_refuses_junk() {
        assert_eq!(
            Cidr::parse("172.31.11.157/20").unwrap().to_string(),
            "172.31.0.0/20"
        );
        assert_eq!(
            Cidr::parse("fd00:42::1/64").unwrap().to_string(),
            "fd00:42::/64"
        );
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().len, 0);
        for bad in [
            "10.42.0.0",
            "10.42.0.0/33",
            "10.42.0/24",
            "x/8",
            "10.0.0.0/+8",
            "::/129",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn contains_respects_length_and_family() {
        let c = Cidr::parse("172.31.0.0/20").unwrap();
        assert!(c.contains("172.31.11.157".parse().unwrap()));
        assert!(!c.contains("172.31.16.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
    }
}
