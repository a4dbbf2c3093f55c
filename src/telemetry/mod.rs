//! Telemetry: the metrics every part of the broker keeps, gathered into one registry and
//! served as Prometheus text on the HTTP endpoint (`http.listener`) next to the health
//! checks (`/livez`, `/readyz`).
//!
//! Components own their instruments (the object store, the block cache, the WAL, the
//! quotas) and the registry gathers them; what only the broker knows (requests,
//! bytes per topic, connections) lives in [`Telemetry`]; what is a state rather than an
//! event (partitions owned, consumer lag, process memory) is read at scrape time by the
//! collectors of [`collect`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use kafka_protocol::messages::ApiKey;
use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{global, Context, KeyValue};
use stratus_metrics::trace::{SpanGuard, TRACER};
use stratus_metrics::{Counter, Family, Gauge, Registry};

use crate::config::Settings;

pub mod collect;
mod errors;
pub mod health;
pub mod http;
mod meta;
pub mod otel;
mod process;
pub mod requests;
pub mod top;

pub use meta::InstrumentedMeta;

/// The broker's metrics.
pub struct Telemetry {
    /// Every family, for `/metrics` (and OTLP).
    pub registry: Arc<Registry>,
    /// Requests per API: counts, errors, latencies.
    pub requests: requests::RequestMetrics,
    /// Bytes and records in and out, per topic and for the broker.
    pub topics: TopicMetrics,
    /// Connections and authentication, per listener.
    pub connections: ConnectionMetrics,
    /// Whether the broker can serve (`/readyz`).
    pub health: health::Health,
    /// Where the HTTP endpoint listens, once bound.
    pub http_addr: OnceLock<SocketAddr>,
    /// Whether per-partition series are exported (`metrics.partition.series`).
    pub partition_series: bool,
    /// Whether requests are traced (an OTLP endpoint and a sampling ratio above 0).
    pub tracing: AtomicBool,
    /// The share of requests traced (the bits of an f64), when `tracing`.
    pub trace_ratio: std::sync::atomic::AtomicU64,
}

impl Telemetry {
    /// The metrics of a broker with these settings (the process collector included).
    pub fn new(settings: &Settings) -> Self {
        let registry = Arc::new(Registry::with_max_series(
            settings.telemetry.metrics_max_series,
        ));
        process::register(&registry);
        Telemetry {
            requests: requests::RequestMetrics::new(&registry),
            topics: TopicMetrics::new(&registry),
            connections: ConnectionMetrics::new(&registry),
            health: health::Health::new(&registry),
            http_addr: OnceLock::new(),
            partition_series: settings.telemetry.metrics_partition_series,
            tracing: AtomicBool::new(false),
            trace_ratio: std::sync::atomic::AtomicU64::new(0),
            registry,
        }
    }

    /// Starts tracing requests: a share `ratio` of them, picked here (the tracer provider
    /// then records every span it is given).
    pub fn trace(&self, ratio: f64) {
        self.trace_ratio
            .store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
        self.tracing.store(ratio > 0.0, Ordering::Relaxed);
    }

    /// The span of a request of API `api` read at `received` on `listener`, if tracing is
    /// on and this request is picked (empty otherwise: one atomic load when tracing is off,
    /// and a thread-local random draw for a request not picked).
    pub fn request_span(&self, api: i16, received: Instant, listener: &str) -> SpanGuard {
        if !self.tracing.load(Ordering::Relaxed) {
            return SpanGuard::default();
        }
        let ratio = f64::from_bits(self.trace_ratio.load(Ordering::Relaxed));
        if random_unit() >= ratio {
            return SpanGuard::default();
        }
        let Ok(key) = ApiKey::try_from(api) else {
            return SpanGuard::default();
        };
        let tracer = global::tracer(TRACER);
        let span = tracer
            .span_builder(requests::api_name(key))
            .with_kind(SpanKind::Server)
            .with_start_time(SystemTime::now() - received.elapsed())
            .with_attributes([KeyValue::new("listener", listener.to_string())])
            .start(&tracer);
        if !span.span_context().is_sampled() {
            return SpanGuard::default();
        }
        SpanGuard::from_context(Context::new().with_span(span))
    }
}

/// A random number in [0, 1) from a per-thread xorshift generator (seeded from the
/// standard library's random hash keys): the sampling draw, with no lock and no syscall.
fn random_unit() -> f64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::collections::hash_map::RandomState::new().build_hasher().finish() | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// Bytes and records in and out, per topic (Kafka's `BrokerTopicMetrics`) and for the
/// broker as a whole (what an autoscaler reads).
pub struct TopicMetrics {
    /// Bytes of record batches appended, per topic.
    pub bytes_in: Arc<Family<Counter>>,
    /// Records appended, per topic.
    pub messages_in: Arc<Family<Counter>>,
    /// Bytes of record batches sent to consumers, per topic.
    pub bytes_out: Arc<Family<Counter>>,
    /// Records in the batches sent to consumers, per topic.
    pub messages_out: Arc<Family<Counter>>,
    /// Bytes appended, every topic.
    pub broker_bytes_in: Arc<Counter>,
    /// Bytes sent to consumers, every topic.
    pub broker_bytes_out: Arc<Counter>,
    /// Records appended, every topic.
    pub broker_messages_in: Arc<Counter>,
}

