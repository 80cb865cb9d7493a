//! Delivery: fans every stored event out to its subscribers.
//!
//! Each subscriber has its own lane: a task that reads that subscriber's due
//! jobs from the store (in due-time order, a page at a time, so a backlog stays
//! on disk), runs up to `concurrency` attempts at once under an optional rate
//! limit, and records each outcome. Lanes share nothing but the store, so a
//! slow or dead subscriber never delays another one, nor ingest. A lane that
//! keeps failing opens its circuit: it pauses, probes with one request, and
//! resumes at full speed when the subscriber answers again.
//!
//! This module does not know HTTP status mapping of ingest, nor sled.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

use crate::config::Subscriber;
use crate::metrics::Metrics;
use crate::store::{now_ms, Attempt, Event, Job, Outcome, Store};

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;
type Limiter = governor::DefaultDirectRateLimiter;

/// The `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("hookrelay/", env!("CARGO_PKG_VERSION"));
/// Header carrying the attempt number (1 for the first try).
pub const ATTEMPT_HEADER: &str = "hookrelay-attempt";

const CIRCUIT_CLOSED: u8 = 0;
const CIRCUIT_OPEN: u8 = 1;
const CIRCUIT_HALF_OPEN: u8 = 2;
/// First pause of an open circuit; doubles per failed probe up to the maximum.
const CIRCUIT_BASE: Duration = Duration::from_secs(1);
const CIRCUIT_MAX: Duration = Duration::from_secs(60);
/// A lane with nothing due re-reads its queue at least this often (a safety net;
/// new jobs wake it at once).
const IDLE_RECHECK: Duration = Duration::from_secs(5);
/// Bytes of a subscriber's answer read (so the connection can be reused).
const MAX_RESPONSE: usize = 64 * 1024;

/// One subscriber's lane, shared between its task and the admin side.
pub struct Lane {
    sub: RwLock<Arc<Subscriber>>,
    client: RwLock<HttpClient>,
    limiter: RwLock<Option<Arc<Limiter>>>,
    notify: Notify,
    depth: AtomicI64,
    /// Set (on the writer thread) once the backlog was counted; wakes before
    /// that are already part of the count.
    counted: std::sync::atomic::AtomicBool,
    in_flight: AtomicUsize,
    circuit: AtomicU8,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Lane {
    pub fn subscriber(&self) -> Arc<Subscriber> {
        self.sub.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn queue_depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed).max(0)
    }
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    pub fn circuit(&self) -> &'static str {
        match self.circuit.load(Ordering::Relaxed) {
            CIRCUIT_OPEN => "open",
            CIRCUIT_HALF_OPEN => "half-open",
            _ => "closed",
        }
    }
}

/// The delivery side: a lane per configured subscriber.
#[derive(Clone)]
pub struct Delivery {
    store: Store,
    /// The store's writer, for counting backlogs in commit order.
    committer: Arc<std::sync::OnceLock<crate::store::Committer>>,
    metrics: Arc<Metrics>,
    lanes: Arc<RwLock<HashMap<String, Arc<Lane>>>>,
}

fn build_client(sub: &Subscriber) -> anyhow::Result<HttpClient> {
    let tls = crate::tls::client_config(sub.ca_file.as_deref())?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(sub.timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https))
}

fn build_limiter(sub: &Subscriber) -> Option<Arc<Limiter>> {
    let rate = sub.rate?;
    let per_cell = rate.per / rate.count.get();
    let quota = governor::Quota::with_period(per_cell.max(Duration::from_nanos(1)))?.allow_burst(NonZeroU32::MIN);
    Some(Arc::new(governor::RateLimiter::direct(quota)))
}

