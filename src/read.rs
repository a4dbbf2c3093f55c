//! The read path: from an offset, find the sealed segment or WAL range that holds it and
//! hand out the stored batch bytes, through the block cache. Nothing is re-encoded.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError as Code;

use crate::error::{Error, Result};
use crate::partition::{Location, Partition};
use stratus_log::batch;
use stratus_log::cache::{join, BlockCache};
use stratus_log::file_slice::{self, FileSlice, Want};
use stratus_log::segment::{self, IndexEntry};
use stratus_meta::repo::SegmentRef;

/// Bytes read ahead when a read starts (the block cache reads whole blocks anyway).
const MIN_WINDOW: u64 = 64 * 1024;
/// Blocks of a segment fetched ahead of a reader that stopped inside it (its next fetch
/// starts there), so that a sequential consumer finds them in memory.
const READ_AHEAD_BLOCKS: u64 = 2;
const MAX_SOURCES: usize = 64;
/// Segment files kept open for reads sent from them, and for how long unused (an unlinked
/// segment's space is freed once its last descriptor closes).
const OPEN_FILES: u64 = 256;
const OPEN_FILE_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
/// Bytes of a segment file after a read's run brought into the page cache ahead of the
/// reader's next fetch.
const FILE_READ_AHEAD: u64 = 2 << 20;

enum Source {
    Segment(SegmentRef),
    Wal {
        object: Arc<str>,
        object_size: u64,
        pos: u64,
        len: u64,
        max_timestamp: i64,
    },
}

impl Source {
    fn max_timestamp(&self) -> i64 {
        match self {
            Source::Segment(g) => g.max_timestamp,
            Source::Wal { max_timestamp, .. } => *max_timestamp,
        }
    }
}

/// Offsets of a partition as reads see them.
#[derive(Debug, Clone, Copy)]
pub struct Watermarks {
    /// First readable offset.
    pub log_start: i64,
    /// High watermark.
    pub high_watermark: i64,
}

/// What reads need beyond the partition: the block cache, parsed segment indexes, and
/// open segment files (on a local store).
pub struct Reader {
    cache: Arc<BlockCache>,
    indexes: moka::future::Cache<Arc<str>, Arc<Vec<IndexEntry>>>,
    files: moka::future::Cache<Arc<str>, Arc<File>>,
}

impl Reader {
    /// A reader over `cache`, keeping up to 10,000 parsed segment indexes.
    pub fn new(cache: Arc<BlockCache>) -> Self {
        Reader {
            cache,
            indexes: moka::future::Cache::builder().max_capacity(10_000).build(),
            files: moka::future::Cache::builder()
                .max_capacity(OPEN_FILES)
                .time_to_idle(OPEN_FILE_IDLE)
                .build(),
        }
    }

    /// Forgets a segment object (retention deleted it, or a seal replaced it).
    pub async fn forget_segment(&self, key: &Arc<str>, size: u64) {
        self.cache.forget_object(key, size).await;
        self.indexes.invalidate(key).await;
        self.files.invalidate(key).await;
    }

    /// The open file of a segment on a local store; `None` on another store, or when it
    /// cannot be opened (the read then goes through the cache, which reports why).
    async fn file(&self, key: &Arc<str>) -> Option<Arc<File>> {
        if let Some(f) = self.files.get(key).await {
            return Some(f);
        }
        let path = self.cache.local_path(key)?;
        let f = tokio::task::spawn_blocking(move || File::open(path))
            .await
            .ok()?
            .ok()?;
        let f = Arc::new(f);
        self.files.insert(key.clone(), f.clone()).await;
        Some(f)
    }
}

/// Current watermarks.
pub fn watermarks(p: &Partition) -> Watermarks {
    let s = p.state();
    Watermarks {
        log_start: s.log_start(),
        high_watermark: s.high_watermark(),
    }
}

