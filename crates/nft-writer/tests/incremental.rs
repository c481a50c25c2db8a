//! Converging syncs: a change touches a handful of objects, the result is
//! the same as a full replace, gone chains are deleted one sync later, and
//! a failure leaves the kernel as it was. On the fake kernel, plus a
//! check on the real one.

mod common;

use std::process::Command;

use common::*;
use nft_writer::{FakeKernel, Kernel, NetlinkKernel, Ruleset, Syncer, Transaction};

/// `n` ClusterIP services `s<i>` with `eps(i)` endpoints each, one UDP
/// service with affinity and a NodePort, on node-2.
fn cluster(n: u32, eps: impl Fn(u32) -> u32) -> Ruleset {
    ruleset(&cluster_state(n, eps), "node-2")
}

/// The cluster of [`cluster`], unplanned.
fn cluster_state(n: u32, eps: impl Fn(u32) -> u32) -> api_watch::ClusterState {
    let mut docs = vec![NODES.to_string()];
    for i in 0..n {
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\nspec: {{type: NodePort, clusterIP: 10.43.{}.{}, ports: [{{port: 80, nodePort: {}}}], sessionAffinity: {}}}\n",
            i / 250,
            i % 250 + 1,
            30000 + i,
            if i % 7 == 0 { "ClientIP" } else { "None" },
        ));
        let list: String = (0..eps(i))
            .map(|j| {
                let node = if j % 2 == 0 { "node-2" } else { "node-3" };
                format!(
                    "- {{addresses: [\"10.42.{}.{}\"], nodeName: {node}}}\n",
                    i % 200,
                    j + 1
                )
            })
            .collect();
        docs.push(format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-1, namespace: default, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: IPv4\nports: [{{port: 8080}}]\nendpoints:\n{list}"
        ));
    }
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    state(&refs)
}

fn full_dump(rs: &Ruleset) -> String {
    let mut k = FakeKernel::new();
    k.apply(&Transaction::replace(rs)).unwrap();
    k.dump()
}

#[test]
fn the_first_sync_creates_everything_and_an_unchanged_plan_sends_nothing() {
    let rs = cluster(20, |_| 3);
    let mut s = Syncer::new(FakeKernel::new());
    let first = s.converge(&rs).unwrap();
    assert!(first.operations > 0);
    let again = s.converge(&rs).unwrap();
    assert_eq!((again.operations, again.messages), (0, 0));
    assert_eq!(again.repairs.total(), 0);
}

#[test]
fn one_new_endpoint_among_a_thousand_services_is_a_handful_of_messages() {
    let before = cluster(1000, |_| 3);
    let after = cluster(1000, |i| if i == 500 { 4 } else { 3 });
    let mut s = Syncer::new(FakeKernel::new());
    s.converge(&before).unwrap();
    let st = s.converge(&after).unwrap();
    // Here: two new shared chains (spread-4, spread-port-4, as no other
    // service has 4 endpoints), the service's cluster-IP and node-port
    // chains rewritten, one element into each endpoint map.
    assert!(
        st.messages <= 20,
        "{} messages: {:?}",
        st.messages,
        s.kernel().last
    );
    assert_eq!(s.kernel().dump(), full_dump(&after));
}

#[test]
fn a_removed_service_is_emptied_now_and_its_chains_deleted_one_sync_later() {
    // s14 has session affinity (every seventh): chains of its own.
    let before = cluster(15, |_| 2);
    let after = cluster(14, |_| 2);
    let mut s = Syncer::new(FakeKernel::new());
    s.converge(&before).unwrap();
    s.converge(&after).unwrap();
    let text = s.kernel().dump();
    assert!(
        text.contains("default/s14/tcp/80 {\n\t}"),
        "s14's chain is empty, not gone:\n{text}"
    );
    let last = s.kernel().last.clone().unwrap().to_string();
    assert!(last.contains("flush chain ip nftopo svc-"), "{last}");
    assert!(!last.contains("delete chain"), "{last}");
    // The next sync, even with nothing else to do, deletes it.
    let st = s.converge(&after).unwrap();
    assert!(st.operations > 0);
    assert!(s
        .kernel()
        .last
        .clone()
        .unwrap()
        .to_string()
        .contains("delete chain ip nftopo svc-"));
    assert_eq!(s.kernel().dump(), full_dump(&after));
}

#[test]
fn a_service_that_comes_back_before_its_deferred_deletion_is_kept() {
    let before = cluster(5, |_| 2);
    let without = cluster(4, |_| 2);
    let mut s = Syncer::new(FakeKernel::new());
    s.converge(&before).unwrap();
    s.converge(&without).unwrap();
    s.converge(&before).unwrap();
    assert_eq!(s.kernel().dump(), full_dump(&before));
}

#[test]
fn a_failed_sync_leaves_the_kernel_as_it_was_and_forces_a_full_one() {
    let a = cluster(10, |_| 2);
    let b = cluster(10, |i| if i == 3 { 1 } else { 2 });
    let mut s = Syncer::new(FakeKernel::new());
    s.converge(&a).unwrap();
    let before = s.kernel().dump();
    let mut k = s.kernel().clone();
    k.fail_at = Some(0);
    let mut s = Syncer::new(k);
    assert!(s.converge(&b).is_err());
    assert_eq!(s.kernel().dump(), before);
    let st = s.converge(&b).unwrap();
    assert!(st.full);
    // Service 3's endpoint elements are replaced in the same batch
    // (engine::Batch): nothing waits for the next sync.
    assert!(!s.has_deferred());
    assert_eq!(s.kernel().dump(), full_dump(&b));
}

