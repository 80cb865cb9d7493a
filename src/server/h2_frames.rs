//! Just enough of HTTP/2's framing (RFC 9113 §3.4, §4.1, §6.2, §6.10) to
//! tell whether a client is in the middle of sending something: a frame
//! partly received, or a header block (HEADERS or PUSH_PROMISE without
//! END_HEADERS) that its last CONTINUATION has not closed yet. [`super::activity`]
//! uses it to hold an HTTP/2 header that is still arriving to `read_timeout`,
//! as HTTP/1's is, while whole control frames (pings) leave an idle
//! connection to `idle_timeout`.
//!
//! It reads the bytes the connection reads, as they come; it decodes no
//! header and checks nothing (hyper does both). A connection that does not
//! open with the HTTP/2 preface is HTTP/1: it is not looked at further.

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// This many bytes of the preface matched so far.
    Preface(usize),
    /// Not HTTP/2 with prior knowledge or ALPN: nothing to follow.
    Other,
    /// This many bytes of the next frame's 9-byte header arrived.
    Header(usize),
    /// This many bytes of the current frame's payload are still to come.
    Payload(usize),
}

/// Where a connection's HTTP/2 byte stream is.
#[derive(Debug)]
pub struct Frames {
    phase: Phase,
    header: [u8; FRAME_HEADER],
    /// A header block is open: its last frame did not carry END_HEADERS.
    block_open: bool,
    /// A frame ended outside a header block since [`Frames::take_fresh`]:
    /// whatever is arriving now began after it.
    fresh: bool,
}

impl Default for Frames {
    fn default() -> Self {
        Frames {
            phase: Phase::Preface(0),
            header: [0; FRAME_HEADER],
            block_open: false,
            fresh: false,
        }
    }
}

