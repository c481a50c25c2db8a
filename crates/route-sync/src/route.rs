//! Routes as plain values, printed the way `ip route` prints them.

use std::fmt;
use std::net::IpAddr;

use crate::Cidr;

/// One route in the main table, as route-sync plans it or reads it back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// Destination prefix.
    pub dst: Cidr,
    /// What the route does.
    pub kind: RouteKind,
    /// Route protocol number (`proto` in `ip route`; 12 is `bird`).
    pub protocol: u8,
}

/// The shapes of route route-sync writes, and a catch-all for anything else
/// the kernel reports with our protocol (so that it can be replaced).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    /// `via GATEWAY [dev DEV] [onlink]`. A planned route with `dev: None`
    /// lets the kernel choose the device that reaches the gateway.
    Via {
        /// Next hop.
        gateway: IpAddr,
        /// Output device, when fixed.
        dev: Option<String>,
        /// `onlink`: the gateway is taken as reachable on `dev` without a
        /// covering connected route (how IPIP routes over `tunl0` work).
        onlink: bool,
    },
    /// `blackhole`: drop (this node's own pod blocks).
    Blackhole,
    /// Any other shape read from the kernel (multipath, unreachable, no
    /// gateway, …), kept as text for logs; never planned.
    Other(String),
}

impl Route {
    /// Whether `current` (read from the kernel, with its device name filled
    /// in) already is this planned route. A planned route without a device
    /// accepts whichever device the kernel chose.
    pub fn satisfied_by(&self, current: &Route) -> bool {
        if self.dst != current.dst || self.protocol != current.protocol {
            return false;
        }
        match (&self.kind, &current.kind) {
            (
                RouteKind::Via {
                    gateway: g1,
                    dev: d1,
                    onlink: o1,
                },
                RouteKind::Via {
                    gateway: g2,
                    dev: d2,
                    onlink: o2,
                },
            ) => g1 == g2 && o1 == o2 && (d1.is_none() || d1 == d2),
            (RouteKind::Blackhole, RouteKind::Blackhole) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Route {
    /// `ip route` syntax, e.g.
    /// `10.42.54.128/26 via 172.31.11.157 dev tunl0 proto 12 onlink`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RouteKind::Via {
                gateway,
                dev,
                onlink,
            } => {
                write!(f, "{} via {gateway}", self.dst)?;
                if let Some(dev) = dev {
                    write!(f, " dev {dev}")?;
                }
                write!(f, " proto {}", self.protocol)?;
                if *onlink {
                    write!(f, " onlink")?;
                }
                Ok(())
            }
            RouteKind::Blackhole => write!(f, "blackhole {} proto {}", self.dst, self.protocol),
            RouteKind::Other(text) => write!(f, "{} {text} proto {}", self.dst, self.protocol),
        }
    }
}

/// One change to the kernel's routes, as [`crate::reconcile`] orders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp {
    /// `ip route add ROUTE` (fails if any route holds the key: a foreign
    /// route is never overwritten).
    Add(Route),
    /// `ip route replace ROUTE` over our own route with the same prefix.
    Replace(Route),
    /// `ip route del ROUTE` of one of our routes (matched by prefix and
    /// protocol).
    Delete(Route),
}

impl RouteOp {
    /// The route the operation is about.
    pub fn route(&self) -> &Route {
        match self {
            RouteOp::Add(r) | RouteOp::Replace(r) | RouteOp::Delete(r) => r,
        }
    }
}

impl fmt::Display for RouteOp {
    /// `ip route` command syntax, e.g. `route del blackhole 10.42.0.0/26 proto 12`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteOp::Add(r) => write!(f, "route add {r}"),
            RouteOp::Replace(r) => write!(f, "route replace {r}"),
            RouteOp::Delete(r) => write!(f, "route del {r}"),
        }
    }
}
