//! The one engine on the fake kernel: converging sends only differences,
//! nothing when in step; tampering is repaired with as many operations as
//! it changed, and counted as drift only when the kernel was in step;
//! state sets are never touched; a table of another layout is replaced
//! once; deletions of what something referred to wait one sync.

mod common;

use common::*;
use nft_writer::{
    converge, names, Batch, Chain, ElemKey, ElemValue, FakeKernel, Family, Kernel, Map, MapKind,
    Op, Repairs, Rule, Ruleset, Stmt, Syncer, TableRef, Verdict,
};

fn seed() -> Ruleset {
    let svc = service("", "");
    let sl = slice(&FIVE);
    ruleset(&state(&[NODES, &svc, &sl]), "node-2")
}

fn affine() -> Ruleset {
    let svc = service("  sessionAffinity: ClientIP", "");
    let sl = slice(&FIVE);
    ruleset(&state(&[NODES, &svc, &sl]), "node-2")
}

fn ip() -> TableRef {
    TableRef {
        family: Family::Ip,
        name: names::TABLE.into(),
    }
}

/// A syncer whose kernel holds `rs`, in step.
fn synced(rs: &Ruleset) -> Syncer<FakeKernel> {
    let mut s = Syncer::new(FakeKernel::new());
    s.converge(rs).unwrap();
    assert!(!s.has_deferred());
    s
}

/// What the syncer's kernel holds.
fn held(s: &Syncer<FakeKernel>) -> Ruleset {
    s.kernel().clone().read_back().unwrap()
}

/// Rules of `chain` in the ip table of `rs`.
fn rules(rs: &Ruleset, chain: &str) -> usize {
    rs.tables[0].chains[chain].rules.len()
}

/// Changes the fake kernel's table behind the syncer's back.
fn tamper(s: &mut Syncer<FakeKernel>, f: impl FnOnce(&mut nft_writer::Table)) {
    let t = s
        .kernel_mut()
        .ruleset
        .tables
        .iter_mut()
        .find(|t| t.family == Family::Ip)
        .unwrap();
    f(t);
}

#[test]
fn converging_an_empty_kernel_creates_everything_and_a_second_time_sends_nothing() {
    let rs = seed();
    let mut s = Syncer::new(FakeKernel::new());
    let first = s.converge(&rs).unwrap();
    assert!(first.operations > 5, "{first:?}");
    assert_eq!(first.repairs.table, 1);
    assert_eq!(first.drift, Repairs::default(), "catching up is not drift");
    assert_eq!(held(&s), rs);
    let again = s.converge(&rs).unwrap();
    assert_eq!((again.operations, again.messages), (0, 0));
    assert_eq!(again.repairs, Repairs::default());
}

