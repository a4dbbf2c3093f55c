//! Wire-level tests against an in-process broker: every advertised version answers, and
//! bad input gets Kafka's answer (or a closed connection) without hurting the broker, on a
//! PLAINTEXT listener and on an SSL one alike.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test

mod common;

use bytes::{BufMut, BytesMut};
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn api_versions<S>(s: &mut S, version: i16) -> ApiVersionsResponse
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + ?Sized,
{
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("t"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    call(s, ApiKey::ApiVersions, version, &req).await
}

#[tokio::test]
async fn every_advertised_version_answers() {
    let b = start(&[]).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    for v in 0..=4 {
        let r = api_versions(&mut s, v).await;
        assert_eq!(r.error_code, 0);
        assert!(r.api_keys.iter().any(|k| k.api_key == ApiKey::Fetch as i16));
    }
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("vt")))
            .with_num_partitions(2)
            .with_replication_factor(3)]);
    let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 7, &create).await;
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[0].num_partitions, 2);
    for v in 0..=12 {
        let mut req = MetadataRequest::default();
        if v >= 1 {
            req.topics = Some(vec![metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("vt"))))]);
        }
        let r: MetadataResponse = call(&mut s, ApiKey::Metadata, v, &req).await;
        let t = r
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "vt"))
            .unwrap();
        assert_eq!((t.error_code, t.partitions.len()), (0, 2), "metadata v{v}");
    }
    let md: MetadataResponse = call(
        &mut s,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )
    .await;
    let topic_id = md.topics[0].topic_id;
    assert!(!topic_id.is_nil());
    let mut offset = 0;
    for v in 3..=13 {
        let (code, base) = {
            let mut req = produce_req("vt", batch(&["a", "b"], 2));
            if v >= 13 {
                req.topic_data[0].name = TopicName::default();
                req.topic_data[0].topic_id = topic_id;
            }
            let resp: ProduceResponse = call(&mut s, ApiKey::Produce, v, &req).await;
            let p = &resp.responses[0].partition_responses[0];
            (p.error_code, p.base_offset)
        };
        assert_eq!((code, base), (0, offset), "produce v{v}");
        offset += 2;
    }
    for v in 4..=17 {
        let mut req = FetchRequest::default()
            .with_max_wait_ms(10)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("vt")))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(3)
                    .with_partition_max_bytes(1 << 20)])]);
        if v >= 13 {
            req.topics[0].topic = TopicName::default();
            req.topics[0].topic_id = topic_id;
        }
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &req).await;
        let p = &r.responses[0].partitions[0];
        assert_eq!((p.error_code, p.high_watermark), (0, offset), "fetch v{v}");
        let mut records = p.records.clone().unwrap();
        let sets = RecordBatchDecoder::decode_all(&mut records).unwrap();
        let offsets: Vec<i64> = sets
            .iter()
            .flat_map(|s| s.records.iter().map(|r| r.offset))
            .collect();
        assert!(
            offsets[0] <= 3,
            "fetch v{v} starts at the batch holding offset 3"
        );
        assert_eq!(
            offsets.last(),
            Some(&(offset - 1)),
            "fetch v{v} reads to the end"
        );
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1));
    }
    for v in 1..=9 {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("vt")))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ])]);
        let r: ListOffsetsResponse = call(&mut s, ApiKey::ListOffsets, v, &req).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.offset), (0, offset), "list offsets v{v}");
    }
}

#[tokio::test]
async fn unknown_api_versions_version_gets_v0_error() {
    let b = start(&[]).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let mut f = BytesMut::new();
    f.put_i16(ApiKey::ApiVersions as i16);
    f.put_i16(99);
    f.put_i32(5);
    f.put_i16(-1);
    let mut resp = send_raw(&mut s, &f)
        .await
        .expect("an answer, not a closed connection");
    let h = ResponseHeader::decode(&mut resp, 0).unwrap();
    assert_eq!(h.correlation_id, 5);
    let r = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(r.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 4));
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    bad_frames(&start(&[("socket.request.max.bytes", "1000")]).await).await;
}

