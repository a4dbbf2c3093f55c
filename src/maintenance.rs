//! Background upkeep of the log: sealing WAL ranges into segment objects, deleting WAL
//! objects once every range in them is sealed, retention, and DeleteRecords.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::ResponseError as Code;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::meta::repo::{self, SegmentRef};
use crate::meta::{Op, MAX_TXN_OPS};
use crate::objects::ObjectError;
use crate::partition::{Location, Partition};
use crate::segment;

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs sealing and retention until cancelled.
pub async fn run(broker: Arc<Broker>, cancel: CancellationToken) {
    let mut seal_tick = tokio::time::interval(Duration::from_millis(
        broker.settings.seal_check_interval_ms,
    ));
    let retention_every = Duration::from_millis(broker.settings.retention_check_interval_ms.max(1));
    let mut retention_tick = tokio::time::interval(retention_every);
    seal_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retention_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = seal_tick.tick() => seal_due(&broker).await,
            _ = retention_tick.tick() => retention(&broker).await,
        }
    }
}

async fn seal_due(broker: &Broker) {
    for topic in broker.topics() {
        let seg_bytes = broker.config_i64(&topic, "segment.bytes").max(1) as u64;
        let seg_ms = broker.config_i64(&topic, "segment.ms").max(1) as u128;
        for p in &topic.partitions {
            let (bytes, oldest) = p.state().unsealed();
            let old = oldest.is_some_and(|t| t.elapsed().as_millis() >= seg_ms);
            if bytes > 0 && (bytes >= seg_bytes || old) {
                if let Err(e) = seal(broker, p, seg_bytes).await {
                    warn!(topic = %p.topic, partition = p.index, error = %e, "sealing failed; will retry");
                }
            }
        }
    }
    collect_wal_garbage(broker).await;
}

/// Seals the oldest committed WAL ranges of `p`, about `max_bytes` of them, into one
/// segment object.
pub async fn seal(broker: &Broker, p: &Partition, max_bytes: u64) -> Result<()> {
    let _record = p.record_lock.lock().await;
    let chunks: Vec<_> = {
        let s = p.state();
        let mut total = 0u64;
        s.tail
            .iter()
            .take_while(|c| c.end <= s.high_watermark && matches!(c.location, Location::Wal { .. }))
            .take_while(|c| {
                let first = total == 0;
                if let Location::Wal { len, .. } = &c.location {
                    total += len;
                }
                first || total <= max_bytes
            })
            .cloned()
            .collect()
    };
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
    let key = format!(
        "topics/{}/{}/{:020}.seg",
        p.topic_id, p.index, built.base_offset
    );
    let size = built.body.len() as u64;
    if let Err(ObjectError::Store(object_store::Error::AlreadyExists { .. })) =
        broker.objects.put_new(&key, built.body.clone()).await
    {
        // Left by a seal that crashed before its commit: nothing references it.
        broker.objects.delete(&key).await?;
        broker.objects.put_new(&key, built.body.clone()).await?;
    }
    let seg = SegmentRef {
        key: key.clone(),
        base_offset: built.base_offset,
        end_offset: built.end_offset,
        data_len: built.data_len,
        size,
        max_timestamp: built.max_timestamp,
    };
    let mut rec = p.record();
    rec.segments.push(seg.clone());
    rec.sealed_end = built.end_offset;
    rec.producers = {
        let s = p.state();
        s.producers
            .values()
            .flatten()
            .filter(|b| b.last_offset < built.end_offset)
            .copied()
            .collect()
    };
    broker
        .meta
        .txn(
            vec![],
            vec![Op::Put(
                repo::partition_key(&p.topic_id, p.index),
                repo::encode(&rec),
                None,
            )],
        )
        .await?;
    {
        let mut s = p.state();
        s.segments.push(seg);
        s.sealed_end = built.end_offset;
        s.tail.retain(|c| c.end > built.end_offset);
    }
    let mut live = broker.wal.live.lock().unwrap_or_else(|p| p.into_inner());
    let id = (p.topic_id.to_string(), p.index);
    for e in live.values_mut() {
        if e.remaining
            .get(&id)
            .is_some_and(|end| *end <= built.end_offset)
        {
            e.remaining.remove(&id);
        }
    }
    debug!(topic = %p.topic, partition = p.index, base = built.base_offset, end = built.end_offset, bytes = size, "sealed segment");
    Ok(())
}

