//! Connections inside the chains while a transaction commits: the kernel
//! lets such a packet finish with the rules it started with, but it looks
//! elements up in the new generation. When a service port's endpoints move
//! to another count's index range, the old `spread` rules must still find
//! them, or the connection leaves without DNAT and is refused. The engine
//! sends a new count's rule one transaction ahead of the elements; these
//! tests replay each commit as such a packet sees it (the rules from before,
//! the elements from after) through the packet evaluator.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use api_watch::ObjectKey;
use common::*;
use nft_writer::{
    names, trace, ApplyStats, Dirty, Error, FakeKernel, Family, IncrementalPlanner, Kernel, Op,
    Outcome, Ruleset, Syncer, Table, Transaction,
};

/// The fake kernel, keeping every transaction it was sent; the one at
/// index `fail` (counting from 0) is refused at its last operation.
#[derive(Debug, Default)]
struct Recorder {
    kernel: FakeKernel,
    sent: Vec<Transaction>,
    fail: Option<usize>,
}

impl Kernel for Recorder {
    fn apply(&mut self, tx: &Transaction) -> Result<ApplyStats, Error> {
        if self.fail == Some(self.sent.len()) {
            self.kernel.fail_at = Some(tx.ops.len() - 1);
        }
        self.sent.push(tx.clone());
        self.kernel.apply(tx)
    }

    fn read_back(&mut self) -> Result<Ruleset, Error> {
        self.kernel.read_back()
    }
}

fn with_endpoints(topology: &str) -> Ruleset {
    let svc = service(topology, "");
    ruleset(&state(&[NODES, &svc, &slice(&FIVE)]), "node-2")
}

/// All five endpoints.
fn five() -> Ruleset {
    with_endpoints("")
}

/// node-2's two (the seed article's hostname topology).
fn two() -> Ruleset {
    with_endpoints("  topologyKeys: [\"kubernetes.io/hostname\"]")
}

fn ip_table(rs: &Ruleset) -> &Table {
    rs.tables.iter().find(|t| t.family == Family::Ip).unwrap()
}

/// The ip table as a packet sees it that entered the chains before a
/// commit and looks elements up after it.
fn in_flight(before: &Ruleset, after: &Ruleset) -> Table {
    let mut t = ip_table(after).clone();
    t.chains = ip_table(before).chains.clone();
    t
}

/// Every way a new connection from a pod to web's cluster IP can go.
fn outcomes(table: &Table) -> BTreeSet<Outcome> {
    trace(table, &to_web("10.42.187.70"))
}

/// Whether every outcome is a DNAT to one of the five endpoints.
fn all_reach_endpoints(out: &BTreeSet<Outcome>) -> bool {
    let eps: BTreeSet<IpAddr> = FIVE.iter().map(|e| e.0.parse().unwrap()).collect();
    !out.is_empty()
        && out.iter().all(
            |o| matches!(o, Outcome::Accepted { dnat: Some((a, 5000)), .. } if eps.contains(a)),
        )
}

/// Replays `sent` from `start`, checking each commit as a connection in
/// flight sees it; the state after the last.
fn replay(start: &Ruleset, sent: &[Transaction]) -> Ruleset {
    let mut k = FakeKernel::new();
    k.apply(&Transaction::replace(start)).unwrap();
    for (i, tx) in sent.iter().enumerate() {
        let before = k.read_back().unwrap();
        k.apply(tx).unwrap();
        let after = k.read_back().unwrap();
        let out = outcomes(&in_flight(&before, &after));
        assert!(
            all_reach_endpoints(&out),
            "transaction {i} of {}: a connection in flight during its commit \
             would go {out:?}\n{tx}",
            sent.len()
        );
    }
    k.read_back().unwrap()
}

/// Whether `tx` only appends rules to `spread`.
fn only_spread_rules(tx: &Transaction) -> bool {
    !tx.ops.is_empty()
        && tx
            .ops
            .iter()
            .all(|op| matches!(op, Op::AddRule { chain, .. } if chain == names::SPREAD))
}

/// A syncer whose recording kernel holds `rs`, nothing recorded yet.
fn holding(rs: &Ruleset) -> Syncer<Recorder> {
    let mut s = Syncer::new(Recorder::default());
    s.converge(rs).unwrap();
    s.kernel_mut().sent.clear();
    s
}

#[test]
fn converging_to_a_new_endpoint_count_sends_its_rule_ahead_of_the_elements() {
    for (from, to) in [(five(), two()), (two(), five())] {
        let mut s = holding(&from);
        s.converge(&to).unwrap();
        let sent = s.kernel().sent.clone();
        assert_eq!(sent.len(), 2, "{sent:#?}");
        assert!(only_spread_rules(&sent[0]), "{}", sent[0]);
        assert_eq!(replay(&from, &sent), to);
        // Converging again finds nothing to do.
        s.kernel_mut().sent.clear();
        s.converge(&to).unwrap();
        assert!(s.kernel().sent.is_empty(), "{:#?}", s.kernel().sent);
    }
}

