//! Where clients go: which broker leads a partition, which brokers are live and at what
//! address, and which replica a consumer of a rack reads from. Built from this broker's
//! fence (what it owns) and the cluster view (what every live broker owns); handlers that
//! route clients take a `&Routing`, not the broker.

use std::sync::Arc;

use kafka_protocol::ResponseError as Code;
use tokio::sync::watch;

use super::{Fence, View};
use crate::config::{Listener, Settings};
use crate::partition::Partition;

/// A live broker as clients reach it on one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroker {
    /// Node id.
    pub node: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// Rack, if set.
    pub rack: Option<String>,
}

/// This broker's view of where clients go.
pub struct Routing {
    node: i32,
    fence: Arc<Fence>,
    view: watch::Receiver<Arc<View>>,
    /// Listener names, in the order of `listeners`.
    listeners: Vec<String>,
    advertised: Vec<Listener>,
    rack: Option<String>,
    rack_aware_reads: bool,
}

impl Routing {
    /// Routing for this broker (`settings`), from its fence and its cluster view.
    pub fn new(settings: &Settings, fence: Arc<Fence>, view: watch::Receiver<Arc<View>>) -> Self {
        Routing {
            node: settings.server.node_id,
            fence,
            view,
            listeners: settings
                .server
                .listeners
                .iter()
                .map(|l| l.name.clone())
                .collect(),
            advertised: settings.advertised.clone(),
            rack: settings.server.rack.clone(),
            rack_aware_reads: settings.server.rack_aware_reads(),
        }
    }

    /// The address advertised to clients of listener `index`.
    pub fn advertised(&self, index: usize) -> &Listener {
        self.advertised.get(index).unwrap_or(&self.advertised[0])
    }

    /// Live brokers with their address on listener `index` (matched by listener name),
    /// by node. This broker is always listed.
    pub fn live_brokers(&self, index: usize) -> Vec<LiveBroker> {
        let name = self.listeners.get(index).cloned().unwrap_or_default();
        let view = self.view.borrow().clone();
        let mut out: Vec<_> = view
            .brokers
            .iter()
            .filter(|(n, _)| **n != self.node)
            .filter_map(|(n, r)| {
                let l = r
                    .listeners
                    .iter()
                    .find(|l| l.0 == name)
                    .or(r.listeners.first())?;
                Some(LiveBroker {
                    node: *n,
                    host: l.1.clone(),
                    port: l.2,
                    rack: r.rack.clone(),
                })
            })
            .collect();
        let a = self.advertised(index);
        out.push(LiveBroker {
            node: self.node,
            host: a.host.clone(),
            port: a.port,
            rack: self.rack.clone(),
        });
        out.sort_by_key(|b| b.node);
        out
    }

    /// The live owner of a partition and its epoch: this broker if it owns it, else what
    /// the cluster view says.
    pub fn owner_of(&self, p: &Partition) -> Option<(i32, i32)> {
        let local = p.state().owner_epoch().map(|e| (self.node, e));
        let seen = self.view.borrow().owner(&p.topic_id, p.index);
        match (local, seen) {
            (Some(l), Some(s)) if s.1 > l.1 => Some(s),
            (Some(l), _) => Some(l),
            (None, Some(s)) if s.0 != self.node => Some(s),
            _ => None,
        }
    }

    /// Waits (until `deadline` at the latest) while `p` is assigned to this broker but not
    /// yet taken over: the assignment is in the store, and other brokers already name this
    /// one as the leader, while this one still recovers the partition. A client sent here
    /// in that window gets its answer a moment later instead of NOT_LEADER_OR_FOLLOWER.
    pub async fn await_ownership(&self, p: &Partition, deadline: tokio::time::Instant) {
        // The common case, owned (or not ours at all): one look at the state, no waiter.
        if p.state().check_owner() != Err(Code::NotLeaderOrFollower) {
            return;
        }
        loop {
            let changed = p.ownership_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if p.state().check_owner() != Err(Code::NotLeaderOrFollower) {
                return;
            }
            let assigned = self.fence.get().epoch(&p.topic_id, p.index).is_some()
                || self
                    .view
                    .borrow()
                    .owner(&p.topic_id, p.index)
                    .is_some_and(|(owner, _)| owner == self.node);
            if !assigned || tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }

    /// The controller, as the cluster view says (this broker while none is known).
    pub fn controller(&self) -> i32 {
        self.view.borrow().controller.unwrap_or(self.node)
    }

    /// The live owner of a coordinator shard, as the cluster view says.
    pub fn shard_owner(&self, shard: u32) -> Option<i32> {
        self.view.borrow().shard_owners.get(&shard).map(|o| o.0)
    }

    /// KIP-392: the broker a consumer of `rack` should read a partition from, when it is
    /// not this one (none if this broker is in that rack, or no live broker is).
    pub fn preferred_replica(&self, rack: &str, partition: i32) -> Option<i32> {
        if !self.rack_aware_reads || rack.is_empty() || self.rack.as_deref() == Some(rack) {
            return None;
        }
        let view = self.view.borrow();
        let in_rack: Vec<i32> = view
            .brokers
            .iter()
            .filter(|(_, r)| r.rack.as_deref() == Some(rack) && !r.leaving)
            .map(|(n, _)| *n)
            .collect();
        if in_rack.is_empty() {
            return None;
        }
        Some(in_rack[partition.rem_euclid(in_rack.len() as i32) as usize])
    }
}