/// Each case: what is done to the kernel, and the repairs (and operation
/// count) the next convergence needs.
#[test]
fn each_kind_of_tampering_is_repaired_with_only_its_own_operations() {
    type Case = (
        &'static str,
        fn(&mut nft_writer::Table),
        Repairs,
        fn(&Ruleset) -> usize,
    );
    let cases: Vec<Case> = vec![
        (
            "an endpoint element deleted",
            |t| {
                let m = t.maps.get_mut(names::SERVICE_ENDPOINTS).unwrap();
                let k = m.elements.keys().next().unwrap().clone();
                m.elements.remove(&k);
            },
            Repairs {
                element: 1,
                ..Repairs::default()
            },
            |_| 1,
        ),
        (
            "an endpoint element pointed elsewhere",
            |t| {
                let m = t.maps.get_mut(names::SERVICE_ENDPOINTS).unwrap();
                let v = m.elements.values_mut().next().unwrap();
                *v = ElemValue::Dnat("10.99.0.1".parse().unwrap(), 1);
            },
            Repairs {
                element: 1,
                ..Repairs::default()
            },
            |_| 2,
        ),
        (
            "a foreign element added to the service map",
            |t| {
                let m = t.maps.get_mut(names::SERVICE_IPS).unwrap();
                m.elements.insert(
                    ElemKey::service("10.43.9.9".parse().unwrap(), api_watch::Protocol::Tcp, 1),
                    ElemValue::Verdict(Verdict::Drop),
                );
            },
            Repairs {
                element: 1,
                ..Repairs::default()
            },
            |_| 1,
        ),
        (
            "a drop rule inserted in a base chain",
            |t| {
                let c = t.chains.get_mut(names::NAT_PREROUTING).unwrap();
                c.rules.insert(0, Rule(vec![Stmt::Verdict(Verdict::Drop)]));
            },
            Repairs {
                rule: 1,
                ..Repairs::default()
            },
            // flush, then the chain's rules again
            |rs| 1 + rules(rs, names::NAT_PREROUTING),
        ),
        (
            "a rule with an expression nftopo does not know",
            |t| {
                let c = t.chains.get_mut(names::SERVICES).unwrap();
                c.rules[0].0.push(Stmt::Unknown {
                    name: "counter".into(),
                    data: vec![0; 8],
                });
            },
            Repairs {
                rule: 2,
                ..Repairs::default()
            },
            |rs| 1 + rules(rs, names::SERVICES),
        ),
        (
            "a base chain's policy set to drop",
            |t| {
                let c = t.chains.get_mut(names::FILTER_FORWARD).unwrap();
                c.base.as_mut().unwrap().policy_drop = true;
            },
            Repairs {
                chain: 1,
                ..Repairs::default()
            },
            |_| 1,
        ),
        (
            "a foreign chain and set added",
            |t| {
                t.chains
                    .insert("mine".into(), Chain::regular("mine", vec![]));
                t.maps.insert(
                    "theirs".into(),
                    Map::new(
                        "theirs",
                        MapKind::Other {
                            flags: 0,
                            key_type: 7,
                            key_len: 4,
                            data_type: 0,
                            data_len: 0,
                        },
                    ),
                );
            },
            Repairs {
                chain: 1,
                set: 1,
                ..Repairs::default()
            },
            |_| 2,
        ),
        (
            "the table of an older layout",
            |t| t.layout = None,
            Repairs {
                table: 1,
                ..Repairs::default()
            },
            |_| 0, // checked below: delete table, then everything
        ),
    ];
    let rs = seed();
    for (what, f, want, ops) in cases {
        let ops = ops(&rs);
        let mut s = synced(&rs);
        tamper(&mut s, f);
        let st = s.converge(&rs).unwrap();
        assert_eq!(st.repairs, want, "{what}");
        assert_eq!(
            st.drift, want,
            "{what}: the kernel was in step, so it is drift"
        );
        if ops > 0 {
            assert_eq!(
                st.operations,
                ops,
                "{what}: {}",
                s.kernel().last.as_ref().unwrap()
            );
        } else {
            let last = s.kernel().last.as_ref().unwrap();
            assert_eq!(last.ops[0], Op::DeleteTable(ip()), "{what}");
            assert_eq!(st.replaced, 1, "{what}");
        }
        // One line per object; a rewritten chain is one line for its rules.
        let notes = s.repair_notes().len();
        assert!(notes >= 1 && notes <= want.total(), "{what}: {notes} lines");
        assert_eq!(held(&s), rs, "{what}: repaired");
        assert_eq!(s.converge(&rs).unwrap().operations, 0, "{what}: in step");
    }
}

#[test]
fn repairs_are_described_one_line_per_object() {
    let rs = seed();
    let mut s = synced(&rs);
    tamper(&mut s, |t| {
        let m = t.maps.get_mut(names::SERVICE_ENDPOINTS).unwrap();
        m.elements.clear();
    });
    let st = s.converge(&rs).unwrap();
    assert_eq!(st.repairs.element, 5, "the five endpoints");
    let notes = s.repair_notes();
    assert_eq!(notes.len(), 5, "{notes:?}");
    assert!(
        notes.iter().all(|n| n
            .starts_with("element ip nftopo service-endpoints 10.43.0.10 . tcp . 80 . ")
            && n.ends_with(": missing")),
        "{notes:?}"
    );
}

