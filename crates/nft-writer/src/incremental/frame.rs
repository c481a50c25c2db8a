//! A full sync's view of the planner: the ruleset without the skeleton
//! maps' elements ([`IncrementalPlanner::frame`]) and those elements one
//! map at a time ([`IncrementalPlanner::elements`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

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
        self.merged(family, map).map(Merged::into_vec)
    }

    /// [`IncrementalPlanner::elements`] as they are merged: the whole map
    /// is never held (a first sync encodes a large map a piece at a time).
    pub fn merged(&self, family: Family, map: &str) -> Option<Merged<'_>> {
        let held: Vec<(ElemKey, ElemValue)> = self.skeletons[fi(family)]
            .maps
            .get(map)?
            .elements
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut total = held.len();
        let mut lists: Vec<List<'_>> = vec![Box::new(held.into_iter())];
        for e in self.entries.values() {
            let elements = e.part(family).elements(map);
            if !elements.is_empty() {
                total += elements.len();
                lists.push(Box::new(elements.iter()));
            }
        }
        Some(Merged::new(lists, total))
    }
}

/// One sorted list of elements for [`Merged`].
type List<'a> = Box<dyn Iterator<Item = (ElemKey, ElemValue)> + 'a>;

/// The elements of sorted lists (each key once in a list), sorted, each
/// key once: where several lists hold a key, the value in the last of
/// them, as inserting the lists in order into one map would leave it.
/// Each part's elements are sorted, so a k-way merge gives them in order
/// with no copy to sort.
pub struct Merged<'a> {
    lists: Vec<List<'a>>,
    /// The value of each list's next element.
    values: Vec<Option<ElemValue>>,
    /// Each list's next key, as (key, list): smallest key, then first
    /// list, on top.
    heads: BinaryHeap<Reverse<(ElemKey, usize)>>,
    /// Elements not yet taken from the lists.
    left: usize,
}

impl<'a> Merged<'a> {
    /// Merges `lists`, `total` elements in all.
    fn new(lists: Vec<List<'a>>, total: usize) -> Self {
        let mut m = Merged {
            values: vec![None; lists.len()],
            lists,
            heads: BinaryHeap::new(),
            left: total,
        };
        for l in 0..m.lists.len() {
            m.advance(l);
        }
        m
    }

    /// The rest of the elements, in a vector of their size.
    pub fn into_vec(self) -> Vec<(ElemKey, ElemValue)> {
        let mut out = Vec::with_capacity(self.left);
        out.extend(self);
        out.shrink_to_fit();
        out
    }

    /// Queues the next element of list `l`, if there is one.
    fn advance(&mut self, l: usize) {
        if let Some((k, v)) = self.lists[l].next() {
            self.values[l] = Some(v);
            self.heads.push(Reverse((k, l)));
        }
    }

    /// Takes the element at the head of `heads`, queueing its list's next.
    fn take(&mut self) -> Option<(ElemKey, ElemValue)> {
        let Reverse((key, l)) = self.heads.pop()?;
        let value = self.values[l].take().expect("a queued list has a value");
        self.left = self.left.saturating_sub(1);
        self.advance(l);
        Some((key, value))
    }
}

impl Iterator for Merged<'_> {
    type Item = (ElemKey, ElemValue);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, mut value) = self.take()?;
        // The same key in later lists, in list order: the last one wins.
        while self.heads.peek().is_some_and(|Reverse((k, _))| *k == key) {
            value = self.take().expect("peeked").1;
        }
        Some((key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left.min(1), Some(self.left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge_sorted(lists: &[&[(ElemKey, ElemValue)]]) -> Vec<(ElemKey, ElemValue)> {
        let total = lists.iter().map(|l| l.len()).sum();
        let lists: Vec<List<'_>> = lists
            .iter()
            .map(|l| Box::new(l.iter().cloned()) as List<'_>)
            .collect();
        let merged = Merged::new(lists, total);
        assert_eq!(merged.size_hint().1, Some(total));
        merged.collect()
    }

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
