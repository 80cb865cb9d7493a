//! Work a pull lane stopped by a reload still leases, held for the
//! subscriber's next lanes (see [`handover`](super::handover)): treated as
//! handed out until the stopped lane has recorded it.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{EventId, Ticket, WorkSource};

/// Work that stopped pull lanes of one subscriber still lease (or are
/// recording), by event. The lane whose turn it is holds it as handed out
/// from when it opens its source, and lets it go once it is recorded.
#[derive(Debug, Default)]
pub(super) struct Held {
    state: Mutex<HeldState>,
    /// Woken when something was settled.
    settled: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct HeldState {
    tickets: HashMap<EventId, Ticket>,
    /// Recorded since the current lane opened its source: it lets them go.
    settled: Vec<Ticket>,
}

impl Held {
    fn state(&self) -> std::sync::MutexGuard<'_, HeldState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stopped pull lane still leases `ticket`'s work.
    pub(super) fn hold(&self, event: EventId, ticket: Ticket) {
        self.state().tickets.insert(event, ticket);
    }

    /// Its lease was recorded (acknowledged, handed back, or run out): the
    /// lane whose turn it is lets the work go.
    pub(super) fn settle(&self, event: &EventId) {
        let mut state = self.state();
        if let Some(t) = state.tickets.remove(event) {
            state.settled.push(t);
            drop(state);
            self.settled.notify_one();
        }
    }

    /// Hold everything still leased in a source just opened.
    pub(super) fn adopt_into(&self, source: &mut WorkSource) {
        let mut state = self.state();
        state.settled.clear();
        for t in state.tickets.values() {
            source.adopt(t);
        }
    }

    /// Resolves when something was settled.
    pub(super) async fn changed(&self) {
        self.settled.notified().await;
    }

    /// Let go of what was settled in the source whose turn it is.
    pub(super) async fn release_settled(&self, source: &mut WorkSource) {
        let settled = std::mem::take(&mut self.state().settled);
        for t in settled {
            source.settled_elsewhere(&t).await;
        }
    }
}
