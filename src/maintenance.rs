//! Background upkeep of the log: sealing WAL ranges into segment objects, deleting WAL
//! objects once every range in them is sealed, retention, and DeleteRecords.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError as Code;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::partition::{Location, Partition};
use stratus_log::clock::now_ms;
use stratus_log::objects::ObjectError;
use stratus_log::paths::{self, SegmentObject, WalObject};
use stratus_log::segment;
use stratus_meta::repo::{self, SegmentRef};
use stratus_meta::{keys, Op, MAX_TXN_OPS};

/// Runs sealing and retention until cancelled.
pub async fn run(broker: Arc<Broker>, cancel: CancellationToken) {
    let mut seal_tick = tokio::time::interval(Duration::from_millis(
        broker.settings.seal_check_interval_ms,
    ));
    let retention_every = Duration::from_millis(broker.settings.retention_check_interval_ms.max(1));
    let mut retention_tick = tokio::time::interval(retention_every);
    let mut gc_tick = tokio::time::interval(Duration::from_millis(
        (broker.settings.seal_check_interval_ms * 5).max(1000),
    ));
    gc_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweep_tick = tokio::time::interval(Duration::from_secs(600));
    sweep_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    seal_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retention_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sealing_failed = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = seal_tick.tick() => {
                // One line when sealing starts failing (a store outage fails every
                // partition, every tick) and one when it works again.
                match seal_due(&broker).await {
                    (0, _) if sealing_failed => {
                        info!("sealing works again");
                        sealing_failed = false;
                    }
                    (n, Some(e)) if n > 0 && !sealing_failed => {
                        warn!(partitions = n, error = %e, "sealing failed; will retry");
                        sealing_failed = true;
                    }
                    _ => {}
                }
            }
            _ = gc_tick.tick() => {
                if let Err(e) = collect_wal_garbage(&broker).await {
                    warn!(error = %e, "wal garbage collection failed; will retry");
                }
            }
            _ = sweep_tick.tick() => {
                if let Err(e) = sweep_orphan_wal_objects(&broker, ORPHAN_MIN_AGE_MS).await {
                    warn!(error = %e, "sweep of uncommitted WAL objects failed; will retry");
                }
            }
            _ = retention_tick.tick() => retention(&broker).await,
        }
    }
}

/// Seals what is due; returns how many partitions failed to seal and the first error.
async fn seal_due(broker: &Broker) -> (usize, Option<crate::error::Error>) {
    let (mut failed, mut first) = (0, None);
    for topic in broker.topics() {
        let seg_bytes = broker.config_i64(&topic, "segment.bytes").max(1) as u64;
        let seg_ms = broker.config_i64(&topic, "segment.ms").max(1) as u128;
        for p in &topic.partitions {
            let (bytes, oldest) = {
                let s = p.state();
                if s.owner_epoch().is_none() {
                    continue;
                }
                s.unsealed()
            };
            let old = oldest.is_some_and(|t| t.elapsed().as_millis() >= seg_ms);
            if bytes > 0 && (bytes >= seg_bytes || old) {
                if let Err(e) = seal(broker, p, seg_bytes).await {
                    debug!(topic = %p.topic, partition = p.index, error = %e, "sealing failed; will retry");
                    failed += 1;
                    first.get_or_insert(e);
                }
            }
        }
    }
    (failed, first)
}

/// Seals the oldest committed WAL ranges of `p`, about `max_bytes` of them, into one
/// segment object.
pub async fn seal(broker: &Broker, p: &Partition, max_bytes: u64) -> Result<()> {
    let _record = p.record_lock.lock().await;
    // A seal whose write failed but was applied: take it, rather than seal that range
    // again from WAL objects that may be collected by now.
    broker.settle_record(p).await?;
    let chunks = p.state().sealable(max_bytes);
    if chunks.is_empty() {
        return Ok(());
    }
    let mut data = Vec::with_capacity(chunks.len());
    for c in &chunks {
        if let Location::Wal {
            object,
            object_size,
            pos,
            len,
        } = &c.location
        {
            data.push(
                broker
                    .cache
                    .read(object, *object_size, *pos..pos + len)
                    .await?,
            );
        }
    }
    let Some(built) = segment::build(&data) else {
        return Ok(());
    };
    let key = SegmentObject {
        topic_id: &p.topic_id,
        partition: p.index,
        base_offset: built.base_offset,
    }
    .name();
    let size = built.body.len() as u64;
    match broker.objects.put_new(&key, built.body.clone()).await {
        Ok(()) => {}
        Err(ObjectError::Store(object_store::Error::AlreadyExists { .. })) => {
            // Left by an earlier seal of the same range that crashed before its commit.
            // Overwritten in place, never deleted first: a reader never finds it missing.
            broker
                .objects
                .put_replacing(&key, built.body.clone())
                .await?;
            let cached: Arc<str> = Arc::from(key.as_str());
            broker
                .cache
                .forget_object(&cached, built.body.len() as u64)
                .await;
            broker.indexes.invalidate(&cached).await;
        }
        // Any other failure (the object store is down) ends the seal before its record
        // names the segment. (Once, every other error was ignored here and the record
        // committed a segment that was never written; WAL collection then lost the data.)
        Err(e) => return Err(e.into()),
    }
    let seg = SegmentRef {
        key: key.clone(),
        base_offset: built.base_offset,
        end_offset: built.end_offset,
        data_len: built.data_len,
        size,
        max_timestamp: built.max_timestamp,
    };
    let rec = p.state().record_after_seal(&seg);
    // On an error the segment object stays: the record write may have been applied even
    // so (an answer lost when the store or the connection dies, or an earlier attempt
    // applied before a fenced retry), and then the record names it. Deleting it here lost
    // acknowledged data in the chaos test (kill -9 of etcd during a seal). The next seal
    // settles the state with the store first (Broker::settle_record); a segment no record
    // ever names is left behind.
    let written = broker.write_partition_record(p, &rec, vec![]).await;
    if p.state().is_deleted() {
        // The topic was deleted while this seal ran: its deletion removed the segments the
        // records named, which may not include this one. Nothing will read it.
        if let Err(e) = broker.objects.delete(&key).await {
            warn!(object = key, error = %e, "segment of a deleted topic not deleted");
        }
        return Err(Error::Kafka(Code::UnknownTopicOrPartition));
    }
    written?;
    p.state().apply_seal(seg);
    debug!(topic = %p.topic, partition = p.index, base = built.base_offset, end = built.end_offset, bytes = size, "sealed segment");
    Ok(())
}

