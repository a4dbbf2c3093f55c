//! Spare files: a local WAL object that is collected is kept, under a spare's name in its
//! own directory, and written over by a later WAL object of that directory, instead of
//! being unlinked and a new file created.
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
//! footer names them and whose batches pass their CRCs.
//!
//! A spare stays in the directory of the object it was, and is only given a name in that
//! directory: the one directory sync that makes the new object's name durable (which
//! `Objects::put_own` does before it returns) makes the spare's name's removal durable
//! with it, whatever the file system's journal does. (Spares used to live under
//! `_staging/`, whose directory then had to be synced as well: a third sync per WAL
//! object, about 0.2 ms of a produce's average latency at 50 MiB/s.) A spare's name,
//! `_spare#` and digits, is one that object listings skip. At a start, [`clear`] removes
//! the spares left, except one whose inode another name in its directory still denotes:
//! a crash in the middle of a directory's write-back can leave both names with a link
//! count of one, and removing the spare's name would free the other's file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::handles::Handles;

/// Spares kept at most.
pub const MAX_FILES: usize = 4096;
/// Bytes of spares kept at most.
pub const MAX_BYTES: u64 = 512 << 20;
/// A larger object is unlinked, not kept (a WAL object is rarely over a few MiB).
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// How a spare's name starts; the rest is digits (object listings skip such names).
const PREFIX: &str = "_spare#";

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
    pub fn retire(&self, file: &Path) -> io::Result<()> {
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
        let spare = file.with_file_name(format!(
            "{PREFIX}{}{:012}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let moved = std::fs::rename(file, &spare);
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

    /// Gives a spare of `dest`'s directory the name `dest` (an `AlreadyExists` error if
    /// the name is taken); `false` if there is none. The file holds an old object's bytes:
    /// write it over and cut it to length, sync it, then sync its directory before the
    /// object is acknowledged (that sync makes the spare's name's removal durable too).
    /// Blocking.
    pub fn reuse(&self, dest: &Path) -> io::Result<bool> {
        loop {
            let Some((spare, len)) = ({
                let mut s = self.lock();
                let here = s
                    .files
                    .iter()
                    .rposition(|(f, _)| f.parent() == dest.parent());
                let f = here.map(|i| s.files.swap_remove(i));
                if let Some((_, len)) = &f {
                    s.bytes -= len;
                }
                f
            }) else {
                return Ok(false);
            };
            match std::fs::hard_link(&spare, dest) {
                Ok(()) => {
                    // The spare's own name goes; the caller's sync of the directory makes
                    // that durable with the new name (see the module's docs).
                    std::fs::remove_file(&spare)?;
                    return Ok(true);
                }
                // The name is taken: the caller's error; the spare serves the next.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let mut s = self.lock();
                    s.bytes += len;
                    s.files.push((spare, len));
                    return Err(e);
                }
                // Cleared by a restart's `clear` meanwhile, or not linkable here
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

/// Removes the spares a previous run left anywhere under `root`, but for one whose inode
/// another name in its directory denotes (see the module's docs): that one is kept, and
/// logged. Blocking; call it at a start, before the store is used.
pub fn clear(root: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirEntryExt;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let mut spares = Vec::new();
        let mut others = std::collections::HashSet::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            } else if name.to_str().is_some_and(is_spare) {
                spares.push((entry.path(), entry.ino()));
            } else {
                others.insert(entry.ino());
            }
        }
        for (spare, ino) in spares {
            if others.contains(&ino) {
                tracing::warn!(spare = %spare.display(), "a spare left by a crash shares its file with an object; kept");
                continue;
            }
            match std::fs::remove_file(&spare) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

fn is_spare(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn a_retired_file_is_reused_under_a_new_name_of_its_directory_and_never_overwrites_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = root.join("old");
        std::fs::write(&old, b"old object").unwrap();
        let ino = std::fs::metadata(&old).unwrap().ino();
        let spares = Spares::default();
        spares.retire(&old).unwrap();
        assert!(!old.exists(), "the old name is gone at once");
        assert_eq!(spares.held(), (1, 10));
        let spare_name = names(root).pop().unwrap();
        assert!(is_spare(&spare_name), "{spare_name}");
        // A name that is taken is refused, and the spare is kept.
        let taken = root.join("taken");
        std::fs::write(&taken, b"mine").unwrap();
        let e = spares.reuse(&taken).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&taken).unwrap(), b"mine");
        assert_eq!(spares.held(), (1, 10));
        // Another directory's object gets no spare of this one.
        std::fs::create_dir(root.join("sub")).unwrap();
        assert!(!spares.reuse(&root.join("sub").join("x")).unwrap());
        assert_eq!(spares.held(), (1, 10), "kept for its own directory");
        let new = root.join("new");
        assert!(spares.reuse(&new).unwrap());
        assert_eq!(
            std::fs::metadata(&new).unwrap().ino(),
            ino,
            "the same inode"
        );
        assert_eq!(std::fs::metadata(&new).unwrap().nlink(), 1);
        assert_eq!(spares.held(), (0, 0));
        assert!(!spares.reuse(&root.join("other")).unwrap(), "none left");
        assert_eq!(
            names(root),
            ["new", "sub", "taken"],
            "the spare's own name is gone"
        );
        // Missing files are not errors.
        spares.retire(&root.join("missing")).unwrap();
        assert_eq!(spares.held(), (0, 0));
    }

    #[test]
    fn spares_are_named_so_that_object_listings_skip_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("wal")).unwrap();
        std::fs::write(root.join("wal").join("a.wal"), b"a").unwrap();
        std::fs::write(root.join("wal").join("b.wal"), b"b").unwrap();
        Spares::default()
            .retire(&root.join("wal").join("a.wal"))
            .unwrap();
        let fs = object_store::local::LocalFileSystem::new_with_prefix(root).unwrap();
        let listed: Vec<String> = futures::executor::block_on(async {
            use futures::TryStreamExt;
            use object_store::ObjectStore;
            fs.list(None)
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
        })
        .unwrap();
        assert_eq!(listed, ["wal/b.wal"]);
        assert_eq!(names(&root.join("wal")).len(), 2, "the spare is there");
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
        spares.retire(&big).unwrap();
        assert!(!big.exists(), "unlinked");
        assert_eq!(spares.held(), (0, 0));
        std::fs::create_dir(root.join("wal")).unwrap();
        for i in 0..3 {
            let f = root.join("wal").join(format!("f{i}"));
            std::fs::write(&f, b"x").unwrap();
            spares.retire(&f).unwrap();
        }
        assert_eq!(spares.held(), (3, 3));
        // A restart's clear removed them: reuse finds none and says so.
        clear(root).unwrap();
        assert!(names(&root.join("wal")).is_empty(), "cleared");
        assert!(!spares.reuse(&root.join("wal").join("n")).unwrap());
        assert!(!root.join("wal").join("n").exists());
        assert_eq!(spares.held(), (0, 0), "all three tried and dropped");
    }

    #[test]
    fn clear_keeps_a_spare_whose_file_another_name_still_denotes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let wal = root.join("wal").join("1");
        std::fs::create_dir_all(&wal).unwrap();
        // What a crash in the middle of a reuse can leave: the spare's name and the new
        // object's name for one file.
        let object = wal.join("7.wal");
        std::fs::write(&object, b"object").unwrap();
        let shared = wal.join(format!("{PREFIX}1000000000001"));
        std::fs::hard_link(&object, &shared).unwrap();
        let lone = wal.join(format!("{PREFIX}1000000000002"));
        std::fs::write(&lone, b"old").unwrap();
        let not_a_spare = wal.join(format!("{PREFIX}x"));
        std::fs::write(&not_a_spare, b"keep").unwrap();
        clear(root).unwrap();
        assert!(shared.exists(), "kept: removing it could free the object");
        assert!(!lone.exists(), "removed");
        assert!(not_a_spare.exists(), "not a spare's name");
        assert_eq!(std::fs::read(&object).unwrap(), b"object");
    }
}
