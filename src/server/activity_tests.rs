//! Tests of the phase deadlines and of what [`super::Tracked`] reports.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Closed at `at`, at once (a phase that did not finish in time).
fn cut(at: Instant) -> Next {
    Next::Close { at, graceful: false }
}

/// Closed at `at`, gracefully (idle between requests).
fn idle_close(at: Instant) -> Next {
    Next::Close { at, graceful: true }
}

/// What `Tracked` reports as a client's bytes come in: a header block
/// held open is held to `read_timeout` from its first byte, a new frame
/// after a whole one starts that again, and whole frames end it.
#[tokio::test(start_paused = true)]
async fn tracked_reports_what_arrives_on_http2() {
    let frame = |kind: u8, flags: u8, payload: &[u8]| {
        let mut f = vec![0, 0, payload.len() as u8, kind, flags, 0, 0, 0, 1];
        f.extend_from_slice(payload);
        f
    };
    let a = Activity::new();
    let (mut client, server) = tokio::io::duplex(1024);
    let mut tracked = Tracked::new(server, a.clone());
    let mut buf = [0u8; 1024];
    // The preface and a first request (its header block whole).
    client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    client.write_all(&frame(0x1, 0x5, &[0x83])).await.unwrap();
    let _ = tracked.read(&mut buf).await.unwrap();
    drop(a.request_started(http::Version::HTTP_2));
    let idle = Instant::now();
    assert_eq!(a.next(READ, IDLE, false), idle_close(idle + IDLE));
    // Half a DATA frame: read_timeout from now.
    tokio::time::advance(Duration::from_secs(3)).await;
    let data = frame(0x0, 0, &[7; 20]);
    client.write_all(&data[..15]).await.unwrap();
    let _ = tracked.read(&mut buf).await.unwrap();
    let first = Instant::now();
    assert_eq!(a.next(READ, IDLE, false), cut(first + READ));
    // Its end and half of the next frame: the deadline starts again.
    tokio::time::advance(Duration::from_millis(500)).await;
    client.write_all(&[&data[15..], &data[..12]].concat()).await.unwrap();
    let _ = tracked.read(&mut buf).await.unwrap();
    let second = Instant::now();
    assert_eq!(a.next(READ, IDLE, false), cut(second + READ));
    // A header block opened and not closed by the next whole frames of it.
    client
        .write_all(&[&data[12..], &frame(0x1, 0x1, &[0x83])[..]].concat())
        .await
        .unwrap();
    let _ = tracked.read(&mut buf).await.unwrap();
    let block = Instant::now();
    tokio::time::advance(Duration::from_millis(500)).await;
    client.write_all(&frame(0x9, 0, &[0x84])).await.unwrap();
    let _ = tracked.read(&mut buf).await.unwrap();
    assert_eq!(a.next(READ, IDLE, false), cut(block + READ));
    // Its END_HEADERS: back to the idle time.
    client.write_all(&frame(0x9, 0x4, &[0x86])).await.unwrap();
    let _ = tracked.read(&mut buf).await.unwrap();
    assert_eq!(a.next(READ, IDLE, false), idle_close(idle + IDLE));
}

