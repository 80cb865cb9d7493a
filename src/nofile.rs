//! The open-files limit: every connection (public, admin, to subscribers,
//! media downloads) and every store file takes a descriptor. A shell's usual
//! soft limit (1,024) is below what the default `server.max_connections`
//! (4,096) allows, and idle connections at the cap would then make accepts
//! and deliveries fail with "too many open files". At start the soft limit
//! is raised to the hard one (as the shipped unit's `LimitNOFILE=` makes it
//! anyway), and a limit still below what the configuration can use is named.

use rustix::process::{getrlimit, setrlimit, Resource};

use crate::config::Config;

/// Descriptors beyond the connections: the store's files, logs, the admin
/// listener's connections, DNS, media files.
const MARGIN: u64 = 256;

/// What the configuration can use at once, about: the public connection
/// cap, every push subscriber's concurrency, the media downloads, a margin.
pub fn wanted(config: &Config) -> u64 {
    let deliveries = config
        .subscribers()
        .fold(0u64, |n, s| n.saturating_add(s.concurrency as u64));
    (config.server.max_connections as u64)
        .saturating_add(deliveries)
        .saturating_add(config.media.concurrency as u64)
        .saturating_add(MARGIN)
}

/// Raise the soft limit to the hard one; warn when the result is below
/// [`wanted`]. Returns the soft limit in force (None if unlimited).
pub fn raise(config: &Config) -> Option<u64> {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = ?limit.current, to = ?raised.current, "open-files limit raised to the hard limit");
                limit = raised;
            }
            Err(e) => tracing::debug!(error = %e, "cannot raise the open-files limit"),
        }
    }
    let want = wanted(config);
    if let Some(soft) = limit.current.filter(|soft| *soft < want) {
        tracing::warn!(
            limit = soft,
            wanted = want,
            "the open-files limit is below what server.max_connections and the subscribers' concurrency can use: \
             idle connections at the cap would make accepts and deliveries fail with 'too many open files'; raise \
             it (LimitNOFILE= in the unit, ulimit -n) or lower server.max_connections"
        );
    }
    limit.current
}