fn sources_from(p: &Partition, offset: i64) -> Result<(Vec<Source>, i64)> {
    let s = p.state();
    if s.is_deleted() {
        return Err(Error::Kafka(Code::UnknownTopicOrPartition));
    }
    if offset < s.log_start() || offset > s.high_watermark() {
        return Err(Error::Kafka(Code::OffsetOutOfRange));
    }
    let hw = s.high_watermark();
    let first = s.segments().partition_point(|g| g.end_offset <= offset);
    let mut out: Vec<Source> = s.segments()[first..]
        .iter()
        .take(MAX_SOURCES)
        .map(|g| Source::Segment(g.clone()))
        .collect();
    for c in s.tail().iter().filter(|c| c.end > offset && c.base < hw) {
        if out.len() >= MAX_SOURCES {
            break;
        }
        if let Location::Wal {
            object,
            object_size,
            pos,
            len,
        } = &c.location
        {
            out.push(Source::Wal {
                object: object.clone(),
                object_size: *object_size,
                pos: *pos,
                len: *len,
                max_timestamp: c.max_timestamp,
            });
        }
    }
    Ok((out, hw))
}

/// A run of whole batches: a slice of a cached block, or a range of a segment's file sent
/// from it as it is (`sendfile`).
#[derive(Debug, Clone)]
pub enum Piece {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A range of a local segment file.
    File(FileSlice),
}

impl Piece {
    /// Its length.
    pub fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::File(f) => usize::try_from(f.len).unwrap_or(usize::MAX),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its bytes in memory (a file's are read: a blocking read).
    pub fn bytes(&self) -> std::io::Result<Bytes> {
        match self {
            Piece::Bytes(b) => Ok(b.clone()),
            Piece::File(f) => f.read().map(Bytes::from),
        }
    }
}

/// Batches read, in order, as the slices of cached blocks (or ranges of segment files)
/// they were found in: a response writes them one after another, so they are joined into
/// one buffer only where a caller needs one ([`Records::join`]).
#[derive(Debug, Default, Clone)]
pub struct Records(Vec<Piece>);

impl Records {
    /// Bytes in all.
    pub fn len(&self) -> usize {
        self.0.iter().map(Piece::len).sum()
    }

    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Piece::is_empty)
    }

    /// The pieces, in order.
    pub fn into_pieces(self) -> Vec<Piece> {
        self.0
    }

    /// One buffer (a copy, unless there is one piece in memory); a file's range is read.
    pub fn join(self) -> std::io::Result<Bytes> {
        let pieces = self
            .0
            .iter()
            .map(Piece::bytes)
            .collect::<std::io::Result<_>>()?;
        Ok(join(pieces))
    }
}

/// Reads whole batches from `offset`, at most `max_bytes` unless the first batch alone is
/// larger (then exactly that batch, as Kafka does), never beyond the high watermark.
pub async fn read(
    reader: &Reader,
    p: &Partition,
    offset: i64,
    max_bytes: usize,
) -> Result<Records> {
    read_for(reader, p, offset, max_bytes, false, i64::MAX).await
}

