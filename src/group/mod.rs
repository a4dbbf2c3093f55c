//! The group coordinator: consumer groups (classic protocol) and their committed offsets.
//!
//! Group state lives in memory under one lock and is persisted to the metadata store
//! (`groups/<id>`) whenever its membership or assignment changes; committed offsets live
//! in [`offsets::OffsetStore`]. A group's coordinator is chosen by [`shard_of`] its id, so
//! that a cluster can spread shards over brokers; a single broker owns every shard.

pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod offsets;
mod persist;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError as Code;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::cluster::Fence;
use crate::config::Settings;
use crate::coordinator::{ShardState, Shards};
use crate::error::Result;
use crate::supervisor::Supervisor;
use classic::{Group, Join, JoinResult, Joined, Limits, Member, State, SyncResult};
use consumer::{Answer, ConsumerGroup, Heartbeat, TopicInfo};
use offsets::{Change, OffsetStore};
use stratus_meta::{keys, repo, MetaStore};

const TICK: Duration = Duration::from_millis(100);

pub use stratus_meta::keys::shard_of;

/// Settings of the coordinator.
#[derive(Debug, Clone, Copy)]
pub struct GroupSettings {
    /// Smallest session timeout a member may ask for.
    pub min_session: Duration,
    /// Largest session timeout.
    pub max_session: Duration,
    /// Limits the state machine applies.
    pub limits: Limits,
    /// Offsets of an empty group expire after this.
    pub offsets_retention: Duration,
    /// Largest metadata string of a committed offset.
    pub max_metadata: usize,
    /// Session timeout of consumer-protocol members.
    pub consumer_session: Duration,
    /// Heartbeat interval told to consumer-protocol members.
    pub consumer_heartbeat: Duration,
}

