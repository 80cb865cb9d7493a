//! One download in progress: the answer's headers and its body as a stream.
//!
//! Owns reading the body under the download's deadline and size cap, and
//! keeping the connection task alive exactly as long as the body is read.
//! Does not own how the answer was obtained (`fetch`) or where the bytes go.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};
use url::Url;

use super::fetch_error::FetchError;

/// Aborts the spawned connection task when the download is dropped.
pub(super) struct ConnGuard(pub(super) JoinHandle<()>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A successful answer whose body has not been read yet.
pub struct Download {
    /// The URL that answered, after redirects.
    pub final_url: Url,
    /// The address we were connected to (it passed the address policy).
    pub peer: SocketAddr,
    /// `Content-Type` as sent, recorded with the stored file.
    pub content_type: Option<String>,
    /// `Content-Length` as sent (already checked against `max_size`).
    pub content_length: Option<u64>,
    pub(super) body: Incoming,
    pub(super) host: String,
    pub(super) deadline: Instant,
    pub(super) timeout: Duration,
    pub(super) max_size: u64,
    pub(super) conn: ConnGuard,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("host", &self.host)
            .field("peer", &self.peer)
            .field("content_type", &self.content_type)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// The body as a stream of chunks as they arrive. Fails with
    /// [`FetchError::TooLarge`] as soon as more than `max_size` bytes came
    /// (the connection is dropped: the rest is never read), with
    /// [`FetchError::Timeout`] when the download's deadline passes, and with
    /// [`FetchError::Empty`] at the end of a body without a byte.
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes, FetchError>> {
        struct State {
            body: Incoming,
            received: u64,
            done: bool,
            host: String,
            deadline: Instant,
            timeout: Duration,
            max_size: u64,
            _conn: ConnGuard,
        }
        let state = State {
            body: self.body,
            received: 0,
            done: false,
            host: self.host,
            deadline: self.deadline,
            timeout: self.timeout,
            max_size: self.max_size,
            _conn: self.conn,
        };
        stream::unfold(state, |mut st| async move {
            while !st.done {
                let frame = match timeout_at(st.deadline, st.body.frame()).await {
                    Err(_) => Err(FetchError::Timeout(st.timeout)),
                    // A 204, or a 2xx with an empty body, is no file: result
                    // media is never empty, so it is a failed try.
                    Ok(None) if st.received == 0 => Err(FetchError::Empty { host: st.host.clone() }),
                    Ok(None) => return None,
                    Ok(Some(Err(e))) => Err(FetchError::Http {
                        host: st.host.clone(),
                        detail: crate::error_chain::error_chain(&e),
                    }),
                    Ok(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => {
                            st.received += data.len() as u64;
                            if st.received > st.max_size {
                                Err(FetchError::TooLarge {
                                    max: st.max_size,
                                    announced: None,
                                })
                            } else {
                                Ok(data)
                            }
                        }
                        // Trailers carry nothing we keep.
                        Err(_) => continue,
                    },
                };
                st.done = frame.is_err();
                return Some((frame, st));
            }
            None
        })
        .boxed()
    }
}
