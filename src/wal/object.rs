//! A WAL object: its body built from buffered entries, and its write.

use super::*;

/// The object body, its index entry (also encoded: the footer), and each range's partition
/// and epoch.
pub(super) type Built = (Bytes, WalEntry, Bytes, Vec<(Arc<Partition>, i32)>);

pub(super) fn build_object(object: &str, entries: &[Entry]) -> Built {
    // One range per partition and epoch (a partition moved away and back within one
    // buffer has data under two epochs; only the current one can commit).
    let mut groups: IndexMap<(*const Partition, i32), Vec<&Entry>> = IndexMap::new();
    for e in entries {
        groups
            .entry((Arc::as_ptr(&e.partition), e.epoch))
            .or_default()
            .push(e);
    }
    // Where each range goes, then the footer, then the object in one buffer of its exact
    // size (grown by doubling, the footer's append copied the whole object once more).
    let mut ranges = Vec::with_capacity(groups.len());
    let mut partitions = Vec::with_capacity(groups.len());
    let mut pos = 0u64;
    for group in groups.values() {
        let len: u64 = group.iter().map(|e| e.bytes.len() as u64).sum();
        let p = &group[0].partition;
        partitions.push((p.clone(), group[0].epoch));
        let base = batch_base(&group[0].bytes);
        ranges.push(WalRange {
            topic_id: p.topic_id.to_string(),
            partition: p.index,
            base_offset: base,
            end_offset: group.last().map(|e| e.end).unwrap_or(base),
            pos,
            len,
            max_timestamp: group.iter().map(|e| e.max_timestamp).max().unwrap_or(-1),
            producers: group
                .iter()
                .flat_map(|e| e.producers.iter().copied())
                .collect(),
        });
        pos += len;
    }
    let entry = WalEntry {
        object: object.to_string(),
        ranges,
    };
    let footer = repo::encode(&entry);
    let mut body = BytesMut::with_capacity(pos as usize + footer.len() + wal_format::TRAILER_LEN);
    for e in groups.values().flatten() {
        body.extend_from_slice(&e.bytes);
    }
    wal_format::finish(&mut body, &footer);
    (body.freeze(), entry, footer, partitions)
}

/// First backoff between attempts of a PUT (doubling); tests keep outages short.
const PUT_BACKOFF_MS: u64 = if cfg!(test) { 1 } else { 50 };

pub(super) async fn put_with_retries(
    objects: Arc<Objects>,
    object: String,
    body: Bytes,
) -> Result<(), ObjectError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        // The name is unique to this process and sequence: a later attempt replaces
        // what an earlier one may have left half-written on a local directory.
        match objects.put_own(&object, body.clone(), attempt > 1).await {
            Ok(()) => return Ok(()),
            // An earlier attempt wrote it (atomically: not a local directory, where a
            // later attempt replaces it) and its answer was lost: the object is ours.
            Err(ObjectError::Store(object_store::Error::AlreadyExists { .. })) if attempt > 1 => {
                return Ok(())
            }
            Err(e) if attempt < PUT_ATTEMPTS => {
                warn!(object, attempt, error = %e, "wal object put failed; retrying");
                tokio::time::sleep(Duration::from_millis(PUT_BACKOFF_MS << attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn batch_base(b: &Bytes) -> i64 {
    if b.len() < 8 {
        return 0;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}
