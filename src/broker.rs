//! The broker's shared state: settings, stores, the WAL, and the topics it owns; recovery
//! at start and the topic lifecycle (create, delete, add partitions, alter configs).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError as Code;
use tracing::{info, warn};
use uuid::Uuid;

use crate::cache::BlockCache;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::meta::embedded::EmbeddedStore;
use crate::meta::repo::{self, PartitionRecord, TopicRecord, WalEntry};
use crate::meta::{Compare, MetaStore, Op, MAX_TXN_OPS};
use crate::objects::Objects;
use crate::partition::{Location, Partition, TailChunk};
use crate::segment::IndexEntry;
use crate::topic_config;
use crate::wal::{LiveEntry, Wal, WalConfig};

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: i32 = 10_000;
const PRODUCER_ID_BLOCK: i64 = 1000;

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    /// Topic id.
    pub id: Uuid,
    /// Topic id as text (metadata keys, object names).
    pub id_text: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// Partitions, by index.
    pub partitions: Vec<Arc<Partition>>,
    /// Replication factor as requested.
    pub replication_factor: i16,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
}

impl Topic {
    fn record(&self) -> TopicRecord {
        TopicRecord {
            id: self.id_text.to_string(),
            name: self.name.to_string(),
            partitions: self.partitions.len() as i32,
            replication_factor: self.replication_factor,
            configs: self.configs.clone(),
        }
    }
}

#[derive(Default)]
struct Topics {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
}

/// The broker.
pub struct Broker {
    /// Settings.
    pub settings: Settings,
    /// Metadata store.
    pub meta: Arc<dyn MetaStore>,
    /// Object store.
    pub objects: Arc<Objects>,
    /// Read cache.
    pub cache: Arc<BlockCache>,
    /// The WAL.
    pub wal: Arc<Wal>,
    /// Parsed segment indexes.
    pub indexes: moka::future::Cache<Arc<str>, Arc<Vec<IndexEntry>>>,
    /// Cluster id.
    pub cluster_id: String,
    topics: RwLock<Topics>,
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Serializes topic creation and deletion.
    topic_lock: tokio::sync::Mutex<()>,
    /// When the broker started.
    pub started: Instant,
    /// The group coordinator.
    pub groups: Arc<crate::group::Coordinator>,
    /// Bytes of requests read and not yet answered (`queued.max.request.bytes`).
    pub request_memory: Arc<tokio::sync::Semaphore>,
}

/// A refused admin request: the Kafka error and a message for the client.
pub type AdminError = (Code, String);

impl Broker {
    /// Opens the stores and recovers every partition from the metadata store.
    pub async fn open(settings: Settings) -> anyhow::Result<Arc<Broker>> {
        std::fs::create_dir_all(&settings.data_dir)?;
        let meta: Arc<dyn MetaStore> =
            Arc::new(EmbeddedStore::open(&settings.data_dir.join("meta.redb"))?);
        let objects = Arc::new(Objects::from_url(&settings.object_store_url)?);
        Self::open_with(settings, meta, objects).await
    }

