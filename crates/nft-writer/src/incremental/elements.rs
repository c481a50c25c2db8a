//! One set's or map's elements as a [`Part`] keeps them ([`PartElements`]):
//! endpoint maps as runs, `hairpin` as addresses, everything else as
//! sorted pairs.
//!
//! A service port's endpoint elements are `head . index` for consecutive
//! indices (`names::spread_offset` onwards), each with a DNAT target: kept
//! as the head, the first index and the targets, an element costs the 20
//! bytes of its target instead of the 72 of a key and a value (at 10k
//! services with node ports, about 9 MiB); `hairpin`'s pairs, each an
//! endpoint's address twice, as the addresses (17 bytes instead of 72).

use std::net::IpAddr;

use api_watch::Protocol;

use crate::model::{ElemKey, ElemValue};

/// Elements sorted by key, each key once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PartElements {
    /// As they are.
    Pairs(Vec<(ElemKey, ElemValue)>),
    /// Endpoint elements, in runs sorted by head and first index.
    Runs(Vec<Run>),
    /// Pairs of one address twice, without data (`hairpin`: each
    /// endpoint's own address): the addresses, sorted.
    SelfPairs(Box<[IpAddr]>),
}

/// Consecutive endpoint elements of one head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Run {
    head: Head,
    first: u32,
    targets: Box<[(IpAddr, u16)]>,
}

/// An endpoint key without its index (ordered as [`ElemKey`] orders them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Head {
    Service(IpAddr, Protocol, u16),
    Port(Protocol, u16),
}

impl Head {
    fn of(key: &ElemKey) -> Option<(Head, u32)> {
        match *key {
            ElemKey::Service {
                addr,
                proto,
                port,
                index: Some(i),
            } => Some((Head::Service(addr, proto, port), i)),
            ElemKey::Port {
                proto,
                port,
                index: Some(i),
            } => Some((Head::Port(proto, port), i)),
            _ => None,
        }
    }

    fn key(self, index: u32) -> ElemKey {
        match self {
            Head::Service(addr, proto, port) => ElemKey::Service {
                addr,
                proto,
                port,
                index: Some(index),
            },
            Head::Port(proto, port) => ElemKey::Port {
                proto,
                port,
                index: Some(index),
            },
        }
    }
}

/// No elements.
pub(super) static NONE: PartElements = PartElements::Pairs(Vec::new());

impl PartElements {
    /// `sorted` (by key, each key once), as runs when every element is an
    /// endpoint element, as addresses when every element is an address
    /// paired with itself, else as they are.
    pub(super) fn new(sorted: Vec<(ElemKey, ElemValue)>) -> Self {
        let self_pairs: Option<Box<[IpAddr]>> = sorted
            .iter()
            .map(|e| match e {
                (ElemKey::Pair(a, b), ElemValue::Member) if a == b => Some(*a),
                _ => None,
            })
            .collect();
        match self_pairs {
            Some(addrs) if !addrs.is_empty() => PartElements::SelfPairs(addrs),
            _ => Self::runs(sorted),
        }
    }

    /// [`PartElements::new`] for anything but self pairs.
    fn runs(sorted: Vec<(ElemKey, ElemValue)>) -> Self {
        let mut runs: Vec<Run> = Vec::new();
        let mut targets: Vec<(IpAddr, u16)> = Vec::new();
        for (k, v) in &sorted {
            let (Some((head, index)), ElemValue::Dnat(addr, port)) = (Head::of(k), v) else {
                return PartElements::Pairs(sorted);
            };
            let continues = runs.last().is_some_and(|r| {
                r.head == head && u64::from(r.first) + targets.len() as u64 == u64::from(index)
            });
            if !continues {
                if let Some(last) = runs.last_mut() {
                    last.targets = std::mem::take(&mut targets).into_boxed_slice();
                }
                runs.push(Run {
                    head,
                    first: index,
                    targets: Box::new([]),
                });
            }
            targets.push((*addr, *port));
        }
        match runs.last_mut() {
            Some(last) => last.targets = targets.into_boxed_slice(),
            None => return PartElements::Pairs(Vec::new()),
        }
        runs.shrink_to_fit();
        PartElements::Runs(runs)
    }