impl GroupSettings {
    /// From the broker settings.
    pub fn from(s: &Settings) -> Self {
        GroupSettings {
            min_session: Duration::from_millis(s.groups.group_min_session_timeout_ms),
            max_session: Duration::from_millis(s.groups.group_max_session_timeout_ms),
            limits: Limits {
                initial_delay: Duration::from_millis(s.groups.group_initial_rebalance_delay_ms),
                max_size: s.groups.group_max_size,
            },
            offsets_retention: Duration::from_secs(s.groups.offsets_retention_minutes * 60),
            max_metadata: s.groups.offset_metadata_max_bytes,
            consumer_session: Duration::from_millis(s.groups.group_consumer_session_timeout_ms),
            consumer_heartbeat: Duration::from_millis(
                s.groups.group_consumer_heartbeat_interval_ms,
            ),
        }
    }
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupView {
    /// State name.
    pub state: &'static str,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol.
    pub protocol: String,
    /// Members: id, instance id, client id, host, metadata, assignment.
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// The coordinator.
pub struct Coordinator {
    settings: GroupSettings,
    meta: Arc<dyn MetaStore>,
    /// Shards this broker coordinates, and the epochs they were loaded at.
    shards: Shards,
    /// Committed offsets.
    pub offsets: Arc<OffsetStore>,
    groups: Mutex<Groups>,
    /// Group records to write (staged under the `groups` lock, in the order they changed).
    staging: Arc<persist::Staging>,
}

/// Every group, by protocol.
#[derive(Default)]
struct Groups {
    classic: HashMap<String, Group>,
    consumer: HashMap<String, ConsumerGroup>,
}

#[derive(Serialize, Deserialize)]
enum Persisted {
    Classic(Snapshot),
    Consumer(ConsumerGroup),
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    protocol_type: Option<String>,
    protocol: Option<String>,
    generation: i32,
    leader: Option<String>,
    members: Vec<MemberSnapshot>,
}

#[derive(Serialize, Deserialize)]
struct MemberSnapshot {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_ms: u64,
    rebalance_ms: u64,
    protocols: Vec<(String, Vec<u8>)>,
    assignment: Vec<u8>,
}

impl Coordinator {
    /// A coordinator of no shard yet; starts the persister. Writes compare `fence`.
    pub async fn open(
        tasks: &Arc<Supervisor>,
        meta: Arc<dyn MetaStore>,
        fence: Arc<Fence>,
        settings: GroupSettings,
    ) -> Result<Arc<Self>> {
        let offsets = OffsetStore::open(tasks, meta.clone(), Some(fence.clone()));
        let staging = persist::Staging::open(tasks, meta.clone(), fence);
        Ok(Arc::new(Coordinator {
            settings,
            meta,
            shards: Shards::default(),
            offsets,
            groups: Mutex::new(Groups::default()),
            staging,
        }))
    }

    /// Whether this broker coordinates `group` now.
    pub fn owns(&self, group: &str) -> bool {
        self.owns_shard(shard_of(group))
    }

    /// The epoch at which this broker coordinates a shard (loaded at), if it does.
    fn shard_epoch(&self, shard: u32) -> Option<i32> {
        self.shards.epoch(shard)
    }

    /// Whether this broker coordinates a shard now.
    pub fn owns_shard(&self, shard: u32) -> bool {
        self.shards.owns(shard)
    }

    /// Takes up the shards assigned (loading their groups and offsets) and drops the
    /// others.
    pub async fn set_shards(&self, assigned: &std::collections::BTreeMap<u32, i32>) {
        self.shards.set(assigned, self).await;
    }
}

#[async_trait::async_trait]
impl ShardState for Coordinator {
    fn unload(&self, shard: u32) {
        let mut g = self.lock();
        g.classic.retain(|id, _| shard_of(id) != shard);
        g.consumer.retain(|id, _| shard_of(id) != shard);
        drop(g);
        self.offsets.unload_shard(shard);
    }

    async fn load(&self, shard: u32, epoch: i32) -> Result<()> {
        self.offsets.load_shard(shard, epoch).await?;
        let mut classic = HashMap::new();
        let mut consumer = HashMap::new();
        for (k, v) in self.meta.range(&keys::groups_prefix(shard)).await? {
            let Some(id) = keys::parse_group_key(&k, shard) else {
                continue;
            };
            match repo::decode(&k, &v)? {
                Persisted::Classic(snap) => {
                    classic.insert(id.clone(), restore(&id, snap));
                }
                Persisted::Consumer(mut g) => {
                    g.restart_sessions();
                    consumer.insert(id, g);
                }
            }
        }
        let mut g = self.lock();
        g.classic.retain(|id, _| shard_of(id) != shard);
        g.consumer.retain(|id, _| shard_of(id) != shard);
        g.classic.extend(classic);
        g.consumer.extend(consumer);
        Ok(())
    }
}

impl Coordinator {
    fn lock(&self) -> MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// JoinGroup.
    pub async fn join(&self, group: &str, j: Join) -> JoinResult {
        if group.is_empty() {
            return JoinResult::error(Code::InvalidGroupId, &j.member_id);
        }
        if j.session_timeout < self.settings.min_session
            || j.session_timeout > self.settings.max_session
        {
            return JoinResult::error(Code::InvalidSessionTimeout, &j.member_id);
        }
        if j.protocol_type.is_empty() || j.protocols.is_empty() {
            return JoinResult::error(Code::InconsistentGroupProtocol, &j.member_id);
        }
        let new_id = format!("{}-{}", j.client_id, uuid::Uuid::new_v4());
        let member_id = j.member_id.clone();
        let joined = {
            let mut groups = self.lock();
            if let Some(cg) = groups.consumer.get(group) {
                if !cg.members.is_empty() {
                    return JoinResult::error(Code::InconsistentGroupProtocol, &member_id);
                }
                groups.consumer.remove(group);
            }
            let g = groups
                .classic
                .entry(group.to_string())
                .or_insert_with(|| Group::new(group));
            g.join(j, self.settings.limits, new_id)
        };
        match joined {
            Joined::Now(r) => r,
            Joined::Later(rx) => rx
                .await
                .unwrap_or_else(|_| JoinResult::error(Code::RebalanceInProgress, &member_id)),
        }
    }

    /// SyncGroup.
    pub async fn sync(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let waiting = {
            let mut groups = self.lock();
            let Some(g) = groups.classic.get_mut(group) else {
                return SyncResult::error(Code::UnknownMemberId);
            };
            g.sync(member_id, instance_id, generation, assignments)
        };
        match waiting {
            Err(now) => now,
            Ok(rx) => rx
                .await
                .unwrap_or_else(|_| SyncResult::error(Code::RebalanceInProgress)),
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), Code> {
        let mut groups = self.lock();
        let g = groups.classic.get_mut(group).ok_or(Code::UnknownMemberId)?;
        g.heartbeat(member_id, instance_id, generation)
    }

    /// LeaveGroup: one result per member.
    pub fn leave(
        &self,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), Code>>, Code> {
        let mut groups = self.lock();
        let g = groups.classic.get_mut(group).ok_or(Code::UnknownMemberId)?;
        Ok(members
            .iter()
            .map(|(m, i)| g.leave(m, i.as_deref(), self.settings.limits))
            .collect())
    }

    /// Whether an OffsetCommit from this member may commit now (Kafka's rules).
    pub fn check_commit(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), Code> {
        let groups = self.lock();
        if let Some(cg) = groups.consumer.get(group) {
            return cg.check_commit(member_id, generation);
        }
        let Some(g) = groups.classic.get(group) else {
            return if generation < 0 {
                Ok(())
            } else {
                Err(Code::IllegalGeneration)
            };
        };
        if generation < 0 && g.state == State::Empty {
            return Ok(());
        }
        if g.state == State::CompletingRebalance {
            return Err(Code::RebalanceInProgress);
        }
        g.check_member(member_id, instance_id)?;
        if generation != g.generation {
            return Err(Code::IllegalGeneration);
        }
        Ok(())
    }

    /// ConsumerGroupHeartbeat (KIP-848), answered once what the answer depends on is
    /// durable (see [`persist`]).
    pub async fn consumer_heartbeat(
        &self,
        group: &str,
        hb: Heartbeat,
        topics: &[TopicInfo],
    ) -> Answer {
        let answer = self.consumer_heartbeat_now(group, hb, topics);
        if answer.error.is_some() {
            return answer;
        }
        let error = if !self.staging.settled(group).await {
            Code::CoordinatorNotAvailable
        } else if !self.owns(group) {
            Code::NotCoordinator
        } else {
            return answer;
        };
        // The member did not get its assignment: the next heartbeat sends it again.
        if let Some(g) = self.lock().consumer.get_mut(group) {
            g.unsent(&answer.member_id);
        }
        Answer::error(error, &answer.member_id)
    }

    fn consumer_heartbeat_now(&self, group: &str, hb: Heartbeat, topics: &[TopicInfo]) -> Answer {
        if group.is_empty() {
            return Answer {
                error: Some(Code::InvalidGroupId),
                ..Default::default()
            };
        }
        let mut groups = self.lock();
        if let Some(g) = groups.classic.get(group) {
            if !g.members.is_empty() {
                // Online migration of a live classic group is not supported.
                return Answer {
                    error: Some(Code::GroupIdNotFound),
                    member_id: hb.member_id,
                    epoch: -1,
                    assignment: None,
                };
            }
            // An empty classic group is upgraded.
            groups.classic.remove(group);
        }
        let g = groups.consumer.entry(group.to_string()).or_default();
        let answer = g.heartbeat(hb, topics, self.settings.limits.max_size);
        if g.dirty {
            g.dirty = false;
            let value = repo::encode(&Persisted::Consumer(g.clone()));
            self.stage(group, Some(value));
        }
        answer
    }

    /// Stages the new record of `group` (`None`: deleted), fenced at the epoch its shard is
    /// coordinated at; nothing if this broker does not coordinate it. Call it under the
    /// `groups` lock that made the change, so records are written in the order of changes.
    fn stage(&self, group: &str, value: Option<Bytes>) {
        if let Some(epoch) = self.shard_epoch(shard_of(group)) {
            self.staging.stage(group, value, epoch);
        }
    }

    /// Heartbeat interval for consumer-protocol members.
    pub fn consumer_heartbeat_interval(&self) -> Duration {
        self.settings.consumer_heartbeat
    }

    /// A consumer-protocol group, for ConsumerGroupDescribe.
    pub fn consumer_group(&self, group: &str) -> Option<ConsumerGroup> {
        self.lock().consumer.get(group).cloned()
    }

    /// Largest metadata string a committed offset may carry.
    pub fn max_metadata(&self) -> usize {
        self.settings.max_metadata
    }

    /// Commits offsets durably.
    pub async fn commit(&self, changes: Vec<Change>) -> Result<()> {
        self.offsets.apply(changes).await
    }

    /// Every group: id, protocol type, state.
    pub fn list(&self) -> Vec<(String, String, &'static str, &'static str)> {
        let groups = self.lock();
        let mut out: Vec<_> = groups
            .classic
            .values()
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                    "classic",
                )
            })
            .collect();
        for (id, g) in &groups.consumer {
            out.push((id.clone(), "consumer".to_string(), g.state(), "consumer"));
        }
        for id in self.offsets.group_ids() {
            if !groups.classic.contains_key(&id) && !groups.consumer.contains_key(&id) {
                out.push((id, String::new(), State::Empty.name(), "classic"));
            }
        }
        out.sort();
        out
    }

