//! The topics and partitions this broker knows, by name and by id, and each topic's
//! effective settings. A handler that only looks things up takes a `&Registry`, not the
//! broker.
//!
//! It owns the map, not its contents' lifecycle: creating, deleting and re-reading topics
//! (`topics.rs`) install and forget topics here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use uuid::Uuid;

use crate::config::Settings;
use crate::partition::Partition;
use crate::topic_config;
use stratus_meta::repo::TopicRecord;

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
    pub(crate) fn record(&self) -> TopicRecord {
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

/// Every topic this broker knows.
pub struct Registry {
    topics: RwLock<Topics>,
    /// The broker's settings: the defaults of topic settings.
    settings: Settings,
}

impl Registry {
    /// An empty registry whose topic settings default to `settings`.
    pub fn new(settings: Settings) -> Self {
        Registry {
            topics: RwLock::new(Topics::default()),
            settings,
        }
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.read().by_name.get(name).cloned()
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.read().by_id.get(id).cloned()
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.read().by_name.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Every topic by id, including one whose name a newer topic has taken.
    pub(crate) fn by_id(&self) -> Vec<Arc<Topic>> {
        self.read().by_id.values().cloned().collect()
    }

    /// A topic setting's value for a topic (its override, else the broker's default).
    pub fn config_i64(&self, topic: &Topic, name: &str) -> i64 {
        topic_config::resolve_i64(name, &topic.configs, &self.settings)
    }

    /// Whether the topic stamps LogAppendTime.
    pub fn log_append_time(&self, topic: &Topic) -> bool {
        topic_config::resolve("message.timestamp.type", &topic.configs, &self.settings)
            .is_some_and(|(v, _)| v == "LogAppendTime")
    }

    /// Adds a topic, or replaces the one with its id.
    pub(crate) fn install(&self, topic: Arc<Topic>) {
        let mut t = self.write();
        t.by_id.insert(topic.id, topic.clone());
        t.by_name.insert(topic.name.to_string(), topic);
    }

    /// Drops a topic (deleted): lookups no longer find it, by id or, unless the name
    /// already belongs to a topic created again since, by name.
    pub(crate) fn forget(&self, topic: &Topic) {
        let mut t = self.write();
        t.by_id.remove(&topic.id);
        if t.by_name
            .get(topic.name.as_ref())
            .is_some_and(|x| x.id == topic.id)
        {
            t.by_name.remove(topic.name.as_ref());
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Topics> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Topics> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }
}