#[tokio::test]
async fn bad_frames_close_only_their_connection_on_a_tls_listener() {
    bad_frames(&start_tls(&[("socket.request.max.bytes", "1000")]).await).await;
}

async fn bad_frames(b: &TestBroker) {
    // Oversize: refused from the length prefix alone.
    let mut s = b.connect().await;
    s.write_all(&100_000u32.to_be_bytes()).await.unwrap();
    assert!(
        read_frame(&mut s).await.is_none(),
        "oversize frame closes the connection"
    );
    // Undecodable body.
    let mut s = b.connect().await;
    assert!(
        send_raw(&mut s, &[0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0x7f])
            .await
            .is_none()
    );
    // Unknown API key.
    let mut s = b.connect().await;
    assert!(send_raw(&mut s, &[0x7f, 0, 0, 0, 0, 0, 0, 1])
        .await
        .is_none());
    // A frame cut short by the client going away.
    let mut s = b.connect().await;
    s.write_all(&500u32.to_be_bytes()).await.unwrap();
    s.write_all(&[0, 3, 0, 9]).await.unwrap();
    drop(s);
    // Random frames, each on its own connection: answered or closed, never a crash.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..40 {
        let len = (next() % 200) as usize + 8;
        let mut frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        frame[0] = 0;
        frame[1] = (next() % 70) as u8;
        let mut s = b.connect().await;
        let _ = send_raw(&mut s, &frame).await;
    }
    // The broker still serves.
    let mut s = b.connect().await;
    let r: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        0,
        &ApiVersionsRequest::default(),
    )
    .await;
    assert_eq!(r.error_code, 0);
    b.assert_alive();
}

#[tokio::test]
async fn bad_batches_get_kafka_errors() {
    bad_batches(
        &start(&[
            ("auto.create.topics.enable", "false"),
            ("message.max.bytes", "200"),
        ])
        .await,
    )
    .await;
}

#[tokio::test]
async fn bad_batches_get_kafka_errors_on_a_tls_listener() {
    let b = start_tls(&[
        ("auto.create.topics.enable", "false"),
        ("message.max.bytes", "200"),
    ])
    .await;
    bad_batches(&b).await;
}

async fn bad_batches(b: &TestBroker) {
    let mut s = b.connect().await;
    let create = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("bad")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let _: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 4, &create).await;
    let good = batch(&["x"], 2);
    let mut corrupt = BytesMut::from(&good[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert_eq!(
        produce_code(&mut s, "bad", corrupt.freeze()).await.0,
        2,
        "CORRUPT_MESSAGE"
    );
    let mut v1 = BytesMut::from(&good[..]);
    v1[16] = 1;
    assert_eq!(
        produce_code(&mut s, "bad", v1.freeze()).await.0,
        43,
        "UNSUPPORTED_FOR_MESSAGE_FORMAT"
    );
    let big = "y".repeat(300);
    assert_eq!(
        produce_code(&mut s, "bad", batch(&[&big], 2)).await.0,
        10,
        "MESSAGE_TOO_LARGE"
    );
    assert_eq!(
        produce_code(&mut s, "nope", good.clone()).await.0,
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        produce_code(&mut s, "bad", good.slice(..good.len() - 3))
            .await
            .0,
        2,
        "truncated batch"
    );
    assert_eq!(
        produce_code(&mut s, "bad", good).await,
        (0, 0),
        "nothing bad was written"
    );
}

/// A default request of `api` (an empty or minimal one: the broker answers with data or
/// with an error code, never with a closed connection).
fn minimal_request(api: ApiKey) -> RequestKind {
    macro_rules! kinds {
        ($($k:ident),* $(,)?) => {
            match api {
                $(ApiKey::$k => RequestKind::$k(Default::default()),)*
                other => panic!("the broker advertises {other:?}; add it to this test"),
            }
        };
    }
    match api {
        // acks=0 gets no response at all; -1 is what clients send.
        ApiKey::Produce => RequestKind::Produce(ProduceRequest::default().with_acks(-1)),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_bytes(1 << 20),
        ),
        _ => kinds!(
            ListOffsets,
            Metadata,
            ApiVersions,
            CreateTopics,
            DeleteTopics,
            DeleteRecords,
            InitProducerId,
            OffsetForLeaderEpoch,
            DescribeConfigs,
            AlterConfigs,
            CreatePartitions,
            IncrementalAlterConfigs,
            DescribeCluster,
            DescribeLogDirs,
            FindCoordinator,
            JoinGroup,
            SyncGroup,
            Heartbeat,
            LeaveGroup,
            OffsetCommit,
            OffsetFetch,
            ListGroups,
            DescribeGroups,
            DeleteGroups,
            OffsetDelete,
            ConsumerGroupHeartbeat,
            ConsumerGroupDescribe,
            SaslHandshake,
            SaslAuthenticate,
            DescribeUserScramCredentials,
            AlterUserScramCredentials,
            DescribeClientQuotas,
            AlterClientQuotas,
            CreateAcls,
            DescribeAcls,
            DeleteAcls,
        ),
    }
}

