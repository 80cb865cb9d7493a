//! Review 18 (security review): failing tests for the findings in
//! /work/notes/review18.md. Each test states the promise it checks.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::files::{sha256_hex, FileServer};
use common::*;
use serde_json::Value;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Finding 1. `hookrelay-media` promises one item per archived URL ("any
/// URL or error text makes a valid header"). A media URL holding a DEL
/// (0x7F: valid in a JSON string, accepted by the URL parser, which
/// percent-encodes it) is not escaped by serde_json, so the header value
/// is refused by `HeaderValue::from_str` and the relay sends `[]` — "this
/// callback named no media" — although both files were archived.
#[tokio::test]
async fn a_del_character_in_one_media_url_does_not_blank_the_media_header() {
    let s = FileServer::start(LOCAL).await;
    let video_url = s.bytes("/k/video.mp4", b"video-bytes", "video/mp4");
    let cover_url = format!("{}?v=\u{7f}", s.bytes("/m/cover.png", b"cover", "image/png"));
    let later = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("later", later.url()).after_archive());
    let h = start(&media_config(dir.path(), Media::new().allow_private()).route(route)).await;
    let body = runway_media("del-in-url", &video_url, &cover_url).to_string();
    accepted_at(h.ingest_addrs[0], "/hooks/runway", &body).await;
    let got = later
        .wait_for(Duration::from_secs(30), "the after_archive delivery", |r| !r.is_empty())
        .await;
    let header: Vec<Value> = serde_json::from_str(got[0].header("hookrelay-media")).unwrap();
    assert_eq!(
        header.len(),
        2,
        "both URLs were archived, the header must list them; got {:?}",
        got[0].header("hookrelay-media")
    );
    assert_eq!(header[0]["sha256"], sha256_hex(b"video-bytes"));
    h.shutdown().await;
}

/// Finding 2. A config value of the wrong type is refused with serde's
/// message, which quotes the value: `tokens = "<the token>"` (one string
/// where a list is expected) or `provider = "<api key>"` puts the secret in
/// the reload refusal the daemon logs (and in check-config's stderr).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_of_the_wrong_type_is_not_quoted_in_the_logged_reload_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&base.write(), &[]);
    const SECRET: &str = "rt-3f9c2b7d41e6a8c0-secret";
    // The operator rotates the token and forgets the brackets.
    base.clone()
        .raw(|t| {
            t["routes"].as_array_mut().unwrap()[0]
                .as_table_mut()
                .unwrap()
                .insert("tokens".into(), toml::Value::String(SECRET.into()));
        })
        .write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "reload refused", Duration::from_secs(10)).await;
    let (_, _, err) = cli(&["check-config", "--config", base.path().to_str().unwrap()]);
    let shown = format!("{}\n{err}", bin.log_text());
    assert!(
        !shown.contains(SECRET),
        "the token is quoted in the refusal:\n{shown}"
    );
}
