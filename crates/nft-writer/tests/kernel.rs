//! The same things on the real kernel. Each test runs in a thread that
//! moved into a network namespace of its own (`unshare(CLONE_NEWNET)`
//! changes only the calling thread), so nothing touches the host's
//! namespace, and the namespace disappears with the thread even when an
//! assertion fails. `nft` (run with `nsenter` into that thread's
//! namespace) is the independent witness. Needs root.

mod common;

use common::*;
use nft_writer::{
    Error, ErrorKind, Family, Kernel, NetlinkKernel, Op, Rule, Stmt, TableRef, Transaction, Verdict,
};

fn seed_ruleset(topology_keys: bool) -> nft_writer::Ruleset {
    let spec = if topology_keys {
        "  topologyKeys: [\"kubernetes.io/hostname\"]"
    } else {
        ""
    };
    let svc = service(spec, "");
    let sl = slice(&FIVE);
    let other = "apiVersion: v1\nkind: Service\nmetadata: {name: empty, namespace: default}\nspec: {clusterIP: 10.43.0.11, ports: [{port: 53, protocol: UDP}]}\n";
    ruleset(&state(&[NODES, &svc, &sl, other]), "node-2")
}

#[test]
fn apply_reads_back_exactly_like_nft_f_of_the_rendered_script() {
    let rs = seed_ruleset(false);
    let script = rs.to_string();
    in_netns(move |ns| {
        let mut k = NetlinkKernel::open().unwrap();
        let stats = k.apply(&Transaction::replace(&rs)).unwrap();
        assert!(stats.messages > 10);
        let applied = nft(&ns, &["list", "ruleset"], None);
        assert!(applied.contains("table ip nftopo"), "{applied}");
        // The same script through nft, in the same namespace after a
        // cleanup, must list identically.
        k.apply(&Transaction::delete_tables(&[TableRef {
            family: Family::Ip,
            name: "nftopo".into(),
        }]))
        .unwrap();
        assert_eq!(nft(&ns, &["list", "ruleset"], None), "");
        nft(&ns, &["-f", "-"], Some(&script));
        let by_nft = nft(&ns, &["list", "ruleset"], None);
        assert_eq!(applied, by_nft);
    });
}

#[test]
fn re_applying_replaces_the_table_in_one_transaction() {
    let first = seed_ruleset(false);
    let second = seed_ruleset(true);
    in_netns(move |ns| {
        let mut k = NetlinkKernel::open().unwrap();
        k.apply(&Transaction::replace(&first)).unwrap();
        assert!(nft(&ns, &["list", "ruleset"], None).contains("10.42.201.2"));
        k.apply(&Transaction::replace(&second)).unwrap();
        let now = nft(&ns, &["list", "ruleset"], None);
        assert!(
            !now.contains("10.42.201.2"),
            "node-4's endpoint must be gone:\n{now}"
        );
        assert!(now.contains("10.42.187.66"), "{now}");
        assert_eq!(now.matches("table ip nftopo").count(), 1);
    });
}

#[test]
fn a_refused_transaction_names_the_operation_and_leaves_the_kernel_as_it_was() {
    let rs = seed_ruleset(false);
    in_netns(move |ns| {
        let mut k = NetlinkKernel::open().unwrap();
        k.apply(&Transaction::replace(&rs)).unwrap();
        let before = nft(&ns, &["list", "ruleset"], None);
        let table = TableRef {
            family: Family::Ip,
            name: "nftopo".into(),
        };
        let mut tx = Transaction::replace(&rs);
        let bad_index = tx.ops.len();
        tx.ops.push(Op::AddRule {
            table: table.clone(),
            chain: "services".into(),
            rule: Rule(vec![Stmt::Verdict(Verdict::Jump("no-such-chain".into()))]),
        });
        // Something valid after the failing operation, too.
        tx.ops.push(Op::AddChain {
            table,
            name: "after".into(),
            base: None,
        });
        let err = k.apply(&tx).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        match &err {
            Error::Rejected { op_index, op, .. } => {
                assert_eq!(*op_index, Some(bad_index));
                assert!(op.contains("no-such-chain"), "{op}");
            }
            other => panic!("unexpected error {other}"),
        }
        assert_eq!(nft(&ns, &["list", "ruleset"], None), before);
    });
}

#[test]
fn ten_thousand_elements_travel_in_one_batch() {
    let mut docs = vec![NODES.to_string()];
    for i in 0..1000u32 {
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\nspec: {{clusterIP: 10.43.{}.{}, ports: [{{port: 80}}]}}\n",
            i / 250,
            i % 250 + 1
        ));
        let eps: String = (0..10u32)
            .map(|j| {
                format!(
                    "- {{addresses: [\"10.42.{}.{}\"], nodeName: node-3}}\n",
                    i / 25,
                    (i % 25) * 10 + j + 1
                )
            })
            .collect();
        docs.push(format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-1, namespace: default, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: IPv4\nports: [{{port: 8080}}]\nendpoints:\n{eps}"
        ));
    }
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let rs = ruleset(&state(&refs), "node-2");
    in_netns(move |ns| {
        let mut k = NetlinkKernel::open().unwrap();
        k.apply(&Transaction::replace(&rs)).unwrap();
        let listed = nft(
            &ns,
            &["list", "map", "ip", "nftopo", "service-endpoints"],
            None,
        );
        assert_eq!(listed.matches(" : 10.42.").count(), 10_000);
    });
}