/// Every API the broker advertises, at every version in its advertised range, answers a
/// request on the same connection with a response that decodes at that version.
#[tokio::test]
async fn every_advertised_api_answers_at_every_version() {
    every_api_at_every_version(&start(&[]).await).await;
}

#[tokio::test]
async fn every_advertised_api_answers_at_every_version_on_a_tls_listener() {
    every_api_at_every_version(&start_tls(&[]).await).await;
}

async fn every_api_at_every_version(b: &TestBroker) {
    use kafka_protocol::protocol::Encodable;
    let mut s = b.connect().await;
    let advertised = api_versions(&mut s, 3).await;
    assert!(advertised.api_keys.len() >= 20, "{:?}", advertised.api_keys);
    let mut answered = 0;
    for k in &advertised.api_keys {
        let api = ApiKey::try_from(k.api_key).expect("a known API key");
        assert!(k.min_version <= k.max_version, "{api:?}");
        for version in k.min_version..=k.max_version {
            let correlation_id = 1000 + answered;
            let mut frame = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(k.api_key)
                .with_request_api_version(version)
                .with_correlation_id(correlation_id)
                .with_client_id(Some(StrBytes::from_static_str("every-version")))
                .encode(&mut frame, api.request_header_version(version))
                .unwrap();
            minimal_request(api).encode(&mut frame, version).unwrap();
            let mut resp = send_raw(&mut s, &frame)
                .await
                .unwrap_or_else(|| panic!("{api:?} v{version}: the connection closed"));
            let h = ResponseHeader::decode(&mut resp, api.response_header_version(version))
                .unwrap_or_else(|e| panic!("{api:?} v{version}: header: {e}"));
            assert_eq!(h.correlation_id, correlation_id, "{api:?} v{version}");
            ResponseKind::decode(api, &mut resp, version)
                .unwrap_or_else(|e| panic!("{api:?} v{version}: body: {e}"));
            assert!(
                resp.is_empty(),
                "{api:?} v{version}: {} bytes after the response",
                resp.len()
            );
            answered += 1;
        }
    }
    println!(
        "{answered} API versions answered over {} APIs",
        advertised.api_keys.len()
    );
}

/// A fetch of the session's `(topic, offset)` partitions, or of none (incremental).
fn session_fetch(id: i32, epoch: i32, parts: &[(&str, i64)], wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(id)
        .with_session_epoch(epoch)
        .with_replica_id(BrokerId(-1))
        .with_topics(
            parts
                .iter()
                .map(|(t, o)| {
                    fetch_request::FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(vec![fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(*o)
                            .with_partition_max_bytes(1 << 20)])
                })
                .collect(),
        )
}

/// The topics a fetch response carries, with the high watermark and record bytes of each.
fn carried(r: &FetchResponse) -> Vec<(String, i64, usize)> {
    r.responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let n = p.records.as_ref().map_or(0, |r| r.len());
                (t.topic.0.to_string(), p.high_watermark, n)
            })
        })
        .collect()
}

