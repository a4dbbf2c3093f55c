//! OTLP export: traces through the OpenTelemetry SDK (a batch span processor on the tokio
//! runtime, sampling by trace id ratio), and metrics from the same snapshots as
//! `/metrics`, converted to OTLP (cumulative) and pushed every interval.
//!
//! The endpoint and the rest come from the settings (`otel.*`), or from the standard
//! `OTEL_*` variables for what the settings leave unset.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use stratus_metrics::{FamilySnapshot, Kind, Registry, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;

/// Where and what to export.
#[derive(Debug, Clone)]
pub struct OtelConfig {
    /// The OTLP/gRPC endpoint.
    pub endpoint: String,
    /// `service.name`.
    pub service_name: String,
    /// Share of requests traced.
    pub ratio: f64,
    /// How often metrics are pushed.
    pub interval: Duration,
    /// This broker's node id (`service.instance.id`).
    pub node: i32,
}

impl OtelConfig {
    /// The export the settings (then the environment) ask for; `None` without an endpoint.
    pub fn from_settings(s: &Settings) -> Option<Self> {
        let t = &s.telemetry;
        let explicit = |k: &str| s.explicit.contains(k);
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = if t.otel_exporter_otlp_endpoint.is_empty() {
            env("OTEL_EXPORTER_OTLP_ENDPOINT")?
        } else {
            t.otel_exporter_otlp_endpoint.clone()
        };
        let service_name = match env("OTEL_SERVICE_NAME") {
            Some(n) if !explicit("otel.service.name") => n,
            _ => t.otel_service_name.clone(),
        };
        let ratio = match env("OTEL_TRACES_SAMPLER_ARG").and_then(|v| v.parse::<f64>().ok()) {
            Some(r) if !explicit("otel.traces.sampler.arg") => r.clamp(0.0, 1.0),
            _ => t.otel_traces_sampler_arg,
        };
        let interval_ms = match env("OTEL_METRIC_EXPORT_INTERVAL").and_then(|v| v.parse().ok()) {
            Some(ms) if !explicit("otel.metric.export.interval.ms") => ms,
            _ => t.otel_metric_export_interval_ms,
        };
        Some(OtelConfig {
            endpoint,
            service_name,
            ratio,
            interval: Duration::from_millis(interval_ms.max(100)),
            node: s.server.node_id,
        })
    }
}

/// The tracer provider of this process, installed once (it is global: the storage code
/// reaches it through `opentelemetry::global`).
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the tracer provider that exports to `cfg.endpoint`; must run on the tokio
/// runtime. Returns whether requests are to be traced.
pub fn install_tracing(cfg: &OtelConfig) -> anyhow::Result<bool> {
    if cfg.ratio <= 0.0 {
        return Ok(false);
    }
    if PROVIDER.get().is_some() {
        return Ok(true);
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(cfg.endpoint.clone())
        .with_timeout(Duration::from_secs(10));
    if cfg.endpoint.starts_with("https://") {
        builder = builder.with_tls_config(tls());
    }
    let exporter = builder.build()?;
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    // Requests are picked at `cfg.ratio` where they arrive (Telemetry::request_span), so
    // that the others cost no span at all; what reaches the provider is recorded.
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(resource(cfg))
        .build();
    if PROVIDER.set(provider.clone()).is_ok() {
        opentelemetry::global::set_tracer_provider(provider);
    }
    info!(endpoint = %cfg.endpoint, ratio = cfg.ratio, "exporting traces over OTLP");
    Ok(true)
}

/// TLS to an https endpoint: the system's CA certificates.
fn tls() -> tonic::transport::ClientTlsConfig {
    tonic::transport::ClientTlsConfig::new().with_native_roots()
}

/// Sends the spans still queued (at shutdown).
pub fn flush_traces() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
    }
}

fn resource(cfg: &OtelConfig) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(KeyValue::new("service.instance.id", cfg.node.to_string()))
        .with_attribute(KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION").to_string(),
        ))
        .build()
}

