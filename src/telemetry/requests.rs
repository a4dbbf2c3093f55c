//! Request metrics as Kafka splits them (`kafka.network:type=RequestMetrics`): how many,
//! which errors, and where the time went: waiting for its turn on the connection (queue),
//! being worked on (local), waiting on the WAL, the object store or a long poll
//! (remote), throttled, and writing the response (send).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, ResponseKind};
use kafka_protocol::ResponseError;
use stratus_metrics::trace::SpanGuard;
use stratus_metrics::{Counter, Family, Histogram, Registry, LATENCY_SECONDS};

use crate::handlers::SUPPORTED;

/// The instruments of one API, looked up once.
struct Api {
    requests: Arc<Counter>,
    queue: Arc<Histogram>,
    local: Arc<Histogram>,
    remote: Arc<Histogram>,
    send: Arc<Histogram>,
    total: Arc<Histogram>,
}

/// Requests per API, their errors and latencies. An API's series appear with its first
/// request.
pub struct RequestMetrics {
    requests: Arc<Family<Counter>>,
    errors: Arc<Family<Counter>>,
    queue: Arc<Family<Histogram>>,
    local: Arc<Family<Histogram>>,
    remote: Arc<Family<Histogram>>,
    send: Arc<Family<Histogram>>,
    total: Arc<Family<Histogram>>,
    by_key: Vec<OnceLock<Api>>,
}

impl RequestMetrics {
    /// Registers the request families.
    pub fn new(registry: &Registry) -> Self {
        let requests = registry.counters(
            "stratus_requests_total",
            "Requests answered (or dropped, for acks=0), by API.",
            &["request"],
        );
        let errors = registry.counters(
            "stratus_request_errors_total",
            "Error codes in responses, by API and error (NONE included), as Kafka's ErrorsPerSec counts them.",
            &["request", "error"],
        );
        let hist = |name, help| registry.histograms(name, help, &["request"], LATENCY_SECONDS);
        let queue = hist(
            "stratus_request_queue_time_seconds",
            "Time a request waited for its turn on its connection before being worked on.",
        );
        let local = hist(
            "stratus_request_local_time_seconds",
            "Time a request was worked on by this broker (decoding, validation, appending, encoding).",
        );
        let remote = hist(
            "stratus_request_remote_time_seconds",
            "Time a request waited on others: WAL durability, the object store, the metadata store, a fetch's long poll, a throttle.",
        );
        let send = hist(
            "stratus_response_send_time_seconds",
            "Time to write a response to the client.",
        );
        let total = hist(
            "stratus_request_total_time_seconds",
            "Time from a request read to its response written.",
        );
        let max = SUPPORTED
            .iter()
            .map(|(k, _, _)| *k as i16)
            .max()
            .unwrap_or(0);
        RequestMetrics {
            requests,
            errors,
            queue,
            local,
            remote,
            send,
            total,
            by_key: (0..=max).map(|_| OnceLock::new()).collect(),
        }
    }

    fn api(&self, key: i16) -> Option<&Api> {
        let cell = self.by_key.get(usize::try_from(key).ok()?)?;
        let api = ApiKey::try_from(key).ok()?;
        Some(cell.get_or_init(|| {
            let name = api_name(api);
            Api {
                requests: self.requests.get(&[name]),
                queue: self.queue.get(&[name]),
                local: self.local.get(&[name]),
                remote: self.remote.get(&[name]),
                send: self.send.get(&[name]),
                total: self.total.get(&[name]),
            }
        }))
    }