/// Deletes WAL index entries and objects whose every range is sealed.
pub async fn collect_wal_garbage(broker: &Broker) {
    let freed: Vec<(u64, String)> = {
        let live = broker.wal.live.lock().unwrap_or_else(|p| p.into_inner());
        live.iter()
            .filter(|(_, e)| e.remaining.is_empty())
            .map(|(s, e)| (*s, e.object.clone()))
            .take(MAX_TXN_OPS)
            .collect()
    };
    if freed.is_empty() {
        return;
    }
    let node = broker.settings.node_id;
    let ops = freed
        .iter()
        .map(|(s, _)| Op::Delete(repo::wal_key(node, *s)))
        .collect();
    if let Err(e) = broker.meta.txn(vec![], ops).await {
        warn!(error = %e, "wal index cleanup failed; will retry");
        return;
    }
    {
        let mut live = broker.wal.live.lock().unwrap_or_else(|p| p.into_inner());
        for (s, _) in &freed {
            live.remove(s);
        }
    }
    for (_, object) in freed {
        if let Err(e) = broker.objects.delete(&object).await {
            warn!(object, error = %e, "wal object not deleted");
        }
    }
}

/// Forgets a deleted topic's ranges in the WAL index, so their objects can go.
pub async fn forget_topic_in_wal(broker: &Broker, topic_id: &str) {
    {
        let mut live = broker.wal.live.lock().unwrap_or_else(|p| p.into_inner());
        for e in live.values_mut() {
            e.remaining.retain(|(t, _), _| t != topic_id);
        }
    }
    collect_wal_garbage(broker).await;
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
    let (drop, new_start) = {
        let s = p.state();
        let mut total: i64 = s.segments.iter().map(|g| g.data_len as i64).sum();
        let mut drop = 0;
        for g in &s.segments {
            let expired = retention_ms >= 0 && g.max_timestamp < now - retention_ms;
            let oversize = retention_bytes >= 0 && total - g.data_len as i64 >= retention_bytes;
            let below = g.end_offset <= s.log_start;
            if !(expired || oversize || below) {
                break;
            }
            total -= g.data_len as i64;
            drop += 1;
        }
        if drop == 0 {
            return Ok(());
        }
        let next = s
            .segments
            .get(drop)
            .map(|g| g.base_offset)
            .unwrap_or(s.sealed_end);
        (drop, next.max(s.log_start))
    };
    let mut rec = p.record();
    let dropped: Vec<SegmentRef> = rec.segments.drain(..drop).collect();
    rec.log_start_offset = new_start;
    broker
        .meta
        .txn(
            vec![],
            vec![Op::Put(
                repo::partition_key(&p.topic_id, p.index),
                repo::encode(&rec),
                None,
            )],
        )
        .await?;
    {
        let mut s = p.state();
        s.segments.drain(..drop);
        s.log_start = new_start;
    }
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
        let target = {
            let mut s = p.state();
            let hw = s.high_watermark;
            let target = if offset == -1 { hw } else { offset };
            if target < 0 || target > hw {
                return Err(Error::Kafka(Code::OffsetOutOfRange));
            }
            if target <= s.log_start {
                return Ok(s.log_start);
            }
            let previous = s.log_start;
            s.log_start = target;
            (target, previous)
        };
        if let Err(e) = broker.persist_partition(p, vec![]).await {
            p.state().log_start = target.1;
            return Err(e);
        }
    }
    // Segments now wholly below the log start go at once.
    apply_retention(broker, p, now_ms(), -1, -1).await?;
    debug!(ms = started.elapsed().as_millis() as u64, "delete records");
    Ok(p.state().log_start)
}
