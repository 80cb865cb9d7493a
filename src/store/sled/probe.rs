//! What the relay reads first, read before it takes callbacks: a store
//! whose files are damaged there (sled's checks fail on a page) is refused
//! at start, naming the store and the subscriber whose pending deliveries
//! cannot be read, instead of the relay saying it is ready, taking
//! callbacks, and failing its lanes' first read a moment later (the
//! callbacks taken meanwhile were gone after the restart that followed;
//! crash review, stop 61). Only configured subscribers are read: one taken
//! out of the config (its pending deliveries given up) no longer holds the
//! start.

use super::keys::{self, CursorRow};
use super::{Inner, SledStore};
use crate::store::StoreError;

/// Log rows read from where a cursor stands (a lane reads ahead, and from a
/// cursor row written lazily it scans forward to where it was): at most
/// this many, so a start with a large backlog is not held up.
#[cfg(not(test))]
const LANE_READ: usize = 10_000;
#[cfg(test)]
const LANE_READ: usize = 100;

impl SledStore {
    /// At start, once the configured subscribers are registered: the first
    /// and last row of each kind, and for every configured subscriber its
    /// cursor, the log rows its lane reads first and the first of its
    /// waiting work.
    pub async fn check_first_reads(&self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || first_reads(&inner))
            .await
            .map_err(|e| StoreError::Engine(format!("the store's check stopped: {e}")))?
    }
}

/// Damage met reading subscriber `name`'s pending deliveries, said with the
/// way out short of a backup.
pub(super) fn backlog_damaged(name: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Damaged(why) => StoreError::Damaged(format!(
            "subscriber {name:?}'s pending deliveries cannot be read: {why}; taking {name:?} out of the config \
             gives them up and lets the relay start"
        )),
        e => e,
    }
}

fn first_reads(inner: &Inner) -> Result<(), StoreError> {
    let tree = &inner.tree;
    for kind in b'A'..=b'Z' {
        tree.scan_prefix([kind]).next().transpose()?;
        tree.scan_prefix([kind]).next_back().transpose()?;
    }
    let subs: Vec<(u32, u32, String)> = {
        let reg = super::read_lock(&inner.registry);
        reg.route_numbers()
            .into_iter()
            .flat_map(|route| {
                let reg = &reg;
                reg.route_subs(route)
                    .iter()
                    .map(move |&sub| (route, sub, reg.sub_name(sub).unwrap_or_default().to_string()))
            })
            .collect()
    };
    for (route, sub, name) in subs {
        let named = |e: StoreError| backlog_damaged(&name, e);
        let Some(row) = tree
            .get(keys::cursor(route, sub))
            .map_err(|e| named(e.into()))?
            .and_then(|v| CursorRow::decode(&v))
        else {
            continue;
        };
        for item in tree
            .range(keys::log(route, row.at)..keys::log_end(route))
            .take(LANE_READ)
        {
            item.map_err(|e| named(e.into()))?;
        }
        tree.scan_prefix(keys::due_prefix(sub))
            .next()
            .transpose()
            .map_err(|e| named(e.into()))?;
    }
    Ok(())
}
