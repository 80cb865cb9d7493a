//! Readiness as far as the store goes: what a relay that is not ready
//! lacks — a store it can write, room for callbacks on the store's disk, or
//! both — each kept apart, so one coming back does not hide the other;
//! every change logged once, whoever noticed it; and the callbacks refused
//! while the store is away, counted for their rate-limited log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// How often refused callbacks are summed up in the log while the store is
/// away (at most; only when callbacks keep coming).
pub const REFUSAL_SUMMARY_MS: u64 = 10_000;

/// What a relay not ready lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lack {
    /// A store it can write (a failed write, a failed check, no answer).
    Store,
    /// Room on the embedded store's disk (under `store.min_free`).
    Space,
}

impl Lack {
    fn said(self, why: &str) -> String {
        match self {
            Lack::Store => format!("the store cannot be written: {why}"),
            Lack::Space => format!("no room for callbacks on the store's disk: {why}"),
        }
    }
}

/// Why, for each lack there is.
#[derive(Default)]
struct Lacks {
    store: Option<String>,
    space: Option<String>,
}

impl Lacks {
    fn slot(&mut self, lack: Lack) -> &mut Option<String> {
        match lack {
            Lack::Store => &mut self.store,
            Lack::Space => &mut self.space,
        }
    }

    fn none(&self) -> bool {
        self.store.is_none() && self.space.is_none()
    }
}

/// Callbacks refused for the store since it was lost.
#[derive(Default)]
struct Refusals {
    /// In all (said when the store is back).
    total: u64,
    /// Since the last summary (or the first refusal), not counting it.
    in_window: u64,
    window_start_ms: u64,
}

/// How to log a callback refused because the store could not take it.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The first since the store was lost: an error with the reason.
    First,
    /// One more, counted: debug.
    Counted,
    /// Time for a summary: `refused` callbacks in the last `secs` seconds.
    Summary { refused: u64, secs: u64 },
}

/// The store's part of readiness.
#[derive(Default)]
pub struct StoreHealth {
    /// Nothing lacking: read by every readiness check without the lock.
    ok: AtomicBool,
    lacks: Mutex<Lacks>,
    refusals: Mutex<Refusals>,
}

impl StoreHealth {
    pub fn new() -> Self {
        StoreHealth {
            ok: AtomicBool::new(true),
            ..Default::default()
        }
    }

    /// Nothing lacking.
    pub fn ok(&self) -> bool {
        self.ok.load(Ordering::Acquire)
    }

    /// Record that `lack` is there (`Some(why)`, the reason replaced if it
    /// was already) or gone (`None`); the other lack is left as it is.
    /// Whether it was there before. A change is logged here, once: a loss at
    /// `error` with its reason, an end at `info`, saying whether the relay
    /// is ready again or what it still lacks.
    pub fn set(&self, lack: Lack, problem: Option<String>) -> bool {
        // Under the lock, so two callers noticing the same change log it once.
        let mut lacks = self.lacks.lock().unwrap_or_else(|e| e.into_inner());
        let had = lacks.slot(lack).is_some();
        let other = match lack {
            Lack::Store => lacks.space.clone().map(|why| Lack::Space.said(&why)),
            Lack::Space => lacks.store.clone().map(|why| Lack::Store.said(&why)),
        };
        match (&problem, had) {
            (Some(why), false) => match lack {
                Lack::Store => {
                    *self.refusals.lock().unwrap_or_else(|e| e.into_inner()) = Refusals::default();
                    tracing::error!(
                        error = %why,
                        "store unreachable (cannot be written); ingest answers 503 and /readyz is not ready"
                    )
                }
                Lack::Space => tracing::error!(
                    error = %why,
                    "no room for callbacks on the store's disk; /readyz is not ready until there is"
                ),
            },
            (None, true) => match (lack, other) {
                (Lack::Store, other) => {
                    let refused = std::mem::take(&mut *self.refusals.lock().unwrap_or_else(|e| e.into_inner())).total;
                    match other {
                        None => tracing::info!(refused_callbacks = refused, "store reachable again; ready"),
                        Some(still) => tracing::info!(refused_callbacks = refused, still = %still,
                            "store reachable again; still not ready"),
                    }
                }
                (Lack::Space, None) => tracing::info!("room on the store's disk again; ready"),
                (Lack::Space, Some(still)) => {
                    tracing::info!(still = %still, "room on the store's disk again; still not ready")
                }
            },
            _ => {}
        }
        *lacks.slot(lack) = problem;
        self.ok.store(lacks.none(), Ordering::Release);
        had
    }

