//! WAL garbage collection: index entries, then their objects, once every range in them
//! is sealed (or belongs to a deleted topic).

use std::collections::HashMap;
use std::sync::Arc;

use tracing::warn;

use super::Upkeep;
use crate::error::Result;
use stratus_meta::keys::PartitionId;
use stratus_meta::repo;
use stratus_meta::{keys, Op, MAX_TXN_OPS};

/// Deletes WAL index entries, then their objects, once every range in them is sealed
/// (or belongs to a deleted topic). Each broker collects its own entries; the controller
/// also collects those of brokers that are gone. Evidence comes from the store (or from
/// the state of partitions this broker owns), read after the entries: the sealed end only
/// grows, so an entry judged sealed stays sealed.
pub async fn collect_wal_garbage(up: &Upkeep) -> Result<()> {
    let node = up.settings.server.node_id;
    let view = up.view.borrow().clone();
    let controller = view.controller == Some(node);
    let prefix = if controller {
        keys::WAL.to_string()
    } else {
        keys::wal_prefix(node)
    };
    let mut slice = super::Slice::start();
    let mut index = up.wal_index.lock().await;
    let listed = index
        .refresh(
            up.meta.as_ref(),
            &prefix,
            |k| {
                let owner = keys::wal_node(k).unwrap_or(node);
                owner == node || !view.brokers.contains_key(&owner)
            },
            &mut slice,
        )
        .await?;
    let own = listed
        .iter()
        .filter(|k| keys::wal_node(k) == Some(node))
        .filter_map(|k| index.get(k).map(|s| s.stored));
    let (count, bytes) = own.fold((0, 0), |(c, b), n| (c + 1, b + n));
    up.metrics.wal_index_entries.set(count as f64);
    up.metrics.wal_index_bytes.set(bytes as f64);
    if listed.is_empty() {
        return Ok(());
    }
    let topics = super::topic_ids(up).await?;
    let mut sealed: HashMap<PartitionId, i64> = HashMap::new();
    let mut freed = Vec::new();
    for key in listed {
        slice.check().await;
        let Some(entry) = index.get(&key) else {
            continue;
        };
        // The ranges found dead, from the first: the first live one keeps the entry (and
        // is checked first next time).
        let mut dead = 0;
        for r in &entry.ranges {
            let name = index.partition(r);
            if topics.contains(name.topic_id.as_ref()) {
                let end = match sealed.get(name) {
                    Some(e) => *e,
                    None => {
                        let e = sealed_end(up, &name.topic_id, name.index).await?;
                        sealed.insert(name.clone(), e);
                        e
                    }
                };
                if r.end_offset > end {
                    break;
                }
            }
            dead += 1;
        }
        if dead == entry.ranges.len() {
            freed.push((key, entry.object.clone(), entry.data_end));
        } else if let Some(entry) = index.get_mut(&key) {
            entry.ranges.drain(..dead);
        }
    }
    for chunk in freed.chunks(MAX_TXN_OPS) {
        let ops = chunk
            .iter()
            .map(|(k, _, _)| Op::Delete(k.clone()))
            .collect();
        up.meta.txn(vec![], ops).await?;
        for (key, object, size) in chunk {
            index.forget(key);
            up.cache
                .forget_object(&Arc::from(object.as_str()), *size)
                .await;
            match up.objects.delete_recycling(object).await {
                Ok(()) => up.metrics.wal_collected.inc(),
                Err(e) => warn!(object, error = %e, "wal object not deleted"),
            }
        }
    }
    Ok(())
}

/// Everything below this offset of a partition is in sealed segments.
pub(super) async fn sealed_end(up: &Upkeep, topic_id: &str, partition: i32) -> Result<i64> {
    if let Some(p) = super::local_partition(up, topic_id, partition) {
        let s = p.state();
        if s.owner_epoch().is_some() {
            return Ok(s.sealed_end());
        }
    }
    let key = keys::partition_key(topic_id, partition);
    Ok(repo::load::<repo::PartitionRecord>(up.meta.as_ref(), &key)
        .await?
        .map(|(r, _)| r.sealed_end)
        .unwrap_or(0))
}
