//! Prometheus metrics (`hookrelay_*`), exported as text by the admin listener.

use std::collections::BTreeSet;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

mod forget;
mod optional_gauge;
pub use forget::SubGauges;
pub use optional_gauge::OptionalGauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngestLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubLabels {
    pub subscriber: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub subscriber: String,
    pub outcome: &'static str,
}

/// Where a served certificate comes from: `file` or `acme`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

/// Why a TLS handshake failed (`certificate_refused`, `timeout`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// An expected task's state (`waiting`, `called_back`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

/// A status poll's result, per route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PollLabels {
    pub route: String,
    pub result: &'static str,
}

/// A [`Registry`] that escapes each HELP text as OpenMetrics requires (`\\`,
/// `\n`, `\"`): the encoder writes it as given, and a raw quote or newline
/// there makes the whole exposition invalid to a strict parser.
struct Escaping(Registry);

impl Escaping {
    fn register(&mut self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n").replace('"', "\\\"");
        self.0.register(name, help, metric);
    }
}

fn attempt_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub ingest: Family<IngestLabels, Counter>,
    pub dedupe_hits: Family<RouteLabels, Counter>,
    pub dedupe_fallback: Family<RouteLabels, Counter>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub attempt_seconds: Family<SubLabels, Histogram, fn() -> Histogram>,
    pub queue_depth: Family<SubLabels, Gauge>,
    pub in_flight: Family<SubLabels, Gauge>,
    pub oldest_pending_seconds: Family<SubLabels, Gauge>,
    pub circuit_open: Family<SubLabels, Gauge>,
    /// Dead letters kept per subscriber (configured, or removed with some
    /// left), read from the store when scraped; absent while it cannot be read.
    pub dead_letters: Family<SubLabels, Gauge>,
    /// Messages a pull subscriber's forwarders hold under lease.
    pub pull_leased: Family<SubLabels, Gauge>,
    /// Seconds since a pull subscriber last pulled: the alert that its
    /// forwarder is gone (nothing else notices a private side that stopped asking).
    pub pull_last_seconds: Family<SubLabels, Gauge>,
    /// Size of the store: on one host on disk (always known); in cluster
    /// mode JetStream's figure, absent while NATS cannot be read.
    pub store_bytes: OptionalGauge,
    /// Rows the store has written since start (sled writes per event = this /
    /// events); in cluster mode the messages JetStream stored for this relay.
    pub store_writes: Counter,
    /// Unix time at which the served certificate expires, so an alert can
    /// fire before it does; set when scraped from what was loaded or issued.
    pub tls_cert_expiry: Family<SourceLabels, Gauge>,
    /// 1 while the served certificate is valid, 0 without one or expired;
    /// labelled by its source, absent when the relay serves no TLS (a 0
    /// there was a false alarm behind a TLS proxy).
    pub tls_cert_valid: Family<SourceLabels, Gauge>,
    /// Failed ACME orders; the ACME manager increments it (and keeps serving).
    pub acme_failures: Counter,
    /// TLS handshakes on the public listeners that failed, by reason (see
    /// `server::handshake`): a client refusing the certificate shows here.
    pub tls_handshake_failures: Family<ReasonLabels, Counter>,
    /// Reloads refused since start (the running configuration stayed).
    pub reload_failures: Counter,
    /// Media tries by outcome: stored, retry, failed (for good), low_space
    /// (put off while the media disk is below `media.min_free`; no try),
    /// store_unavailable (put off while the store fails its check),
    /// store_changed (a file a reload's store change stranded, not copied).
    pub media_files: Family<OutcomeLabels, Counter>,
    /// Bytes of media stored.
    pub media_bytes: Counter,
    /// Media URLs waiting for a try; no sample while the count is not known
    /// (cluster mode, NATS not read for 5 s).
    pub media_queue_depth: OptionalGauge,
    /// 1 while the media store could not take files at the last download's
    /// check (disk below `media.min_free`, object store failing its probe):
    /// downloads are put off; 0 once one found it ready.
    pub media_store_unavailable: Gauge,
    /// 1 while `/readyz` answers 200: what a cluster's monitoring alerts on
    /// (a relay whose NATS is away answers 503 and says so here).
    pub ready: Gauge,
    /// Media downloads running.
    pub media_in_flight: Gauge,
    /// Bytes held by requests not yet authenticated (`server.max_body_memory`).
    pub unauthenticated_bytes: Gauge,
    /// Expired URLs the provider was asked to refresh, by outcome (ok, failed).
    pub media_refresh: Family<OutcomeLabels, Counter>,
    /// Expected tasks by state (read from the store when scraped; no series
    /// while it cannot be read).
    pub tasks: Family<StateLabels, Gauge>,
    /// Age of the oldest task still waiting or polling: alert when it nears
    /// `give_up`. Absent while the store cannot be read (NATS away).
    pub tasks_oldest_open_seconds: OptionalGauge,
    /// Status polls by route and result (`terminal`, `running`, or the error kind).
    pub task_polls: Family<PollLabels, Counter>,
    /// Callbacks held because the provider's record disagreed (`verify = "fetch"`).
    pub unverified: Family<RouteLabels, Counter>,
    /// Every subscriber a series was labelled with since start ([`Metrics::sub`]):
    /// the names whose gauges a scrape checks against the config.
    subscribers: Mutex<BTreeSet<String>>,
    /// Routes that may have series: every route configured at a scrape,
    /// with the results its status polls were counted under
    /// ([`Metrics::forget_routes_but`]).
    routes: Mutex<std::collections::HashMap<String, BTreeSet<&'static str>>>,
}

