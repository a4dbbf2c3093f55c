//! Open files of local WAL objects, kept for the reads that follow. A WAL object holds a
//! range of every partition written during its flush, and each partition's seal reads its
//! own: opened once per range, an object was opened once per partition (16 opens per WAL
//! object at full-speed produce into two topics of 8 partitions, 7 % of the broker's CPU
//! samples in `openat`, most of it walking the path).
//!
//! A kept file must never serve a read once its object is collected and the file made a
//! spare (`spares.rs`), since a spare is written over. `Spares::retire`
//! counts the file (`Spares::retired`) and then forgets it here; a file opened before that
//! count is kept only if the count did not move meanwhile, under this cache's lock. So a
//! read either finds the file here before it is forgotten, and then sees the count move
//! before it is done (and checks the name, as every WAL read does then), or opens the name
//! after it is gone and finds nothing.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Files kept open at most (each keeps its object's blocks on disk while it is).
const KEPT: usize = 256;

/// The kept files of one local store.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each file and when it was last used.
    open: HashMap<PathBuf, (Arc<File>, u64)>,
    clock: u64,
}

impl Handles {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open file of `path`: a kept one, or opened now and kept if `still` says no file
    /// was made a spare since the caller noted the count (checked under the lock).
    /// Blocking.
    pub(crate) fn open(&self, path: &Path, still: impl Fn() -> bool) -> io::Result<Arc<File>> {
        {
            let mut i = self.lock();
            i.clock += 1;
            let now = i.clock;
            if let Some((f, used)) = i.open.get_mut(path) {
                *used = now;
                return Ok(f.clone());
            }
        }
        let f = Arc::new(File::open(path)?);
        let mut i = self.lock();
        if still() {
            if i.open.len() >= KEPT {
                let oldest = i.open.iter().min_by_key(|(_, (_, used))| *used);
                if let Some(k) = oldest.map(|(k, _)| k.clone()) {
                    i.open.remove(&k);
                }
            }
            let now = i.clock;
            i.open.insert(path.to_path_buf(), (f.clone(), now));
        }
        Ok(f)
    }

    /// Forgets the file of `path` (its object was collected or deleted).
    pub(crate) fn forget(&self, path: &Path) {
        self.lock().open.remove(path);
    }

    /// Files kept now (for tests).
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.lock().open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_kept_up_to_a_bound_and_never_when_a_spare_was_made_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let h = Handles::default();
        let a = dir.path().join("a");
        std::fs::write(&a, b"a").unwrap();
        let first = h.open(&a, || true).unwrap();
        let again = h.open(&a, || false).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "kept");
        h.forget(&a);
        let moved = h.open(&a, || false).unwrap();
        assert!(!Arc::ptr_eq(&first, &moved), "forgotten: opened again");
        assert_eq!(h.kept(), 0, "a spare was made meanwhile: not kept");
        assert!(h.open(&dir.path().join("missing"), || true).is_err());
        for i in 0..KEPT + 10 {
            let f = dir.path().join(format!("f{i}"));
            std::fs::write(&f, b"x").unwrap();
            h.open(&f, || true).unwrap();
        }
        assert_eq!(h.kept(), KEPT);
        // The least recently used went first.
        assert!(h
            .lock()
            .open
            .contains_key(&dir.path().join(format!("f{}", KEPT + 9))));
        assert!(!h.lock().open.contains_key(&dir.path().join("f0")));
    }
}