    /// Every committed offset of the groups this broker coordinates: group, topic,
    /// partition, offset (for the lag metrics).
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let mut out = Vec::new();
        for g in self.offsets.group_ids() {
            for (topic, parts) in self.offsets.group(&g) {
                for (p, c) in parts {
                    out.push((g.clone(), topic.clone(), p, c.offset));
                }
            }
        }
        out
    }

    /// A group's description, `None` if unknown.
    pub fn describe(&self, group: &str) -> Option<GroupView> {
        let groups = self.lock();
        if let Some(cg) = groups.consumer.get(group) {
            return Some(GroupView {
                state: cg.state(),
                protocol_type: "consumer".into(),
                protocol: cg.assignor.clone(),
                members: cg
                    .members
                    .values()
                    .map(|m| {
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.client_id.clone(),
                            m.client_host.clone(),
                            Bytes::new(),
                            Bytes::new(),
                        )
                    })
                    .collect(),
            });
        }
        let Some(g) = groups.classic.get(group) else {
            return self.offsets.has_group(group).then(|| GroupView {
                state: State::Empty.name(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        let protocol = g.protocol.clone().unwrap_or_default();
        let show = g.state == State::Stable;
        Some(GroupView {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if show {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        if show {
                            m.metadata(&protocol)
                        } else {
                            Bytes::new()
                        },
                        if show {
                            m.assignment.clone()
                        } else {
                            Bytes::new()
                        },
                    )
                })
                .collect(),
        })
    }

    /// Whether a group has members consuming (for OffsetDelete): the topics its members'
    /// assignments name are not known to the broker, so any member counts.
    pub fn is_active(&self, group: &str) -> bool {
        let groups = self.lock();
        groups
            .classic
            .get(group)
            .is_some_and(|g| !g.members.is_empty())
            || groups
                .consumer
                .get(group)
                .is_some_and(|g| !g.members.is_empty())
    }

    /// DeleteGroups: only empty groups.
    pub async fn delete(&self, group: &str) -> Result<(), Code> {
        {
            let mut groups = self.lock();
            let classic = groups.classic.get(group).map(|g| g.members.is_empty());
            let consumer = groups.consumer.get(group).map(|g| g.members.is_empty());
            match classic.or(consumer) {
                Some(false) => return Err(Code::NonEmptyGroup),
                Some(true) => {
                    groups.classic.remove(group);
                    groups.consumer.remove(group);
                }
                None if !self.offsets.has_group(group) => return Err(Code::GroupIdNotFound),
                None => {}
            }
            self.stage(group, None);
        }
        self.offsets
            .delete_group(group)
            .await
            .map_err(|e| e.kafka())
    }

    /// Expires sessions, completes rebalances at their deadline, persists changes, and
    /// expires offsets of empty groups; until cancelled.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_expiry = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            {
                // Staged under the lock that made the changes: records are written in the
                // order the state changed.
                let mut groups = self.lock();
                for g in groups.classic.values_mut() {
                    g.expire(now, self.settings.limits);
                    if g.dirty {
                        g.dirty = false;
                        self.stage(&g.id, Some(repo::encode(&Persisted::Classic(snapshot(g)))));
                    }
                }
                for (id, g) in groups.consumer.iter_mut() {
                    g.expire(now, self.settings.consumer_session);
                    if g.dirty {
                        g.dirty = false;
                        self.stage(id, Some(repo::encode(&Persisted::Consumer(g.clone()))));
                    }
                }
            }
            if last_expiry.elapsed() >= Duration::from_secs(60) {
                last_expiry = Instant::now();
                self.expire_offsets().await;
            }
        }
    }

    async fn expire_offsets(&self) {
        let cutoff =
            stratus_log::clock::now_ms() - self.settings.offsets_retention.as_millis() as i64;
        let empty: Vec<String> = {
            let groups = self.lock();
            self.offsets
                .group_ids()
                .into_iter()
                .filter(|id| {
                    groups
                        .classic
                        .get(id)
                        .is_none_or(|g| g.state == State::Empty)
                        && groups.consumer.get(id).is_none_or(|g| g.members.is_empty())
                })
                .collect()
        };
        for id in empty {
            let old = self.offsets.older_than(&id, cutoff);
            if !old.is_empty() {
                if let Err(e) = self.offsets.apply(old).await {
                    warn!(group = %id, error = %e, "offset expiry failed; will retry");
                }
            }
        }
    }
}