impl Delivery {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Delivery {
            store,
            metrics,
            committer: Arc::default(),
            lanes: Arc::default(),
        }
    }

    /// The store's writer: lanes count their backlog and record outcomes through
    /// it. Must be set before [`Delivery::configure`].
    pub fn set_committer(&self, committer: crate::store::Committer) {
        let _ = self.committer.set(committer);
    }

    /// Wake the lanes of these subscribers: a job was just written for each.
    pub fn wake(&self, subscribers: &[String]) {
        let lanes = self.lanes.read().unwrap_or_else(|e| e.into_inner());
        for s in subscribers {
            if let Some(lane) = lanes.get(s) {
                if lane.counted.load(Ordering::Acquire) {
                    lane.depth.fetch_add(1, Ordering::Relaxed);
                }
                lane.notify.notify_one();
            }
        }
    }

    /// Wake lanes after jobs were queued outside ingest (replay).
    pub fn queued(&self, counts: &HashMap<String, usize>) {
        let lanes = self.lanes.read().unwrap_or_else(|e| e.into_inner());
        for (s, n) in counts {
            if let Some(lane) = lanes.get(s) {
                lane.depth.fetch_add(*n as i64, Ordering::Relaxed);
                lane.notify.notify_one();
            }
        }
    }

    pub fn lanes(&self) -> Vec<Arc<Lane>> {
        let mut v: Vec<_> = self
            .lanes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|l| l.subscriber().name.clone());
        v
    }

    /// Start, update or stop lanes to match the configured subscribers. Jobs of
    /// a removed subscriber stay in the store (reported by the admin API).
    pub fn configure(&self, subscribers: &[Subscriber]) -> anyhow::Result<()> {
        let committer = self
            .committer
            .get()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("delivery needs the store writer: call set_committer first"))?;
        // Build every client first, so a bad CA file changes nothing.
        let mut clients = Vec::with_capacity(subscribers.len());
        for s in subscribers {
            clients.push(build_client(s)?);
        }
        let mut lanes = self.lanes.write().unwrap_or_else(|e| e.into_inner());
        let wanted: HashSet<&str> = subscribers.iter().map(|s| s.name.as_str()).collect();
        lanes.retain(|name, lane| {
            let keep = wanted.contains(name.as_str());
            if !keep {
                let _ = lane.stop.send(true);
                tracing::info!(subscriber = %name, "subscriber removed from config; its pending jobs stay in the store");
            }
            keep
        });
        for (s, client) in subscribers.iter().zip(clients) {
            if let Some(lane) = lanes.get(&s.name) {
                *lane.sub.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s.clone());
                *lane.client.write().unwrap_or_else(|e| e.into_inner()) = client;
                *lane.limiter.write().unwrap_or_else(|e| e.into_inner()) = build_limiter(s);
                lane.notify.notify_one();
                continue;
            }
            let (stop, stop_rx) = watch::channel(false);
            let lane = Arc::new(Lane {
                sub: RwLock::new(Arc::new(s.clone())),
                client: RwLock::new(client),
                limiter: RwLock::new(build_limiter(s)),
                notify: Notify::new(),
                depth: AtomicI64::new(0),
                counted: std::sync::atomic::AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                circuit: AtomicU8::new(CIRCUIT_CLOSED),
                stop,
                task: std::sync::Mutex::new(None),
            });
            lanes.insert(s.name.clone(), lane.clone());
            let task = tokio::spawn(run_lane(
                lane.clone(),
                self.store.clone(),
                committer.clone(),
                self.metrics.clone(),
                stop_rx,
            ));
            *lane.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        }
        Ok(())
    }

    /// Stop every lane and wait for it; attempts in flight are abandoned
    /// (their jobs stay in the store and are retried after a restart).
    pub async fn stop(&self) {
        let lanes: Vec<Arc<Lane>> = self
            .lanes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, l)| l)
            .collect();
        for lane in &lanes {
            let _ = lane.stop.send(true);
        }
        for lane in lanes {
            let task = lane.task.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(t) = task {
                let _ = t.await;
            }
        }
    }
}

/// Whether an attempt counts against the subscriber's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Good,
    Bad,
    /// Not a statement about the subscriber (skipped, event gone, store error).
    Neutral,
}

