//! `/metrics`: gauges that are read when scraped (queue depth, dead letters, oldest pending
//! age, leases and time since the last pull, store size, certificate expiry)
//! are refreshed, those of subscribers a reload removed or moved are removed,
//! then everything is encoded.

use crate::metrics::{Metrics, SourceLabels, SubGauges, SubLabels};
use crate::state::App;
use crate::store::SubscriberStats;

pub(super) async fn render(app: &App) -> String {
    let m = &app.metrics;
    let now = crate::clock::now_ms();
    // Every subscriber a series was made for: those without a lane lose theirs.
    let named = m.subscriber_names();
    // None while the store cannot be read (NATS away): then the oldest
    // pending age is not known, and its series is left out rather than 0.
    // Removed subscribers included, counted as `/api/subscribers` does (in
    // cluster mode a look at their messages, kept for 30 s).
    let stats = app.store.subscriber_stats().await.ok();
    // A configured subscriber's own row: not the route it was moved from.
    let current: Option<Vec<SubscriberStats>> = stats
        .as_deref()
        .map(|s| s.iter().filter(|x| app.delivery.is_current(x)).cloned().collect());
    // What each name still has pending on routes it is not on now (moved
    // from, or removed), every such route summed: counted in its gauges.
    let left = stats.as_deref().map(|s| left_behind(app, s)).unwrap_or_default();
    for lane in app.delivery.lanes() {
        let name = lane.subscriber().name.clone();
        let labels = m.sub(&name);
        let extra = left.get(&name).copied().unwrap_or_default();
        let lane_depth = lane.queue_depth();
        let depth = set_queue_depth(m, &labels, lane_depth, current.as_deref(), extra);
        set_oldest_pending(m, &labels, current.as_deref(), depth, now, extra);
        if lane_depth.is_none() {
            // Its lane waits for a reload's handover (it sets the gauge once
            // it runs): the attempts its stopped lanes still wait for, as
            // they end (the stopped lane's last count stayed until then),
            // with its own should it have started since the look above.
            let out = lane.in_flight() + app.delivery.retired_in_flight(&name, None);
            m.in_flight.get_or_create(&labels).set(out as i64);
        }
    }
    for lane in app.delivery.pull_lanes() {
        let name = lane.subscriber().name.clone();
        let labels = m.sub(&name);
        let extra = left.get(&name).copied().unwrap_or_default();
        let depth = set_queue_depth(m, &labels, lane.queue_depth(), current.as_deref(), extra);
        let leased = lane.leased() + app.delivery.stopped_pull_leased(&name);
        // A subscriber switched from push: the attempts its stopped push
        // lane still waits for count as in flight too, as the listing's.
        let out = leased + app.delivery.retired_in_flight(&name, None);
        m.in_flight.get_or_create(&labels).set(out as i64);
        m.pull_leased.get_or_create(&labels).set(leased as i64);
        m.pull_last_seconds
            .get_or_create(&labels)
            .set(lane.seconds_since_pull(now) as i64);
        set_oldest_pending(m, &labels, current.as_deref(), depth, now, extra);
    }
    forget_gone(app, &named, stats.as_deref(), &left, now);
    m.forget_routes_but(|| app.live().config.routes.iter().map(|r| r.name.clone()).collect());
    set_dead_letters(app, stats.as_deref());
    // In cluster mode JetStream's figure: absent, not kept at the last read,
    // while NATS cannot be read (one host: always known).
    match app.store.size().await {
        Ok(size) => m.store_bytes.set(size.bytes as i64),
        Err(_) => m.store_bytes.forget(),
    }
    m.ready.set(i64::from(app.ready()));
    m.unauthenticated_bytes.set(app.bodies.used() as i64);
    if let Some(cert) = app.served_certificate().flatten() {
        let source = app.tls_kind();
        m.tls_cert_expiry
            .get_or_create(&SourceLabels { source })
            .set(cert.expiry_unix());
    }
    if app.tls.is_some() || app.acme.is_some() {
        m.tls_cert_valid
            .get_or_create(&SourceLabels { source: app.tls_kind() })
            .set(i64::from(app.certificate_problem().is_none()));
    }
    m.media_queue_depth.set_known(app.store.media_queue());
    // Absent, not kept at the last read, while the store cannot be read (NATS
    // away): a stale age would hide an open task nearing `give_up`.
    // Figures of a slow walk are reused only while the store answered this
    // scrape (its stats above): not kept while NATS is away.
    match app.task_figures.get(stats.is_some(), app.store.task_stats()).await {
        Ok(t) => {
            for (state, n) in t.by_state {
                m.tasks
                    .get_or_create(&crate::metrics::StateLabels { state: state.as_str() })
                    .set(n as i64);
            }
            let age = t.oldest_open_ms.map_or(0, |r| now.saturating_sub(r) / 1000);
            m.tasks_oldest_open_seconds.set(age as i64);
        }
        Err(_) => {
            m.tasks.clear();
            m.tasks_oldest_open_seconds.forget();
        }
    }
    m.media_in_flight.set(app.media.in_flight() as i64);
    let (rows, _) = app.store.write_counts();
    m.store_writes.inc_by(rows.saturating_sub(m.store_writes.get()));
    // Leases the pull lanes a reload stopped still serve count as the
    // subscriber's, whatever it is now (push, removed): its forwarders
    // still deliver them. Set last, after the store's reads: a running pull
    // lane sets its own count meanwhile.
    for (name, n) in app.delivery.stopped_pull_leases() {
        let own = app.delivery.pull_lane(&name).map_or(0, |l| l.leased());
        m.pull_leased.get_or_create(&m.sub(&name)).set((own + n) as i64);
    }
    m.encode()
}

