//! The rulesets nftopo is compared with, generated from the services of
//! an `nftopo render` output: kube-proxy's nftables layout, kube-proxy's
//! iptables layout, and the layouts considered for nftopo itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `"service IP . proto . port"` -> endpoints as `"ip:port"`, in
/// endpoint-index order.
pub type Services = BTreeMap<String, Vec<String>>;

/// kube-proxy's nftables layout for the services in `render`'s output:
/// per service a chain that marks off-cluster traffic and spreads with an
/// anonymous `numgen random mod N vmap { … }`, per endpoint a chain with
/// the hairpin mark and the DNAT, and the `service-ips` map.
pub fn kube_proxy_layout(render: &str, cluster_cidr: &str) -> String {
    kube_proxy_body(&parse_services(render), cluster_cidr)
}

/// Reads `service . proto . port -> [ip:port]` from the `service-endpoints`
/// elements of `nftopo render` output ("10.43.0.1 . tcp . 80 . 3 :
/// 10.42.0.7 . 8080,").
pub fn parse_services(render: &str) -> Services {
    let mut services: Services = Default::default();
    for line in render.lines() {
        let l = line.trim().trim_end_matches(',');
        let parts: Vec<&str> = l.split(" : ").collect();
        if parts.len() != 2 {
            continue;
        }
        let key: Vec<&str> = parts[0].split(" . ").collect();
        let val: Vec<&str> = parts[1].split(" . ").collect();
        if key.len() == 4 && val.len() == 2 && key[0].parse::<std::net::IpAddr>().is_ok() {
            services
                .entry(format!("{} . {} . {}", key[0], key[1], key[2]))
                .or_default()
                .push(format!("{}:{}", val[0], val[1]));
        }
    }
    services
}

/// The layouts we measured before choosing ours, for the same services:
/// what each costs the kernel is why nftopo's layout looks as it does.
pub fn candidate_layout(render: &str, which: &str) -> String {
    let services = parse_services(render);
    let mut out = String::from(
        "table ip cand {\n\tchain pre {\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\tjump services\n\t}\n\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t}\n\tchain services {\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\t}\n",
    );
    if which == "shared" {
        out.push_str("\tmap eps {\n\t\ttypeof ip daddr . meta l4proto . th dport . numgen random mod 1 : verdict\n\t}\n");
    }
    let mut svc_elems = Vec::new();
    let mut ep_elems = Vec::new();
    let mut spreads = std::collections::BTreeSet::new();
    for (i, (key, eps)) in services.iter().enumerate() {
        let n = eps.len();
        for (j, ep) in eps.iter().enumerate() {
            let (ip, port) = ep.split_once(':').unwrap();
            let _ = writeln!(
                out,
                "\tchain ep-{i}-{j} {{\n\t\tmeta l4proto tcp dnat to {ip}:{port}\n\t}}"
            );
        }
        let body = match which {
            "per-service-maps" => {
                let elems: Vec<String> = (0..n).map(|j| format!("{j} : goto ep-{i}-{j}")).collect();
                let _ = writeln!(
                    out,
                    "\tmap m{i} {{\n\t\ttypeof numgen random mod 1 : verdict\n\t\telements = {{ {} }}\n\t}}",
                    elems.join(", ")
                );
                format!("numgen random mod {n} vmap @m{i}")
            }
            "shared" => {
                spreads.insert(n);
                for j in 0..n {
                    ep_elems.push(format!("{key} . {j} : goto ep-{i}-{j}"));
                }
                format!("goto spread-{n}")
            }
            _ => (0..n)
                .map(|j| {
                    if j + 1 == n {
                        format!("goto ep-{i}-{j}")
                    } else {
                        format!("numgen random mod {} 0 goto ep-{i}-{j}", n - j)
                    }
                })
                .collect::<Vec<_>>()
                .join("\n\t\t"),
        };
        let _ = writeln!(out, "\tchain svc-{i} {{\n\t\t{body}\n\t}}");
        svc_elems.push(format!("{key} : goto svc-{i}"));
    }
    for n in spreads {
        let _ = writeln!(
            out,
            "\tchain spread-{n} {{\n\t\tip daddr . meta l4proto . th dport . numgen random mod {n} vmap @eps\n\t}}"
        );
    }
    out.push_str("}\n");
    let _ = writeln!(
        out,
        "add element ip cand service-ips {{ {} }}",
        svc_elems.join(", ")
    );
    if !ep_elems.is_empty() {
        let _ = writeln!(out, "add element ip cand eps {{ {} }}", ep_elems.join(", "));
    }
    out
}

