//! Local-directory details of the object store (`Objects`): durable directories, ranged
//! reads into pooled buffers, and the check that a read object was not collected (and its
//! file reused, see `spares.rs`) while it was read.

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::pool::BufferPool;
use crate::spares::Spares;

/// Syncs the directory of `file` always, and its ancestors up to `root` the first time
/// they are seen (a new directory is durable only once its parent is synced); returns the
/// directories synced.
pub(crate) fn sync_dirs(
    file: &std::path::Path,
    root: &std::path::Path,
    known: &HashSet<PathBuf>,
) -> std::io::Result<Vec<PathBuf>> {
    let mut newly = Vec::new();
    let mut dir = file.parent().map(PathBuf::from);
    let mut first = true;
    while let Some(d) = dir {
        if !first && known.contains(&d) {
            break;
        }
        std::fs::File::open(&d)?.sync_all()?;
        newly.push(d.clone());
        if d == root {
            break;
        }
        first = false;
        dir = d.parent().map(PathBuf::from);
    }
    Ok(newly)
}

/// One ranged read of a local object: its file, its key and the range.
pub(crate) type LocalRead = (PathBuf, String, Range<u64>);

/// Ranged reads of local objects, into memory that is not zeroed first (object_store's
/// local backend zeroes every buffer it reads into: a tenth of a consumer's CPU), all in
/// one blocking call: a seal reads hundreds of small ranges of as many WAL objects, and
/// handing each to a blocking thread and back cost more than reading it.
pub(crate) async fn read_local(
    buffers: &Arc<BufferPool>,
    spares: &Arc<Spares>,
    reads: Vec<LocalRead>,
) -> Vec<object_store::Result<Bytes>> {
    let pool = buffers.clone();
    let watch = spares.clone();
    let asked: Vec<(String, Range<u64>)> = reads
        .iter()
        .map(|(_, k, r)| (k.clone(), r.clone()))
        .collect();
    let read = tokio::task::spawn_blocking(move || {
        reads
            .into_iter()
            .map(|(file, key, range)| read_one(&pool, &watch, &file, &key, range))
            .collect::<Vec<_>>()
    })
    .await;
    let read = match read {
        Ok(r) => r,
        Err(e) => {
            let e = e.to_string();
            return asked
                .into_iter()
                .map(|(k, _)| Err(local_error(k, std::io::Error::other(e.clone()))))
                .collect();
        }
    };
    read.into_iter()
        .zip(asked)
        .map(|(r, (path, range))| {
            let wanted = range.end.saturating_sub(range.start);
            match r {
                Ok(buf) if buf.len() as u64 == wanted => Ok(buffers.bytes(buf)),
                Ok(buf) => Err(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!(
                        "range {}..{} of {path}: only {} bytes there",
                        range.start,
                        range.end,
                        buf.len()
                    )
                    .into(),
                }),
                Err(e) => Err(local_error(path, e)),
            }
        })
        .collect()
}

/// One read of [`read_local`]. Blocking.
fn read_one(
    pool: &BufferPool,
    spares: &Spares,
    file: &std::path::Path,
    key: &str,
    range: Range<u64>,
) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let wanted = range.end.saturating_sub(range.start);
    if !may_be_recycled(key) {
        let mut f = std::fs::File::open(file)?;
        f.seek(SeekFrom::Start(range.start))?;
        let mut buf = pool.take(wanted as usize);
        (&mut f).take(wanted).read_to_end(&mut buf)?;
        return Ok(buf);
    }
    // Noted before the file is opened: if no object was collected by the end of the
    // read, the name still denotes the file read (see `Spares::retired`).
    let retired = spares.retired();
    let f = spares.open(file, retired)?;
    let mut buf = pool.take(wanted as usize);
    // A kept file is shared: read at a position. Safe Rust reads at a position only into
    // initialized memory, so the buffer is zeroed first (a seal's ranges are tens of KiB,
    // and zeroing costs a fraction of copying them from the page cache).
    buf.resize(wanted as usize, 0);
    let mut got = 0;
    while got < buf.len() {
        use std::os::unix::fs::FileExt;
        match f.read_at(&mut buf[got..], range.start + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    if spares.retired() != retired {
        still_named(&f, file)?;
    }
    Ok(buf)
}

/// Whether the object's file may be reused for another object once it is collected: WAL
/// objects only (see `spares.rs`). A segment replaced by a rename keeps its old bytes for
/// a reader that opened it before, as it always did.
pub(crate) fn may_be_recycled(key: &str) -> bool {
    key.starts_with(crate::paths::WAL)
}

/// Fails with `NotFound` unless `file` still names the inode `f` was read from: a
/// collected WAL object's inode is reused for a later object (see `spares.rs`), renamed
/// away from its name before it is written over, so bytes read before the name was
/// checked are the old object's.
pub(crate) fn still_named(f: &std::fs::File, file: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let read = f.metadata()?;
    match std::fs::metadata(file) {
        Ok(now) if (now.dev(), now.ino()) == (read.dev(), read.ino()) => Ok(()),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the object was collected while it was read",
        )),
        Err(e) => Err(e),
    }
}

/// A local read's I/O error as object_store reports it: NotFound for a missing file.
pub(crate) fn local_error(path: String, e: std::io::Error) -> object_store::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        object_store::Error::NotFound {
            path,
            source: Box::new(e),
        }
    } else {
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_counts_only_while_the_name_still_denotes_the_file_read() {
        let dir = tempfile::tempdir().unwrap();
        let name = dir.path().join("obj");
        std::fs::write(&name, b"old").unwrap();
        let f = std::fs::File::open(&name).unwrap();
        still_named(&f, &name).unwrap();
        // Collected: renamed away (a spare), then another file under the name.
        std::fs::rename(&name, dir.path().join("spare")).unwrap();
        let e = still_named(&f, &name).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        std::fs::write(&name, b"new").unwrap();
        let e = still_named(&f, &name).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