#[test]
fn clients_in_affinity_sets_are_never_touched() {
    let rs = affine();
    let sets: Vec<&Map> = rs.tables[0]
        .maps
        .values()
        .filter(|m| m.kind.is_dynamic())
        .collect();
    assert!(!sets.is_empty(), "the service has affinity sets");
    // The kernel holds clients in every affinity set (the read-back of
    // the real kernel reports none; the engine must not care either way).
    let mut held = rs.clone();
    for m in held.tables[0].maps.values_mut() {
        if m.kind.is_dynamic() {
            m.elements
                .insert(ElemKey::Raw(vec![10, 0, 0, 1]), ElemValue::Member);
        }
    }
    let c = converge(&held, &rs);
    assert!(c.now.is_empty(), "{}", c.now);
    assert_eq!(c.repairs, Repairs::default());
}

#[test]
fn an_endpoint_that_goes_away_takes_only_its_own_affinity_set_with_it() {
    let svc = service("  sessionAffinity: ClientIP", "");
    let before = ruleset(&state(&[NODES, &svc, &slice(&FIVE)]), "node-2");
    let after = ruleset(&state(&[NODES, &svc, &slice(&FIVE[1..])]), "node-2");
    let c = converge(&before, &after);
    let deleted: Vec<&Op> = c
        .now
        .ops
        .iter()
        .chain(&c.later)
        .filter(|op| matches!(op, Op::DeleteMap { .. } | Op::AddMap { .. }))
        .collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert!(
        matches!(
            deleted[0],
            Op::DeleteMap {
                kind: MapKind::AffinitySet { .. },
                ..
            }
        ),
        "{deleted:?}"
    );
}

#[test]
fn a_chain_something_still_pointed_at_is_deleted_one_sync_later() {
    // Session affinity: a service port with chains of its own.
    let svc = service("  sessionAffinity: ClientIP", "");
    let with = ruleset(&state(&[NODES, &svc, &slice(&FIVE)]), "node-2");
    let without = ruleset(&state(&[NODES]), "node-2");
    let mut s = synced(&with);
    let st = s.converge(&without).unwrap();
    assert!(st.operations > 0);
    assert!(s.has_deferred(), "the service chain was referenced");
    let last = s.kernel().last.clone().unwrap().to_string();
    assert!(last.contains("flush chain ip nftopo svc-"), "{last}");
    assert!(!last.contains("delete chain"), "{last}");
    // The next convergence finds it unreferenced and deletes it.
    let st = s.converge(&without).unwrap();
    assert!(st.operations >= 1);
    let last = s.kernel().last.clone().unwrap().to_string();
    assert!(last.contains("delete chain ip nftopo svc-"), "{last}");
    assert_eq!(held(&s), without);
}

#[test]
fn drift_is_counted_only_when_the_kernel_was_in_step() {
    let rs = seed();
    let mut k = FakeKernel::new();
    k.apply(&nft_writer::Transaction::replace(&rs)).unwrap();
    // A fresh syncer (a restart) over a kernel that lost an element: it
    // repairs it, but that is catching up, not drift.
    let t = k.ruleset.tables.iter_mut().next().unwrap();
    t.maps
        .get_mut(names::SERVICE_ENDPOINTS)
        .unwrap()
        .elements
        .pop_first();
    let mut s = Syncer::new(k);
    let st = s.converge(&rs).unwrap();
    assert_eq!(st.repairs.element, 1);
    assert_eq!(st.drift, Repairs::default());
    // A failed sync: the next convergence is catching up too.
    tamper(&mut s, |t| {
        t.maps
            .get_mut(names::SERVICE_ENDPOINTS)
            .unwrap()
            .elements
            .pop_first();
    });
    s.kernel_mut().fail_at = Some(0);
    assert!(s.converge(&rs).is_err());
    let st = s.converge(&rs).unwrap();
    assert_eq!((st.repairs.element, st.drift.element), (1, 0));
}