async fn run_lane(
    lane: Arc<Lane>,
    store: Store,
    committer: crate::store::Committer,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let name = lane.subscriber().name.clone();
    // Count the backlog (job keys only) before working on it; start-up does
    // not wait for this. Through the writer, the count and the wakes of new
    // jobs are in commit order, so the gauge is exact.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let counter = lane.clone();
    let add: crate::store::CountAdd = Arc::new(move |n| {
        counter.depth.fetch_add(n as i64, Ordering::Relaxed);
    });
    let counted = lane.clone();
    let done: Box<dyn FnOnce() + Send> = Box::new(move || {
        counted.counted.store(true, Ordering::Release);
        let _ = tx.send(());
    });
    if committer.count_jobs(&name, add, done).await.is_err() || rx.await.is_err() {
        // The writer stopped before the count finished: the daemon is stopping.
        return;
    }
    let labels = metrics.sub(&name);
    let mut busy: HashSet<Vec<u8>> = HashSet::new();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Vec<u8>, Health)>();
    let mut failures: u32 = 0;
    let mut open_until: Option<tokio::time::Instant> = None;
    let mut cooldown = CIRCUIT_BASE;
    loop {
        if *stop.borrow() {
            break;
        }
        let sub = lane.subscriber();
        let now = tokio::time::Instant::now();
        let state = match open_until {
            Some(t) if t > now => CIRCUIT_OPEN,
            Some(_) => CIRCUIT_HALF_OPEN,
            None => CIRCUIT_CLOSED,
        };
        lane.circuit.store(state, Ordering::Relaxed);
        metrics
            .circuit_open
            .get_or_create(&labels)
            .set(i64::from(state == CIRCUIT_OPEN));
        let capacity = match state {
            CIRCUIT_OPEN => 0,
            CIRCUIT_HALF_OPEN => usize::from(busy.is_empty()),
            _ => sub.concurrency.saturating_sub(busy.len()),
        };
        let mut idle = false;
        if capacity > 0 {
            let jobs = match store.due_jobs(&name, now_ms(), capacity, &busy) {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(subscriber = %name, error = %e, "cannot read jobs");
                    Vec::new()
                }
            };
            idle = jobs.len() < capacity;
            let limiter = lane.limiter.read().unwrap_or_else(|e| e.into_inner()).clone();
            let client = lane.client.read().unwrap_or_else(|e| e.into_inner()).clone();
            for job in jobs {
                if let Some(l) = &limiter {
                    tokio::select! {
                        _ = l.until_ready() => {}
                        _ = stop.changed() => break,
                    }
                }
                busy.insert(job.key.clone());
                lane.in_flight.store(busy.len(), Ordering::Relaxed);
                metrics.in_flight.get_or_create(&labels).set(busy.len() as i64);
                let ctx = AttemptCtx {
                    store: store.clone(),
                    committer: committer.clone(),
                    metrics: metrics.clone(),
                    sub: sub.clone(),
                    client: client.clone(),
                };
                let done = done_tx.clone();
                let lane2 = lane.clone();
                tasks.spawn(async move {
                    let key = job.key.clone();
                    let (health, finished) = ctx.run(job).await;
                    if finished {
                        lane2.depth.fetch_sub(1, Ordering::Relaxed);
                    }
                    let _ = done.send((key, health));
                });
            }
        }
        // Wait for whatever can change what is due: a completion, a new job,
        // the next due time, the circuit's pause ending, or a stop.
        let wake_at = if state == CIRCUIT_OPEN {
            open_until.expect("open circuit has a deadline")
        } else if idle || capacity == 0 && busy.is_empty() {
            match store.next_due(&name, &busy) {
                Ok(Some(due)) => {
                    let wait = Duration::from_millis(due.saturating_sub(now_ms()));
                    now + wait.min(IDLE_RECHECK)
                }
                _ => now + IDLE_RECHECK,
            }
        } else if capacity > 0 {
            // The page was full: more may be due right away.
            now
        } else {
            now + IDLE_RECHECK
        };
        if wake_at <= now {
            tokio::task::yield_now().await;
            // Still drain completions that are ready.
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some((key, health)) = done_rx.recv() => {
                busy.remove(&key);
                match health {
                    Health::Good => {
                        if open_until.is_some() {
                            tracing::info!(subscriber = %name, "subscriber answered again; circuit closed");
                        }
                        failures = 0;
                        open_until = None;
                        cooldown = CIRCUIT_BASE;
                    }
                    Health::Bad => {
                        failures += 1;
                        let probing = open_until.is_some();
                        if probing || failures >= sub.circuit_threshold {
                            if !probing {
                                tracing::warn!(subscriber = %name, failures, pause_ms = cooldown.as_millis() as u64, "subscriber keeps failing; circuit open");
                            }
                            open_until = Some(tokio::time::Instant::now() + cooldown);
                            cooldown = (cooldown * 2).min(CIRCUIT_MAX);
                        }
                    }
                    Health::Neutral => {}
                }
                while let Some(r) = tasks.try_join_next() {
                    if let Err(e) = r {
                        if e.is_panic() {
                            tracing::error!(subscriber = %name, "delivery attempt panicked");
                        }
                    }
                }
                lane.in_flight.store(busy.len(), Ordering::Relaxed);
                metrics.in_flight.get_or_create(&labels).set(busy.len() as i64);
            }
            _ = lane.notify.notified() => {}
            _ = tokio::time::sleep_until(wake_at), if wake_at > now => {}
            _ = std::future::ready(()), if wake_at <= now => {}
        }
    }
    tasks.abort_all();
    lane.in_flight.store(0, Ordering::Relaxed);
}

