//! WAL chunks moved by a WAL compaction: pointed at the compacted object, and merged where
//! its index entry merged their ranges.

use std::ops::Range;

use super::*;

impl PartitionState {
    /// Points WAL chunks at the object a WAL compaction copied them to: `moved` maps an
    /// old object to its copied spans `(old position, length, new position)` sorted by old
    /// position; a chunk inside a span moves to the same offset in `to` (of `size` bytes).
    /// Only chunks within `offsets` (where the copied ranges lie) are looked at: a
    /// partition's tail holds a chunk per older compacted object too, and looking each up
    /// was most of this work with 1,000 slow partitions. Returns how many chunks moved.
    pub fn relocate(
        &mut self,
        moved: &Moved,
        offsets: Range<i64>,
        to: &Arc<str>,
        size: u64,
    ) -> usize {
        let first = self.tail.partition_point(|c| c.end <= offsets.start);
        let last = self.tail.partition_point(|c| c.base < offsets.end);
        if first >= last {
            return 0;
        }
        let mut n = 0;
        for c in self.tail.range_mut(first..last) {
            let Location::Wal {
                object,
                object_size,
                pos,
                len,
            } = &mut c.location
            else {
                continue;
            };
            let Some(spans) = moved.get(object) else {
                continue;
            };
            let i = spans.partition_point(|(start, _, _)| *start <= *pos);
            let Some((start, span, new)) = i.checked_sub(1).map(|i| spans[i]) else {
                continue;
            };
            if *pos + *len <= start + span {
                *object = to.clone();
                *object_size = size;
                *pos = new + (*pos - start);
                n += 1;
            }
        }
        if n > 0 {
            self.coalesce(to, first..last);
        }
        n
    }

    /// Merges adjacent chunks that follow each other in `object` into one, as the
    /// compacted index entry merged their ranges: a seal then always ends where a range of
    /// the index ends, and the index never has a range that is partly sealed.
    /// Only the chunks at `within` can be in `object`.
    fn coalesce(&mut self, object: &Arc<str>, within: Range<usize>) {
        let after = self.tail.split_off(within.end);
        let mut out: VecDeque<TailChunk> = VecDeque::with_capacity(within.len());
        for c in self.tail.drain(within.start..) {
            if let Some(last) = out.back_mut() {
                if let (
                    Location::Wal {
                        object: o1,
                        pos: p1,
                        len: l1,
                        ..
                    },
                    Location::Wal {
                        object: o2,
                        pos: p2,
                        len: l2,
                        ..
                    },
                ) = (&mut last.location, &c.location)
                {
                    if o1 == object && o2 == object && *p1 + *l1 == *p2 && last.end == c.base {
                        *l1 += *l2;
                        last.end = c.end;
                        last.max_timestamp = last.max_timestamp.max(c.max_timestamp);
                        last.created_ms = last.created_ms.min(c.created_ms);
                        continue;
                    }
                }
            }
            out.push_back(c);
        }
        self.tail.extend(out);
        self.tail.extend(after);
    }
}
