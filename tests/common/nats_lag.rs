//! Test fixture: a replica that lags behind its stream's leader, as the
//! relay sees one. The server's config ([`mappings`]) sends about half the
//! direct gets of some streams (`$JS.API.DIRECT.GET.<stream>` and
//! `….<stream>.>`, any replica answers them) to `hookrelay.lag.…`, where a
//! raw NATS client ([`lagging_replica`]) answers each "404 Message Not
//! Found", as a replica that has not applied the message yet does. Owns
//! only that connection (dropped with the task it runs in).

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Server config: half the direct gets of each of `streams` go to
/// [`lagging_replica`] (for [`super::nats::NatsCluster::start_with`]).
pub fn mappings(streams: &[&str]) -> String {
    let mut out = String::from("mappings = {\n");
    for s in streams {
        out.push_str(&format!(
            "  \"$JS.API.DIRECT.GET.{s}\": [ {{ destination: \"hookrelay.lag.{s}\", weight: 50% }} ]\n"
        ));
        out.push_str(&format!(
            "  \"$JS.API.DIRECT.GET.{s}.>\": [ {{ destination: \"hookrelay.lag.{s}.>\", weight: 50% }} ]\n"
        ));
        // A bucket's read names its key in the subject, which the `.>`
        // above does not catch: one line per key length (1 to 3 tokens).
        if let Some(bucket) = s.strip_prefix("KV_") {
            for n in 1..=3 {
                let from = vec!["*"; n].join(".");
                let to: Vec<String> = (1..=n).map(|i| format!("{{{{wildcard({i})}}}}")).collect();
                out.push_str(&format!(
                    "  \"$JS.API.DIRECT.GET.{s}.$KV.{bucket}.{from}\": [ {{ destination: \"hookrelay.lag.kv.{bucket}.{}\", weight: 50% }} ]\n",
                    to.join(".")
                ));
            }
        }
    }
    out.push_str("}\n");
    out
}

/// Answer "not found" to the direct gets [`mappings`] sends it, on the
/// server at `url` (`nats://127.0.0.1:PORT`), until the handle is aborted.
/// Returns once subscribed.
pub async fn lagging_replica(url: &str) -> JoinHandle<()> {
    let addr = url.trim_start_matches("nats://").to_string();
    let stream = TcpStream::connect(&addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    let hello = "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n\
                 SUB hookrelay.lag.> 1\r\nPING\r\n";
    write.write_all(hello.as_bytes()).await.unwrap();
    loop {
        line.clear();
        read.read_line(&mut line).await.unwrap();
        assert!(!line.starts_with("-ERR"), "{line}");
        if line.starts_with("PONG") {
            break;
        }
    }
    tokio::spawn(async move {
        const NOT_FOUND: &str = "NATS/1.0 404 Message Not Found\r\n\r\n";
        let mut line = String::new();
        loop {
            line.clear();
            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first().copied() {
                Some("PING") => write.write_all(b"PONG\r\n").await.unwrap(),
                // MSG <subject> <sid> [reply] <bytes>; HMSG … [reply] <header bytes> <bytes>
                Some(kind @ ("MSG" | "HMSG")) => {
                    let size: usize = words.last().unwrap().parse().unwrap();
                    let mut payload = vec![0u8; size + 2];
                    read.read_exact(&mut payload).await.unwrap();
                    if words.len() == if kind == "MSG" { 5 } else { 6 } {
                        let n = NOT_FOUND.len();
                        let out = format!("HPUB {} {n} {n}\r\n{NOT_FOUND}\r\n", words[3]);
                        write.write_all(out.as_bytes()).await.unwrap();
                    }
                }
                _ => {}
            }
        }
    })
}
