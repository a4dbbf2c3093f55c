//! `/livez`, `/readyz` and `/metrics` of the operator.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

fn answer(m: &Metrics, path: &str) -> (StatusCode, &'static str, String) {
    match path {
        "/livez" => (StatusCode::OK, "text/plain", "ok\n".into()),
        // A standby (not the leader) is ready: it is what it should be.
        "/readyz" if m.ready() => (StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting\n".into(),
        ),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            stratus_metrics::text::render(&m.registry.gather()),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (status, kind, body) = answer(&m, req.uri().path());
                let resp = Response::builder()
                    .status(status)
                    .header("content-type", kind)
                    .body(Full::new(Bytes::from(body)))
                    .unwrap_or_default();
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_started_and_metrics_render() {
        let m = Metrics::default();
        assert_eq!(answer(&m, "/livez").0, StatusCode::OK);
        assert_eq!(answer(&m, "/readyz").0, StatusCode::SERVICE_UNAVAILABLE);
        m.started.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(answer(&m, "/readyz").0, StatusCode::OK);
        m.reconciles.get(&["StratusCluster", "ok"]).inc();
        let text = answer(&m, "/metrics").2;
        assert!(
            text.contains(
                "stratus_operator_reconciles_total{kind=\"StratusCluster\",result=\"ok\"} 1"
            ),
            "{text}"
        );
    }
}
