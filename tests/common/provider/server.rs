//! The fake provider's HTTP API: bearer check, 429 storms, create, status and
//! download-url endpoints, and small result files under `/files/`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use hookrelay::provider::Product;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::{bodies, create_task, ApiRequest, Shared};

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let acceptor = shared.opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let mut stop = shared.stop.clone();
    loop {
        let tcp = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = listener.accept() => match r { Ok((tcp, _)) => tcp, Err(_) => continue },
        };
        let (shared, acceptor) = (shared.clone(), acceptor.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(shared.clone(), req));
            let builder = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(a) => {
                    if let Ok(tls) = a.accept(tcp).await {
                        let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                }
            }
        });
    }
}

fn reply(status: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let task_id = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "taskId")
            .map(|(_, v)| v.into_owned())
    });
    let fresh = req.uri().query().is_some_and(|q| q.contains("fresh="));
    let authorized = req.headers().get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {}", shared.opts.api_key));
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(file) = path.strip_prefix("/files/") {
        let expired = shared.lock().expired_files.contains(file) && !fresh;
        if expired {
            let mut r = Response::new(Full::new(Bytes::from_static(b"AccessDenied: Request has expired")));
            *r.status_mut() = StatusCode::FORBIDDEN;
            return Ok(r);
        }
        return Ok(Response::new(Full::new(Bytes::from(format!("fake file {file}")))));
    }
    if method == "POST" && bodies::create_product(&path).is_some() {
        shared.lock().creates_received += 1;
        let _ = shared.creates_open.subscribe().wait_for(|open| *open).await;
    }
    if method == "GET" && task_id.is_some() && !*shared.status_open.borrow() {
        shared.lock().status_held += 1;
        let _ = shared.status_open.subscribe().wait_for(|open| *open).await;
        shared.lock().status_held -= 1;
    }
    let json_body: Option<Value> = serde_json::from_slice(&body).ok();
    let (status, answer) = route(
        &shared,
        &method,
        &path,
        task_id.as_deref(),
        authorized,
        json_body.as_ref(),
    );
    let code = answer.get("code").and_then(Value::as_i64).unwrap_or(0);
    shared.lock().requests.push(ApiRequest {
        method,
        path,
        task_id,
        status,
        code,
        body: json_body,
    });
    Ok(reply(status, &answer))
}

/// (HTTP status, answer body) for one API request.
fn route(
    shared: &Arc<Shared>,
    method: &str,
    path: &str,
    task_id: Option<&str>,
    authorized: bool,
    body: Option<&Value>,
) -> (u16, Value) {
    if !authorized {
        // Documented as a body code; the HTTP status is not documented.
        return (200, json!({"code": 401, "msg": "You do not have access permissions"}));
    }
    {
        let mut s = shared.lock();
        if s.storm > 0 {
            s.storm -= 1;
            return (429, json!({"code": 429, "msg": "Too many requests, please slow down"}));
        }
    }
    match method {
        "GET" => match bodies::status_product(path) {
            Some(product) => status(shared, product, task_id),
            None => (404, json!({"code": 404, "msg": "Not found"})),
        },
        "POST" if path == "/api/v1/common/download-url" => download_url(shared, body),
        "POST" => match (bodies::create_product(path), body.filter(|b| b.is_object())) {
            (Some(product), Some(b)) => {
                let id = create_task(shared, product, None, b);
                (200, json!({"code": 200, "msg": "success", "data": {"taskId": id}}))
            }
            (Some(_), None) => (200, json!({"code": 400, "msg": "Invalid JSON body"})),
            (None, _) => (404, json!({"code": 404, "msg": "Not found"})),
        },
        _ => (405, json!({"code": 405, "msg": "Method not allowed"})),
    }
}

fn status(shared: &Shared, product: Product, task_id: Option<&str>) -> (u16, Value) {
    let Some(id) = task_id.filter(|t| !t.is_empty()) else {
        return (200, json!({"code": 400, "msg": "taskId is required"}));
    };
    if let Some((_, data)) = shared.lock().records.get(id).filter(|(p, _)| *p == product) {
        return (200, json!({"code": 200, "msg": "success", "data": data}));
    }
    let Some(task) = shared.lock().tasks.get(id).cloned().filter(|t| t.product == product) else {
        return (200, json!({"code": 404, "msg": "Task not found"}));
    };
    if task.expired {
        return (
            200,
            json!({"code": 422, "msg": "Temporarily supports records within 14 days"}),
        );
    }
    let data = bodies::record(&task, task.stage_index(Instant::now()));
    let msg_key = if task.plan.alternate && product == Product::Market {
        "message"
    } else {
        "msg"
    };
    (200, json!({"code": 200, msg_key: "success", "data": data}))
}

fn download_url(shared: &Shared, body: Option<&Value>) -> (u16, Value) {
    let url = body.and_then(|b| b.get("url")).and_then(Value::as_str).unwrap_or("");
    if url.starts_with(&format!("{}/files/", shared.base)) {
        let n = fastrand::u32(..);
        (
            200,
            json!({"code": 200, "msg": "success", "data": format!("{url}?fresh={n:08x}")}),
        )
    } else {
        (
            200,
            // Naming the URL, as a provider's message may (its signed query too).
            json!({"code": 422, "msg": format!("The URL is not a file generated by this platform: {url}")}),
        )
    }
}
