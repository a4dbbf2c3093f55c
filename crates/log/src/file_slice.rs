//! Runs of whole batches in a sealed segment's file on a local store, found from batch
//! headers alone, so that a fetch can send them from the page cache to the socket
//! (`sendfile`) instead of reading them into memory and writing them out again: two copies
//! through user memory that were 60 % of a hot consumer's broker CPU (docs/dev/sendfile.md).
//!
//! A walk reads one 61-byte header per batch it looks at, and the segment's index (an entry
//! every 4 KiB of batches, at a batch boundary) skips the batches in between: a fetch of
//! 1 MiB of 16 KiB batches reads two or three headers, not the megabyte.
//!
//! Only segments: they are never written over (compaction and retention replace or unlink
//! them, and an open descriptor keeps the old bytes). WAL objects are not, since a
//! collected WAL object's file is reused for a later one (see `spares.rs`).

use std::fs::File;
use std::io::{Error, ErrorKind};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::batch::{self, Span, HEADER_LEN};
use crate::segment::{self, IndexEntry};

/// A byte range of an open file, sent as it is.
#[derive(Debug, Clone)]
pub struct FileSlice {
    /// The file.
    pub file: Arc<File>,
    /// Where the range starts.
    pub pos: u64,
    /// Its length.
    pub len: u64,
    /// Records in its batches (the offsets they span).
    pub records: u64,
}

impl FileSlice {
    /// The bytes, read (where they cannot be sent from the file: TLS).
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        let len = usize::try_from(self.len).map_err(Error::other)?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, self.pos)?;
        Ok(buf)
    }
}

/// A sealed segment's file and what its record says of it.
pub struct Segment<'a> {
    /// The open file.
    pub file: &'a File,
    /// Its index.
    pub index: &'a [IndexEntry],
    /// Bytes of batches (the index and footer follow).
    pub data_len: u64,
    /// One past its last offset.
    pub end_offset: i64,
}

/// What a read wants from a segment.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    /// The first offset wanted (its batch is the first sent).
    pub from: i64,
    /// No batch from here on is sent.
    pub high_watermark: i64,
    /// Bytes the read has taken already, from earlier segments.
    pub taken: u64,
    /// The most it takes in all, unless its first batch alone is larger (then that batch,
    /// as Kafka does).
    pub max_bytes: u64,
}

/// What a walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    /// Where the run of batches starts and how long it is; `None` when nothing was taken.
    pub run: Option<(u64, u64)>,
    /// The offset after the run (where a next source would continue).
    pub next: i64,
    /// Records in the run (the offsets its batches span).
    pub records: u64,
    /// The read ends here: a batch did not fit, reached the high watermark, or filled it.
    pub stopped: bool,
}

fn invalid(what: &'static str) -> Error {
    Error::new(ErrorKind::InvalidData, what)
}

fn span_at(seg: &Segment<'_>, pos: u64) -> std::io::Result<Span> {
    if pos + HEADER_LEN as u64 > seg.data_len {
        return Err(invalid("batch header beyond the segment's batches"));
    }
    let mut h = [0u8; HEADER_LEN];
    seg.file.read_exact_at(&mut h, pos)?;
    let s = batch::span(&h).map_err(|e| Error::new(ErrorKind::InvalidData, e))?;
    if pos + s.len > seg.data_len {
        return Err(invalid("batch beyond the segment's batches"));
    }
    Ok(s)
}

/// The run of whole batches of `seg` that a read `w` takes, as a read of batch bytes does:
/// from the batch holding `w.from`, each batch below the high watermark while it fits in
/// `w.max_bytes` (the first of the read whatever its size). An error for a header that is
/// not a batch's, or one that does not end inside the segment's batches.
pub fn whole_batches(seg: &Segment<'_>, w: &Want) -> std::io::Result<Walked> {
    let mut pos = segment::position_of_offset(seg.index, w.from);
    // The batch holding `from`: those before it (below it in the same index interval) are
    // skipped.
    let first = loop {
        if pos >= seg.data_len {
            return Ok(Walked {
                run: None,
                next: seg.end_offset.max(w.from),
                records: 0,
                stopped: false,
            });
        }
        let s = span_at(seg, pos)?;
        if s.last_offset >= w.from {
            break s;
        }
        pos += s.len;
    };
    let (start, first_base) = (pos, first.base_offset);
    let (mut end, mut taken, mut next) = (start, w.taken, w.from);
    let mut ahead = Some(first);
    let stopped = loop {
        // `end` is a batch boundary; `ahead` the batch there when its header was read.
        let s = match ahead.take() {
            Some(s) => s,
            None if end >= seg.data_len => {
                next = seg.end_offset;
                break taken >= w.max_bytes;
            }
            None => span_at(seg, end)?,
        };
        if s.base_offset >= w.high_watermark || (taken > 0 && taken + s.len > w.max_bytes) {
            break true;
        }
        taken += s.len;
        end += s.len;
        next = s.last_offset + 1;
        if taken >= w.max_bytes {
            break true;
        }
        // Every batch before an index entry that lies within the room left, and at or
        // below the high watermark, is taken without reading its header.
        let limit = end + (w.max_bytes - taken);
        let i = seg.index.partition_point(|e| e.pos <= limit);
        if let Some(e) = i.checked_sub(1).and_then(|i| seg.index.get(i)) {
            if e.pos > end && e.pos <= seg.data_len && e.offset <= w.high_watermark {
                taken += e.pos - end;
                end = e.pos;
                next = e.offset;
            }
        }
    };
    Ok(Walked {
        run: (end > start).then_some((start, end - start)),
        next: next.max(w.from),
        records: u64::try_from(next - first_base).unwrap_or(0),
        stopped,
    })
}

