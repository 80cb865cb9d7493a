//! `[store]` in cluster mode: credentials in a server URL are refused (and
//! never echoed), the retention warnings say what happens on NATS (to
//! retries, and to expected tasks still open), and the embedded store's keys
//! are named as doing nothing.

use super::tests::{minimal, parse};
use super::Config;

fn cluster(store_extra: &str, route_extra: &str) -> String {
    format!(
        "{}\n[store]\nbackend = \"nats\"\n{store_extra}\nnats = {{ servers = [\"nats://127.0.0.1:4222\"] }}\n",
        minimal(route_extra)
    )
}

#[test]
fn credentials_in_a_server_url_are_refused_without_showing_them() {
    let text = format!(
        "{}\n[store]\nbackend = \"nats\"\nnats = {{ servers = [\"nats://hookrelay:s3cretNATSpw@127.0.0.1:4222\"] }}\n",
        minimal("")
    );
    let e = parse(&text).expect_err("userinfo in a server is refused");
    let shown = e.to_string();
    assert_eq!(e.key, "store.nats.servers[0]", "{shown}");
    assert!(shown.contains("store.nats.user and password"), "{shown}");
    assert!(!shown.contains("s3cretNATSpw"), "{shown}");
}

#[test]
fn the_retention_warning_says_what_happens_in_cluster_mode() {
    let long = "retry = [\"1h\", \"2h\"]";
    let text = format!(
        "{}\n[store]\nbackend = \"nats\"\nretention = \"1h\"\nnats = {{ servers = [\"nats://127.0.0.1:4222\"] }}\n",
        minimal("").replace(
            "url = \"http://127.0.0.1:9000/\"",
            &format!("url = \"http://127.0.0.1:9000/\"\n{long}")
        )
    );
    let c = parse(&text).expect("valid");
    let w = c.warnings.join("\n");
    assert!(w.contains("store.retention"), "{w}");
    assert!(w.contains("expires at the retention") && w.contains("lost"), "{w}");
    assert!(!w.contains("the event is kept until they end"), "{w}");
    // The embedded store keeps the event: its text stays.
    let sled = text
        .replace("backend = \"nats\"\n", "")
        .replace("nats = { servers = [\"nats://127.0.0.1:4222\"] }\n", "");
    let w = parse(&sled).expect("valid").warnings.join("\n");
    assert!(w.contains("the event is kept until they end"), "{w}");
}

#[test]
fn embedded_store_keys_are_named_as_unused_in_cluster_mode() {
    let c = parse(&cluster("cache = \"64MiB\"\ncompression = true", "")).expect("valid");
    let w = c.warnings.join("\n");
    for key in ["store.cache", "store.compression"] {
        assert!(w.contains(&format!("key `{key}`")) && w.contains("does nothing"), "{w}");
    }
    assert!(!w.contains("store.min_free"), "{w}");
    let c = parse(&cluster("", "")).expect("valid");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn a_give_up_not_shorter_than_the_retention_is_named_in_cluster_mode() {
    let route = "preset = \"kie-veo\"\nprovider = { api_key = \"sk-test\", base_url = \"http://127.0.0.1:1\" }\n\
                 reconcile = { after = \"5s\", every = \"5s\", give_up = \"10m\" }";
    let public = |t: String| {
        t.replace(
            "listen = [\"127.0.0.1:0\"]\n",
            "listen = [\"127.0.0.1:0\"]\npublic_url = \"https://hooks.example.com\"\n",
        )
    };
    let w = parse(&public(cluster("retention = \"1m\"", route)))
        .expect("valid")
        .warnings
        .join("\n");
    assert!(
        w.contains("key `routes[0].reconcile.give_up` (route \"r\"): 10m"),
        "{w}"
    );
    assert!(
        w.contains("`store.retention` (1m)") && w.contains("polled no more"),
        "{w}"
    );
    // A retention longer than give_up: nothing to say about it (other
    // warnings, about the retry schedule, say what they say).
    let names_give_up = |c: Config| c.warnings.iter().any(|w| w.contains("reconcile.give_up"));
    assert!(!names_give_up(
        parse(&public(cluster("retention = \"11m\"", route))).expect("valid")
    ));
    // The poll that gives up comes up to 1.2 × every (6 s) after give_up.
    assert!(names_give_up(
        parse(&public(cluster("retention = \"10m 5s\"", route))).expect("valid")
    ));
    // The embedded store keeps an open task until it settles.
    let sled = format!("{}\n[store]\nretention = \"1m\"\n", public(minimal(route)));
    assert!(!names_give_up(parse(&sled).expect("valid")));
}

/// Two route names with one 16-bit tag in event ids are refused, naming
/// both (the relay's NATS set-up stopped at them: never ready, or after a
/// reload their callbacks got 503 while it said ready).
#[test]
fn route_names_with_one_tag_in_event_ids_are_refused_in_cluster_mode() {
    use crate::store::nats::layout::route_tag;
    assert_eq!(route_tag("r43"), route_tag("r218"), "the example collides");
    let second = |name: &str| {
        format!("\n[[routes]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nallow_anyone = true\n[[routes.subscribers]]\nname = \"s-{name}\"\nurl = \"http://127.0.0.1:9000/\"\n")
    };
    let text = cluster("", "").replace("[store]", &format!("{}{}\n[store]", second("r43"), second("r218")));
    let e = parse(&text).expect_err("refused");
    assert_eq!(e.key, "routes[2].name", "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains("\"r218\"") && shown.contains("routes[1] \"r43\""),
        "{shown}"
    );
    // The embedded store has no such tag.
    let sled = text
        .replace("backend = \"nats\"\n", "")
        .replace("nats = { servers = [\"nats://127.0.0.1:4222\"] }\n", "");
    parse(&sled).expect("valid on the embedded store");
}

