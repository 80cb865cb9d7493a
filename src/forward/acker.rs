//! Acknowledgements: every finished message (delivered locally, or to hand
//! back) comes here; whatever has gathered while the previous request was
//! on its way goes to the relay as one `POST …/ack`. While the relay is away
//! the batch is kept and sent again with back-off (it grows meanwhile). Ids
//! the relay no longer leases to us (expired, or the relay restarted) are
//! dropped from the batch: the relay offers those messages again, with the
//! same id. A relay that refuses a request as too large (413: a small
//! `server.max_body`) gets the batch in smaller parts. A 409 naming none of
//! the part's ids splits it (halves, down to one id) so that the others go
//! through; one id refused alone waits behind the others, and when nothing
//! else is left it is sent again after a back-off (1 s doubling to 30 s),
//! while its lease and lapse last (those dropped then are logged). While the
//! acker waits it keeps taking in finished messages, so the pump's workers
//! never wait for it. A hand-back carries what the local service answered, for the
//! relay's history. A relay older than a field of the acknowledgement
//! refuses it (400, unknown field): the acker then sends without it, and
//! never gives up delivered ids for that. While the relay is away, each id
//! is kept until the relay can no longer take it: its lease plus the lapse
//! after it (at most one more lease) counted from when it was pulled.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::client::{Relay, RelayError};
use super::refused;
use super::unacked::Unacked;
use crate::pull::wire::{LocalAnswer, MAX_ACK_IDS};
use http::StatusCode;

/// A message the local service answered, or that was cut off.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: String,
    pub end: End,
    /// What the local service answered a hand-back (its status, or why none).
    pub local: Option<LocalAnswer>,
    /// Until when the relay may still take this message's answer (see [`keep_until`]).
    pub keep_until: Instant,
    /// The attempt number of its latest hand-out to this forwarder: the
    /// relay refuses the answer for a later one (a lease that ran out while
    /// the answer was on its way, offered again), which this forwarder then
    /// acknowledges when it comes, without posting it a second time.
    pub attempt: u32,
}

impl Finished {
    /// A message delivered here before, whose acknowledgement the relay did
    /// not confirm, offered again (`attempt`): acknowledged, not posted.
    pub fn delivered_before(id: String, keep_until: Instant, attempt: u32) -> Finished {
        Finished {
            id,
            end: End::Delivered,
            local: None,
            keep_until,
            attempt,
        }
    }
}

/// Until when the relay may still take the answer to a message pulled at
/// `pulled` with a lease of `lease_ms` (unknown from an older relay: the
/// longest lease there is): its lease, then its lapse, which is at most one
/// more lease (`delivery::pull::state`); after that it is offered again.
pub fn keep_until(pulled: Instant, lease_ms: Option<u64>) -> Instant {
    let lease = lease_ms.map_or(crate::config::MAX_PULL_LEASE, Duration::from_millis);
    pulled + lease.saturating_mul(2)
}

/// How a message ended here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// 2xx: acknowledge.
    Delivered,
    /// Any other answer, or none: hand back (the retry schedule's next step).
    HandBack,
    /// Cut off because the forwarder stops: released, offered again at once
    /// without using a retry step.
    Release,
}

/// The most bytes an id's attempt number adds (`"evt_…":4294967295,`).
const ATTEMPT_BYTES: usize = 44;
/// Ids per acknowledgement with their attempt numbers: what fits the
/// relay's limit ([`crate::pull::wire::MAX_ACK_BODY`]; 1,000 without them).
const IDS_WITH_ATTEMPTS: usize = (crate::pull::wire::MAX_ACK_BODY - 1024) / (33 + ATTEMPT_BYTES);
const CONFLICT_BASE: Duration = Duration::from_secs(1);
const CONFLICT_MAX: Duration = Duration::from_secs(30);

/// How long a field an older relay refused stays left out before it is
/// tried again (the relay behind a balancer may have been upgraded).
const OLD_RELAY_PAUSE: Duration = Duration::from_secs(600);
/// An acknowledgement whose `local` answers would make it larger than this
/// goes without them (the relay's limit is 64 KiB, `server.max_body` if less).
const LOCAL_BUDGET: usize = 48 * 1024;

/// Fields an older relay refused, left out until the pause is over.
#[derive(Default)]
struct OldRelay {
    release_until: Option<tokio::time::Instant>,
    local_until: Option<tokio::time::Instant>,
    attempts_until: Option<tokio::time::Instant>,
}

