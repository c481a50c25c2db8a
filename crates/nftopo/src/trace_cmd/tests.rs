//! Arguments and the JSON schema of `nftopo trace`, over the seed
//! scenario planned in memory (the kernel side is integration/tests/trace.rs).

use std::path::PathBuf;

use serde_json::Value;

use super::report::SCHEMA;
use super::*;

fn seed(files: &[&str]) -> Table {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../integration/manifests/seed");
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    let loaded = api_watch::file::read_files(&paths);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let plan = topology_filter::plan(&loaded.state, "node-2");
    let (rs, problems) = nft_writer::plan_ruleset(&plan, &nft_writer::PlannerConfig::default());
    assert!(problems.is_empty());
    rs.tables
        .into_iter()
        .find(|t| t.family == Family::Ip)
        .unwrap()
}

fn client_packet() -> Packet {
    Packet {
        src: "10.42.187.80".parse().unwrap(),
        dst: "10.43.118.32".parse().unwrap(),
        proto: Protocol::Tcp,
        dport: 80,
        path: Path::Forwarded,
        iifname: String::new(),
        node_addrs: Vec::new(),
    }
}

fn report_json(table: &Table, pkt: &Packet) -> Value {
    let branches = nft_writer::explain(table, pkt);
    serde_json::to_value(Report::new(table, pkt, Some(40000), &branches)).unwrap()
}

#[test]
fn destinations_and_sources_parse_and_bad_ones_name_the_flag() {
    let (ip, port, proto) = parse_to("[fd00:43::a]:53/udp").unwrap();
    assert_eq!(
        (ip.to_string(), port, proto),
        ("fd00:43::a".into(), 53, Protocol::Udp)
    );
    assert_eq!(parse_to("10.43.0.10:80").unwrap().2, Protocol::Tcp);
    assert_eq!(parse_from("10.42.0.5").unwrap().1, None);
    assert_eq!(parse_from("[fd00::5]:40000").unwrap().1, Some(40000));
    for bad in ["10.43.0.10", "10.43.0.10:0", "10.43.0.10:80/icmp", "web:80"] {
        let e = parse_to(bad).unwrap_err().to_string();
        assert!(e.contains("--to"), "{bad}: {e}");
    }
    let e = parse_from("10.42.0.5:x").unwrap_err().to_string();
    assert!(e.contains("--from"), "{e}");
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// The documented schema (report.rs): every key, with its type, for a
/// DNAT over two endpoints, and the candidates' chances summing to 1.
#[test]
fn the_json_report_follows_the_documented_schema() {
    let table = seed(&["nodes.yaml", "svc-hostname.yaml", "slices-v1beta1.yaml"]);
    let v = report_json(&table, &client_packet());
    assert_eq!(
        keys(&v),
        [
            "affinity",
            "candidates",
            "masquerade",
            "outcomes",
            "packet",
            "plain_entry",
            "schema",
            "scope",
            "service_chain",
            "table",
            "table_found",
            "verdict"
        ]
    );
    assert_eq!(v["schema"], SCHEMA);
    assert!(v["scope"]
        .as_str()
        .unwrap()
        .contains("nftopo's own tables only"));
    assert_eq!(v["table"], "ip nftopo");
    assert_eq!(v["table_found"], true);
    assert_eq!(v["verdict"], "dnat");
    assert_eq!(v["masquerade"], false);
    assert!(v["affinity"].is_null());
    // A plain service port: no chain of its own, its cluster IP in the
    // plain set.
    assert!(v["service_chain"].is_null(), "{v:#}");
    assert_eq!(
        v["plain_entry"],
        "@plain-cluster-ips holds 10.43.118.32 . tcp . 80"
    );
    assert_eq!(
        keys(&v["packet"]),
        ["from", "from_port", "iif", "path", "port", "protocol", "to"]
    );
    assert_eq!(v["packet"]["from_port"], 40000);
    assert_eq!(v["packet"]["path"], "forwarded");
    let cands = v["candidates"].as_array().unwrap();
    let addrs: Vec<&str> = cands
        .iter()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, ["10.42.187.66", "10.42.187.67"]);
    for c in cands {
        assert_eq!(keys(c), ["address", "masquerade", "port", "probability"]);
        assert_eq!(c["port"], 5000);
        assert!((c["probability"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    }
    let outcomes = v["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 2);
    for o in outcomes {
        assert_eq!(
            keys(o),
            [
                "dnat",
                "masquerade",
                "path",
                "probability",
                "reason",
                "refusal",
                "verdict"
            ]
        );
        assert_eq!(o["verdict"], "accept");
        assert!(o["refusal"].is_null() && o["reason"].is_null());
        let path = o["path"].as_array().unwrap();
        for s in path {
            assert_eq!(
                keys(s),
                ["chain", "element", "event", "map", "rule", "rule_text"]
            );
        }
        let events: Vec<&str> = path.iter().map(|s| s["event"].as_str().unwrap()).collect();
        assert!(
            events.contains(&"hook") && events.contains(&"element"),
            "{events:?}"
        );
        let maps: Vec<&str> = path.iter().filter_map(|s| s["map"].as_str()).collect();
        assert!(
            maps.contains(&"plain-cluster-ips") && maps.contains(&"service-endpoints"),
            "{maps:?}"
        );
    }
}

#[test]
fn a_refusal_says_why_and_a_table_report_names_its_scope() {
    // node-2's pods gone and the hostname key: no endpoint for node-2.
    let table = seed(&[
        "nodes.yaml",
        "svc-hostname.yaml",
        "slices-without-node-2.yaml",
    ]);
    let pkt = client_packet();
    let v = report_json(&table, &pkt);
    assert_eq!(v["verdict"], "reject");
    let o = &v["outcomes"][0];
    assert_eq!(o["refusal"], "tcp-reset");
    assert!(
        o["reason"].as_str().unwrap().contains("no usable endpoint"),
        "{}",
        o["reason"]
    );
    let text = Report::new(&table, &pkt, None, &nft_writer::explain(&table, &pkt)).table();
    assert!(text.contains("nftopo's own tables only"), "{text}");
    assert!(text.contains("rejected (tcp-reset)"), "{text}");
}
