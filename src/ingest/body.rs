//! Reading a request body within `max_body` and `read_timeout`. A declared
//! `Content-Length` is only a claim: memory grows with the bytes that arrive.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::Answer;

/// The most a body buffer starts with, whatever `Content-Length` says.
const INITIAL_BODY_BUFFER: u64 = 64 * 1024;

/// The whole body, or the answer that ends the request (413, 408, 400).
pub(crate) async fn read<B>(
    mut body: B,
    declared: Option<u64>,
    max: usize,
    deadline: tokio::time::Instant,
) -> Result<Bytes, Answer>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Answer::TooLarge(max));
    }
    let mut buf = BytesMut::with_capacity(declared.map_or(4096, |n| n.min(INITIAL_BODY_BUFFER) as usize));
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(Answer::Timeout),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => return Err(Answer::BadRequest(format!("error reading body: {e}"))),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > max {
                        return Err(Answer::TooLarge(max));
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}