impl Frames {
    /// Follow `bytes`, the next bytes the client sent.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.phase {
                Phase::Other => return,
                Phase::Preface(n) => {
                    let take = bytes.len().min(PREFACE.len() - n);
                    if bytes[..take] != PREFACE[n..n + take] {
                        self.phase = Phase::Other;
                        return;
                    }
                    bytes = &bytes[take..];
                    self.phase = if n + take == PREFACE.len() {
                        Phase::Header(0)
                    } else {
                        Phase::Preface(n + take)
                    };
                }
                Phase::Header(n) => {
                    let take = bytes.len().min(FRAME_HEADER - n);
                    self.header[n..n + take].copy_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if n + take < FRAME_HEADER {
                        self.phase = Phase::Header(n + take);
                        continue;
                    }
                    let h = self.header;
                    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    let (kind, flags) = (h[3], h[4]);
                    match kind {
                        HEADERS | PUSH_PROMISE => self.block_open = flags & END_HEADERS == 0,
                        CONTINUATION if flags & END_HEADERS != 0 => self.block_open = false,
                        _ => {}
                    }
                    self.phase = if len == 0 {
                        self.fresh |= !self.block_open;
                        Phase::Header(0)
                    } else {
                        Phase::Payload(len)
                    };
                }
                Phase::Payload(left) => {
                    let take = bytes.len().min(left);
                    bytes = &bytes[take..];
                    self.phase = if take == left {
                        self.fresh |= !self.block_open;
                        Phase::Header(0)
                    } else {
                        Phase::Payload(left - take)
                    };
                }
            }
        }
    }

    /// Whether a frame ended outside a header block since the last call (so
    /// what is in progress now, if anything, began since).
    pub fn take_fresh(&mut self) -> bool {
        std::mem::take(&mut self.fresh)
    }

    /// The client is in the middle of a frame or of a header block.
    pub fn mid_message(&self) -> bool {
        match self.phase {
            Phase::Preface(_) | Phase::Other => false,
            Phase::Header(n) => n > 0 || self.block_open,
            Phase::Payload(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Feed `bytes` one byte at a time: whether it was mid-message after each.
    fn byte_by_byte(f: &mut Frames, bytes: &[u8]) -> Vec<bool> {
        bytes
            .iter()
            .map(|b| {
                f.feed(std::slice::from_ref(b));
                f.mid_message()
            })
            .collect()
    }

    #[test]
    fn whole_frames_leave_it_idle_and_a_split_one_does_not() {
        let mut f = Frames::default();
        f.feed(PREFACE);
        assert!(!f.mid_message(), "the preface alone");
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        let ping = frame(0x6, 0, 0, &[7; 8]);
        f.feed(&[settings.clone(), ping.clone()].concat());
        assert!(!f.mid_message(), "whole control frames");
        // A ping trickled byte by byte is mid-message until its last byte.
        let seen = byte_by_byte(&mut f, &ping);
        assert!(seen[..seen.len() - 1].iter().all(|m| *m), "{seen:?}");
        assert!(!seen[seen.len() - 1]);
    }

    #[test]
    fn a_header_block_is_open_until_its_end_headers() {
        let mut f = Frames::default();
        f.feed(PREFACE);
        f.feed(&frame(HEADERS, 0x1, 1, &[0x83, 0x86]));
        assert!(f.mid_message(), "HEADERS without END_HEADERS");
        f.feed(&frame(CONTINUATION, 0, 1, &[0x84]));
        assert!(f.mid_message(), "a CONTINUATION that does not end it");
        f.feed(&frame(CONTINUATION, END_HEADERS, 1, &[]));
        assert!(!f.mid_message(), "closed by END_HEADERS (empty payload)");
        f.feed(&frame(HEADERS, END_HEADERS | 0x1, 3, &[0x83, 0x86, 0x84]));
        assert!(!f.mid_message(), "a complete header block");
        f.feed(&frame(PUSH_PROMISE, 0, 3, &[0, 0, 0, 2]));
        assert!(f.mid_message(), "PUSH_PROMISE opens a block too");
        // Split across reads anywhere, the same.
        let mut g = Frames::default();
        let all = [
            &PREFACE[..],
            &frame(HEADERS, 0, 1, &[1, 2, 3]),
            &frame(CONTINUATION, END_HEADERS, 1, &[4]),
        ]
        .concat();
        let seen = byte_by_byte(&mut g, &all);
        assert!(seen[..PREFACE.len()].iter().all(|m| !m));
        assert!(seen[PREFACE.len()..all.len() - 1].iter().all(|m| *m));
        assert!(!seen[all.len() - 1]);
    }

    #[test]
    fn a_frame_ending_outside_a_header_block_is_fresh() {
        let mut f = Frames::default();
        f.feed(PREFACE);
        f.take_fresh();
        let data = frame(0x0, 0, 1, &[9; 20]);
        // The end of one DATA frame and half of the next in one read.
        f.feed(&data[..15]);
        assert!(f.mid_message() && !f.take_fresh());
        f.feed(&[&data[15..], &data[..12]].concat());
        assert!(f.mid_message() && f.take_fresh(), "a new frame began");
        // Frames of an open header block are not: the block is what arrives.
        f.feed(&data[12..]);
        f.take_fresh();
        f.feed(&frame(HEADERS, 0, 3, &[1]));
        assert!(f.mid_message() && !f.take_fresh());
        f.feed(&frame(CONTINUATION, 0, 3, &[2]));
        assert!(f.mid_message() && !f.take_fresh());
        f.feed(&frame(CONTINUATION, END_HEADERS, 3, &[3]));
        assert!(!f.mid_message() && f.take_fresh());
        f.feed(&frame(0x4, 0x1, 0, &[]));
        assert!(!f.mid_message() && f.take_fresh(), "an empty frame ends at once");
    }

    #[test]
    fn http1_and_a_broken_preface_are_not_followed() {
        for start in [&b"POST /hooks/t HTTP/1.1\r\n"[..], b"PRI * HTTP/1.1\r\n", b"GET"] {
            let mut f = Frames::default();
            f.feed(start);
            f.feed(&frame(HEADERS, 0, 1, &[1]));
            assert!(!f.mid_message(), "{start:?}");
        }
        let mut f = Frames::default();
        f.feed(&PREFACE[..10]);
        assert!(
            !f.mid_message(),
            "a preface still arriving is the first request's phase"
        );
    }
}
