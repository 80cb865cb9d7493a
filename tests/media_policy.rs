//! The media fetcher's address policy against real loopback servers: private
//! addresses refused (every spelling, and names resolving to them), also
//! after a redirect from a permitted host, and one lookup per hop with the
//! connection made to exactly the checked address (no DNS rebinding).

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::fetcher::{fetch_options, open_fetcher, read_body};
use common::files::{FileServer, Route};
use futures_util::TryStreamExt;
use hookrelay::media::{AddressPolicy, FetchError, FetchOptions, Fetcher, Resolver, StaticResolver};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Only 127.0.0.1 is permitted: stands in for "a public host" on loopback.
fn only_127_0_0_1() -> FetchOptions {
    FetchOptions {
        policy: AddressPolicy {
            allow_private: false,
            allowed_nets: vec!["127.0.0.1/32".parse().unwrap()],
        },
        ..fetch_options(false)
    }
}

#[tokio::test]
async fn private_addresses_are_refused_without_allow_private() {
    let s = FileServer::start(LOCAL).await;
    let url = s.bytes("/x.png", b"png", "image/png");
    let strict = Fetcher::new(fetch_options(false)).unwrap();
    for u in [
        url.as_str(),
        "http://10.1.2.3/x.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/x",
        "http://[::ffff:127.0.0.1]:9/x",
        "http://0.0.0.0:9/x",
        "https://192.168.0.1/x",
        // Other spellings of 127.0.0.1 (WHATWG URL parsing normalises them).
        "http://2130706433:9/x",
        "http://0x7f.1:9/x",
        "http://0177.0.0.1:9/x",
        "http://127.1:9/x",
        // Userinfo and fragment tricks: the host is what follows the last `@`.
        "http://evil.example@127.0.0.1:9/x",
        "http://evil.example:80@127.0.0.1:9/x",
        "http://127.0.0.1:9#@evil.example/x",
        "http:\\\\127.0.0.1:9\\x",
        "http://[::ffff:7f00:1]:9/x",
        "http://[::127.0.0.1]:9/x",
        "http://[64:ff9b::7f00:1]:9/x",
        // The system resolver's answer for localhost is checked too.
        "http://localhost:9/x",
    ] {
        let err = strict.get(u).await.unwrap_err();
        assert!(matches!(err, FetchError::Refused { .. }), "{u}: {err}");
        assert!(!err.retryable(), "{u}");
    }
    assert_eq!(s.total_hits(), 0, "a refused URL is never requested");
    // A name that resolves to loopback is refused the same way.
    let resolver = StaticResolver::new().with("files.example", &[LOCAL]);
    let strict = strict.with_resolver(Arc::new(resolver));
    let err = strict
        .get(&format!("http://files.example:{}/x.png", s.addr.port()))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "refused files.example: 127.0.0.1 is loopback (list its network in media.allow_networks, or set media.allow_private = true to allow every private address)"
    );
    assert_eq!(s.total_hits(), 0);
    // The same URL with allow_private.
    assert_eq!(read_body(&open_fetcher(), &url).await.unwrap(), b"png");
}

#[tokio::test]
async fn a_redirect_to_a_private_address_is_refused() {
    let public = FileServer::start(LOCAL).await;
    // A real server on another loopback address: refusing must mean "never
    // contacted", not "could not connect".
    let private = FileServer::start(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).await;
    private.bytes("/secret", b"secret", "text/plain");
    let resolver = StaticResolver::new()
        .with("cdn.example", &[LOCAL])
        .with("internal.example", &[private.addr.ip()]);
    let f = Fetcher::new(only_127_0_0_1())
        .unwrap()
        .with_resolver(Arc::new(resolver));
    let targets = [
        private.url("/secret"),
        format!("http://internal.example:{}/secret", private.addr.port()),
        "http://169.254.169.254/latest/meta-data/iam/".to_string(),
        "http://10.0.0.1/admin".to_string(),
        "http://[fd00::1]/x".to_string(),
    ];
    for (i, target) in targets.iter().enumerate() {
        let path = format!("/r{i}");
        public.route(
            &path,
            Route::Redirect {
                status: 302,
                location: target.clone(),
            },
        );
        let start = format!("http://cdn.example:{}{path}", public.addr.port());
        let err = f.get(&start).await.unwrap_err();
        assert!(matches!(err, FetchError::Refused { .. }), "{target}: {err}");
        assert_eq!(public.hits(&path), 1, "the first hop was fetched");
    }
    assert_eq!(private.total_hits(), 0, "the private server was never contacted");
    // Control: the allowed host itself serves fine through the same fetcher.
    public.bytes("/ok", b"ok", "text/plain");
    assert_eq!(
        read_body(&f, &format!("http://cdn.example:{}/ok", public.addr.port()))
            .await
            .unwrap(),
        b"ok"
    );
}

/// Answers the first lookup with 127.0.0.1 and every later one with 127.0.0.2.
struct Rebinding {
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Resolver for Rebinding {
    async fn resolve(&self, _host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let ip = if n == 0 {
            LOCAL
        } else {
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
        };
        Ok(vec![SocketAddr::new(ip, port)])
    }
}

#[tokio::test]
async fn resolves_once_and_connects_to_the_checked_address() {
    let public = FileServer::start(LOCAL).await;
    public.bytes("/f", b"checked", "text/plain");
    let resolver = Arc::new(Rebinding {
        calls: AtomicUsize::new(0),
    });
    let f = Fetcher::new(only_127_0_0_1()).unwrap().with_resolver(resolver.clone());
    let d = f
        .get(&format!("http://rebind.example:{}/f", public.addr.port()))
        .await
        .unwrap();
    assert_eq!(d.peer, public.addr);
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 1, "one lookup per hop");
    let chunks: Vec<Bytes> = d.into_stream().try_collect().await.unwrap();
    assert_eq!(chunks.concat(), b"checked");
    // A second download resolves again, gets the private answer, and is refused.
    let err = f
        .get(&format!("http://rebind.example:{}/f", public.addr.port()))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Refused { .. }), "{err}");
}

/// IANA's special-purpose registry marks these "globally reachable: false"
/// (RFC 8215's local-use NAT64 prefix carries any IPv4 address, private
/// ones included: `64:ff9b:1::a9fe:a9fe` is the metadata endpoint behind a
/// local NAT64; `::ffff:0:a.b.c.d` is SIIT's IPv4-translated form; the
/// documentation ranges are reserved). The strict policy refuses them all.
#[test]
fn nat64_local_use_translated_and_documentation_addresses_are_refused() {
    let strict = AddressPolicy::default();
    let mut passed = Vec::new();
    for ip in [
        "64:ff9b:1::a9fe:a9fe", // local-use NAT64 (RFC 8215) of 169.254.169.254
        "64:ff9b:1::a00:1",     // local-use NAT64 of 10.0.0.1
        "::ffff:0:a9fe:a9fe",   // IPv4-translated (RFC 2765) 169.254.169.254
        "::ffff:0:7f00:1",      // IPv4-translated 127.0.0.1
        "192.0.2.1",            // documentation (TEST-NET-1)
        "198.51.100.1",         // documentation (TEST-NET-2)
        "203.0.113.1",          // documentation (TEST-NET-3)
        "2001:db8::1",          // documentation
    ] {
        if strict.check(ip.parse().unwrap()).is_ok() {
            passed.push(ip);
        }
    }
    assert!(
        passed.is_empty(),
        "the strict media policy lets these non-global addresses through: {passed:?}"
    );
}