struct AttemptCtx {
    /// Outcomes go through the store's writer (batched with other writes).
    committer: crate::store::Committer,
    store: Store,
    metrics: Arc<Metrics>,
    sub: Arc<Subscriber>,
    client: HttpClient,
}

/// What a subscriber's answer means for the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// 410: never again.
    Gone,
    /// Retry, no sooner than the given delay when the subscriber asked for one.
    Retry {
        after: Option<Duration>,
    },
}

/// Classify a subscriber's status code and `Retry-After` header.
pub fn classify(status: StatusCode, retry_after: Option<&HeaderValue>, now: SystemTime) -> Verdict {
    if status.is_success() {
        return Verdict::Delivered;
    }
    if status == StatusCode::GONE {
        return Verdict::Gone;
    }
    let after = if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        retry_after
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now))
    } else {
        None
    };
    Verdict::Retry { after }
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The delay before retry number `step` (0-based), with ±20 % jitter; None
/// once the schedule is exhausted.
pub fn retry_delay(schedule: &[Duration], step: u32) -> Option<Duration> {
    let base = *schedule.get(step as usize)?;
    let factor = 0.8 + 0.4 * fastrand::f64();
    Some(base.mul_f64(factor))
}

/// The wait before the next attempt: the schedule's delay, or longer when the
/// subscriber asked for more with `Retry-After` (capped by `max_retry_after`).
/// A subscriber can slow its retries down, never speed them up.
pub fn next_delay(scheduled: Duration, retry_after: Option<Duration>, max_retry_after: Duration) -> Duration {
    retry_after.map_or(scheduled, |a| scheduled.max(a.min(max_retry_after)))
}

fn filter_matches(sub: &Subscriber, event: &Event) -> bool {
    if sub.filter.is_empty() {
        return true;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&event.body) else {
        return false;
    };
    sub.filter.iter().all(|(ptr, want)| json.pointer(ptr) == Some(want))
}

impl AttemptCtx {
    async fn record(
        &self,
        job: &Job,
        attempt: Option<&Attempt>,
        outcome: &Outcome,
    ) -> Result<(), crate::store::StoreError> {
        self.committer.finish(&self.store, job, attempt, outcome).await
    }