/// Every `outcome` of `hookrelay_deliveries_total` (push attempts and pull
/// acknowledgements): what [`Metrics::forget_subscriber`] removes, with no
/// bookkeeping on the delivery path.
const DELIVERY_OUTCOMES: [&str; 6] = ["delivered", "retry", "dead", "skipped", "released", "expired"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Escaping(Registry::with_prefix("hookrelay"));
        let m = Metrics {
            registry: Registry::default(),
            ingest: Family::default(),
            dedupe_hits: Family::default(),
            dedupe_fallback: Family::default(),
            deliveries: Family::default(),
            attempt_seconds: Family::new_with_constructor(attempt_histogram as fn() -> Histogram),
            queue_depth: Family::default(),
            in_flight: Family::default(),
            oldest_pending_seconds: Family::default(),
            circuit_open: Family::default(),
            dead_letters: Family::default(),
            pull_leased: Family::default(),
            pull_last_seconds: Family::default(),
            store_bytes: OptionalGauge::default(),
            store_writes: Counter::default(),
            tls_cert_expiry: Family::default(),
            tls_cert_valid: Family::default(),
            acme_failures: Counter::default(),
            tls_handshake_failures: Family::default(),
            reload_failures: Counter::default(),
            media_files: Family::default(),
            media_bytes: Counter::default(),
            media_queue_depth: OptionalGauge::default(),
            media_store_unavailable: Gauge::default(),
            ready: Gauge::default(),
            media_in_flight: Gauge::default(),
            unauthenticated_bytes: Gauge::default(),
            media_refresh: Family::default(),
            tasks: Family::default(),
            tasks_oldest_open_seconds: OptionalGauge::default(),
            task_polls: Family::default(),
            unverified: Family::default(),
            subscribers: Mutex::default(),
            routes: Mutex::default(),
        };
        registry.register(
            "ingest_requests",
            "Callbacks answered, by route and HTTP status",
            m.ingest.clone(),
        );
        registry.register(
            "dedupe_hits",
            "Callbacks recognised as duplicates",
            m.dedupe_hits.clone(),
        );
        registry.register(
            "dedupe_fallback",
            "Callbacks whose dedupe key fell back to the body hash (a pointer was missing)",
            m.dedupe_fallback.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery attempts by subscriber and outcome (pull subscribers: expired = a lease ran out)",
            m.deliveries.clone(),
        );
        registry.register(
            "delivery_attempt_seconds",
            "Duration of delivery attempts",
            m.attempt_seconds.clone(),
        );
        registry.register(
            "queue_depth",
            "Pending delivery jobs per subscriber",
            m.queue_depth.clone(),
        );
        registry.register(
            "dead_letters",
            "Dead letters kept per subscriber (waiting for a replay or retention)",
            m.dead_letters.clone(),
        );
        registry.register(
            "in_flight",
            "Delivery requests in flight per subscriber",
            m.in_flight.clone(),
        );
        registry.register(
            "oldest_pending_seconds",
            "Age of the oldest pending job's event per subscriber",
            m.oldest_pending_seconds.clone(),
        );
        registry.register(
            "circuit_open",
            "1 while a subscriber's circuit is open (backed off) or half-open with its probe out",
            m.circuit_open.clone(),
        );
        registry.register(
            "pull_leased",
            "Messages handed out to a pull subscriber and not yet acknowledged",
            m.pull_leased.clone(),
        );
        registry.register(
            "pull_last_seconds",
            "Seconds since a pull subscriber last pulled (0 while a long-poll waits; since start if never)",
            m.pull_last_seconds.clone(),
        );
        registry.register(
            "ready",
            "1 while the relay is ready (listening, and the store takes writes: in cluster mode, JetStream reachable)",
            m.ready.clone(),
        );
        registry.register(
            "store_size_bytes",
            "Size of the store on disk (cluster mode: bytes of the hookrelay streams and buckets in JetStream, one copy)",
            m.store_bytes.clone(),
        );
        registry.register(
            "store_writes",
            "Rows written to the store since start (cluster mode: messages JetStream stored for this relay)",
            m.store_writes.clone(),
        );
        registry.register(
            "tls_cert_expiry_seconds",
            "Unix time at which the served TLS certificate expires, by source (file, acme)",
            m.tls_cert_expiry.clone(),
        );
        registry.register(
            "tls_cert_valid",
            "1 while the public listeners serve a valid certificate; 0 without one yet (ACME) or once it expired; \
             absent without TLS",
            m.tls_cert_valid.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes on the public listeners that failed, by reason: certificate_refused (the client \
             sent an alert about the certificate: unknown CA, bad or expired certificate), incompatible (no \
             protocol version or cipher in common), timeout (not done within server.read_timeout), other",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "acme_failures",
            "Failed ACME certificate orders (first issuance or renewal); the current certificate stays in use",
            m.acme_failures.clone(),
        );
        registry.register(
            "reload_failures",
            "Reloads (SIGHUP) refused since start: the running configuration and certificate stayed; \
             /api/status `last_reload` says why",
            m.reload_failures.clone(),
        );
        registry.register(
            "media_files",
            "Media downloads by outcome: tries (stored, retry, failed for good), and downloads put off without a try \
             (low_space, store_unavailable: counted at each look, per URL, while the store cannot take files: every first media.retry delay, a minute at most; \
             store_changed: a file downloaded into a store a reload replaced meanwhile that could not be copied into the new one)",
            m.media_files.clone(),
        );
        registry.register("media_bytes", "Bytes of media stored", m.media_bytes.clone());
        registry.register(
            "media_queue_depth",
            "Media URLs waiting for a download try",
            m.media_queue_depth.clone(),
        );
        registry.register(
            "media_store_unavailable",
            "1 while the media store cannot take files (the disk below media.min_free, or the store, a bucket \
             or a local directory, failing its check): downloads and after_archive deliveries wait; checked before each download, and, after a failed check \
             at start or at a reload, every minute at most until the store takes files",
            m.media_store_unavailable.clone(),
        );
        registry.register("media_in_flight", "Media downloads running", m.media_in_flight.clone());
        registry.register(
            "unauthenticated_bytes",
            "Bytes held by requests not yet authenticated (headers and bodies of signature routes and routes \
             without a token); at server.max_body_memory they get 503",
            m.unauthenticated_bytes.clone(),
        );
        registry.register(
            "media_refresh",
            "Expired media URLs the provider was asked to refresh, by outcome",
            m.media_refresh.clone(),
        );
        registry.register(
            "tasks",
            "Expected tasks by state (absent while the store cannot be read)",
            m.tasks.clone(),
        );
        registry.register(
            "tasks_oldest_open_seconds",
            "Age of the oldest expected task with no result yet (waiting or polling); absent while the store \
             cannot be read",
            m.tasks_oldest_open_seconds.clone(),
        );
        registry.register(
            "task_polls",
            "Status polls of expected tasks, by route and result",
            m.task_polls.clone(),
        );
        registry.register(
            "unverified",
            "Callbacks held as unverified: the provider's record disagreed (verify = \"fetch\")",
            m.unverified.clone(),
        );
        Metrics {
            registry: registry.0,
            ..m
        }
    }

    pub fn media_file(&self, outcome: &'static str) {
        self.media_files.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn task_poll(&self, route: &str, result: &'static str) {
        // Polls are few (one per task due): noted, so a route's go.
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route.to_string())
            .or_default()
            .insert(result);
        self.task_polls
            .get_or_create(&PollLabels {
                route: route.to_string(),
                result,
            })
            .inc();
    }

    pub fn media_refresh(&self, outcome: &'static str) {
        self.media_refresh.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn ingest(&self, route: &str, status: u16) {
        self.ingest
            .get_or_create(&IngestLabels {
                route: route.to_string(),
                status,
            })
            .inc();
    }

    pub fn delivery(&self, subscriber: &str, outcome: &'static str) {
        debug_assert!(
            DELIVERY_OUTCOMES.contains(&outcome),
            "{outcome} not in DELIVERY_OUTCOMES"
        );
        self.deliveries
            .get_or_create(&DeliveryLabels {
                subscriber: subscriber.to_string(),
                outcome,
            })
            .inc();
    }

    /// The labels of `subscriber`'s series (the name is noted, so that a
    /// scrape can remove its gauges once it is gone: [`Self::keep_gauges`]).
    pub fn sub(&self, subscriber: &str) -> SubLabels {
        let mut names = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if !names.contains(subscriber) {
            names.insert(subscriber.to_string());
        }
        SubLabels {
            subscriber: subscriber.to_string(),
        }
    }

    /// Every subscriber a series was labelled with since start.
    pub fn subscriber_names(&self) -> Vec<String> {
        let names = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        names.iter().cloned().collect()
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
