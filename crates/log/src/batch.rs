//! Kafka record batches (magic v2): validation, and stamping of the header fields that lie
//! outside the CRC (base offset, partition leader epoch). Records are never decompressed.

use bytes::{Bytes, BytesMut};

/// Size of the v2 batch header.
pub const HEADER_LEN: usize = 61;
const LENGTH_OFFSET: usize = 8;
const EPOCH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;
pub(crate) const CRC_OFFSET: usize = 17;
pub(crate) const ATTR_OFFSET: usize = 21;
const LAST_DELTA_OFFSET: usize = 23;
const BASE_TS_OFFSET: usize = 27;
const MAX_TS_OFFSET: usize = 35;
const PID_OFFSET: usize = 43;
const PEPOCH_OFFSET: usize = 51;
const SEQ_OFFSET: usize = 53;
const COUNT_OFFSET: usize = 57;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Truncated or inconsistent bytes, or a CRC mismatch.
    #[error("corrupt record batch: {0}")]
    Corrupt(&'static str),
    /// Magic 0 or 1.
    #[error("record batch magic {0} is not supported (v2 only)")]
    UnsupportedMagic(i8),
}

/// A validated batch inside a produce request or a stored log.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The batch bytes, header included.
    pub bytes: Bytes,
    /// Base offset as written in the header.
    pub base_offset: i64,
    /// Records in the batch.
    pub record_count: i32,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// First timestamp.
    pub base_timestamp: i64,
    /// Largest timestamp.
    pub max_timestamp: i64,
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// First sequence, or -1.
    pub base_sequence: i32,
    /// Attribute bits.
    pub attributes: i16,
}

impl Batch {
    /// Offset of the last record, given the base offset in the header.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    /// Whether this batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    /// Whether this is a control batch (transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
    /// Last sequence number of an idempotent batch (sequences wrap at i32::MAX).
    pub fn last_sequence(&self) -> i32 {
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Where a stored batch lies, from its header alone (the batch itself need not follow):
/// what a reader needs to walk a file batch by batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Base offset.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Length of the whole batch, header included.
    pub len: u64,
}

/// The span of the batch whose header starts `h` (at least [`HEADER_LEN`] bytes), with the
/// checks [`stored`] makes of a header.
pub fn span(h: &[u8]) -> Result<Span, BatchError> {
    if h.len() < HEADER_LEN {
        return Err(BatchError::Corrupt("batch shorter than its header"));
    }
    let magic = h[MAGIC_OFFSET] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let len = i32_at(h, LENGTH_OFFSET);
    if len < (HEADER_LEN - 12) as i32 {
        return Err(BatchError::Corrupt("batch length smaller than a header"));
    }
    let (count, delta) = (i32_at(h, COUNT_OFFSET), i32_at(h, LAST_DELTA_OFFSET));
    if count <= 0 || delta < 0 || delta < count - 1 {
        return Err(BatchError::Corrupt(
            "record count and last offset delta disagree",
        ));
    }
    let base_offset = i64_at(h, 0);
    Ok(Span {
        base_offset,
        last_offset: base_offset.saturating_add(i64::from(delta)),
        len: 12 + len as u64,
    })
}

/// Reads the header of the batch at the start of `bytes`, checking only that the whole
/// batch is present. Returns the batch and its total length.
fn header(bytes: &Bytes) -> Result<Batch, BatchError> {
    let s = span(bytes)?;
    let total = usize::try_from(s.len).unwrap_or(usize::MAX);
    if total > bytes.len() {
        return Err(BatchError::Corrupt(
            "batch length beyond the end of the records",
        ));
    }
    let b = &bytes[..];
    Ok(Batch {
        bytes: bytes.slice(..total),
        base_offset: s.base_offset,
        record_count: i32_at(b, COUNT_OFFSET),
        last_offset_delta: i32_at(b, LAST_DELTA_OFFSET),
        base_timestamp: i64_at(b, BASE_TS_OFFSET),
        max_timestamp: i64_at(b, MAX_TS_OFFSET),
        producer_id: i64_at(b, PID_OFFSET),
        producer_epoch: i16_at(b, PEPOCH_OFFSET),
        base_sequence: i32_at(b, SEQ_OFFSET),
        attributes: i16_at(b, ATTR_OFFSET),
    })
}

/// Splits produce-request records into validated batches (CRC-32C checked).
pub fn validate(records: &Bytes) -> Result<Vec<Batch>, BatchError> {
    let mut out = Vec::new();
    let mut rest = records.clone();
    while !rest.is_empty() {
        if rest.len() > MAGIC_OFFSET && rest[MAGIC_OFFSET] as i8 != 2 {
            return Err(BatchError::UnsupportedMagic(rest[MAGIC_OFFSET] as i8));
        }
        let batch = header(&rest)?;
        let b = &batch.bytes[..];
        let stored = u32::from_be_bytes([
            b[CRC_OFFSET],
            b[CRC_OFFSET + 1],
            b[CRC_OFFSET + 2],
            b[CRC_OFFSET + 3],
        ]);
        if crc32c::crc32c(&b[ATTR_OFFSET..]) != stored {
            return Err(BatchError::Corrupt("CRC-32C mismatch"));
        }
        rest = rest.slice(batch.bytes.len()..);
        out.push(batch);
    }
    if out.is_empty() {
        return Err(BatchError::Corrupt("no record batch"));
    }
    Ok(out)
}

/// Iterates over stored batches (headers only; CRCs were checked on produce). Stops at
/// the first incomplete batch, which is how a size-limited read ends.
pub fn stored(bytes: &Bytes) -> impl Iterator<Item = Batch> + '_ {
    let mut rest = bytes.clone();
    std::iter::from_fn(move || {
        let batch = header(&rest).ok()?;
        rest = rest.slice(batch.bytes.len()..);
        Some(batch)
    })
}

