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
//!
//! A partition's records are often several slices (of cached blocks, of WAL objects): its
//! `records` field holds the first and [`Rest`] the others, and all are spliced in one
//! after another, never joined (joining them cost a twelfth of a hot consumer's broker CPU).

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
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
        crate::read::join(self.0.clone())
    }
}

impl From<Bytes> for Frame {
    fn from(b: Bytes) -> Self {
        Frame(vec![b])
    }
}

/// A partition of a fetch response: its topic's id and name, its index, and where its
/// first piece is and how long (a request naming a partition twice gets two reads, each
/// with its own pieces; two reads with the same first piece start at the same batch).
type PartitionKey = (uuid::Uuid, String, i32, usize, usize);

fn key_of(topic_id: uuid::Uuid, topic: &str, p: &PartitionData) -> PartitionKey {
    let (at, len) = p
        .records
        .as_ref()
        .map_or((0, 0), |r| (r.as_ptr() as usize, r.len()));
    (topic_id, topic.to_string(), p.partition_index, at, len)
}

fn key(topic: &FetchableTopicResponse, p: &PartitionData) -> PartitionKey {
    key_of(topic.topic_id, topic.topic.0.as_str(), p)
}

/// The record data of a fetch response's partitions after the first piece, which is the
/// partition's `records`: a response is the pair, and whatever drops or reorders the
/// response's partitions keeps them paired (they are found by topic, partition and first piece).
#[derive(Debug, Default)]
pub struct Rest(HashMap<PartitionKey, Vec<Bytes>>);

impl Rest {
    /// Sets the records of `p`, a partition of `topic`, to `pieces` in order (joined if
    /// small, where a splice would cost more than the copy).
    pub fn put(
        &mut self,
        topic: &FetchableTopicResponse,
        p: &mut PartitionData,
        pieces: Vec<Bytes>,
    ) {
        let len: usize = pieces.iter().map(Bytes::len).sum();
        if pieces.len() <= 1 || len < SPLICE_MIN {
            p.records = Some(crate::read::join(pieces));
            return;
        }
        let mut pieces = pieces.into_iter();
        p.records = pieces.next();
        self.0.insert(key(topic, p), pieces.collect());
    }

    /// The pieces of `p`'s records after the first.
    pub fn of(&self, topic: &FetchableTopicResponse, p: &PartitionData) -> &[Bytes] {
        if self.0.is_empty() {
            return &[];
        }
        self.0.get(&key(topic, p)).map_or(&[], Vec::as_slice)
    }

    /// All of `p`'s records, in order: its `records`, then the pieces after it.
    pub fn pieces<'a>(
        &'a self,
        topic: &FetchableTopicResponse,
        p: &'a PartitionData,
    ) -> impl Iterator<Item = &'a Bytes> {
        p.records.iter().chain(self.of(topic, p))
    }

    /// Whether no partition has more than one piece.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes of `resp`'s partitions held here.
    pub fn len_in(&self, resp: &FetchResponse) -> usize {
        each_partition(resp)
            .flat_map(|(t, p)| self.of(t, p))
            .map(Bytes::len)
            .sum()
    }

    /// `resp` with each partition's records whole (copied together).
    pub fn joined(&self, resp: &FetchResponse) -> FetchResponse {
        let mut out = resp.clone();
        for topic in &mut out.responses {
            let (id, name) = (topic.topic_id, topic.topic.0.to_string());
            for p in &mut topic.partitions {
                let Some(rest) = self.0.get(&key_of(id, &name, p)) else {
                    continue;
                };
                let all = p.records.iter().chain(rest).cloned().collect();
                p.records = Some(crate::read::join(all));
            }
        }
        out
    }
}

fn each_partition(
    resp: &FetchResponse,
) -> impl Iterator<Item = (&FetchableTopicResponse, &PartitionData)> {
    resp.responses
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
}