fn kube_proxy_body(services: &Services, cluster_cidr: &str) -> String {
    let mut out = String::from("table ip kube-proxy {\n");
    out.push_str("\tchain mark-for-masquerade {\n\t\tmeta mark set meta mark | 0x00004000\n\t}\n");
    out.push_str("\tchain masquerading {\n\t\tmeta mark & 0x00004000 == 0x00000000 return\n\t\tmeta mark set meta mark ^ 0x00004000\n\t\tmasquerade fully-random\n\t}\n");
    out.push_str("\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\tjump services\n\t}\n");
    out.push_str("\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}\n");
    out.push_str("\tchain nat-postrouting {\n\t\ttype nat hook postrouting priority 100; policy accept;\n\t\tjump masquerading\n\t}\n");
    out.push_str(
        "\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t}\n",
    );
    out.push_str(
        "\tchain services {\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\t}\n",
    );
    let mut elements = Vec::new();
    for (i, (key, eps)) in services.iter().enumerate() {
        let svc = format!("service-{i:08X}-bench/svc-{i}/tcp/p80");
        let mut vmap = Vec::new();
        for (j, ep) in eps.iter().enumerate() {
            let (ip, port) = ep.split_once(':').unwrap();
            let epc = format!("endpoint-{i:08X}-{j}-bench/svc-{i}/tcp/p80__{ip}/{port}");
            let _ = writeln!(
                out,
                "\tchain {epc} {{\n\t\tip saddr {ip} jump mark-for-masquerade\n\t\tmeta l4proto tcp dnat to {ip}:{port}\n\t}}"
            );
            vmap.push(format!("{j} : goto {epc}"));
        }
        let ip = key.split(' ').next().unwrap();
        let _ = writeln!(
            out,
            "\tchain {svc} {{\n\t\tip daddr {ip} tcp dport 80 ip saddr != {cluster_cidr} jump mark-for-masquerade\n\t\tnumgen random mod {} vmap {{ {} }}\n\t}}",
            eps.len(),
            vmap.join(", ")
        );
        elements.push(format!("{key} : goto {svc}"));
    }
    out.push_str("}\n");
    if !elements.is_empty() {
        let _ = writeln!(
            out,
            "add element ip kube-proxy service-ips {{ {} }}",
            elements.join(", ")
        );
    }
    out
}

/// kube-proxy's iptables layout (`iptables-save` format, nat table) for
/// `services` in the given order: as its iptables proxier writes it, a
/// KUBE-SERVICES rule per service port (`-d IP -p tcp --dport P`, tried
/// one after the other), a KUBE-SVC-… chain per service that marks
/// off-cluster sources for masquerade and picks an endpoint with
/// `-m statistic --mode random --probability 1/(n-i)`, and a KUBE-SEP-…
/// chain per endpoint with the hairpin mark and the DNAT; KUBE-MARK-MASQ
/// and KUBE-POSTROUTING as kube-proxy has them. Chain names are 16
/// characters after the prefix, as kube-proxy's hashes are. (kube-proxy
/// also writes filter-table chains for services without endpoints and
/// firewalls; every service here has endpoints, so they would be empty.)
pub fn iptables_layout(services: &[(&String, &Vec<String>)], cluster_cidr: &str) -> String {
    let mut chains = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         :KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-NODEPORTS - [0:0]\n",
    );
    let mut rules = String::from(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n",
    );
    let mut per_service = String::new();
    for (i, (key, eps)) in services.iter().enumerate() {
        let mut k = key.split(" . ");
        let (ip, proto, port) = (
            k.next().unwrap_or(""),
            k.next().unwrap_or("tcp"),
            k.next().unwrap_or("80"),
        );
        let name = format!("bench/svc-{i}:p{port}");
        let svc = format!("KUBE-SVC-{:016X}", 0x5356_0000_0000_0000u64 + i as u64);
        let _ = writeln!(chains, ":{svc} - [0:0]");
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES -m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {ip}/32 --dport {port} -j {svc}"
        );
        let _ = writeln!(
            per_service,
            "-A {svc} -m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {ip}/32 --dport {port} ! -s {cluster_cidr} -j KUBE-MARK-MASQ"
        );
        let n = eps.len();
        for (j, ep) in eps.iter().enumerate() {
            let sep = format!("KUBE-SEP-{:016X}", ((i as u64) << 16) | j as u64);
            let (eip, _) = ep.split_once(':').unwrap_or((ep, ""));
            let _ = writeln!(chains, ":{sep} - [0:0]");
            let statistic = if j + 1 < n {
                format!(
                    " -m statistic --mode random --probability {:.10}",
                    1.0 / (n - j) as f64
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                per_service,
                "-A {svc} -m comment --comment \"{name} -> {ep}\"{statistic} -j {sep}"
            );
            let _ = writeln!(
                per_service,
                "-A {sep} -m comment --comment \"{name}\" -s {eip}/32 -j KUBE-MARK-MASQ\n\
                 -A {sep} -m comment --comment \"{name}\" -m {proto} -p {proto} -j DNAT --to-destination {ep}"
            );
        }
    }
    rules.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n",
    );
    chains + &rules + &per_service + "COMMIT\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_services_from_render_output_and_writes_both_kube_proxy_layouts() {
        let render = "table ip nftopo {\n\tmap service-endpoints {\n\t\telements = {\n\t\t\t10.43.0.1 . tcp . 80 . 0 : 10.42.0.7 . 8080,\n\t\t\t10.43.0.1 . tcp . 80 . 1 : 10.42.0.8 . 8080\n\t\t}\n\t}\n}\n";
        let services = parse_services(render);
        assert_eq!(
            services.get("10.43.0.1 . tcp . 80"),
            Some(&vec![
                "10.42.0.7:8080".to_string(),
                "10.42.0.8:8080".to_string()
            ])
        );
        let nft = kube_proxy_layout(render, "10.0.0.0/8");
        assert!(nft.contains("numgen random mod 2 vmap { 0 : goto endpoint-"));
        let list: Vec<_> = services.iter().collect();
        let ipt = iptables_layout(&list, "10.0.0.0/8");
        assert!(ipt.contains("-d 10.43.0.1/32 --dport 80 -j KUBE-SVC-"));
        assert!(ipt.contains("-m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-"));
        assert!(ipt.contains("-j DNAT --to-destination 10.42.0.8:8080"));
        assert_eq!(ipt.matches("-j DNAT").count(), 2);
        assert!(ipt.ends_with("COMMIT\n"));
    }
}
