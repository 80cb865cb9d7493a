//! Warnings that weigh one section against another (a config that ran
//! keeps starting; each names its file and key): a stop that outlasts the
//! shipped unit's timeout, media kept shorter than the events naming it
//! (raised), retries outliving retention, bodies larger than a forwarder
//! takes, `after_archive` on a route archiving nothing, and a `kie`
//! signature that leaves the body open.

use std::time::Duration;

use super::Validator;
use crate::config::values::*;
use crate::config::Route;

impl Validator<'_> {
    /// A `server.shutdown_grace` whose stop (grace plus the margin for closing
    /// the store) outlasts the shipped unit's `TimeoutStopSec`: systemd would
    /// kill the relay before it closed the store.
    pub(super) fn shutdown_grace_warning(&self, server: &ServerConfig) -> Option<String> {
        use crate::supervise::{SHUTDOWN_MARGIN, UNIT_TIMEOUT_STOP};
        let stop = server.shutdown_grace.saturating_add(SHUTDOWN_MARGIN);
        (stop > UNIT_TIMEOUT_STOP).then(|| {
            format!(
                "{}: key `server.shutdown_grace`: a stop takes up to the grace plus {} s ({stop}), longer than \
                 the shipped unit's TimeoutStopSec={}s: under that unit, raise it to at least {stop} \
                 (`systemctl edit hookrelay`, then `TimeoutStopSec={}s` under [Service]), or systemd kills the \
                 relay before it closes the store (this check does not read the unit: once it is raised, or \
                 outside that unit, this warning does not apply)",
                self.file.display(),
                SHUTDOWN_MARGIN.as_secs(),
                UNIT_TIMEOUT_STOP.as_secs(),
                stop.as_secs().saturating_add(u64::from(stop.subsec_nanos() > 0)),
                stop = humantime::format_duration(stop),
            )
        })
    }

    /// `media.retention` must outlast every delivery that may still name a
    /// stored file: an event of a route that archives media is kept while
    /// its deliveries retry and `store.retention` after (a dead letter), and
    /// a replay then runs the schedule again. A shorter one removed files
    /// (and their URL rows) that an undelivered event still needed: the
    /// delivery said the event had no media. Such a setting is raised to
    /// that life, with a warning naming the key (a config that ran keeps
    /// starting), rather than checked per file at each sweep (which would
    /// need an index from URL to events on both backends).
    pub(super) fn media_outlives_events(
        &self,
        media: &mut MediaConfig,
        store: &StoreConfig,
        routes: &[Route],
    ) -> Option<String> {
        let span = routes
            .iter()
            .filter(|r| !r.media.is_empty())
            .flat_map(|r| &r.subscribers)
            // A subscriber's Retry-After lengthens each delay up to its
            // `max_retry_after`: the deliveries live that long.
            .map(|s| s.retry.longest_span_with_retry_after())
            .max()?;
        let need = store.retention.saturating_add(span.saturating_mul(2));
        if media.retention >= need {
            return None;
        }
        let need = Duration::from_secs(need.as_secs().saturating_add(1));
        let set = media.retention;
        media.retention = need;
        Some(format!(
            "{}: key `media.retention`: {} is shorter than the life of the events whose files it keeps \
             (store.retention, {}, plus twice the longest retry schedule of a subscriber of a route that \
             archives media, {} with jitter and each delay lengthened to its max_retry_after by a Retry-After, run again by a replay): files are kept {} so that a delivery \
             still due never finds its file gone; set it to at least that to silence this warning",
            self.file.display(),
            humantime::format_duration(set),
            humantime::format_duration(store.retention),
            humantime::format_duration(Duration::from_secs(span.as_secs().saturating_add(1))),
            humantime::format_duration(need),
        ))
    }

    /// Subscribers whose retry schedule (with the most jitter, each delay
    /// lengthened to `max_retry_after` by a `Retry-After`) outlasts the
    /// retention: their deliveries outlive the retention of their events.
    pub(super) fn retention_warnings(&self, store: &StoreConfig, routes: &[Route]) -> Vec<String> {
        let long: Vec<(String, Duration)> = routes
            .iter()
            .flat_map(|r| &r.subscribers)
            .map(|s| (format!("{:?}", s.name), s.retry.longest_span_with_retry_after()))
            .filter(|(_, span)| *span > store.retention)
            .collect();
        let Some(longest) = long.iter().map(|(_, d)| *d).max() else {
            return Vec::new();
        };
        let names: Vec<&str> = long.iter().map(|(n, _)| n.as_str()).collect();
        let consequence = match store.backend {
            StoreBackend::Sled => {
                "its deliveries can still be retried after their event's retention (the event is kept until they end, \
                 a dead letter for the retention after it dies)"
            }
            // NATS removes the event at max_age whatever its deliveries' state.
            StoreBackend::Nats(_) => {
                "in cluster mode an event expires at the retention whether or not its deliveries ended, so retries \
                 still pending then are lost (neither sent nor kept as dead letters): raise store.retention or \
                 shorten the schedule"
            }
        };
        vec![format!(
            "{}: key `store.retention`: {} is shorter than the retry schedule of subscriber {} (up to {} with jitter and each delay \
             lengthened to its max_retry_after by a Retry-After): \
             {consequence}",
            self.file.display(),
            humantime::format_duration(store.retention),
            names.join(", "),
            humantime::format_duration(Duration::from_secs(longest.as_secs())),
        )]
    }

    /// Pull subscribers on a relay that accepts bodies larger than
    /// `hookrelay forward` can receive in a pull answer.
    pub(super) fn pull_body_warnings(&self, server: &crate::config::ServerConfig, routes: &[Route]) -> Vec<String> {
        let max = crate::pull::wire::MAX_FORWARDED_BODY;
        let pull = routes.iter().flat_map(|r| &r.subscribers).find(|s| s.pull().is_some());
        match pull {
            Some(s) if server.max_body > max => vec![format!(
                "{}: key `server.max_body`: {} bytes is more than hookrelay forward receives in a pull answer \
                 ({} MiB of body): a larger callback for pull subscriber {:?} (or any other) can only be \
                 pulled by another client; with hookrelay forward its leases run out until it is a dead letter",
                self.file.display(),
                server.max_body,
                max >> 20,
                s.name
            )],
            _ => Vec::new(),
        }
    }

    /// `after_archive` subscribers on a route that archives nothing: they are
    /// delivered at once (with an empty `hookrelay-media`), probably not what
    /// was meant.
    pub(super) fn after_archive_warnings(&self, routes: &[Route]) -> Vec<String> {
        routes
            .iter()
            .filter(|r| r.media.is_empty())
            .flat_map(|r| r.subscribers.iter().filter(|s| s.after_archive).map(move |s| (r, s)))
            .map(|(r, s)| {
                format!(
                    "{}: subscriber {:?}: after_archive = true, but route {:?} has no media pointers (no `media` key \
                     and no preset that sets one): its deliveries go out at once with an empty hookrelay-media",
                    self.file.display(),
                    s.name,
                    r.name
                )
            })
            .collect()
    }

    /// `kie` signatures without a token: that signature covers the task id
    /// and the time, not the body, so a signed callback seen once can carry
    /// any body.
    pub(super) fn open_route_warnings(&self, routes: &[Route]) -> Vec<String> {
        let mut out = Vec::new();
        for r in routes {
            let kie = matches!(r.signature, Some(crate::config::Signature::Kie { .. }));
            if kie && r.tokens.is_empty() && r.verify == crate::config::Verify::Off {
                out.push(format!(
                    "{}: route {:?}: the kie signature covers the task id and time, not the body: \
                     add tokens (or verify = \"fetch\") so that a callback's body cannot be replaced",
                    self.file.display(),
                    r.name
                ));
            }
        }
        out
    }
}
