//! A bounded memory of what is known about the last events (verdicts,
//! refusals, claims of dedupe keys, media looked for): oldest forgotten
//! first once full, so `verify = "fetch"` routes' memory does not grow with
//! traffic. The store's states tell what was forgotten.

use std::collections::HashMap;

/// Entries remembered (oldest forgotten first once full).
pub(super) const REMEMBER: usize = 10_000;

/// What is known about the last [`REMEMBER`] events (or families),
/// forgotten in order of arrival.
pub struct Recent<K, V> {
    pub known: HashMap<K, V>,
    order: std::collections::VecDeque<K>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent {
            known: HashMap::new(),
            order: std::collections::VecDeque::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V> Recent<K, V> {
    /// Remember `v` for `id`; whether `id` was not known yet.
    pub fn insert(&mut self, id: K, v: V) -> bool {
        let new = self.known.insert(id.clone(), v).is_none();
        if new {
            self.order.push_back(id);
        }
        while self.order.len() > REMEMBER {
            if let Some(old) = self.order.pop_front() {
                self.known.remove(&old);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventId;

    #[test]
    fn verdicts_are_kept_for_the_last_events_only() {
        let mut r = Recent::default();
        let id = |n: u64| EventId::from_parts(n, 0);
        for n in 0..=REMEMBER as u64 {
            r.insert(id(n), ());
        }
        r.insert(id(REMEMBER as u64), ());
        assert_eq!((r.known.len(), r.order.len()), (REMEMBER, REMEMBER));
        assert!(!r.known.contains_key(&id(0)), "the oldest is forgotten");
        assert!(r.known.contains_key(&id(1)) && r.known.contains_key(&id(REMEMBER as u64)));
    }
}
