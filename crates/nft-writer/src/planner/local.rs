//! Which traffic comes from pods (kube-proxy's `--detect-local-mode` and
//! its `LocalTrafficDetector`): traffic to a cluster IP that does not is
//! masqueraded, and external traffic to an externalTrafficPolicy Local
//! service that does uses every endpoint, as traffic to the cluster IP
//! would.

use super::*;

/// How the rules tell traffic from pods apart (kube-proxy's
/// `--detect-local-mode`, default `ClusterCIDR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectLocal {
    /// `ClusterCIDR`: sources inside `--cluster-cidr` (the first prefix of
    /// each family; /0 is ignored). A family without one detects nothing:
    /// no masquerade by source, no short-circuit.
    ClusterCidr(Vec<Cidr>),
    /// `NodeCIDR`: sources inside this node's `spec.podCIDRs` (the first
    /// of each family), read from the Node of the plan
    /// ([`ProxyPlan::node_pod_cidrs`]); a family the Node has none of
    /// detects nothing until it has one.
    NodeCidr,
    /// `BridgeInterface`: packets that arrive on this interface
    /// (`--pod-bridge-interface`, a whole name), both families.
    BridgeInterface(IfacePattern),
    /// `InterfaceNamePrefix`: packets that arrive on an interface whose
    /// name starts with this (`--pod-interface-name-prefix`, e.g. `cali`),
    /// both families.
    InterfaceNamePrefix(IfacePattern),
}

impl Default for DetectLocal {
    fn default() -> Self {
        DetectLocal::ClusterCidr(Vec::new())
    }
}

impl DetectLocal {
    /// kube-proxy's name of the mode.
    pub fn mode_name(&self) -> &'static str {
        match self {
            DetectLocal::ClusterCidr(_) => "ClusterCIDR",
            DetectLocal::NodeCidr => "NodeCIDR",
            DetectLocal::BridgeInterface(_) => "BridgeInterface",
            DetectLocal::InterfaceNamePrefix(_) => "InterfaceNamePrefix",
        }
    }

    /// The match for `family`, given this node's pod CIDRs (used by
    /// `NodeCIDR` only); `None` when nothing of the family counts as from
    /// pods.
    pub(crate) fn resolve(&self, family: Family, node_pod_cidrs: &[Cidr]) -> Option<PodMatch> {
        let first_of = |cidrs: &[Cidr]| {
            cidrs
                .iter()
                .copied()
                .find(|c| family.contains(&c.addr()) && c.prefix_len() > 0)
                .map(PodMatch::Source)
        };
        match self {
            DetectLocal::ClusterCidr(cidrs) => first_of(cidrs),
            DetectLocal::NodeCidr => first_of(node_pod_cidrs),
            DetectLocal::BridgeInterface(i) | DetectLocal::InterfaceNamePrefix(i) => {
                Some(PodMatch::Interface(i.clone()))
            }
        }
    }
}

/// The detection of one table's family, as a match (kube-proxy's
/// `IfLocalNFT` / `IfNotLocalNFT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PodMatch {
    /// `ip saddr CIDR`.
    Source(Cidr),
    /// `iifname NAME` / `iifname "PREFIX*"`.
    Interface(IfacePattern),
}

impl PodMatch {
    /// The match that holds for traffic from pods (kube-proxy's
    /// `IfLocalNFT`).
    pub(crate) fn if_local(&self) -> Stmt {
        match self {
            PodMatch::Source(c) => Stmt::SaddrIn(*c),
            PodMatch::Interface(i) => Stmt::IifnameIs(i.clone()),
        }
    }

    /// The match that holds for every other packet, the node's own
    /// included (`IfNotLocalNFT`).
    pub(crate) fn if_not_local(&self) -> Stmt {
        match self {
            PodMatch::Source(c) => Stmt::SaddrNotIn(*c),
            PodMatch::Interface(i) => Stmt::IifnameIsNot(i.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn each_mode_resolves_per_family_as_kube_proxys_get_local_detectors() {
        let v4 = cidr("10.42.0.0/16");
        let v6 = cidr("fd00:42::/48");
        let pod = [cidr("10.42.7.0/24"), cidr("10.42.8.0/24")];
        let cali = IfacePattern::prefix("cali").unwrap();
        let cbr0 = IfacePattern::exact("cbr0").unwrap();
        let cases: Vec<(&str, DetectLocal, [Option<PodMatch>; 2])> = vec![
            (
                "ClusterCIDR uses the cluster CIDR of each family",
                DetectLocal::ClusterCidr(vec![v4, v6]),
                [Some(PodMatch::Source(v4)), Some(PodMatch::Source(v6))],
            ),
            (
                "ClusterCIDR without a prefix of a family detects nothing of it",
                DetectLocal::ClusterCidr(vec![v4]),
                [Some(PodMatch::Source(v4)), None],
            ),
            (
                "ClusterCIDR ignores a /0 (every source would be a pod)",
                DetectLocal::ClusterCidr(vec![cidr("0.0.0.0/0")]),
                [None, None],
            ),
            (
                "NodeCIDR uses the node's first pod CIDR of the family",
                DetectLocal::NodeCidr,
                [Some(PodMatch::Source(pod[0])), None],
            ),
            (
                "BridgeInterface matches the bridge in both families",
                DetectLocal::BridgeInterface(cbr0.clone()),
                [
                    Some(PodMatch::Interface(cbr0.clone())),
                    Some(PodMatch::Interface(cbr0)),
                ],
            ),
            (
                "InterfaceNamePrefix matches the prefix in both families",
                DetectLocal::InterfaceNamePrefix(cali.clone()),
                [
                    Some(PodMatch::Interface(cali.clone())),
                    Some(PodMatch::Interface(cali)),
                ],
            ),
        ];
        for (name, mode, want) in cases {
            let got = [Family::Ip, Family::Ip6].map(|f| mode.resolve(f, &pod));
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(DetectLocal::NodeCidr.resolve(Family::Ip, &[]), None);
    }
}
