//! Bad input from manifest files, through the whole pipeline (issue 9):
//! every case is a file with two good Services around the bad objects;
//! the bad objects are skipped with one error naming the object and the
//! field (or kept, when Kubernetes would keep them, with a planner
//! problem), the `nft` text stays one word per name and one line per
//! statement, the fake kernel accepts the ruleset, and both good
//! Services still DNAT to their endpoints.

use std::collections::BTreeSet;
use std::net::IpAddr;

use api_watch::{file::load_files, Protocol};
use nft_writer::{plan_ruleset, trace, FakeKernel, Family, Kernel, Outcome, Packet, Path};
use nft_writer::{PlannerConfig, Refusal, Transaction};
use topology_filter::ProblemKind;

const NODE: &str = "node-2";

/// The first good Service, before the bad objects.
const GOOD: &str = r#"apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {kubernetes.io/hostname: node-2}}
---
apiVersion: v1
kind: Service
metadata: {name: good, namespace: default}
spec: {clusterIP: 10.43.0.10, ports: [{port: 80, targetPort: 5000}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: good-1, namespace: default, labels: {kubernetes.io/service-name: good}}
addressType: IPv4
ports: [{name: "", port: 5000, protocol: TCP}]
endpoints: [{addresses: [10.42.187.66], nodeName: node-2}]
"#;

/// The second good Service, after the bad objects.
const AFTER: &str = r#"apiVersion: v1
kind: Service
metadata: {name: after, namespace: default}
spec: {clusterIP: 10.43.0.20, ports: [{port: 80, targetPort: 5000}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: after-1, namespace: default, labels: {kubernetes.io/service-name: after}}
addressType: IPv4
ports: [{name: "", port: 5000, protocol: TCP}]
endpoints: [{addresses: [10.42.187.67], nodeName: node-2}]
"#;

/// What a TCP connection to a bad Service's address:80 gets.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Nothing of nftopo's matches: the address is not proxied.
    NotProxied,
    /// Refused at once (TCP reset): the Service has no usable endpoint.
    Refused,
    /// DNATed to one of exactly these endpoints (port 5000).
    Dnat(&'static [&'static str]),
    /// DNATed to this many different endpoints.
    DnatCount(usize),
}

