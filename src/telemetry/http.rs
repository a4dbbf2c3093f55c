//! The HTTP endpoint (`http.listener`): `/metrics` in the Prometheus text format, `/livez`
//! and `/readyz` for probes (`/readyz?verbose` lists each check). HTTP/1.1 only, GET
//! only; a request that takes longer than 10 s to arrive is dropped.

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::broker::Broker;

/// At most this many scrapes and probes are served at once.
const MAX_CONNECTIONS: usize = 64;

/// Serves the endpoint until `cancel`.
pub async fn serve(broker: Weak<Broker>, listener: TcpListener, cancel: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (socket, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "http accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let broker = broker.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let broker = broker.clone();
                async move { Ok::<_, Infallible>(answer(&broker, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(true)
                .serve_connection(TokioIo::new(socket), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    debug!(%peer, error = %e, "http connection ended");
                },
                _ = cancel.cancelled() => {}
            }
            drop(permit);
        });
    }
}

fn answer(broker: &Weak<Broker>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    let Some(broker) = broker.upgrade() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "stopped\n".into());
    };
    match req.uri().path() {
        "/metrics" => {
            let body = stratus_metrics::text::render(&broker.telemetry.registry.gather());
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(stratus_metrics::text::CONTENT_TYPE),
            );
            r
        }
        "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let checks = super::health::readiness(&broker);
            let ready = checks.iter().all(|(_, r)| r.is_ok());
            let verbose = req.uri().query().is_some_and(|q| q.contains("verbose"));
            let mut body = String::new();
            if verbose || !ready {
                for (name, r) in &checks {
                    match r {
                        Ok(()) => body.push_str(&format!("[+] {name} ok\n")),
                        Err(e) => body.push_str(&format!("[-] {name} failed: {e}\n")),
                    }
                }
            }
            body.push_str(if ready { "ok\n" } else { "not ready\n" });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, body)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /livez and /readyz are served\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