/// Deletes WAL index entries, then their objects, once every range in them is sealed
/// (or belongs to a deleted topic). Each broker collects its own entries; the controller
/// also collects those of brokers that are gone. Evidence comes from the store (or from
/// the state of partitions this broker owns), read after the entries: the sealed end only
/// grows, so an entry judged sealed stays sealed.
pub async fn collect_wal_garbage(broker: &Broker) -> Result<()> {
    let node = broker.settings.node_id;
    let view = broker.view.borrow().clone();
    let controller = view.controller == Some(node);
    let prefix = if controller {
        keys::WAL.to_string()
    } else {
        keys::wal_prefix(node)
    };
    let entries: Vec<_> = broker
        .meta
        .range(&prefix)
        .await?
        .into_iter()
        .filter(|(k, _)| {
            let owner = keys::wal_node(k).unwrap_or(node);
            owner == node || !view.brokers.contains_key(&owner)
        })
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let mut topics = HashSet::new();
    for (k, v) in broker.meta.range(keys::TOPICS).await? {
        topics.insert(repo::decode::<repo::TopicRecord>(&k, &v)?.id);
    }
    let mut sealed: HashMap<String, i64> = HashMap::new();
    let mut freed = Vec::new();
    for (k, v) in entries {
        let entry: repo::WalEntry = repo::decode(&k, &v)?;
        let mut done = true;
        for r in &entry.ranges {
            if !topics.contains(&r.topic_id) {
                continue;
            }
            let name = keys::partition_name(&r.topic_id, r.partition);
            let end = match sealed.get(&name) {
                Some(e) => *e,
                None => {
                    let e = sealed_end(broker, &r.topic_id, r.partition).await?;
                    sealed.insert(name, e);
                    e
                }
            };
            if r.end_offset > end {
                done = false;
                break;
            }
        }
        if done {
            let size = entry.data_end();
            freed.push((k, entry.object, size));
        }
    }
    for chunk in freed.chunks(MAX_TXN_OPS) {
        let ops = chunk
            .iter()
            .map(|(k, _, _)| Op::Delete(k.clone()))
            .collect();
        broker.meta.txn(vec![], ops).await?;
        for (_, object, size) in chunk {
            broker
                .cache
                .forget_object(&Arc::from(object.as_str()), *size)
                .await;
            if let Err(e) = broker.objects.delete(object).await {
                warn!(object, error = %e, "wal object not deleted");
            }
        }
    }
    Ok(())
}

/// How long an unreferenced WAL object is left alone before it may be swept.
const ORPHAN_MIN_AGE_MS: i64 = 10 * 60 * 1000;

