//! What every partition-level handler looks up first, written once: the topic (by id from
//! the versions that send ids, else by name), the partition, and Kafka's leader-epoch check.

use std::sync::Arc;

use kafka_protocol::ResponseError as Code;
use uuid::Uuid;

use crate::partition::Partition;
use crate::registry::{Registry, Topic};

/// The topic a request names: by id when `by_id` (Fetch v13+, Produce v13+), else by name.
pub fn topic(registry: &Registry, by_id: bool, id: &Uuid, name: &str) -> Option<Arc<Topic>> {
    if by_id {
        registry.topic_by_id(id)
    } else {
        registry.topic(name)
    }
}

/// The error for a topic that is not there: UNKNOWN_TOPIC_ID when it was named by id.
pub fn unknown_topic(by_id: bool) -> Code {
    if by_id {
        Code::UnknownTopicId
    } else {
        Code::UnknownTopicOrPartition
    }
}

/// How long a request waits for a partition this broker was just assigned to be taken over
/// (`Broker::await_ownership`).
pub const OWNERSHIP_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The deadline of the wait for ownership of a request starting now.
pub fn ownership_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + OWNERSHIP_WAIT
}

/// Partition `index` of `topic`, if both exist.
pub fn partition(topic: Option<&Arc<Topic>>, index: i32) -> Option<&Arc<Partition>> {
    topic?.partitions.get(usize::try_from(index).ok()?)
}

/// Kafka's check of the leader epoch a client believes current against the partition's:
/// -1 skips it; an older one is FENCED_LEADER_EPOCH (the client refreshes metadata), a
/// newer one UNKNOWN_LEADER_EPOCH (this broker is behind).
pub fn check_leader_epoch(client: i32, epoch: i32) -> Result<(), Code> {
    if client < 0 || client == epoch {
        Ok(())
    } else if client < epoch {
        Err(Code::FencedLeaderEpoch)
    } else {
        Err(Code::UnknownLeaderEpoch)
    }
}

/// The owner's leader epoch of `p`, checked against the client's: NOT_LEADER_OR_FOLLOWER
/// unless this broker owns it, UNKNOWN_TOPIC_OR_PARTITION once deleted.
pub fn owned_epoch(p: &Partition, client: i32) -> Result<i32, Code> {
    let epoch = {
        let s = p.state();
        s.check_owner()?;
        s.leader_epoch()
    };
    check_leader_epoch(client, epoch).map(|()| epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epochs_are_checked_as_kafka_does() {
        assert_eq!(check_leader_epoch(-1, 5), Ok(()));
        assert_eq!(check_leader_epoch(5, 5), Ok(()));
        assert_eq!(check_leader_epoch(4, 5), Err(Code::FencedLeaderEpoch));
        assert_eq!(check_leader_epoch(6, 5), Err(Code::UnknownLeaderEpoch));
    }
}
