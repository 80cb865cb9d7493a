//! The sled backend's media rows: the per-URL row (`U`: the URL, its route,
//! state, tries, result or error, and the events waiting for it) and the
//! per-event list of URL hashes (`E`). Binary like the other rows
//! ([`super::codec`]): varints, length-prefixed strings, a format byte first.

use super::codec::{Reader, Writer};
use crate::store::{EventId, MediaItem, MediaState, StoredFile};

const MEDIA_V1: u8 = 1;

/// Events remembered per pending URL (each is woken when the URL is done).
/// A URL named by more callbacks than this still wakes the first ones; the
/// rest find it done on their own re-check.
pub(super) const MAX_WAITERS: usize = 4096;

/// The durable state of one media URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MediaRow {
    pub url: String,
    /// The route (number) of the first event that named it.
    pub route: u32,
    pub state: MediaState,
    pub attempts: u32,
    /// Position in the media retry schedule.
    pub step: u32,
    /// When the state was set (ms); the `T` row of a final URL has this time.
    pub at_ms: u64,
    pub last_error: Option<String>,
    /// Events whose `after_archive` deliveries wait for this URL (pending only).
    pub waiters: Vec<EventId>,
}

impl MediaRow {
    pub fn item(&self) -> MediaItem {
        MediaItem {
            url: self.url.clone(),
            state: self.state.clone(),
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            at_ms: self.at_ms,
        }
    }
}

fn opt(w: &mut Writer, s: Option<&str>) {
    match s {
        None => w.u8(0),
        Some(s) => {
            w.u8(1);
            w.bytes(s.as_bytes());
        }
    }
}

fn read_opt(r: &mut Reader<'_>) -> Option<Option<String>> {
    match r.u8()? {
        0 => Some(None),
        1 => Some(Some(r.string()?)),
        _ => None,
    }
}

pub(super) fn encode_media(m: &MediaRow) -> Vec<u8> {
    let mut w = Writer::with_capacity(64 + m.url.len() + m.waiters.len() * 16);
    w.u8(MEDIA_V1);
    match &m.state {
        MediaState::Pending { due_ms } => {
            w.u8(0);
            w.varint(*due_ms);
        }
        MediaState::Stored(f) => {
            w.u8(1);
            w.bytes(f.location.as_bytes());
            let mut digest = [0u8; 32];
            // Digests come from our own hashing: always 64 hex characters.
            let _ = hex::decode_to_slice(&f.sha256, &mut digest);
            w.raw(&digest);
            w.varint(f.size);
            opt(&mut w, f.content_type.as_deref());
        }
        MediaState::Failed { error } => {
            w.u8(2);
            w.bytes(error.as_bytes());
        }
    }
    w.varint(u64::from(m.route));
    w.varint(u64::from(m.attempts));
    w.varint(u64::from(m.step));
    w.varint(m.at_ms);
    w.bytes(m.url.as_bytes());
    opt(&mut w, m.last_error.as_deref());
    w.varint(m.waiters.len() as u64);
    for id in &m.waiters {
        w.raw(&id.bytes());
    }
    w.0
}

pub(super) fn decode_media(v: &[u8]) -> Option<MediaRow> {
    let mut r = Reader::new(v);
    if r.u8()? != MEDIA_V1 {
        return None;
    }
    let state = match r.u8()? {
        0 => MediaState::Pending { due_ms: r.varint()? },
        1 => {
            let location = r.string()?;
            let sha256 = hex::encode(r.raw(32)?);
            let size = r.varint()?;
            let content_type = read_opt(&mut r)?;
            MediaState::Stored(StoredFile {
                location,
                sha256,
                size,
                content_type,
            })
        }
        2 => MediaState::Failed { error: r.string()? },
        _ => return None,
    };
    let route = u32::try_from(r.varint()?).ok()?;
    let attempts = u32::try_from(r.varint()?).ok()?;
    let step = u32::try_from(r.varint()?).ok()?;
    let at_ms = r.varint()?;
    let url = r.string()?;
    let last_error = read_opt(&mut r)?;
    let n = r.varint()?;
    let mut waiters = Vec::with_capacity(n.min(MAX_WAITERS as u64) as usize);
    for _ in 0..n {
        waiters.push(EventId::from_slice(r.raw(16)?)?);
    }
    Some(MediaRow {
        url,
        route,
        state,
        attempts,
        step,
        at_ms,
        last_error,
        waiters,
    })
}

/// An `E` row: the event's route and the hashes of its media URLs, in the
/// order the pointers found them.
pub(super) fn encode_event_media(route: u32, hashes: &[[u8; 16]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + hashes.len() * 16);
    v.extend_from_slice(&route.to_be_bytes());
    for h in hashes {
        v.extend_from_slice(h);
    }
    v
}

pub(super) fn decode_event_media(v: &[u8]) -> Option<(u32, Vec<[u8; 16]>)> {
    let route = u32::from_be_bytes(v.get(..4)?.try_into().ok()?);
    let rest = &v[4..];
    if !rest.len().is_multiple_of(16) {
        return None;
    }
    Some((
        route,
        rest.chunks_exact(16).map(|c| c.try_into().expect("16 bytes")).collect(),
    ))
}

/// The digest of a stored file as raw bytes (for `H` keys).
pub(super) fn digest_bytes(sha256: &str) -> Option<[u8; 32]> {
    let mut d = [0u8; 32];
    hex::decode_to_slice(sha256, &mut d).ok()?;
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_rows_round_trip() {
        let base = MediaRow {
            url: "https://file.com/k/x.mp4?sig=abc".into(),
            route: 3,
            state: MediaState::Pending {
                due_ms: 1_700_000_000_000,
            },
            attempts: 2,
            step: 1,
            at_ms: 1_699_999_999_000,
            last_error: Some("file.com answered HTTP 503".into()),
            waiters: vec![EventId::from_parts(1, 2), EventId::from_parts(3, 4)],
        };
        assert_eq!(decode_media(&encode_media(&base)), Some(base.clone()));
        let stored = MediaRow {
            state: MediaState::Stored(StoredFile {
                location: "/srv/media/ab/ab12".into(),
                sha256: "ab".repeat(32),
                size: 1 << 33,
                content_type: Some("video/mp4".into()),
            }),
            last_error: None,
            waiters: vec![],
            ..base.clone()
        };
        assert_eq!(decode_media(&encode_media(&stored)), Some(stored));
        let failed = MediaRow {
            state: MediaState::Failed {
                error: "refused 127.0.0.1: loopback".into(),
            },
            ..base
        };
        let bytes = encode_media(&failed);
        assert_eq!(decode_media(&bytes), Some(failed));
        for n in 0..bytes.len() {
            assert!(decode_media(&bytes[..n]).is_none(), "truncated at {n}");
        }
    }

    #[test]
    fn event_media_rows_round_trip() {
        let hashes = [[1u8; 16], [2u8; 16]];
        let v = encode_event_media(7, &hashes);
        assert_eq!(decode_event_media(&v), Some((7, hashes.to_vec())));
        assert_eq!(decode_event_media(&v[..21]), None, "a partial hash");
    }
}