/// The gauges of subscribers without a lane of that kind any more (removed
/// or moved by a reload) are removed, except the backlog of a removed one
/// with deliveries still pending (its queue depth and oldest pending age, as
/// `/api/subscribers` lists it, and the attempts its stopped lane still
/// waits for): an alert on an open circuit or a silent
/// puller clears, one on a stuck backlog keeps firing. One removed with
/// nothing left (nothing pending, no dead letter) loses every series,
/// counters included ([`Metrics::forget_subscriber`]).
/// Each name's lanes are looked up now, not from the scrape's list, so a
/// reload meanwhile does not take a subscriber it adds for a removed one.
fn forget_gone(app: &App, named: &[String], stats: Option<&[SubscriberStats]>, left: &Left, now: u64) {
    let m = &app.metrics;
    // Names with dead letters kept, looked up once (not a pass over the
    // stats per name: quadratic in the subscriber history).
    let lettered: Option<std::collections::HashSet<&str>> = stats.map(|s| {
        s.iter()
            .filter(|x| x.dead_letters > 0)
            .map(|x| x.name.as_str())
            .collect()
    });
    // A removed one with a backlog may have no series yet (its name unseen
    // since a restart): its backlog is exported all the same.
    let seen: std::collections::HashSet<&str> = named.iter().map(String::as_str).collect();
    let unseen = left.keys().filter(|n| !seen.contains(n.as_str())).cloned();
    let names: Vec<String> = named.iter().cloned().chain(unseen).collect();
    for name in &names {
        let labels = m.sub(name);
        let pending = left.get(name).copied();
        let kind = if app.delivery.pull_lane(name).is_some() {
            SubGauges::Pull
        } else if app.delivery.configured_route(name).is_some() {
            SubGauges::Push
        } else if pending.is_some() {
            SubGauges::RemovedPending
        } else {
            SubGauges::Gone
        };
        // Gone with nothing left (no dead letter either, as the store says
        // now): every series of it goes, its name too.
        let letters = lettered.as_ref().map(|l| l.contains(name.as_str()));
        if kind == SubGauges::Gone && letters == Some(false) {
            m.forget_subscriber(name);
            continue;
        }
        m.keep_gauges(&labels, kind);
        if let Some(extra) = pending.filter(|_| kind == SubGauges::RemovedPending) {
            m.queue_depth.get_or_create(&labels).set(extra.0 as i64);
            let out = app.delivery.retired_in_flight(name, None);
            if out > 0 {
                m.in_flight.get_or_create(&labels).set(out as i64);
            }
            set_oldest_pending(m, &labels, Some(&[]), extra.0, now, extra);
        }
    }
}

