//! Counts and ports past any sense are refused by `check-config`, `run` and a reload
//! alike, naming the key: a subscriber's `concurrency` of 2^63 passed
//! `check-config`, then `run` panicked adding up the open files it wanted
//! (two such subscribers), or started, said it was ready and lost its
//! delivery lane to a panic (one: each take reserves room for `concurrency`
//! pieces of work), delivering nothing.

use crate::common;

use std::time::Duration;

use common::*;

const HUGE: usize = i64::MAX as usize;

fn two_subscribers(dir: &std::path::Path, concurrency: usize) -> TestConfig {
    TestConfig::new(dir)
        .subscriber(Subscriber::new("a", DOWN).concurrency(concurrency))
        .subscriber(Subscriber::new("b", DOWN).concurrency(concurrency))
}

#[tokio::test]
async fn check_config_and_run_refuse_counts_past_any_sense() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            two_subscribers(dir.path(), HUGE),
            "routes[0].subscribers[0].concurrency",
            "is more than 4096",
        ),
        (
            TestConfig::new(dir.path())
                .subscriber(Subscriber::new("a", DOWN))
                .delivery_concurrency(4097),
            "delivery.concurrency",
            "4097 is more than 4096",
        ),
        (
            TestConfig::new(dir.path())
                .subscriber(Subscriber::new("a", DOWN))
                .media(Media::new().concurrency(HUGE)),
            "media.concurrency",
            "is more than 4096",
        ),
        (
            TestConfig::new(dir.path())
                .subscriber(Subscriber::new("a", DOWN))
                .max_connections(HUGE),
            "server.max_connections",
            "is more than 1048576",
        ),
    ];
    for (config, key, problem) in cases {
        let file = config.write();
        let file = file.to_str().unwrap();
        for args in [["check-config", "--config", file], ["run", "--config", file]] {
            let out = cli_output(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} with a huge {key}: {err}");
            assert!(
                err.contains(file) && err.contains(&format!("key `{key}`")) && err.contains(problem),
                "{args:?}: the error names the file, `{key}` and {problem:?}:\n{err}"
            );
            assert!(!err.contains("panicked"), "{args:?}: {err}");
        }
    }
    // The largest allowed starts.
    let ok = TestConfig::new(dir.path()).subscriber(Subscriber::new("a", DOWN).concurrency(4096));
    let (good, _, err) = cli(&["check-config", "--config", ok.write().to_str().unwrap()]);
    assert!(good, "{err}");
}

/// The same refusal on SIGHUP: the running config stays, deliveries go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_a_huge_concurrency_is_refused_and_deliveries_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&base.write(), &[]);
    base.clone()
        .raw(|t| {
            let route = t["routes"].as_array_mut().unwrap()[0].as_table_mut().unwrap();
            let s = route["subscribers"].as_array_mut().unwrap()[0].as_table_mut().unwrap();
            s.insert("concurrency".into(), toml::Value::Integer(i64::MAX));
        })
        .write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "reload refused", Duration::from_secs(10)).await;
    let log = bin.log_text();
    let refusal = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(
        refusal.contains("routes[0].subscribers[0].concurrency") && refusal.contains("is more than 4096"),
        "{refusal}"
    );
    let (status, _) = callback(bin.addr, r#"{"n":1}"#).await;
    assert_eq!(status, 200);
    sub.wait_for(Duration::from_secs(10), "the delivery", |got| got.len() == 1)
        .await;
    assert!(!bin.log_text().contains("panicked"), "{}", bin.log_text());
}

/// A subscriber URL's port 0 or past 65535 (which the URL parser takes, and
/// then has no port) passed `check-config`; every delivery could only fail.
#[tokio::test]
async fn a_subscriber_url_with_a_port_no_connection_can_have_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for port in ["0", "99999", ""] {
        let url = format!("http://127.0.0.1:{port}/hooks/secret-path");
        let file = TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s", &url))
            .write();
        let file = file.to_str().unwrap();
        for args in [["check-config", "--config", file], ["run", "--config", file]] {
            let out = cli_output(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} with {url}: {err}");
            assert!(
                err.contains(file)
                    && err.contains("key `routes[0].subscribers[0].url`")
                    && err.contains("the port must be 1 to 65535")
                    && !err.contains("secret-path"),
                "{args:?}: {err}"
            );
        }
    }
}