    /// Opens with given stores.
    pub async fn open_with(
        settings: Settings,
        meta: Arc<dyn MetaStore>,
        objects: Arc<Objects>,
    ) -> anyhow::Result<Arc<Broker>> {
        let cache = Arc::new(BlockCache::new(
            objects.clone(),
            settings.cache_block_bytes,
            settings.cache_memory_bytes,
            settings.data_dir.join("cache"),
            settings.cache_disk_bytes,
        ));
        let cluster_id = match meta.get(repo::CLUSTER_ID).await? {
            Some(v) => String::from_utf8_lossy(&v.value).to_string(),
            None => {
                let id = kafka_cluster_id();
                meta.txn(
                    vec![Compare::Revision(repo::CLUSTER_ID.into(), None)],
                    vec![Op::Put(repo::CLUSTER_ID.into(), id.clone().into(), None)],
                )
                .await?;
                id
            }
        };
        let node = settings.node_id;
        // Take the assignment: any earlier incarnation of this broker can no longer commit.
        let incarnation = rand_u64();
        let akey = repo::assignment_key(node);
        meta.put(&akey, incarnation.to_string().into()).await?;
        let assignment_rev = meta
            .get(&akey)
            .await?
            .map(|v| v.mod_revision)
            .unwrap_or_default();
        let wal_entries = meta.range(&repo::wal_prefix(node)).await?;
        let next_seq = wal_entries
            .last()
            .and_then(|(k, _)| k.rsplit('/').next()?.parse::<u64>().ok())
            .map(|s| s + 1)
            .unwrap_or(1);
        let wal = Arc::new(Wal::new(
            WalConfig {
                node_id: node,
                incarnation,
                flush_interval: Duration::from_millis(settings.wal_flush_interval_ms),
                flush_bytes: settings.wal_flush_bytes,
                max_buffer_bytes: settings.wal_buffer_max_bytes,
                max_in_flight: settings.wal_max_in_flight,
            },
            meta.clone(),
            objects.clone(),
            cache.clone(),
            next_seq,
            assignment_rev,
        ));
        let groups = crate::group::Coordinator::open(
            meta.clone(),
            crate::group::GroupSettings::from(&settings),
        )
        .await?;
        let broker = Arc::new(Broker {
            request_memory: Arc::new(tokio::sync::Semaphore::new(
                settings.queued_max_request_bytes,
            )),
            groups,
            settings,
            meta,
            objects,
            cache,
            wal,
            indexes: moka::future::Cache::builder().max_capacity(10_000).build(),
            cluster_id,
            topics: RwLock::new(Topics::default()),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            topic_lock: tokio::sync::Mutex::new(()),
            started: Instant::now(),
        });
        broker.recover(wal_entries).await?;
        Ok(broker)
    }

    async fn recover(&self, wal_entries: Vec<(String, crate::meta::Versioned)>) -> Result<()> {
        let started = Instant::now();
        let mut records: HashMap<String, PartitionRecord> = HashMap::new();
        for (k, v) in self.meta.range("partitions/").await? {
            records.insert(k.clone(), repo::decode(&k, &v)?);
        }
        let mut topics = Topics::default();
        for (k, v) in self.meta.range(repo::TOPICS).await? {
            let rec: TopicRecord = repo::decode(&k, &v)?;
            let Ok(id) = Uuid::parse_str(&rec.id) else {
                warn!(key = k, "topic record with a bad id skipped");
                continue;
            };
            let id_text: Arc<str> = Arc::from(rec.id.as_str());
            let name: Arc<str> = Arc::from(rec.name.as_str());
            let partitions = (0..rec.partitions)
                .map(|i| {
                    let r = records
                        .remove(&repo::partition_key(&rec.id, i))
                        .unwrap_or_default();
                    Arc::new(Partition::new(id_text.clone(), name.clone(), i, &r))
                })
                .collect();
            let topic = Arc::new(Topic {
                id,
                id_text,
                name,
                partitions,
                replication_factor: rec.replication_factor,
                configs: rec.configs,
            });
            topics.by_id.insert(id, topic.clone());
            topics.by_name.insert(rec.name, topic);
        }
        // Partition records left by an interrupted topic deletion.
        for (k, r) in records {
            self.meta.txn(vec![], vec![Op::Delete(k)]).await?;
            for s in r.segments {
                self.objects.delete(&s.key).await?;
            }
        }
        // The unsealed tail: WAL ranges beyond each partition's sealed end.
        let mut live = BTreeMap::new();
        let mut freed = Vec::new();
        for (k, v) in wal_entries {
            let entry: WalEntry = repo::decode(&k, &v)?;
            let seq = k
                .rsplit('/')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            let object: Arc<str> = Arc::from(entry.object.as_str());
            let size = entry
                .ranges
                .iter()
                .map(|r| r.pos + r.len)
                .max()
                .unwrap_or(0);
            let mut remaining = BTreeMap::new();
            for r in &entry.ranges {
                let Some(t) = Uuid::parse_str(&r.topic_id)
                    .ok()
                    .and_then(|id| topics.by_id.get(&id))
                else {
                    continue;
                };
                let Some(p) = t.partitions.get(r.partition as usize) else {
                    continue;
                };
                if r.end_offset <= p.state().sealed_end {
                    continue;
                }
                p.recover_range(
                    TailChunk {
                        base: r.base_offset,
                        end: r.end_offset,
                        max_timestamp: r.max_timestamp,
                        location: Location::Wal {
                            object: object.clone(),
                            // Reads stay within ranges, which end before the footer.
                            object_size: size,
                            pos: r.pos,
                            len: r.len,
                        },
                        created: Instant::now(),
                    },
                    &r.producers,
                );
                remaining.insert((r.topic_id.clone(), r.partition), r.end_offset);
            }
            if remaining.is_empty() {
                freed.push((k, entry.object));
            } else {
                live.insert(
                    seq,
                    LiveEntry {
                        object: entry.object,
                        remaining,
                    },
                );
            }
        }
        *self.wal.live.lock().unwrap_or_else(|p| p.into_inner()) = live;
        for (k, object) in freed {
            self.meta.txn(vec![], vec![Op::Delete(k)]).await?;
            self.objects.delete(&object).await?;
        }
        // A new leader epoch for every partition, starting at its log end.
        let all: Vec<Arc<Partition>> = topics
            .by_id
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect();
        let count = all.len();
        for p in &all {
            let mut s = p.state();
            s.leader_epoch += 1;
            let (epoch, end) = (s.leader_epoch, s.next_offset);
            s.epochs.push((epoch, end));
            if s.epochs.len() > 1000 {
                s.epochs.remove(0);
            }
        }
        for chunk in all.chunks(MAX_TXN_OPS) {
            let ops = chunk
                .iter()
                .map(|p| {
                    Op::Put(
                        repo::partition_key(&p.topic_id, p.index),
                        repo::encode(&p.record()),
                        None,
                    )
                })
                .collect();
            self.meta.txn(vec![], ops).await?;
        }
        *self.topics.write().unwrap_or_else(|p| p.into_inner()) = topics;
        info!(
            partitions = count,
            ms = started.elapsed().as_millis() as u64,
            "recovered"
        );
        Ok(())
    }