    pub(super) fn len(&self) -> usize {
        match self {
            PartElements::Pairs(p) => p.len(),
            PartElements::Runs(r) => r.iter().map(|r| r.targets.len()).sum(),
            PartElements::SelfPairs(a) => a.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            PartElements::Pairs(p) => p.is_empty(),
            PartElements::Runs(r) => r.is_empty(),
            PartElements::SelfPairs(a) => a.is_empty(),
        }
    }

    /// The value of `key`.
    pub(super) fn get(&self, key: &ElemKey) -> Option<ElemValue> {
        match self {
            PartElements::Pairs(p) => {
                let i = p.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
                Some(p[i].1.clone())
            }
            PartElements::Runs(runs) => {
                let (head, index) = Head::of(key)?;
                // The last run that starts at or before the key.
                let after = runs.partition_point(|r| (r.head, r.first) <= (head, index));
                let r = &runs[after.checked_sub(1)?];
                if r.head != head {
                    return None;
                }
                let (addr, port) = *r.targets.get((index - r.first) as usize)?;
                Some(ElemValue::Dnat(addr, port))
            }
            PartElements::SelfPairs(addrs) => match key {
                ElemKey::Pair(a, b) if a == b => {
                    addrs.binary_search(a).ok().map(|_| ElemValue::Member)
                }
                _ => None,
            },
        }
    }

    /// Whether `key` has the value `value` (compared in place: a verdict's
    /// chain name is not copied).
    pub(super) fn has(&self, key: &ElemKey, value: &ElemValue) -> bool {
        match self {
            PartElements::Pairs(p) => p
                .binary_search_by(|(k, _)| k.cmp(key))
                .is_ok_and(|i| p[i].1 == *value),
            _ => self.get(key).as_ref() == Some(value),
        }
    }

    /// The elements in key order.
    pub(super) fn iter(&self) -> Iter<'_> {
        Iter {
            of: self,
            at: 0,
            within: 0,
        }
    }
}

/// [`PartElements::iter`].
pub(super) struct Iter<'a> {
    of: &'a PartElements,
    /// The pair, or the run.
    at: usize,
    /// The element within the run.
    within: usize,
}

