//! One service port's part of a table ([`Contribution`]): its chains
//! (`svc-`, `ext-`, `np-`, `loc-`, `fw-`), its verdict and endpoint
//! elements, session affinity, the no-endpoint and firewall entries.

use super::*;

impl Builder<'_> {
    fn family(&self) -> Family {
        self.family
    }

    fn map(&mut self, name: &'static str) -> &mut BTreeMap<ElemKey, ElemValue> {
        self.out.elements.entry(name).or_default()
    }

    fn add_chain(&mut self, name: String, rules: Vec<Rule>) {
        self.out
            .chains
            .insert(name.clone(), Chain::regular(name, rules));
    }

    /// Rules that DNAT into `eps`. Without affinity: `goto spread` and
    /// the elements under `keys`, at the indices of N endpoints; with
    /// affinity: inline rules and the endpoints' client sets.
    fn dnat_block(
        &mut self,
        sp: &ServicePortPlan,
        eps: &[&EndpointTarget],
        keys: &[Keyspace],
    ) -> Vec<Rule> {
        let n = eps.len();
        debug_assert!(n > 0);
        self.hairpin(eps);
        if sp.session_affinity_timeout.is_some() {
            // Affinity: rules of the service port's own.
            return self.inline_block(sp, eps);
        }
        // Past the shared index space (more than 92,681 endpoints), the
        // service port spreads with a rule of its own over indices 0..N:
        // only its chain looks its keys up, so they cannot meet another
        // count's. Such a port's endpoint count changes a rule again.
        let (offset, own_rule) = match names::spread_offset(n) {
            Some(o) => (o, false),
            None => (0, true),
        };
        let mut spread_port = false;
        for key in keys {
            for (i, ep) in eps.iter().enumerate() {
                let (map, k) = match *key {
                    Keyspace::Addr(addr) => (
                        names::SERVICE_ENDPOINTS,
                        ElemKey::Service {
                            addr,
                            proto: sp.protocol,
                            port: sp.port,
                            index: Some(offset + i as u32),
                        },
                    ),
                    Keyspace::Port => {
                        spread_port = true;
                        (
                            names::NODEPORT_ENDPOINTS,
                            ElemKey::Port {
                                proto: sp.protocol,
                                port: sp.node_port.expect("node port keys only with a node port"),
                                index: Some(offset + i as u32),
                            },
                        )
                    }
                };
                self.map(map).insert(k, ElemValue::Dnat(ep.ip, ep.port));
            }
        }
        if own_rule {
            let stmt = if spread_port {
                Stmt::DnatSpreadPort {
                    modulus: n as u32,
                    offset: 0,
                    map: names::NODEPORT_ENDPOINTS.into(),
                }
            } else {
                Stmt::DnatSpread {
                    modulus: n as u32,
                    offset: 0,
                    map: names::SERVICE_ENDPOINTS.into(),
                }
            };
            return vec![rule(vec![stmt])];
        }
        // The goto does not depend on N: an endpoint added or removed
        // changes elements only (no rule, no validation of the table).
        if spread_port {
            self.out.port_spreads.insert(n);
            vec![rule(vec![goto(names::SPREAD_PORT)])]
        } else {
            self.out.spreads.insert(n);
            vec![rule(vec![goto(names::SPREAD)])]
        }
    }

    /// Inline DNAT to `eps` (small sets): under session affinity the
    /// returning clients of each endpoint first, then endpoint i with
    /// probability 1/(N-i). An endpoint's client set is named from the
    /// service port and the endpoint ([`names::affinity_set`]), so every
    /// chain of `sp` that leads to the endpoint shares it.
    fn inline_block(&mut self, sp: &ServicePortPlan, eps: &[&EndpointTarget]) -> Vec<Rule> {
        let n = eps.len();
        let proto = sp.protocol;
        let sets: Vec<Option<String>> = eps
            .iter()
            .map(|ep| {
                sp.session_affinity_timeout.map(|timeout| {
                    let name = names::affinity_set(
                        &sp.service,
                        &sp.port_name,
                        proto,
                        sp.port,
                        (ep.ip, ep.port),
                        timeout,
                    );
                    self.out.sets.insert(
                        name.clone(),
                        Map::new(&name, MapKind::AffinitySet { timeout }),
                    );
                    name
                })
            })
            .collect();
        let dnat = |i: usize| {
            let mut v = Vec::new();
            if let Some(set) = &sets[i] {
                v.push(Stmt::UpdateSaddr { set: set.clone() });
            }
            v.push(Stmt::L4ProtoIs(proto));
            v.push(Stmt::DnatTo(eps[i].ip, eps[i].port));
            v
        };
        let mut rules = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            if let Some(set) = set {
                let mut r = vec![Stmt::SaddrInSet { set: set.clone() }];
                r.extend(dnat(i));
                rules.push(rule(r));
            }
        }
        for i in 0..n {
            let mut r = Vec::new();
            if i + 1 < n {
                r.push(Stmt::NumgenIs {
                    modulus: (n - i) as u32,
                    value: 0,
                });
            }
            r.extend(dnat(i));
            rules.push(rule(r));
        }
        rules
    }

    /// An endpoint may reach itself through its service: its (endpoint,
    /// endpoint) pair is masqueraded in postrouting, so that the answer
    /// comes back through this node's conntrack. Every endpoint, whatever
    /// node its slice names or whether it names one (kube-proxy marks
    /// `ip saddr <endpoint>` in every endpoint chain).
    fn hairpin(&mut self, eps: &[&EndpointTarget]) {
        for ep in eps {
            self.map(names::HAIRPIN)
                .insert(ElemKey::Pair(ep.ip, ep.ip), ElemValue::Member);
        }
    }

    /// What refuses traffic to an entry without usable endpoints: `drop`
    /// when the service port has endpoints of the table's family but the
    /// traffic policy allows none here, else the reject chain (each of
    /// kube-proxy's per-family proxiers sees its family's endpoints only).
    fn refusal(&self, sp: &ServicePortPlan, policy_local: bool) -> ElemValue {
        let has_any = match self.family() {
            Family::Ip => sp.has_any_ipv4_endpoints,
            Family::Ip6 => sp.has_any_ipv6_endpoints,
        };
        if has_any && policy_local {
            ElemValue::Verdict(Verdict::Drop)
        } else {
            ElemValue::Verdict(Verdict::Goto(names::REJECT_CHAIN.into()))
        }
    }

    pub(super) fn service_port(
        &mut self,
        sp: &ServicePortPlan,
        addrs: &[IpAddr],
        node_port: Option<u16>,
    ) {
        let family = self.family();
        let of_family = |eps: &[EndpointTarget]| -> Vec<EndpointTarget> {
            eps.iter()
                .filter(|e| family.contains(&e.ip))
                .cloned()
                .collect()
        };
        let internal = of_family(sp.endpoints());
        let cluster = of_family(&sp.cluster_endpoints);
        let local = of_family(&sp.local_endpoints);
        let chain =
            |kind: &str| names::port_chain(kind, &sp.service, &sp.port_name, sp.protocol, sp.port);
        let mark = self.cfg.mark();
        let pods = self.pods.cloned();
        let proto = sp.protocol;
        let svc_key = |addr: IpAddr| ElemKey::service(addr, proto, sp.port);

        // Every cluster IP of the family is active, whichever service port
        // owns which of its ports.
        for ip in sp.cluster_ips.iter().filter(|ip| family.contains(ip)) {
            self.map(names::CLUSTER_IPS)
                .insert(ElemKey::Addr(*ip), ElemValue::Member);
        }

        // Cluster IPs: the internal set.
        for ip in addrs.iter().filter(|ip| sp.cluster_ips.contains(ip)) {
            if internal.is_empty() {
                let v = self.refusal(sp, sp.internal_policy_local);
                self.map(names::NO_ENDPOINT_SERVICES)
                    .insert(svc_key(*ip), v);
                continue;
            }
            let name = chain("svc");
            let mut rules = Vec::new();
            if self.cfg.masquerade_all {
                rules.push(rule(vec![Stmt::MarkSetBits(mark)]));
            } else if let Some(p) = &pods {
                rules.push(rule(vec![p.if_not_local(), Stmt::MarkSetBits(mark)]));
            }
            let eps: Vec<&EndpointTarget> = internal.iter().collect();
            rules.extend(self.dnat_block(sp, &eps, &[Keyspace::Addr(*ip)]));
            self.add_chain(name.clone(), rules);
            self.map(names::SERVICE_IPS)
                .insert(svc_key(*ip), ElemValue::Verdict(Verdict::Goto(name)));
        }

        // External entries: external IPs, load-balancer IPs, the node port.
        let external: Vec<IpAddr> = addrs
            .iter()
            .filter(|ip| !sp.cluster_ips.contains(ip))
            .copied()
            .collect();
        // Source ranges hold with or without endpoints: a blocked client
        // is dropped, never refused.
        self.firewall(sp, &external, &chain("fw"));
        if external.is_empty() && node_port.is_none() {
            return;
        }
        let cluster_eps: Vec<&EndpointTarget> = cluster.iter().collect();
        let local_eps: Vec<&EndpointTarget> = local.iter().collect();
        let usable = if sp.external_policy_local {
            !local_eps.is_empty() || !cluster_eps.is_empty()
        } else {
            !cluster_eps.is_empty()
        };
        if !usable {
            let v = self.refusal(sp, sp.external_policy_local);
            for ip in &external {
                self.map(names::NO_ENDPOINT_SERVICES)
                    .insert(svc_key(*ip), v.clone());
            }
            if let Some(np) = node_port {
                let k = ElemKey::Port {
                    proto,
                    port: np,
                    index: None,
                };
                self.map(names::NO_ENDPOINT_NODEPORTS).insert(k, v);
            }
            return;
        }
        let addr_keys: Vec<Keyspace> = external.iter().map(|ip| Keyspace::Addr(*ip)).collect();
        // (entry chain kind, cluster chain kind, keys) for addresses and the node port.
        let mut entries: Vec<(&str, &str, Vec<Keyspace>)> = Vec::new();
        if !external.is_empty() {
            entries.push(("ext", "clu", addr_keys));
        }
        if node_port.is_some() {
            entries.push(("np", "clunp", vec![Keyspace::Port]));
        }
        // The local endpoints, shared by both entries (eTP Local only).
        let local_chain = chain("loc");
        if sp.external_policy_local {
            let rules = if local_eps.is_empty() {
                vec![rule(vec![Stmt::Verdict(Verdict::Drop)])]
            } else {
                self.hairpin(&local_eps);
                self.inline_block(sp, &local_eps)
            };
            self.add_chain(local_chain.clone(), rules);
        }
        for (kind, cluster_kind, keys) in entries {
            let name = chain(kind);
            let mut rules = Vec::new();
            if sp.external_policy_local {
                // Short-circuit: pods and the node itself use every endpoint,
                // like traffic to the cluster IP (kube-proxy does the same).
                if !cluster_eps.is_empty() {
                    let cname = chain(cluster_kind);
                    let block = self.dnat_block(sp, &cluster_eps, &keys);
                    self.add_chain(cname.clone(), block);
                    if let Some(p) = &pods {
                        rules.push(rule(vec![p.if_local(), goto(&cname)]));
                    }
                    rules.push(rule(vec![
                        Stmt::FibSaddrLocal,
                        Stmt::MarkSetBits(mark),
                        goto(&cname),
                    ]));
                }
                rules.push(rule(vec![goto(&local_chain)]));
            } else {
                rules.push(rule(vec![Stmt::MarkSetBits(mark)]));
                rules.extend(self.dnat_block(sp, &cluster_eps, &keys));
            }
            self.add_chain(name.clone(), rules);
            let to_chain = ElemValue::Verdict(Verdict::Goto(name));
            match kind {
                "ext" => {
                    for ip in &external {
                        self.map(names::SERVICE_IPS)
                            .insert(svc_key(*ip), to_chain.clone());
                    }
                }
                _ => {
                    let k = ElemKey::Port {
                        proto,
                        port: node_port.expect("np entry only with a node port"),
                        index: None,
                    };
                    self.map(names::SERVICE_NODEPORTS).insert(k, to_chain);
                }
            }
        }
    }

    /// loadBalancerSourceRanges: new connections to the load-balancer IPs
    /// among `external` (the port's addresses it owns) from outside the
    /// ranges are dropped before DNAT, whether they arrive or the node
    /// makes them; node ports and external IPs are not filtered. Only the
    /// ranges of the table's family count: a service with IPv4 ranges
    /// only leaves its IPv6 traffic unfiltered (kube-proxy's proxier of
    /// each family sees only its family's ranges). When a range holds this
    /// node's primary address, the load-balancer IPs are allowed sources
    /// too (a VIP bound on the node answers the node from the VIP).
    fn firewall(&mut self, sp: &ServicePortPlan, external: &[IpAddr], name: &str) {
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
