//! A subscriber's lane: the task that takes its work from the store (fresh
//! events and due retries, oldest due first), runs up to `concurrency`
//! attempts at once under its rate limit and circuit, and hands each finished
//! piece of work back to the store. Lanes share nothing but the store, so a
//! slow or dead subscriber never delays another one, nor ingest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::attempt::{Attempter, Health, READ_ERROR_PAUSE};
use super::circuit::{Circuit, State};
use super::client::LaneClient;
use super::handover::Phase;
use super::rate::Limiter;
use crate::clock;
use crate::config::Subscriber;
use crate::metrics::{Metrics, SubLabels};
use crate::store::{Store, Ticket, WorkSource};

/// One subscriber's lane, shared between its task and the admin side.
pub struct Lane {
    /// The subscriber's settings; a reload replaces them in place.
    sub: RwLock<Arc<Subscriber>>,
    /// Its HTTP client and connection pool (replaced by a reload that
    /// changes the CA file or timeout, kept otherwise).
    client: RwLock<LaneClient>,
    /// Its rate limit, if it has one (kept by a reload that keeps the rate).
    limiter: RwLock<Option<Arc<Limiter>>>,
    /// Wakes the task when the settings change.
    changed: Notify,
    /// Pending deliveries, as the task last counted them
    /// ([`super::handover::UNKNOWN_DEPTH`] before its source is open).
    depth: AtomicU64,
    /// Attempts running now.
    in_flight: AtomicUsize,
    /// The circuit's state, as the task last saw it.
    circuit: AtomicU8,
    /// Tells the task to stop.
    stop: watch::Sender<bool>,
    /// How the stopping task ends: abandoning its attempts in flight (a
    /// shutdown's end, [`ABANDON`]) or letting them finish (a reload,
    /// [`FINISH`]; a shutdown's start, [`FINISH_SENDING`]: attempts not
    /// sending yet are dropped at once, not waited for, or one would send
    /// during the grace and be cut off, sent twice; change review, stop 65).
    stopping: AtomicU8,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// [`Lane::stopping`]: abandon attempts in flight.
const ABANDON: u8 = 0;
/// Let every attempt in flight finish (a reload).
const FINISH: u8 = 1;
/// Let attempts already sending finish, drop the others (a shutdown).
const FINISH_SENDING: u8 = 2;

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}
fn write<T>(l: &RwLock<T>, v: T) {
    *l.write().unwrap_or_else(|e| e.into_inner()) = v;
}

impl Lane {
    /// A lane for `sub`, under the subscriber's `limiter` ([`super::rate::Limiters`]),
    /// with the depth its opening knows (see [`super::handover::Opening::depth`]).
    pub(super) fn new(
        sub: &Subscriber,
        client: LaneClient,
        limiter: Option<Arc<Limiter>>,
        depth: u64,
    ) -> (Arc<Lane>, watch::Receiver<bool>) {
        let (stop, stop_rx) = watch::channel(false);
        let lane = Arc::new(Lane {
            sub: RwLock::new(Arc::new(sub.clone())),
            client: RwLock::new(client),
            limiter: RwLock::new(limiter),
            changed: Notify::new(),
            depth: AtomicU64::new(depth),
            in_flight: AtomicUsize::new(0),
            circuit: AtomicU8::new(0),
            stop,
            stopping: AtomicU8::new(ABANDON),
            task: std::sync::Mutex::new(None),
        });
        (lane, stop_rx)
    }

    /// New settings from a reload; the task picks them up at once. The
    /// client (its open connections) is kept when its settings did not
    /// change; `limiter` is the subscriber's ([`super::rate::Limiters`]).
    pub(super) fn update(&self, sub: &Subscriber, client: LaneClient, limiter: Option<Arc<Limiter>>) {
        write(&self.sub, Arc::new(sub.clone()));
        {
            let mut current = self.client.write().unwrap_or_else(|e| e.into_inner());
            if !current.made_like(&client) {
                *current = client;
            }
        }
        write(&self.limiter, limiter);
        self.changed.notify_one();
    }

