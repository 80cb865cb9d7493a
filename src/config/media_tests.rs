//! Config tests of the media archive keys: presets and what overrides them,
//! media pointers, the provider key, `[media]` (local and S3 stores,
//! secrets, limits) and `after_archive`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::auth::Secret;
use crate::dedupe::DedupeKey;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/hookrelay/test.toml"), text)
}

/// A config with `route` keys on the one route, `media` as the `[media]`
/// table's body and `sub` keys on its one subscriber.
fn cfg(route: &str, media: &str, sub: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[store]
path = "/var/lib/hookrelay"

[media]
{media}

[[routes]]
name = "r"
path = "/hooks/r"
{route}
allow_anyone = true
[[routes.subscribers]]
name = "s"
url = "http://127.0.0.1:9000/"
{sub}
"#
    )
}

fn expect_err(text: &str, key: &str, line: Option<usize>, needle: &str) {
    let e = parse(text).expect_err("config should be refused");
    let shown = e.to_string();
    assert!(shown.starts_with("/etc/hookrelay/test.toml: "), "{shown}");
    assert_eq!(e.key, key, "{shown}");
    if let Some(line) = line {
        assert_eq!(e.position.map(|p| p.0), Some(line), "{shown}");
    }
    assert!(shown.contains(needle), "{shown} should contain {needle:?}");
}

fn pointers(r: &Route) -> Vec<&str> {
    r.media.iter().map(|p| p.as_str()).collect()
}

