//! The topic lifecycle: create, delete, add partitions, alter configs, and re-reading the
//! topic records that other brokers write. [`TopicAdmin`] changes the topic records and
//! installs the result in the registry; the admin handlers take it, not the broker.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::ResponseError as Code;
use tracing::{info, warn};
use uuid::Uuid;

use tokio::sync::watch;

use crate::cluster::View;
use crate::config::{self, MAX_PARTITIONS};
use crate::error::{AdminError, Result};
use crate::partition::Partition;
use crate::registry::{Registry, Topic};
use crate::topic_config;
use stratus_log::objects::Objects;
use stratus_meta::repo::{self, PartitionRecord, TopicRecord};
use stratus_meta::{keys, Compare, MetaStore, Op, MAX_TXN_OPS};

/// Creates, deletes, grows and reconfigures topics, and follows the topic records.
pub struct TopicAdmin {
    defaults: config::Topics,
    meta: Arc<dyn MetaStore>,
    objects: Arc<Objects>,
    registry: Arc<Registry>,
    /// The cluster view: a new topic's partitions get owners there.
    view: watch::Receiver<Arc<View>>,
    /// Serializes creation, deletion and re-reads of the topic records.
    lock: tokio::sync::Mutex<()>,
}

impl TopicAdmin {
    /// The lifecycle of the topics in `registry`, with the broker's topic defaults.
    pub fn new(
        defaults: config::Topics,
        meta: Arc<dyn MetaStore>,
        objects: Arc<Objects>,
        registry: Arc<Registry>,
        view: watch::Receiver<Arc<View>>,
    ) -> Self {
        TopicAdmin {
            defaults,
            meta,
            objects,
            registry,
            view,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Creates a topic (or only validates the request).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, AdminError> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.defaults.num_partitions
        } else {
            partitions
        };
        if partitions <= 0 || partitions > MAX_PARTITIONS {
            return Err(AdminError::new(
                Code::InvalidPartitions,
                format!("Number of partitions must be between 1 and {MAX_PARTITIONS}."),
            ));
        }
        let replication_factor = match replication_factor {
            -1 => self.defaults.default_replication_factor,
            r if r <= 0 => {
                return Err(AdminError::new(
                    Code::InvalidReplicationFactor,
                    "Replication factor must be larger than 0.",
                ))
            }
            r => r,
        };
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(|m| AdminError::new(Code::InvalidConfig, m))?;
        }
        let _guard = self.lock.lock().await;
        if self.registry.topic(name).is_some() {
            return Err(AdminError::new(
                Code::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        let id = Uuid::new_v4();
        let id_text: Arc<str> = Arc::from(id.to_string().as_str());
        let name_arc: Arc<str> = Arc::from(name);
        let parts = (0..partitions)
            .map(|i| {
                let rec = PartitionRecord {
                    epochs: vec![(0, 0)],
                    ..Default::default()
                };
                Arc::new(Partition::new(id_text.clone(), name_arc.clone(), i, &rec))
            })
            .collect();
        let topic = Arc::new(Topic {
            id,
            id_text,
            name: name_arc,
            partitions: parts,
            replication_factor,
            configs,
        });
        if validate_only {
            return Ok(topic);
        }
        let key = keys::topic_key(name);
        let applied = self
            .meta
            .txn(
                vec![Compare::Revision(key.clone(), None)],
                vec![Op::Put(key, repo::encode(&topic.record()), None)],
            )
            .await?;
        if !applied {
            return Err(AdminError::new(
                Code::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        self.registry.install(topic.clone());
        info!(topic = name, partitions, "created topic");
        // Like Kafka's CreateTopics, answer once the partitions have leaders.
        self.wait_for_owners(&topic, std::time::Duration::from_secs(5))
            .await;
        Ok(topic)
    }

    /// Deletes a topic: its record first (it is gone for every broker from then on), then
    /// its partition records and segment objects. WAL ranges of the topic are collected
    /// with the WAL objects.
    pub async fn delete_topic(&self, topic: &Arc<Topic>) -> Result<(), AdminError> {
        if !self.defaults.delete_topic_enable {
            return Err(AdminError::new(
                Code::TopicDeletionDisabled,
                "Topic deletion is disabled.",
            ));
        }
        let _guard = self.lock.lock().await;
        self.meta
            .txn(vec![], vec![Op::Delete(keys::topic_key(&topic.name))])
            .await?;
        self.forget_topic(topic);
        let records = self
            .meta
            .range(&keys::partitions_prefix(&topic.id_text))
            .await?;
        let mut segments = Vec::new();
        for (k, v) in &records {
            if let Ok(r) = repo::decode_struct::<PartitionRecord>(k, &v.value) {
                segments.extend(r.segments);
            }
        }
        let keys: Vec<Op> = records.into_iter().map(|(k, _)| Op::Delete(k)).collect();
        for chunk in keys.chunks(MAX_TXN_OPS) {
            self.meta.txn(vec![], chunk.to_vec()).await?;
        }
        for s in segments {
            if let Err(e) = self.objects.delete(&s.key).await {
                warn!(object = s.key, error=%e, "segment of deleted topic not deleted");
            }
        }
        info!(topic = %topic.name, "deleted topic");
        Ok(())
    }

    /// Drops a deleted topic from this broker: every later request for it fails.
    fn forget_topic(&self, topic: &Topic) {
        self.registry.forget(topic);
        for p in &topic.partitions {
            p.state().mark_deleted();
        }
    }

    /// Re-reads every topic record: topics created, grown, reconfigured or deleted by
    /// other brokers. Partitions keep their state; new ones start unowned.
    pub async fn sync_topics(&self) -> Result<()> {
        let _guard = self.lock.lock().await;
        let mut seen = HashSet::new();
        for (k, v) in self.meta.range(keys::TOPICS).await? {
            let rec: TopicRecord = repo::decode(&k, &v)?;
            let Ok(id) = Uuid::parse_str(&rec.id) else {
                warn!(key = k, "topic record with a bad id skipped");
                continue;
            };
            seen.insert(id);
            let current = self.registry.topic_by_id(&id);
            if let Some(c) = &current {
                if c.partitions.len() as i32 == rec.partitions && c.configs == rec.configs {
                    continue;
                }
            }
            let id_text: Arc<str> = Arc::from(rec.id.as_str());
            let name: Arc<str> = Arc::from(rec.name.as_str());
            let mut partitions = current
                .as_ref()
                .map(|c| c.partitions.clone())
                .unwrap_or_default();
            for i in partitions.len() as i32..rec.partitions {
                partitions.push(Arc::new(Partition::new(
                    id_text.clone(),
                    name.clone(),
                    i,
                    &PartitionRecord::default(),
                )));
            }
            self.registry.install(Arc::new(Topic {
                id,
                id_text,
                name,
                partitions,
                replication_factor: rec.replication_factor,
                configs: rec.configs,
            }));
        }
        let stale: Vec<Arc<Topic>> = self
            .registry
            .by_id()
            .into_iter()
            .filter(|t| !seen.contains(&t.id))
            .collect();
        for t in stale {
            self.forget_topic(&t);
        }
        Ok(())
    }

    /// Follows `topics/` until `cancel`: topics created, grown, reconfigured or deleted on
    /// other brokers show up here within a watch round trip (and at least every 10 s).
    pub async fn watch_topics(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        loop {
            let mut events = self.meta.watch(keys::TOPICS);
            if let Err(e) = self.sync_topics().await {
                warn!(error = %e, "topic records not re-read; retrying");
            }
            let closed = tokio::select! {
                _ = cancel.cancelled() => return,
                e = events.recv() => e.is_none(),
                _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => false,
            };
            // Coalesce bursts; back off when the store is away (the watch ends at once).
            let pause = if closed { 500 } else { 20 };
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        }
    }

    /// Waits (up to `timeout`) until every partition of the topic has a live owner.
    pub async fn wait_for_owners(&self, topic: &Topic, timeout: std::time::Duration) -> bool {
        let mut rx = self.view.clone();
        let all = |v: &crate::cluster::View| {
            (0..topic.partitions.len() as i32).all(|i| v.owner(&topic.id_text, i).is_some())
        };
        tokio::time::timeout(timeout, rx.wait_for(|v| all(v)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        topic: &Arc<Topic>,
        count: i32,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(AdminError::new(
                Code::InvalidPartitions,
                format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
            ));
        }
        if count > MAX_PARTITIONS {
            return Err(AdminError::new(
                Code::InvalidPartitions,
                format!("At most {MAX_PARTITIONS} partitions."),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let _guard = self.lock.lock().await;
        let mut parts = topic.partitions.clone();
        for i in current..count {
            let rec = PartitionRecord {
                epochs: vec![(0, 0)],
                ..Default::default()
            };
            parts.push(Arc::new(Partition::new(
                topic.id_text.clone(),
                topic.name.clone(),
                i,
                &rec,
            )));
        }
        self.replace_topic(topic, parts, topic.configs.clone())
            .await
    }

    /// Replaces a topic's config overrides.
    pub async fn set_topic_configs(
        &self,
        topic: &Arc<Topic>,
        configs: BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        let _guard = self.lock.lock().await;
        let current = self
            .registry
            .topic(&topic.name)
            .unwrap_or_else(|| topic.clone());
        self.replace_topic(&current, current.partitions.clone(), configs)
            .await
    }

    async fn replace_topic(
        &self,
        topic: &Arc<Topic>,
        partitions: Vec<Arc<Partition>>,
        configs: BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        let new = Arc::new(Topic {
            id: topic.id,
            id_text: topic.id_text.clone(),
            name: topic.name.clone(),
            partitions,
            replication_factor: topic.replication_factor,
            configs,
        });
        self.meta
            .put(&keys::topic_key(&topic.name), repo::encode(&new.record()))
            .await?;
        self.registry.install(new);
        Ok(())
    }
}

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), AdminError> {
    let bad = |m: &str| Err(AdminError::new(Code::InvalidTopicException, m));
    if name.is_empty() {
        return bad("Topic name is illegal, it can't be empty");
    }
    if name == "." || name == ".." {
        return bad("Topic name cannot be \".\" or \"..\"");
    }
    if name.len() > 249 {
        return bad("Topic name is illegal, it can't be longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return bad("Topic name is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}
