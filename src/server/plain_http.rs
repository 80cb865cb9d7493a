//! Plain HTTP sent to a TLS listener (a provider given `http://` for an
//! `https://` relay): answered `400` in plain HTTP, saying so, as nginx
//! does. It got a TLS alert before, which clients show as garbage (curl:
//! "Received HTTP/0.9 when not allowed"; TLS review, stop 79). Counted as a
//! failed handshake (`other`), logged at debug as the others are.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

const ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
connection: close\r\ncontent-length: 73\r\n\r\nthis port speaks HTTPS, and the request came as plain HTTP: use https://\n";

/// Whether the connection's first byte begins an HTTP request (a method's
/// upper-case letter), not a TLS record (`0x16`, or an old hello's high
/// bit). Waits for that byte.
pub async fn sent(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

/// Answer it and close (lingering: the rest of the request is read and
/// dropped, so the client reads the answer rather than a reset).
pub async fn answer(mut stream: TcpStream, stop: watch::Receiver<bool>) {
    if stream.write_all(ANSWER).await.is_ok() {
        super::linger::drain(stream, stop).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_answer_says_its_length() {
        let text = std::str::from_utf8(super::ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{}",
            body.len()
        );
    }
}