impl Iterator for Iter<'_> {
    type Item = (ElemKey, ElemValue);

    fn next(&mut self) -> Option<Self::Item> {
        match self.of {
            PartElements::Pairs(p) => {
                let e = p.get(self.at)?.clone();
                self.at += 1;
                Some(e)
            }
            PartElements::Runs(runs) => loop {
                let r = runs.get(self.at)?;
                if let Some(&(addr, port)) = r.targets.get(self.within) {
                    let key = r.head.key(r.first + self.within as u32);
                    self.within += 1;
                    return Some((key, ElemValue::Dnat(addr, port)));
                }
                self.at += 1;
                self.within = 0;
            },
            PartElements::SelfPairs(addrs) => {
                let a = *addrs.get(self.at)?;
                self.at += 1;
                Some((ElemKey::Pair(a, a), ElemValue::Member))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Verdict;

    fn ep(addr: [u8; 4], port: u16, index: u32, target: u8) -> (ElemKey, ElemValue) {
        (
            ElemKey::Service {
                addr: IpAddr::from(addr),
                proto: Protocol::Tcp,
                port,
                index: Some(index),
            },
            ElemValue::Dnat(IpAddr::from([10, 42, 0, target]), 8080),
        )
    }

    fn np(port: u16, index: u32, target: u8) -> (ElemKey, ElemValue) {
        (
            ElemKey::Port {
                proto: Protocol::Udp,
                port,
                index: Some(index),
            },
            ElemValue::Dnat(IpAddr::from([10, 42, 0, target]), 53),
        )
    }

    #[test]
    fn endpoint_elements_come_back_as_they_went_in_and_are_found_by_key() {
        let mut all = vec![
            ep([10, 43, 0, 1], 80, 3, 1),
            ep([10, 43, 0, 1], 80, 4, 2),
            ep([10, 43, 0, 1], 80, 5, 3),
            // Another port of the same address, then a gap in the indices.
            ep([10, 43, 0, 1], 443, 0, 4),
            ep([10, 43, 0, 1], 443, 7, 5),
            ep([10, 43, 0, 2], 80, 1, 6),
            np(30053, 1, 7),
            np(30053, 2, 8),
        ];
        all.sort();
        let packed = PartElements::new(all.clone());
        let PartElements::Runs(runs) = &packed else {
            panic!("not packed: {packed:?}");
        };
        assert_eq!(runs.len(), 5, "{runs:?}");
        assert_eq!(packed.iter().collect::<Vec<_>>(), all);
        assert_eq!(packed.len(), all.len());
        for (k, v) in &all {
            assert_eq!(packed.get(k).as_ref(), Some(v), "{k:?}");
            assert!(packed.has(k, v));
        }
        // Keys around and between the runs are absent.
        for absent in [
            ep([10, 43, 0, 1], 80, 2, 0).0,
            ep([10, 43, 0, 1], 80, 6, 0).0,
            ep([10, 43, 0, 1], 443, 1, 0).0,
            ep([10, 43, 0, 0], 80, 3, 0).0,
            ep([10, 43, 0, 3], 80, 1, 0).0,
            np(30053, 0, 0).0,
            np(30054, 1, 0).0,
            ElemKey::Addr(IpAddr::from([10, 43, 0, 1])),
        ] {
            assert_eq!(packed.get(&absent), None, "{absent:?}");
        }
        assert!(!packed.has(&all[0].0, &all[1].1));
    }

    #[test]
    fn anything_else_is_kept_as_pairs() {
        let verdict = (
            ElemKey::service(IpAddr::from([10, 43, 0, 1]), Protocol::Tcp, 80),
            ElemValue::Verdict(Verdict::Goto("svc-x".into())),
        );
        let mut mixed = vec![ep([10, 43, 0, 1], 80, 0, 1), verdict.clone()];
        mixed.sort();
        let kept = PartElements::new(mixed.clone());
        assert_eq!(kept, PartElements::Pairs(mixed.clone()));
        assert_eq!(kept.iter().collect::<Vec<_>>(), mixed);
        assert_eq!(kept.get(&verdict.0), Some(verdict.1));
        assert_eq!(PartElements::new(Vec::new()), NONE);
        // Addresses paired with themselves, and with another.
        let pair = |a: u8, b: u8| {
            (
                ElemKey::Pair(IpAddr::from([10, 42, 0, a]), IpAddr::from([10, 42, 0, b])),
                ElemValue::Member,
            )
        };
        let selves = vec![pair(1, 1), pair(2, 2), pair(9, 9)];
        let packed = PartElements::new(selves.clone());
        assert!(matches!(packed, PartElements::SelfPairs(_)), "{packed:?}");
        assert_eq!(packed.iter().collect::<Vec<_>>(), selves);
        assert_eq!(packed.len(), 3);
        assert!(packed.has(&pair(2, 2).0, &ElemValue::Member));
        assert_eq!(packed.get(&pair(3, 3).0), None);
        assert_eq!(packed.get(&pair(1, 2).0), None);
        let mixed = vec![pair(1, 1), pair(1, 2)];
        assert_eq!(PartElements::new(mixed.clone()), PartElements::Pairs(mixed));
        assert!(NONE.is_empty() && NONE.iter().next().is_none());
    }
}
