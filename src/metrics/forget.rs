//! What a scrape removes from the registry: the per-subscriber gauges a
//! subscriber no longer has (removed, moved between push and pull), every
//! series of a subscriber gone for good, and the series of routes no longer
//! configured. What a scrape sets is `admin::metrics`.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{DeliveryLabels, IngestLabels, Metrics, PollLabels, RouteLabels, SubLabels, DELIVERY_OUTCOMES};

/// Which per-subscriber gauges a subscriber has ([`Metrics::keep_gauges`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubGauges {
    /// A push lane: queue depth, in flight, oldest pending, circuit.
    Push,
    /// A pull lane: queue depth, in flight (its leases), oldest pending,
    /// leases, time since the last pull.
    Pull,
    /// Removed from the config with deliveries still pending: queue depth
    /// and oldest pending only (what an alert on a stuck backlog watches;
    /// in flight too while its stopped lane waits for attempts, set apart).
    RemovedPending,
    /// Not configured, nothing pending (or not known: the store cannot be read): none.
    Gone,
}

impl Metrics {
    /// Remove the per-subscriber gauges of `labels` that `kind` does not
    /// have (the counters and the attempt histogram stay: history). Those
    /// it has are set by whoever keeps them (the lanes, the scrape).
    pub fn keep_gauges(&self, labels: &SubLabels, kind: SubGauges) {
        use SubGauges::*;
        let keep = |which: &[SubGauges]| which.contains(&kind);
        let gauges: [(&Family<SubLabels, Gauge>, bool); 6] = [
            (&self.queue_depth, keep(&[Push, Pull, RemovedPending])),
            (&self.oldest_pending_seconds, keep(&[Push, Pull, RemovedPending])),
            (&self.in_flight, keep(&[Push, Pull])),
            (&self.circuit_open, keep(&[Push])),
            (&self.pull_leased, keep(&[Pull])),
            (&self.pull_last_seconds, keep(&[Pull])),
        ];
        for (family, kept) in gauges {
            if !kept {
                family.remove(labels);
            }
        }
    }

    /// Remove every series of `subscriber` (gauges, counters, the attempt
    /// histogram) and forget its name: a subscriber the config no longer has,
    /// with nothing pending and no dead letter left. Its counters' history
    /// goes with it (added back, they start at 0, which Prometheus reads as
    /// a reset); kept, they made `/metrics` grow with every subscriber ever
    /// configured (19k lines after 9,000 had come and gone; resource review,
    /// stop 62).
    pub fn forget_subscriber(&self, subscriber: &str) {
        let labels = SubLabels {
            subscriber: subscriber.to_string(),
        };
        self.keep_gauges(&labels, SubGauges::Gone);
        self.dead_letters.remove(&labels);
        self.attempt_seconds.remove(&labels);
        for outcome in DELIVERY_OUTCOMES {
            self.deliveries.remove(&DeliveryLabels {
                subscriber: subscriber.to_string(),
                outcome,
            });
        }
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(subscriber);
    }

    /// The series of routes no longer configured (removed or renamed by a
    /// reload) go, counters too: `/metrics` does not grow with every route
    /// ever configured (stop 72: they stayed until a restart). `configured`
    /// gives the routes in force, read while no configuration can be put
    /// in force ([`Metrics::put_in_force`]): one put in force between a
    /// look at the config and the removal had its new routes' series
    /// removed, counters reset, and the routes no longer noted. The ones
    /// that may have series were noted as each configuration was put in
    /// force.
    pub fn forget_routes_but(&self, configured: impl FnOnce() -> Vec<String>) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let configured = configured();
        let gone: Vec<String> = routes.keys().filter(|r| !configured.contains(r)).cloned().collect();
        for route in gone {
            let results = routes.remove(&route).unwrap_or_default();
            // Statuses are not noted (the ingest path takes no lock for it):
            // every one an answer can have.
            for status in 100..600 {
                self.ingest.remove(&IngestLabels {
                    route: route.clone(),
                    status,
                });
            }
            let labels = RouteLabels { route: route.clone() };
            self.dedupe_hits.remove(&labels);
            self.dedupe_fallback.remove(&labels);
            self.unverified.remove(&labels);
            for result in results {
                self.task_polls.remove(&PollLabels {
                    route: route.clone(),
                    result,
                });
            }
        }
    }

    /// Put a configuration in force with `swap`, noting its routes first
    /// (at the start and at each reload), so a route configured and removed
    /// again between two scrapes loses its series at the next one too
    /// (noted only at a scrape, its series stayed until a restart). A
    /// scrape's removal waits for it, and it for the removal.
    pub fn put_in_force<'a>(&self, configured: impl IntoIterator<Item = &'a str>, swap: impl FnOnce()) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        for route in configured {
            routes.entry(route.to_string()).or_default();
        }
        swap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A configuration put in force while a scrape removes the series of
    /// routes no longer configured waits for that removal: the new route's
    /// series, counted once it is in force, stay. (A scrape that read the
    /// configuration before such a reload removed them, a counter reset,
    /// and forgot the route, its series kept after it was removed in turn.)
    #[test]
    fn a_route_put_in_force_during_a_scrape_keeps_its_series() {
        let m = Arc::new(Metrics::new());
        let live = Arc::new(Mutex::new(vec!["a".to_string()]));
        m.put_in_force(["a"], || {});
        let b = IngestLabels {
            route: "b".into(),
            status: 200,
        };
        let (looked, at_look) = std::sync::mpsc::channel();
        let reload = {
            let (m, live, b) = (m.clone(), live.clone(), b.clone());
            std::thread::spawn(move || {
                at_look.recv().unwrap();
                m.put_in_force(["a", "b"], || *live.lock().unwrap() = vec!["a".into(), "b".into()]);
                m.ingest.get_or_create(&b).inc();
            })
        };
        m.forget_routes_but(|| {
            let routes = live.lock().unwrap().clone();
            looked.send(()).unwrap();
            // The reload comes now.
            std::thread::sleep(Duration::from_millis(100));
            routes
        });
        reload.join().unwrap();
        m.forget_routes_but(|| live.lock().unwrap().clone());
        assert_eq!(m.ingest.get_or_create(&b).get(), 1, "b's series was removed");
        // Removed in turn, b loses its series (it is still noted).
        m.put_in_force(["a"], || *live.lock().unwrap() = vec!["a".into()]);
        m.forget_routes_but(|| live.lock().unwrap().clone());
        assert_eq!(m.ingest.get_or_create(&b).get(), 0, "b's series outlived the route");
    }
}
