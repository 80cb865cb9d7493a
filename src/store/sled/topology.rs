//! The writer's side of registering the configured routes and subscribers:
//! their numbers, a new subscriber's cursor at the tail of its route's log,
//! the end of the log for a subscriber removed from the config, and one
//! that comes back going on from where it is. Part of the writer
//! ([`super::group_commit`]).

use std::collections::HashMap;

use super::batch::Batch;
use super::group_commit::Writer;
use super::keys::{self, CursorRow};
use crate::store::{EventId, StoreError, Topology};

impl Writer {
    /// Number the configured routes and subscribers; a subscriber new to its
    /// route starts at the tail of the route's log.
    pub(super) fn register(&mut self, t: &Topology) -> Result<(), StoreError> {
        let tree = self.inner.tree.clone();
        let mut b = Batch::new(&tree);
        let mut rows = Vec::new();
        let mut configured = HashMap::new();
        {
            let mut reg = super::write_lock(&self.inner.registry);
            let before: Vec<(u32, u32)> = reg
                .route_numbers()
                .into_iter()
                .flat_map(|r| reg.route_subs(r).iter().map(move |s| (r, *s)).collect::<Vec<_>>())
                .collect();
            for (route_name, subs) in &t.routes {
                let route = reg.route_or_new(route_name, &mut rows);
                let mut list = Vec::new();
                for s in subs {
                    let (sub, _) = reg.sub_or_new(s, route, &mut rows);
                    list.push(sub);
                    match self.cursors.get_mut(&(route, sub)) {
                        Some(c) if c.end > 0 => {
                            // Back in the config: its log goes on from here.
                            c.end = 0;
                            self.dirty_cursors.insert((route, sub));
                            self.moved.insert((route, sub));
                        }
                        Some(_) => {}
                        None => {
                            let at = tree
                                .range(keys::log_prefix(route)..keys::log_end(route))
                                .next_back()
                                .transpose()?
                                .and_then(|(k, _)| keys::id_at_5(&k))
                                .map_or(EventId::ZERO, |id| id.next());
                            let seq = *self.tails.entry(route).or_insert(1);
                            let c = CursorRow {
                                at,
                                seq,
                                high_water: EventId::ZERO,
                                end: 0,
                                recover_seq: 0,
                            };
                            self.cursors.insert((route, sub), c);
                            self.dirty_cursors.insert((route, sub));
                            self.moved.insert((route, sub));
                        }
                    }
                }
                configured.insert(route, list);
            }
            // Removed from the config: no later event is meant for them.
            for (route, sub) in before {
                if configured.get(&route).is_some_and(|l: &Vec<u32>| l.contains(&sub)) {
                    continue;
                }
                let tail = *self.tails.entry(route).or_insert(1);
                if let Some(c) = self.cursors.get_mut(&(route, sub)) {
                    if c.end == 0 {
                        c.end = tail;
                        self.dirty_cursors.insert((route, sub));
                        self.moved.insert((route, sub));
                    }
                }
            }
            reg.set_configured(configured);
        }
        for (k, v) in rows {
            b.put(k, v);
        }
        self.commit(b)
    }
}
