//! Random and mutated request frames fed to the request decoder: no panic, no abort.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;
use proptest::prelude::*;

fn decode(frame: Bytes) {
    let _ = stratus::handlers::decode_request(frame);
}

fn metadata_v4(topics: i32) -> Bytes {
    // Header v1 (api key, version, correlation id, null client id), then the topics array
    // length (0: no topic; -1: all topics) and allow_auto_topic_creation.
    let mut b = BytesMut::new();
    b.put_i16(ApiKey::Metadata as i16);
    b.put_i16(4);
    b.put_i32(7);
    b.put_i16(-1);
    b.put_i32(topics);
    b.put_i8(1);
    b.freeze()
}

fn fetch_v4(topics: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(ApiKey::Fetch as i16);
    b.put_i16(4);
    b.put_i32(7);
    b.put_i16(-1);
    b.put_i32(-1); // replica id
    b.put_i32(500); // max wait
    b.put_i32(1); // min bytes
    b.put_i32(1 << 20); // max bytes
    b.put_i8(0); // isolation level
    b.put_i32(topics);
    b.freeze()
}

#[test]
fn huge_array_lengths_are_refused() {
    // The same frames with an honest length decode: the refusal is about the length.
    assert!(stratus::handlers::decode_request(metadata_v4(0)).is_ok());
    assert!(stratus::handlers::decode_request(metadata_v4(-1)).is_ok());
    assert!(stratus::handlers::decode_request(fetch_v4(0)).is_ok());
    // A length of 2^31-1 with no bytes behind it is an error, before any allocation of
    // that size (an allocation of 2^31 topics would abort the process, not fail here).
    let err = stratus::handlers::decode_request(metadata_v4(i32::MAX))
        .expect_err("Metadata with 2^31-1 topics and no bytes is refused");
    assert!(!format!("{err:#}").is_empty());
    stratus::handlers::decode_request(fetch_v4(i32::MAX))
        .expect_err("Fetch with 2^31-1 topics and no bytes is refused");
    stratus::handlers::decode_request(fetch_v4(-2))
        .expect_err("a negative array length other than -1 is refused");
    assert!(RequestHeader::decode(&mut Bytes::from_static(&[0, 0]), 1).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn random_frames_never_panic(key in 0i16..80, version in -1i16..20, body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = BytesMut::new();
        b.put_i16(key);
        b.put_i16(version);
        b.put_i32(1);
        b.extend_from_slice(&body);
        decode(b.freeze());
    }
}