    pub(super) fn set_task(&self, task: tokio::task::JoinHandle<()>) {
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Stop the task; attempts in flight are abandoned (sent again after a restart).
    pub(super) async fn stop(&self) {
        self.signal_stop();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }

    pub(super) fn signal_stop(&self) {
        self.stopping.store(ABANDON, Ordering::SeqCst);
        let _ = self.stop.send(true);
    }

    /// Stop taking work; attempts in flight finish and are recorded
    /// ([`super::handover::finish`]) before the task ends.
    pub(super) fn retire(&self) {
        self.stopping.store(FINISH, Ordering::SeqCst);
        let _ = self.stop.send(true);
    }

    /// A shutdown's [`Self::retire`]: attempts already sending finish and
    /// are recorded; those not sending yet (verifying, waiting for media,
    /// numbering) are dropped at once and left in the store, for the
    /// restart (in cluster mode, another relay after `takeover`).
    pub(super) fn retire_for_shutdown(&self) {
        self.stopping.store(FINISH_SENDING, Ordering::SeqCst);
        let _ = self.stop.send(true);
    }

    /// Whether the task has ended.
    pub(super) fn has_ended(&self) -> bool {
        task_ended(&self.task)
    }

    pub fn subscriber(&self) -> Arc<Subscriber> {
        read(&self.sub)
    }
    /// Pending deliveries as the task last counted them; `None` while the
    /// lane waits for the subscriber's stopped lane to finish its attempts
    /// (its work source is not open yet: the store's count stands for it).
    pub fn queue_depth(&self) -> Option<u64> {
        super::handover::depth(&self.depth)
    }
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    pub fn circuit(&self) -> &'static str {
        match self.circuit.load(Ordering::Relaxed) {
            1 => State::Open.name(),
            2 => State::HalfOpen.name(),
            _ => State::Closed.name(),
        }
    }
}

fn code(s: State) -> u8 {
    match s {
        State::Closed => 0,
        State::Open => 1,
        State::HalfOpen => 2,
    }
}