    /// Counts the error codes of a response: one lookup per distinct code, not per
    /// partition (a response of many partitions mostly carries one code).
    pub fn count_errors(&self, api: ApiKey, resp: &ResponseKind) {
        let name = api_name(api);
        let mut counts: Vec<(i16, u64)> = Vec::new();
        super::errors::each_code(
            resp,
            &mut |code| match counts.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => *n += 1,
                None => counts.push((code, 1)),
            },
        );
        for (code, n) in counts {
            self.errors.get(&[name, error_name(code)]).add(n);
        }
    }

    /// Records a request answered: its timing, and the time its response took to write.
    pub fn finished(&self, t: &Timing, send: Duration) {
        let Some(api) = self.api(t.api) else { return };
        let done = t.done.unwrap_or_else(Instant::now);
        let started = t.first_poll.unwrap_or(done);
        let queue = started.saturating_duration_since(t.dispatched);
        let local = t.local;
        let working = done.saturating_duration_since(t.received);
        let remote = working.saturating_sub(queue).saturating_sub(local);
        api.requests.inc();
        api.queue.observe_duration(queue);
        api.local.observe_duration(local);
        api.remote.observe_duration(remote);
        api.send.observe_duration(send);
        api.total.observe_duration(working + send);
    }
}

/// Kafka's name of an API (`Produce`, `FindCoordinator`…), as its metrics label it.
pub fn api_name(key: ApiKey) -> &'static str {
    static NAMES: OnceLock<Vec<(ApiKey, &'static str)>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        SUPPORTED
            .iter()
            .map(|(k, _, _)| {
                let name: &'static str = Box::leak(format!("{k:?}").into_boxed_str());
                (*k, name)
            })
            .collect()
    });
    names
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("Unknown", |(_, n)| n)
}

/// Kafka's name of an error code (`NONE`, `UNKNOWN_TOPIC_OR_PARTITION`…).
pub fn error_name(code: i16) -> &'static str {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (-1..=200i16)
            .map(|c| {
                let name = match ResponseError::try_from_code(c) {
                    Some(e) => screaming_snake(&format!("{e:?}")),
                    None if c == 0 => "NONE".to_string(),
                    None => format!("ERROR_{c}"),
                };
                &*Box::leak(name.into_boxed_str())
            })
            .collect()
    });
    usize::try_from(i32::from(code) + 1)
        .ok()
        .and_then(|i| names.get(i))
        .copied()
        .unwrap_or("UNKNOWN_SERVER_ERROR")
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// When a request was read, when it was handed on, the time spent on it, and when its
/// response was ready; and its span, which ends when the timing is dropped (once the
/// response is written).
pub struct Timing {
    api: i16,
    received: Instant,
    dispatched: Instant,
    first_poll: Option<Instant>,
    local: Duration,
    done: Option<Instant>,
    _span: SpanGuard,
}

impl Timing {
    /// A request of API `api` read at `received`, decoded (and for a Produce appended)
    /// by `dispatched`.
    pub fn new(api: i16, received: Instant, dispatched: Instant, span: SpanGuard) -> Self {
        Timing {
            api,
            received,
            dispatched,
            first_poll: None,
            local: dispatched.saturating_duration_since(received),
            done: None,
            _span: span,
        }
    }
}

/// A response future that keeps its request's [`Timing`].
pub struct Measured<F> {
    inner: F,
    timing: Option<Timing>,
}

impl<F> Measured<F> {
    /// Measures `inner`.
    pub fn new(inner: F, timing: Timing) -> Self {
        Measured {
            inner,
            timing: Some(timing),
        }
    }
}

impl<T, F: Future<Output = Option<T>> + Unpin> Future for Measured<F> {
    type Output = (Option<T>, Option<Timing>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let start = Instant::now();
        let r = Pin::new(&mut self.inner).poll(cx);
        let end = Instant::now();
        if let Some(t) = self.timing.as_mut() {
            t.first_poll.get_or_insert(start);
            t.local += end - start;
            if r.is_ready() {
                t.done = Some(end);
            }
        }
        match r {
            Poll::Ready(out) => Poll::Ready((out, self.timing.take())),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kafkas() {
        assert_eq!(api_name(ApiKey::Produce), "Produce");
        assert_eq!(
            api_name(ApiKey::ConsumerGroupHeartbeat),
            "ConsumerGroupHeartbeat"
        );
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(29), "TOPIC_AUTHORIZATION_FAILED");
        assert_eq!(error_name(i16::MAX), "UNKNOWN_SERVER_ERROR");
    }
}