/// A server URL with a port no connection can have, a path or a query is
/// refused (`:0` and `:` were taken, and the relay never connected; a
/// `?token=` is a secret in the plain config).
#[test]
fn server_urls_without_a_usable_port_or_with_a_path_or_query_are_refused() {
    for (bad, why) in [
        ("nats://127.0.0.1:0", "a port from 1 to 65535"),
        ("nats://127.0.0.1:", "a port from 1 to 65535"),
        ("nats://127.0.0.1:4222/x", "no path, query or fragment"),
        ("nats://127.0.0.1:4222?token=abc", "no path, query or fragment"),
    ] {
        let text = cluster("", "").replace("nats://127.0.0.1:4222", bad);
        let e = parse(&text).expect_err(bad);
        assert_eq!(e.key, "store.nats.servers[0]", "{bad}: {e}");
        assert!(e.to_string().contains(why), "{bad}: {e}");
        assert!(!e.to_string().contains("abc"), "{e}");
    }
    for good in ["nats://127.0.0.1:4222/", "tls://nats.internal:4222", "nats://10.0.0.1"] {
        parse(&cluster("", "").replace("nats://127.0.0.1:4222", good)).expect(good);
    }
}

/// An embedded store under a directory emptied at reboot (and by the
/// packaged unit at every stop) is named, at `check-config` and at start;
/// one under /var/lib is not; in cluster mode the callbacks are in NATS.
#[test]
fn an_embedded_store_under_tmp_is_named_as_emptied_at_reboot() {
    let named = |store: &str| {
        let c = parse(&format!("{}\n[store]\n{store}\n", minimal(""))).expect("valid");
        c.warnings
            .iter()
            .any(|w| w.contains("key `store.path`") && w.contains("emptied at reboot"))
    };
    for tmp in ["/tmp/hookrelay", "/var/tmp/h", "/dev/shm/h", "/run/hookrelay/data"] {
        assert!(named(&format!("path = \"{tmp}\"")), "{tmp}");
    }
    assert!(!named("path = \"/var/lib/hookrelay/data\""));
    assert!(!named("path = \"/tmpx/data\""));
    assert!(!named(
        "backend = \"nats\"\npath = \"/tmp/h\"\nnats = { servers = [\"nats://127.0.0.1:4222\"] }"
    ));
}

/// sled panics at its open under a 256-byte cache: `run` exited 2 calling a
/// healthy store damaged, after `check-config` and a reload accepted it.
/// Under 1 MiB it works, slowly: a warning. In cluster mode the key does
/// nothing (warned about as such, not refused).
#[test]
fn a_store_cache_under_sleds_floor_is_refused_and_a_small_one_warned_about() {
    for cache in ["0", "100", "255"] {
        let text = format!("{}\n[store]\ncache = \"{cache}\"\n", minimal(""));
        let e = parse(&text).expect_err(cache);
        assert_eq!(e.key, "store.cache", "{e}");
        assert!(e.to_string().contains("at least 256 bytes"), "{e}");
    }
    let small = parse(&format!("{}\n[store]\ncache = \"512KiB\"\n", minimal(""))).expect("it works");
    assert!(
        small.warnings.iter().any(|w| w.contains("key `store.cache`")),
        "{:?}",
        small.warnings
    );
    let enough = parse(&format!("{}\n[store]\ncache = \"1MiB\"\n", minimal(""))).expect("1MiB");
    assert!(
        !enough.warnings.iter().any(|w| w.contains("key `store.cache`")),
        "{:?}",
        enough.warnings
    );
    parse(&cluster("cache = \"100\"", "")).expect("unused in cluster mode");
}
