//! The pull lane's task: the one owner of the subscriber's work source and
//! leases. It takes work from the store only while pullers wait (and only as
//! much as they asked for), parks an `after_archive` subscriber's messages
//! until their event's media is archived (like a push lane does before an
//! attempt), hands it out in due order, expires leases at their deadline
//! (a failed attempt), and turns acknowledgements into records
//! ([`super::settle`]) before letting the work go. It sleeps until something
//! can change what it has to do: a request, the store's work signal, a lease
//! or wait deadline, the next due retry, a finished record, new settings.
//!
//! Here are its loops: the running one, and the one a lane stopped by a
//! reload runs while it still serves its forwarders' acknowledgements of
//! what it leases. What it owns and each step it takes on it (expiring,
//! taking work, handing out, acknowledging) is [`super::state`].

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::state::State;
use super::{Cmd, PullLane};
use crate::clock;
use crate::delivery::handover::Turn;
use crate::delivery::verify_gate::Verifier;
use crate::metrics::Metrics;
use crate::store::{Store, WorkSource};

/// How long a stopping lane waits for records in progress.
const SETTLE_ON_STOP: Duration = Duration::from_secs(2);

/// What a stopping lane needs: its turn (let go as soon as what it leases
/// is [`Held`](crate::delivery::handover::Held)), and whether the stop is a
/// shutdown (true) rather than a reload's.
pub(super) struct Stopping {
    pub turn: Turn,
    pub closed: watch::Receiver<bool>,
    /// True when a shutdown's grace is over: leases still out are forgotten.
    pub forget: watch::Receiver<bool>,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    lane: Arc<PullLane>,
    store: Store,
    mut source: WorkSource,
    metrics: Arc<Metrics>,
    verifier: Arc<Verifier>,
    mut rx: mpsc::Receiver<Cmd>,
    mut stop: watch::Receiver<bool>,
    stopping: Stopping,
) {
    let name = lane.subscriber().name.clone();
    let held = stopping.turn.held();
    let signal = source.signal();
    let mut st = State::new(lane, store, metrics, verifier);
    // The queue depth the admin views show (see `clock::DEPTH_REFRESH`).
    let mut refresh = clock::depth_refresh();
    loop {
        if *stop.borrow() {
            break;
        }
        // What came while the lane was busy (a fill may take long), before
        // anything expires.
        commands(&mut st, queued(&mut rx, None), true);
        let now = Instant::now();
        st.expire(now);
        st.waiting.retain(|w| !w.reply.is_closed());
        let mut took = None;
        if !st.waiting.is_empty() {
            let room = st.room();
            let wanted: usize = st.waiting.iter().map(|w| w.max).sum::<usize>().min(room);
            let need = wanted.saturating_sub(st.leases.ready());
            if need > 0 {
                took = Some(st.fill(&mut source, need).await);
            } else {
                source.want_none();
            }
            st.confirm_ready(&mut source).await;
            // Leased from now: the fill may have taken long (a route that
            // verifies by fetch, asking a slow provider), and a lease counted
            // from before it would be born short, or already over.
            st.hand_out(Instant::now());
        } else {
            // Nobody pulls through this relay: take nothing from the shared
            // cursor (in cluster mode), so the pullers of other relays get it.
            source.want_none();
        }
        // What is there was handed out: pullers whose wait is over get nothing.
        while let Some(i) = st.waiting.iter().position(|w| w.until <= now) {
            let w = st.waiting.remove(i).expect("found");
            let _ = w.reply.send(Vec::new());
        }
        if st.waiting.is_empty() {
            st.give_back_ready(&mut source).await;
        }
        let labels = st.metrics.sub(&name);
        if st.lane.has_earlier_tokens() {
            // A pull waiting is answered under the token it was authorized
            // with: that token is kept for it too.
            let leased = st.token_gens();
            let live: HashSet<u64> = leased.chain(st.waiting.iter().map(|w| w.token_gen)).collect();
            st.lane.prune_tokens(|g| live.contains(&g));
        }
        st.lane.depth.store(source.depth(), Ordering::Relaxed);
        st.lane.leased.store(st.leases.leased(), Ordering::Relaxed);
        st.lane.waiting.store(st.waiting.len(), Ordering::Relaxed);
        st.metrics
            .pull_leased
            .get_or_create(&labels)
            .set(st.leases.leased() as i64);

        // Wake for the next lease or wait deadline, and, while pullers wait
        // with room to lease, for the next due retry.
        let mut wake_at = st.leases.next_deadline();
        let mut earliest = |t: Instant| wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
        if let Some(t) = st.waiting.iter().map(|w| w.until).min() {
            earliest(t);
        }
        if !st.waiting.is_empty() && st.room() > 0 {
            match took {
                Some(Err(())) => earliest(now + crate::delivery::attempt::READ_ERROR_PAUSE),
                _ => {
                    if let Some(due) = source.next_due() {
                        let t = if due > clock::now_ms() {
                            clock::instant_at(due)
                        } else if took.is_some_and(|n| n.is_ok_and(|n| n > 0)) {
                            now
                        } else {
                            now + clock::RECHECK
                        };
                        earliest(t);
                    }
                }
            }
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(done) = st.settling.join_next_with_id() => {
                // Unrecorded work stays handed out: the cursor never passes
                // it (an acknowledgement's is leased again, as it was).
                for (ticket, _) in st.joined(done) {
                    source.done(&ticket).await;
                }
            }
            // An earlier pull lane of the subscriber recorded work it still leased.
            _ = held.changed() => held.release_settled(&mut source).await,
            cmd = rx.recv() => match cmd {
                None => break,
                Some(cmd) => commands(&mut st, queued(&mut rx, Some(cmd)), true),
            },
            // New work: hand it to waiting pullers, or at least count it.
            _ = signal.notified() => {}
            _ = st.lane.changed.notified() => {}
            _ = sleep_until(wake_at), if wake_at.is_some() => {}
            _ = refresh.tick() => {}
        }
    }
    // Pullers still waiting see the lane gone.
    st.waiting.clear();
    st.lane.waiting.store(0, Ordering::Relaxed);
    let Stopping {
        turn,
        closed,
        mut forget,
    } = stopping;
    if *closed.borrow() {
        // A shutdown: the forwarders' acknowledgements of what is leased are
        // served until the last, or the end of the grace; then what is left
        // is forgotten (offered again after a restart); records in progress
        // may finish.
        shutdown_acks(&mut st, &mut source, &mut rx, &mut forget).await;
        st.leases.drain();
        st.lane.leased.store(0, Ordering::Relaxed);
        let _ = tokio::time::timeout(SETTLE_ON_STOP, async {
            while st.settling.join_next().await.is_some() {}
        })
        .await;
        return;
    }
    // A reload stopped the lane (its subscriber switched to push, removed or
    // moved to another route). Its forwarders still deliver what they lease:
    // the lane keeps serving their acknowledgements, and expires the leases
    // they do not answer, until the last lease and lapse are over. What it
    // leases is held for the subscriber's next lane meanwhile, which starts
    // now with everything else (see `handover`).
    for offer in st.leases.take_ready() {
        source.give_back(&offer.item.work.ticket).await;
    }
    for l in st.leases.held() {
        held.hold(l.offer.id, l.offer.item.work.ticket.clone());
    }
    for (event, ticket) in &st.recording {
        held.hold(*event, ticket.clone());
    }
    let mut kept = source.kept_while_leased();
    if let Some(kept) = kept.as_mut() {
        // It takes nothing more: what came goes back to NATS at once.
        kept.give_back_all();
    }
    drop(turn);
    if st.leases.held().next().is_some() {
        tracing::info!(subscriber = %name, leased = st.leases.held().count(),
            "pull lane stopped by a reload: it still answers its forwarders' acknowledgements of the messages \
             they lease until each lease is over; those messages are not delivered otherwise meanwhile");
    }
    loop {
        commands(&mut st, queued(&mut rx, None), false);
        st.expire(Instant::now());
        st.lane.leased.store(st.leases.leased(), Ordering::Relaxed);
        if st.lane.has_earlier_tokens() {
            let live: HashSet<u64> = st.token_gens().collect();
            st.lane.prune_tokens(|g| live.contains(&g));
        }
        if st.leases.held().next().is_none() && st.settling.is_empty() {
            break;
        }
        let wake_at = st.leases.next_deadline();
        tokio::select! {
            biased;
            // A shutdown's grace is over: what is still leased is offered
            // again after a restart.
            _ = async { forget.wait_for(|c| *c).await.is_ok() } => break,
            Some(done) = st.settling.join_next_with_id() => {
                // Unrecorded work stays held: nothing passes it before a
                // restart (an acknowledgement's is leased again, as it was).
                for (ticket, event) in st.joined(done) {
                    if let Some(kept) = kept.as_mut() {
                        kept.done(&ticket).await;
                    }
                    held.settle(&event);
                }
            }
            cmd = rx.recv() => match cmd {
                Some(cmd) => commands(&mut st, queued(&mut rx, Some(cmd)), false),
                None => break,
            },
            _ = sleep_until(wake_at), if wake_at.is_some() => {}
        }
    }
    st.lane.leased.store(0, Ordering::Relaxed);
}

