//! `/api/subscribers`: every push lane with its backlog, in-flight count and
//! circuit; every pull lane with its backlog, leases (its "in flight") and
//! last pull (when, from where); the leases of pull lanes a reload stopped
//! (still served) in `leased` of whatever the subscriber is now; plus subscribers removed from the config
//! whose work is kept, and the routes subscribers were moved from with work
//! still pending there (state `removed`, that route's name and count).

use serde_json::json;

use super::{internal, rfc3339, ApiResult};
use crate::state::App;

pub(super) async fn list(app: &App) -> ApiResult {
    let stats = app.store.subscriber_stats().await.map_err(internal)?;
    let now = crate::clock::now_ms();
    // A configured subscriber's entry (not one of a route it was moved from).
    let current = |name: &str| stats.iter().find(|s| s.name == name && app.delivery.is_current(s));
    let age = |name: &str| {
        current(name)
            .and_then(|s| s.oldest_pending_ms)
            .map(|t| now.saturating_sub(t) / 1000)
    };
    let dead = |name: &str| current(name).map_or(0, |s| s.dead_letters);
    // A lane waiting for a reload's handover has no count of its own yet.
    let depth = |counted: Option<u64>, name: &str| counted.unwrap_or_else(|| current(name).map_or(0, |s| s.backlog));
    let mut out = Vec::new();
    let lanes = app.delivery.lanes();
    for lane in &lanes {
        let s = lane.subscriber();
        let depth = depth(lane.queue_depth(), &s.name);
        // Leased by its pull lane a reload stopped (switched to push): its
        // forwarders still deliver them.
        let leased = app.delivery.stopped_pull_leased(&s.name);
        out.push(json!({
            "name": s.name,
            "route": s.route,
            "kind": "push",
            "leased": leased,
            "url": s.url().map(|u| crate::auth::shown_target(&u.to_string())),
            "state": lane.circuit(),
            "queue_depth": depth,
            // With the attempts still out on its lane a reload stopped (the
            // subscriber removed and added back, its new lane waiting for it).
            "in_flight": lane.in_flight() + app.delivery.retired_in_flight(&s.name, Some(&s.route)),
            "oldest_pending_seconds": if depth > 0 { age(&s.name) } else { None },
            "dead_letters": dead(&s.name),
        }));
    }
    let pulls = app.delivery.pull_lanes();
    for lane in &pulls {
        let s = lane.subscriber();
        let depth = depth(lane.queue_depth(), &s.name);
        let last = lane.last_pull();
        // Its pull lanes a reload stopped (moved, switched and back) still
        // lease theirs: in flight as well.
        let leased = lane.leased() + app.delivery.stopped_pull_leased(&s.name);
        out.push(json!({
            "name": s.name,
            "route": s.route,
            "kind": "pull",
            "url": null,
            "state": if lane.waiting() > 0 { "pulling" } else { "idle" },
            "queue_depth": depth,
            "in_flight": leased + app.delivery.retired_in_flight(&s.name, Some(&s.route)),
            "leased": leased,
            "waiting_pulls": lane.waiting(),
            "lease_seconds": s.pull().map(|p| p.lease.as_secs_f64()),
            "last_pull_at": last.at_ms.map(rfc3339),
            "last_pull_from": last.from.map(|ip| ip.to_string()),
            "seconds_since_pull": lane.seconds_since_pull(now),
            "oldest_pending_seconds": if depth > 0 { age(&s.name) } else { None },
            "dead_letters": dead(&s.name),
        }));
    }
    // Subscribers removed from the config whose work is kept. A stopped
    // pull lane's leases are shown once: on the subscriber's configured row
    // if it still has one (moved to another route), else here.
    let configured: std::collections::HashSet<String> = out
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    for s in app.delivery.removed(&stats) {
        out.push(json!({
            "name": s.name,
            "route": s.route,
            "kind": null,
            "url": null,
            "state": "removed",
            "queue_depth": s.backlog,
            "in_flight": app.delivery.retired_in_flight(&s.name, s.route.as_deref()),
            "leased": if configured.contains(&s.name) { 0 } else { app.delivery.stopped_pull_leased(&s.name) },
            "oldest_pending_seconds": s.oldest_pending_ms.map(|t| now.saturating_sub(t) / 1000),
            "dead_letters": s.dead_letters,
        }));
    }
    Ok(json!({ "subscribers": out }))
}
