//! [`Names`]: one shared copy of each node and zone name the endpoints of
//! the model carry (at 10k Services x 10 endpoints, 100k endpoints name a
//! few hundred nodes and a few zones).

use std::collections::HashSet;
use std::sync::Arc;

use super::EndpointSlice;

/// Interns node and zone names: the first use of a name keeps a copy, and
/// later uses share it. Owned by whoever converts slices into the model
/// (the API source's tracker, the file loader); no global state.
///
/// Names no longer used are dropped now and then: when the set has grown
/// to twice its size after the last such pass, names only the set holds
/// are removed, so nodes that come and go do not pile up.
#[derive(Debug, Default)]
pub struct Names {
    set: HashSet<Arc<str>>,
    prune_at: usize,
}

impl Names {
    /// The shared copy of `name`.
    pub fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.set.get(name) {
            return Arc::clone(shared);
        }
        if self.set.len() >= self.prune_at {
            self.set.retain(|n| Arc::strong_count(n) > 1);
            self.prune_at = (self.set.len() * 2).max(64);
        }
        let shared: Arc<str> = Arc::from(name);
        self.set.insert(Arc::clone(&shared));
        shared
    }

    /// Replaces the node and zone names of `slice`'s endpoints by their
    /// shared copies.
    pub fn share(&mut self, slice: &mut EndpointSlice) {
        for endpoint in &mut slice.endpoints {
            for name in [&mut endpoint.node_name, &mut endpoint.zone]
                .into_iter()
                .flatten()
            {
                *name = self.intern(name);
            }
        }
    }

    /// How many distinct names are kept.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// No name is kept.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_name() {
        let mut names = Names::default();
        let a = names.intern("node-1");
        let b = names.intern(&String::from("node-1"));
        let c = names.intern("node-2");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!((&*a, &*c, names.len()), ("node-1", "node-2", 2));
    }

    #[test]
    fn names_no_one_holds_are_dropped_as_the_set_grows() {
        let mut names = Names::default();
        let kept = names.intern("kept");
        for i in 0..200 {
            names.intern(&format!("gone-{i}"));
        }
        assert!(names.len() < 100, "{} names kept", names.len());
        assert!(Arc::ptr_eq(&kept, &names.intern("kept")));
    }
}
