//! Sealed segment objects: record batches in Kafka's format, then a sparse offset and
//! time index, then a footer (`count: u32`, magic `STRSEG01`).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch;

const MAGIC: &[u8; 8] = b"STRSEG01";
/// An index entry every this many bytes of batches (Kafka's index.interval.bytes).
const INDEX_INTERVAL: u64 = 4096;
const ENTRY_LEN: usize = 24;
/// Footer length.
pub const FOOTER_LEN: usize = 12;

/// One index entry: the batch starting at `pos` has base offset `offset`; every batch
/// before it has timestamps at most `max_timestamp_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Base offset of the batch at `pos`.
    pub offset: i64,
    /// Byte position.
    pub pos: u64,
    /// Largest timestamp of all earlier batches.
    pub max_timestamp_before: i64,
}

/// A built segment object.
pub struct Built {
    /// The object.
    pub body: Bytes,
    /// Bytes of batches.
    pub data_len: u64,
    /// First offset.
    pub base_offset: i64,
    /// One past the last offset.
    pub end_offset: i64,
    /// Largest timestamp.
    pub max_timestamp: i64,
}

/// Builds a segment from stored batches (in offset order).
pub fn build(data: &[Bytes]) -> Option<Built> {
    let total: usize = data.iter().map(Bytes::len).sum();
    let mut w = Writer::with_capacity(total + total / 100 + FOOTER_LEN);
    for chunk in data {
        w.push(chunk);
    }
    let (body, meta) = w.finish()?;
    Some(Built {
        body,
        data_len: meta.data_len,
        base_offset: meta.base_offset,
        end_offset: meta.end_offset,
        max_timestamp: meta.max_timestamp,
    })
}

/// What a finished segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Bytes of batches.
    pub data_len: u64,
    /// The whole object's size.
    pub size: u64,
    /// First offset.
    pub base_offset: i64,
    /// One past the last offset.
    pub end_offset: i64,
    /// Largest timestamp.
    pub max_timestamp: i64,
}

/// A segment built a part at a time (a seal streams it to the store without holding it
/// whole): batches are pushed in offset order, the bytes so far are taken in parts, and
/// the last part carries the index and the footer. The bytes are those [`build`] makes.
#[derive(Default)]
pub struct Writer {
    part: BytesMut,
    /// The capacity a new part starts with.
    part_capacity: usize,
    /// Bytes already taken in parts.
    taken: u64,
    index: Vec<IndexEntry>,
    last_indexed: Option<u64>,
    max_ts: i64,
    base: Option<i64>,
    end: i64,
}

impl Writer {
    /// An empty segment.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty segment whose parts are about `n` bytes: each part's buffer is allocated
    /// once, at that size, rather than grown by doubling (a copy of everything at each).
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            part: BytesMut::with_capacity(n),
            part_capacity: n,
            max_ts: -1,
            ..Default::default()
        }
    }

    /// Appends the batches of a chunk of stored batches.
    pub fn push(&mut self, chunk: &Bytes) {
        // A new part's buffer, allocated when its first chunk comes (none after the last).
        if self.part.is_empty() {
            self.part.reserve(self.part_capacity);
        }
        for b in batch::stored(chunk) {
            let pos = self.taken + self.part.len() as u64;
            if self.last_indexed.is_none_or(|l| pos - l >= INDEX_INTERVAL) {
                self.index.push(IndexEntry {
                    offset: b.base_offset,
                    pos,
                    max_timestamp_before: self.max_ts,
                });
                self.last_indexed = Some(pos);
            }
            self.base.get_or_insert(b.base_offset);
            self.end = b.last_offset() + 1;
            self.max_ts = self.max_ts.max(b.max_timestamp);
            self.part.extend_from_slice(&b.bytes);
        }
    }

    /// The first offset, once a batch was pushed.
    pub fn base_offset(&self) -> Option<i64> {
        self.base
    }

    /// The bytes pushed since the last part, if there are at least `min` of them.
    pub fn take_part(&mut self, min: usize) -> Option<Bytes> {
        if self.part.len() < min.max(1) {
            return None;
        }
        self.taken += self.part.len() as u64;
        Some(self.part.split().freeze())
    }

    /// The last part (the rest of the batches, the index and the footer) and what the
    /// segment holds; `None` if no batch was pushed.
    pub fn finish(mut self) -> Option<(Bytes, Meta)> {
        let base_offset = self.base?;
        let data_len = self.taken + self.part.len() as u64;
        for e in &self.index {
            self.part.put_i64(e.offset);
            self.part.put_u64(e.pos);
            self.part.put_i64(e.max_timestamp_before);
        }
        self.part.put_u32(self.index.len() as u32);
        self.part.extend_from_slice(MAGIC);
        let size = self.taken + self.part.len() as u64;
        Some((
            self.part.freeze(),
            Meta {
                data_len,
                size,
                base_offset,
                end_offset: self.end,
                max_timestamp: self.max_ts,
            },
        ))
    }
}