/// A shutdown's grace for what a lane leases: acknowledgements applied
/// (pulls get nothing), leases expired at their deadline, until none is left
/// and every record is written, or `forget` turns true.
async fn shutdown_acks(
    st: &mut State,
    source: &mut WorkSource,
    rx: &mut mpsc::Receiver<Cmd>,
    forget: &mut watch::Receiver<bool>,
) {
    loop {
        commands(st, queued(rx, None), false);
        st.expire(Instant::now());
        st.lane.leased.store(st.leases.leased(), Ordering::Relaxed);
        if st.leases.held().next().is_none() && st.settling.is_empty() {
            return;
        }
        let wake_at = st.leases.next_deadline();
        tokio::select! {
            biased;
            _ = async { forget.wait_for(|f| *f).await.is_ok() } => return,
            Some(done) = st.settling.join_next_with_id() => {
                for (ticket, _) in st.joined(done) {
                    source.done(&ticket).await;
                }
            }
            cmd = rx.recv() => match cmd {
                Some(cmd) => commands(st, queued(rx, Some(cmd)), false),
                None => return,
            },
            _ = sleep_until(wake_at), if wake_at.is_some() => {}
        }
    }
}

/// `first` and the commands waiting behind it.
fn queued(rx: &mut mpsc::Receiver<Cmd>, first: Option<Cmd>) -> Vec<Cmd> {
    let mut cmds: Vec<Cmd> = first.into_iter().collect();
    while let Ok(cmd) = rx.try_recv() {
        cmds.push(cmd);
    }
    cmds
}

/// Apply commands that came to the lane's state (`running`: a lane a
/// reload stopped hands nothing out): pulls join the waiting ones, the
/// acknowledgements are applied together, in order
/// ([`State::ack_all`](super::state::State::ack_all)).
fn commands(st: &mut State, cmds: Vec<Cmd>, running: bool) {
    let mut acks = Vec::new();
    for cmd in cmds {
        match cmd {
            // No more hand-outs: the puller sees the lane gone.
            Cmd::Pull(_) if !running => {}
            // Authorized with a token a reload replaced, and no longer kept
            // (pruned before the request got here): its token could not
            // acknowledge anything, so it gets nothing.
            Cmd::Pull(p) if !st.lane.token_gen_open(p.token_gen) => {
                let _ = p.reply.send(Vec::new());
            }
            Cmd::Pull(p) => st.waiting.push_back(p),
            Cmd::Ack(a) => acks.push(a),
        }
    }
    st.ack_all(acks);
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