/// Every construct of the data plane at once (node ports, external and
/// load-balancer IPs, externalTrafficPolicy Local, source ranges, session
/// affinity, internalTrafficPolicy Local, UDP, dual stack): what we send
/// over netlink lists exactly like `nft -f` of the rendered script.
#[test]
fn the_full_data_plane_reads_back_exactly_like_nft_f() {
    let rs = edge_ruleset();
    assert_eq!(rs.tables.len(), 2, "a dual-stack service needs both tables");
    let script = rs.to_string();
    in_netns(move |ns| {
        let mut k = NetlinkKernel::open().unwrap();
        k.apply(&Transaction::replace(&rs)).unwrap();
        let applied = nft(&ns, &["list", "ruleset"], None);
        for needle in [
            "table ip6 nftopo",
            "update @aff-",
            "fib saddr type local",
            "dnat ip to meta l4proto . th dport . numgen random mod 2 offset 1 map @nodeport-endpoints",
            "ip saddr 198.51.100.0/24 return",
            "dnat to [fd00:42::66]:5000",
        ] {
            assert!(applied.contains(needle), "{needle:?} missing in\n{applied}");
        }
        nft(&ns, &["-f", "-"], Some(&script));
        assert_eq!(nft(&ns, &["list", "ruleset"], None), applied);
    });
}

/// Issue 15, item 3: once `spread` holds the rule of an endpoint count, a
/// non-affinity service port whose endpoints come and go changes set
/// elements only, in the batch the engine builds (no rule and no chain:
/// nothing that makes the kernel validate the whole table at commit or
/// bind `service-endpoints` again, which walks all of it), and new
/// connections spread over exactly the new endpoints, read back from the
/// kernel.
#[test]
fn an_endpoint_added_or_removed_is_a_batch_of_set_elements_only() {
    use std::collections::BTreeSet;
    use std::net::IpAddr;

    use api_watch::ObjectKey;
    use nft_writer::{trace, Cidr, Dirty, IncrementalPlanner, Outcome, PlannerConfig, Syncer};

    let plan = |eps: &[(&str, &str, &str)]| {
        topology_filter::plan(&state(&[NODES, &service("", ""), &slice(eps)]), "node-2")
    };
    let cfg = PlannerConfig {
        detect_local: nft_writer::DetectLocal::ClusterCidr(
            Cidr::parse("10.42.0.0/16").into_iter().collect(),
        ),
        ..PlannerConfig::default()
    };
    let (five, four) = (plan(&FIVE), plan(&FIVE[..4]));
    in_netns(move |ns| {
        let mut planner = IncrementalPlanner::new(cfg);
        let mut syncer = Syncer::new(NetlinkKernel::open().unwrap());
        let first = planner.update(&five, Dirty::All);
        syncer.sync_changes(&planner, first, false).unwrap();
        let keys = BTreeSet::from([ObjectKey::new("default", "web")]);
        // Five to four (the first count of four: `spread` gains its rule),
        // then back and forth: elements only.
        for (step, (plan, n)) in [(&four, 4), (&five, 5), (&four, 4), (&five, 5)]
            .into_iter()
            .enumerate()
        {
            let changes = planner.update(plan, Dirty::Services(&keys));
            if step > 0 {
                let text: Vec<String> = changes.now.iter().map(ToString::to_string).collect();
                assert!(
                    changes
                        .now
                        .iter()
                        .all(|op| matches!(op, Op::AddElements { .. } | Op::DeleteElements { .. })),
                    "step {step}: {text:#?}"
                );
                assert!(changes.later.is_empty(), "step {step}");
            }
            let stats = syncer.sync_changes(&planner, changes, false).unwrap();
            assert!(!stats.full, "step {step}");
            let held = syncer.kernel_mut().read_back().unwrap();
            let table = &held.tables[0];
            let out = trace(table, &to_web("10.42.187.66"));
            let got: BTreeSet<IpAddr> = out
                .iter()
                .filter_map(|o| match o {
                    Outcome::Accepted {
                        dnat: Some((ip, 5000)),
                        ..
                    } => Some(*ip),
                    _ => None,
                })
                .collect();
            let want: BTreeSet<IpAddr> = FIVE[..n].iter().map(|e| e.0.parse().unwrap()).collect();
            assert_eq!(got, want, "step {step}: {out:?}");
            assert_eq!(out.len(), n, "step {step}: only DNATs: {out:?}");
        }
        let spread = nft(&ns, &["list", "chain", "ip", "nftopo", "spread"], None);
        assert!(
            spread.contains("numgen random mod 4 offset 6 map")
                && spread.contains("numgen random mod 5 offset 10 map"),
            "{spread}"
        );
    });
}