/// The lane's task.
pub(super) async fn run(
    lane: Arc<Lane>,
    store: Store,
    mut source: WorkSource,
    metrics: Arc<Metrics>,
    verifier: Arc<super::verify_gate::Verifier>,
    mut stop: watch::Receiver<bool>,
    held: Arc<super::handover::Held>,
) {
    let name = lane.subscriber().name.clone();
    let labels = metrics.sub(&name);
    let signal = source.signal();
    let mut circuit = Circuit::new(lane.subscriber().circuit_threshold);
    let failures = Arc::new(crate::failure_log::FailureLog::default());
    let mut tasks: JoinSet<(Health, bool)> = JoinSet::new();
    // Each attempt's ticket, when it was spawned (the circuit tells probes
    // from stale requests) and whether it is sending (for a handover).
    let mut tickets: HashMap<tokio::task::Id, (Ticket, Instant, Arc<Phase>)> = HashMap::new();
    // While the circuit is open the lane waits for its next probe (up to a
    // minute): the queue depth the admin views show is copied meanwhile at
    // least this often (see `clock::DEPTH_REFRESH`); one timer for the
    // lane's life. Otherwise every finished attempt and new work wake it;
    // in cluster mode, whose store counts the backlog apart, the timer too.
    let mut refresh = clock::depth_refresh();
    loop {
        if *stop.borrow() {
            break;
        }
        let sub = lane.subscriber();
        circuit.set_threshold(sub.circuit_threshold);
        let now = Instant::now();
        let state = circuit.state(now);
        lane.circuit.store(code(state), Ordering::Relaxed);
        let capacity = circuit.capacity(now, sub.concurrency, tickets.len());
        let mut took = 0;
        if capacity == 0 {
            // Nothing can start now (the circuit is open, or half-open with
            // its probe in flight, or every slot is busy): ask for nothing and
            // give back at once what came but was not started (in cluster
            // mode, relays that can take it do meanwhile). Each message that
            // arrives wakes the lane, so a pull request still out at NATS
            // leaves nothing here either.
            source.give_back_all();
        }
        if capacity > 0 {
            match source.take(capacity, clock::now_ms()).await {
                Ok(work) => {
                    took = work.len();
                    for w in work {
                        // Each waits for its cell of the rate limit, if there
                        // is one, and goes with the settings of that moment:
                        // a reload's new URL, secrets or rate reach it.
                        if !rate_wait(
                            &lane,
                            &mut stop,
                            &mut tasks,
                            (&metrics, &labels),
                            &mut tickets,
                            &mut source,
                            &mut circuit,
                        )
                        .await
                        {
                            break;
                        }
                        // Taken a while ago (a rate limit): another relay
                        // may have it by now, or NATS may be away.
                        if !source.confirm(&w.ticket).await {
                            continue;
                        }
                        let client = lane.client.read().unwrap_or_else(|e| e.into_inner()).http.clone();
                        let phase = Arc::new(Phase::default());
                        let attempter = Attempter {
                            store: store.clone(),
                            metrics: metrics.clone(),
                            sub: lane.subscriber(),
                            client,
                            verifier: verifier.clone(),
                            phase: phase.clone(),
                            failures: failures.clone(),
                        };
                        let ticket = w.ticket.clone();
                        let handle = tasks.spawn(attempter.run(w));
                        tickets.insert(handle.id(), (ticket, Instant::now(), phase));
                        lane.in_flight.store(tickets.len(), Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    tracing::error!(subscriber = %name, error = %e, "cannot read work from the store");
                    tokio::select! {
                        _ = tokio::time::sleep(READ_ERROR_PAUSE) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
        }
        lane.depth.store(source.depth(), Ordering::Relaxed);
        lane.in_flight.store(tickets.len(), Ordering::Relaxed);
        metrics.in_flight.get_or_create(&labels).set(tickets.len() as i64);
        // Once per turn, after the take: a probe just taken counts from now.
        metrics
            .circuit_open
            .get_or_create(&labels)
            .set(circuit_gauge(state, tickets.len()));
        // Wait for whatever can change what is due: a finished attempt, new
        // work, the next due time, the circuit's pause ending, new settings.
        let wake_at = match state {
            State::Open => circuit.reopens_at(),
            _ => clock::next_wake(capacity, took, source.next_due(), now),
        };
        if wake_at.is_some_and(|t| t <= now) {
            // Let finished attempts in before taking more.
            tokio::task::yield_now().await;
        }
        tokio::select! {
            biased;
            // The stop itself, not a change since: the rate-limit wait above
            // may have seen it already and left only its own loop.
            _ = async { stop.wait_for(|stopped| *stopped).await.is_ok() } => break,
            Some(done) = tasks.join_next_with_id() => {
                // Every attempt finished by now, not one per turn: a batch
                // of records answered together frees its slots together,
                // and one take refills them.
                let mut done = Some(done);
                while let Some(d) = done.take().or_else(|| tasks.try_join_next_with_id()) {
                    finished(d, &name, &mut tickets, &mut source, &mut circuit).await;
                }
            }
            // A stopped pull lane recorded work it still leased: let it go.
            _ = held.changed() => held.release_settled(&mut source).await,
            _ = signal.notified() => {}
            _ = lane.changed.notified() => {}
            _ = sleep_until(wake_at), if wake_at.is_some() => {}
            _ = refresh.tick(), if matches!(state, State::Open) || source.counted_apart() => {}
        }
    }
    stop.borrow_and_update();
    let mode = || match lane.stopping.load(Ordering::SeqCst) {
        FINISH => Some(super::handover::Unsent::WaitThenGiveBack),
        FINISH_SENDING => Some(super::handover::Unsent::Leave),
        _ => None,
    };
    let timeout = lane.subscriber().timeout;
    super::handover::finish(
        &mut tasks,
        &mut tickets,
        &mut source,
        timeout,
        mode,
        &mut stop,
        &lane.in_flight,
    )
    .await;
    tasks.abort_all();
    lane.in_flight.store(0, Ordering::Relaxed);
}

/// Wait, before sending work already taken, for the rate limit's next cell
/// if the lane has a limit (the limiter read anew when a reload changes it:
/// a rate removed sends at once, one added waits), and while the circuit
/// lets nothing start (it opened meanwhile: the work goes once its pause
/// ends, as the probe, one at a time; or a reload lowered `concurrency`).
/// Attempts that finish meanwhile are recorded (the circuit told) and the
/// admin views and gauges follow. False when the lane stops.
async fn rate_wait(
    lane: &Lane,
    stop: &mut watch::Receiver<bool>,
    tasks: &mut JoinSet<(Health, bool)>,
    (metrics, labels): (&Metrics, &SubLabels),
    tickets: &mut HashMap<tokio::task::Id, (Ticket, Instant, Arc<Phase>)>,
    source: &mut WorkSource,
    circuit: &mut Circuit,
) -> bool {
    loop {
        let now = Instant::now();
        // Something is in flight whenever nothing may start and the circuit
        // is not open: an attempt's end wakes this.
        let held = circuit.capacity(now, lane.subscriber().concurrency, tickets.len()) == 0;
        let limiter = read(&lane.limiter);
        if !held && limiter.is_none() {
            return true;
        }
        let state = circuit.state(now);
        lane.in_flight.store(tickets.len(), Ordering::Relaxed);
        lane.circuit.store(code(state), Ordering::Relaxed);
        metrics.in_flight.get_or_create(labels).set(tickets.len() as i64);
        metrics
            .circuit_open
            .get_or_create(labels)
            .set(circuit_gauge(state, tickets.len()));
        let reopens = circuit.reopens_at().filter(|_| state == State::Open);
        tokio::select! {
            biased;
            _ = stop.changed() => return false,
            _ = lane.changed.notified() => {}
            _ = sleep_until(reopens), if reopens.is_some() => {}
            Some(done) = tasks.join_next_with_id() => {
                finished(done, &lane.subscriber().name, tickets, source, circuit).await;
            }
            _ = until_ready(limiter.as_deref()), if !held => return true,
        }
    }
}

/// The limiter's next cell; at once without one.
async fn until_ready(limiter: Option<&Limiter>) {
    if let Some(l) = limiter {
        l.until_ready().await;
    }
}

/// An attempt ended: let its work go from the cursor if it was recorded,
/// and tell the circuit how it went.
async fn finished(
    done: Result<(tokio::task::Id, (Health, bool)), tokio::task::JoinError>,
    name: &str,
    tickets: &mut HashMap<tokio::task::Id, (Ticket, Instant, Arc<Phase>)>,
    source: &mut WorkSource,
    circuit: &mut Circuit,
) {
    let (id, health, recorded) = match done {
        Ok((id, (health, recorded))) => (id, health, recorded),
        Err(e) => {
            tracing::error!(subscriber = %name, error = %e, "delivery attempt failed unexpectedly; it will be sent again after a restart (cluster mode: by any relay after store.nats.takeover)");
            (e.id(), Health::Neutral, false)
        }
    };
    let started = match tickets.remove(&id) {
        Some((ticket, started, _)) => {
            // Unrecorded work stays handed out: the cursor never passes it.
            if recorded {
                source.done(&ticket).await;
            }
            started
        }
        None => Instant::now(),
    };
    match health {
        Health::Good => {
            if circuit.succeeded() {
                tracing::info!(subscriber = %name, "subscriber answered again; circuit closed");
            }
        }
        Health::Bad => {
            let was_open = circuit.state(Instant::now()) != State::Closed;
            if let Some(pause) = circuit.failed(started, Instant::now()) {
                if !was_open {
                    tracing::warn!(subscriber = %name, pause_ms = pause.as_millis() as u64, "subscriber keeps failing; circuit open");
                }
            }
        }
        Health::Neutral => {}
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// `hookrelay_circuit_open`: 1 while the circuit is open, and while it is
/// half-open with its probe out (a subscriber that never answers spends
/// each probe's whole timeout there: 0 then reset every alert on it; push
/// delivery review, stop 65). Half-open with nothing sent yet is 0: it
/// stays so until work is due, hours on a long retry step, for a
/// subscriber that may have recovered (change review).
fn circuit_gauge(state: State, in_flight: usize) -> i64 {
    i64::from(state == State::Open || (state == State::HalfOpen && in_flight > 0))
}

/// Whether the lane task kept in `task` has ended (or never started): a
/// push or pull lane's.
pub(super) fn task_ended(task: &std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>) -> bool {
    task.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_none_or(|t| t.is_finished())
}
