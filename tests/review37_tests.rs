//! Review 37: the public HTTP surface under hostile clients, upgrade in
//! place, sled durability under kill -9. Each test here proves a defect
//! (it fails on the code as reviewed); see /work/notes/review37.md.

use crate::common;

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/2 frame: length, type, flags, stream, payload (RFC 9113 §4.1).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}