impl OldRelay {
    fn active(until: &mut Option<tokio::time::Instant>) -> bool {
        match *until {
            Some(t) if tokio::time::Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }
}

/// The acknowledgement's size in bytes, about, without and with `local`:
/// `ids` in their lists, `attempt_bytes` for their attempt numbers.
fn sizes(ids: usize, attempt_bytes: usize, local: &std::collections::BTreeMap<String, LocalAnswer>) -> (usize, usize) {
    let base = 64 + ids * 33 + attempt_bytes;
    let extra: usize = local
        .iter()
        .map(|(id, a)| id.len() + 40 + a.error.as_ref().map_or(0, |e| e.len() * 2))
        .sum();
    (base, base + extra)
}

/// Wait `wait`, taking into `batch` what finishes meanwhile, so that the
/// pump's workers never block on a waiting acker; `open` turns false when
/// the channel is closed.
async fn pause(wait: Duration, rx: &mut mpsc::Receiver<Finished>, batch: &mut Vec<Finished>, open: &mut bool) {
    let until = tokio::time::sleep(wait);
    tokio::pin!(until);
    while *open {
        tokio::select! {
            _ = &mut until => return,
            f = rx.recv() => match f {
                Some(f) => batch.push(f),
                None => *open = false,
            },
        }
    }
    until.await;
}

/// Drop the ids of `batch` the relay can no longer take (their lease and
/// lapse over), logging them once (`why`: what kept them; an `error` when
/// the relay was away, else a `warn`).
fn drop_over(batch: &mut Vec<Finished>, why: &str, away: bool) {
    let now = Instant::now();
    let over: Vec<&str> = batch
        .iter()
        .filter(|f| f.keep_until <= now)
        .map(|f| f.id.as_str())
        .collect();
    if over.is_empty() {
        return;
    }
    if away {
        tracing::error!(ids = ?over, "acknowledgement given up: {why} until these leases were over; the relay \
            offers these messages again");
    } else {
        tracing::warn!(ids = ?over, "acknowledgement given up: {why} until these leases were over; the relay \
            offers these messages again");
    }
    batch.retain(|f| f.keep_until > now);
}

/// Run until the sender side is closed and everything received was sent (or
/// given up); delivered ids the relay confirmed are taken out of `unacked`.
///
/// An acknowledgement refused for a reason that holds for every one (a
/// proxy on the way answering `POST …/ack` with 403 or 404, a token the
/// relay no longer takes) is given up, and `all_refused` says so: the pump
/// stops (see `pump::Fatal::AcksRefused`).
pub async fn run(
    relay: Arc<Relay>,
    mut rx: mpsc::Receiver<Finished>,
    unacked: Arc<Unacked>,
    all_refused: watch::Sender<Option<String>>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    // A 409 that names no id of the acknowledgement (so nothing to leave
    // out): sent again only after this (1 s doubling to 30 s).
    let mut conflicts = Backoff::new(CONFLICT_BASE, CONFLICT_MAX);
    // A relay older than the `release` list refuses it (400, unknown field):
    // for a while releases go as hand-backs, as that relay expects. One older
    // than `local` refuses that: for a while it is left out.
    let mut old = OldRelay::default();
    // Ids sent in one request at most: halved when the relay answers 413 (a
    // small `server.max_body` caps its acknowledgements), the rest of the
    // batch goes in the next requests.
    let mut cap = MAX_ACK_IDS;
    // Whether the channel is still open (it closes while the acker waits).
    let mut open = true;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // This batch goes without `local` (too large, or the relay refused it).
        let mut without_local = false;
        // This batch goes without `attempts` (one id alone too large with them).
        let mut without_attempts = false;
        // Ids per request after a 409 that named none of a part's ids:
        // halved at each, doubled back after each part applied.
        let mut split = MAX_ACK_IDS;
        // Ids refused alone by such a 409, put behind the others once.
        let mut refused: HashSet<String> = HashSet::new();
        // The ids of the acknowledgement on its way (see below).
        let mut acking = None;
        loop {
            while batch.len() < MAX_ACK_IDS {
                match rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            // A message offered again (its lease had expired) may have finished twice: the last word counts,
            // but a release never replaces another outcome of its id: one released while the
            // acknowledgement of its delivery was on its way (`release::release_now`) would have
            // taken that acknowledgement's place, the id then never confirmed, and a replay of it
            // acknowledged unsent (review of stop 75's mend). Its lease runs out instead.
            let answered: HashSet<String> = batch
                .iter()
                .filter(|f| f.end != End::Release)
                .map(|f| f.id.clone())
                .collect();
            let mut seen = HashSet::new();
            batch.reverse();
            batch.retain(|f| !(f.end == End::Release && answered.contains(&f.id)) && seen.insert(f.id.clone()));
            batch.reverse();
            let with_attempts = !(without_attempts || OldRelay::active(&mut old.attempts_until));
            let most = if with_attempts { IDS_WITH_ATTEMPTS } else { MAX_ACK_IDS };
            let sent = batch.len().min(cap).min(split).min(most);
            let part = &batch[..sent];
            let list =
                |end: End| -> Vec<String> { part.iter().filter(|f| f.end == end).map(|f| f.id.clone()).collect() };
            let (ids, mut retry, mut release) = (list(End::Delivered), list(End::HandBack), list(End::Release));
            if OldRelay::active(&mut old.release_until) {
                retry.append(&mut release);
            }
            let mut local: std::collections::BTreeMap<String, LocalAnswer> =
                match without_local || OldRelay::active(&mut old.local_until) {
                    false => part
                        .iter()
                        .filter(|f| f.end == End::HandBack)
                        .filter_map(|f| Some((f.id.clone(), f.local.clone()?)))
                        .collect(),
                    true => Default::default(),
                };
            // The answers are extra: they never make an acknowledgement too large.
            // `"evt_…":N,` each.
            let attempt_bytes = match with_attempts {
                true => part.iter().map(|f| f.id.len() + 4 + digits(f.attempt)).sum(),
                false => 0,
            };
            if sizes(sent, attempt_bytes, &local).1 > LOCAL_BUDGET {
                local.clear();
            }
            // The attempts acknowledged, kept with their confirmation (sent
            // only to a relay that takes them; an older one numbers
            // attempts the same way).
            let tried: std::collections::BTreeMap<String, u32> =
                part.iter().map(|f| (f.id.clone(), f.attempt)).collect();
            let attempts = match with_attempts {
                true => tried.clone(),
                false => Default::default(),
            };
            // Offers of `ids` meanwhile wait for this answer (`Unacked`),
            // read once what it confirmed was taken out: the guard is kept
            // across a pause and sending again (an answer lost, a relay
            // away: the next answer may say the relay had it, and the offer
            // is then a replay), replaced by the next turn's before it
            // goes, and dropped when the batch is done (change review,
            // stop 67: dropped before the pause, such an offer was taken as
            // unconfirmed at once and acknowledged unsent).
            acking.replace(unacked.acking(&ids));
            match relay.ack(&ids, &retry, &release, local.clone(), attempts.clone()).await {
                Ok(a) => {
                    if !a.warnings.is_empty() {
                        tracing::info!(warnings = ?a.warnings, "the relay left some of the local service's answers out");
                    }
                    tracing::debug!(
                        acknowledged = a.acknowledged,
                        retried = a.retried,
                        dead = a.dead,
                        "acknowledged"
                    );
                    unacked.confirmed(&ids, &tried);
                    backoff.reset();
                    split = split.saturating_mul(2).min(MAX_ACK_IDS);
                    batch.drain(..sent);
                    if batch.is_empty() {
                        conflicts.reset();
                        break;
                    }
                }
                Err(RelayError::NotLeased {
                    ids: late,
                    rest_applied,
                    delivered,
                    unknown,
                }) => {
                    refused::take_in(&unacked, &late, &delivered, &unknown, &tried);
                    if rest_applied {
                        // A cluster relay applied the others of this part
                        // where they are leased: the part is done, as when
                        // it is applied, and the rest of the batch (a part
                        // after a 413) goes next.
                        unacked.confirmed(ids.iter().filter(|id| !late.contains(id)), &tried);
                        backoff.reset();
                        conflicts.reset();
                        batch.drain(..sent);
                    } else if batch[..sent].iter().any(|f| late.contains(&f.id)) {
                        // Nothing was changed: the same without those ids.
                        conflicts.reset();
                        batch.retain(|f| !late.contains(&f.id));
                    } else if sent > 1 {
                        // It names no id of this part: sent again as it is,
                        // it would be refused again. Halved, the ids the
                        // relay takes go through and the one it objects to
                        // is isolated.
                        split = sent / 2;
                        tracing::warn!(
                            ids_per_request = split,
                            "the relay refused the acknowledgement (409) naming none of its ids; sending it in \
                             smaller parts"
                        );
                    } else if batch.len() > 1 && refused.insert(batch[0].id.clone()) {
                        // Refused alone: behind the others, which go first.
                        tracing::warn!(id = %batch[0].id,
                            "the relay refused the acknowledgement of this id (409) without naming it; trying the \
                             others first");
                        let f = batch.remove(0);
                        batch.push(f);
                    } else {
                        // Only refused ids left: sent again after a wait,
                        // each only while the relay can take it.
                        let wait = conflicts.next_delay();
                        let ids: Vec<_> = batch[..sent].iter().map(|f| &f.id).collect();
                        tracing::warn!(retry_in_ms = wait.as_millis() as u64, ids = ?ids,
                            "the relay refused the acknowledgement (409) naming none of its ids; trying again");
                        pause(wait, &mut rx, &mut batch, &mut open).await;
                        refused.clear();
                        drop_over(&mut batch, "the relay refused them (409)", false);
                    }
                    if batch.is_empty() {
                        break;
                    }
                }
                Err(RelayError::Status(StatusCode::BAD_REQUEST, why))
                    if !release.is_empty() && why.contains("unknown field `release`") =>
                {
                    tracing::warn!(
                        "the relay does not know released messages (an older version): handing them back instead"
                    );
                    old.release_until = Some(tokio::time::Instant::now() + OLD_RELAY_PAUSE);
                }
                Err(RelayError::Status(StatusCode::BAD_REQUEST, why)) if why.contains("unknown field `attempts`") => {
                    tracing::info!(
                        "the relay does not take attempt numbers with acknowledgements (an older version): leaving \
                         them out"
                    );
                    old.attempts_until = Some(tokio::time::Instant::now() + OLD_RELAY_PAUSE);
                }
                Err(RelayError::Status(StatusCode::BAD_REQUEST, why))
                    if !local.is_empty() && why.contains("unknown field `local`") =>
                {
                    tracing::info!(
                        "the relay does not record the local service's answers (an older version): leaving them out"
                    );
                    old.local_until = Some(tokio::time::Instant::now() + OLD_RELAY_PAUSE);
                }
                // Refused for what the answers add (a body over the relay's
                // limit, an answer it could not read): the same without them.
                Err(RelayError::Status(StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE, why))
                    if !local.is_empty() =>
                {
                    tracing::info!(error = %why, "acknowledgement refused with the local service's answers; sending it without them");
                    without_local = true;
                }
                // Too large even without the answers (a relay whose
                // `server.max_body` is small): fewer ids per request.
                Err(RelayError::Status(StatusCode::PAYLOAD_TOO_LARGE, why)) if sent > 1 => {
                    cap = sent / 2;
                    tracing::info!(error = %why, ids_per_request = cap,
                        "acknowledgement too large for the relay; sending it in smaller parts");
                }
                // One id too large with its attempt number: without it.
                Err(RelayError::Status(StatusCode::PAYLOAD_TOO_LARGE, why)) if !attempts.is_empty() => {
                    tracing::info!(error = %why, "acknowledgement too large for the relay; sending it without attempt numbers");
                    without_attempts = true;
                }
                // The relay away: try again until it answers, dropping only
                // the ids it can no longer take (their lease and lapse over).
                Err(e) if e.is_transient() => {
                    drop_over(&mut batch, &format!("the relay was away ({e})"), true);
                    if batch.is_empty() {
                        backoff.reset();
                        break;
                    }
                    let wait = backoff.next_delay();
                    tracing::debug!(error = %e, retry_in_ms = wait.as_millis() as u64, "acknowledgement not delivered; trying again");
                    pause(wait, &mut rx, &mut batch, &mut open).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, ids = ?ids, retry = ?retry,
                        "acknowledgement given up; the relay will offer these messages again when their leases expire");
                    if refuses_every_one(&e) {
                        all_refused.send_replace(Some(e.to_string()));
                    }
                    backoff.reset();
                    batch.drain(..sent);
                    if batch.is_empty() {
                        break;
                    }
                }
            }
        }
    }
}

/// Whether an acknowledgement's refusal holds for every acknowledgement:
/// the token (401), or a status the relay gives no acknowledgement (a
/// proxy's 403, 404, 405, …, or a redirect, which is not followed, as for
/// pulls: each acknowledgement was given up alone, every message a dead
/// letter in the end; pull review, stop 65), not one for what this one
/// carried (400: a field, an id; 409 and 413 are handled apart).
fn refuses_every_one(e: &RelayError) -> bool {
    match e {
        RelayError::Refused => true,
        RelayError::Status(s, _) => {
            s.is_redirection()
                || (s.is_client_error() && !matches!(*s, StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE))
        }
        _ => false,
    }
}

/// How many decimal digits `n` is written with.
fn digits(n: u32) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
#[test]
fn digits_are_those_written() {
    for n in [0, 1, 9, 10, 99, 100, 837, 1_000_000, u32::MAX] {
        assert_eq!(digits(n), n.to_string().len(), "{n}");
    }
}
