//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as a state
//! machine on one group. Everything here runs under the coordinator's lock and never
//! waits: a request that must wait leaves a oneshot sender in its member, and whoever
//! completes the step answers it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::ResponseError as Code;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// States of a classic group, named as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
}

impl State {
    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// What a JoinGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    /// Error, if any.
    pub error: Option<Code>,
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader: every member's id, instance id and metadata.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// The leader need not assign (KIP-814: a static leader came back to a stable group).
    pub skip_assignment: bool,
}

impl JoinResult {
    /// An error answer.
    pub fn error(code: Code, member_id: &str) -> Self {
        JoinResult {
            error: Some(code),
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

/// What a SyncGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    /// Error, if any.
    pub error: Option<Code>,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    /// An error answer.
    pub fn error(code: Code) -> Self {
        SyncResult {
            error: Some(code),
            ..Default::default()
        }
    }
}

/// A member of a classic group.
#[derive(Debug)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Protocols in preference order, with metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Current assignment.
    pub assignment: Bytes,
    /// Last sign of life.
    pub last_heartbeat: Instant,
    /// A JoinGroup waiting for the rebalance to complete.
    pub join_waiter: Option<oneshot::Sender<JoinResult>>,
    /// A SyncGroup waiting for the leader.
    pub sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    /// Metadata for a protocol.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
    fn expired(&self, now: Instant) -> bool {
        self.join_waiter.is_none() && now.duration_since(self.last_heartbeat) > self.session_timeout
    }
}

/// A classic group.
#[derive(Debug)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// State.
    pub state: State,
    /// Protocol type ("consumer", "connect", …).
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Generation.
    pub generation: i32,
    /// Leader's member id.
    pub leader: Option<String>,
    /// Members, in join order.
    pub members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they expire.
    pub pending: HashMap<String, Instant>,
    /// Static members: instance id → member id.
    pub static_ids: HashMap<String, String>,
    /// When a rebalance must complete with whoever has rejoined.
    pub rebalance_deadline: Option<Instant>,
    /// A new group waits this long for more members before its first assignment.
    pub initial_delay_until: Option<Instant>,
    /// Set when the persisted form changed.
    pub dirty: bool,
}

/// Arguments of a JoinGroup.
#[derive(Debug, Clone)]
pub struct Join {
    /// Member id ("" for a new member).
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Protocol type.
    pub protocol_type: String,
    /// Protocols with metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// The client can take MEMBER_ID_REQUIRED (JoinGroup v4+).
    pub require_known_member_id: bool,
    /// The client can take SkipAssignment (JoinGroup v9+, KIP-814).
    pub supports_skip_assignment: bool,
}

/// Settings of the group coordinator that the state machine uses.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Delay of a new group's first rebalance.
    pub initial_delay: Duration,
    /// Members a group may have.
    pub max_size: usize,
}

/// What a join produced: an answer now, or later.
pub enum Joined {
    /// Answer now.
    Now(JoinResult),
    /// Wait for the rebalance.
    Later(oneshot::Receiver<JoinResult>),
}

impl Group {
    /// A new empty group.
    pub fn new(id: &str) -> Self {
        Group {
            id: id.to_string(),
            state: State::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            static_ids: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            dirty: false,
        }
    }