/// `hookrelay_dead_letters`: the dead letters the store keeps for each
/// configured subscriber (0 with none), and for each removed one that still
/// has some (they can be replayed once it is back); every route's letters
/// of the name together. Read from the store's count, so replays, retention
/// and restarts show at the next scrape. Absent while the store cannot be
/// read (NATS away): a 0 then would clear an alert on letters still kept.
fn set_dead_letters(app: &App, stats: Option<&[SubscriberStats]>) {
    let m = &app.metrics;
    let Some(stats) = stats else {
        m.dead_letters.clear();
        return;
    };
    let mut dead: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for s in stats {
        *dead.entry(s.name.as_str()).or_default() += s.dead_letters;
    }
    // Names with letters are noted first, so the loop below sees them all
    // (a removed subscriber's name may not have been labelled since start).
    for (name, n) in dead.iter().filter(|(_, n)| **n > 0) {
        m.dead_letters.get_or_create(&m.sub(name)).set(*n as i64);
    }
    let configured = |name: &str| app.delivery.configured_route(name).is_some();
    for name in m.subscriber_names() {
        let n = dead.get(name.as_str()).copied().unwrap_or(0);
        let labels = m.sub(&name);
        if configured(&name) {
            m.dead_letters.get_or_create(&labels).set(n as i64);
        } else if n == 0 {
            m.dead_letters.remove(&labels);
        }
    }
}

/// Per subscriber name: its deliveries pending on routes it is not on now
/// (moved from, or removed), every such route summed, and the receipt time
/// of the oldest of them.
type Left = std::collections::HashMap<String, (u64, Option<u64>)>;

fn left_behind(app: &App, stats: &[SubscriberStats]) -> Left {
    let mut left = Left::new();
    for s in app.delivery.removed(stats).into_iter().filter(|s| s.backlog > 0) {
        let e = left.entry(s.name.clone()).or_default();
        e.0 += s.backlog;
        e.1 = e.1.into_iter().chain(s.oldest_pending_ms).min();
    }
    left
}

/// `hookrelay_queue_depth` of a configured subscriber: its lane's count, or
/// while its lane waits for a reload's handover (`depth` None) the store's;
/// absent if the store cannot say then; with what it left on other routes
/// (`extra`: a backlog that waits for it to be there again). Returns the
/// depth set.
fn set_queue_depth(
    m: &Metrics,
    labels: &SubLabels,
    depth: Option<u64>,
    current: Option<&[SubscriberStats]>,
    extra: (u64, Option<u64>),
) -> u64 {
    let store = |c: &[SubscriberStats]| c.iter().find(|s| s.name == labels.subscriber).map_or(0, |s| s.backlog);
    let depth = depth.or_else(|| current.map(store)).map(|d| d + extra.0);
    match depth {
        Some(d) => {
            m.queue_depth.get_or_create(labels).set(d as i64);
        }
        None => {
            m.queue_depth.remove(labels);
        }
    }
    depth.unwrap_or(0)
}

/// `hookrelay_oldest_pending_seconds` of one subscriber: 0 with nothing
/// queued; absent while the store cannot say (`stats` None), as the admin
/// API answers `503` then: a 0 would read as "nothing waits" during an
/// outage, when it is exactly what an alert should not miss.
/// `extra`: what it left on other routes (its oldest counts too).
fn set_oldest_pending(
    m: &Metrics,
    labels: &SubLabels,
    stats: Option<&[SubscriberStats]>,
    depth: u64,
    now: u64,
    extra: (u64, Option<u64>),
) {
    let Some(stats) = stats else {
        m.oldest_pending_seconds.remove(labels);
        return;
    };
    let age = stats
        .iter()
        .find(|s| s.name == labels.subscriber)
        .and_then(|s| s.oldest_pending_ms)
        .into_iter()
        .chain(extra.1)
        .min()
        .filter(|_| depth > 0)
        .map_or(0, |t| now.saturating_sub(t) / 1000);
    m.oldest_pending_seconds.get_or_create(labels).set(age as i64);
}