const READ: Duration = Duration::from_secs(1);
const IDLE: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn phases_get_their_deadlines() {
    let a = Activity::new();
    let opened = Instant::now();
    // Nothing served yet: read_timeout from the start, bytes or not.
    assert_eq!(a.next(READ, IDLE, false), cut(opened + READ));
    a.bytes_read(None);
    assert_eq!(a.next(READ, IDLE, false), cut(opened + READ));
    let guard = a.request_started(http::Version::HTTP_11);
    assert_eq!(a.next(READ, IDLE, false), Next::Busy);
    tokio::time::advance(Duration::from_secs(5)).await;
    drop(guard);
    let idle = Instant::now();
    assert_eq!(a.next(READ, IDLE, false), idle_close(idle + IDLE));
    // HTTP/1: the next request's first byte starts its header deadline.
    tokio::time::advance(Duration::from_secs(7)).await;
    a.bytes_read(None);
    assert_eq!(a.next(READ, IDLE, false), cut(Instant::now() + READ));
    // HTTP/2: control frames while idle do not shorten or extend the idle time.
    let b = Activity::new();
    drop(b.request_started(http::Version::HTTP_2));
    let idle = Instant::now();
    tokio::time::advance(Duration::from_secs(3)).await;
    b.bytes_read(None);
    assert_eq!(b.next(READ, IDLE, false), idle_close(idle + IDLE));
    // …but a frame or header block still arriving has read_timeout from
    // when it began, and its end gives the idle time back.
    b.bytes_read(Some(true));
    let began = Instant::now();
    assert_eq!(b.next(READ, IDLE, false), cut(began + READ));
    b.bytes_read(Some(false));
    assert_eq!(b.next(READ, IDLE, false), idle_close(idle + IDLE));
    // One that began during a request counts from that request's end.
    let guard = b.request_started(http::Version::HTTP_2);
    b.bytes_read(Some(true));
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(b.next(READ, IDLE, false), Next::Busy);
    drop(guard);
    let idle = Instant::now();
    assert_eq!(b.next(READ, IDLE, false), cut(idle + READ));
    // One that begins just before the idle time is up: the idle close
    // (graceful) comes first.
    b.bytes_read(Some(false));
    tokio::time::advance(IDLE - Duration::from_millis(500)).await;
    b.bytes_read(Some(true));
    assert_eq!(b.next(READ, IDLE, false), idle_close(idle + IDLE));
}

/// While the listeners are crowded: an idle keep-alive connection is
/// closed (gracefully) now, and a header still awaited, first or next, on
/// HTTP/1 or HTTP/2, has `CROWDED_WAIT` (not more than `read_timeout`); a
/// request being served keeps its own limits.
#[tokio::test(start_paused = true)]
async fn crowded_listeners_shorten_the_waits_for_the_client() {
    const SLOW: Duration = Duration::from_secs(30);
    let a = Activity::new();
    let opened = Instant::now();
    assert_eq!(a.next(SLOW, IDLE, true), cut(opened + CROWDED_WAIT));
    assert_eq!(a.next(READ, IDLE, true), cut(opened + READ), "never past read_timeout");
    let guard = a.request_started(http::Version::HTTP_11);
    assert_eq!(a.next(SLOW, IDLE, true), Next::Busy);
    tokio::time::advance(Duration::from_secs(5)).await;
    drop(guard);
    let idle = Instant::now();
    assert_eq!(a.next(SLOW, IDLE, true), idle_close(idle));
    assert_eq!(a.next(SLOW, IDLE, false), idle_close(idle + IDLE), "no longer crowded");
    a.bytes_read(None);
    assert_eq!(a.next(SLOW, IDLE, true), cut(Instant::now() + CROWDED_WAIT));
    let b = Activity::new();
    drop(b.request_started(http::Version::HTTP_2));
    let idle = Instant::now();
    assert_eq!(b.next(SLOW, IDLE, true), idle_close(idle));
    tokio::time::advance(Duration::from_secs(1)).await;
    b.bytes_read(Some(true));
    assert_eq!(
        b.next(SLOW, IDLE, true),
        idle_close(idle),
        "the graceful close comes first"
    );
}

/// A body that gives out its steps: `Some` a data frame, `None` nothing
/// ready yet (the server's side is slow); ends after the last.
struct Steps(std::collections::VecDeque<Option<Bytes>>);

