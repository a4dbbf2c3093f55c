//! Large objects written a part at a time, never held whole (a sealed segment is up to
//! `segment.bytes`): on a local directory into a staging file synced a slice at a time
//! ([`crate::paced`]); elsewhere as a multipart upload, a few parts in flight. The object
//! appears whole under its name when finished, or not at all.
//!
//! A multipart upload has no create-only mode: finishing replaces an object of that name.
//! Callers write only names whose bytes they alone decide (a segment's name is its base
//! offset, and a seal of it is deterministic up to where it ends), and forget what they
//! cached of the name.

use std::time::Instant;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};

use crate::objects::{ObjectError, Objects, Op};
use crate::paced::{Mode, Staged};

/// Size of the parts of a multipart upload (S3 takes at least 5 MiB but for the last).
pub const PART: usize = 8 << 20;
/// Parts uploading at once.
const IN_FLIGHT: usize = 2;
/// What a streaming writer hands [`BulkWriter::write`] at a time: a multipart upload
/// gathers it into parts of [`PART`], a local staging file takes it as it comes. Seals
/// and WAL compactions that handed over whole parts held 8-64 MiB each while they ran.
pub const SLICE: usize = 1 << 20;

/// An object being written.
pub struct BulkWriter<'a> {
    objects: &'a Objects,
    key: String,
    to: To,
    bytes: u64,
    started: Instant,
}

enum To {
    /// `None` only while a blocking write holds it, or after one failed.
    Local(Option<Staged>),
    Remote(WriteMultipart),
}

fn lost() -> ObjectError {
    ObjectError::Io(std::io::Error::other(
        "an earlier write to this object failed",
    ))
}

impl Objects {
    /// Starts writing `key` a part at a time.
    pub async fn bulk_writer(&self, key: &str) -> Result<BulkWriter<'_>, ObjectError> {
        let to = match &self.local_root {
            Some(root) => {
                let (root, k, b) = (root.clone(), key.to_string(), self.budget.clone());
                let staged =
                    tokio::task::spawn_blocking(move || Staged::create(&root, &k, Some(b)))
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))??;
                To::Local(Some(staged))
            }
            None => {
                let upload = self.store.put_multipart(&Path::from(key)).await?;
                To::Remote(WriteMultipart::new_with_chunk_size(upload, PART))
            }
        };
        Ok(BulkWriter {
            objects: self,
            key: key.to_string(),
            to,
            bytes: 0,
            started: Instant::now(),
        })
    }
}

impl BulkWriter<'_> {
    /// Appends `data`; waits while too many parts are uploading.
    pub async fn write(&mut self, data: Bytes) -> Result<(), ObjectError> {
        self.bytes += data.len() as u64;
        match &mut self.to {
            To::Local(slot) => {
                let mut staged = slot.take().ok_or_else(lost)?;
                let (staged, r) = tokio::task::spawn_blocking(move || {
                    let r = staged.write(&data);
                    (staged, r)
                })
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
                r?;
                *slot = Some(staged);
            }
            To::Remote(upload) => {
                upload.put(data);
                upload.wait_for_capacity(IN_FLIGHT).await?;
            }
        }
        Ok(())
    }

    /// Makes the object durable and whole under its name, replacing any object of that
    /// name. Returns whether one may have been replaced (a multipart upload cannot tell).
    pub async fn finish(self) -> Result<bool, ObjectError> {
        let BulkWriter {
            objects,
            key: _,
            to,
            bytes,
            started,
        } = self;
        let r = match to {
            To::Local(slot) => {
                let staged = slot.ok_or_else(lost)?;
                let committed = tokio::task::spawn_blocking(move || staged.commit(Mode::Any))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                match committed {
                    Ok((path, replaced)) => objects.fsync_local(path).await.map(|()| replaced),
                    Err(e) => Err(e.into()),
                }
            }
            To::Remote(upload) => upload.finish().await.map(|_| true).map_err(Into::into),
        };
        let counted: Result<(), ()> = r.as_ref().map(|_| ()).map_err(|_| ());
        objects.metrics.record(
            Op::Put,
            started,
            if r.is_ok() { bytes } else { 0 },
            &counted,
        );
        r
    }

    /// Gives up: nothing appears under the name (uploaded parts are discarded).
    pub async fn abort(self) {
        if let To::Remote(upload) = self.to {
            if let Err(e) = upload.abort().await {
                tracing::warn!(object = self.key, error = %e, "multipart upload not aborted; the store's lifecycle rules remove its parts");
            }
        }
        // A local staging file is removed when dropped.
    }
}
