//! loadBalancerSourceRanges: a service port's `fw-…` chain and its
//! `firewall-ips` elements.

use super::*;

impl Builder<'_> {
    /// loadBalancerSourceRanges: new connections to the load-balancer IPs
    /// among `external` (the port's addresses it owns) from outside the
    /// ranges are dropped before DNAT, whether they arrive or the node
    /// makes them; node ports and external IPs are not filtered. Only the
    /// ranges of the table's family count: a service with IPv4 ranges
    /// only leaves its IPv6 traffic unfiltered (kube-proxy's proxier of
    /// each family sees only its family's ranges). When a range holds this
    /// node's primary address, the load-balancer IPs are allowed sources
    /// too (a VIP bound on the node answers the node from the VIP).
    pub(super) fn firewall(&mut self, sp: &ServicePortPlan, external: &[IpAddr], name: &str) {
        let family = self.family();
        let ranges: Vec<Cidr> = sp
            .load_balancer_source_ranges
            .iter()
            .copied()
            .filter(|c| family.contains(&c.addr()))
            .collect();
        let lbs: Vec<IpAddr> = external
            .iter()
            .filter(|ip| sp.load_balancer_ips.contains(ip))
            .copied()
            .collect();
        if ranges.is_empty() || lbs.is_empty() {
            return;
        }
        let from_node = self
            .node_ip
            .is_some_and(|ip| ranges.iter().any(|c| c.contains(&ip)));
        let mut allowed = ranges;
        if from_node {
            allowed.extend(lbs.iter().map(|ip| Cidr::host(*ip)));
        }
        let mut rules: Vec<Rule> = allowed
            .into_iter()
            .map(|c| rule(vec![Stmt::SaddrIn(c), Stmt::Verdict(Verdict::Return)]))
            .collect();
        rules.push(rule(vec![Stmt::Verdict(Verdict::Drop)]));
        self.add_chain(name.to_string(), rules);
        for ip in lbs {
            self.map(names::FIREWALL_IPS).insert(
                ElemKey::service(ip, sp.protocol, sp.port),
                ElemValue::Verdict(Verdict::Goto(name.to_string())),
            );
        }
    }
}
