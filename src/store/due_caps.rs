//! Start-up due-time caps: how far ahead each kind of stored work can
//! rightly have been scheduled by this config, so that a due time a
//! previous run stored further off (its clock was stepped, or the config's
//! waits were shortened) is brought in ([`super::Store::bring_in_due`];
//! the embedded store's check is `sled/due_cap.rs`).

/// The longest a subscriber's work can have been scheduled ahead (ms): a
/// retry (its schedule's longest delay, its `Retry-After` cap, a provider
/// look-up's longest wait) and, for an `after_archive` subscriber only, a
/// delivery waiting for media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCap {
    pub subscriber: String,
    pub retry_ms: u64,
    /// `None`: the subscriber is not `after_archive` (its deliveries do not
    /// wait for media; one left waiting by an earlier config is capped by
    /// `retry_ms`).
    pub media_ms: Option<u64>,
}

/// Everything the start-up check ([`Store::bring_in_due`]) caps: each
/// subscriber's deliveries, each reconciling route's task polls (route
/// name, its longest wait between polls in ms) and media downloads (their
/// longest wait between tries).
///
/// [`Store::bring_in_due`]: super::Store::bring_in_due
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueCaps {
    pub subscribers: Vec<DueCap>,
    pub tasks: Vec<(String, u64)>,
    pub media_ms: u64,
}