/// [`read`], for a connection that can send a file's bytes itself (plaintext): where a
/// segment's file is local, its batches are a range of it ([`Piece::File`]) rather than
/// bytes read into memory. Never at or past `until` either: the high watermark a fetch
/// response reports, looked up before its reads (which a commit since may have moved).
pub async fn read_for(
    reader: &Reader,
    p: &Partition,
    offset: i64,
    max_bytes: usize,
    files: bool,
    until: i64,
) -> Result<Records> {
    let (sources, hw) = sources_from(p, offset)?;
    let hw = hw.min(until);
    if offset >= hw {
        return Ok(Records::default());
    }
    let mut out: Vec<Piece> = Vec::new();
    let mut taken = 0usize;
    let mut next = offset;
    for src in &sources {
        if let (true, Source::Segment(g)) = (files, src) {
            let want = Want {
                from: next,
                high_watermark: hw,
                taken: taken as u64,
                max_bytes: max_bytes as u64,
            };
            if let Some((file, walked)) = from_file(reader, g, want).await? {
                if let Some((pos, len)) = walked.run {
                    taken += len as usize;
                    out.push(Piece::File(FileSlice {
                        file,
                        pos,
                        len,
                        records: walked.records,
                    }));
                }
                next = walked.next;
                if walked.stopped {
                    break;
                }
                continue;
            }
        }
        let (key, size, start, end) = match src {
            Source::Segment(g) => {
                let index = index_of(reader, g).await?;
                let pos = segment::position_of_offset(&index, offset);
                (Arc::from(g.key.as_str()), g.size, pos, g.data_len)
            }
            Source::Wal {
                object,
                object_size,
                pos,
                len,
                ..
            } => (object.clone(), *object_size, *pos, pos + len),
        };
        let mut run = Run::default();
        let stopped = scan(reader, &key, size, start, end, |item| {
            let s = item.span();
            if s.base_offset >= hw {
                return Step::Stop;
            }
            // Below the offset, or handed out already by the previous source.
            if s.last_offset < next {
                return Step::Skip;
            }
            let len = s.len as usize;
            if taken > 0 && taken + len > max_bytes {
                return Step::Stop;
            }
            taken += len;
            next = s.last_offset + 1;
            match item {
                Item::In(b, window) => run.push(&mut out, window, &b.bytes),
                Item::Across(_, pieces) => {
                    run.finish(&mut out);
                    out.extend(pieces.iter().cloned().map(Piece::Bytes));
                }
            }
            if taken >= max_bytes {
                Step::Stop
            } else {
                Step::Continue
            }
        })
        .await?;
        run.finish(&mut out);
        if let Some(at) = stopped {
            if let Source::Segment(g) = src {
                let block = reader.cache.block_size().max(1);
                let (next, last) = (at / block + 1, g.data_len.div_ceil(block));
                reader
                    .cache
                    .read_ahead(&key, size, next..(next + READ_AHEAD_BLOCKS).min(last));
            }
            break;
        }
    }
    Ok(Records(out))
}

/// The run of `g`'s batches a read `want`s, from its local file: `None` where it has none
/// (the read goes through the cache).
async fn from_file(
    reader: &Reader,
    g: &SegmentRef,
    want: Want,
) -> Result<Option<(Arc<File>, file_slice::Walked)>> {
    let key: Arc<str> = Arc::from(g.key.as_str());
    let Some(file) = reader.file(&key).await else {
        return Ok(None);
    };
    let index = index_of(reader, g).await?;
    let (data_len, end_offset, f) = (g.data_len, g.end_offset, file.clone());
    let walked = tokio::task::spawn_blocking(move || {
        let seg = file_slice::Segment {
            file: &f,
            index: &index,
            data_len,
            end_offset,
        };
        let walked = file_slice::whole_batches(&seg, &want)?;
        file_slice::prefetch(&seg, &walked, FILE_READ_AHEAD);
        Ok::<_, std::io::Error>(walked)
    })
    .await;
    match walked {
        Ok(Ok(w)) => Ok(Some((file, w))),
        Ok(Err(e)) => {
            tracing::error!(object = g.key, error = %e, "segment file is corrupt");
            Err(Error::Kafka(Code::KafkaStorageError))
        }
        Err(_) => Err(Error::Kafka(Code::KafkaStorageError)),
    }
}

/// Adjacent batches of one window (a slice of a cached block) kept as one slice of it: a
/// read copies record data only where it crosses a block.
#[derive(Default)]
struct Run {
    /// The window, and the run's start and end in it.
    open: Option<(Bytes, usize, usize)>,
}

