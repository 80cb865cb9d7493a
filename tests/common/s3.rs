//! A local S3 for the tests: moto (PyPI `moto[server]`) started on a free
//! loopback port, ready when it answers, killed on drop (a missing
//! `moto_server` fails the test with what to install); and `S3`, the
//! `[media] store = { s3 = { … } }` table that points the daemon at it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use super::ports::free_port;
use super::route::Secret;

/// `store = { s3 = { bucket, endpoint, region, access_key, secret_key, prefix } }`.
#[derive(Clone, Serialize)]
pub struct S3 {
    bucket: String,
    endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    access_key: Secret,
    secret_key: Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
}

impl S3 {
    /// Reach the store at `endpoint` instead (a proxy in front of moto).
    pub fn endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// Key prefix inside the bucket (e.g. "hookrelay/").
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.into());
        self
    }
}

pub struct Moto {
    pub addr: SocketAddr,
    child: Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// The status of an unsigned request, None while moto is not answering yet
/// (refused connections are expected then, so not `client::request`).
async fn status(method: &str, url: &str) -> Option<u16> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Empty::new())
        .ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .ok()?
        .ok()?;
    let code = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Some(code)
}

impl Moto {
    pub async fn start() -> Moto {
        assert!(
            on_path("moto_server"),
            "moto_server is not on PATH: install moto: pip install 'moto[server]'"
        );
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server (install moto: pip install 'moto[server]')");
        let mut moto = Moto { addr, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if status("GET", &format!("{}/moto-api/", moto.endpoint())).await == Some(200) {
                return moto;
            }
            if let Ok(Some(exit)) = moto.child.try_wait() {
                panic!("moto_server exited with {exit} before answering on {addr}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {addr} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Create a bucket (moto accepts unsigned requests).
    pub async fn create_bucket(&self, name: &str) {
        let code = status("PUT", &format!("{}/{name}", self.endpoint())).await;
        assert_eq!(code, Some(200), "create bucket {name} on moto");
    }

    /// Delete bucket `name` and the relay's probe files in it (a probe put
    /// meanwhile: the bucket not empty, tried again for up to 10 s).
    pub async fn delete_bucket(&self, name: &str) {
        let base = format!("{}/{name}", self.endpoint());
        let end = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (code, _, list) =
                super::client::request(self.addr, None, "GET", &format!("/{name}"), &[], bytes::Bytes::new()).await;
            let list = String::from_utf8_lossy(&list).into_owned();
            assert_eq!(code, 200, "list bucket {name} on moto: {list}");
            for key in list.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()) {
                let _ = status("DELETE", &format!("{base}/{key}")).await;
            }
            let code = status("DELETE", &base).await;
            if code == Some(204) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "delete bucket {name} on moto: {code:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The library's settings for `bucket` here, prefix "hookrelay/", parts
    /// of 5 MiB (S3's least); keys that tests look for in Debug output.
    pub fn settings(&self, bucket: &str) -> hookrelay::media::S3Settings {
        Moto::settings_for(&self.endpoint(), bucket)
    }

    /// `settings`, for an S3 endpoint that is not this moto.
    pub fn settings_for(endpoint: &str, bucket: &str) -> hookrelay::media::S3Settings {
        hookrelay::media::S3Settings {
            s3: hookrelay::config::S3Config {
                bucket: bucket.into(),
                endpoint: Some(endpoint.into()),
                region: "us-east-1".into(),
                access_key: hookrelay::auth::Secret::new("AKIATESTKEY"),
                secret_key: hookrelay::auth::Secret::new("very-secret-value"),
                prefix: "hookrelay/".into(),
            },
            ca_file: None,
            part_size: 5 << 20,
            request_timeout: hookrelay::media::s3_http::REQUEST_TIMEOUT,
        }
    }

    /// The daemon's `store = { s3 = … }` for `bucket` here (moto takes any keys).
    pub fn store(&self, bucket: &str, access_key: impl Into<Secret>, secret_key: impl Into<Secret>) -> S3 {
        S3 {
            bucket: bucket.into(),
            endpoint: self.endpoint(),
            region: None,
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            prefix: None,
        }
    }
}