/// Parses the index part of a segment (the bytes from `data_len` to the end).
pub fn parse_index(tail: &Bytes) -> Option<Arc<Vec<IndexEntry>>> {
    if tail.len() < FOOTER_LEN || &tail[tail.len() - 8..] != MAGIC {
        return None;
    }
    let n = u32::from_be_bytes(tail[tail.len() - 12..tail.len() - 8].try_into().ok()?) as usize;
    if n.checked_mul(ENTRY_LEN)? + FOOTER_LEN != tail.len() {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let e = &tail[i * ENTRY_LEN..(i + 1) * ENTRY_LEN];
        out.push(IndexEntry {
            offset: i64::from_be_bytes(e[0..8].try_into().ok()?),
            pos: u64::from_be_bytes(e[8..16].try_into().ok()?),
            max_timestamp_before: i64::from_be_bytes(e[16..24].try_into().ok()?),
        });
    }
    Some(Arc::new(out))
}

/// Position to start reading for `offset`.
pub fn position_of_offset(index: &[IndexEntry], offset: i64) -> u64 {
    let i = index.partition_point(|e| e.offset <= offset);
    index.get(i.saturating_sub(1)).map(|e| e.pos).unwrap_or(0)
}

/// Position to start looking for the first timestamp >= `ts`.
pub fn position_of_timestamp(index: &[IndexEntry], ts: i64) -> u64 {
    let i = index.partition_point(|e| e.max_timestamp_before < ts);
    index.get(i.saturating_sub(1)).map(|e| e.pos).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::make_batch;

    #[test]
    fn build_and_index() {
        let mut chunks = Vec::new();
        let mut off = 0;
        for i in 0..200 {
            let b = crate::batch::validate(&make_batch(10, -1, -1, 1000 + i)).unwrap();
            chunks.push(crate::batch::stamp(&b[0], off, 0, None));
            off += 10;
        }
        let built = build(&chunks).unwrap();
        assert_eq!(
            (built.base_offset, built.end_offset, built.max_timestamp),
            (0, 2000, 1199)
        );
        let idx = parse_index(&built.body.slice(built.data_len as usize..)).unwrap();
        assert!(idx.len() > 1);
        // Every lookup lands at or before its target and at most one index interval of
        // batches before it (an index that always answered 0 fails the second check).
        let data = built.body.slice(..built.data_len as usize);
        let batch_len = chunks[0].len() as u64;
        let most_skipped = INDEX_INTERVAL.div_ceil(batch_len) as usize + 1;
        for target in (0..2000).step_by(7) {
            let pos = position_of_offset(&idx, target);
            let from: Vec<_> = crate::batch::stored(&data.slice(pos as usize..)).collect();
            assert!(from[0].base_offset <= target, "offset {target} at {pos}");
            let skipped = from
                .iter()
                .position(|b| b.last_offset() >= target)
                .expect("the target offset is after the position");
            assert!(
                skipped <= most_skipped,
                "offset {target}: {skipped} batches to skip"
            );
        }
        // Batch i has timestamps up to 1000 + i.
        for ts in (990..1210).step_by(3) {
            let pos = position_of_timestamp(&idx, ts);
            let from: Vec<_> = crate::batch::stored(&data.slice(pos as usize..)).collect();
            let first_at = from.iter().position(|b| b.max_timestamp >= ts);
            if ts <= 1199 {
                let skipped = first_at.expect("a batch with that timestamp is after the position");
                assert!(
                    skipped <= most_skipped,
                    "timestamp {ts}: {skipped} batches to skip"
                );
                let before =
                    (data.len() - from.iter().map(|b| b.bytes.len()).sum::<usize>()) as u64;
                assert_eq!(before, pos);
                let earlier = data.slice(..pos as usize);
                assert!(
                    crate::batch::stored(&earlier).all(|b| b.max_timestamp < ts),
                    "timestamp {ts}: a batch with it was skipped"
                );
            } else {
                assert!(first_at.is_none());
            }
        }
        assert!(parse_index(&Bytes::from_static(b"garbage")).is_none());
    }

    #[test]
    fn a_segment_taken_in_parts_is_the_segment_built_whole() {
        let mut chunks = Vec::new();
        let mut off = 0;
        for i in 0..300 {
            let b =
                crate::batch::validate(&make_batch(1 + i % 7, -1, -1, 1000 + i as i64)).unwrap();
            chunks.push(crate::batch::stamp(&b[0], off, 0, None));
            off += 1 + (i % 7) as i64;
        }
        let whole = build(&chunks).unwrap();
        for part in [1, 100, 5000, 1 << 20] {
            let mut w = Writer::new();
            let mut body = Vec::new();
            for c in &chunks {
                w.push(c);
                if let Some(p) = w.take_part(part) {
                    assert!(p.len() >= part);
                    body.extend_from_slice(&p);
                }
            }
            let (last, meta) = w.finish().unwrap();
            body.extend_from_slice(&last);
            assert_eq!(body, whole.body, "parts of at least {part} bytes");
            assert_eq!(
                (
                    meta.data_len,
                    meta.size,
                    meta.base_offset,
                    meta.end_offset,
                    meta.max_timestamp
                ),
                (
                    whole.data_len,
                    whole.body.len() as u64,
                    0,
                    off,
                    whole.max_timestamp
                )
            );
        }
        assert!(Writer::new().finish().is_none());
    }
}
