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

    /// The owner (and its epoch) a client refused with NOT_LEADER_OR_FOLLOWER should go
    /// to instead (KIP-951), when another live broker owns the partition.
    pub fn new_leader(&self, p: &Partition) -> Option<(i32, i32)> {
        self.owner_of(p).filter(|(n, _)| *n != self.node)
    }

    /// The live brokers among `nodes`, with their address on listener `index`.
    pub fn endpoints(
        &self,
        index: usize,
        nodes: &std::collections::BTreeSet<i32>,
    ) -> Vec<LiveBroker> {
        if nodes.is_empty() {
            return Vec::new();
        }
        let mut all = self.live_brokers(index);
        all.retain(|b| nodes.contains(&b.node));
        all
    }

    /// The owner of a partition and its epoch, as clients should be told: the newest of
    /// this broker's own claim and the cluster view's. This broker claims a partition it
    /// owns, and one its fence assigns it while it still takes it over (a request sent
    /// here meanwhile waits in [`Routing::await_ownership`]). A partition this broker gave
    /// up while its view still names it is still named here, as Kafka's old leader names
    /// itself until it learns of the new one: a client sent here waits for the view to
    /// move on and is then told the new leader. Only a partition with no live owner at
    /// all has none (LEADER_NOT_AVAILABLE), which librdkafka's offset queries take as
    /// final rather than retry.
    pub fn owner_of(&self, p: &Partition) -> Option<(i32, i32)> {
        let mine = p
            .state()
            .owner_epoch()
            .or_else(|| self.fence.get().epoch(&p.topic_id, p.index))
            .map(|e| (self.node, e));
        let seen = self.view.borrow().owner(&p.topic_id, p.index);
        match (mine, seen) {
            (Some(m), Some(s)) if s.1 > m.1 => Some(s),
            (Some(m), _) => Some(m),
            (None, s) => s,
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
        // The assignment may also go the other way meanwhile (the partition moved on):
        // a change of the view or of this broker's assignment ends the wait too, or an old
        // owner whose view lagged held its clients for the whole deadline.
        let mut view = self.view.clone();
        let mut fence = self.fence.changed.subscribe();
        loop {
            let changed = p.ownership_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if p.state().check_owner() != Err(Code::NotLeaderOrFollower) {
                return;
            }
            fence.borrow_and_update();
            let assigned = self.fence.get().epoch(&p.topic_id, p.index).is_some()
                || view
                    .borrow_and_update()
                    .owner(&p.topic_id, p.index)
                    .is_some_and(|(owner, _)| owner == self.node);
            if !assigned {
                return;
            }
            tokio::select! {
                _ = changed => {}
                Ok(()) = view.changed() => {}
                Ok(()) = fence.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use stratus_meta::keys::PartitionId;
    use stratus_meta::repo::PartitionRecord;

    #[test]
    fn a_partition_being_taken_over_or_just_given_up_names_a_leader() {
        let settings = Settings::from_pairs(vec![("node.id".into(), "1".into())]).unwrap();
        let fence = Arc::new(Fence::new(1, 7));
        let p = Partition::new("t".into(), "topic".into(), 0, &PartitionRecord::default());
        let view = |owner: Option<(i32, i32)>| {
            Arc::new(View {
                owners: owner
                    .map(|o| (PartitionId::new("t", 0), o))
                    .into_iter()
                    .collect(),
                ..Default::default()
            })
        };
        let (tx, rx) = watch::channel(view(Some((2, 3))));
        let routing = Routing::new(&settings, fence.clone(), rx);
        assert_eq!(routing.owner_of(&p), Some((2, 3)), "another broker owns it");

        // Assigned here at epoch 4, not yet taken over: this broker, whatever the view says.
        let assigned = stratus_meta::repo::Assignment {
            incarnation: 7,
            partitions: [(PartitionId::new("t", 0), 4)].into_iter().collect(),
            shards: Default::default(),
        };
        fence.update(10, assigned);
        assert_eq!(
            routing.owner_of(&p),
            Some((1, 4)),
            "view still names the old owner"
        );
        tx.send_replace(view(Some((1, 4))));
        assert_eq!(routing.owner_of(&p), Some((1, 4)), "view names this broker");
        // A newer epoch in the view wins over this broker's claim.
        tx.send_replace(view(Some((3, 5))));
        assert_eq!(routing.owner_of(&p), Some((3, 5)));

        // Given up (the fence no longer assigns it) while the view still names this broker.
        fence.update(11, Default::default());
        tx.send_replace(view(Some((1, 4))));
        assert_eq!(
            routing.owner_of(&p),
            Some((1, 4)),
            "named until the view moves on"
        );
        // No live owner anywhere: none.
        tx.send_replace(view(None));
        assert_eq!(routing.owner_of(&p), None);
    }

    #[tokio::test]
    async fn an_old_owner_whose_view_lagged_answers_as_soon_as_the_view_moves_on() {
        let settings = Settings::from_pairs(vec![("node.id".into(), "1".into())]).unwrap();
        let fence = Arc::new(Fence::new(1, 7));
        // The view still names this broker, but the partition is no longer owned here
        // (its assignment already moved on): the wait must end with the view's update.
        let stale = View {
            owners: [(PartitionId::new("t", 0), (1, 3))].into_iter().collect(),
            ..Default::default()
        };
        let (tx, rx) = watch::channel(Arc::new(stale));
        let routing = Arc::new(Routing::new(&settings, fence, rx));
        let p = Arc::new(Partition::new(
            "t".into(),
            "topic".into(),
            0,
            &PartitionRecord::default(),
        ));
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_secs(3);
        let waiting = {
            let (routing, p) = (routing.clone(), p.clone());
            tokio::spawn(async move { routing.await_ownership(&p, deadline).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !waiting.is_finished(),
            "waits while the view names this broker"
        );
        let moved = View {
            owners: [(PartitionId::new("t", 0), (2, 4))].into_iter().collect(),
            ..Default::default()
        };
        tx.send_replace(Arc::new(moved));
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the wait ended with the view's update, not at the deadline")
            .unwrap();
        assert_eq!(routing.owner_of(&p), Some((2, 4)));
    }
}
