//! The ingest request path end to end (routing, auth, limits, JSON, signature,
//! dedupe, durable store) with arbitrary methods, paths, headers and bodies:
//! always one of the contract's answers, never a panic.
#![no_main]
use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

struct World {
    rt: tokio::runtime::Runtime,
    handle: hookrelay::Handle,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = format!(
            r#"[server]
listen = ["127.0.0.1:0"]
max_body = "64KiB"
[store]
path = "{}"
min_free = "0"
[admin]
listen = "127.0.0.1:0"
[[routes]]
name = "t"
path = "/hooks/t"
tokens = ["tok"]
dedupe_key = ["/data/task_id"]
[[routes.subscribers]]
name = "s"
url = "http://127.0.0.1:9/"
retry = ["1h"]
[[routes]]
name = "sig"
path = "/hooks/sig"
signature = {{ scheme = "kie", secret = "k" }}
[[routes.subscribers]]
name = "s2"
url = "http://127.0.0.1:9/"
retry = ["1h"]
"#,
            dir.path().join("data").display()
        );
        let config = hookrelay::Config::parse(&dir.path().join("c.toml"), &cfg).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let handle = rt.block_on(hookrelay::start(config)).unwrap();
        World { rt, handle, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    // method \n path \n header lines ... \n\n body
    let text_end = data.windows(2).position(|x| x == b"\n\n").unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..text_end]);
    let body = Bytes::copy_from_slice(data.get(text_end + 2..).unwrap_or(&[]));
    let mut lines = head.lines();
    let method = lines.next().unwrap_or("POST");
    let path = lines.next().unwrap_or("/hooks/t?token=tok");
    let Ok(mut builder) = http::Request::builder().method(method).uri(path).body(()).map(|r| r.into_parts().0) else { return };
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.trim().as_bytes()), http::HeaderValue::from_str(v.trim())) {
                builder.headers.append(k, v);
            }
        }
    }
    let req = http::Request::from_parts(builder, Full::new(body));
    let app = w.handle.app.clone();
    let resp = w.rt.block_on(hookrelay::ingest::handle(app, req, "127.0.0.1:1".parse().unwrap()));
    assert!([200, 400, 401, 403, 404, 405, 408, 413, 503].contains(&resp.status().as_u16()), "{}", resp.status());
});
