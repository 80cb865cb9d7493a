//! Handing back messages this relay took from NATS but its reader never
//! read (it stopped wanting them: a long-poll answered or gone, a push
//! lane's circuit opening, the relay stopping), for any relay to take: at
//! once, or within [`PATIENCE`] for a subscriber's first hand-outs (below).
//!
//! NATS counts every hand-out, and a delivery's first attempt without a
//! result is numbered by that count (an attempt may have been made by a
//! relay that died during it). A message given back unread was then first
//! sent as attempt 2 (or 3, …), with no attempt before it in its history
//! and the `hookrelay-attempt` header saying it was sent before (2 % of the
//! first deliveries of a cluster pull soak, stop 77). So a subscriber's
//! event message on its first hand-out gets an empty result first (written
//! only if there is none; no attempt counted, so nothing takes it for a
//! delivery made, as `verify = "fetch"` checks do); a replay's message and
//! a retry's have a result, or NATS's count stands for attempts a relay
//! that died may have made. The messages stay held (renewed) until their
//! rows are written, all at once within [`PATIENCE`], so that none goes
//! back after its hold ran out (another relay may have started it by
//! then). A row that cannot be written (NATS slow or away) is left out: the
//! message goes back all the same, its next number skipping, as before. A
//! relay that stops gives back what it never read at once, without rows.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;

use super::follow::Received;
use super::hold::Held;
use super::result_write::Write;
use super::{event, layout, Shared};
use crate::store::result::ResultRow;

/// How long empty results are tried before the messages go back without
/// them (well within a hold: `takeover` is at least 5 s).
const PATIENCE: Duration = Duration::from_secs(1);

/// A subscriber's cursor, whose unread messages keep their attempt number.
pub(super) struct Unread {
    pub shared: Arc<Shared>,
    pub route: String,
    pub sub: String,
}

/// Hand `messages` back to NATS (for any relay), no longer held: for a
/// subscriber's cursor (`unread`), each event message on its first
/// hand-out gets an empty result first, the messages held meanwhile;
/// without `unread`, at once.
pub(super) fn give_back(held: &Held, unread: Option<Arc<Unread>>, messages: Vec<Received>) {
    if messages.is_empty() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        for r in &messages {
            super::hold::release(held, r.seq);
        }
        return;
    };
    if unread.is_none() {
        for r in &messages {
            super::hold::release(held, r.seq);
        }
    }
    let held = held.clone();
    rt.spawn(async move {
        if let Some(u) = &unread {
            futures_util::future::join_all(messages.iter().map(|r| u.keep_attempts(r))).await;
            for r in &messages {
                super::hold::release(&held, r.seq);
            }
        }
        for r in messages {
            let _ = r.acker.ack_with(AckKind::Nak(None)).await;
        }
    });
}

impl Unread {
    /// Write `r`'s delivery an empty result, unless it has one (or `r` is
    /// not this subscriber's, a replay's, or not on its first hand-out).
    async fn keep_attempts(&self, r: &Received) {
        if r.delivered != 1 || layout::is_replay(r.message.subject.as_str()) {
            return;
        }
        let ours = r
            .message
            .headers
            .as_ref()
            .is_some_and(|h| event::subscribers(h).contains(&self.sub));
        if !ours {
            return;
        }
        let key = layout::result_key(&self.route, r.seq, &self.sub);
        let row = ResultRow::new(crate::clock::now_ms());
        match self.shared.write_result(&key, &row, 0, PATIENCE).await {
            // Written, or it had a result (numbered by it).
            Ok(Write::Done(_) | Write::Moved(_)) => {}
            Err(e) => tracing::debug!(subscriber = %self.sub, message = r.seq, error = %e,
                "a message given back unread could not keep its attempt number: its next hand-out counts this one"),
        }
    }
}
