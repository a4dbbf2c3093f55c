//! Every metadata key, built and parsed here and nowhere else.
//!
//! | prefix | holds | written by |
//! |---|---|---|
//! | `cluster/` | cluster id, controller, last leader epoch | first broker, controller |
//! | `producer_ids/next` | next free producer-id block | any broker |
//! | `topics/<name>` | topic records | any broker (admin requests) |
//! | `partitions/<topic-id>/<partition:06>` | partition records | the partition's owner |
//! | `wal/<node>/<seq:020>-<incarnation:016x>` | WAL index entries | the writing broker |
//! | `wal/<node>/c-<first:020>-<last:020>-<incarnation:016x>-<n:020>` | compacted WAL index entries | the writing broker |
//! | `brokers/<node>/…` | registration (leased), assignment, drain mark | broker, controller |
//! | `groups/<shard:02>/<group>` | group state | the shard's coordinator |
//! | `offsets/<shard:02>/<group>/<topic>` | committed offsets | the shard's coordinator |
//! | `acls/<binding id>` | ACL bindings | any broker (CreateAcls, DeleteAcls) |
//! | `scram/<user>/<mechanism>` | SCRAM credentials (salt, derived keys) | any broker (AlterUserScramCredentials) |
//! | `quotas/<user part>/<client-id part>` | client quotas of one entity | any broker (AlterClientQuotas) |
//!
//! Group ids and user names may hold any character: they are escaped (`%` → `%25`, `/` → `%2F`) so that
//! a key names one group and one topic unambiguously.

/// Key of the cluster id.
pub const CLUSTER_ID: &str = "cluster/id";
/// Key of the next free producer-id block.
pub const PRODUCER_IDS: &str = "producer_ids/next";
/// Prefix of topic records.
pub const TOPICS: &str = "topics/";

/// Key of a topic record.
pub fn topic_key(name: &str) -> String {
    format!("{TOPICS}{name}")
}
/// Prefix of a topic's partition records.
pub fn partitions_prefix(topic_id: &str) -> String {
    format!("partitions/{topic_id}/")
}
/// Key of a partition record.
pub fn partition_key(topic_id: &str, partition: i32) -> String {
    format!("partitions/{topic_id}/{partition:06}")
}
/// Prefix of a broker's WAL index entries.
pub fn wal_prefix(node: i32) -> String {
    format!("wal/{node}/")
}
/// Key of one WAL index entry: the sequence, then the incarnation, so that no two
/// processes ever write the same key.
pub fn wal_key(node: i32, seq: u64, incarnation: u64) -> String {
    format!("wal/{node}/{seq:020}-{incarnation:016x}")
}
/// Key of a compacted WAL index entry (one written by WAL compaction, not by a flush):
/// `first..=last` are the flush sequences of the entries it replaced (directly or through
/// other compacted entries), so that merges keep time order; `n` counts the compactions of
/// the incarnation. It has no flush sequence of its own ([`wal_seq`] is `None`).
pub fn compacted_wal_key(node: i32, first: u64, last: u64, incarnation: u64, n: u64) -> String {
    format!("wal/{node}/c-{first:020}-{last:020}-{incarnation:016x}-{n:020}")
}
/// The flush sequences `(first, last)` a compacted entry's key covers (`None` for a
/// flush's key, or a compacted key of the format before sequences were in it).
pub fn compacted_span(key: &str) -> Option<(u64, u64)> {
    let rest = key.rsplit('/').next()?.strip_prefix("c-")?;
    let parts: Vec<&str> = rest.split('-').collect();
    match parts[..] {
        [first, last, _, _] => Some((first.parse().ok()?, last.parse().ok()?)),
        _ => None,
    }
}
/// The highest flush sequence a WAL index key names: its own, or the last a compacted
/// entry covers. The next flush of the node takes a higher one.
pub fn wal_last_seq(key: &str) -> Option<u64> {
    wal_seq(key).or_else(|| compacted_span(key).map(|(_, last)| last))
}
/// Whether a WAL index key is a compacted entry's.
pub fn is_compacted_wal_key(key: &str) -> bool {
    key.rsplit('/').next().is_some_and(|k| k.starts_with("c-"))
}
/// The sequence of a flush's WAL index key (`None` for a compacted entry's).
pub fn wal_seq(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.split('-').next()?.parse().ok()
}
/// Prefix of everything about brokers.
pub const BROKERS: &str = "brokers/";
/// Key of a broker's assignment: the partitions and coordinator shards it owns, at which
/// epochs. Only the controller writes it; every write the broker makes for what it owns
/// (WAL commits, seals, offsets, groups) compares its revision, so a broker that lost
/// anything can never commit with a stale view.
pub fn assignment_key(node: i32) -> String {
    format!("brokers/{node}/assignment")
}
/// Key of a broker's registration, under its lease: present while the broker is alive.
pub fn registration_key(node: i32) -> String {
    format!("brokers/{node}/registration")
}
/// Key that marks a broker drained: the controller gives it nothing.
pub fn drain_key(node: i32) -> String {
    format!("brokers/{node}/drain")
}
/// Prefix of the brokers' load reports (outside `brokers/`, so that a report does not wake
/// every broker's cluster view).
pub const LOADS: &str = "loads/";
/// Key of a broker's load report, under its lease: the bytes per second each of its
/// partitions takes in and sends out, rewritten every `load.report.interval.ms`.
pub fn load_key(node: i32) -> String {
    format!("loads/{node}")
}
/// Key of the elected controller, under its lease.
pub const CONTROLLER: &str = "cluster/controller";
/// Key of the last leader epoch the controller handed out (epochs are cluster-wide and
/// only grow, so every partition's epochs grow with each move).
pub const EPOCH: &str = "cluster/epoch";

