//! Reading a body against the budget of requests not yet authenticated: a
//! body with a declared length is charged that length at most, not the
//! doubled capacity of its buffer (a 40,000-byte body arriving in 8 KiB
//! pieces was charged 64 KiB and refused with a budget of 50,000); and the
//! body's content type as stored.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;

use super::super::budget::{BodyBudget, Client};
use super::read;

/// A body of `len` bytes arriving in pieces of `piece`.
fn pieces(len: usize, piece: usize) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..len)
        .step_by(piece)
        .map(|at| Ok(Frame::data(Bytes::from(vec![b'x'; piece.min(len - at)]))))
        .collect();
    StreamBody::new(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn a_declared_body_is_charged_its_length_not_the_buffers_doubling() {
    let budget = BodyBudget::new(50_000, 65_536);
    let mut lease = budget.lease(Client::Unknown);
    assert!(lease.grow(500), "its headers");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let got = read(pieces(40_000, 8192), Some(40_000), 65_536, Some(lease), deadline).await;
    let (body, lease) = got.unwrap_or_else(|_| panic!("a 40,000-byte body refused under a 50,000-byte budget"));
    assert_eq!(body.len(), 40_000);
    assert_eq!(budget.used(), 40_500, "charged its length and its headers");
    drop(lease);
    assert_eq!(budget.used(), 0);
}

#[tokio::test]
async fn an_undeclared_body_still_fits_when_the_budget_holds_max_body() {
    let budget = BodyBudget::new(65_536 + 1024, 65_536);
    let lease = budget.lease(Client::Unknown);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let got = read(pieces(65_536, 8192), None, 65_536, Some(lease), deadline).await;
    assert!(got.is_ok(), "a body of max_body, chunked, refused");
}

#[test]
fn a_content_type_with_bytes_outside_ascii_keeps_its_media_type() {
    let ct = |v: &[u8]| {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_bytes(v).unwrap());
        super::content_type(&h)
    };
    assert_eq!(
        ct(b"application/json; charset=utf-8").as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        ct(b"application/json; charset=\xe9").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        ct(b"application/json; x=\xe9; charset=utf-8").as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(ct(b"appl\xe9cation/json"), None);
    // A `;` within quotes is not a parameter's end (change review, stop 66).
    assert_eq!(
        ct(b"multipart/form-data; boundary=\"ab;cd\\\"e\"; x=\"\xe9;\"").as_deref(),
        Some("multipart/form-data; boundary=\"ab;cd\\\"e\"")
    );
    assert_eq!(super::content_type(&http::HeaderMap::new()), None);
}
