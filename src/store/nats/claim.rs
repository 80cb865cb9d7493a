//! Appending an event and claiming its dedupe key in ONE write: the event is
//! published on its own dedupe subject with "expected last subject sequence
//! 0", so exactly one of several concurrent writers (on any relay) wins, and
//! the key stays claimed as long as the stream keeps the message. A retry
//! with the same nonce recognises its own earlier write. [`holder`] reads
//! the write that holds a key (also how an append refused for a reload's
//! topology still finds the event it duplicates).

use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{LastRawMessageError, LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::time::Instant;

use super::event;

/// What the claim found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This write stored the event.
    New { seq: u64 },
    /// Another write owns the key: the first event (its sequence and time).
    Duplicate { seq: u64, time_ms: u64 },
}

/// The write holding a dedupe key: the message on its subject.
#[derive(Debug)]
pub struct Holder {
    pub seq: u64,
    /// The event's time (the message's own when the header is missing).
    pub time_ms: u64,
    /// The nonce of the append that wrote it.
    pub nonce: String,
}

/// The write holding `subject`'s dedupe key, read on the stream leader (a
/// replica may lag behind the winner); `None` when the subject has no
/// message (yet).
pub async fn holder(stream: &Stream, subject: &str) -> Result<Option<Holder>, LastRawMessageError> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => Ok(Some(Holder {
            seq: m.sequence,
            time_ms: event::time_ms(&m.headers).unwrap_or(super::layout::millis(m.time)),
            nonce: event::nonce(&m.headers),
        })),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The JetStream API error code inside a publish error, if any.
fn api_error_code(err: &PublishError) -> Option<ErrorCode> {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(js) = e.downcast_ref::<jetstream::Error>() {
            return Some(js.error_code());
        }
        source = e.source();
    }
    None
}

/// The subject already has a message: clustered streams answer 10071, or
/// 10164 while the winning write is still in flight (reported as `Other`).
fn is_wrong_last_sequence(err: &PublishError) -> bool {
    err.kind() == PublishErrorKind::WrongLastSequence
        || api_error_code(err) == Some(ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT)
}

/// Errors after which the same publish may succeed: no leader right now (a
/// leaderless stream answers "no responders", i.e. `StreamNotFound`), a lost
/// ack, a broken connection.
fn is_transient(err: &PublishError) -> bool {
    matches!(
        err.kind(),
        PublishErrorKind::TimedOut | PublishErrorKind::StreamNotFound | PublishErrorKind::BrokenPipe
    )
}

/// Store `body` on `subject` unless the subject already has a message.
/// Gives up (Err: the caller answers 503) after `budget`.
pub async fn claim(
    js: &jetstream::Context,
    stream: &Stream,
    subject: &str,
    nonce: &str,
    headers: HeaderMap,
    body: Bytes,
    budget: Duration,
) -> Result<Claim, String> {
    let deadline = Instant::now() + budget;
    let mut last = String::from("no answer from NATS");
    while Instant::now() < deadline {
        let msg = PublishMessage::build()
            .headers(headers.clone())
            .payload(body.clone())
            .message_id(nonce)
            .expected_last_subject_sequence(0);
        let outcome = match js.send_publish(subject.to_string(), msg).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match outcome {
            // `duplicate: true` here is our own earlier attempt (same nonce).
            Ok(ack) => return Ok(Claim::New { seq: ack.sequence }),
            Err(e) if is_wrong_last_sequence(&e) => match holder(stream, subject).await {
                Ok(Some(h)) => {
                    return Ok(if h.nonce == nonce {
                        Claim::New { seq: h.seq }
                    } else {
                        Claim::Duplicate {
                            seq: h.seq,
                            time_ms: h.time_ms,
                        }
                    })
                }
                Ok(None) => last = "the first write is not readable yet".into(),
                Err(g) => last = g.to_string(),
            },
            Err(e) if is_transient(&e) => last = e.to_string(),
            Err(e) => return Err(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last)
}