    /// The address advertised to clients of listener `index`.
    pub fn advertised(&self, index: usize) -> &crate::config::Listener {
        let a = &self.settings.advertised;
        a.get(index).unwrap_or(&a[0])
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.read_topics().by_name.get(name).cloned()
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.read_topics().by_id.get(id).cloned()
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.read_topics().by_name.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn read_topics(&self) -> std::sync::RwLockReadGuard<'_, Topics> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn install(&self, topic: Arc<Topic>) {
        let mut t = self.topics.write().unwrap_or_else(|p| p.into_inner());
        t.by_id.insert(topic.id, topic.clone());
        t.by_name.insert(topic.name.to_string(), topic);
    }

    /// A topic config's value for a topic.
    pub fn config_i64(&self, topic: &Topic, name: &str) -> i64 {
        topic_config::resolve_i64(name, &topic.configs, &self.settings)
    }

    /// Whether the topic stamps LogAppendTime.
    pub fn log_append_time(&self, topic: &Topic) -> bool {
        topic_config::resolve("message.timestamp.type", &topic.configs, &self.settings)
            .is_some_and(|(v, _)| v == "LogAppendTime")
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
            self.settings.num_partitions
        } else {
            partitions
        };
        if partitions <= 0 || partitions > MAX_PARTITIONS {
            return Err((
                Code::InvalidPartitions,
                format!("Number of partitions must be between 1 and {MAX_PARTITIONS}."),
            ));
        }
        let replication_factor = match replication_factor {
            -1 => self.settings.default_replication_factor,
            r if r <= 0 => {
                return Err((
                    Code::InvalidReplicationFactor,
                    "Replication factor must be larger than 0.".into(),
                ))
            }
            r => r,
        };
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(|m| (Code::InvalidConfig, m))?;
        }
        let _guard = self.topic_lock.lock().await;
        if self.topic(name).is_some() {
            return Err((
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
        let key = repo::topic_key(name);
        let applied = self
            .meta
            .txn(
                vec![Compare::Revision(key.clone(), None)],
                vec![Op::Put(key, repo::encode(&topic.record()), None)],
            )
            .await
            .map_err(storage)?;
        if !applied {
            return Err((
                Code::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        self.install(topic.clone());
        info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic: its records first, then its objects.
    pub async fn delete_topic(&self, topic: &Arc<Topic>) -> Result<(), AdminError> {
        if !self.settings.delete_topic_enable {
            return Err((
                Code::TopicDeletionDisabled,
                "Topic deletion is disabled.".into(),
            ));
        }
        let _guard = self.topic_lock.lock().await;
        self.meta
            .txn(vec![], vec![Op::Delete(repo::topic_key(&topic.name))])
            .await
            .map_err(storage)?;
        {
            let mut t = self.topics.write().unwrap_or_else(|p| p.into_inner());
            t.by_id.remove(&topic.id);
            t.by_name.remove(topic.name.as_ref());
        }
        let mut segments = Vec::new();
        for p in &topic.partitions {
            let _rl = p.record_lock.lock().await;
            let mut s = p.state();
            s.deleted = true;
            segments.append(&mut s.segments);
        }
        let keys: Vec<Op> = (0..topic.partitions.len() as i32)
            .map(|i| Op::Delete(repo::partition_key(&topic.id_text, i)))
            .collect();
        for chunk in keys.chunks(MAX_TXN_OPS) {
            self.meta
                .txn(vec![], chunk.to_vec())
                .await
                .map_err(storage)?;
        }
        for s in segments {
            if let Err(e) = self.objects.delete(&s.key).await {
                warn!(object = s.key, error=%e, "segment of deleted topic not deleted");
            }
        }
        crate::maintenance::forget_topic_in_wal(self, &topic.id_text).await;
        info!(topic = %topic.name, "deleted topic");
        Ok(())
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
            return Err((
                Code::InvalidPartitions,
                format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
            ));
        }
        if count > MAX_PARTITIONS {
            return Err((
                Code::InvalidPartitions,
                format!("At most {MAX_PARTITIONS} partitions."),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let _guard = self.topic_lock.lock().await;
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
        let _guard = self.topic_lock.lock().await;
        let current = self.topic(&topic.name).unwrap_or_else(|| topic.clone());
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
            .put(&repo::topic_key(&topic.name), repo::encode(&new.record()))
            .await
            .map_err(storage)?;
        self.install(new);
        Ok(())
    }

    /// Writes a partition's durable record (the caller holds its `record_lock`), with
    /// extra operations in the same transaction.
    pub async fn persist_partition(&self, p: &Partition, extra: Vec<Op>) -> Result<()> {
        let mut ops = vec![Op::Put(
            repo::partition_key(&p.topic_id, p.index),
            repo::encode(&p.record()),
            None,
        )];
        ops.extend(extra);
        self.meta.txn(vec![], ops).await?;
        Ok(())
    }

    /// A new producer id; ids are reserved from the metadata store in blocks.
    pub async fn allocate_producer_id(&self) -> Result<i64> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            loop {
                let cur = self.meta.get(repo::PRODUCER_IDS).await?;
                let start: i64 = cur
                    .as_ref()
                    .and_then(|v| std::str::from_utf8(&v.value).ok()?.parse().ok())
                    .unwrap_or(0);
                let end = start + PRODUCER_ID_BLOCK;
                let ok = self
                    .meta
                    .txn(
                        vec![Compare::Revision(
                            repo::PRODUCER_IDS.into(),
                            cur.map(|v| v.mod_revision),
                        )],
                        vec![Op::Put(
                            repo::PRODUCER_IDS.into(),
                            end.to_string().into(),
                            None,
                        )],
                    )
                    .await?;
                if ok {
                    *ids = (start, end);
                    break;
                }
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }
}

fn storage(e: impl std::fmt::Display) -> AdminError {
    (Code::KafkaStorageError, e.to_string())
}

impl From<Error> for AdminError {
    fn from(e: Error) -> Self {
        (e.kafka(), e.to_string())
    }
}

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), AdminError> {
    let bad = |m: &str| Err((Code::InvalidTopicException, m.to_string()));
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

fn rand_u64() -> u64 {
    let u = Uuid::new_v4();
    let b = u.as_bytes();
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// A cluster id in Kafka's form (base64 of 16 random bytes, url-safe, no padding).
fn kafka_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = String::new();
    for b in bytes {
        bits = (bits << 8) | b as u32;
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}
