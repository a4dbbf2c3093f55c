//! Writing a merged segment: the inputs' batches streamed in order into one object,
//! never held whole.

use stratus_log::batch::BatchError;
use stratus_log::bulk::{self, BulkWriter};
use stratus_log::segment;
use stratus_meta::repo::SegmentRef;

use super::super::Upkeep;
use crate::error::{Error, Result};

/// Bytes of an input read at once (cut at its index entries, so always whole batches).
const READ: u64 = 4 << 20;

/// Writes the segment holding the batches of `inputs` under `key`, and returns what it
/// holds. Fails, leaving nothing under `key`, if an input cannot be read whole or holds
/// other than its record says.
pub(super) async fn write(up: &Upkeep, key: &str, inputs: &[SegmentRef]) -> Result<segment::Meta> {
    let total: u64 = inputs.iter().map(|g| g.data_len).sum();
    let slice = if total > bulk::PART as u64 {
        bulk::SLICE
    } else {
        usize::MAX
    };
    let mut w = segment::Writer::with_capacity((total as usize).min(bulk::SLICE + READ as usize));
    let mut out: Option<BulkWriter<'_>> = None;
    let mut failed = None;
    'inputs: for g in inputs {
        let cuts = match cuts(up, g).await {
            Ok(c) => c,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        for range in cuts {
            let data = match up.objects.get_range(&g.key, range).await {
                Ok(d) => d,
                Err(e) => {
                    failed = Some(e.into());
                    break 'inputs;
                }
            };
            w.push(&data);
            let Some(part) = w.take_part(slice) else {
                continue;
            };
            if out.is_none() {
                match up.objects.bulk_writer(key).await {
                    Ok(b) => out = Some(b),
                    Err(e) => {
                        failed = Some(e.into());
                        break 'inputs;
                    }
                }
            }
            if let Some(b) = &mut out {
                if let Err(e) = b.write(part).await {
                    failed = Some(e.into());
                    break 'inputs;
                }
            }
        }
    }
    let finished = match failed {
        None => w.finish(),
        Some(_) => None,
    };
    let Some((last, meta)) = finished.filter(|(_, m)| holds(m, inputs)) else {
        if let Some(b) = out {
            b.abort().await;
        }
        return Err(failed.unwrap_or_else(|| {
            Error::Batch(BatchError::Corrupt(
                "a segment to merge holds other than its record says",
            ))
        }));
    };
    match out {
        None => up.objects.put_bulk(key, last, true).await?,
        Some(mut b) => {
            if let Err(e) = b.write(last).await {
                b.abort().await;
                return Err(e.into());
            }
            b.finish().await?;
        }
    }
    Ok(meta)
}

/// Whether a merge of `inputs` made `meta`: the same offsets and bytes of batches.
fn holds(meta: &segment::Meta, inputs: &[SegmentRef]) -> bool {
    let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
        return false;
    };
    meta.base_offset == first.base_offset
        && meta.end_offset == last.end_offset
        && meta.data_len == inputs.iter().map(|g| g.data_len).sum::<u64>()
}

/// The ranges of `g`'s batches to read, in order: about [`READ`] bytes each, cut at
/// positions its index names (each the start of a batch).
async fn cuts(up: &Upkeep, g: &SegmentRef) -> Result<Vec<std::ops::Range<u64>>> {
    let tail = up.objects.get_range(&g.key, g.data_len..g.size).await?;
    let index = segment::parse_index(&tail).ok_or(Error::Batch(BatchError::Corrupt(
        "a segment to merge has no index",
    )))?;
    Ok(ranges(index.iter().map(|e| e.pos), g.data_len, READ))
}

/// `0..data_len` cut at some of `positions` (ascending), into ranges of at least `read`
/// bytes but the last.
fn ranges(
    positions: impl Iterator<Item = u64>,
    data_len: u64,
    read: u64,
) -> Vec<std::ops::Range<u64>> {
    let mut out = Vec::new();
    let mut start = 0;
    for pos in positions.chain([data_len]) {
        // (A corrupt index's positions may go back or past the end: the merge then finds
        // other than the record says, and fails.)
        if pos <= start || pos > data_len {
            continue;
        }
        if pos - start >= read || pos == data_len {
            out.push(start..pos);
            start = pos;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_cut_at_batch_starts_and_cover_the_data_once() {
        let positions = [0, 4096, 9000, 13000, 20000, 24000];
        assert_eq!(
            ranges(positions.into_iter(), 26000, 8192),
            vec![0..9000, 9000..20000, 20000..26000]
        );
        assert_eq!(
            ranges(positions.into_iter(), 26000, 1 << 20),
            vec![0..26000]
        );
        assert_eq!(
            ranges([0].into_iter(), 0, 10),
            Vec::<std::ops::Range<u64>>::new()
        );
        // A position past the data (a corrupt index) ends the cuts there.
        assert_eq!(ranges([0, 50, 99].into_iter(), 60, 10), vec![0..50, 50..60]);
    }
}
