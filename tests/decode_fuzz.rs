//! Random and mutated request frames fed to the request decoder: no panic, no abort.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;
use proptest::prelude::*;

fn decode(frame: Bytes) {
    let _ = stratus::handlers::decode_request(frame);
}

#[test]
fn huge_array_lengths_are_refused() {
    // Metadata v4: header v1 (api key, version, correlation id, client id), then the
    // topics array length.
    let mut b = BytesMut::new();
    b.put_i16(ApiKey::Metadata as i16);
    b.put_i16(4);
    b.put_i32(7);
    b.put_i16(-1);
    b.put_i32(i32::MAX);
    decode(b.freeze());
    let mut b = BytesMut::new();
    b.put_i16(ApiKey::Fetch as i16);
    b.put_i16(4);
    b.put_i32(7);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(500);
    b.put_i32(1);
    b.put_i32(1 << 20);
    b.put_i8(0);
    b.put_i32(i32::MAX);
    decode(b.freeze());
    let _ = RequestHeader::decode(&mut Bytes::from_static(&[0, 0]), 1);
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
