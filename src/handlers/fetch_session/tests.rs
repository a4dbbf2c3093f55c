//! The session cache alone: epochs, updates, forgotten partitions, what a response keeps,
//! rotation and eviction.
// Test-only: the parent declares this file with #[cfg(test)].

use super::*;
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::ForgottenTopic;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};

const V: i16 = 12;

fn part(p: i32, offset: i64) -> FetchPartition {
    FetchPartition::default()
        .with_partition(p)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20)
}

fn request(id: i32, epoch: i32, parts: &[(i32, i64)]) -> FetchRequest {
    let mut r = FetchRequest::default()
        .with_session_id(id)
        .with_session_epoch(epoch);
    if !parts.is_empty() {
        r.topics = vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(parts.iter().map(|(p, o)| part(*p, *o)).collect())];
    }
    r
}

fn response(parts: &[(i32, i64, bool)]) -> FetchResponse {
    FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(
            parts
                .iter()
                .map(|(p, hw, records)| {
                    PartitionData::default()
                        .with_partition_index(*p)
                        .with_high_watermark(*hw)
                        .with_last_stable_offset(*hw)
                        .with_records(Some(if *records {
                            Bytes::from_static(b"data")
                        } else {
                            Bytes::new()
                        }))
                })
                .collect(),
        )])
}

/// The partitions and fetch offsets an incremental context asks for, in order.
fn asked(c: &Context) -> Vec<(i32, i64)> {
    match c {
        Context::Incremental(_, r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (p.partition, p.fetch_offset)))
            .collect(),
        other => panic!("not incremental: {other:?}"),
    }
}

fn kept(r: &FetchResponse) -> Vec<i32> {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
        .collect()
}

fn open(s: &FetchSessions) -> i32 {
    let req = request(0, 0, &[(0, 0), (1, 0), (2, 0)]);
    assert!(matches!(s.context(&req, V), Context::Full));
    let id = s.create(
        &req,
        &response(&[(0, 5, true), (1, 0, false), (2, 0, false)]),
        V,
    );
    assert!(id > 0);
    id
}

#[test]
fn old_versions_and_the_final_epoch_fetch_without_a_session() {
    let s = FetchSessions::new(10);
    assert!(matches!(
        s.context(&request(0, 0, &[(0, 0)]), 6),
        Context::Sessionless
    ));
    let id = open(&s);
    assert!(matches!(
        s.context(&request(id, -1, &[]), V),
        Context::Sessionless
    ));
    assert!(s.is_empty(), "epoch -1 closes the session");
}

#[test]
fn incremental_fetches_carry_the_session_and_check_its_epoch() {
    let s = FetchSessions::new(10);
    let id = open(&s);
    // The client moved partition 0 to offset 5 and says nothing of the others.
    let c = s.context(&request(id, 1, &[(0, 5)]), V);
    assert_eq!(asked(&c), vec![(0, 5), (1, 0), (2, 0)]);
    assert!(matches!(
        s.context(&request(id, 1, &[]), V),
        Context::Error(Code::InvalidFetchSessionEpoch)
    ));
    assert!(matches!(
        s.context(&request(id + 1, 1, &[]), V),
        Context::Error(Code::FetchSessionIdNotFound)
    ));
    // A partition added, one forgotten.
    let mut req = request(id, 2, &[(3, 7)]);
    req.forgotten_topics_data = vec![ForgottenTopic::default()
        .with_topic(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![1])];
    assert_eq!(asked(&s.context(&req, V)), vec![(0, 5), (2, 0), (3, 7)]);
    // Epoch 0 starts over.
    assert!(matches!(
        s.context(&request(id, 0, &[(0, 0)]), V),
        Context::Full
    ));
    assert!(s.is_empty());
}

#[test]
fn a_response_keeps_what_changed_and_partitions_with_data_go_last() {
    let s = FetchSessions::new(10);
    let id = open(&s);
    let Context::Incremental(_, _) = s.context(&request(id, 1, &[]), V) else {
        panic!("incremental");
    };
    // 0: nothing new; 1: records; 2: its high watermark moved.
    let mut resp = response(&[(0, 5, false), (1, 3, true), (2, 4, false)]);
    resp.responses[0].partitions[0].high_watermark = 5;
    s.filter(id, &mut resp, V);
    assert_eq!(kept(&resp), vec![1, 2]);
    // Nothing new anywhere: an empty response.
    let c = s.context(&request(id, 2, &[]), V);
    assert_eq!(
        asked(&c),
        vec![(0, 0), (2, 0), (1, 0)],
        "1 had data: it goes last"
    );
    let mut resp = response(&[(0, 5, false), (2, 4, false), (1, 3, false)]);
    s.filter(id, &mut resp, V);
    assert!(resp.responses.is_empty());
    // An error is always told.
    s.context(&request(id, 3, &[]), V);
    let mut resp = response(&[(0, 5, false), (2, 4, false), (1, 3, false)]);
    resp.responses[0].partitions[1].error_code = Code::NotLeaderOrFollower.code();
    s.filter(id, &mut resp, V);
    assert_eq!(kept(&resp), vec![2]);
}

#[test]
fn a_full_cache_evicts_only_sessions_idle_long_enough() {
    let s = FetchSessions::new(1);
    open(&s);
    let req = request(0, 0, &[(0, 0)]);
    assert_eq!(s.create(&req, &response(&[(0, 0, false)]), V), 0, "no room");
    // Idle long enough: the old session makes room.
    for session in s.lock().values_mut() {
        session.last_used = session.last_used.checked_sub(EVICTABLE_AFTER).unwrap();
    }
    let id = s.create(&req, &response(&[(0, 0, false)]), V);
    assert!(id > 0);
    assert_eq!(s.len(), 1);
    assert_eq!(FetchSessions::new(0).create(&req, &response(&[]), V), 0);
}