/// Copies a batch with its base offset and partition leader epoch set. With
/// `log_append_time`, also marks the timestamp type and sets the max timestamp, which
/// lie inside the CRC, so the CRC is recomputed (records are still not decompressed).
pub fn stamp(
    batch: &Batch,
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) -> Bytes {
    let mut b = BytesMut::with_capacity(batch.bytes.len());
    stamp_into(&mut b, batch, base_offset, leader_epoch, log_append_time);
    b.freeze()
}

/// [`stamp`], appending the stamped copy to `out` (one copy of the batch, not two).
pub fn stamp_into(
    out: &mut BytesMut,
    batch: &Batch,
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) {
    let at = out.len();
    out.extend_from_slice(&batch.bytes);
    let b = &mut out[at..];
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    b[EPOCH_OFFSET..EPOCH_OFFSET + 4].copy_from_slice(&leader_epoch.to_be_bytes());
    if let Some(ts) = log_append_time {
        let attrs = batch.attributes | TIMESTAMP_TYPE_BIT;
        b[ATTR_OFFSET..ATTR_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
        b[MAX_TS_OFFSET..MAX_TS_OFFSET + 8].copy_from_slice(&ts.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTR_OFFSET..]);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::make_batch;
    use proptest::prelude::*;

    #[test]
    fn validates_and_stamps() {
        let mut two = BytesMut::from(&make_batch(3, 7, 10, 1000)[..]);
        two.extend_from_slice(&make_batch(2, 7, 13, 2000));
        let batches = validate(&two.freeze()).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].last_sequence(), 12);
        let stamped = stamp(&batches[1], 42, 3, None);
        let again = validate(&stamped).unwrap();
        assert_eq!(again[0].base_offset, 42);
        assert_eq!(again[0].last_offset(), 43);
        let lat = stamp(&batches[1], 5, 3, Some(99));
        let v = validate(&lat).unwrap();
        assert_eq!(v[0].max_timestamp, 99, "log-append time keeps a valid CRC");
    }

    #[test]
    fn rejects_bad_input() {
        let good = make_batch(1, -1, -1, 0);
        let mut bad = BytesMut::from(&good[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(
            validate(&bad.freeze()).unwrap_err(),
            BatchError::Corrupt("CRC-32C mismatch")
        );
        let mut old = BytesMut::from(&good[..]);
        old[MAGIC_OFFSET] = 1;
        assert_eq!(
            validate(&old.freeze()).unwrap_err(),
            BatchError::UnsupportedMagic(1)
        );
        assert!(validate(&good.slice(..good.len() - 1)).is_err());
        assert!(validate(&Bytes::new()).is_err());
    }

    proptest! {
        #[test]
        fn never_panics_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let b = Bytes::from(data);
            let _ = validate(&b);
            let _ = stored(&b).count();
        }

        #[test]
        fn never_panics_on_mutated_batches(pos in 0usize..200, val in any::<u8>(), cut in 0usize..200) {
            let good = make_batch(4, 1, 0, 5);
            let mut m = BytesMut::from(&good[..]);
            let p = pos % m.len();
            m[p] = val;
            let m = m.freeze();
            let m = m.slice(..m.len().saturating_sub(cut % 8));
            let _ = validate(&m);
            let _ = stored(&m).count();
        }
    }
}