#[test]
fn the_batch_orders_messages_the_same_whatever_the_order_they_come_in() {
    let t = ip();
    let ops = [
        Op::DeleteChain {
            table: t.clone(),
            name: "old".into(),
        },
        Op::AddElements {
            table: t.clone(),
            map: names::SERVICE_ENDPOINTS.into(),
            kind: MapKind::EndpointDnat,
            elements: vec![(
                ElemKey::Service {
                    addr: "10.43.0.1".parse().unwrap(),
                    proto: api_watch::Protocol::Tcp,
                    port: 80,
                    index: Some(0),
                },
                ElemValue::Dnat("10.42.0.1".parse().unwrap(), 80),
            )],
        },
        Op::AddElements {
            table: t.clone(),
            map: names::SERVICE_IPS.into(),
            kind: MapKind::ServiceVerdict,
            elements: vec![(
                ElemKey::service("10.43.0.1".parse().unwrap(), api_watch::Protocol::Tcp, 80),
                ElemValue::Verdict(Verdict::Goto("c".into())),
            )],
        },
        Op::AddRule {
            table: t.clone(),
            chain: "c".into(),
            rule: Rule(vec![Stmt::Verdict(Verdict::Accept)]),
        },
        Op::AddMap {
            table: t.clone(),
            name: "s".into(),
            kind: MapKind::AffinitySet { timeout: 10 },
        },
        Op::AddChain {
            table: t.clone(),
            name: "c".into(),
            base: None,
        },
        Op::AddTable(t.clone()),
    ];
    let kinds = |ops: &[Op]| -> Vec<String> {
        ops.iter()
            .map(|op| op.to_string().split(" {").next().unwrap().to_string())
            .collect()
    };
    let mut forward = Batch::new();
    for op in ops.iter().cloned() {
        forward.push(op);
    }
    let mut backward = Batch::new();
    for op in ops.iter().rev().cloned() {
        backward.push(op);
    }
    let (a, _) = forward.finish();
    let (b, _) = backward.finish();
    assert_eq!(a, b);
    assert_eq!(
        kinds(&a.ops),
        [
            "add table ip nftopo",
            "add chain ip nftopo c",
            "add set ip nftopo s",
            "add rule ip nftopo c accept",
            "add element ip nftopo service-ips",
            "add element ip nftopo service-endpoints",
            "delete chain ip nftopo old",
        ]
    );
}

/// A service port that shrinks from five endpoints to two keeps its chain
/// (`goto spread`) and changes elements, its old indices deleted in the
/// same batch (a port that grew would find old indices before new ones:
/// `spread` tries the counts in increasing order). A converge from
/// scratch also rewrites `spread` to the counts in use; the incremental
/// planner keeps every count's rule (tests/incremental.rs).
#[test]
fn a_shrinking_service_changes_endpoint_elements_only_and_all_at_once() {
    let five = seed();
    let svc = service("  topologyKeys: [\"kubernetes.io/hostname\"]", "");
    let two = ruleset(&state(&[NODES, &svc, &slice(&FIVE)]), "node-2");
    let mut s = synced(&five);
    s.converge(&two).unwrap();
    let last = s.kernel().last.clone().unwrap();
    let text = last.to_string();
    assert!(
        last.ops.iter().all(|op| match op {
            Op::AddElements { .. } | Op::DeleteElements { .. } => true,
            Op::FlushChain { name, .. } | Op::AddRule { chain: name, .. } => {
                name == names::SPREAD
            }
            _ => false,
        }),
        "{text}"
    );
    assert!(!s.has_deferred(), "{text}");
    assert_eq!(held(&s), two);
}
