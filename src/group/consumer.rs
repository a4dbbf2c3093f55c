//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat): the broker computes
//! the target assignment with a server-side assignor and moves each member towards it,
//! revoking partitions before they are given to another member. Member epochs fence
//! stale members. Runs under the coordinator's lock; nothing here waits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError as Code;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::assignor::{self, MemberSpec, Tp};

/// A topic as the coordinator sees it: name, id, partitions.
pub type TopicInfo = (String, Uuid, i32);

/// One member of a consumer group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerMember {
    /// Member id.
    pub id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Rack.
    pub rack_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Current epoch.
    pub epoch: i32,
    /// Epoch before the last bump (a request at this epoch is still accepted).
    pub previous_epoch: i32,
    /// Subscribed topic names.
    pub topics: BTreeSet<String>,
    /// Subscribed regex.
    pub regex: Option<String>,
    /// Requested server assignor.
    pub assignor: Option<String>,
    /// Rebalance timeout (ms).
    pub rebalance_timeout_ms: u64,
    /// Partitions the member owns (as acknowledged or given).
    pub assigned: BTreeSet<Tp>,
    /// Partitions it must give up before it advances.
    pub revoking: BTreeSet<Tp>,
    #[serde(skip, default = "Instant::now")]
    last_heartbeat: Instant,
    #[serde(skip)]
    revoking_since: Option<Instant>,
    #[serde(skip)]
    sent: Option<BTreeSet<Tp>>,
}

/// A heartbeat's request, decoded.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// Member id (client-generated from v1).
    pub member_id: String,
    /// Epoch the member is at (0: join, -1: leave, -2: static leave).
    pub epoch: i32,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Rack.
    pub rack_id: Option<String>,
    /// Rebalance timeout, -1 unchanged.
    pub rebalance_timeout_ms: i32,
    /// Subscribed names, `None` unchanged.
    pub topics: Option<Vec<String>>,
    /// Subscribed regex, `None` unchanged.
    pub regex: Option<String>,
    /// Server assignor, `None` unchanged.
    pub assignor: Option<String>,
    /// Owned partitions, `None` unchanged.
    pub owned: Option<BTreeSet<Tp>>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Error, if any.
    pub error: Option<Code>,
    /// Member id.
    pub member_id: String,
    /// Member epoch.
    pub epoch: i32,
    /// New assignment, when it changed.
    pub assignment: Option<BTreeSet<Tp>>,
}

impl Answer {
    /// An error answer.
    pub fn error(code: Code, member_id: &str) -> Self {
        Answer {
            error: Some(code),
            member_id: member_id.to_string(),
            epoch: -1,
            assignment: None,
        }
    }
}

/// A consumer group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConsumerGroup {
    /// Group epoch: bumped when members or subscriptions change.
    pub epoch: i32,
    /// Epoch of the target assignment.
    pub assignment_epoch: i32,
    /// Members.
    pub members: BTreeMap<String, ConsumerMember>,
    /// Target assignment.
    pub target: BTreeMap<String, BTreeSet<Tp>>,
    /// Partitions per subscribed topic when the target was computed.
    pub subscribed: BTreeMap<Uuid, i32>,
    /// Assignor of the target.
    pub assignor: String,
    /// Set when the persisted form changed.
    #[serde(skip)]
    pub dirty: bool,
}

