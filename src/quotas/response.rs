//! Charging one request against its client's quotas once its response is ready, and
//! throttling it as Kafka does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, ResponseKind};
use kafka_protocol::protocol::Encodable;

use super::{QuotaType, Quotas, Throttle};

/// What one request is charged to: the client, and its connection's throttle.
pub struct Charge {
    /// The broker's quotas.
    pub quotas: Arc<Quotas>,
    /// The principal's name (`ANONYMOUS` when not authenticated).
    pub user: String,
    /// The request's client id.
    pub client_id: String,
    /// The connection's throttle.
    pub throttle: Arc<Throttle>,
}

impl Charge {
    /// Records the bytes of a Produce request as it arrives, and mutes the connection at
    /// once if that puts the client over its quota: the requests a client has pipelined
    /// behind it wait, as they would behind Kafka's one-request-at-a-time channel.
    /// Returns when the throttle ends: the response tells the client what is left of it
    /// then, so that the time spent on the request is not added to the throttle.
    pub fn produce(&self, request_bytes: usize) -> Option<Instant> {
        let t = self.quotas.record(
            QuotaType::Produce,
            &self.user,
            &self.client_id,
            request_bytes as f64,
        );
        (t > 0).then(|| {
            self.throttle.mute(t.min(i32::MAX as u64));
            Instant::now() + Duration::from_millis(t)
        })
    }

    /// Records the request (the size of its response, the time spent on it) and, if the
    /// client is over a quota (or was when its Produce arrived, until `throttled_until`), sets the response's throttle time, mutes the
    /// connection for that long, and for a client that does not throttle itself delays
    /// the response by it. `aside`: bytes of a fetch response's record data kept out of it
    /// until it is encoded (they count towards its size).
    pub async fn settle(
        &self,
        api: ApiKey,
        version: i16,
        throttled_until: Option<Instant>,
        mut resp: Option<ResponseKind>,
        aside: usize,
        busy: Duration,
    ) -> Option<ResponseKind> {
        let (q, u, c) = (&self.quotas, self.user.as_str(), self.client_id.as_str());
        let mut throttle = throttled_until.map_or(0, |t| {
            t.saturating_duration_since(Instant::now()).as_millis() as u64
        });
        if api != ApiKey::ApiVersions {
            // request_percentage: percent of one thread's time, per second.
            let percent = busy.as_nanos() as f64 * 100.0 / 1e9;
            throttle = throttle.max(q.record(QuotaType::Request, u, c, percent));
        }
        if let Some(ResponseKind::Fetch(f)) = &mut resp {
            let size = (f.compute_size(version).unwrap_or(0) + aside) as f64;
            throttle = throttle.max(q.record(QuotaType::Fetch, u, c, size));
            if throttle > 0 {
                // As Kafka: a throttled fetch carries nothing, and is not counted.
                q.unrecord(QuotaType::Fetch, u, c, size);
                f.responses.clear();
            }
        }
        if throttle == 0 {
            return resp;
        }
        let ms = throttle.min(i32::MAX as u64);
        if let Some(r) = &mut resp {
            set_throttle_time(r, ms as i32);
        }
        self.throttle.mute(ms);
        if !client_throttles(api, version) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        resp
    }
}

/// Whether a client sending `api` at `version` waits out a throttle time by itself
/// (KIP-219); older ones get their response late instead. Kafka's table.
fn client_throttles(api: ApiKey, version: i16) -> bool {
    use ApiKey::*;
    let since = match api {
        Produce => 6,
        Fetch => 8,
        ListOffsets => 3,
        Metadata => 6,
        OffsetCommit | OffsetFetch => 4,
        FindCoordinator | Heartbeat | LeaveGroup | SyncGroup | DescribeGroups | ListGroups
        | ApiVersions | DeleteTopics | DescribeConfigs => 2,
        JoinGroup | CreateTopics => 3,
        DeleteRecords | InitProducerId | CreateAcls | DescribeAcls | DeleteAcls | AlterConfigs
        | DescribeLogDirs | CreatePartitions | DeleteGroups => 1,
        IncrementalAlterConfigs
        | OffsetDelete
        | DescribeUserScramCredentials
        | AlterUserScramCredentials => 0,
        _ => return false,
    };
    version >= since
}

/// Sets the throttle time of a response (versions without the field ignore it).
fn set_throttle_time(resp: &mut ResponseKind, ms: i32) {
    macro_rules! set {
        ($($kind:ident),*) => {
            match resp {
                $(ResponseKind::$kind(r) => r.throttle_time_ms = ms,)*
                _ => {}
            }
        };
    }
    set!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeConfigs,
        AlterConfigs,
        DescribeLogDirs,
        CreatePartitions,
        DeleteGroups,
        IncrementalAlterConfigs,
        OffsetDelete,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeCluster,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe
    );
}

/// A future that adds up the time spent polling it: the time a request keeps a thread
/// busy, without the time it waits (for durability, for a long poll).
pub struct Timed<F> {
    inner: F,
    busy: Duration,
}

impl<F> Timed<F> {
    /// Times `inner`, starting from `busy` already spent.
    pub fn new(inner: F, busy: Duration) -> Self {
        Timed { inner, busy }
    }
}

impl<F: Future + Unpin> Future for Timed<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let start = Instant::now();
        let r = Pin::new(&mut self.inner).poll(cx);
        self.busy += start.elapsed();
        r.map(|out| (out, self.busy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{FetchResponse, ProduceResponse};

    #[test]
    fn the_throttle_time_is_set_where_the_response_has_one() {
        let mut r = ResponseKind::Produce(ProduceResponse::default());
        set_throttle_time(&mut r, 250);
        let ResponseKind::Produce(p) = r else {
            unreachable!()
        };
        assert_eq!(p.throttle_time_ms, 250);
        let mut f = ResponseKind::Fetch(FetchResponse::default());
        set_throttle_time(&mut f, 7);
        assert!(matches!(f, ResponseKind::Fetch(x) if x.throttle_time_ms == 7));
    }

    #[test]
    fn old_clients_get_late_responses() {
        assert!(!client_throttles(ApiKey::Produce, 5));
        assert!(client_throttles(ApiKey::Produce, 6));
        assert!(client_throttles(ApiKey::Fetch, 17));
        assert!(!client_throttles(ApiKey::DescribeClientQuotas, 1));
    }
}