struct Case {
    name: &'static str,
    /// The bad documents (bytes: some are not UTF-8).
    bad: Vec<u8>,
    /// Errors expected, as (object, field).
    skipped: Vec<(String, &'static str)>,
    /// Planner problems expected.
    problems: Vec<ProblemKind>,
    /// What connections to the bad Services' addresses get.
    expect: Vec<(&'static str, Expect)>,
}

fn case(name: &'static str, bad: impl Into<Vec<u8>>) -> Case {
    Case {
        name,
        bad: bad.into(),
        skipped: Vec::new(),
        problems: Vec::new(),
        expect: Vec::new(),
    }
}

impl Case {
    fn skips(mut self, object: impl Into<String>, field: &'static str) -> Self {
        self.skipped.push((object.into(), field));
        self
    }
    fn problem(mut self, kind: ProblemKind) -> Self {
        self.problems.push(kind);
        self
    }
    fn expect(mut self, addr: &'static str, e: Expect) -> Self {
        self.expect.push((addr, e));
        self
    }
}

/// A Service `default/NAME` on `ip`:80 (target 5000) with extra spec and
/// metadata fields, and a slice of it with the given endpoint addresses.
fn service(name: &str, ip: &str, endpoints: &[&str]) -> String {
    let addresses: Vec<String> = endpoints
        .iter()
        .map(|a| format!("{{addresses: [\"{a}\"], nodeName: node-2}}"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{clusterIP: {ip}, ports: [{{port: 80, targetPort: 5000}}]}}\n---\n{}",
        slice(name, &format!("{name}-1"), &addresses.join(", "))
    )
}

fn slice(service: &str, name: &str, endpoints: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}, namespace: default, labels: {{kubernetes.io/service-name: {service}}}}}\n\
         addressType: IPv4\nports: [{{name: \"\", port: 5000, protocol: TCP}}]\nendpoints: [{endpoints}]\n"
    )
}

fn raw_service(metadata: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {metadata}\nspec: {spec}\n")
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let svc = |spec: &str| raw_service("{name: bad, namespace: default}", spec);
    let bad = "Service default/bad";
    let long_ns = "n".repeat(63);
    let long_a = format!("{}a", "s".repeat(62));
    let long_b = format!("{}b", "s".repeat(62));
    let long_service = |name: &str, ip: &str, endpoint: &str| {
        service(name, ip, &[endpoint])
            .replace("namespace: default", &format!("namespace: {long_ns}"))
    };
    let billion_laughs = {
        let mut s = String::from("apiVersion: v1\nkind: Service\nmetadata: {name: lol}\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        s
    };
    let huge = {
        // 100,000 endpoints in 100 slices of 1,000 (the API's limit).
        let mut s = raw_service(
            "{name: huge, namespace: default}",
            "{clusterIP: 10.43.1.60, ports: [{port: 80, targetPort: 5000}]}",
        );
        for n in 0..100 {
            let endpoints: Vec<String> = (0..1000)
                .map(|i| {
                    format!(
                        "{{addresses: [10.{}.{}.{}]}}",
                        100 + n / 50,
                        (n % 50) * 4 + i / 250,
                        i % 250 + 1
                    )
                })
                .collect();
            s.push_str("---\n");
            s.push_str(&slice("huge", &format!("huge-{n}"), &endpoints.join(", ")));
        }
        s
    };
    let many_ports = {
        let ports: Vec<String> = (1..=2000)
            .map(|p| format!("{{name: p{p}, port: {p}, targetPort: {p}}}"))
            .collect();
        let slice_ports: Vec<String> = (1..=2000)
            .map(|p| format!("{{name: p{p}, port: {p}, protocol: TCP}}"))
            .collect();
        format!(
            "{}---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: ports-1, namespace: default, labels: {{kubernetes.io/service-name: ports}}}}\n\
             addressType: IPv4\nports: [{}]\nendpoints: [{{addresses: [10.42.9.9]}}]\n",
            raw_service("{name: ports, namespace: default}", &format!("{{clusterIP: 10.43.1.61, ports: [{}]}}", ports.join(", "))),
            slice_ports.join(", ")
        )
    };
    let mut non_utf8 = service("bad", "10.43.1.70", &["10.42.1.1"])
        .replace(
            "namespace: default}\nspec",
            "namespace: default, annotations: {note: \"caf\u{e9}X\"}}\nspec",
        )
        .into_bytes();
    let at = non_utf8.windows(1).position(|w| w == b"X").unwrap();
    non_utf8[at] = 0xff;
    vec![
        case("an invalid cluster IP skips the service", svc("{clusterIP: 10.43.1.300, ports: [{port: 80}]}"))
            .skips(bad, "spec.clusterIP"),
        case("two IPv4 cluster IPs (mixed families) skip the service", format!("{}---\n{}", svc("{clusterIPs: [10.43.1.1, 10.43.1.2], ports: [{port: 80}]}"), slice("bad", "bad-1", "{addresses: [10.42.1.1]}")))
            .skips(bad, "spec.clusterIPs[1]")
            .expect("10.43.1.1", NotProxied),
        case("an IPv6 cluster IP listed as IPv4 skips the service", svc("{clusterIPs: ['fd00::1'], ipFamilies: [IPv4], ports: [{port: 80}]}"))
            .skips(bad, "spec.clusterIPs[0]"),
        case("port 0 skips the service", svc("{clusterIP: 10.43.1.3, ports: [{port: 0}]}"))
            .skips(bad, "spec.ports[0].port")
            .expect("10.43.1.3", NotProxied),
        case("port 65536 skips the service", svc("{clusterIP: 10.43.1.4, ports: [{port: 65536}]}"))
            .skips(bad, "spec.ports[0].port"),
        case("a target port above 65535 skips the service", svc("{clusterIP: 10.43.1.4, ports: [{port: 80, targetPort: 99999}]}"))
            .skips(bad, "spec.ports[0].targetPort"),
        case("an unknown protocol skips the service", svc("{clusterIP: 10.43.1.5, ports: [{port: 80, protocol: ICMP}]}"))
            .skips(bad, "spec.ports[0].protocol"),
        case("an unknown protocol skips the slice; its service refuses", format!("{}---\n{}", svc("{clusterIP: 10.43.1.6, ports: [{port: 80}]}"), slice("bad", "bad-1", "{addresses: [10.42.1.1]}").replace("protocol: TCP", "protocol: GRE")))
            .skips("EndpointSlice default/bad-1", "ports[0].protocol")
            .expect("10.43.1.6", Refused),
        // kube-proxy's endpointslicecache.go: "Ignoring invalid endpoint port".
        case("port 0 in a slice skips that port, not the slice", slice("good", "good-2", "{addresses: [10.42.1.1]}").replace("port: 5000", "port: 0")),
        case("duplicate endpoints are used once", service("dup", "10.43.1.7", &["10.42.1.1", "10.42.1.1", "10.42.1.2"]))
            .expect("10.43.1.7", Dnat(&["10.42.1.1", "10.42.1.2"])),
        case("a port written twice is served once", format!("{}---\n{}", svc("{clusterIP: 10.43.1.8, ports: [{port: 80, targetPort: 5000}, {port: 80, targetPort: 5000}]}"), slice("bad", "bad-1", "{addresses: [10.42.1.1]}")))
            .expect("10.43.1.8", Dnat(&["10.42.1.1"])),
        case("two port names on one port: the first serves, the second is a problem", format!("{}---\n{}", svc("{clusterIP: 10.43.1.9, ports: [{name: a, port: 80}, {name: b, port: 80}]}"), slice("bad", "bad-1", "{addresses: [10.42.1.1]}").replace("name: \"\"", "name: a")))
            .problem(ProblemKind::DuplicateServicePort)
            .expect("10.43.1.9", Dnat(&["10.42.1.1"])),
        case("a second service on a taken address and port is a problem", service("thief", "10.43.0.10", &["10.42.1.9"]))
            .problem(ProblemKind::DuplicateServicePort),
        case("a named port that no slice resolves refuses", format!("{}---\n{}", svc("{clusterIP: 10.43.1.10, ports: [{name: web, port: 80, targetPort: http}]}"), slice("bad", "bad-1", "{addresses: [10.42.1.1]}").replace("name: \"\"", "name: metrics")))
            .expect("10.43.1.10", Refused),
        case("an IPv6 address in an IPv4 slice skips the slice", service("bad", "10.43.1.11", &["10.42.1.1", "fd00::1"]))
            .skips("EndpointSlice default/bad-1", "endpoints[1].addresses[0]")
            .expect("10.43.1.11", Refused),
        case("an IPv6 slice of an IPv4 service adds nothing to it", format!("{}---\n{}", service("bad", "10.43.1.12", &["10.42.1.1"]), slice("bad", "bad-6", "{addresses: ['fd00::1']}").replace("IPv4", "IPv6")))
            .expect("10.43.1.12", Dnat(&["10.42.1.1"])),
        case("a slice without a service is ignored", slice("ghost", "ghost-1", "{addresses: [10.42.1.1]}")),
        case("a service without slices refuses", svc("{clusterIP: 10.43.1.13, ports: [{port: 80}]}"))
            .expect("10.43.1.13", Refused),
        case("a name with quotes, a newline and nft words skips the service", raw_service(r#"{name: "we b\"; flush ruleset;\n#", namespace: default}"#, "{clusterIP: 10.43.1.14, ports: [{port: 80}]}"))
            .skips(r#"Service default/we b\"; flush ruleset;\n#"#, "metadata.name"),
        case("a namespace with a brace skips the service", raw_service("{name: web, namespace: 'ns{x}'}", "{clusterIP: 10.43.1.15, ports: [{port: 80}]}"))
            .skips("Service ns{x}/web", "metadata.namespace"),
        case("a NUL in a name skips the service", raw_service("{name: \"a\\0b\"}", "{clusterIP: 10.43.1.16, ports: [{port: 80}]}"))
            .skips("Service default/a\\0b", "metadata.name"),
        case("a hostile port name skips the service", svc("{clusterIP: 10.43.1.17, ports: [{name: 'ht tp\"}', port: 80}]}"))
            .skips(bad, "spec.ports[0].name"),
        case("a hostile slice port name skips the slice", slice("good", "good-2", "{addresses: [10.42.1.1]}").replace("name: \"\"", "name: \"a;b\\n\""))
            .skips("EndpointSlice default/good-2", "ports[0].name"),
        case("a slice naming a service no Service can have is skipped", slice("x y", "xy-1", "{addresses: [10.42.1.1]}"))
            .skips("EndpointSlice default/xy-1", "metadata.labels[\"kubernetes.io/service-name\"]"),
        case("hostile annotation values change nothing", service("bad", "10.43.1.18", &["10.42.1.1"]).replace("namespace: default}\nspec", "namespace: default, annotations: {\"a\\\"b\": \"c\\n}; flush ruleset; #\", x: \"\\0\"}}\nspec"))
            .expect("10.43.1.18", Dnat(&["10.42.1.1"])),
        case("bytes that are not UTF-8 skip only their object", non_utf8)
            .skips(bad, "metadata.annotations.note"),
        case("a name longer than 63 characters skips the service", raw_service(&format!("{{name: {}}}", "s".repeat(64)), "{clusterIP: 10.43.1.19, ports: [{port: 80}]}"))
            .skips(format!("Service default/{}", "s".repeat(64)), "metadata.name"),
        case("the longest names stay two chains when they differ at the end", format!("{}---\n{}", long_service(&long_a, "10.43.1.20", "10.42.1.1"), long_service(&long_b, "10.43.1.21", "10.42.1.2")))
            .expect("10.43.1.20", Dnat(&["10.42.1.1"]))
            .expect("10.43.1.21", Dnat(&["10.42.1.2"])),
        case("invalid topology keys are ignored, with a problem", service("bad", "10.43.1.22", &["10.42.1.1"]).replace("namespace: default}\nspec", "namespace: default, annotations: {nftopo.io/topology-keys: 'bogus;;, \"*\"'}}\nspec"))
            .problem(ProblemKind::InvalidTopologyKeys)
            .expect("10.43.1.22", Dnat(&["10.42.1.1"])),
        case("topology keys that are not strings skip the service", svc("{clusterIP: 10.43.1.23, topologyKeys: [[a]], ports: [{port: 80}]}"))
            .skips(bad, "spec.topologyKeys[0]"),
        case("a billion laughs is one document error", billion_laughs)
            .skips("document", ""),
        case("flow collections nested 100,000 deep are one document error", format!("apiVersion: v1\nkind: Service\nmetadata: {{name: deep}}\nspec: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)))
            .skips("document", ""),
        case("mappings nested 1,000 deep in blocks are one document error", (0..1000).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect::<String>())
            .skips("document", ""),
        case("100,000 endpoints in one service are all used", huge)
            .expect("10.43.1.60", DnatCount(100_000)),
        case("2,000 ports in one service are all served", many_ports),
    ]
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `nft` accepts a name without quotes: a letter, `_` or `.`, then
/// letters, digits, `/`, `-`, `_` and `.`.
fn nft_word(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
}

#[test]
fn bad_objects_are_skipped_and_every_other_service_is_programmed() {
    let dir = std::env::temp_dir().join(format!("nft-writer-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = cases();
    for (i, case) in cases.iter().enumerate() {
        let path = dir.join(format!("case-{i}.yaml"));
        let mut text = format!("{GOOD}---\n").into_bytes();
        text.extend_from_slice(&case.bad);
        text.extend_from_slice(format!("\n---\n{AFTER}").as_bytes());
        std::fs::write(&path, &text).unwrap();
        check(case, &path);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!("{} bad-input cases", cases.len());
}

fn check(case: &Case, path: &std::path::Path) {
    let name = case.name;
    let (state, errors) = load_files(&[path]);
    let got: Vec<(String, &str)> = errors
        .iter()
        .map(|e| (e.object.clone(), e.field.as_str()))
        .collect();
    let want: Vec<(String, &str)> = case.skipped.iter().map(|(o, f)| (o.clone(), *f)).collect();
    assert_eq!(got, want, "{name}: {errors:#?}");
    for e in &errors {
        let line = e.to_string();
        assert!(
            !line.contains('\n') && line.len() < 600,
            "{name}: not one short line: {line:?}"
        );
    }

    let plan = topology_filter::plan(&state, NODE);
    let (ruleset, ruleset_problems) = plan_ruleset(&plan, &PlannerConfig::default());
    let kinds: Vec<ProblemKind> = plan
        .problems
        .iter()
        .chain(&ruleset_problems)
        .map(|p| p.kind)
        .collect();
    assert_eq!(
        kinds, case.problems,
        "{name}: {:#?} {ruleset_problems:#?}",
        plan.problems
    );

    let text = ruleset.to_string();
    for line in text.lines() {
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "{name}: {line:?}"
        );
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if matches!(pair[0], "chain" | "goto" | "jump" | "map" | "set") {
                let word = pair[1].trim_end_matches(',').trim_start_matches('@');
                assert!(nft_word(word), "{name}: {line:?}");
            }
        }
    }

    let mut kernel = FakeKernel::new();
    kernel
        .apply(&Transaction::replace(&ruleset))
        .unwrap_or_else(|e| panic!("{name}: the fake kernel refuses: {e}"));
    let table = kernel.table(Family::Ip, "nftopo").expect("table ip nftopo");
    let go = |dst: &str| -> BTreeSet<Outcome> {
        trace(
            table,
            &Packet {
                src: ip("10.42.187.70"),
                dst: ip(dst),
                proto: Protocol::Tcp,
                dport: 80,
                path: Path::Forwarded,
                iifname: String::new(),
                node_addrs: vec![ip("172.31.11.85")],
            },
        )
    };
    let dnat = |ips: &[&str]| -> BTreeSet<Outcome> {
        ips.iter()
            .map(|a| Outcome::Accepted {
                dnat: Some((ip(a), 5000)),
                masquerade: false,
            })
            .collect()
    };
    assert_eq!(
        go("10.43.0.10"),
        dnat(&["10.42.187.66"]),
        "{name}: the good service"
    );
    assert_eq!(
        go("10.43.0.20"),
        dnat(&["10.42.187.67"]),
        "{name}: the service after"
    );
    for (addr, expect) in &case.expect {
        let got = go(addr);
        match expect {
            Expect::NotProxied => assert_eq!(
                got,
                BTreeSet::from([Outcome::Accepted {
                    dnat: None,
                    masquerade: false
                }]),
                "{name}: {addr}"
            ),
            Expect::Refused => assert_eq!(
                got,
                BTreeSet::from([Outcome::Rejected(Refusal::TcpReset)]),
                "{name}: {addr}"
            ),
            Expect::Dnat(ips) => assert_eq!(got, dnat(ips), "{name}: {addr}"),
            Expect::DnatCount(n) => {
                assert_eq!(got.len(), *n, "{name}: {addr}");
                assert!(
                    got.iter()
                        .all(|o| matches!(o, Outcome::Accepted { dnat: Some(_), .. })),
                    "{name}: {addr}"
                );
            }
        }
    }
}
