//! Which route a due-index (`W`) row belongs to. The row's value names the
//! route whose log holds the event, so a subscriber moved to another route by
//! a reload keeps the waiting work (retries, `Retry-After`, replays, media
//! re-checks) of its old route: only that route's cursor hands it out, once
//! the subscriber is on that route again, and until then it counts as the
//! old route's pending work (listed as removed), not as the new route's. Only
//! a row of the cursor's own route whose event is not in that route's log was
//! removed by retention.
//!
//! Rows written before the value named the route (empty) are labelled once,
//! when the writer starts: with the subscriber's route when its log holds the
//! event, else with the route whose log does (a subscriber moved before),
//! else with its route (the event is gone: its cursor forgets the row).

use std::collections::HashMap;

use super::keys;
use super::registry::Registry;
use crate::store::StoreError;

/// `W` rows per (route, subscriber), labelling rows that name no route.
pub(super) fn load(tree: &sled::Tree, reg: &Registry) -> Result<HashMap<(u32, u32), u64>, StoreError> {
    let mut counts: HashMap<(u32, u32), u64> = HashMap::new();
    let mut labels = sled::Batch::default();
    let mut labelled = 0usize;
    for item in tree.scan_prefix([keys::W]) {
        let (k, v) = item?;
        let Some(sub) = k.get(1..5).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes) else {
            continue;
        };
        let route = match keys::due_route(&v) {
            Some(route) => route,
            None => {
                let Some((_, id)) = keys::parse_due(&k) else { continue };
                let Some(own) = reg.sub_route(sub) else { continue };
                let mut route = own;
                if !tree.contains_key(keys::log(own, id))? {
                    for r in reg.route_numbers() {
                        if tree.contains_key(keys::log(r, id))? {
                            route = r;
                            break;
                        }
                    }
                }
                labels.insert(k.to_vec(), keys::due_value(route).to_vec());
                labelled += 1;
                route
            }
        };
        *counts.entry((route, sub)).or_default() += 1;
    }
    if labelled > 0 {
        tree.apply_batch(labels)?;
        tree.flush()?;
        tracing::info!(rows = labelled, "due-index rows labelled with their route");
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventId;

    #[test]
    fn a_row_without_a_route_is_labelled_with_the_route_whose_log_has_its_event() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        let mut rows = Vec::new();
        let mut reg = Registry::default();
        let (t, u) = (reg.route_or_new("t", &mut rows), reg.route_or_new("u", &mut rows));
        let (a, _) = reg.sub_or_new("a", t, &mut rows);
        let (a2, _) = reg.sub_or_new("a", u, &mut rows);
        assert_eq!(a, a2, "moved, same number");
        let (on_t, on_u, gone) = (
            EventId::from_parts(1, 1),
            EventId::from_parts(2, 2),
            EventId::from_parts(3, 3),
        );
        tree.insert(keys::log(t, on_t), vec![0]).unwrap();
        tree.insert(keys::log(u, on_u), vec![0]).unwrap();
        for id in [on_t, on_u, gone] {
            tree.insert(keys::due(a, 5, id), Vec::new()).unwrap();
        }
        let counts = load(&tree, &reg).unwrap();
        assert_eq!(counts.get(&(t, a)), Some(&1));
        assert_eq!(counts.get(&(u, a)), Some(&2), "its own event and the gone one");
        let route_of = |id| keys::due_route(&tree.get(keys::due(a, 5, id)).unwrap().unwrap());
        assert_eq!(route_of(on_t), Some(t));
        assert_eq!(route_of(on_u), Some(u));
        assert_eq!(route_of(gone), Some(u));
        assert_eq!(load(&tree, &reg).unwrap(), counts, "labelled once");
    }
}
