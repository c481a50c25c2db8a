//! An in-memory [`RouteKernel`] for tests of the sync loop.

use crate::{Error, Interface, Route, RouteKernel, RouteOp, TunnelPlan};

const EEXIST: i32 = 17;
const ESRCH: i32 = 3;

/// A main table in memory, with the kernel's rules that matter here: an add
/// fails with `EEXIST` when any route (of any owner) holds the prefix, a
/// replace overwrites the route of that prefix, a delete removes the routes
/// of that prefix and protocol (`ESRCH` when there is none).
#[derive(Debug, Default, Clone)]
pub struct FakeRoutes {
    /// Every route, ours and foreign.
    pub routes: Vec<Route>,
    /// Operations applied successfully, in order.
    pub log: Vec<RouteOp>,
    /// What [`RouteKernel::interfaces`] answers.
    pub interfaces: Vec<Interface>,
    /// The tunnel device exists (or can be created): `ensure_tunnel`
    /// succeeds and records its MTU; when false it fails as on a kernel
    /// without ipip.
    pub tunnel_supported: bool,
    /// The MTU `ensure_tunnel` last set (`Some(None)`: brought up, MTU
    /// left alone).
    pub tunnel_mtu: Option<Option<u32>>,
}

impl RouteKernel for FakeRoutes {
    fn dump(&mut self, protocol: u8) -> Result<Vec<Route>, Error> {
        let mut out: Vec<Route> = self
            .routes
            .iter()
            .filter(|r| r.protocol == protocol)
            .cloned()
            .collect();
        out.sort();
        Ok(out)
    }

    fn apply(&mut self, op: &RouteOp) -> Result<(), Error> {
        let refuse = |errno| Error::Kernel {
            op: op.to_string(),
            errno,
            ext_ack: None,
        };
        match op {
            RouteOp::Add(r) => {
                if self.routes.iter().any(|h| h.dst == r.dst) {
                    return Err(refuse(EEXIST));
                }
                self.routes.push(r.clone());
            }
            RouteOp::Replace(r) => {
                self.routes.retain(|h| h.dst != r.dst);
                self.routes.push(r.clone());
            }
            RouteOp::Delete(r) => {
                let before = self.routes.len();
                self.routes
                    .retain(|h| !(h.dst == r.dst && h.protocol == r.protocol));
                if self.routes.len() == before {
                    return Err(refuse(ESRCH));
                }
            }
        }
        self.log.push(op.clone());
        Ok(())
    }

    fn interfaces(&mut self) -> Result<Vec<Interface>, Error> {
        Ok(self.interfaces.clone())
    }

    fn ensure_tunnel(&mut self, plan: &TunnelPlan, mtu: Option<u32>) -> Result<(), Error> {
        if !self.tunnel_supported {
            return Err(Error::NoIpipSupport(plan.device.clone()));
        }
        self.tunnel_mtu = Some(mtu);
        Ok(())
    }
}
