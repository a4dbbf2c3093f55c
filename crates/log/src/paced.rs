//! Background writes to a local directory that never stall the foreground's fsyncs.
//!
//! On ext4 (data=ordered) an fsync commits the journal, and the commit first writes out
//! the data of every file whose blocks the transaction allocated. A 32 MiB segment written
//! in one go and fsynced at the end therefore makes every WAL fsync issued meanwhile wait
//! for up to 32 MiB of writeback: produce p99 went from 9 ms to 75 ms at 50 MiB/s while
//! seals ran. Writing the segment a slice at a time, each slice made durable before the
//! next (what RocksDB's `bytes_per_sync` does), bounds that wait to one slice.
//!
//! The object is written under `_staging/` and linked (or renamed) into place once whole,
//! so a reader never sees part of it; a crash leaves only a staging file, which
//! [`clear_staging`] removes at the next start.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory, under the store's root, of objects being written.
pub const STAGING: &str = "_staging";

/// Bytes written between two syncs.
pub const SLICE: usize = 1 << 20;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// How the object's name is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fails with `AlreadyExists` if the name is taken.
    Create,
    /// Replaces an object of that name atomically.
    Replace,
}

/// Writes `data` as `root/key`, a slice at a time; returns the object's path. Blocking:
/// call it from a blocking thread.
pub fn write(root: &Path, key: &str, data: &[u8], mode: Mode) -> io::Result<PathBuf> {
    let dest = root.join(key);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let staging_dir = root.join(STAGING);
    std::fs::create_dir_all(&staging_dir)?;
    let staging = staging_dir.join(format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_slices(&staging, data).and_then(|()| match mode {
        Mode::Create => std::fs::hard_link(&staging, &dest),
        Mode::Replace => std::fs::rename(&staging, &dest),
    });
    // Linked (or failed): the staging name goes; renamed: it is gone already.
    if mode == Mode::Create || result.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    result.map(|()| dest)
}

fn write_slices(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create_new(path)?;
    for slice in data.chunks(SLICE) {
        f.write_all(slice)?;
        f.sync_data()?;
    }
    f.sync_all()
}

/// Removes staging files left by a crash.
pub fn clear_staging(root: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(root.join(STAGING)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_objects_and_never_overwrites_in_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(SLICE * 2 + 17)).map(|i| i as u8).collect();
        let p = write(dir.path(), "a/b/obj", &data, Mode::Create).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), data);
        let e = write(dir.path(), "a/b/obj", b"other", Mode::Create).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), data, "untouched");
        write(dir.path(), "a/b/obj", b"other", Mode::Replace).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"other");
        assert_eq!(
            std::fs::read_dir(dir.path().join(STAGING)).unwrap().count(),
            0,
            "no staging file left"
        );
        clear_staging(dir.path()).unwrap();
        assert!(!dir.path().join(STAGING).exists());
        clear_staging(dir.path()).unwrap();
    }
}
