//! Messages the local service answered `2xx` whose acknowledgement the relay
//! has not confirmed yet (on its way, waiting for a relay that is away, or
//! given up: the lease and its lapse ran out first, or the relay no longer
//! leased them). The relay offers such a message again; this forwarder then
//! acknowledges it without posting it to the local service a second time.
//! An id is forgotten once the relay confirms its acknowledgement, or
//! refuses it again naming it `delivered` (the first one's answer was lost)
//! — a later offer is an operator's replay, delivered as asked — and the oldest go
//! first past [`CAPACITY`]. Kept in memory only: after a restart of the
//! forwarder such a message is delivered again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Ids remembered at most (about 100 bytes each).
pub const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct Unacked {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Id → when it was (last) remembered.
    ids: HashMap<String, u64>,
    /// When → id, oldest first, to forget the oldest past the capacity.
    order: BTreeMap<u64, String>,
    next: u64,
}

impl Unacked {
    /// The local service answered `id` with a 2xx.
    pub fn delivered(&self, id: &str) {
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let seq = i.next;
        i.next += 1;
        if let Some(old) = i.ids.insert(id.to_string(), seq) {
            i.order.remove(&old);
        }
        i.order.insert(seq, id.to_string());
        while i.ids.len() > CAPACITY {
            let Some((_, oldest)) = i.order.pop_first() else { break };
            i.ids.remove(&oldest);
        }
    }

    /// Whether `id` was delivered here and its acknowledgement not confirmed.
    pub fn contains(&self, id: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ids
            .contains_key(id)
    }

    /// The relay confirmed the acknowledgement of `ids`.
    pub fn confirmed<'a>(&self, ids: impl IntoIterator<Item = &'a String>) {
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            if let Some(seq) = i.ids.remove(id) {
                i.order.remove(&seq);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_until_confirmed_and_bounded() {
        let u = Unacked::default();
        u.delivered("a");
        u.delivered("b");
        assert!(u.contains("a") && u.contains("b"));
        u.confirmed(&["a".to_string()]);
        assert!(!u.contains("a") && u.contains("b"));
        for n in 0..CAPACITY + 5 {
            u.delivered(&format!("x{n}"));
        }
        assert_eq!(u.len(), CAPACITY);
        assert!(!u.contains("b") && !u.contains("x0") && u.contains(&format!("x{}", CAPACITY + 4)));
    }
}
