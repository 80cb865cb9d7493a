//! What the relay reads first, read at open: a store whose files are
//! damaged there (sled's checks fail on a page) is refused, naming it,
//! instead of the relay saying it is ready, taking callbacks, and failing
//! its lanes' first read a moment later (the callbacks taken meanwhile were
//! gone after the restart that followed; crash review, stop 61).

use super::keys::{self, CursorRow};
use super::registry::Registry;
use crate::store::StoreError;

/// Log rows read from where a cursor stands (a lane reads ahead, and from a
/// cursor row written lazily it scans forward to where it was): at most
/// this many, so a start with a large backlog is not held up.
#[cfg(not(test))]
const LANE_READ: usize = 10_000;
#[cfg(test)]
const LANE_READ: usize = 100;

/// The first and last row of each kind, and for every subscriber its cursor,
/// the log rows its lane reads first and the first of its waiting work.
pub(super) fn first_reads(tree: &sled::Tree, registry: &Registry) -> Result<(), StoreError> {
    for kind in b'A'..=b'Z' {
        tree.scan_prefix([kind]).next().transpose()?;
        tree.scan_prefix([kind]).next_back().transpose()?;
    }
    for sub in registry.sub_numbers() {
        let Some(route) = registry.sub_route(sub) else { continue };
        let Some(row) = tree.get(keys::cursor(route, sub))?.and_then(|v| CursorRow::decode(&v)) else {
            continue;
        };
        for item in tree
            .range(keys::log(route, row.at)..keys::log_end(route))
            .take(LANE_READ)
        {
            item?;
        }
        tree.scan_prefix(keys::due_prefix(sub)).next().transpose()?;
    }
    Ok(())
}
