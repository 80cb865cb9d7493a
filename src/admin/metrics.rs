//! `/metrics`: gauges that are read when scraped (queue depth, oldest pending
//! age, leases and time since the last pull, store size, certificate expiry)
//! are refreshed, then everything is encoded.

use crate::metrics::SourceLabels;
use crate::state::App;

pub(super) async fn render(app: &App) -> String {
    let m = &app.metrics;
    let now = crate::clock::now_ms();
    let stats = app.store.configured_subscriber_stats().await.unwrap_or_default();
    for lane in app.delivery.lanes() {
        let name = lane.subscriber().name.clone();
        let labels = m.sub(&name);
        let depth = lane.queue_depth();
        m.queue_depth.get_or_create(&labels).set(depth as i64);
        let age = stats
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.oldest_pending_ms)
            .filter(|_| depth > 0)
            .map_or(0, |t| now.saturating_sub(t) / 1000);
        m.oldest_pending_seconds.get_or_create(&labels).set(age as i64);
    }
    for lane in app.delivery.pull_lanes() {
        let name = lane.subscriber().name.clone();
        let labels = m.sub(&name);
        let depth = lane.queue_depth();
        m.queue_depth.get_or_create(&labels).set(depth as i64);
        m.in_flight.get_or_create(&labels).set(lane.leased() as i64);
        m.pull_leased.get_or_create(&labels).set(lane.leased() as i64);
        m.pull_last_seconds
            .get_or_create(&labels)
            .set(lane.seconds_since_pull(now) as i64);
        let age = stats
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.oldest_pending_ms)
            .filter(|_| depth > 0)
            .map_or(0, |t| now.saturating_sub(t) / 1000);
        m.oldest_pending_seconds.get_or_create(&labels).set(age as i64);
    }
    // In cluster mode JetStream's figure; kept as last read while NATS is away.
    if let Ok(size) = app.store.size().await {
        m.store_bytes.set(size.bytes as i64);
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
    m.media_queue_depth.set(app.store.media_queue() as i64);
    if let Ok(t) = app.store.task_stats().await {
        for (state, n) in t.by_state {
            m.tasks
                .get_or_create(&crate::metrics::StateLabels { state: state.as_str() })
                .set(n as i64);
        }
        let age = t.oldest_open_ms.map_or(0, |r| now.saturating_sub(r) / 1000);
        m.tasks_oldest_open_seconds.set(age as i64);
    }
    m.media_in_flight.set(app.media.in_flight() as i64);
    let (rows, _) = app.store.write_counts();
    m.store_writes.inc_by(rows.saturating_sub(m.store_writes.get()));
    m.encode()
}
