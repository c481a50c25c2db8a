//! One service port's part of a table ([`Contribution`]): the elements
//! of a plain service port (in the plain sets and the endpoint maps), or
//! the chains of one that needs its own rules (`svc-`, `ext-`, `np-`,
//! `loc-`, `fw-`) with their verdict elements; session affinity, the
//! no-endpoint and firewall entries.

use super::*;

impl Builder<'_> {
    pub(super) fn family(&self) -> Family {
        self.family
    }

    pub(super) fn map(&mut self, name: &'static str) -> &mut BTreeMap<ElemKey, ElemValue> {
        self.out.elements.entry(name).or_default()
    }

    pub(super) fn add_chain(&mut self, name: String, rules: Vec<Rule>) {
        self.out
            .chains
            .insert(name.clone(), Chain::regular(name, rules));
    }

    /// Whether `sp` spreads over `n` endpoints plainly: without session
    /// affinity, inside the shared index space (up to 92,681 endpoints).
    /// Such an entry needs no rule of its own: `goto spread` (or
    /// `spread-port`) with its elements at the indices of N.
    fn spreads_plainly(sp: &ServicePortPlan, n: usize) -> bool {
        n > 0 && sp.session_affinity_timeout.is_none() && names::spread_offset(n).is_some()
    }

    /// The elements of the endpoint maps that spread over `eps` under
    /// `keys`, at the indices of N from `offset`, and the hairpin pairs.
    /// Returns whether a node-port key was among them.
    fn spread_elements(
        &mut self,
        sp: &ServicePortPlan,
        eps: &[&EndpointTarget],
        keys: &[Keyspace],
        offset: u32,
    ) -> bool {
        self.hairpin(eps);
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
        spread_port
    }

    /// A plain entry ([`Self::spreads_plainly`]): the elements under
    /// `keys` and the count whose `spread` / `spread-port` rule it uses.
    /// Returns that chain; the caller puts the entry's key in the plain
    /// set that sends it there, or a chain of its own goes there.
    fn plain_spread(
        &mut self,
        sp: &ServicePortPlan,
        eps: &[&EndpointTarget],
        keys: &[Keyspace],
    ) -> &'static str {
        let n = eps.len();
        let offset = names::spread_offset(n).expect("plain entries fit the index space");
        if self.spread_elements(sp, eps, keys, offset) {
            self.out.port_spreads.insert(n);
            names::SPREAD_PORT
        } else {
            self.out.spreads.insert(n);
            names::SPREAD
        }
    }

    /// Rules that DNAT into `eps` for an entry with a chain of its own:
    /// under session affinity, inline rules and the endpoints' client
    /// sets; past the shared index space, one spread rule of its own over
    /// indices 0..N; else `goto spread` (see [`Self::plain_spread`]).
    fn dnat_block(
        &mut self,
        sp: &ServicePortPlan,
        eps: &[&EndpointTarget],
        keys: &[Keyspace],
    ) -> Vec<Rule> {
        let n = eps.len();
        debug_assert!(n > 0);
        if sp.session_affinity_timeout.is_some() {
            // Affinity: rules of the service port's own.
            self.hairpin(eps);
            return self.inline_block(sp, eps);
        }
        if Self::spreads_plainly(sp, n) {
            let target = self.plain_spread(sp, eps, keys);
            return vec![rule(vec![goto(target)])];
        }
        // Past the shared index space (more than 92,681 endpoints), the
        // service port spreads with a rule of its own over indices 0..N:
        // only its chain looks its keys up, so they cannot meet another
        // count's. Such a port's endpoint count changes a rule again.
        let stmt = if self.spread_elements(sp, eps, keys, 0) {
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
        vec![rule(vec![stmt])]
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
    /// The set of addresses (or, with `node_port`, of node ports) whose
    /// rule in the filter chains does that.
    fn refusal(&self, sp: &ServicePortPlan, policy_local: bool, node_port: bool) -> &'static str {
        let has_any = match self.family() {
            Family::Ip => sp.has_any_ipv4_endpoints,
            Family::Ip6 => sp.has_any_ipv6_endpoints,
        };
        match (has_any && policy_local, node_port) {
            (true, false) => names::NO_ENDPOINT_DROP,
            (false, false) => names::NO_ENDPOINT_REJECT,
            (true, true) => names::NO_ENDPOINT_NODEPORTS_DROP,
            (false, true) => names::NO_ENDPOINT_NODEPORTS_REJECT,
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
                let set = self.refusal(sp, sp.internal_policy_local, false);
                self.map(set).insert(svc_key(*ip), ElemValue::Member);
                continue;
            }
            let eps: Vec<&EndpointTarget> = internal.iter().collect();
            if Self::spreads_plainly(sp, eps.len()) {
                // `services` marks for masquerade as every cluster IP
                // needs and sends it to `spread`: elements only.
                self.plain_spread(sp, &eps, &[Keyspace::Addr(*ip)]);
                self.map(names::PLAIN_CLUSTER_IPS)
                    .insert(svc_key(*ip), ElemValue::Member);
                continue;
            }
            let name = chain("svc");
            let mut rules = Vec::new();
            if self.cfg.masquerade_all {
                rules.push(rule(vec![Stmt::MarkSetBits(mark)]));
            } else if let Some(p) = &pods {
                rules.push(rule(vec![p.if_not_local(), Stmt::MarkSetBits(mark)]));
            }
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
            let set = self.refusal(sp, sp.external_policy_local, false);
            for ip in &external {
                self.map(set).insert(svc_key(*ip), ElemValue::Member);
            }
            if let Some(np) = node_port {
                let set = self.refusal(sp, sp.external_policy_local, true);
                self.map(set)
                    .insert(ElemKey::port(proto, np), ElemValue::Member);
            }
            return;
        }
        if !sp.external_policy_local && Self::spreads_plainly(sp, cluster_eps.len()) {
            // Marked for masquerade and sent to `spread` / `spread-port`
            // by `services`: elements only.
            if !external.is_empty() {
                let keys: Vec<Keyspace> = external.iter().map(|ip| Keyspace::Addr(*ip)).collect();
                self.plain_spread(sp, &cluster_eps, &keys);
                for ip in &external {
                    self.map(names::PLAIN_EXTERNAL_IPS)
                        .insert(svc_key(*ip), ElemValue::Member);
                }
            }
            if let Some(np) = node_port {
                self.plain_spread(sp, &cluster_eps, &[Keyspace::Port]);
                self.map(names::PLAIN_NODEPORTS)
                    .insert(ElemKey::port(proto, np), ElemValue::Member);
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
                    let np = node_port.expect("np entry only with a node port");
                    self.map(names::SERVICE_NODEPORTS)
                        .insert(ElemKey::port(proto, np), to_chain);
                }
            }
        }
    }
}
