//! Reading a request body within `max_body`, `read_timeout` and, before the
//! request is authenticated, the shared budget ([`super::budget`]). A declared
//! `Content-Length` is only a claim: memory grows with the bytes that arrive.

use bytes::Bytes;
use http_body_util::BodyExt;

use super::budget::BodyLease;
use super::Answer;

/// The answer to a body sent with a coding the relay does not undo, before
/// it is read: a content coding (`Content-Encoding: gzip`, …) other than
/// `identity` gets `415` (RFC 7694 §3: the provider may retry it
/// uncompressed), a transfer coding other than `chunked` (`Transfer-Encoding:
/// gzip, chunked`, whose chunks hyper takes apart but does not decompress)
/// `501` (RFC 9112 §6.1). Stored as received, such a body would be
/// delivered as compressed bytes without saying so (its JSON never parses,
/// its body-hash dedupe key would change with the encoder's time stamp), and
/// decoding it would let a few bytes become `max_body` of work for anyone.
pub(crate) fn coding_refused(headers: &http::HeaderMap) -> Option<Answer> {
    let other = |name: http::header::HeaderName, known: &[u8]| {
        headers.get_all(name).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .map(|c| c.trim_ascii())
                .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(known))
        })
    };
    if other(http::header::TRANSFER_ENCODING, b"chunked") {
        return Some(Answer::UnsupportedTransferCoding);
    }
    other(http::header::CONTENT_ENCODING, b"identity").then_some(Answer::UnsupportedEncoding)
}

/// The body's `Content-Type` as stored and delivered: as received when it
/// is text; one with bytes outside ASCII (a parameter in Latin-1, say)
/// keeps its media type and the parameters that are text, where the whole
/// header was dropped and the body delivered with no content type (ingest
/// review, stop 66). `None` when even the media type is not text.
pub(crate) fn content_type(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get(http::header::CONTENT_TYPE)?;
    if let Ok(text) = v.to_str() {
        return Some(text.to_string());
    }
    fn text(p: &[u8]) -> Option<&str> {
        std::str::from_utf8(p)
            .ok()
            .filter(|p| p.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
            .map(str::trim)
    }
    let parts = parameters(v.as_bytes());
    let media = text(parts.first()?).filter(|m| !m.is_empty())?;
    let kept: Vec<&str> = std::iter::once(media)
        .chain(parts[1..].iter().filter_map(|p| text(p)).filter(|p| !p.is_empty()))
        .collect();
    Some(kept.join("; "))
}

/// A header value cut at each `;` outside a quoted string (a `boundary="a;b"`
/// stays whole; `\` escapes within quotes).
fn parameters(v: &[u8]) -> Vec<&[u8]> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, &b) in v.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b';' if !quoted => {
                parts.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&v[start..]);
    parts
}

/// A JSON route's body without the UTF-8 byte order mark some providers put
/// before the JSON text (RFC 8259 §8.1 lets a parser ignore it): it was
/// refused as not JSON. Called after a raw-body signature was checked over
/// the bytes as received; what is stored and delivered is the JSON text,
/// which every subscriber's parser takes.
pub(crate) fn without_bom(body: Bytes) -> Bytes {
    match body.starts_with(b"\xEF\xBB\xBF") {
        true => body.slice(3..),
        false => body,
    }
}

/// The most a body buffer starts with, whatever `Content-Length` says.
const INITIAL_BODY_BUFFER: u64 = 64 * 1024;

/// The whole body, with `lease` grown by the memory it holds (keep it while
/// the body is in use), or the answer that ends the request (413, 408, 400,
/// 503 when the lease cannot grow: all requests not yet authenticated would
/// hold more than the budget). Bodies of requests already authenticated (a
/// route token) have no lease (`None`).
pub(crate) async fn read<B>(
    mut body: B,
    declared: Option<u64>,
    max: usize,
    mut lease: Option<BodyLease>,
    deadline: tokio::time::Instant,
) -> Result<(Bytes, Option<BodyLease>), Answer>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Answer::TooLarge(max));
    }
    // With a lease the buffer's capacity is what counts: it grows only by
    // what the lease could take first, and only as bytes arrive (a declared
    // length costs a stranger nothing). Without one, the declared length (up
    // to 64 KiB) is allocated at once.
    let initial = match lease {
        Some(_) => 0,
        None => declared.map_or(4096, |n| n.min(INITIAL_BODY_BUFFER) as usize),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(initial);
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(Answer::Timeout),
            Ok(None) => return Ok((Bytes::from(buf), lease)),
            Ok(Some(Err(e))) => return Err(Answer::BadRequest(format!("error reading body: {e}"))),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    let needed = buf.len() + data.len();
                    if needed > max {
                        return Err(Answer::TooLarge(max));
                    }
                    if needed > buf.capacity() {
                        // Doubling (copies stay linear), never past `max`,
                        // nor past a declared length (a body longer than it
                        // is an error hyper gives): the lease is charged the
                        // capacity, and a doubling past the length charged
                        // up to twice the body, so a body that fits the
                        // budget got 503.
                        let ceiling = declared.map_or(max, |n| (n as usize).min(max));
                        let target = needed.max(buf.capacity() * 2).min(ceiling.max(needed));
                        if !lease.as_mut().is_none_or(|l| l.grow(target - buf.capacity())) {
                            return Err(Answer::Busy);
                        }
                        buf.reserve_exact(target - buf.len());
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