impl TopicMetrics {
    fn new(r: &Registry) -> Self {
        TopicMetrics {
            bytes_in: r.counters(
                "stratus_topic_bytes_in_total",
                "Bytes of record batches produced to a topic (Kafka's BytesInPerSec).",
                &["topic"],
            ),
            messages_in: r.counters(
                "stratus_topic_messages_in_total",
                "Records produced to a topic (Kafka's MessagesInPerSec).",
                &["topic"],
            ),
            bytes_out: r.counters(
                "stratus_topic_bytes_out_total",
                "Bytes of record batches fetched from a topic (Kafka's BytesOutPerSec).",
                &["topic"],
            ),
            messages_out: r.counters(
                "stratus_topic_messages_out_total",
                "Records in the batches fetched from a topic.",
                &["topic"],
            ),
            broker_bytes_in: r.counter(
                "stratus_broker_bytes_in_total",
                "Bytes of record batches produced to this broker.",
            ),
            broker_bytes_out: r.counter(
                "stratus_broker_bytes_out_total",
                "Bytes of record batches fetched from this broker.",
            ),
            broker_messages_in: r.counter(
                "stratus_broker_messages_in_total",
                "Records produced to this broker.",
            ),
        }
    }

    /// Counts batches appended to a topic.
    pub fn produced(&self, topic: &str, bytes: u64, records: u64) {
        self.bytes_in.get(&[topic]).add(bytes);
        self.messages_in.get(&[topic]).add(records);
        self.broker_bytes_in.add(bytes);
        self.broker_messages_in.add(records);
    }

    /// Counts batches sent from a topic.
    pub fn fetched(&self, topic: &str, bytes: u64, records: u64) {
        self.bytes_out.get(&[topic]).add(bytes);
        self.messages_out.get(&[topic]).add(records);
        self.broker_bytes_out.add(bytes);
    }

    /// Forgets the series of topics that no longer exist.
    pub fn retain(&self, exists: impl Fn(&str) -> bool) {
        for f in [
            &self.bytes_in,
            &self.messages_in,
            &self.bytes_out,
            &self.messages_out,
        ] {
            f.retain(|labels| labels.first().is_none_or(|t| exists(t)));
        }
    }
}

/// Connections and authentications, per listener (Kafka's `socket-server-metrics`).
pub struct ConnectionMetrics {
    /// Open connections, per listener and security protocol.
    pub open: Arc<Family<Gauge>>,
    /// Connections accepted, per listener.
    pub created: Arc<Family<Counter>>,
    /// Failed authentications, per listener.
    pub failed_authentication: Arc<Family<Counter>>,
    /// Successful authentications (SASL), per listener.
    pub successful_authentication: Arc<Family<Counter>>,
    /// Record bytes of fetch responses sent from segment files by `sendfile`.
    pub sendfile_bytes: Arc<Counter>,
}

impl ConnectionMetrics {
    fn new(r: &Registry) -> Self {
        ConnectionMetrics {
            open: r.gauges(
                "stratus_connections",
                "Open client connections (Kafka's connection-count).",
                &["listener", "security_protocol"],
            ),
            created: r.counters(
                "stratus_connections_created_total",
                "Client connections accepted (Kafka's connection-creation-total).",
                &["listener"],
            ),
            failed_authentication: r.counters(
                "stratus_failed_authentication_total",
                "Failed authentications: TLS handshakes, SASL logins and client certificates refused (Kafka's failed-authentication-total).",
                &["listener"],
            ),
            successful_authentication: r.counters(
                "stratus_successful_authentication_total",
                "SASL authentications that succeeded (Kafka's successful-authentication-total).",
                &["listener"],
            ),
            sendfile_bytes: r
                .counters(
                    "stratus_fetch_sendfile_bytes_total",
                    "Record bytes of fetch responses sent from local segment files by sendfile, not through memory (plaintext listeners on a local store).",
                    &[],
                )
                .get(&[]),
        }
    }
}

/// Counts the records of the batches in `data` (v2 batches: a base offset, a length, and
/// the last offset delta at byte 23); stops at a partial batch.
pub fn records_in(data: &[u8]) -> u64 {
    let mut n = 0u64;
    let mut pos = 0usize;
    while let Some(header) = data.get(pos..pos + 27) {
        let len = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let Ok(len) = usize::try_from(len) else { break };
        // A v2 batch header is 49 bytes after its length field.
        if len < 49 || data.len() < pos + 12 + len {
            break;
        }
        let delta = i32::from_be_bytes([header[23], header[24], header[25], header[26]]);
        n += u64::try_from(delta).map_or(0, |d| d + 1);
        pos += 12 + len;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampling_draw_picks_its_share() {
        let n = 200_000;
        let picked = (0..n).filter(|_| random_unit() < 0.01).count();
        assert!((1_600..2_400).contains(&picked), "{picked} of {n} at 1 %");
        assert!((0..1000)
            .map(|_| random_unit())
            .all(|x| (0.0..1.0).contains(&x)));
    }

    #[test]
    fn records_are_counted_in_whole_batches() {
        // Two v2 batch headers: base offset, length, epoch, magic, crc, attributes,
        // last offset delta (4 records, then 1), and a partial third.
        let mut data = Vec::new();
        for delta in [3i32, 0] {
            let mut b = vec![0u8; 61];
            b[8..12].copy_from_slice(&49i32.to_be_bytes());
            b[23..27].copy_from_slice(&delta.to_be_bytes());
            data.extend_from_slice(&b);
        }
        let mut partial = vec![0u8; 30];
        partial[8..12].copy_from_slice(&1000i32.to_be_bytes());
        data.extend_from_slice(&partial);
        assert_eq!(records_in(&data), 5);
        assert_eq!(records_in(&[0u8; 40]), 0, "a zero length is not a batch");
    }
}
