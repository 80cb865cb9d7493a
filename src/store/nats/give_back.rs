//! Handing back at once messages this relay took from NATS but its reader
//! never read (it stopped wanting them: a long-poll answered or gone, a push
//! lane's circuit opening, the relay stopping), for any relay to take.
//!
//! NATS counts every hand-out, and a delivery's first attempt without a
//! result is numbered by that count (an attempt may have been made by a
//! relay that died during it). A message given back unread was then first
//! sent as attempt 2 (or 3, …), with no attempt before it in its history
//! and the `hookrelay-attempt` header saying it was sent before (2 % of the
//! first deliveries of a cluster pull soak, stop 77). So a subscriber's
//! event message with no result yet gets an empty one first (written only
//! if there is none), keeping the attempts NATS counted before this
//! hand-out; a replay's message always has a result. If it cannot be
//! written (NATS slow or away), the message goes back all the same, as
//! before.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;

use super::follow::Received;
use super::hold::Held;
use super::result_write::Write;
use super::{event, layout, Shared};
use crate::store::result::ResultRow;

/// How long an empty result is tried before the message goes back without it.
const PATIENCE: Duration = Duration::from_secs(2);

/// A subscriber's cursor, whose unread messages keep their attempt number.
pub(super) struct Unread {
    pub shared: Arc<Shared>,
    pub route: String,
    pub sub: String,
}

/// Hand `messages` back to NATS at once (for any relay), no longer held:
/// for a subscriber's cursor (`unread`), each event message with no
/// result yet gets an empty one first.
pub(super) fn give_back(held: &Held, unread: Option<Arc<Unread>>, messages: Vec<Received>) {
    if messages.is_empty() {
        return;
    }
    for r in &messages {
        super::hold::release(held, r.seq);
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            for r in messages {
                if let Some(u) = &unread {
                    u.keep_attempts(&r).await;
                }
                let _ = r.acker.ack_with(AckKind::Nak(None)).await;
            }
        });
    }
}

impl Unread {
    /// Write `r`'s delivery an empty result counting the hand-outs before
    /// this one, unless it has one (or is not this subscriber's, or a replay).
    async fn keep_attempts(&self, r: &Received) {
        if layout::is_replay(r.message.subject.as_str()) {
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
        let row = ResultRow {
            attempts: r.delivered.saturating_sub(1),
            ..ResultRow::new(crate::clock::now_ms())
        };
        match self.shared.write_result(&key, &row, 0, PATIENCE).await {
            // Written, or it had a result (numbered by it).
            Ok(Write::Done(_) | Write::Moved(_)) => {}
            Err(e) => tracing::debug!(subscriber = %self.sub, message = r.seq, error = %e,
                "a message given back unread could not keep its attempt number: its next hand-out counts this one"),
        }
    }
}