/// Brings the run a walk found into the page cache, and asks for `ahead` bytes after it
/// (a sequential reader's next fetch) in the background: `sendfile` runs on the
/// connection's thread, and a page it finds missing is read from disk right there, while
/// this runs on a thread that may wait. A seal drops what it wrote from the page cache
/// (see `paced.rs`), so a consumer right behind the producers reads it from disk.
///
/// The whole range is asked for at once (`fadvise(WILLNEED)`, which starts the reads in
/// order and does not wait), then a byte of the run's last page is read, which waits for
/// that page and, nearly always, for the pages before it: a single-byte read, not a copy.
pub fn prefetch(seg: &Segment<'_>, walked: &Walked, ahead: u64) {
    let Some((pos, len)) = walked.run else {
        return;
    };
    let end = (pos + len + ahead).min(seg.data_len);
    let all = std::num::NonZeroU64::new(end.saturating_sub(pos));
    if let Err(e) = rustix::fs::fadvise(seg.file, pos, all, rustix::fs::Advice::WillNeed) {
        tracing::debug!(error = %e, "fadvise(WILLNEED) failed");
    }
    let mut last = [0u8; 1];
    let _ = seg.file.read_at(&mut last, (pos + len).saturating_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    /// A segment of batches of `records` records each (9 bytes a record), offsets from
    /// 100, written to a file; with the stored batches.
    fn segment_file(records: &[i32]) -> (tempfile::NamedTempFile, segment::Built, Vec<Bytes>) {
        let mut base = 100i64;
        let batches: Vec<Bytes> = records
            .iter()
            .map(|&n| {
                let mut b = crate::testing::make_batch(n, -1, -1, 5).to_vec();
                b[..8].copy_from_slice(&base.to_be_bytes());
                base += i64::from(n);
                Bytes::from(b)
            })
            .collect();
        let built = segment::build(&batches).unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &built.body).unwrap();
        (f, built, batches)
    }

    /// What reading the batch bytes one batch at a time takes (the read path's rule).
    fn model(batches: &[Bytes], w: &Want) -> (Vec<u8>, bool) {
        let (mut out, mut taken) = (Vec::new(), w.taken);
        for b in batches.iter().flat_map(batch::stored) {
            if b.last_offset() < w.from {
                continue;
            }
            if b.base_offset >= w.high_watermark
                || (taken > 0 && taken + b.bytes.len() as u64 > w.max_bytes)
            {
                return (out, true);
            }
            taken += b.bytes.len() as u64;
            out.extend_from_slice(&b.bytes);
            if taken >= w.max_bytes {
                return (out, true);
            }
        }
        (out, false)
    }

    fn walk(
        f: &tempfile::NamedTempFile,
        built: &segment::Built,
        w: &Want,
    ) -> std::io::Result<Walked> {
        let index = segment::parse_index(&built.body.slice(built.data_len as usize..)).unwrap();
        let file = File::open(f.path()).unwrap();
        let seg = Segment {
            file: &file,
            index: &index,
            data_len: built.data_len,
            end_offset: built.end_offset,
        };
        whole_batches(&seg, w)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn a_walk_takes_exactly_what_reading_every_batch_takes(
            records in proptest::collection::vec(1i32..400, 1..60),
            from in 0i64..8000,
            hw_cut in 0i64..9000,
            taken in prop_oneof![Just(0u64), 1u64..20_000],
            max_bytes in 1u64..60_000,
        ) {
            let (f, built, batches) = segment_file(&records);
            let from = 100 + from % (built.end_offset - 100);
            let high_watermark = (100 + hw_cut).min(built.end_offset);
            let w = Want { from, high_watermark, taken, max_bytes: max_bytes.max(taken) };
            let got = walk(&f, &built, &w).unwrap();
            let (want, stopped) = model(&batches, &w);
            let bytes = got.run.map_or(Vec::new(), |(pos, len)| {
                built.body[pos as usize..(pos + len) as usize].to_vec()
            });
            prop_assert_eq!(bytes.len(), want.len());
            prop_assert!(bytes == want);
            prop_assert_eq!(got.stopped, stopped);
            if !want.is_empty() {
                let runs: Vec<_> = batch::stored(&Bytes::from(want)).collect();
                let span: i64 = runs.iter().map(|b| i64::from(b.last_offset_delta) + 1).sum();
                prop_assert_eq!(got.records, span as u64);
                prop_assert_eq!(got.next, runs.last().unwrap().last_offset() + 1);
            } else if !stopped {
                prop_assert_eq!(got.next, built.end_offset);
            }
        }
    }

    #[test]
    fn a_header_that_is_not_a_batch_is_an_error_not_a_run() {
        let (f, built, _) = segment_file(&[50, 50, 50]);
        let first_len = batch::stored(&built.body.slice(..built.data_len as usize))
            .next()
            .unwrap()
            .bytes
            .len() as u64;
        // The second batch's magic byte.
        f.as_file().write_at(&[7], first_len + 16).unwrap();
        let w = Want {
            from: 100,
            high_watermark: built.end_offset,
            taken: 0,
            max_bytes: 1 << 20,
        };
        let e = walk(&f, &built, &w).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        // A slice reads back what the file holds.
        let slice = FileSlice {
            file: Arc::new(File::open(f.path()).unwrap()),
            pos: 0,
            len: first_len,
            records: 50,
        };
        assert_eq!(
            slice.read().unwrap(),
            built.body[..first_len as usize].to_vec()
        );
    }
}