impl hyper::body::Body for Steps {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        match self.0.pop_front() {
            Some(Some(data)) => Poll::Ready(Some(Ok(hyper::body::Frame::data(data)))),
            Some(None) => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

/// An answer the client does not take: `read_timeout` from when it began to
/// wait, moved on by each piece taken; a body with nothing ready yet (the
/// server's side) is no one's fault; a large frame goes in pieces.
#[tokio::test(start_paused = true)]
async fn an_answer_waiting_for_the_client_has_a_send_deadline() {
    use hyper::body::Body;
    let a = Activity::new();
    let guard = a.request_started(http::Version::HTTP_2);
    assert_eq!(a.next(READ, IDLE, false), Next::Busy);
    tokio::time::advance(Duration::from_secs(5)).await;
    let produced = Instant::now();
    let steps = vec![
        Some(Bytes::from(vec![1u8; 40 * 1024])),
        None,
        Some(Bytes::from_static(b"end")),
    ];
    let mut body = GuardedBody::new(Steps(steps.into()), guard);
    assert_eq!(
        a.next(READ, IDLE, false),
        cut(produced + READ),
        "its answer waits for the client"
    );
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut poll = |body: &mut GuardedBody<Steps>| match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(f))) => Some(f.into_data().unwrap().len()),
        Poll::Pending => None,
        other => panic!("{:?}", other.map(|f| f.map(|r| r.is_ok()))),
    };
    // 40 KiB handed out as 16 + 16 + 8 KiB, each taken piece progress.
    let mut sizes = Vec::new();
    for _ in 0..3 {
        tokio::time::advance(Duration::from_millis(700)).await;
        sizes.push(poll(&mut body).unwrap());
        assert_eq!(a.next(READ, IDLE, false), cut(Instant::now() + READ));
    }
    assert_eq!(sizes, [16 * 1024, 16 * 1024, 8 * 1024]);
    assert!(!body.is_end_stream());
    // Nothing ready from the body: the server's side, no deadline.
    assert_eq!(poll(&mut body), None);
    assert_eq!(a.next(READ, IDLE, false), Next::Busy);
    // Ready again: waiting again, from now.
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(poll(&mut body), Some(3));
    assert_eq!(a.next(READ, IDLE, false), cut(Instant::now() + READ));
    // Its end: the request is over, the connection idle.
    drop(body);
    assert_eq!(a.next(READ, IDLE, false), idle_close(Instant::now() + IDLE));
}

/// More answers waiting together than may hold their state for
/// `read_timeout`: closed after `CROWDED_STALL` with no progress, not at
/// once (a client reading behind its shared HTTP/2 window has many waiting);
/// each piece taken moves that on; as they are taken, the send deadline
/// again.
#[tokio::test(start_paused = true)]
async fn too_many_answers_waiting_without_progress_close_after_a_short_stall() {
    use hyper::body::Body;
    let a = Activity::new();
    let mut bodies = Vec::new();
    for _ in 0..=MAX_WAITING_ANSWERS {
        let guard = a.request_started(http::Version::HTTP_2);
        bodies.push(GuardedBody::new(
            Steps(vec![Some(Bytes::from(vec![1u8; 40 * 1024]))].into()),
            guard,
        ));
    }
    let began = Instant::now();
    assert_eq!(a.next(READ, IDLE, false), cut(began + CROWDED_STALL));
    // A piece of one of them is taken: progress for all.
    tokio::time::advance(CROWDED_STALL / 2).await;
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(
        Pin::new(&mut bodies[3]).poll_frame(&mut cx),
        Poll::Ready(Some(Ok(_)))
    ));
    assert_eq!(a.next(READ, IDLE, false), cut(Instant::now() + CROWDED_STALL));
    // Never later than read_timeout.
    assert_eq!(
        a.next(CROWDED_STALL / 4, IDLE, false),
        cut(Instant::now() + CROWDED_STALL / 4)
    );
    bodies.pop();
    assert_eq!(a.next(READ, IDLE, false), cut(Instant::now() + READ));
    bodies.clear();
    assert_eq!(a.next(READ, IDLE, false), idle_close(Instant::now() + IDLE));
}

/// A client whose bytes never run out (a chunk size of `0`s streamed)
/// gives its thread up after each burst: `Tracked`'s reads answer
/// `Pending`, the task woken at once, and go on after it (edge review,
/// stop 72).
#[test]
fn tracked_reads_yield_after_each_burst() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let woken = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    let mut io = Tracked::new(tokio::io::repeat(b'0'), Activity::new());
    let mut chunk = [0u8; 4096];
    let (mut read, mut pending) = (0, 0);
    for _ in 0..100 {
        let mut buf = tokio::io::ReadBuf::new(&mut chunk);
        match std::pin::Pin::new(&mut io).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) => read += buf.filled().len(),
            Poll::Ready(Err(e)) => panic!("{e}"),
            Poll::Pending => {
                assert_eq!(
                    read % super::super::fair_read::BURST,
                    0,
                    "a yield only after a whole burst"
                );
                pending += 1;
            }
        }
    }
    assert_eq!((pending, woken.0.load(Ordering::SeqCst)), (20, 20));
    assert_eq!(read, 80 * 4096);
}