/// Its version counts the rounds of etcd history compaction (`etcd::Compactor`); not under
/// `cluster/`, whose changes every broker re-reads its view for.
pub const COMPACTION: &str = "compaction";

/// A partition: its topic's id and its index. Assignments and the cluster view name it
/// `<topic-id>:<index>` (its `Display`, and its serde form).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct PartitionId {
    /// The topic's id.
    pub topic_id: std::sync::Arc<str>,
    /// The partition's index.
    pub index: i32,
}

impl PartitionId {
    /// Partition `index` of topic `topic_id`.
    pub fn new(topic_id: &str, index: i32) -> Self {
        PartitionId {
            topic_id: std::sync::Arc::from(topic_id),
            index,
        }
    }

    /// Key of its partition record.
    pub fn record_key(&self) -> String {
        partition_key(&self.topic_id, self.index)
    }
}

impl std::fmt::Display for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.topic_id, self.index)
    }
}

impl std::str::FromStr for PartitionId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (topic, index) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("'{s}' is not <topic-id>:<partition>"))?;
        let index = index
            .parse::<i32>()
            .map_err(|_| format!("'{s}' is not <topic-id>:<partition>"))?;
        Ok(PartitionId::new(topic, index))
    }
}

impl From<PartitionId> for String {
    fn from(p: PartitionId) -> String {
        p.to_string()
    }
}

impl TryFrom<String> for PartitionId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// Prefix of partition records.
pub const PARTITIONS: &str = "partitions/";
/// Prefix of every WAL index entry.
pub const WAL: &str = "wal/";

/// The partition of a partition record key.
pub fn parse_partition_key(key: &str) -> Option<PartitionId> {
    let rest = key.strip_prefix(PARTITIONS)?;
    let (t, p) = rest.split_once('/')?;
    Some(PartitionId::new(t, p.parse::<i32>().ok()?))
}

/// Key of a broker's void floor: every flush sequence of the node up to this value (a
/// decimal) that no WAL index entry names was never committed and never will be. Written
/// durably before a failed flush's offsets are given out again, so that rebuilding index
/// entries from WAL objects after a crash (on a store whose WAL commits may be lost) never
/// takes such an object for a lost commit. Not under [`WAL`].
pub fn wal_void_key(node: i32) -> String {
    format!("walvoid/{node}")
}

/// The node of a WAL index key.
pub fn wal_node(key: &str) -> Option<i32> {
    key.strip_prefix(WAL)?.split('/').next()?.parse().ok()
}

/// Number of coordinator shards group ids hash into. Part of the stored layout: changing
/// it moves groups between shards.
pub const SHARDS: u32 = 64;
/// Prefix of group records.
pub const GROUPS: &str = "groups/";
/// Prefix of committed offsets.
pub const OFFSETS: &str = "offsets/";

/// The shard of a group id (FNV-1a): stable across brokers and versions.
pub fn shard_of(group: &str) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in group.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h % SHARDS
}

/// Prefix of one shard's group records.
pub fn groups_prefix(shard: u32) -> String {
    format!("{GROUPS}{shard:02}/")
}
/// Key of a group record.
pub fn group_key(group: &str) -> String {
    format!("{}{}", groups_prefix(shard_of(group)), escape(group))
}
/// The group id of a group record key under `groups_prefix(shard)`.
pub fn parse_group_key(key: &str, shard: u32) -> Option<String> {
    let rest = key.strip_prefix(&groups_prefix(shard))?;
    (!rest.contains('/')).then(|| unescape(rest))
}

/// Prefix of one shard's committed offsets.
pub fn offsets_prefix(shard: u32) -> String {
    format!("{OFFSETS}{shard:02}/")
}
/// Key of a group's committed offsets for one topic.
pub fn offset_key(group: &str, topic: &str) -> String {
    format!(
        "{}{}/{topic}",
        offsets_prefix(shard_of(group)),
        escape(group)
    )
}
/// The (group, topic) of an offsets key under `offsets_prefix(shard)`.
pub fn parse_offset_key(key: &str, shard: u32) -> Option<(String, String)> {
    let rest = key.strip_prefix(&offsets_prefix(shard))?;
    let (g, topic) = rest.split_once('/')?;
    Some((unescape(g), topic.to_string()))
}