    /// Whether `lack` is there now.
    pub fn lacks(&self, lack: Lack) -> bool {
        !self.ok()
            && self
                .lacks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .slot(lack)
                .is_some()
    }

    /// Why the relay is not ready as far as the store goes, if it is not:
    /// each lack there is, with its reason.
    pub fn why_not(&self) -> Option<String> {
        if self.ok() {
            return None;
        }
        let lacks = self.lacks.lock().unwrap_or_else(|e| e.into_inner());
        let said: Vec<String> = [
            lacks.store.as_deref().map(|why| Lack::Store.said(why)),
            lacks.space.as_deref().map(|why| Lack::Space.said(why)),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!said.is_empty()).then(|| said.join("; "))
    }

    /// Count a callback refused because the store could not take it, and
    /// say how to log it: the first since the store was lost at `error`, the
    /// rest at `debug` with a summary every [`REFUSAL_SUMMARY_MS`] (a relay
    /// taking thousands of callbacks a second must not write as many lines
    /// while the store is away).
    pub fn refused_callback(&self, now_ms: u64) -> Refusal {
        let mut r = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        r.total += 1;
        if r.total == 1 {
            r.window_start_ms = now_ms;
            return Refusal::First;
        }
        r.in_window += 1;
        let took_ms = now_ms.saturating_sub(r.window_start_ms);
        if took_ms < REFUSAL_SUMMARY_MS {
            return Refusal::Counted;
        }
        let refused = std::mem::take(&mut r.in_window);
        r.window_start_ms = now_ms;
        Refusal::Summary {
            refused,
            secs: took_ms / 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before, one slot held the reason of whichever lack was found last:
    /// a want of room found while the store had failed replaced the
    /// failure, and once room was back the relay said it was ready.
    #[test]
    fn room_coming_back_does_not_hide_a_store_that_cannot_be_written() {
        let h = StoreHealth::new();
        assert!(h.ok() && h.why_not().is_none());
        assert!(!h.set(Lack::Store, Some("the store failed a write earlier".into())));
        assert!(!h.set(Lack::Space, Some("12 MiB free, under store.min_free".into())));
        let why = h.why_not().unwrap();
        assert!(
            why.contains("the store cannot be written: the store failed a write earlier"),
            "{why}"
        );
        assert!(
            why.contains("no room for callbacks on the store's disk: 12 MiB free"),
            "{why}"
        );
        assert!(h.set(Lack::Space, None));
        assert!(!h.ok());
        assert!(h.lacks(Lack::Store) && !h.lacks(Lack::Space));
        assert_eq!(
            h.why_not().unwrap(),
            "the store cannot be written: the store failed a write earlier"
        );
        assert!(h.set(Lack::Store, None));
        assert!(h.ok() && h.why_not().is_none());
    }

    #[test]
    fn a_store_back_leaves_a_want_of_room() {
        let h = StoreHealth::new();
        h.set(Lack::Space, Some("low".into()));
        h.set(Lack::Store, Some("no answer within 5s".into()));
        h.set(Lack::Store, None);
        assert!(!h.ok());
        assert_eq!(h.why_not().unwrap(), "no room for callbacks on the store's disk: low");
        // A newer reason replaces the old one of the same lack.
        h.set(Lack::Space, Some("lower".into()));
        assert_eq!(h.why_not().unwrap(), "no room for callbacks on the store's disk: lower");
        h.set(Lack::Space, None);
        assert!(h.ok());
    }

    #[test]
    fn refusals_are_counted_from_the_loss_and_summed_up() {
        let h = StoreHealth::new();
        h.set(Lack::Store, Some("gone".into()));
        assert_eq!(h.refused_callback(1_000), Refusal::First);
        assert_eq!(h.refused_callback(2_000), Refusal::Counted);
        assert_eq!(
            h.refused_callback(1_000 + REFUSAL_SUMMARY_MS),
            Refusal::Summary { refused: 2, secs: 10 }
        );
        // Back, then lost again: the first refusal is logged in full again.
        h.set(Lack::Store, None);
        h.set(Lack::Store, Some("gone again".into()));
        assert_eq!(h.refused_callback(50_000), Refusal::First);
    }
}