#[tokio::test]
async fn fetch_sessions_send_only_what_changed_and_check_their_epochs() {
    let b = start(&[]).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    create_topic(&mut s, "busy", 1).await;
    create_topic(&mut s, "idle", 1).await;
    let full: FetchResponse = call(
        &mut s,
        ApiKey::Fetch,
        12,
        &session_fetch(0, 0, &[("busy", 0), ("idle", 0)], 10),
    )
    .await;
    let id = full.session_id;
    assert!(id > 0, "a session is opened");
    assert_eq!(
        carried(&full).len(),
        2,
        "a full fetch tells every partition"
    );

    assert_eq!(produce_code(&mut s, "busy", batch(&["x"], 2)).await, (0, 0));
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &session_fetch(id, 1, &[], 2000)).await;
    assert_eq!(r.session_id, id);
    let got = carried(&r);
    assert_eq!(got.len(), 1, "only the partition with news: {got:?}");
    assert_eq!((got[0].0.as_str(), got[0].1), ("busy", 1));
    assert!(got[0].2 > 0, "with its record");

    // The client moved its offset; nothing new anywhere: an empty answer after the wait.
    let r: FetchResponse = call(
        &mut s,
        ApiKey::Fetch,
        12,
        &session_fetch(id, 2, &[("busy", 1)], 100),
    )
    .await;
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert!(r.responses.is_empty(), "{:?}", carried(&r));

    let again: FetchResponse =
        call(&mut s, ApiKey::Fetch, 12, &session_fetch(id, 2, &[], 10)).await;
    assert_eq!(again.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
    let unknown: FetchResponse = call(
        &mut s,
        ApiKey::Fetch,
        12,
        &session_fetch(id ^ 1, 1, &[], 10),
    )
    .await;
    assert_eq!(unknown.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");

    // Epoch -1 closes the session (and fetches without one).
    let closed: FetchResponse = call(
        &mut s,
        ApiKey::Fetch,
        12,
        &session_fetch(id, -1, &[("busy", 0)], 10),
    )
    .await;
    assert_eq!((closed.error_code, closed.session_id), (0, 0));
    assert_eq!(carried(&closed)[0].1, 1);
    let gone: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &session_fetch(id, 3, &[], 10)).await;
    assert_eq!(gone.error_code, 70);
}

/// A fetch's partitions are read at once, yet the response keeps Kafka's order of limits:
/// partitions are filled one after another within the request's `max_bytes` (whole
/// batches, at least one for a partition that gets any budget), and those after the budget
/// is spent get no records, whatever their own reads found first.
#[tokio::test]
async fn a_fetch_of_many_partitions_fills_them_in_order_within_its_max_bytes() {
    let b = start(&[]).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let value = "v".repeat(10_000);
    let topics: Vec<String> = (0..6).map(|i| format!("many{i}")).collect();
    for t in &topics {
        create_topic(&mut s, t, 1).await;
        for i in 0..3 {
            assert_eq!(produce_code(&mut s, t, batch(&[&value], 2)).await, (0, i));
        }
    }
    let fetch = |max_bytes: i32| {
        let parts: Vec<(&str, i64)> = topics.iter().map(|t| (t.as_str(), 0)).collect();
        // Epoch -1: no session.
        session_fetch(0, -1, &parts, 0).with_max_bytes(max_bytes)
    };
    let all: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch(1 << 20)).await;
    let sizes: Vec<usize> = carried(&all).iter().map(|c| c.2).collect();
    assert_eq!(sizes.len(), 6);
    assert!(
        sizes.iter().all(|n| *n == sizes[0] && n % 3 == 0),
        "{sizes:?}"
    );
    let one = sizes[0] / 3;
    // 2.5 batches: two for the first partition, then one (at least one batch) for the
    // second with the half left, then nothing.
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch((one * 5 / 2) as i32)).await;
    let got: Vec<(String, i64, usize)> = carried(&r);
    let sizes: Vec<usize> = got.iter().map(|c| c.2).collect();
    assert_eq!(sizes, vec![2 * one, one, 0, 0, 0, 0], "{got:?}");
    assert!(
        got.iter().all(|c| c.1 == 3),
        "every high watermark: {got:?}"
    );
    for p in r.responses.iter().flat_map(|t| &t.partitions) {
        assert_eq!(p.error_code, 0);
    }
}
