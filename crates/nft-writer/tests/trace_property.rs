//! The tracer on random planned states (issue 17, item 3), in `cargo
//! test`: seeded random clusters (ClusterIP, NodePort and LoadBalancer
//! Services, single and dual stack, TCP and UDP, external IPs, source
//! ranges, traffic policies, session affinity, topology keys, endpoints
//! ready or not on three nodes) planned with random settings, then the
//! checks of `trace_agree` (the fuzz target `trace` runs the same ones on
//! `arbitrary` states). `NFTOPO_TRACE_CASES` runs more.

mod trace_agree;

use api_watch::ClusterState;
use nft_writer::{plan_ruleset, Cidr, DetectLocal, PlannerConfig};

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-0, labels: {kubernetes.io/hostname: node-0, topology.kubernetes.io/zone: a}}
status: {addresses: [{type: InternalIP, address: 172.31.0.10}, {type: InternalIP, address: "fd00:31::10"}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {kubernetes.io/hostname: node-1, topology.kubernetes.io/zone: a}}
---
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {kubernetes.io/hostname: node-2, topology.kubernetes.io/zone: b}}
---
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: kubernetes}
spec: {cidrs: [10.43.0.0/16, "fd00:43::/112"]}
"#;

fn service(r: &mut Rng, i: u64) -> String {
    let kind = ["ClusterIP", "NodePort", "LoadBalancer"][r.below(3) as usize];
    let dual = r.chance(30);
    let ips = if dual {
        format!("clusterIPs: [10.43.0.{}, \"fd00:43::{}\"]\n  ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: RequireDualStack", i + 10, i + 10)
    } else {
        format!("clusterIPs: [10.43.0.{}]", i + 10)
    };
    let mut spec = format!("  type: {kind}\n  {ips}\n");
    let external = kind != "ClusterIP";
    if r.chance(30) {
        spec.push_str(&format!("  externalIPs: [198.51.100.{}]\n", i + 1));
    }
    if external && r.chance(40) {
        spec.push_str("  externalTrafficPolicy: Local\n");
    }
    if r.chance(25) {
        spec.push_str("  internalTrafficPolicy: Local\n");
    }
    if r.chance(30) {
        let t = 10 + r.below(100);
        spec.push_str(&format!(
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: {t}}}}}\n"
        ));
    }
    if kind == "LoadBalancer" && r.chance(40) {
        spec.push_str("  loadBalancerSourceRanges: [172.31.0.0/25, \"fd00:31::/120\"]\n");
    }
    if r.chance(20) {
        spec.push_str("  topologyKeys: [kubernetes.io/hostname, \"*\"]\n");
    }
    spec.push_str("  ports:\n");
    for j in 0..1 + r.below(2) {
        let proto = if r.chance(30) { "UDP" } else { "TCP" };
        let np = if external {
            format!(", nodePort: {}", 30000 + i * 10 + j)
        } else {
            String::new()
        };
        spec.push_str(&format!(
            "  - {{name: p{j}, port: {}, protocol: {proto}, targetPort: 5000{np}}}\n",
            80 + j
        ));
    }
    let status = if kind == "LoadBalancer" {
        format!(
            "status: {{loadBalancer: {{ingress: [{{ip: 203.0.113.{}}}]}}}}\n",
            i + 1
        )
    } else {
        String::new()
    };
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\nspec:\n{spec}{status}"
    );
    for (family, v6) in [("IPv4", false), ("IPv6", true)] {
        if v6 && !dual {
            continue;
        }
        out.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-{}, namespace: default, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: {family}\nports: [{{name: p0, port: 5000}}, {{name: p1, port: 5001}}, {{name: p0, port: 5000, protocol: UDP}}, {{name: p1, port: 5001, protocol: UDP}}]\nendpoints:\n",
            family.to_lowercase()
        ));
        let n = r.below(5);
        if n == 0 {
            out.push_str("  []\n");
        }
        for k in 0..n {
            let node = r.below(3);
            let addr = if v6 {
                format!("\"fd00:42:0:{node}::{}\"", i * 8 + k + 1)
            } else {
                format!("10.42.{node}.{}", i * 8 + k + 1)
            };
            let ready = r.chance(85);
            out.push_str(&format!(
                "- {{addresses: [{addr}], conditions: {{ready: {ready}}}, nodeName: node-{node}}}\n"
            ));
        }
    }
    out
}

fn state(r: &mut Rng) -> ClusterState {
    let mut st = ClusterState::default();
    let errors = api_watch::file::load_str("nodes", NODES, &mut st);
    assert!(errors.is_empty(), "{errors:?}");
    for i in 0..1 + r.below(5) {
        let text = service(r, i);
        let errors = api_watch::file::load_str(&format!("s{i}"), &text, &mut st);
        assert!(errors.is_empty(), "{errors:?}\n{text}");
    }
    st
}

fn config(r: &mut Rng) -> PlannerConfig {
    let cidrs = ["10.42.0.0/16", "fd00:42::/48"]
        .iter()
        .filter_map(|c| Cidr::parse(c).ok())
        .collect();
    PlannerConfig {
        detect_local: if r.chance(70) {
            DetectLocal::ClusterCidr(cidrs)
        } else {
            DetectLocal::default()
        },
        masquerade_all: r.chance(20),
        ..PlannerConfig::default()
    }
}

#[test]
fn explain_over_the_read_back_agrees_with_trace_over_the_plan_on_random_states() {
    let cases: u64 = std::env::var("NFTOPO_TRACE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let (mut packets, mut pinned) = (0, 0);
    for seed in 1..=cases {
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let st = state(&mut r);
        let cfg = config(&mut r);
        let plan = topology_filter::plan(&st, "node-0");
        let (rs, _) = plan_ruleset(&plan, &cfg);
        match trace_agree::check_trace(&rs) {
            Ok((n, p)) => {
                packets += n;
                pinned += p;
            }
            Err(e) => panic!("seed {seed}: {e}\n{rs}"),
        }
    }
    // Not size assertions: the generator must reach the tracer, and a
    // pinned client its affinity set, at all.
    assert!(
        packets > 0 && pinned > 0,
        "{packets} packets, {pinned} pinned"
    );
    eprintln!("{cases} random states, {packets} packets traced, {pinned} by pinned clients");
}
