//! Retention (`retention.ms`, `retention.bytes`, segments below the log start) and
//! DeleteRecords.

use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::ResponseError as Code;
use tracing::{debug, info, warn};

use super::Upkeep;
use crate::error::{Error, Result};
use crate::partition::Partition;

/// One round of retention over every partition this broker owns.
pub async fn run_once(up: &Upkeep) {
    let now = up.clock.now_ms();
    for topic in up.registry.topics() {
        let (ms, bytes) = limits(up, &topic);
        for p in &topic.partitions {
            if p.state().owner_epoch().is_none() {
                continue;
            }
            p.state()
                .expire_producers(now, up.settings.topics.producer_id_expiration_ms);
            if let Err(e) = apply_retention(up, p, now, ms, bytes).await {
                warn!(topic = %p.topic, partition = p.index, error = %e, "retention failed; will retry");
            }
        }
    }
}

/// A topic's `retention.ms` and `retention.bytes` (-1: none). A compact-only topic keeps
/// everything (compaction itself is not done yet); DeleteRecords still applies.
pub(super) fn limits(up: &Upkeep, topic: &crate::registry::Topic) -> (i64, i64) {
    let deletes = crate::topic_config::resolve("cleanup.policy", &topic.configs, &up.settings)
        .is_some_and(|(v, _)| v.split(',').any(|p| p.trim() == "delete"));
    if deletes {
        (
            up.registry.config_i64(topic, "retention.ms"),
            up.registry.config_i64(topic, "retention.bytes"),
        )
    } else {
        (-1, -1)
    }
}

/// Deletes the oldest sealed segments past `retention.ms` / `retention.bytes` or wholly
/// below the log start offset, and moves the log start offset.
pub async fn apply_retention(
    up: &Upkeep,
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
    up.records.write(p, &rec, vec![]).await?;
    let dropped = p.state().drop_segments(drop, new_start);
    for g in &dropped {
        let key: Arc<str> = Arc::from(g.key.as_str());
        up.reader.forget_segment(&key, g.size).await;
        up.objects.delete(&g.key).await?;
        up.metrics.retention_segments.inc();
        up.metrics.retention_bytes.add(g.size);
    }
    info!(topic = %p.topic, partition = p.index, segments = dropped.len(), log_start = new_start, "retention deleted segments");
    Ok(())
}

/// DeleteRecords: moves the log start offset to `offset` (-1: the high watermark).
pub async fn delete_records(up: &Upkeep, p: &Partition, offset: i64) -> Result<i64> {
    let started = Instant::now();
    {
        let _record = p.record_lock.lock().await;
        // A DeleteRecords whose write failed but was applied: take it first.
        up.records.settle(p).await?;
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
        up.records.write(p, &rec, vec![]).await?;
        p.state().move_log_start(target);
    }
    // Segments now wholly below the log start go at once.
    apply_retention(up, p, up.clock.now_ms(), -1, -1).await?;
    debug!(ms = started.elapsed().as_millis() as u64, "delete records");
    Ok(p.state().log_start())
}
