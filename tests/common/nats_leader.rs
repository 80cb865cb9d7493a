//! Test fixture: a stream whose leader can be taken away, as while its
//! replicas elect a new one. The server's config ([`mappings`]) sends every
//! leader read of a stream (`$JS.API.STREAM.MSG.GET.<stream>`) to
//! `hookrelay.leader.<stream>`, where [`Leader`] answers it from a direct
//! get (on one node, what the leader has) while present, and leaves it
//! unanswered while away: the reader's request times out, as a stream with
//! no leader does to it. Owns only its connection and the task answering.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

/// Server config: every leader read of `stream` goes to [`Leader`] (for
/// [`super::nats::NatsCluster::start_with`]).
pub fn mappings(stream: &str) -> String {
    format!("mappings = {{\n  \"$JS.API.STREAM.MSG.GET.{stream}\": \"hookrelay.leader.{stream}\"\n}}\n")
}

/// The leader of one stream, as the relay reaches it through [`mappings`].
pub struct Leader {
    present: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Leader {
    /// Answering `stream`'s leader reads on the server at `url`; returns
    /// once subscribed.
    pub async fn start(url: &str, stream: &str) -> Leader {
        let client = async_nats::connect(url).await.unwrap();
        let mut reads = client.subscribe(format!("hookrelay.leader.{stream}")).await.unwrap();
        client.flush().await.unwrap();
        let present = Arc::new(AtomicBool::new(true));
        let (here, direct) = (present.clone(), format!("$JS.API.DIRECT.GET.{stream}"));
        let task = tokio::spawn(async move {
            while let Some(read) = reads.next().await {
                let Some(reply) = read.reply.clone() else { continue };
                if !here.load(Ordering::SeqCst) {
                    continue;
                }
                let answer = match client.request(direct.clone(), read.payload.clone()).await {
                    Ok(m) => as_leader_answer(&m),
                    Err(_) => continue,
                };
                let _ = client.publish(reply, answer.to_string().into()).await;
            }
        });
        Leader { present, task }
    }

    /// Leader reads go unanswered from now on.
    pub fn away(&self) {
        self.present.store(false, Ordering::SeqCst);
    }

    /// Leader reads are answered again.
    pub fn back(&self) {
        self.present.store(true, Ordering::SeqCst);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A direct get's answer (the message, its stream's facts in headers) as
/// the leader's `STREAM.MSG.GET` answer (JSON, base64 payload and headers).
fn as_leader_answer(m: &async_nats::Message) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    if m.status.is_some_and(|s| s.as_u16() == 404) {
        return serde_json::json!({"error": {"code": 404, "err_code": 10037, "description": "no message found"}});
    }
    let headers = m.headers.clone().unwrap_or_default();
    let fact = |name: &str| headers.get(name).map(|v| v.as_str().to_string()).unwrap_or_default();
    let mut message = serde_json::json!({
        "subject": fact("Nats-Subject"),
        "seq": fact("Nats-Sequence").parse::<u64>().unwrap(),
        "data": b64.encode(&m.payload),
        "time": fact("Nats-Time-Stamp"),
    });
    if let Some(op) = headers.get("KV-Operation") {
        let raw = format!("NATS/1.0\r\nKV-Operation: {}\r\n\r\n", op.as_str());
        message["hdrs"] = b64.encode(raw).into();
    }
    serde_json::json!({ "type": "io.nats.jetstream.api.v1.stream_msg_get_response", "message": message })
}