impl Run {
    fn push(&mut self, out: &mut Vec<Piece>, window: &Bytes, batch: &Bytes) {
        let at = (batch.as_ptr() as usize).wrapping_sub(window.as_ptr() as usize);
        let inside = at
            .checked_add(batch.len())
            .is_some_and(|e| e <= window.len());
        match &mut self.open {
            Some((w, _, end)) if inside && w.as_ptr() == window.as_ptr() && *end == at => {
                *end = at + batch.len();
                return;
            }
            _ => {}
        }
        self.finish(out);
        if inside {
            self.open = Some((window.clone(), at, at + batch.len()));
        } else {
            out.push(Piece::Bytes(batch.clone()));
        }
    }

    fn finish(&mut self, out: &mut Vec<Piece>) {
        if let Some((w, start, end)) = self.open.take() {
            out.push(Piece::Bytes(w.slice(start..end)));
        }
    }
}

enum Step {
    Skip,
    Continue,
    Stop,
}

/// A batch [`scan`] came to.
enum Item<'a> {
    /// A batch in the window read: a slice of the window.
    In(&'a batch::Batch, &'a Bytes),
    /// A batch across blocks (larger than what was left of its first block): where it
    /// lies, and its bytes as slices of the cached blocks, so that a fetch sends them
    /// without joining them (a batch of 1 MiB, as producers that batch for object
    /// storage send, was copied whole: 11 % of the broker's CPU samples in a cold read
    /// from MinIO).
    Across(batch::Span, &'a [Bytes]),
}

impl Item<'_> {
    fn span(&self) -> batch::Span {
        match self {
            Item::In(b, _) => batch::Span {
                base_offset: b.base_offset,
                last_offset: b.last_offset(),
                len: b.bytes.len() as u64,
            },
            Item::Across(s, _) => *s,
        }
    }

    /// The whole batch (a copy for one across blocks).
    fn batch(&self) -> Option<batch::Batch> {
        match self {
            Item::In(b, _) => Some((*b).clone()),
            Item::Across(_, pieces) => batch::stored(&join(pieces.to_vec())).next(),
        }
    }
}