/// The frame of a fetch response, its record data (`records` and `rest`) spliced in;
/// `None` when nothing is worth splicing or the markers were not found as expected (encode
/// [`Rest::joined`] the usual way).
pub fn fetch(
    header: &ResponseHeader,
    header_version: i16,
    resp: &FetchResponse,
    rest: &Rest,
    version: i16,
) -> Option<Frame> {
    let prefix = uuid::Uuid::new_v4();
    let mut shell = resp.clone();
    let mut spliced: Vec<([u8; MARKER], Vec<Bytes>)> = Vec::new();
    for (topic, original) in shell.responses.iter_mut().zip(&resp.responses) {
        for (p, o) in topic.partitions.iter_mut().zip(&original.partitions) {
            if rest.pieces(original, o).map(Bytes::len).sum::<usize>() < SPLICE_MIN {
                continue;
            }
            let pieces = rest.pieces(original, o).cloned().collect();
            let mut marker = [0u8; MARKER];
            marker[..12].copy_from_slice(&prefix.as_bytes()[..12]);
            marker[12..].copy_from_slice(&(spliced.len() as u32).to_be_bytes());
            spliced.push((marker, pieces));
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
    for (marker, pieces) in spliced {
        let found = at + find(&shell[at..], &marker)?;
        let field = found.checked_sub(marker_prefix.len())?;
        if field < at || shell[field..found] != marker_prefix[..] {
            return None;
        }
        if find(&shell[found + MARKER..], &marker).is_some() {
            return None;
        }
        parts.push(shell.slice(at..field));
        parts.push(prefix_of(pieces.iter().map(Bytes::len).sum()));
        parts.extend(pieces);
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
            let frame = fetch(&header, hv, &resp, &Rest::default(), v).expect("spliced");
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
        assert!(fetch(&header, 1, &response(&[10, 100]), &Rest::default(), 12).is_none());
        // Records that happen to hold 16-byte runs of every kind still splice correctly:
        // the marker is random per response.
        let resp = response(&[5000, 70000]);
        let frame = fetch(&header, 1, &resp, &Rest::default(), 13).unwrap();
        assert_eq!(frame.joined(), plain(&header, 1, &resp, 13));
    }

    /// `resp` with each partition's records cut into pieces at `cuts` (fractions), put
    /// with [`Rest::put`] as the fetch handler does.
    fn in_pieces(resp: &FetchResponse, cuts: &[f64]) -> (FetchResponse, Rest) {
        let mut out = resp.clone();
        let mut rest = Rest::default();
        for topic in &mut out.responses {
            let mut t = topic.clone();
            t.partitions.clear();
            for p in &mut topic.partitions {
                let whole = p.records.take().unwrap();
                let mut at: Vec<usize> = cuts
                    .iter()
                    .map(|c| (whole.len() as f64 * c) as usize)
                    .collect();
                at.insert(0, 0);
                at.push(whole.len());
                let pieces = at.windows(2).map(|w| whole.slice(w[0]..w[1])).collect();
                rest.put(&t, p, pieces);
            }
        }
        (out, rest)
    }

    #[test]
    fn records_in_pieces_are_spliced_one_after_another_never_joined() {
        let header = ResponseHeader::default().with_correlation_id(9);
        let whole = response(&[0, 100, 4095, 5000, 16384, 1 << 20, 2_097_152]);
        let (resp, rest) = in_pieces(&whole, &[0.3, 0.3, 0.9]);
        // Small ones were joined, big ones kept in pieces.
        let first = |i: usize| {
            resp.responses[0].partitions[i]
                .records
                .as_ref()
                .unwrap()
                .len()
        };
        assert_eq!(first(1), 100);
        assert_eq!(first(5), (1 << 20) * 3 / 10);
        assert_eq!(
            rest.len_in(&resp),
            16384 + (1 << 20) + 2_097_152 + 5000 - first(3) - first(4) - first(5) - first(6)
        );
        for v in 4..=17i16 {
            let hv = ApiKey::Fetch.response_header_version(v);
            let frame = fetch(&header, hv, &resp, &rest, v).expect("spliced");
            assert_eq!(frame.joined(), plain(&header, hv, &whole, v), "version {v}");
            // Every piece is the cached buffer itself.
            let big = whole.responses[0].partitions[6].records.as_ref().unwrap();
            let at = |n: usize| big.as_ptr() as usize + n;
            for cut in [0, 2_097_152 * 3 / 10, 2_097_152 * 9 / 10] {
                assert!(frame.parts().iter().any(|p| p.as_ptr() as usize == at(cut)));
            }
            // Encoded the usual way, the joined response is the same bytes.
            assert_eq!(
                plain(&header, hv, &rest.joined(&resp), v),
                plain(&header, hv, &whole, v)
            );
        }
    }

    #[test]
    fn pieces_follow_their_partition_when_partitions_are_dropped_or_reordered() {
        let header = ResponseHeader::default();
        let whole = response(&[8000, 9000, 10000]);
        let (mut resp, rest) = in_pieces(&whole, &[0.5]);
        // As an incremental fetch session does: only some partitions, in another order.
        let ps = &mut resp.responses[0].partitions;
        ps.remove(0);
        ps.reverse();
        let mut expected = whole.clone();
        let es = &mut expected.responses[0].partitions;
        es.remove(0);
        es.reverse();
        let frame = fetch(&header, 1, &resp, &rest, 13).unwrap();
        assert_eq!(frame.joined(), plain(&header, 1, &expected, 13));
        assert_eq!(rest.len_in(&resp), 10000 - 5000 + 9000 - 4500);
    }

    #[test]
    fn a_partition_named_twice_keeps_each_read_with_its_own_pieces() {
        let header = ResponseHeader::default();
        // The same partition twice, read at two offsets (two different byte runs).
        let mut whole = response(&[8000, 12000]);
        whole.responses[0].partitions[1].partition_index = 0;
        let (resp, rest) = in_pieces(&whole, &[0.25, 0.5]);
        let frame = fetch(&header, 1, &resp, &rest, 13).unwrap();
        assert_eq!(frame.joined(), plain(&header, 1, &whole, 13));
        let joined = rest.joined(&resp);
        assert_eq!(
            plain(&header, 1, &joined, 13),
            plain(&header, 1, &whole, 13)
        );
    }
}