/// Prefix of ACL bindings.
pub const ACLS: &str = "acls/";
/// Key of an ACL binding (its id is a hash of the binding).
pub fn acl_key(id: &str) -> String {
    format!("{ACLS}{id}")
}

/// Prefix of SCRAM credentials.
pub const SCRAM: &str = "scram/";
/// Key of a user's SCRAM credential for one mechanism (`SCRAM-SHA-256`).
pub fn scram_key(user: &str, mechanism: &str) -> String {
    format!("{SCRAM}{}/{mechanism}", escape(user))
}
/// The (user, mechanism) of a SCRAM credential key.
pub fn parse_scram_key(key: &str) -> Option<(String, String)> {
    let (user, mechanism) = key.strip_prefix(SCRAM)?.split_once('/')?;
    (!mechanism.contains('/')).then(|| (unescape(user), mechanism.to_string()))
}

/// Prefix of client quotas.
pub const QUOTAS: &str = "quotas/";
/// Key of one client-quota entity. Each part is `-` when the entity has no such part, `*`
/// for the default entity, and `=<name>` for a named one.
pub fn quota_key(user: Option<Option<&str>>, client_id: Option<Option<&str>>) -> String {
    fn part(p: Option<Option<&str>>) -> String {
        match p {
            None => "-".into(),
            Some(None) => "*".into(),
            Some(Some(name)) => format!("={}", escape(name)),
        }
    }
    format!("{QUOTAS}{}/{}", part(user), part(client_id))
}

fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn unescape(s: &str) -> String {
    s.replace("%2F", "/").replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_are_the_ones_stores_already_hold() {
        assert_eq!(topic_key("orders"), "topics/orders");
        assert_eq!(partition_key("9f", 3), "partitions/9f/000003");
        assert_eq!(
            wal_key(2, 42, 0xab),
            "wal/2/00000000000000000042-00000000000000ab"
        );
        assert_eq!(assignment_key(1), "brokers/1/assignment");
        assert_eq!(shard_of("g"), 6);
        assert_eq!(
            group_key("a/b%"),
            format!("groups/{:02}/a%2Fb%25", shard_of("a/b%"))
        );
        assert_eq!(offset_key("g", "t"), "offsets/06/g/t");
    }

    #[test]
    fn quota_keys_tell_entities_apart() {
        assert_eq!(quota_key(Some(Some("alice")), None), "quotas/=alice/-");
        assert_eq!(quota_key(Some(None), Some(Some("*"))), "quotas/*/=*");
        assert_eq!(quota_key(None, Some(Some("a/b"))), "quotas/-/=a%2Fb");
        assert_ne!(quota_key(Some(Some("-")), None), quota_key(None, None));
    }

    proptest! {
        #[test]
        fn scram_keys_round_trip(user in "\\PC{0,20}") {
            prop_assert_eq!(
                parse_scram_key(&scram_key(&user, "SCRAM-SHA-512")),
                Some((user, "SCRAM-SHA-512".to_string()))
            );
        }

        #[test]
        fn group_and_offset_keys_round_trip(group in "\\PC{0,20}", topic in "[a-zA-Z0-9._-]{1,20}") {
            let shard = shard_of(&group);
            prop_assert_eq!(parse_group_key(&group_key(&group), shard), Some(group.clone()));
            prop_assert_eq!(parse_offset_key(&offset_key(&group, &topic), shard), Some((group, topic)));
        }

        #[test]
        fn partition_and_wal_keys_round_trip(topic in "[0-9a-f-]{1,36}", p in 0i32..1_000_000, node in 0i32.., seq: u64, inc: u64) {
            let id = PartitionId::new(&topic, p);
            prop_assert_eq!(parse_partition_key(&id.record_key()), Some(id.clone()));
            prop_assert_eq!(id.to_string().parse::<PartitionId>(), Ok(id));
            let k = wal_key(node, seq, inc);
            prop_assert_eq!(wal_seq(&k), Some(seq));
            prop_assert_eq!(wal_node(&k), Some(node));
            prop_assert!(!is_compacted_wal_key(&k));
            let c = compacted_wal_key(node, seq / 2, seq, inc, p as u64);
            prop_assert_eq!(wal_seq(&c), None);
            prop_assert_eq!(compacted_span(&c), Some((seq / 2, seq)));
            prop_assert_eq!(wal_last_seq(&c), Some(seq));
            prop_assert_eq!(wal_last_seq(&k), Some(seq));
            prop_assert_eq!(compacted_span(&k), None);
            prop_assert_eq!(wal_node(&c), Some(node));
            prop_assert!(is_compacted_wal_key(&c));
        }
    }
}