    /// Run one attempt and record it. Returns its health signal and whether the
    /// job left the queue (delivered, dead, skipped).
    async fn run(self, job: Job) -> (Health, bool) {
        let sub = &self.sub;
        let event = match self.store.event(job.event) {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                tracing::warn!(subscriber = %sub.name, event = %job.event, "job for an event that no longer exists; dropped");
                let _ = self.record(&job, None, &Outcome::Skipped).await;
                return (Health::Neutral, true);
            }
            Err(e) => {
                tracing::error!(subscriber = %sub.name, event = %job.event, error = %e, "cannot read event");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return (Health::Neutral, false);
            }
        };
        if !filter_matches(sub, &event) {
            self.metrics.delivery(&sub.name, "skipped");
            tracing::info!(subscriber = %sub.name, event = %job.event, outcome = "skipped", "filter did not match");
            let _ = self.record(&job, None, &Outcome::Skipped).await;
            return (Health::Neutral, true);
        }
        let number = job.attempts + 1;
        let started = Instant::now();
        let at_ms = now_ms();
        let result = self.send(&event, number).await;
        let elapsed = started.elapsed();
        self.metrics
            .attempt_seconds
            .get_or_create(&self.metrics.sub(&sub.name))
            .observe(elapsed.as_secs_f64());
        let (status, error, verdict) = match result {
            Ok((status, retry_after)) => (
                Some(status.as_u16()),
                None,
                classify(status, retry_after.as_ref(), SystemTime::now()),
            ),
            Err(e) => (None, Some(e), Verdict::Retry { after: None }),
        };
        let attempt = Attempt {
            attempt: number,
            at_ms,
            duration_ms: elapsed.as_millis() as u64,
            status,
            error: error.clone(),
        };
        let describe = || error.clone().unwrap_or_else(|| format!("HTTP {}", status.unwrap_or(0)));
        let (outcome, health) = match verdict {
            Verdict::Delivered => (Outcome::Delivered, Health::Good),
            Verdict::Gone => (
                Outcome::Dead {
                    error: "HTTP 410 Gone: subscriber wants no more deliveries".into(),
                },
                Health::Good,
            ),
            Verdict::Retry { after } => match retry_delay(&sub.retry, job.step) {
                None => (Outcome::Dead { error: describe() }, Health::Bad),
                Some(delay) => {
                    let delay = next_delay(delay, after, sub.max_retry_after);
                    (
                        Outcome::Retry {
                            due_ms: now_ms() + delay.as_millis() as u64,
                        },
                        Health::Bad,
                    )
                }
            },
        };
        let finished = !matches!(outcome, Outcome::Retry { .. });
        let label = match &outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
            Outcome::Skipped => "skipped",
        };
        self.metrics.delivery(&sub.name, label);
        match &outcome {
            Outcome::Retry { due_ms } => tracing::debug!(
                subscriber = %sub.name, event = %job.event, attempt = number, status, error = error.as_deref(),
                retry_in_ms = due_ms.saturating_sub(now_ms()), "delivery failed; will retry"
            ),
            Outcome::Dead { error } => tracing::warn!(
                subscriber = %sub.name, event = %job.event, attempt = number, outcome = "dead", error = %error, "delivery gave up"
            ),
            _ => tracing::info!(
                subscriber = %sub.name, event = %job.event, attempt = number, status, ms = elapsed.as_millis() as u64, outcome = label, "delivered"
            ),
        }
        if let Err(e) = self.record(&job, Some(&attempt), &outcome).await {
            tracing::error!(subscriber = %sub.name, event = %job.event, error = %e, "cannot record delivery outcome; the job will be retried");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return (health, false);
        }
        (health, finished)
    }

    /// POST the event; the status and `Retry-After`, or why there is none.
    async fn send(&self, event: &Event, attempt: u32) -> Result<(StatusCode, Option<HeaderValue>), String> {
        let sub = &self.sub;
        let id = event.id.to_string();
        let ts = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut req = Request::post(sub.url.clone())
            .header(http::header::USER_AGENT, USER_AGENT)
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header(ATTEMPT_HEADER, attempt.to_string());
        if let Some(ct) = &event.meta.content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        if !sub.keys.is_empty() {
            req = req.header(
                "webhook-signature",
                crate::auth::standard_webhooks_signature(&sub.keys, &id, ts, &event.body),
            );
        }
        let mut req = req
            .body(Full::new(event.body.clone()))
            .map_err(|e| format!("cannot build request: {e}"))?;
        // Configured headers replace ours (e.g. user-agent); reserved ones cannot be configured.
        for (k, v) in &sub.headers {
            req.headers_mut().insert(k, v.clone());
        }
        let deadline = tokio::time::Instant::now() + sub.timeout;
        let timed_out = || format!("timeout after {}", humantime::format_duration(sub.timeout));
        let resp = match tokio::time::timeout_at(deadline, self.client.request(req)).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) => return Err(format!("connection error: {}", error_chain(&e))),
            Ok(Ok(resp)) => resp,
        };
        // The status decides the outcome; the rest of the answer is read (bounded
        // in size and by the same deadline) only so the connection can be reused.
        let status = resp.status();
        let retry_after = resp.headers().get(http::header::RETRY_AFTER).cloned();
        let mut body = resp.into_body();
        let drain = async {
            let mut read = 0usize;
            while let Some(Ok(f)) = body.frame().await {
                read += f.data_ref().map_or(0, |d| d.len());
                if read > MAX_RESPONSE {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline, drain).await;
        Ok((status, retry_after))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests;