/// Visits the batches stored in `[start, end)` of an object. Returns where the batch the
/// visitor stopped at starts, if it stopped.
async fn scan(
    reader: &Reader,
    key: &Arc<str>,
    size: u64,
    start: u64,
    end: u64,
    mut visit: impl FnMut(Item<'_>) -> Step,
) -> Result<Option<u64>> {
    let block = reader.cache.block_size().max(1);
    let mut pos = start;
    let mut window = 0;
    while pos < end {
        // To the end of the block holding `pos` (a slice of the cached block, no copy),
        // unless that is too little or a batch larger than that is next.
        let want = if window > 0 {
            window
        } else {
            ((pos / block + 1) * block - pos).max(MIN_WINDOW)
        };
        let bytes = reader
            .cache
            .read(key, size, pos..(pos + want).min(end))
            .await?;
        let mut consumed = 0u64;
        for b in batch::stored(&bytes) {
            let at = pos + consumed;
            consumed += b.bytes.len() as u64;
            match visit(Item::In(&b, &bytes)) {
                Step::Skip | Step::Continue => {}
                Step::Stop => return Ok(Some(at)),
            }
        }
        if consumed == 0 {
            // The exact read of one batch (below) that does not hold it.
            if window > 0 {
                return Err(corrupt(key));
            }
            // A batch larger than the window: read exactly that batch, as the slices of
            // the blocks it spans.
            let span = batch::span(&bytes).map_err(|_| corrupt(key))?;
            if pos + span.len > end {
                return Err(corrupt(key));
            }
            let pieces = reader
                .cache
                .read_pieces(key, size, pos..pos + span.len)
                .await?;
            if pieces.len() > 1 {
                if pieces.iter().map(|p| p.len() as u64).sum::<u64>() != span.len {
                    return Err(corrupt(key));
                }
                match visit(Item::Across(span, &pieces)) {
                    Step::Skip | Step::Continue => {}
                    Step::Stop => return Ok(Some(pos)),
                }
                pos += span.len;
                continue;
            }
            // Within one block after all: read it as a window of its own.
            window = span.len;
            continue;
        }
        pos += consumed;
        window = 0;
    }
    Ok(None)
}

fn corrupt(key: &str) -> Error {
    tracing::error!(object = key, "stored batch is corrupt");
    Error::Kafka(Code::KafkaStorageError)
}

async fn index_of(reader: &Reader, g: &SegmentRef) -> Result<Arc<Vec<IndexEntry>>> {
    let key: Arc<str> = Arc::from(g.key.as_str());
    if let Some(i) = reader.indexes.get(&key).await {
        return Ok(i);
    }
    let tail = reader.cache.read(&key, g.size, g.data_len..g.size).await?;
    let index = segment::parse_index(&tail).ok_or_else(|| corrupt(&g.key))?;
    reader.indexes.insert(key, index.clone()).await;
    Ok(index)
}

/// The first offset whose record timestamp is at least `ts`, with that timestamp.
pub async fn offset_for_timestamp(
    reader: &Reader,
    p: &Partition,
    ts: i64,
) -> Result<Option<(i64, i64)>> {
    let start = watermarks(p).log_start;
    let (sources, hw) = sources_from(p, start)?;
    for src in sources.iter().filter(|s| s.max_timestamp() >= ts) {
        let found = find_in_source(reader, src, hw, |b| b.max_timestamp >= ts, |r| r >= ts).await?;
        if let Some((o, t)) = found {
            return Ok(Some((o.max(start), t)));
        }
    }
    Ok(None)
}

/// The offset and timestamp of the record with the largest timestamp.
pub async fn max_timestamp(reader: &Reader, p: &Partition) -> Result<Option<(i64, i64)>> {
    let start = watermarks(p).log_start;
    let (sources, hw) = sources_from(p, start)?;
    let Some(best) = sources.iter().map(Source::max_timestamp).max() else {
        return Ok(None);
    };
    for src in sources.iter().filter(|s| s.max_timestamp() == best) {
        if let Some(found) =
            find_in_source(reader, src, hw, |b| b.max_timestamp == best, |r| r == best).await?
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

async fn find_in_source(
    reader: &Reader,
    src: &Source,
    hw: i64,
    batch_matches: impl Fn(&batch::Batch) -> bool,
    record_matches: impl Fn(i64) -> bool,
) -> Result<Option<(i64, i64)>> {
    let (key, size, start, end): (Arc<str>, u64, u64, u64) = match src {
        Source::Segment(g) => (Arc::from(g.key.as_str()), g.size, 0, g.data_len),
        Source::Wal {
            object,
            object_size,
            pos,
            len,
            ..
        } => (object.clone(), *object_size, *pos, pos + len),
    };
    let mut hit = None;
    let mut broken = false;
    scan(reader, &key, size, start, end, |item| {
        if item.span().base_offset >= hw {
            return Step::Stop;
        }
        let Some(b) = item.batch() else {
            broken = true;
            return Step::Stop;
        };
        if batch_matches(&b) {
            hit = Some(b);
            return Step::Stop;
        }
        Step::Continue
    })
    .await?;
    if broken {
        return Err(corrupt(&key));
    }
    let Some(b) = hit else { return Ok(None) };
    const LOG_APPEND_TIME: i16 = 1 << 3;
    if b.attributes & LOG_APPEND_TIME != 0 {
        return Ok(Some((b.base_offset, b.max_timestamp)));
    }
    let mut bytes = b.bytes.clone();
    let set = RecordBatchDecoder::decode(&mut bytes).map_err(|_| corrupt(&key))?;
    Ok(set
        .records
        .iter()
        .find(|r| record_matches(r.timestamp))
        .map(|r| (r.offset, r.timestamp))
        .or(Some((b.base_offset, b.max_timestamp))))
}
