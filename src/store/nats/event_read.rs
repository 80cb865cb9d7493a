//! Reading one event message of a route stream by its sequence. A direct
//! get is answered by any replica, and a follower may not have applied a
//! message its stream's quorum acknowledged a moment ago (a callback handed
//! out as soon as it is stored): a "not found" from it is asked again of
//! the stream's leader, which has every acknowledged message. So is a
//! direct get that timed out: a replica that hangs (a stalled disk, a
//! network black hole) stays in the direct-get group for minutes, and each
//! read it drew failed (the event views, replays and deliveries answered
//! `503` or waited a `takeover`), though the leader answers. Scans (the
//! listings, a removed subscriber's count) ask the leader again only for a
//! "not found" ([`scanned_message`]): 2 s more per message the hung replica
//! drew would make a scan of 1,000 take minutes; they fail at the first
//! timeout (the listing answers `503`). Passing either over as deleted left
//! the event out of every page (cluster review, stop 65).

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind, Stream};

use super::unavailable;
use crate::store::StoreError;

/// For a scan: the message at `seq`, `None` when the stream's leader has
/// none there either; a direct get that timed out fails the scan.
pub(super) async fn scanned_message(stream: &Stream, seq: u64) -> Result<Option<StreamMessage>, StoreError> {
    read(stream, seq, false).await
}

/// The message at `seq`, or `None` when the stream's leader has none there
/// either (expired, deleted, never written).
pub(super) async fn event_message(stream: &Stream, seq: u64) -> Result<Option<StreamMessage>, StoreError> {
    read(stream, seq, true).await
}

/// A direct get, asked again of the leader after a "not found" (and after
/// a timeout when `after_timeout`).
async fn read(stream: &Stream, seq: u64, after_timeout: bool) -> Result<Option<StreamMessage>, StoreError> {
    match stream.direct_get(seq).await {
        Ok(m) => return Ok(Some(m)),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
        Err(e) if after_timeout && e.kind() == DirectGetErrorKind::TimedOut => {}
        Err(e) => return Err(unavailable(e)),
    }
    match stream.get_raw_message(seq).await {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}
