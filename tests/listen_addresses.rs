//! The listen addresses taken together. `["0.0.0.0:443", "[::]:443"]`, the
//! shipped config's own example, passed `check-config` and then did not
//! start ("Address already in use": on Linux `[::]` takes IPv4 too); it now
//! listens on both. Addresses that cannot both listen (the same one twice,
//! `admin.listen` on a public address, a wildcard and an address of its
//! family on one port) passed `check-config` and failed the start; both now
//! refuse the file naming the key and the address it clashes with.

use crate::common;

use std::time::Duration;

use common::*;

fn listening_on(config: TestConfig, addrs: Vec<String>) -> TestConfig {
    config.raw(move |t| {
        let list = addrs.iter().map(|a| toml::Value::String(a.clone())).collect();
        t["server"]
            .as_table_mut()
            .unwrap()
            .insert("listen".into(), toml::Value::Array(list));
    })
}

#[tokio::test]
async fn check_config_and_run_refuse_addresses_that_cannot_both_listen() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let cases = [
        (
            listening_on(
                base.clone(),
                vec![format!("127.0.0.1:{port}"), format!("127.0.0.1:{port}")],
            ),
            "server.listen[1]",
            format!("server.listen[0] (127.0.0.1:{port})"),
        ),
        (
            listening_on(
                base.clone(),
                vec![format!("0.0.0.0:{port}"), format!("127.0.0.1:{port}")],
            ),
            "server.listen[1]",
            format!("server.listen[0] (0.0.0.0:{port})"),
        ),
        (
            listening_on(base.clone(), vec![format!("127.0.0.1:{port}")]).admin_listen(format!("127.0.0.1:{port}")),
            "admin.listen",
            format!("server.listen[0] (127.0.0.1:{port})"),
        ),
    ];
    for (config, key, other) in cases {
        let file = config.write();
        let file = file.to_str().unwrap();
        for args in [["check-config", "--config", file], ["run", "--config", file]] {
            let out = cli_output(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains(file) && err.contains(&format!("key `{key}` (line ")) && err.contains(&other),
                "{args:?}: the error names the file, `{key}` and {other}:\n{err}"
            );
        }
    }
}

/// Both wildcards on one port, as the shipped config suggests: callbacks
/// come in over IPv4 and IPv6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ipv4_and_ipv6_wildcards_listen_on_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sub = Sub::ok().await;
    let config = listening_on(
        TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url())),
        vec![format!("0.0.0.0:{port}"), format!("[::]:{port}")],
    );
    let (ok, _, err) = cli(&["check-config", "--config", config.write().to_str().unwrap()]);
    assert!(ok, "{err}");
    let bin = Bin::start(&config.write(), &[]);
    for (i, host) in ["127.0.0.1", "[::1]"].iter().enumerate() {
        let addr = format!("{host}:{port}").parse().unwrap();
        let (status, _) = callback(addr, &format!(r#"{{"n":{i}}}"#)).await;
        assert_eq!(status, 200, "over {host}: {}", bin.log_text());
    }
    sub.wait_for(Duration::from_secs(10), "both deliveries", |got| got.len() == 2)
        .await;
}

/// A port another program holds: the start fails saying so once (it was
/// logged and then printed again, twice in the journal).
#[tokio::test]
async fn a_port_in_use_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let file = listening_on(
        TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN)),
        vec![addr.clone()],
    )
    .write();
    let out = cli_output(&["run", "--config", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let said = format!("cannot listen on {addr} (server.listen)");
    assert_eq!(err.matches(&said).count(), 1, "{err}");
}

/// A start that cannot listen sends nothing: the lanes started before the
/// listeners were bound, so a relay whose port was taken delivered what
/// was due (and, under systemd, again at every restart, each attempt cut
/// off by the exit: duplicates for the subscriber), then failed. The next
/// start that listens delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_cannot_listen_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Due at once when the relay starts again: its first attempt failed,
    // its retries are 200 ms apart (for 20 s).
    let retrying = |url: &str| {
        TestConfig::new(dir.path()).subscriber(Subscriber::new("s", url).retry([ms(200); 100]).circuit_threshold(1000))
    };
    let (failing, _) = Sub::broken(Behaviour::Status(500)).await;
    let h = start(&retrying(&failing.url())).await;
    accepted(h.ingest_addrs[0], &runway("due-at-the-next-start")).await;
    failing.wait_for(secs(10), "the first attempt", |r| !r.is_empty()).await;
    h.shutdown().await;
    // Until its retry is due.
    tokio::time::sleep(ms(400)).await;
    // Only a relay started from here on reaches this one.
    let sub = Sub::ok().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let file = listening_on(retrying(&sub.url()), vec![addr.clone()]).write();
    // Off the runtime: the subscriber answers meanwhile.
    let path = file.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || cli_output(&["run", "--config", &path]))
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(
        !err.contains("delivery"),
        "a relay that could not listen tried to deliver: {err}"
    );
    tokio::time::sleep(ms(500)).await;
    assert_eq!(sub.count(), 0, "a relay that could not listen delivered");
    // Still due: a start that listens sends it.
    let h = start(&retrying(&sub.url())).await;
    sub.wait_for(secs(10), "the delivery", |r| r.len() == 1).await;
    h.shutdown().await;
}