/// The check above can fail: the second transaction is complete on its
/// own, and sent alone (as before the rules went ahead) it loses the
/// connections in flight.
#[test]
fn without_the_rule_ahead_a_connection_in_flight_finds_no_endpoint() {
    let mut s = holding(&five());
    s.converge(&two()).unwrap();
    let main = s.kernel().sent[1].clone();
    let mut k = FakeKernel::new();
    k.apply(&Transaction::replace(&five())).unwrap();
    let before = k.read_back().unwrap();
    k.apply(&main).unwrap();
    let after = k.read_back().unwrap();
    assert_eq!(after, two());
    let out = outcomes(&in_flight(&before, &after));
    assert!(!all_reach_endpoints(&out), "{out:?}");
    assert!(
        out.iter().any(|o| matches!(o, Outcome::Rejected(_))),
        "{out:?}"
    );
}

#[test]
fn a_failure_after_the_rules_sent_ahead_leaves_the_kernel_as_it_was() {
    let mut s = holding(&five());
    s.kernel_mut().fail = Some(1);
    assert!(s.converge(&two()).is_err());
    let sent = &s.kernel().sent;
    assert!(only_spread_rules(&sent[0]), "{sent:#?}");
    // The rule sent ahead was taken back by a third transaction.
    assert_eq!(sent.len(), 3, "{sent:#?}");
    assert_eq!(s.kernel_mut().read_back().unwrap(), five());
    // The next sync converges.
    s.converge(&two()).unwrap();
    assert_eq!(s.kernel_mut().read_back().unwrap(), two());
}

/// web planned with `eps`, as the daemon's planner takes it.
fn plan(eps: &[(&str, &str, &str)]) -> topology_filter::ProxyPlan {
    topology_filter::plan(&state(&[NODES, &service("", ""), &slice(eps)]), "node-2")
}

/// The daemon's planner and syncer after a first sync of web with all
/// five endpoints.
fn daemon_with_five() -> (IncrementalPlanner, Syncer<Recorder>) {
    let mut planner = IncrementalPlanner::new(planner_config());
    let mut s = Syncer::new(Recorder::default());
    let first = planner.update(&plan(&FIVE), Dirty::All);
    s.sync_changes(&planner, first, false).unwrap();
    (planner, s)
}

#[test]
fn the_daemons_incremental_syncs_send_a_new_count_ahead_too() {
    let (mut planner, mut s) = daemon_with_five();
    let keys = BTreeSet::from([ObjectKey::new("default", "web")]);
    // Five to three (the first three: `spread` gains its rule), back to
    // five and to three again (both rules there: one transaction each).
    for (step, (eps, sends)) in [(3, 2), (5, 1), (3, 1)].into_iter().enumerate() {
        let start = s.kernel_mut().read_back().unwrap();
        s.kernel_mut().sent.clear();
        let changes = planner.update(&plan(&FIVE[..eps]), Dirty::Services(&keys));
        let stats = s.sync_changes(&planner, changes, false).unwrap();
        assert!(!stats.full, "step {step}");
        let sent = s.kernel().sent.clone();
        assert_eq!(sent.len(), sends, "step {step}: {sent:#?}");
        if sends == 2 {
            assert!(only_spread_rules(&sent[0]), "step {step}: {}", sent[0]);
        }
        assert_eq!(replay(&start, &sent), planner.ruleset(), "step {step}");
    }
}

/// The periodic full sync converges against a read-back while expecting
/// the incremental operations (drift is what differs beyond them): a
/// failure after the rule sent ahead takes it back there too.
#[test]
fn a_full_sync_that_fails_after_the_rule_ahead_takes_it_back() {
    let (mut planner, mut s) = daemon_with_five();
    let before = s.kernel_mut().read_back().unwrap();
    let keys = BTreeSet::from([ObjectKey::new("default", "web")]);
    let changes = planner.update(&plan(&FIVE[..3]), Dirty::Services(&keys));
    s.kernel_mut().sent.clear();
    s.kernel_mut().fail = Some(1);
    assert!(s.sync_changes(&planner, changes, true).is_err());
    let sent = s.kernel().sent.clone();
    assert!(only_spread_rules(&sent[0]), "{sent:#?}");
    assert_eq!(sent.len(), 3, "{sent:#?}");
    assert_eq!(s.kernel_mut().read_back().unwrap(), before);
    // The next sync converges to the planner.
    s.sync_changes(&planner, Default::default(), false).unwrap();
    assert_eq!(s.kernel_mut().read_back().unwrap(), planner.ruleset());
}

/// A table being repaired whose endpoint map is missing: the rule that
/// looks it up cannot go ahead of the map, so it goes with it.
#[test]
fn a_rule_whose_map_is_missing_goes_with_the_map() {
    let mut s = holding(&five());
    let t = s
        .kernel_mut()
        .kernel
        .ruleset
        .tables
        .iter_mut()
        .find(|t| t.family == Family::Ip)
        .unwrap();
    t.chains.get_mut(names::SPREAD).unwrap().rules.clear();
    assert!(t.maps.remove(names::SERVICE_ENDPOINTS).is_some());
    s.converge(&two()).unwrap();
    let sent = &s.kernel().sent;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(s.kernel_mut().read_back().unwrap(), two());
}
