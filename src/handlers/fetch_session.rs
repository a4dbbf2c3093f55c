//! Fetch sessions (KIP-227): a consumer that fetches many partitions sends them once, then
//! only what changed (a partition whose fetch offset moved, one added or forgotten), and the
//! broker answers with only the partitions that have something new (records, a watermark or
//! log start that moved, an error). Sessions live in a bounded cache shared by every
//! connection (`max.incremental.fetch.session.cache.slots`); when it is full, the least
//! recently used session idle for at least [`EVICTABLE_AFTER`] makes room, or none is
//! created (session id 0: the client keeps sending full fetches), as Kafka does.
//!
//! Request epochs: -1 closes the session named (if any) and fetches without one; 0 closes
//! it and starts a new one with the request's partitions; n > 0 is the n-th incremental
//! fetch of a session (FETCH_SESSION_ID_NOT_FOUND for an unknown id,
//! INVALID_FETCH_SESSION_EPOCH for an unexpected epoch). Partitions that had records are
//! moved to the end of the session's order, so that a response's byte limit reaches every
//! partition in turn.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as Code;
use uuid::Uuid;

/// A session idle this long may be evicted for a new one.
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(120);

/// A partition of a session: the topic by id (v13+) or by name, and the index.
type Key = (Uuid, StrBytes, i32);

/// What a session remembers of a partition: the client's fetch parameters, and what the
/// last response that carried it said.
#[derive(Debug, Clone)]
struct Cached {
    request: FetchPartition,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

impl Cached {
    /// A partition the client just named; nothing told about it yet.
    fn new(request: &FetchPartition) -> Self {
        Cached {
            request: request.clone(),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
        }
    }
}

struct Session {
    /// The epoch the next incremental fetch must carry.
    next_epoch: i32,
    partitions: IndexMap<Key, Cached>,
    last_used: Instant,
}

/// The broker's fetch sessions.
pub struct FetchSessions {
    slots: usize,
    sessions: Mutex<HashMap<i32, Session>>,
}

/// How to answer a fetch.
#[derive(Debug)]
pub enum Context {
    /// The request as it is, with no session (session id 0 in the response).
    Sessionless,
    /// The request as it is, then a new session of its partitions.
    Full,
    /// The session's partitions as this request (the session's whole state, updated by
    /// it); the response keeps only what changed.
    Incremental(i32, Box<FetchRequest>),
    /// A top-level error.
    Error(Code),
}

fn key(topic: &FetchTopic, partition: i32, v: i16) -> Key {
    if v >= 13 {
        (topic.topic_id, StrBytes::default(), partition)
    } else {
        (Uuid::nil(), topic.topic.0.clone(), partition)
    }
}

impl FetchSessions {
    /// A cache of at most `slots` sessions (0: sessions are never created).
    pub fn new(slots: usize) -> Self {
        FetchSessions {
            slots,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Decides how to answer `req` (version `v`), applying an incremental request's
    /// changes to its session.
    pub fn context(&self, req: &FetchRequest, v: i16) -> Context {
        if v < 7 {
            return Context::Sessionless;
        }
        let mut sessions = self.lock();
        match req.session_epoch {
            -1 => {
                sessions.remove(&req.session_id);
                Context::Sessionless
            }
            0 => {
                sessions.remove(&req.session_id);
                Context::Full
            }
            epoch => {
                let Some(s) = sessions.get_mut(&req.session_id) else {
                    return Context::Error(Code::FetchSessionIdNotFound);
                };
                if epoch != s.next_epoch {
                    return Context::Error(Code::InvalidFetchSessionEpoch);
                }
                s.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
                s.last_used = Instant::now();
                for t in &req.topics {
                    for p in &t.partitions {
                        match s.partitions.get_mut(&key(t, p.partition, v)) {
                            Some(c) => c.request = p.clone(),
                            None => {
                                s.partitions.insert(key(t, p.partition, v), Cached::new(p));
                            }
                        }
                    }
                }
                for f in &req.forgotten_topics_data {
                    for p in &f.partitions {
                        let k = if v >= 13 {
                            (f.topic_id, StrBytes::default(), *p)
                        } else {
                            (Uuid::nil(), f.topic.0.clone(), *p)
                        };
                        s.partitions.shift_remove(&k);
                    }
                }
                let mut full = req.clone();
                full.forgotten_topics_data.clear();
                full.topics = topics_of(&s.partitions);
                Context::Incremental(req.session_id, Box::new(full))
            }
        }
    }

    /// After a full fetch that asked for a session: a new session of the request's
    /// partitions, remembering what `resp` told about them. Returns its id, or 0 when the
    /// cache has no room (or the request named no partition).
    pub fn create(&self, req: &FetchRequest, resp: &FetchResponse, v: i16) -> i32 {
        if self.slots == 0 || req.topics.iter().all(|t| t.partitions.is_empty()) {
            return 0;
        }
        let mut partitions = IndexMap::new();
        for t in &req.topics {
            for p in &t.partitions {
                partitions.insert(key(t, p.partition, v), Cached::new(p));
            }
        }
        remember(&mut partitions, resp, v);
        let mut sessions = self.lock();
        if sessions.len() >= self.slots {
            let now = Instant::now();
            let oldest = sessions
                .iter()
                .filter(|(_, s)| now.duration_since(s.last_used) >= EVICTABLE_AFTER)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    sessions.remove(&id);
                }
                None => return 0,
            }
        }
        let mut id = 0;
        while id <= 0 || sessions.contains_key(&id) {
            id = (uuid::Uuid::new_v4().as_u128() as i32) & i32::MAX;
        }
        sessions.insert(
            id,
            Session {
                next_epoch: 1,
                partitions,
                last_used: Instant::now(),
            },
        );
        id
    }

