//! A replay whose result was recorded but whose message was not
//! acknowledged (the relay that sent it died in between) is settled by the
//! relay that gets the message again, not sent a second time — as for a
//! delivery. The dead relay's leftovers are made by hand: a delivered
//! event's result, and a replay message published for it without the
//! replay's own write (which would have marked the delivery due again).

use crate::common;

use common::nats::NatsCluster;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_already_recorded_is_settled_not_sent_again() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let a = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("a", a.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("t-1")).await;
    until_delivered(h.admin_addr, &id, "a").await;
    assert_eq!(a.count(), 1);

    let js = async_nats::jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    let mut stream = js.get_stream("HR_EV_t").await.unwrap();
    let seq = stream.info().await.unwrap().state.last_sequence;
    let replay = js
        .publish("hr.rp.t.a", seq.to_string().into())
        .await
        .unwrap()
        .await
        .expect("the route's stream took the replay")
        .sequence;
    // The relay has taken the replay and settled it (sent or not) …
    let t0 = std::time::Instant::now();
    loop {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer("sub_a").await.unwrap();
        let info = consumer.info().await.unwrap();
        if info.ack_floor.stream_sequence >= replay && info.num_ack_pending == 0 {
            break;
        }
        assert!(t0.elapsed() < secs(10), "the replay was never settled: {info:?}");
        tokio::time::sleep(ms(50)).await;
    }
    // … without sending it: the recorded result says it was delivered.
    assert_eq!(a.count(), 1, "the replay was sent again");
    h.shutdown().await;
}
