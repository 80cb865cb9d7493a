//! Peers that accept a connection and never read the request's body, and
//! the client-side sockets a process keeps to them (`/proc/PID/fd`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The open sockets of process `pid`.
pub fn sockets(pid: u32) -> usize {
    socket_inodes(pid).len()
}

/// The TCP sockets process `pid` holds whose peer is port `port` (its
/// connections to a server on that port, not the server's own sockets).
pub fn sockets_to(pid: u32, port: u16) -> usize {
    let mine = socket_inodes(pid);
    let port = format!(":{port:04X}");
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .flat_map(|table| table.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 9 && f[2].ends_with(&port) && mine.contains(f[9])
        })
        .count()
}

fn socket_inodes(pid: u32) -> HashSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect()
}

/// A peer that accepts every connection and holds it open, reading nothing
/// but the request's header and writing `answer` (if any) after it; the
/// connections it holds.
pub async fn deaf(answer: Option<&'static [u8]>) -> (SocketAddr, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let holder = held.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            if let Some(answer) = answer {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read_exact(&mut byte).await.is_ok() {
                    head.push(byte[0]);
                }
                let _ = s.write_all(answer).await;
            }
            holder.lock().unwrap().push(s);
        }
    });
    (addr, held)
}

/// Wait until `count()` is at most `most`, for at most `limit`; what it was last.
pub async fn until_at_most(limit: Duration, most: usize, count: impl Fn() -> usize) -> usize {
    let deadline = std::time::Instant::now() + limit;
    let mut open = count();
    while open > most && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = count();
    }
    open
}