    /// Keeps in an incremental response only the partitions with something new, and
    /// remembers what it told; partitions that carried records go to the end of the
    /// session's order.
    pub fn filter(&self, id: i32, resp: &mut FetchResponse, v: i16) {
        let mut sessions = self.lock();
        let Some(s) = sessions.get_mut(&id) else {
            return;
        };
        let mut rotate = Vec::new();
        for t in &mut resp.responses {
            let topic = FetchTopic::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id);
            t.partitions.retain(|p| {
                let k = key(&topic, p.partition_index, v);
                let Some(c) = s.partitions.get_mut(&k) else {
                    return true;
                };
                let records = p.records.as_ref().is_some_and(|r| !r.is_empty());
                let changed = c.high_watermark != p.high_watermark
                    || c.last_stable_offset != p.last_stable_offset
                    || c.log_start_offset != p.log_start_offset;
                let keep =
                    records || changed || p.error_code != 0 || p.preferred_read_replica.0 >= 0;
                c.high_watermark = p.high_watermark;
                c.last_stable_offset = p.last_stable_offset;
                c.log_start_offset = p.log_start_offset;
                if records {
                    rotate.push(k);
                }
                keep
            });
        }
        resp.responses.retain(|t| !t.partitions.is_empty());
        for k in rotate {
            if let Some(c) = s.partitions.shift_remove(&k) {
                s.partitions.insert(k, c);
            }
        }
    }
}

/// What a full response told about each partition of a new session.
fn remember(partitions: &mut IndexMap<Key, Cached>, resp: &FetchResponse, v: i16) {
    for t in &resp.responses {
        let topic = FetchTopic::default()
            .with_topic(t.topic.clone())
            .with_topic_id(t.topic_id);
        for p in &t.partitions {
            if let Some(c) = partitions.get_mut(&key(&topic, p.partition_index, v)) {
                c.high_watermark = p.high_watermark;
                c.last_stable_offset = p.last_stable_offset;
                c.log_start_offset = p.log_start_offset;
            }
        }
    }
}

/// A session's partitions as request topics, in session order (a topic's partitions
/// together, topics in the order of their first partition).
fn topics_of(partitions: &IndexMap<Key, Cached>) -> Vec<FetchTopic> {
    let mut topics: IndexMap<(Uuid, StrBytes), Vec<FetchPartition>> = IndexMap::new();
    for ((id, name, _), c) in partitions {
        topics
            .entry((*id, name.clone()))
            .or_default()
            .push(c.request.clone());
    }
    topics
        .into_iter()
        .map(|((id, name), partitions)| {
            FetchTopic::default()
                .with_topic(TopicName(name))
                .with_topic_id(id)
                .with_partitions(partitions)
        })
        .collect()
}

#[cfg(test)]
mod tests;