/// The controller deletes WAL objects that no index entry names and that can never be
/// committed any more: written by an incarnation that is not registered, whose node's
/// assignment has since been rewritten (so a commit of that incarnation fails its compare),
/// and older than `min_age_ms`. They are left by crashes between a PUT and its commit.
/// Objects are listed first, then the index and the assignments are read: an object
/// committed after the listing was committed by a live incarnation, which is never swept.
pub async fn sweep_orphan_wal_objects(broker: &Broker, min_age_ms: i64) -> Result<usize> {
    let node = broker.settings.node_id;
    if broker.view.borrow().controller != Some(node) {
        return Ok(0);
    }
    let listed = broker.objects.list(paths::WAL).await?;
    let mut named = HashSet::new();
    for (k, v) in broker.meta.range(keys::WAL).await? {
        named.insert(repo::decode::<repo::WalEntry>(&k, &v)?.object);
    }
    let view = crate::cluster::read_view(broker.meta.as_ref()).await?;
    let now = now_ms();
    let mut swept = 0;
    for (key, modified) in listed {
        if named.contains(&key) || now - modified < min_age_ms {
            continue;
        }
        let Some(WalObject {
            node: n,
            incarnation: inc,
            ..
        }) = WalObject::parse(&key)
        else {
            continue;
        };
        let registered = view.brokers.get(&n).is_some_and(|r| r.incarnation == inc);
        let may_commit = view
            .assignments
            .get(&n)
            .is_none_or(|(a, _)| a.incarnation == inc && !a.partitions.is_empty());
        if registered || may_commit {
            continue;
        }
        broker.objects.delete(&key).await?;
        swept += 1;
    }
    if swept > 0 {
        info!(
            objects = swept,
            "swept WAL objects that were never committed"
        );
    }
    Ok(swept)
}

/// Everything below this offset of a partition is in sealed segments.
async fn sealed_end(broker: &Broker, topic_id: &str, partition: i32) -> Result<i64> {
    let local = uuid::Uuid::parse_str(topic_id)
        .ok()
        .and_then(|id| broker.topic_by_id(&id))
        .and_then(|t| t.partitions.get(partition as usize).cloned());
    if let Some(p) = local {
        let s = p.state();
        if s.owner_epoch().is_some() {
            return Ok(s.sealed_end());
        }
    }
    let key = keys::partition_key(topic_id, partition);
    Ok(
        repo::load::<repo::PartitionRecord>(broker.meta.as_ref(), &key)
            .await?
            .map(|(r, _)| r.sealed_end)
            .unwrap_or(0),
    )
}

async fn retention(broker: &Broker) {
    let now = now_ms();
    for topic in broker.topics() {
        let deletes =
            crate::topic_config::resolve("cleanup.policy", &topic.configs, &broker.settings)
                .is_some_and(|(v, _)| v.split(',').any(|p| p.trim() == "delete"));
        // A compact-only topic keeps everything (compaction itself is not done yet);
        // DeleteRecords still applies.
        let (ms, bytes) = if deletes {
            (
                broker.config_i64(&topic, "retention.ms"),
                broker.config_i64(&topic, "retention.bytes"),
            )
        } else {
            (-1, -1)
        };
        for p in &topic.partitions {
            if p.state().owner_epoch().is_none() {
                continue;
            }
            p.state()
                .expire_producers(now, broker.settings.producer_id_expiration_ms);
            if let Err(e) = apply_retention(broker, p, now, ms, bytes).await {
                warn!(topic = %p.topic, partition = p.index, error = %e, "retention failed; will retry");
            }
        }
    }
}

/// Deletes the oldest sealed segments past `retention.ms` / `retention.bytes` or wholly
/// below the log start offset, and moves the log start offset.
pub async fn apply_retention(
    broker: &Broker,
    p: &Partition,
    now: i64,
    retention_ms: i64,
    retention_bytes: i64,
) -> Result<()> {
    let _record = p.record_lock.lock().await;
    let Some((drop, new_start)) = p
        .state()
        .expired_segments(now, retention_ms, retention_bytes)
    else {
        return Ok(());
    };
    let rec = p.state().record_after_drop(drop, new_start);
    broker.write_partition_record(p, &rec, vec![]).await?;
    let dropped = p.state().drop_segments(drop, new_start);
    for g in &dropped {
        let key: Arc<str> = Arc::from(g.key.as_str());
        broker.cache.forget_object(&key, g.size).await;
        broker.indexes.invalidate(&key).await;
        broker.objects.delete(&g.key).await?;
    }
    info!(topic = %p.topic, partition = p.index, segments = dropped.len(), log_start = new_start, "retention deleted segments");
    Ok(())
}

/// DeleteRecords: moves the log start offset to `offset` (-1: the high watermark).
pub async fn delete_records(broker: &Broker, p: &Partition, offset: i64) -> Result<i64> {
    let started = Instant::now();
    {
        let _record = p.record_lock.lock().await;
        // A DeleteRecords whose write failed but was applied: take it first.
        broker.settle_record(p).await?;
        let (target, rec) = {
            let s = p.state();
            s.check_owner()?;
            let hw = s.high_watermark();
            let target = if offset == -1 { hw } else { offset };
            if target < 0 || target > hw {
                return Err(Error::Kafka(Code::OffsetOutOfRange));
            }
            if target <= s.log_start() {
                return Ok(s.log_start());
            }
            (target, s.record_with_log_start(target))
        };
        broker.write_partition_record(p, &rec, vec![]).await?;
        p.state().move_log_start(target);
    }
    // Segments now wholly below the log start go at once.
    apply_retention(broker, p, now_ms(), -1, -1).await?;
    debug!(ms = started.elapsed().as_millis() as u64, "delete records");
    Ok(p.state().log_start())
}
