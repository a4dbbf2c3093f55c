//! Fetch responses written without copying their record data: the response's fields are
//! encoded (by kafka-protocol, so every version is right) with a random 16-byte marker in
//! place of each partition's records, and the frame is the encoded pieces with the cached
//! record `Bytes` spliced in where the markers were. Record data then goes from the block
//! cache to the socket with no copy in between (it was copied twice before: into the
//! response buffer, which also grew by doubling, and by every reallocation).
//!
//! A marker is a random 12-byte prefix per response plus the partition's index; each must
//! be found exactly once, right after the length prefix a 16-byte field gets, or the
//! response is encoded the ordinary way.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;

/// Records shorter than this are copied: a splice would cost more than it saves.
const SPLICE_MIN: usize = 4096;
const MARKER: usize = 16;

/// A response as the pieces written after its length prefix.
#[derive(Debug, Default)]
pub struct Frame(Vec<Bytes>);

impl Frame {
    /// The response's length.
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Bytes::is_empty)
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.0
    }

    /// The pieces joined (tests).
    pub fn joined(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.len());
        for p in &self.0 {
            b.extend_from_slice(p);
        }
        b.freeze()
    }
}

impl From<Bytes> for Frame {
    fn from(b: Bytes) -> Self {
        Frame(vec![b])
    }
}

/// The frame of a fetch response, its record data spliced in; `None` when nothing is
/// worth splicing or the markers were not found as expected (encode it the usual way).
pub fn fetch(
    header: &ResponseHeader,
    header_version: i16,
    resp: &FetchResponse,
    version: i16,
) -> Option<Frame> {
    let prefix = uuid::Uuid::new_v4();
    let mut shell = resp.clone();
    let mut spliced: Vec<([u8; MARKER], Bytes)> = Vec::new();
    for topic in &mut shell.responses {
        for p in &mut topic.partitions {
            let Some(records) = &p.records else { continue };
            if records.len() < SPLICE_MIN {
                continue;
            }
            let mut marker = [0u8; MARKER];
            marker[..12].copy_from_slice(&prefix.as_bytes()[..12]);
            marker[12..].copy_from_slice(&(spliced.len() as u32).to_be_bytes());
            spliced.push((marker, records.clone()));
            p.records = Some(Bytes::copy_from_slice(&marker));
        }
    }
    if spliced.is_empty() {
        return None;
    }
    let mut buf = BytesMut::with_capacity(shell.compute_size(version).ok()? + 16);
    header.encode(&mut buf, header_version).ok()?;
    shell.encode(&mut buf, version).ok()?;
    let shell = buf.freeze();
    // The length prefix of a 16-byte records field, and of the real one.
    let flexible = version >= 12;
    let prefix_of = |len: usize| -> Bytes {
        let mut b = BytesMut::with_capacity(5);
        if flexible {
            put_unsigned_varint(&mut b, len as u64 + 1);
        } else {
            b.put_i32(len as i32);
        }
        b.freeze()
    };
    let marker_prefix = prefix_of(MARKER);
    let mut parts = Vec::with_capacity(spliced.len() * 3 + 1);
    let mut at = 0;
    for (marker, records) in spliced {
        let found = at + find(&shell[at..], &marker)?;
        let field = found.checked_sub(marker_prefix.len())?;
        if field < at || shell[field..found] != marker_prefix[..] {
            return None;
        }
        if find(&shell[found + MARKER..], &marker).is_some() {
            return None;
        }
        parts.push(shell.slice(at..field));
        parts.push(prefix_of(records.len()));
        parts.push(records);
        at = found + MARKER;
    }
    parts.push(shell.slice(at..));
    Some(Frame(parts))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn put_unsigned_varint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ApiKey, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn response(sizes: &[usize]) -> FetchResponse {
        let partitions = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let data: Vec<u8> = (0..*n).map(|j| (i * 31 + j) as u8).collect();
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(1000 + i as i64)
                    .with_records(Some(Bytes::from(data)))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_topic_id(uuid::Uuid::from_u128(7))
            .with_partitions(partitions)])
    }

    fn plain(header: &ResponseHeader, hv: i16, resp: &FetchResponse, v: i16) -> Bytes {
        let mut b = BytesMut::new();
        header.encode(&mut b, hv).unwrap();
        resp.encode(&mut b, v).unwrap();
        b.freeze()
    }

    #[test]
    fn a_spliced_response_is_byte_for_byte_the_encoded_one_in_every_version() {
        let header = ResponseHeader::default().with_correlation_id(42);
        // Sizes around the varint boundaries and the splice threshold.
        let resp = response(&[
            0,
            10,
            4095,
            4096,
            16383,
            16384,
            1 << 20,
            2_097_151,
            2_097_152,
        ]);
        for v in 4..=17i16 {
            let hv = ApiKey::Fetch.response_header_version(v);
            let frame = fetch(&header, hv, &resp, v).expect("spliced");
            assert_eq!(frame.joined(), plain(&header, hv, &resp, v), "version {v}");
            assert_eq!(frame.len(), frame.joined().len());
            // The big records are the cached buffers themselves, not copies.
            let big = resp.responses[0].partitions[6].records.as_ref().unwrap();
            assert!(frame.parts().iter().any(|p| p.as_ptr() == big.as_ptr()));
        }
    }

    #[test]
    fn small_responses_and_records_that_contain_a_marker_are_encoded_the_usual_way() {
        let header = ResponseHeader::default();
        assert!(fetch(&header, 1, &response(&[10, 100]), 12).is_none());
        // Records that happen to hold 16-byte runs of every kind still splice correctly:
        // the marker is random per response.
        let resp = response(&[5000, 70000]);
        let frame = fetch(&header, 1, &resp, 13).unwrap();
        assert_eq!(frame.joined(), plain(&header, 1, &resp, 13));
    }
}
