//! Reading one event message of a route stream by its sequence. A direct
//! get is answered by any replica, and a follower may not have applied a
//! message its stream's quorum acknowledged a moment ago (a callback handed
//! out as soon as it is stored): a "not found" from it is asked again of
//! the stream's leader, which has every acknowledged message.

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind, Stream};

use super::unavailable;
use crate::store::StoreError;

/// The message at `seq`, or `None` when the stream's leader has none there
/// either (expired, deleted, never written).
pub(super) async fn event_message(stream: &Stream, seq: u64) -> Result<Option<StreamMessage>, StoreError> {
    match stream.direct_get(seq).await {
        Ok(m) => return Ok(Some(m)),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
        Err(e) => return Err(unavailable(e)),
    }
    match stream.get_raw_message(seq).await {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}
