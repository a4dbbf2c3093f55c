//! Spare files: a local WAL object that is collected is kept under `_staging/` and written
//! over by a later WAL object, instead of being unlinked and a new file created.
//!
//! At full speed the broker writes hundreds of WAL objects a second and collects as many.
//! On ext4 without a journal (the test VMs' root), creating a file costs far more than
//! writing it: the inode allocator skips every inode freed in the last few seconds (five
//! minutes while its inode-table block is dirty), each skip a buffer-cache lookup, so with
//! thousands freed lately every create walked them all. Creates and unlinks took 17 % of
//! the broker's CPU samples while 8 partitions were produced at full speed (`perf record`,
//! 2026-12-05): `find_inode_bit` → `recently_deleted` 12 %, `unlink` 4.5 %. A reused
//! file needs no inode; its blocks are mostly allocated already.
//!
//! A spare keeps its old bytes until it is written over, so a reader must never take a
//! reused file's new bytes for the old object's: local reads check, after reading, that
//! the name still denotes the inode they read (`local.rs`), and the spare is
//! renamed away from its old name before it is ever written (only WAL objects are
//! recycled, so only their reads check). A crash can leave a reused file holding part of
//! its new object and part of its old one: the WAL's recovery takes only objects whose
//! footer names them and whose batches pass their CRCs. Before a reused file's object is
//! acknowledged, the spare's own name is removed durably (its directory synced) and the
//! file's inode is synced whole, so that no start after a crash can remove a name that
//! an acknowledged object still needs, whatever the file system's journal does.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::handles::Handles;
use crate::paced::STAGING;

/// Spares kept at most.
pub const MAX_FILES: usize = 4096;
/// Bytes of spares kept at most.
pub const MAX_BYTES: u64 = 512 << 20;
/// A larger object is unlinked, not kept (a WAL object is rarely over a few MiB).
pub const MAX_FILE_BYTES: u64 = 8 << 20;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The spare files of one local store.
#[derive(Debug, Default)]
pub struct Spares {
    inner: Mutex<Inner>,
    /// Files taken away from their names so far ([`Spares::retired`]).
    retired: AtomicU64,
    /// Open files of WAL objects, for reads (see `handles.rs`).
    handles: Handles,
}

#[derive(Debug, Default)]
struct Inner {
    files: Vec<(PathBuf, u64)>,
    bytes: u64,
}

impl Spares {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many files were taken away from their names so far: counted after a file's name
    /// is gone and before it can be written over. A read that sees the same count before
    /// it opened a file and after it read it read a file no spare was made of meanwhile,
    /// so it need not check that the name still denotes it (a path lookup per read).
    pub fn retired(&self) -> u64 {
        self.retired.load(Ordering::SeqCst)
    }

    /// The open file of a WAL object for a read that noted [`Spares::retired`] as
    /// `retired` before: a kept one, or opened now. Blocking.
    pub(crate) fn open(
        &self,
        file: &Path,
        retired: u64,
    ) -> io::Result<std::sync::Arc<std::fs::File>> {
        self.handles.open(file, || self.retired() == retired)
    }

    /// Forgets the open file of an object deleted without being made a spare.
    pub(crate) fn forget(&self, file: &Path) {
        self.handles.forget(file);
    }

    /// How many spares are kept, and their bytes.
    pub fn held(&self) -> (usize, u64) {
        let s = self.lock();
        (s.files.len(), s.bytes)
    }