/// Pushes the registry's metrics to `cfg.endpoint` every interval until `cancel` (and
/// once more then). A failed export is logged (once until one succeeds) and retried at
/// the next interval: the series are cumulative, so nothing is lost but resolution.
pub async fn export_metrics(cfg: OtelConfig, registry: Arc<Registry>, cancel: CancellationToken) {
    let start = nanos(registry.started());
    let mut client: Option<MetricsServiceClient<tonic::transport::Channel>> = None;
    let mut failing = false;
    info!(endpoint = %cfg.endpoint, every_ms = cfg.interval.as_millis() as u64, "exporting metrics over OTLP");
    loop {
        let stop = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tokio::time::sleep(cfg.interval) => false,
        };
        let request = to_otlp(&cfg, &registry.gather(), start, nanos(SystemTime::now()));
        let sent = async {
            if client.is_none() {
                let mut endpoint = tonic::transport::Endpoint::from_shared(cfg.endpoint.clone())?
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(Duration::from_secs(10));
                if cfg.endpoint.starts_with("https://") {
                    endpoint = endpoint.tls_config(tls())?;
                }
                let channel = endpoint.connect().await?;
                client = Some(MetricsServiceClient::new(channel));
            }
            let Some(c) = client.as_mut() else {
                return Ok(());
            };
            c.export(request).await?;
            anyhow::Ok(())
        };
        match sent.await {
            Ok(()) => failing = false,
            Err(e) => {
                client = None;
                if !failing {
                    warn!(endpoint = %cfg.endpoint, error = %e, "metrics not exported over OTLP; retrying every interval");
                }
                failing = true;
            }
        }
        if stop {
            return;
        }
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn text(key: &str, value: &str) -> common::KeyValue {
    common::KeyValue {
        key: key.to_string(),
        value: Some(common::AnyValue {
            value: Some(common::any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// The families as one OTLP request: counters as cumulative monotonic sums (named without
/// Prometheus's `_total`, which the collector adds back), gauges, and explicit-bucket
/// histograms.
pub fn to_otlp(
    cfg: &OtelConfig,
    families: &[FamilySnapshot],
    start: u64,
    now: u64,
) -> ExportMetricsServiceRequest {
    let metrics = families
        .iter()
        .map(|f| {
            let attrs = |labels: &[Arc<str>]| -> Vec<common::KeyValue> {
                f.label_names
                    .iter()
                    .zip(labels)
                    .map(|(k, v)| text(k, v))
                    .collect()
            };
            let number = |s: &stratus_metrics::Series, v: pm::number_data_point::Value| {
                pm::NumberDataPoint {
                    attributes: attrs(&s.labels),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    value: Some(v),
                    ..Default::default()
                }
            };
            let data = match f.kind {
                Kind::Counter => pm::metric::Data::Sum(pm::Sum {
                    data_points: f
                        .series
                        .iter()
                        .filter_map(|s| match s.value {
                            Value::Counter(n) => Some(number(
                                s,
                                pm::number_data_point::Value::AsInt(n.min(i64::MAX as u64) as i64),
                            )),
                            Value::CounterFloat(v) => {
                                Some(number(s, pm::number_data_point::Value::AsDouble(v)))
                            }
                            _ => None,
                        })
                        .collect(),
                    aggregation_temporality: pm::AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
                Kind::Gauge => pm::metric::Data::Gauge(pm::Gauge {
                    data_points: f
                        .series
                        .iter()
                        .filter_map(|s| match s.value {
                            Value::Gauge(v) => {
                                Some(number(s, pm::number_data_point::Value::AsDouble(v)))
                            }
                            _ => None,
                        })
                        .collect(),
                }),
                Kind::Histogram => pm::metric::Data::Histogram(pm::Histogram {
                    data_points: f
                        .series
                        .iter()
                        .filter_map(|s| match &s.value {
                            Value::Histogram {
                                bounds,
                                counts,
                                sum,
                            } => Some(pm::HistogramDataPoint {
                                attributes: attrs(&s.labels),
                                start_time_unix_nano: start,
                                time_unix_nano: now,
                                count: counts.iter().sum(),
                                sum: Some(*sum),
                                bucket_counts: counts.clone(),
                                explicit_bounds: bounds.to_vec(),
                                ..Default::default()
                            }),
                            _ => None,
                        })
                        .collect(),
                    aggregation_temporality: pm::AggregationTemporality::Cumulative as i32,
                }),
            };
            pm::Metric {
                name: f.name.strip_suffix("_total").unwrap_or(f.name).to_string(),
                description: f.help.to_string(),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![pm::ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", &cfg.service_name),
                    text("service.instance.id", &cfg.node.to_string()),
                    text("service.version", env!("CARGO_PKG_VERSION")),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![pm::ScopeMetrics {
                scope: Some(common::InstrumentationScope {
                    name: "stratus".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_become_otlp_metrics() {
        let r = Registry::default();
        r.counters("x_total", "X.", &["topic"]).get(&["t"]).add(5);
        r.histogram("lat_seconds", "L.", &[0.1, 1.0]).observe(0.5);
        r.gauge("g", "G.").set(2.5);
        let cfg = OtelConfig {
            endpoint: String::new(),
            service_name: "stratus".into(),
            ratio: 0.0,
            interval: Duration::from_secs(1),
            node: 3,
        };
        let req = to_otlp(&cfg, &r.gather(), 1, 2);
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["g", "lat_seconds", "x"]);
        let Some(pm::metric::Data::Sum(sum)) = &metrics[2].data else {
            panic!("a counter is a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.data_points[0].value,
            Some(pm::number_data_point::Value::AsInt(5))
        );
        assert_eq!(sum.data_points[0].attributes[0].key, "topic");
        let Some(pm::metric::Data::Histogram(h)) = &metrics[1].data else {
            panic!("a histogram")
        };
        assert_eq!(h.data_points[0].bucket_counts, vec![0, 1, 0]);
        assert_eq!(h.data_points[0].count, 1);
    }
}