impl ConsumerGroup {
    /// Kafka's state name.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || !m.revoking.is_empty())
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Handles a ConsumerGroupHeartbeat.
    pub fn heartbeat(&mut self, hb: Heartbeat, topics: &[TopicInfo], max_size: usize) -> Answer {
        let now = Instant::now();
        if hb.epoch == -2 {
            // A static member leaving for a while: its partitions stay reserved for it
            // until its session times out, so a quick restart moves nothing.
            if let Some(m) = self.members.get_mut(&hb.member_id) {
                if m.instance_id.is_some() {
                    m.last_heartbeat = now;
                    return Answer {
                        error: None,
                        member_id: hb.member_id,
                        epoch: -2,
                        assignment: None,
                    };
                }
            }
        }
        if hb.epoch == -1 || hb.epoch == -2 {
            if self.members.remove(&hb.member_id).is_some() {
                self.bump();
            }
            return Answer {
                error: None,
                member_id: hb.member_id,
                epoch: hb.epoch,
                assignment: None,
            };
        }
        if hb.epoch == 0 {
            if hb.topics.as_ref().is_none_or(|t| t.is_empty())
                && hb.regex.is_none()
                && !self.members.contains_key(&hb.member_id)
            {
                // Joining with no subscription is allowed only when the client says so.
                if hb.topics.is_none() {
                    return Answer::error(Code::InvalidRequest, &hb.member_id);
                }
            }
            if let Some(a) = &hb.assignor {
                if !assignor::ASSIGNORS.contains(&a.as_str()) {
                    return Answer::error(Code::UnsupportedAssignor, &hb.member_id);
                }
            }
            if !self.members.contains_key(&hb.member_id) {
                if self.members.len() >= max_size {
                    return Answer::error(Code::GroupMaxSizeReached, &hb.member_id);
                }
                // A static member coming back takes over its old incarnation.
                let old = hb.instance_id.as_ref().and_then(|inst| {
                    self.members
                        .values()
                        .find(|m| m.instance_id.as_ref() == Some(inst))
                        .map(|m| m.id.clone())
                });
                let mut m = match old.and_then(|o| self.members.remove(&o)) {
                    Some(mut prev) => {
                        prev.id = hb.member_id.clone();
                        prev.sent = None;
                        prev
                    }
                    None => ConsumerMember {
                        id: hb.member_id.clone(),
                        instance_id: hb.instance_id.clone(),
                        rack_id: None,
                        client_id: String::new(),
                        client_host: String::new(),
                        epoch: 0,
                        previous_epoch: 0,
                        topics: BTreeSet::new(),
                        regex: None,
                        assignor: None,
                        rebalance_timeout_ms: 300_000,
                        assigned: BTreeSet::new(),
                        revoking: BTreeSet::new(),
                        last_heartbeat: now,
                        revoking_since: None,
                        sent: None,
                    },
                };
                m.last_heartbeat = now;
                self.members.insert(hb.member_id.clone(), m);
                self.bump();
            } else if let Some(m) = self.members.get_mut(&hb.member_id) {
                // A known member rejoining at epoch 0 starts over.
                m.assigned.clear();
                m.revoking.clear();
                m.sent = None;
            }
        } else {
            let Some(m) = self.members.get(&hb.member_id) else {
                return Answer::error(Code::UnknownMemberId, &hb.member_id);
            };
            let owned_ok = hb
                .owned
                .as_ref()
                .is_none_or(|o| o.is_subset(&m.assigned.union(&m.revoking).copied().collect()));
            if hb.epoch != m.epoch && !(hb.epoch == m.previous_epoch && owned_ok) {
                return Answer::error(Code::FencedMemberEpoch, &hb.member_id);
            }
        }
        let mut changed = false;
        if let Some(m) = self.members.get_mut(&hb.member_id) {
            m.last_heartbeat = now;
            m.client_id = hb.client_id.clone();
            m.client_host = hb.client_host.clone();
            if hb.rack_id.is_some() {
                m.rack_id = hb.rack_id.clone();
            }
            if hb.rebalance_timeout_ms >= 0 {
                m.rebalance_timeout_ms = hb.rebalance_timeout_ms as u64;
            }
            if let Some(t) = &hb.topics {
                let t: BTreeSet<String> = t.iter().cloned().collect();
                changed |= t != m.topics;
                m.topics = t;
            }
            if let Some(r) = &hb.regex {
                let r = Some(r.clone()).filter(|r| !r.is_empty());
                changed |= r != m.regex;
                m.regex = r;
            }
            if let Some(a) = &hb.assignor {
                m.assignor = Some(a.clone()).filter(|a| !a.is_empty());
            }
            if let Some(owned) = &hb.owned {
                // Revocation is acknowledged once the member no longer owns them.
                if !m.revoking.is_empty() && m.revoking.is_disjoint(owned) {
                    m.revoking.clear();
                    m.revoking_since = None;
                }
            }
        }
        if changed {
            self.bump();
        }
        let metadata = self.subscription_metadata(topics);
        if metadata != self.subscribed {
            self.bump();
        }
        if self.assignment_epoch < self.epoch {
            self.compute_target(topics, metadata);
        }
        self.reconcile(&hb.member_id, now)
    }