    fn supports(&self, j: &Join) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(j.protocol_type.as_str()) {
            return false;
        }
        self.common_protocols(Some(&j.protocols)).next().is_some()
    }

    fn common_protocols<'a>(
        &'a self,
        extra: Option<&'a Vec<(String, Bytes)>>,
    ) -> impl Iterator<Item = &'a String> + 'a {
        let first = extra
            .or_else(|| self.members.values().next().map(|m| &m.protocols))
            .into_iter()
            .flatten();
        first.map(|(n, _)| n).filter(move |n| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
        })
    }

    /// Handles a JoinGroup.
    pub fn join(&mut self, j: Join, limits: Limits, new_id: String) -> Joined {
        if !self.supports(&j) {
            return Joined::Now(JoinResult::error(
                Code::InconsistentGroupProtocol,
                &j.member_id,
            ));
        }
        if j.member_id.is_empty() {
            return self.join_new(j, limits, new_id);
        }
        if let Some(inst) = &j.instance_id {
            if self.static_ids.get(inst).is_some_and(|m| *m != j.member_id) {
                return Joined::Now(JoinResult::error(Code::FencedInstanceId, &j.member_id));
            }
        }
        if !self.members.contains_key(&j.member_id) {
            if self.pending.remove(&j.member_id).is_some() {
                return self.add_and_rebalance(j.member_id.clone(), j, limits);
            }
            return Joined::Now(JoinResult::error(Code::UnknownMemberId, &j.member_id));
        }
        let id = j.member_id.clone();
        let changed = self
            .members
            .get(&id)
            .is_some_and(|m| m.protocols != j.protocols);
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        self.update_member(&id, &j);
        match self.state {
            State::PreparingRebalance => self.wait_join(&id),
            State::CompletingRebalance | State::Stable
                if !(changed || is_leader && self.state == State::Stable) =>
            {
                Joined::Now(self.join_result(&id, false))
            }
            _ => {
                self.prepare_rebalance(limits);
                self.wait_join(&id)
            }
        }
    }

    fn join_new(&mut self, j: Join, limits: Limits, new_id: String) -> Joined {
        if let Some(inst) = j.instance_id.clone() {
            if let Some(old) = self.static_ids.get(&inst).cloned() {
                return self.replace_static(old, new_id, j, limits);
            }
        }
        if self.members.len() + self.pending.len() >= limits.max_size {
            return Joined::Now(JoinResult::error(Code::GroupMaxSizeReached, ""));
        }
        if j.instance_id.is_none() && j.require_known_member_id {
            self.pending
                .insert(new_id.clone(), Instant::now() + j.session_timeout);
            return Joined::Now(JoinResult::error(Code::MemberIdRequired, &new_id));
        }
        self.add_and_rebalance(new_id, j, limits)
    }

    /// A static member came back with a new member id: it takes the old member's place,
    /// and keeps its assignment without a rebalance unless it led the group.
    fn replace_static(&mut self, old: String, new_id: String, j: Join, limits: Limits) -> Joined {
        let Some(mut m) = self.members.shift_remove(&old) else {
            if let Some(inst) = &j.instance_id {
                self.static_ids.remove(inst);
            }
            return self.add_and_rebalance(new_id, j, limits);
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(Code::FencedInstanceId, &old));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResult::error(Code::FencedInstanceId));
        }
        let was_leader = self.leader.as_deref() == Some(old.as_str());
        let changed = m.protocols != j.protocols;
        m.id = new_id.clone();
        self.members.insert(new_id.clone(), m);
        if let Some(inst) = &j.instance_id {
            self.static_ids.insert(inst.clone(), new_id.clone());
        }
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        self.update_member(&new_id, &j);
        self.dirty = true;
        match self.state {
            State::PreparingRebalance => self.wait_join(&new_id),
            State::Stable | State::CompletingRebalance if !was_leader && !changed => {
                Joined::Now(self.join_result(&new_id, false))
            }
            // A static leader back in a stable group keeps the current assignment and nobody
            // else notices. With KIP-814 (v9+) it is told it leads but need not assign;
            // older clients are answered as followers, naming the old leader id, so that
            // they do not compute a new assignment either.
            State::Stable if was_leader && !changed => {
                let mut r = self.join_result(&new_id, j.supports_skip_assignment);
                if j.supports_skip_assignment {
                    r.skip_assignment = true;
                } else {
                    r.leader = old.clone();
                }
                Joined::Now(r)
            }
            _ => {
                self.prepare_rebalance(limits);
                self.wait_join(&new_id)
            }
        }
    }

    fn add_and_rebalance(&mut self, id: String, j: Join, limits: Limits) -> Joined {
        if self.members.len() >= limits.max_size {
            return Joined::Now(JoinResult::error(Code::GroupMaxSizeReached, &id));
        }
        if self.members.is_empty() {
            self.protocol_type = Some(j.protocol_type.clone());
        }
        if let Some(inst) = &j.instance_id {
            self.static_ids.insert(inst.clone(), id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: j.instance_id.clone(),
                client_id: j.client_id.clone(),
                client_host: j.client_host.clone(),
                session_timeout: j.session_timeout,
                rebalance_timeout: j.rebalance_timeout,
                protocols: j.protocols.clone(),
                assignment: Bytes::new(),
                last_heartbeat: Instant::now(),
                join_waiter: None,
                sync_waiter: None,
            },
        );
        if self.state == State::PreparingRebalance {
            if let Some(until) = self.initial_delay_until {
                // Each member joining a new group extends the wait, within the deadline.
                let next = Instant::now() + limits.initial_delay;
                let cap = self.rebalance_deadline.unwrap_or(next);
                self.initial_delay_until = Some(next.min(cap).max(until));
            }
        } else {
            self.prepare_rebalance(limits);
        }
        self.wait_join(&id)
    }

    fn update_member(&mut self, id: &str, j: &Join) {
        if let Some(m) = self.members.get_mut(id) {
            m.protocols = j.protocols.clone();
            m.session_timeout = j.session_timeout;
            m.rebalance_timeout = j.rebalance_timeout;
            m.client_id = j.client_id.clone();
            m.client_host = j.client_host.clone();
            m.last_heartbeat = Instant::now();
        }
    }

    fn wait_join(&mut self, id: &str) -> Joined {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(id) {
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinResult::error(Code::UnknownMemberId, id));
            }
        }
        self.maybe_complete_join(Instant::now());
        Joined::Later(rx)
    }

    fn join_result(&self, id: &str, with_members: bool) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: id.to_string(),
            members: if with_members {
                self.members
                    .values()
                    .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    /// Starts a rebalance: members must rejoin before the deadline.
    pub fn prepare_rebalance(&mut self, limits: Limits) {
        let now = Instant::now();
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(Code::RebalanceInProgress));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + timeout);
        self.initial_delay_until = (self.state == State::Empty && !limits.initial_delay.is_zero())
            .then(|| (now + limits.initial_delay).min(now + timeout));
        self.state = State::PreparingRebalance;
    }

    /// Completes the join phase once every member has rejoined (after a new group's
    /// initial delay), or at the deadline with those that did.
    pub fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let deadline_passed = self.rebalance_deadline.is_some_and(|d| now >= d);
        let delaying = self.initial_delay_until.is_some_and(|d| now < d);
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        if !(deadline_passed || (all_joined && !delaying)) {
            return;
        }
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        self.dirty = true;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = State::CompletingRebalance;
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result(&id, id == leader);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_heartbeat = now;
                m.assignment = Bytes::new();
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(result);
                }
            }
        }
    }

    fn select_protocol(&self) -> Option<String> {
        let candidates: Vec<&String> = self.common_protocols(None).collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|c| votes.get(*c).copied().unwrap_or(0))
            .map(|c| (*c).clone())
    }

    /// Removes a member, answering whatever it waits for.
    pub fn remove_member(&mut self, id: &str) -> bool {
        let Some(mut m) = self.members.shift_remove(id) else {
            return self.pending.remove(id).is_some();
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(Code::UnknownMemberId, id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResult::error(Code::UnknownMemberId));
        }
        if let Some(inst) = &m.instance_id {
            if self.static_ids.get(inst).is_some_and(|x| x == id) {
                self.static_ids.remove(inst);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        self.dirty = true;
        true
    }

    /// Checks a member's identity; the error to answer otherwise.
    pub fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), Code> {
        if let Some(inst) = instance_id {
            match self.static_ids.get(inst) {
                Some(m) if m != member_id => return Err(Code::FencedInstanceId),
                _ => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(Code::UnknownMemberId)
        }
    }

    /// Handles a SyncGroup.
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<oneshot::Receiver<SyncResult>, SyncResult> {
        self.check_member(member_id, instance_id)
            .map_err(SyncResult::error)?;
        if generation != self.generation {
            return Err(SyncResult::error(Code::IllegalGeneration));
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = Instant::now();
        }
        match self.state {
            State::Empty => Err(SyncResult::error(Code::UnknownMemberId)),
            State::PreparingRebalance => Err(SyncResult::error(Code::RebalanceInProgress)),
            State::Stable => Err(self.sync_result(member_id)),
            State::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.state = State::Stable;
                    self.dirty = true;
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let r = self.sync_result(&id);
                        if let Some(w) =
                            self.members.get_mut(&id).and_then(|m| m.sync_waiter.take())
                        {
                            let _ = w.send(r);
                        }
                    }
                }
                Ok(rx)
            }
        }
    }

    fn sync_result(&self, id: &str) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: self
                .members
                .get(id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), Code> {
        if self.state == State::Empty {
            return Err(Code::UnknownMemberId);
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(Code::IllegalGeneration);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = Instant::now();
        }
        match self.state {
            State::PreparingRebalance => Err(Code::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Handles one member of a LeaveGroup.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        limits: Limits,
    ) -> Result<(), Code> {
        let id = match instance_id {
            Some(inst) => match self.static_ids.get(inst) {
                None => return Err(Code::UnknownMemberId),
                Some(m) if !member_id.is_empty() && m != member_id => {
                    return Err(Code::FencedInstanceId)
                }
                Some(m) => m.clone(),
            },
            None => member_id.to_string(),
        };
        if !self.remove_member(&id) {
            return Err(Code::UnknownMemberId);
        }
        self.after_removal(limits);
        Ok(())
    }

    /// After members left or expired: rebalance, or finish a waiting one.
    pub fn after_removal(&mut self, limits: Limits) {
        match self.state {
            State::Stable | State::CompletingRebalance => {
                self.prepare_rebalance(limits);
                self.maybe_complete_join(Instant::now());
            }
            State::PreparingRebalance => self.maybe_complete_join(Instant::now()),
            State::Empty => {}
        }
    }

    /// Expires members and pending ids whose session ran out; true if any was removed.
    pub fn expire(&mut self, now: Instant, limits: Limits) -> bool {
        self.pending.retain(|_, until| *until > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.expired(now))
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.after_removal(limits);
        }
        self.maybe_complete_join(now);
        !expired.is_empty()
    }
}

#[cfg(test)]
mod tests;
