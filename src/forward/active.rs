//! The messages a forwarder is delivering locally now (see [`Active`]).

use std::collections::HashMap;
use std::sync::Mutex;

use super::acker::Finished;

/// Ids being delivered locally now: until when the relay takes their
/// answer (raised when it leased one to us again meanwhile) and, once the
/// local service answered, the outcome, kept here until the acker has it (a
/// stop that cuts the task off while it waits for room sends it then).
#[derive(Default)]
pub(super) struct Active(Mutex<HashMap<String, Entry>>);

pub(super) struct Entry {
    pub(super) until: tokio::time::Instant,
    /// The attempt number of the latest hand-out (its answer settles that one).
    pub(super) attempt: u32,
    pub(super) outcome: Option<Finished>,
    /// Being posted to the local service (counted in flight), not merely
    /// offered by a pull (one brought by the pull a stop cut short).
    pub(super) posting: bool,
}

impl Active {
    pub(super) fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `id` offered with an answer taken until `until`: true when it is not
    /// being delivered here already (it is now), else its deadline is raised
    /// (the new lease is the later one: the running delivery's answer is kept
    /// for it).
    pub(super) fn offer(&self, id: &str, until: tokio::time::Instant, attempt: u32) -> bool {
        let mut map = self.map();
        match map.get_mut(id) {
            Some(e) => {
                e.until = e.until.max(until);
                e.attempt = e.attempt.max(attempt);
                if let Some(f) = &mut e.outcome {
                    f.keep_until = f.keep_until.max(until);
                    f.attempt = f.attempt.max(attempt);
                }
                false
            }
            None => {
                map.insert(
                    id.to_string(),
                    Entry {
                        until,
                        attempt,
                        outcome: None,
                        posting: false,
                    },
                );
                true
            }
        }
    }

    /// `id` is being posted to the local service now.
    pub(super) fn posting(&self, id: &str) {
        if let Some(e) = self.map().get_mut(id) {
            e.posting = true;
        }
    }

    /// The outcome of a delivery, kept until [`Active::take`]; returned with
    /// its deadline raised by a lease taken again meanwhile.
    pub(super) fn answered(&self, mut f: Finished) -> Finished {
        if let Some(e) = self.map().get_mut(&f.id) {
            f.keep_until = f.keep_until.max(e.until);
            f.attempt = f.attempt.max(e.attempt);
            e.outcome = Some(f.clone());
        }
        f
    }

    /// The outcome of `id`, taken to go to the acker now: as kept, with its
    /// deadline raised by a lease taken again while it waited.
    pub(super) fn take(&self, id: &str) -> Option<Finished> {
        self.map().remove(id)?.outcome
    }
}