    /// Takes `file` away from its name: kept as a spare if there is room, else unlinked.
    /// A missing file is not an error. Blocking.
    pub fn retire(&self, root: &Path, file: &Path) -> io::Result<()> {
        let len = match std::fs::metadata(file) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let room = {
            let mut s = self.lock();
            let room = len <= MAX_FILE_BYTES
                && s.files.len() < MAX_FILES
                && s.bytes.saturating_add(len) <= MAX_BYTES;
            if room {
                // Reserved now, so that two retirements never both take the last room.
                s.bytes += len;
            }
            room
        };
        if !room {
            self.handles.forget(file);
            return match std::fs::remove_file(file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let dir = root.join(STAGING);
        let spare = dir.join(format!(
            "spare-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let moved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(file, &spare));
        self.retired.fetch_add(1, Ordering::SeqCst);
        self.handles.forget(file);
        let mut s = self.lock();
        match moved {
            Ok(()) => {
                s.files.push((spare, len));
                Ok(())
            }
            Err(e) => {
                s.bytes -= len;
                match e.kind() {
                    io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                }
            }
        }
    }

    /// Gives a spare the name `dest` (an `AlreadyExists` error if the name is taken);
    /// `false` if there is none. The file holds an old object's bytes: write it over and
    /// cut it to length. Blocking.
    pub fn reuse(&self, dest: &Path) -> io::Result<bool> {
        loop {
            let Some((spare, len)) = ({
                let mut s = self.lock();
                let f = s.files.pop();
                if let Some((_, len)) = &f {
                    s.bytes -= len;
                }
                f
            }) else {
                return Ok(false);
            };
            match std::fs::hard_link(&spare, dest) {
                Ok(()) => {
                    // The spare's own name goes, durably before the object under `dest`
                    // can be acknowledged: a second name left on disk by a crash would be
                    // removed by the next start's `clear_staging`, and on a file system
                    // without a journal the link count on disk may not count it.
                    std::fs::remove_file(&spare)?;
                    if let Some(dir) = spare.parent() {
                        std::fs::File::open(dir)?.sync_all()?;
                    }
                    return Ok(true);
                }
                // The name is taken: the caller's error; the spare serves the next.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let mut s = self.lock();
                    s.bytes += len;
                    s.files.push((spare, len));
                    return Err(e);
                }
                // Cleared by a restart's `clear_staging` meanwhile, or not linkable here
                // (the spare is dropped: a new file is created instead).
                Err(e) => {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::debug!(error = %e, "spare file not reused");
                        let _ = std::fs::remove_file(&spare);
                    }
                    continue;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_retired_file_is_reused_under_a_new_name_and_never_overwrites_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = root.join("old");
        std::fs::write(&old, b"old object").unwrap();
        let ino = std::fs::metadata(&old).unwrap().ino();
        let spares = Spares::default();
        spares.retire(root, &old).unwrap();
        assert!(!old.exists(), "the old name is gone at once");
        assert_eq!(spares.held(), (1, 10));
        // A name that is taken is refused, and the spare is kept.
        let taken = root.join("taken");
        std::fs::write(&taken, b"mine").unwrap();
        let e = spares.reuse(&taken).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&taken).unwrap(), b"mine");
        assert_eq!(spares.held(), (1, 10));
        let new = root.join("new");
        assert!(spares.reuse(&new).unwrap());
        assert_eq!(
            std::fs::metadata(&new).unwrap().ino(),
            ino,
            "the same inode"
        );
        assert_eq!(spares.held(), (0, 0));
        assert!(!spares.reuse(&root.join("other")).unwrap(), "none left");
        assert_eq!(
            std::fs::read_dir(root.join(STAGING)).unwrap().count(),
            0,
            "the spare's own name is gone"
        );
        // Missing files are not errors.
        spares.retire(root, &root.join("missing")).unwrap();
        assert_eq!(spares.held(), (0, 0));
    }

    #[test]
    fn spares_are_bounded_and_a_cleared_spare_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let spares = Spares::default();
        let big = root.join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        spares.retire(root, &big).unwrap();
        assert!(!big.exists(), "unlinked");
        assert_eq!(spares.held(), (0, 0));
        for i in 0..3 {
            let f = root.join(format!("f{i}"));
            std::fs::write(&f, b"x").unwrap();
            spares.retire(root, &f).unwrap();
        }
        assert_eq!(spares.held(), (3, 3));
        // A spare that cannot be linked there (not a directory) is dropped, not kept.
        let file = root.join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(!spares.reuse(&file.join("below")).unwrap());
        assert_eq!(spares.held(), (0, 0), "all three tried and dropped");
        for i in 0..3 {
            let f = root.join(format!("g{i}"));
            std::fs::write(&f, b"x").unwrap();
            spares.retire(root, &f).unwrap();
        }
        // A restart's clear_staging removed them: reuse finds none and says so.
        crate::paced::clear_staging(root).unwrap();
        assert!(!spares.reuse(&root.join("n")).unwrap());
        assert!(!root.join("n").exists());
        assert_eq!(spares.held(), (0, 0));
    }
}