fn snapshot(g: &Group) -> Snapshot {
    Snapshot {
        protocol_type: g.protocol_type.clone(),
        protocol: g.protocol.clone(),
        generation: g.generation,
        leader: g.leader.clone(),
        members: if g.state == State::Stable {
            g.members
                .values()
                .map(|m| MemberSnapshot {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_ms: m.session_timeout.as_millis() as u64,
                    rebalance_ms: m.rebalance_timeout.as_millis() as u64,
                    protocols: m
                        .protocols
                        .iter()
                        .map(|(n, b)| (n.clone(), b.to_vec()))
                        .collect(),
                    assignment: m.assignment.to_vec(),
                })
                .collect()
        } else {
            // A group in a rebalance restarts empty-handed: members rejoin.
            Vec::new()
        },
    }
}

fn restore(id: &str, s: Snapshot) -> Group {
    let mut g = Group::new(id);
    g.protocol_type = s.protocol_type;
    g.generation = s.generation;
    if s.members.is_empty() {
        return g;
    }
    g.protocol = s.protocol;
    g.leader = s.leader;
    g.state = State::Stable;
    let now = Instant::now();
    for m in s.members {
        if let Some(inst) = &m.instance_id {
            g.static_ids.insert(inst.clone(), m.id.clone());
        }
        g.members.insert(
            m.id.clone(),
            Member {
                id: m.id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout: Duration::from_millis(m.session_ms),
                rebalance_timeout: Duration::from_millis(m.rebalance_ms),
                protocols: m
                    .protocols
                    .into_iter()
                    .map(|(n, b)| (n, Bytes::from(b)))
                    .collect(),
                assignment: Bytes::from(m.assignment),
                // Members get a full session to reach the restarted coordinator.
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            },
        );
    }
    g
}