    fn bump(&mut self) {
        self.epoch += 1;
        self.dirty = true;
    }

    fn member_topics(&self, m: &ConsumerMember, topics: &[TopicInfo]) -> BTreeSet<Uuid> {
        let regex = m
            .regex
            .as_ref()
            .and_then(|r| regex::Regex::new(&format!("^(?:{r})$")).ok());
        topics
            .iter()
            .filter(|(n, _, _)| {
                m.topics.contains(n) || regex.as_ref().is_some_and(|re| re.is_match(n))
            })
            .map(|(_, id, _)| *id)
            .collect()
    }

    fn subscription_metadata(&self, topics: &[TopicInfo]) -> BTreeMap<Uuid, i32> {
        let mut out = BTreeMap::new();
        for m in self.members.values() {
            for id in self.member_topics(m, topics) {
                if let Some((_, _, n)) = topics.iter().find(|(_, t, _)| *t == id) {
                    out.insert(id, *n);
                }
            }
        }
        out
    }

    fn compute_target(&mut self, topics: &[TopicInfo], metadata: BTreeMap<Uuid, i32>) {
        let subs: Vec<(String, BTreeSet<Uuid>)> = self
            .members
            .values()
            .map(|m| (m.id.clone(), self.member_topics(m, topics)))
            .collect();
        let name = self
            .members
            .values()
            .find_map(|m| m.assignor.clone())
            .unwrap_or_else(|| assignor::ASSIGNORS[0].to_string());
        let specs: Vec<MemberSpec<'_>> = subs
            .iter()
            .map(|(id, t)| MemberSpec {
                id,
                topics: t,
                current: self.target.get(id).unwrap_or(&self.members[id].assigned),
            })
            .collect();
        let target = assignor::assign(&name, &specs, &metadata);
        self.target = target;
        self.subscribed = metadata;
        self.assignor = name;
        self.assignment_epoch = self.epoch;
        self.dirty = true;
    }

    /// Moves a member towards its target: first revoke, then advance its epoch and give it
    /// whatever of its target no other member still holds.
    fn reconcile(&mut self, id: &str, now: Instant) -> Answer {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let held_by_others: BTreeSet<Tp> = self
            .members
            .values()
            .filter(|o| o.id != id)
            .flat_map(|o| o.assigned.iter().chain(o.revoking.iter()).copied())
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(id) else {
            return Answer::error(Code::UnknownMemberId, id);
        };
        let to_revoke: BTreeSet<Tp> = m.assigned.difference(&target).copied().collect();
        if !to_revoke.is_empty() {
            m.assigned = m.assigned.intersection(&target).copied().collect();
            m.revoking.extend(to_revoke);
            m.revoking_since = Some(now);
            self.dirty = true;
        } else if m.revoking.is_empty() {
            if m.epoch != assignment_epoch {
                m.previous_epoch = m.epoch;
                m.epoch = assignment_epoch;
                self.dirty = true;
            }
            let grant: Vec<Tp> = target
                .difference(&m.assigned)
                .filter(|tp| !held_by_others.contains(tp))
                .copied()
                .collect();
            if !grant.is_empty() {
                m.assigned.extend(grant);
                self.dirty = true;
            }
        }
        let assignment = (m.sent.as_ref() != Some(&m.assigned)).then(|| m.assigned.clone());
        if assignment.is_some() {
            m.sent = Some(m.assigned.clone());
        }
        Answer {
            error: None,
            member_id: id.to_string(),
            epoch: m.epoch,
            assignment,
        }
    }