#[test]
fn a_preset_sets_dedupe_key_media_and_task_id_and_explicit_keys_win() {
    let c = parse(&cfg(
        r#"preset = "kie-veo"
signature = { scheme = "kie", secret = "k" }"#,
        "",
        "",
    ))
    .unwrap();
    let r = &c.routes[0];
    assert_eq!(r.preset.map(|p| p.name), Some("kie-veo"));
    assert_eq!(r.dedupe_key, DedupeKey::Preset(crate::preset::KIE_VEO));
    assert_eq!(pointers(r)[0], "/data/info/resultUrls/*");
    assert_eq!(r.task_id, ["/data/taskId"]);
    match &r.signature {
        Some(Signature::Kie { task_id, .. }) => assert_eq!(task_id, &["/data/taskId"]),
        other => panic!("{other:?}"),
    }
    let report = r.preset_report.join("\n");
    assert!(
        report.contains(
            "dedupe_key = task id + outcome (success or failure, whatever the failure code; a success naming \"/data/info/imageUrls\" is another one, \"success 4k\")  (from the preset)"
        ),
        "{report}"
    );
    assert!(report.contains("used by the kie signature"), "{report}");

    let c = parse(&cfg(
        r#"preset = "kie-runway"
dedupe_key = ["/data/task_id"]
media = ["/data/video_url"]
signature = { scheme = "kie", secret = "k", task_id = "/job" }"#,
        "",
        "",
    ))
    .unwrap();
    let r = &c.routes[0];
    assert_eq!(r.dedupe_key, DedupeKey::Pointers(vec!["/data/task_id".into()]));
    assert_eq!(pointers(r), ["/data/video_url"]);
    match &r.signature {
        // The route's pointer first; the preset's after it, which dedupe
        // and the expected tasks read: a body's must agree.
        Some(Signature::Kie { task_id, .. }) => assert_eq!(task_id, &["/job", "/data/task_id", "/data/taskId"]),
        other => panic!("{other:?}"),
    }
    let report = r.preset_report.join("\n");
    assert!(report.contains("dedupe_key: set by the route"), "{report}");
    assert!(report.contains("media: set by the route"), "{report}");
    assert!(
        report.contains(r#"task id: "/job" (the route's) first, then the preset's ["/data/task_id", "/data/taskId"]"#),
        "{report}"
    );

    // `media = []` switches the preset's archiving off; no preset, no media.
    let c = parse(&cfg("preset = \"kie-runway\"\nmedia = []", "", "")).unwrap();
    assert!(c.routes[0].media.is_empty());
    let c = parse(&cfg("", "", "")).unwrap();
    assert!(c.routes[0].media.is_empty() && c.routes[0].preset_report.is_empty());
}

#[test]
fn bad_presets_pointers_and_provider_keys_are_named() {
    expect_err(
        &cfg(r#"preset = "kie-sora""#, "", ""),
        "routes[0].preset",
        Some(13),
        "valid presets are \"kie-runway\"",
    );
    expect_err(
        &cfg(r#"media = ["/data/video_url", "data/image_url"]"#, "", ""),
        "routes[0].media[1]",
        Some(13),
        "must start with '/'",
    );
    expect_err(
        &cfg("media = [\"/data/x\"]\njson = false", "", ""),
        "routes[0].media",
        None,
        "need json = true",
    );
    expect_err(
        &cfg(r#"provider = { base_url = "https://api.kie.ai" }"#, "", ""),
        "routes[0].provider.api_key",
        Some(13),
        "an API key is required",
    );
    expect_err(
        &cfg(
            r#"provider = { api_key = { env = "HOOKRELAY_TEST_UNSET_KEY" } }"#,
            "",
            "",
        ),
        "routes[0].provider.api_key",
        Some(13),
        "HOOKRELAY_TEST_UNSET_KEY is not set",
    );
    expect_err(
        &cfg(
            r#"provider = { api_key = "sk-1", base_url = "http://api.kie.ai" }"#,
            "",
            "",
        ),
        "routes[0].provider.base_url",
        Some(13),
        "must use https",
    );
    let c = parse(&cfg(r#"provider = { api_key = "sk-1" }"#, "", "")).unwrap();
    let p = c.routes[0].provider.as_ref().unwrap();
    assert_eq!(
        (p.api_key.clone(), p.base_url.as_str()),
        (Secret::new("sk-1"), "https://api.kie.ai")
    );
    assert!(!format!("{p:?}").contains("sk-1"), "the key stays out of Debug");
}

#[test]
fn media_defaults_and_the_local_store() {
    let c = parse(&cfg("", "", "")).unwrap();
    let m = &c.media;
    assert_eq!(
        m.store,
        MediaStoreConfig::Local(PathBuf::from("/var/lib/hookrelay/media"))
    );
    assert_eq!(m.max_size, 2 << 30);
    assert_eq!(m.timeout, Duration::from_secs(600));
    assert_eq!(m.concurrency, 4);
    assert_eq!(m.retry.steps().len(), 5);
    assert!(!m.allow_private);
    assert_eq!(m.retention, Duration::from_secs(90 * 86400));
    let c = parse(&cfg(
        "",
        "store = \"archive\"\nallow_private = true\nmax_size = \"10MiB\"",
        "",
    ))
    .unwrap();
    assert_eq!(
        c.media.store,
        MediaStoreConfig::Local(PathBuf::from("/etc/hookrelay/archive")),
        "relative to the config file"
    );
    assert!(c.media.allow_private);
    assert_eq!(c.media.max_size, 10 << 20);
}

#[test]
fn s3_store_takes_secrets_from_any_source_and_names_what_is_missing() {
    std::env::set_var("HOOKRELAY_TEST_S3_SECRET", "s3-secret-value");
    let c = parse(&cfg(
        "",
        r#"store = { s3 = { bucket = "b", endpoint = "http://127.0.0.1:9000", access_key = "AK", secret_key = { env = "HOOKRELAY_TEST_S3_SECRET" }, prefix = "hr/" } }"#,
        "",
    ))
    .unwrap();
    let MediaStoreConfig::S3(s3) = &c.media.store else {
        panic!("{:?}", c.media.store)
    };
    assert_eq!(
        (s3.bucket.as_str(), s3.region.as_str(), s3.prefix.as_str()),
        ("b", "us-east-1", "hr/")
    );
    assert_eq!(s3.secret_key, Secret::new("s3-secret-value"));
    assert!(!format!("{:?}", c.media).contains("s3-secret-value"));
    expect_err(
        &cfg("", r#"store = { s3 = { bucket = "b", access_key = "AK" } }"#, ""),
        "media.store.s3.secret_key",
        Some(8),
        "required",
    );
    expect_err(
        &cfg("", r#"store = { s3 = { bucket = "b", acces_key = "AK" } }"#, ""),
        "media.store.s3",
        Some(8),
        "unknown field `acces_key`",
    );
    expect_err(
        &cfg("", r#"store = { gcs = { bucket = "b" } }"#, ""),
        "media.store",
        Some(8),
        "unknown store \"gcs\"",
    );
    expect_err(
        &cfg(
            "",
            r#"store = { s3 = { bucket = "b", endpoint = "ftp://x", access_key = "a", secret_key = "b" } }"#,
            "",
        ),
        "media.store.s3.endpoint",
        Some(8),
        "invalid endpoint",
    );
    expect_err(
        &cfg(
            "",
            r#"store = { s3 = { bucket = "b", endpoint = "http://127.0.0.1:", access_key = "a", secret_key = "b" } }"#,
            "",
        ),
        "media.store.s3.endpoint",
        Some(8),
        "the port must be 1 to 65535",
    );
    // Keys in the endpoint would be shown wherever the store is named.
    let keyed = cfg(
        "",
        r#"store = { s3 = { bucket = "b", endpoint = "http://ak:sk-SECRET@127.0.0.1:9000", access_key = "a", secret_key = "b" } }"#,
        "",
    );
    expect_err(&keyed, "media.store.s3.endpoint", Some(8), "has credentials in the URL");
    let shown = parse(&keyed).unwrap_err().to_string();
    assert!(!shown.contains("sk-SECRET"), "{shown}");
    // A query (a presigned URL's signature pasted) was taken, and shown by
    // the logs and the media API as the store's name.
    for ep in [
        "http://127.0.0.1:9000/?X-Amz-Signature=QuerySecret",
        "http://127.0.0.1:9000/?QuerySecret",
        "http://127.0.0.1:9000/#QuerySecret",
    ] {
        let text = cfg(
            "",
            &format!(r#"store = {{ s3 = {{ bucket = "b", endpoint = "{ep}", access_key = "a", secret_key = "b" }} }}"#),
            "",
        );
        expect_err(&text, "media.store.s3.endpoint", Some(8), "has a query or fragment");
        let shown = parse(&text).unwrap_err().to_string();
        assert!(!shown.contains("QuerySecret"), "{shown}");
    }
    let bucket = cfg(
        "",
        r#"store = { s3 = { bucket = "my bucket", access_key = "a", secret_key = "b" } }"#,
        "",
    );
    expect_err(&bucket, "media.store.s3.bucket", Some(8), "not a bucket name");
    let region = cfg(
        "",
        r#"store = { s3 = { bucket = "b", region = "", access_key = "a", secret_key = "b" } }"#,
        "",
    );
    expect_err(&region, "media.store.s3.region", Some(8), "the region is empty");
    // An S3-compatible server may take no region, and a path-style bucket
    // with a '/' (R2, MinIO, Ceph).
    parse(&cfg(
        "",
        r#"store = { s3 = { bucket = "media/hookrelay", endpoint = "http://127.0.0.1:9000", region = "", access_key = "a", secret_key = "b" } }"#,
        "",
    ))
    .expect("a path-style bucket, no region");
}

#[test]
fn an_s3_store_written_as_its_own_table_is_read() {
    std::env::set_var("HOOKRELAY_TEST_S3_TABLE_SECRET", "s3-table-secret");
    let c = parse(&cfg(
        "",
        "retention = \"30d\"\n\n[media.store.s3]\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"\n\
         access_key = \"AK\"\nsecret_key = { env = \"HOOKRELAY_TEST_S3_TABLE_SECRET\" }\nprefix = \"hr/\"",
        "",
    ))
    .unwrap();
    let MediaStoreConfig::S3(s3) = &c.media.store else {
        panic!("{:?}", c.media.store)
    };
    assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("b", "hr/"));
    assert_eq!(s3.secret_key, Secret::new("s3-table-secret"));
    assert_eq!(c.media.retention, std::time::Duration::from_secs(30 * 86400));
    expect_err(
        &cfg("", "[media.store.s3]\nbucket = \"b\"\nacces_key = \"AK\"", ""),
        "media.store.s3",
        Some(8),
        "unknown field `acces_key`",
    );
}

#[test]
fn media_settings_that_cannot_work_are_refused() {
    for (media, key, needle) in [
        ("retry = []", "media.retry", "empty"),
        ("concurrency = 0", "media.concurrency", "at least 1"),
        ("timeout = \"0s\"", "media.timeout", "greater than 0"),
        ("max_size = 0", "media.max_size", "greater than 0"),
        ("retention = \"30s\"", "media.retention", "at least 1m"),
        ("ca_file = \"/nonexistent/ca.pem\"", "media.ca_file", "cannot open"),
    ] {
        expect_err(&cfg("", media, ""), key, None, needle);
    }
}

#[test]
fn an_s3_store_takes_files_it_can_copy_in_one_request_and_says_so() {
    let s3 = r#"store = { s3 = { bucket = "b", access_key = "AK", secret_key = "SK" } }"#;
    let c = parse(&cfg("", &format!("{s3}\nmax_size = \"6GiB\""), "")).unwrap();
    assert_eq!(c.media.max_size, 5 << 30, "cut to what one copy request takes");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("/etc/hookrelay/test.toml: key `media.max_size`") && w.contains("up to 5GiB")),
        "{:?}",
        c.warnings
    );
    let c = parse(&cfg("", &format!("{s3}\nmax_size = \"5GiB\""), "")).unwrap();
    assert_eq!(c.media.max_size, 5 << 30);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // A directory takes any size.
    let c = parse(&cfg("", "max_size = \"6GiB\"", "")).unwrap();
    assert_eq!(c.media.max_size, 6 << 30);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn after_archive_is_read_and_warned_about_where_nothing_is_archived() {
    let c = parse(&cfg("preset = \"kie-runway\"", "", "after_archive = true")).unwrap();
    assert!(c.routes[0].subscribers[0].after_archive);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = parse(&cfg("", "", "after_archive = true")).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("no media pointers")),
        "{:?}",
        c.warnings
    );
    let c = parse(&cfg("", "", "")).unwrap();
    assert!(!c.routes[0].subscribers[0].after_archive);
}

fn warns_store_path(c: &Config) -> bool {
    c.warnings
        .iter()
        .any(|w| w.contains("key `media.store`: it is store.path"))
}

/// A `media.store` that is a file (or under one) is refused as
/// `store.path` is (`run` failed at start); one that is `store.path`
/// itself is warned about (it started before).
#[test]
fn a_media_store_that_is_a_file_is_refused_and_one_at_store_path_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afile");
    std::fs::write(&file, "").unwrap();
    for store in [file.clone(), file.join("x")] {
        let text = cfg("", &format!("store = \"{}\"", store.display()), "");
        expect_err(&text, "media.store", None, "not a directory");
    }
    let text = cfg("", "store = \"/var/lib/hookrelay\"", "");
    let c = parse(&text).unwrap();
    assert!(warns_store_path(&c), "{:?}", c.warnings);
    // Both relative, from a config file named by a relative path (`run -c
    // h.toml`): the same directory (store.path is made absolute: media.store
    // must be too, or they no longer compare equal).
    let text = cfg("", "store = \"data\"", "").replace("path = \"/var/lib/hookrelay\"", "path = \"data\"");
    let c = Config::parse(Path::new("h.toml"), &text).unwrap();
    assert!(warns_store_path(&c), "{:?}", c.warnings);
    // The default, under store.path: no warning.
    let c = parse(&cfg("", "", "")).unwrap();
    assert!(
        !c.warnings.iter().any(|w| w.contains("media.store")),
        "{:?}",
        c.warnings
    );
}
