//! Desired routes against the kernel's: the operations that converge them.

use std::collections::BTreeMap;

use crate::{Cidr, Route, RouteOp};

/// Diffs `desired` against `current` (what the kernel reports, device names
/// filled in) and returns the operations that make the kernel hold exactly
/// `desired` among the routes of `protocol`: deletions first (a prefix
/// freed before it is reused), then replacements, then additions, each in
/// prefix order. Routes in `current` with another protocol are ignored, so
/// foreign routes are never touched even when the caller passes them.
pub fn reconcile(desired: &[Route], current: &[Route], protocol: u8) -> Vec<RouteOp> {
    let mut ours: BTreeMap<Cidr, Vec<&Route>> = BTreeMap::new();
    for r in current.iter().filter(|r| r.protocol == protocol) {
        ours.entry(r.dst).or_default().push(r);
    }
    let want: BTreeMap<Cidr, &Route> = desired.iter().map(|r| (r.dst, r)).collect();

    let mut deletes = Vec::new();
    let mut replaces = Vec::new();
    let mut adds = Vec::new();
    for (dst, have) in &ours {
        match want.get(dst) {
            None => deletes.extend(have.iter().map(|r| RouteOp::Delete((*r).clone()))),
            Some(w) => {
                // Several routes of ours for one prefix (e.g. a v6 route
                // appended with another metric): keep one, delete the rest.
                let keep = have.iter().position(|h| w.satisfied_by(h));
                for (i, h) in have.iter().enumerate() {
                    if Some(i) != keep && (keep.is_some() || i > 0) {
                        deletes.push(RouteOp::Delete((*h).clone()));
                    }
                }
                if keep.is_none() {
                    replaces.push(RouteOp::Replace((*w).clone()));
                }
            }
        }
    }
    for (dst, w) in &want {
        if !ours.contains_key(dst) {
            adds.push(RouteOp::Add((*w).clone()));
        }
    }
    deletes.into_iter().chain(replaces).chain(adds).collect()
}