    /// Removes members whose session ran out or who did not revoke in time.
    pub fn expire(&mut self, now: Instant, session: Duration) -> bool {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now.duration_since(m.last_heartbeat) > session
                    || m.revoking_since.is_some_and(|s| {
                        now.duration_since(s) > Duration::from_millis(m.rebalance_timeout_ms)
                    })
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            tracing::info!(member = %id, "consumer group member expired");
            self.members.remove(id);
        }
        if !gone.is_empty() {
            self.bump();
        }
        !gone.is_empty()
    }

    /// Whether an OffsetCommit at `epoch` from `member` may commit.
    pub fn check_commit(&self, member: &str, epoch: i32) -> Result<(), Code> {
        if epoch < 0 && member.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(Code::UnknownMemberId)
            };
        }
        let m = self.members.get(member).ok_or(Code::UnknownMemberId)?;
        if epoch > m.epoch {
            return Err(Code::FencedMemberEpoch);
        }
        if epoch < m.epoch && epoch != m.previous_epoch {
            return Err(Code::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Forgets what was sent to `member` (its answer was not delivered): the next
    /// heartbeat sends its assignment again.
    pub fn unsent(&mut self, member: &str) {
        if let Some(m) = self.members.get_mut(member) {
            m.sent = None;
        }
    }

    /// Restarts members' session timers (after loading).
    pub fn restart_sessions(&mut self) {
        let now = Instant::now();
        for m in self.members.values_mut() {
            m.last_heartbeat = now;
            m.sent = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(id: &str, epoch: i32, owned: Option<&BTreeSet<Tp>>) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            epoch,
            rebalance_timeout_ms: 30_000,
            topics: (epoch == 0).then(|| vec!["t".to_string()]),
            owned: owned.cloned(),
            ..Default::default()
        }
    }

    #[test]
    fn revokes_before_reassigning() {
        let t = Uuid::new_v4();
        let topics = vec![("t".to_string(), t, 4)];
        let mut g = ConsumerGroup::default();
        let a = g.heartbeat(hb("a", 0, None), &topics, 100);
        let a_parts = a.assignment.clone().unwrap();
        assert_eq!(a_parts.len(), 4);
        let b = g.heartbeat(hb("b", 0, None), &topics, 100);
        assert_eq!(
            b.assignment,
            Some(BTreeSet::new()),
            "b waits for a to revoke"
        );
        let a2 = g.heartbeat(hb("a", a.epoch, Some(&a_parts)), &topics, 100);
        let kept = a2.assignment.clone().unwrap();
        assert_eq!(kept.len(), 2, "a is told to keep two");
        assert_eq!(g.state(), "Reconciling");
        let a3 = g.heartbeat(hb("a", a2.epoch, Some(&kept)), &topics, 100);
        assert_eq!(a3.epoch, g.assignment_epoch, "a advanced once it revoked");
        let b2 = g.heartbeat(hb("b", b.epoch, Some(&BTreeSet::new())), &topics, 100);
        let got = b2.assignment.unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.is_disjoint(&kept), "no partition is owned twice");
        assert_eq!(g.state(), "Stable");
        let stale = g.heartbeat(hb("b", 999, None), &topics, 100);
        assert_eq!(stale.error, Some(Code::FencedMemberEpoch));
    }

    #[test]
    fn static_member_comes_back_to_its_partitions() {
        let t = Uuid::new_v4();
        let topics = vec![("t".to_string(), t, 4)];
        let mut g = ConsumerGroup::default();
        let join = |g: &mut ConsumerGroup, id: &str, inst: &str| {
            let mut h = hb(id, 0, None);
            h.instance_id = Some(inst.into());
            g.heartbeat(h, &topics, 100)
        };
        let a = join(&mut g, "a1", "A");
        let a_parts = a.assignment.unwrap();
        g.heartbeat(hb("a1", a.epoch, Some(&a_parts)), &topics, 100);
        let b = join(&mut g, "b1", "B");
        let kept = g
            .heartbeat(hb("a1", a.epoch, Some(&a_parts)), &topics, 100)
            .assignment
            .unwrap();
        g.heartbeat(hb("a1", a.epoch, Some(&kept)), &topics, 100);
        let b_parts = g
            .heartbeat(hb("b1", b.epoch, Some(&BTreeSet::new())), &topics, 100)
            .assignment
            .unwrap();
        assert_eq!(b_parts.len(), 2);
        // B restarts: leaves with -2, comes back under a new member id.
        let left = g.heartbeat(hb("b1", -2, None), &topics, 100);
        assert_eq!(left.epoch, -2);
        let back = join(&mut g, "b2", "B");
        assert_eq!(
            back.assignment.unwrap(),
            b_parts,
            "same partitions, nothing moved"
        );
        assert!(!g.members.contains_key("b1"));
    }
}