#[test]
fn a_sequence_of_changes_always_ends_where_a_full_replace_would() {
    let steps: Vec<Ruleset> = vec![
        cluster(30, |_| 3),
        cluster(30, |i| 1 + i % 4),
        cluster(25, |i| 1 + i % 4),
        cluster(31, |i| (i % 3) + 2),
        cluster(31, |i| if i % 5 == 0 { 0 } else { 2 }),
        cluster(12, |_| 5),
    ];
    let mut s = Syncer::new(FakeKernel::new());
    for (i, rs) in steps.iter().enumerate() {
        s.converge(rs).unwrap();
        // Deferred deletions land with the next sync.
        s.converge(rs).unwrap();
        assert_eq!(s.kernel().dump(), full_dump(rs), "step {i}");
    }
}

/// The same sequence on the real kernel, in a namespace of this thread:
/// `nft list ruleset` after the incremental syncs equals the listing after
/// a full replace of the last ruleset.
#[test]
fn incremental_syncs_on_the_kernel_list_like_a_full_replace() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let steps = vec![
        cluster(30, |_| 3),
        cluster(30, |i| 1 + i % 4),
        cluster(25, |i| 1 + i % 4),
        cluster(31, |i| if i % 5 == 0 { 0 } else { 2 }),
    ];
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let ns = format!(
            "/proc/{}/task/{}/ns/net",
            std::process::id(),
            nix::unistd::gettid()
        );
        let list = || {
            let out = Command::new("nsenter")
                .arg(format!("--net={ns}"))
                .args(["nft", "list", "ruleset"])
                .output()
                .unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        };
        let mut s = Syncer::new(NetlinkKernel::open().unwrap());
        for rs in &steps {
            s.converge(rs).unwrap();
            s.converge(rs).unwrap();
        }
        let incremental = canonical(&list());
        let mut k = NetlinkKernel::open().unwrap();
        k.apply(&Transaction::replace(steps.last().unwrap()))
            .unwrap();
        assert_eq!(incremental, canonical(&list()));
        assert!(incremental.contains("chain svc-"), "{incremental}");
    })
    .join()
    .expect("kernel test thread");
}

/// Layout 4: a plain Service (no session affinity) added or removed, and
/// a plain port losing or regaining all its endpoints, change elements of
/// sets and maps without verdicts only: no chain, no rule and no verdict
/// element, each of which would make the kernel walk or validate the
/// whole table at commit.
#[test]
fn plain_services_come_and_go_as_elements_only() {
    // s5 has 3 endpoints, the others 2: both counts have their rule in
    // `spread` from the start (a count's first use adds its rule, once).
    let eps = |changed: u32, n: u32| {
        move |i: u32| match i {
            5 => 3,
            i if i == changed => n,
            _ => 2,
        }
    };
    let steps = [
        ("a plain Service added", cluster(16, eps(3, 2))),
        ("a plain Service removed", cluster(15, eps(3, 2))),
        ("a port losing its endpoints", cluster(15, eps(3, 0))),
        ("a port regaining them", cluster(15, eps(3, 2))),
        ("an endpoint added", cluster(15, eps(3, 3))),
        ("an endpoint removed", cluster(15, eps(3, 2))),
    ];
    let mut s = Syncer::new(FakeKernel::new());
    s.converge(&cluster(15, eps(3, 2))).unwrap();
    for (what, rs) in &steps {
        let st = s.converge(rs).unwrap();
        assert!(st.operations > 0, "{what}: nothing sent");
        assert!(!s.has_deferred(), "{what}: a deferred deletion");
        let last = s.kernel().last.clone().unwrap().to_string();
        for line in last.lines() {
            let element = line.starts_with("add element") || line.starts_with("delete element");
            assert!(element, "{what}: {line}\n{last}");
            assert!(
                !line.contains("goto") && !line.contains("jump"),
                "{what}: {line}"
            );
        }
        assert_eq!(s.kernel().dump(), full_dump(rs), "{what}");
    }
}

/// A first sync fills a map the kernel lacks as the transaction is sent,
/// in pieces of at most 4,096 elements (the whole map is never held), and
/// ends where a full replace would.
#[test]
fn a_first_sync_fills_a_large_map_in_pieces() {
    use nft_writer::{names, Dirty, IncrementalPlanner, Op};
    let plan = topology_filter::plan(&cluster_state(600, |_| 10), "node-2");
    let mut planner = IncrementalPlanner::new(planner_config());
    let changes = planner.update(&plan, Dirty::All);
    let mut s = Syncer::new(FakeKernel::new());
    s.sync_changes(&planner, changes, false).unwrap();
    let last = s.kernel().last.clone().unwrap();
    let pieces: Vec<usize> = last
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::AddElements { map, elements, .. } if map == names::SERVICE_ENDPOINTS => {
                Some(elements.len())
            }
            _ => None,
        })
        .collect();
    // 600 services x 10 endpoints; those with affinity (one in seven)
    // keep their endpoints in rules, not in the map.
    let affine = (0..600).filter(|i| i % 7 == 0).count();
    assert_eq!(
        pieces.iter().sum::<usize>(),
        (600 - affine) * 10,
        "{pieces:?}"
    );
    assert!(pieces.len() >= 2, "{pieces:?}");
    assert!(pieces.iter().all(|n| *n <= 4096), "{pieces:?}");
    assert_eq!(s.kernel().dump(), full_dump(&planner.ruleset()));
}
