//! A full sync's view of the planner: the ruleset without the skeleton
//! maps' elements ([`IncrementalPlanner::frame`]) and those elements one
//! map at a time ([`IncrementalPlanner::elements`]).

use super::*;

impl IncrementalPlanner {
    /// What [`IncrementalPlanner::ruleset`] gives, but for the elements of
    /// the skeleton's sets and maps (service addresses, endpoints, node
    /// ports: nearly all of a large ruleset), which
    /// [`IncrementalPlanner::elements`] gives one map at a time. A full
    /// sync converges from the two, so that it never holds the whole
    /// ruleset assembled.
    pub fn frame(&self) -> Ruleset {
        self.assemble(true)
    }

    /// Whether [`IncrementalPlanner::elements`] gives the elements of
    /// `map` in the `family` table (one of the skeleton's sets and maps).
    pub fn streams(&self, family: Family, map: &str) -> bool {
        self.skeletons[fi(family)].maps.contains_key(map)
    }

    /// The elements of the skeleton's set or map `map` in the `family`
    /// table, sorted by key, as [`IncrementalPlanner::ruleset`] holds
    /// them (where two Services add the same key, the later in plan
    /// order); `None` when `map` is not one of the skeleton's (a Service's
    /// own set: [`IncrementalPlanner::frame`] holds its elements).
    pub fn elements(&self, family: Family, map: &str) -> Option<Vec<(ElemKey, ElemValue)>> {
        let held: Vec<(ElemKey, ElemValue)> = self.skeletons[fi(family)]
            .maps
            .get(map)?
            .elements
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Each part's elements are sorted: merged, they come out sorted
        // into a vector of the right size, with no second copy to sort.
        let mut lists: Vec<&[(ElemKey, ElemValue)]> = vec![&held];
        lists.extend(
            self.entries
                .values()
                .map(|e| e.part(family).elements(map))
                .filter(|l| !l.is_empty()),
        );
        Some(merge_sorted(&lists))
    }
}

/// The elements of sorted `lists` (each key once in a list), sorted, each
/// key once: where several lists hold a key, the value in the last of
/// them, as inserting the lists in order into one map would leave it.
fn merge_sorted(lists: &[&[(ElemKey, ElemValue)]]) -> Vec<(ElemKey, ElemValue)> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    type Heads<'a> = BinaryHeap<Reverse<(&'a ElemKey, usize, usize)>>;
    // Queues the element after `at` in list `l`.
    fn advance<'a>(
        heads: &mut Heads<'a>,
        lists: &[&'a [(ElemKey, ElemValue)]],
        l: usize,
        at: usize,
    ) {
        if let Some((k, _)) = lists[l].get(at + 1) {
            heads.push(Reverse((k, l, at + 1)));
        }
    }
    let mut out = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
    // Each list's next element, as (key, list, position): smallest key,
    // then first list, on top.
    let mut heads: Heads = lists
        .iter()
        .enumerate()
        .filter_map(|(l, list)| list.first().map(|(k, _)| Reverse((k, l, 0))))
        .collect();
    while let Some(Reverse((key, l, at))) = heads.pop() {
        let mut winner = (l, at);
        advance(&mut heads, lists, l, at);
        // The same key in later lists, in list order: the last one wins.
        while let Some(&Reverse((k, l, at))) = heads.peek() {
            if k != key {
                break;
            }
            heads.pop();
            advance(&mut heads, lists, l, at);
            winner = (l, at);
        }
        out.push(lists[winner.0][winner.1].clone());
    }
    out.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ElemKey {
        ElemKey::Addr(IpAddr::from([10, 0, 0, n]))
    }

    fn member(n: u8) -> (ElemKey, ElemValue) {
        (key(n), ElemValue::Member)
    }

    fn verdict(n: u8, chain: &str) -> (ElemKey, ElemValue) {
        (key(n), ElemValue::Verdict(Verdict::Goto(chain.into())))
    }

    #[test]
    fn merged_lists_come_out_sorted_once_each_with_the_last_lists_value() {
        let a = [member(1), verdict(3, "a"), member(7)];
        let b = [member(2), verdict(3, "b")];
        let c: [(ElemKey, ElemValue); 0] = [];
        let d = [verdict(3, "d"), member(7), member(9)];
        let got = merge_sorted(&[&a, &b, &c, &d]);
        let want = vec![member(1), member(2), verdict(3, "d"), member(7), member(9)];
        assert_eq!(got, want);
        // As inserting them in order into one map leaves it.
        let mut map = BTreeMap::new();
        for list in [&a[..], &b, &c, &d] {
            map.extend(list.iter().cloned());
        }
        assert_eq!(got, map.into_iter().collect::<Vec<_>>());
        assert_eq!(merge_sorted(&[]), vec![]);
        assert_eq!(
            merge_sorted(&[&b, &a]).iter().find(|e| e.0 == key(3)),
            Some(&verdict(3, "a"))
        );
    }
}
