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
//! Where a piece is a range of a segment's file (sent with `sendfile`), `records` holds a
//! one-byte token instead and [`Rest`] every piece; such a partition is always spliced.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::ResponseError as Code;

use crate::read::Piece;

/// Records shorter than this are copied: a splice would cost more than it saves.
const SPLICE_MIN: usize = 4096;
const MARKER: usize = 16;

/// A response as the pieces written after its length prefix.
#[derive(Debug, Default)]
pub struct Frame(Vec<Piece>);

impl Frame {
    /// The response's length.
    pub fn len(&self) -> usize {
        self.0.iter().map(Piece::len).sum()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Piece::is_empty)
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[Piece] {
        &self.0
    }

    /// The pieces joined, files read (tests).
    pub fn joined(&self) -> std::io::Result<Bytes> {
        let parts = self.0.iter().map(Piece::bytes);
        Ok(stratus_log::cache::join(
            parts.collect::<std::io::Result<_>>()?,
        ))
    }
}

impl From<Bytes> for Frame {
    fn from(b: Bytes) -> Self {
        Frame(vec![Piece::Bytes(b)])
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

/// A partition's pieces beyond its `records`.
#[derive(Debug)]
enum Held {
    /// The pieces after the first, which is `records`.
    After(Vec<Piece>),
    /// Every piece: `records` is a token (one byte, its own allocation, so its address
    /// keys the partition), since a file's range cannot be a `Bytes`.
    Whole(Vec<Piece>),
}

/// The record data of a fetch response's partitions after the first piece, which is the
/// partition's `records`: a response is the pair, and whatever drops or reorders the
/// response's partitions keeps them paired (they are found by topic, partition and first piece).
#[derive(Debug, Default)]
pub struct Rest(HashMap<PartitionKey, Held>);

impl Rest {
    /// Sets the records of `p`, a partition of `topic`, to `pieces` in order (joined if
    /// small and in memory, where a splice would cost more than the copy).
    pub fn put(
        &mut self,
        topic: &FetchableTopicResponse,
        p: &mut PartitionData,
        pieces: Vec<Piece>,
    ) {
        if pieces.iter().any(|piece| matches!(piece, Piece::File(_))) {
            p.records = Some(Bytes::from(vec![0u8]));
            self.0.insert(key(topic, p), Held::Whole(pieces));
            return;
        }
        let pieces: Vec<Bytes> = pieces
            .into_iter()
            .filter_map(|piece| match piece {
                Piece::Bytes(b) => Some(b),
                Piece::File(_) => None,
            })
            .collect();
        let len: usize = pieces.iter().map(Bytes::len).sum();
        if pieces.len() <= 1 || len < SPLICE_MIN {
            p.records = Some(stratus_log::cache::join(pieces));
            return;
        }
        let mut pieces = pieces.into_iter();
        p.records = pieces.next();
        self.0.insert(
            key(topic, p),
            Held::After(pieces.map(Piece::Bytes).collect()),
        );
    }

    /// All of `p`'s records, in order.
    pub fn pieces(&self, topic: &FetchableTopicResponse, p: &PartitionData) -> Vec<Piece> {
        let first = || p.records.iter().cloned().map(Piece::Bytes);
        match self.held(topic, p) {
            None => first().collect(),
            Some(Held::After(rest)) => first().chain(rest.iter().cloned()).collect(),
            Some(Held::Whole(all)) => all.clone(),
        }
    }

    fn held(&self, topic: &FetchableTopicResponse, p: &PartitionData) -> Option<&Held> {
        if self.0.is_empty() {
            return None;
        }
        self.0.get(&key(topic, p))
    }

    /// Whether no partition has more than one piece.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes of `resp`'s records held here beyond those its `records` fields count.
    pub fn len_in(&self, resp: &FetchResponse) -> usize {
        let len = |v: &Vec<Piece>| v.iter().map(Piece::len).sum::<usize>();
        each_partition(resp)
            .map(|(t, p)| match self.held(t, p) {
                None => 0,
                Some(Held::After(rest)) => len(rest),
                Some(Held::Whole(all)) => len(all).saturating_sub(1),
            })
            .sum()
    }

    /// `resp` with each partition's records whole (copied together, files read; a
    /// partition whose file cannot be read gets KAFKA_STORAGE_ERROR).
    pub fn joined(&self, resp: &FetchResponse) -> FetchResponse {
        let mut out = resp.clone();
        for (topic, original) in out.responses.iter_mut().zip(&resp.responses) {
            for (p, o) in topic.partitions.iter_mut().zip(&original.partitions) {
                if self.held(original, o).is_none() {
                    continue;
                }
                let read: std::io::Result<Vec<Bytes>> =
                    self.pieces(original, o).iter().map(Piece::bytes).collect();
                match read {
                    Ok(all) => p.records = Some(stratus_log::cache::join(all)),
                    Err(e) => {
                        tracing::error!(partition = p.partition_index, error = %e, "segment file could not be read");
                        p.error_code = Code::KafkaStorageError.code();
                        p.records = Some(Bytes::new());
                    }
                }
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
    let mut spliced: Vec<([u8; MARKER], Vec<Piece>)> = Vec::new();
    for (topic, original) in shell.responses.iter_mut().zip(&resp.responses) {
        for (p, o) in topic.partitions.iter_mut().zip(&original.partitions) {
            let pieces = rest.pieces(original, o);
            let whole = matches!(rest.held(original, o), Some(Held::Whole(_)));
            if !whole && pieces.iter().map(Piece::len).sum::<usize>() < SPLICE_MIN {
                continue;
            }
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
        parts.push(Piece::Bytes(shell.slice(at..field)));
        parts.push(Piece::Bytes(prefix_of(pieces.iter().map(Piece::len).sum())));
        parts.extend(pieces);
        at = found + MARKER;
    }
    parts.push(Piece::Bytes(shell.slice(at..)));
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

    /// Where a piece in memory starts (0 for a file's range).
    pub(super) fn at(p: &Piece) -> usize {
        match p {
            Piece::Bytes(b) => b.as_ptr() as usize,
            Piece::File(_) => 0,
        }
    }

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
            assert_eq!(
                frame.joined().unwrap(),
                plain(&header, hv, &resp, v),
                "version {v}"
            );
            assert_eq!(frame.len(), frame.joined().unwrap().len());
            // The big records are the cached buffers themselves, not copies.
            let big = resp.responses[0].partitions[6].records.as_ref().unwrap();
            assert!(frame.parts().iter().any(|p| at(p) == big.as_ptr() as usize));
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
        assert_eq!(frame.joined().unwrap(), plain(&header, 1, &resp, 13));
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
                let pieces: Vec<Bytes> = at.windows(2).map(|w| whole.slice(w[0]..w[1])).collect();
                rest.put(&t, p, pieces.into_iter().map(Piece::Bytes).collect());
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
            assert_eq!(
                frame.joined().unwrap(),
                plain(&header, hv, &whole, v),
                "version {v}"
            );
            // Every piece is the cached buffer itself.
            let big = whole.responses[0].partitions[6].records.as_ref().unwrap();
            let at = |n: usize| big.as_ptr() as usize + n;
            for cut in [0, 2_097_152 * 3 / 10, 2_097_152 * 9 / 10] {
                assert!(frame.parts().iter().any(|p| super::tests::at(p) == at(cut)));
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
        assert_eq!(frame.joined().unwrap(), plain(&header, 1, &expected, 13));
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
        assert_eq!(frame.joined().unwrap(), plain(&header, 1, &whole, 13));
        let joined = rest.joined(&resp);
        assert_eq!(
            plain(&header, 1, &joined, 13),
            plain(&header, 1, &whole, 13)
        );
    }

    #[test]
    fn ranges_of_files_are_spliced_as_they_are_and_read_only_where_a_response_is_joined() {
        use std::io::Write;
        let header = ResponseHeader::default().with_correlation_id(5);
        // Two partitions whose records are (in part) ranges of a file: a big one between
        // bytes in memory, and a small one alone (spliced too: its token must never go out).
        let whole = response(&[30000, 100, 9000]);
        let data = |i: usize| whole.responses[0].partitions[i].records.clone().unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[0xee; 7]).unwrap();
        f.write_all(&data(0)[1000..29000]).unwrap();
        f.write_all(&data(1)).unwrap();
        let file = std::sync::Arc::new(f);
        let slice = |pos: u64, len: u64| {
            Piece::File(stratus_log::file_slice::FileSlice {
                file: file.clone(),
                pos,
                len,
                records: 1,
            })
        };
        let mut resp = whole.clone();
        let mut rest = Rest::default();
        let t = FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_topic_id(uuid::Uuid::from_u128(7));
        let ps = &mut resp.responses[0].partitions;
        let d0 = data(0);
        let pieces = vec![
            Piece::Bytes(d0.slice(..1000)),
            slice(7, 28000),
            Piece::Bytes(d0.slice(29000..)),
        ];
        rest.put(&t, &mut ps[0], pieces);
        rest.put(&t, &mut ps[1], vec![slice(28007, 100)]);
        let d2 = data(2);
        rest.put(
            &t,
            &mut ps[2],
            vec![Piece::Bytes(d2.slice(..10)), Piece::Bytes(d2.slice(10..))],
        );
        // What a fetch response counts beyond its `records` (the tokens are one byte each).
        assert_eq!(rest.len_in(&resp), (30000 - 1) + (100 - 1) + (9000 - 10));
        for v in [4i16, 11, 12, 13, 17] {
            let hv = ApiKey::Fetch.response_header_version(v);
            let frame = fetch(&header, hv, &resp, &rest, v).expect("spliced");
            assert_eq!(
                frame.joined().unwrap(),
                plain(&header, hv, &whole, v),
                "version {v}"
            );
            assert_eq!(frame.len(), plain(&header, hv, &whole, v).len());
            let files = frame.parts().iter().filter(|p| matches!(p, Piece::File(_)));
            assert_eq!(files.count(), 2, "the file ranges are sent as they are");
            // Encoded without splicing, the same bytes (the files read).
            assert_eq!(
                plain(&header, hv, &rest.joined(&resp), v),
                plain(&header, hv, &whole, v)
            );
        }
    }
}
