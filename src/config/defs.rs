//! Every broker setting: name, default, meaning and the values it takes.

use super::kind::{Kind, INT, LONG};
use Kind::*;

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: i32 = 10_000;
/// The cleanup policies Kafka accepts.
pub const CLEANUP_POLICIES: &[&str] = &["delete", "compact", "compact,delete", "delete,compact"];

/// One documented setting: its name, default value, meaning and the values it takes.
pub struct SettingDoc {
    /// Property name, Kafka's where the concept is the same.
    pub name: &'static str,
    /// Default value as text (empty: derived from other settings, as `doc` says).
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// The values it takes.
    pub kind: Kind,
}

/// Every setting the broker understands, with its default.
pub const SETTINGS: &[SettingDoc] = &[
    s("listeners", "PLAINTEXT://127.0.0.1:9092", "Comma-separated listeners, NAME://HOST:PORT.", Listeners(false)),
    s("advertised.listeners", "", "Addresses given to clients in Metadata; defaults to listeners.", Listeners(true)),
    s("node.id", "1", "This broker's id.", Int(0, INT)),
    s("broker.rack", "", "Rack (zone) of this broker, reported in Metadata.", Text),
    s("data.dir", "./stratus-data", "Directory for embedded metadata, the local object store and the disk cache.", Text),
    s("metadata.store.url", "embedded", "Metadata store: embedded (a file under data.dir; one broker) or etcd://HOST:PORT[,HOST:PORT...][/namespace] for a cluster. etcd credentials come from ETCD_USERNAME / ETCD_PASSWORD.", Url(&["embedded", "etcd://"], true)),
    s("metadata.request.timeout.ms", "5000", "Deadline of one metadata-store request; a store that does not answer gives retriable errors.", Long(1, LONG)),
    s("broker.session.timeout.ms", "6000", "Lease of a broker's registration: a broker silent this long loses its partitions to the others.", Long(1, LONG)),
    s("admin.listener", "", "HOST:PORT of the gRPC admin API (stratus admin, the operator). Empty: not served.", Address),
    s("replica.selector.class", "org.apache.kafka.common.replica.RackAwareReplicaSelector", "KIP-392: a consumer with client.rack is pointed to a broker of its rack, which serves it from the object store. Empty: consumers always read from the owner.", Text),
    s("controlled.shutdown.timeout.ms", "30000", "On SIGTERM, longest wait for the controller to move this broker's partitions away.", Long(0, LONG)),
    s("object.store.url", "", "Object store URL: file:///path, s3://bucket/prefix, memory://. Default: file://<data.dir>/objects.", Url(&["file://", "s3://", "s3a://", "memory:"], true)),
    s("num.partitions", "1", "Partitions of auto-created topics and of CreateTopics with -1.", Int(1, MAX_PARTITIONS as i64)),
    s("default.replication.factor", "1", "Replication factor reported for topics created with -1 (durability comes from the object store).", Int(1, i16::MAX as i64)),
    s("auto.create.topics.enable", "true", "Create unknown topics on Metadata and Produce requests.", Bool),
    s("delete.topic.enable", "true", "Allow DeleteTopics.", Bool),
    s("message.max.bytes", "1048588", "Largest record batch a topic accepts unless max.message.bytes says otherwise.", Int(1, INT)),
    s("socket.request.max.bytes", "104857600", "Largest request frame; larger ones are refused before they are read.", Int(1, INT)),
    s("queued.max.request.bytes", "536870912", "Bytes of requests read and not yet answered, over all connections; more wait (backpressure).", Long(1, LONG)),
    s("max.connections", "10000", "Connections accepted at once; more wait in the accept queue.", Int(1, INT)),
    s("log.retention.ms", "604800000", "Default retention.ms of topics (-1: keep forever).", Long(-1, LONG)),
    s("log.retention.bytes", "-1", "Default retention.bytes of topics (-1: no size limit).", Long(-1, LONG)),
    s("log.segment.bytes", "33554432", "Default segment.bytes: a partition's unsealed data is sealed into a segment object at this size.", Int(14, INT)),
    s("log.roll.ms", "3600000", "Default segment.ms: unsealed data older than this is sealed into a segment object.", Long(1, LONG)),
    s("log.retention.check.interval.ms", "300000", "How often retention runs.", Long(1, LONG)),
    s("log.message.timestamp.type", "CreateTime", "Default message.timestamp.type of topics.", Choice(&["CreateTime", "LogAppendTime"])),
    s("log.cleanup.policy", "delete", "Default cleanup.policy of topics (only delete is supported).", Choice(CLEANUP_POLICIES)),
    s("wal.flush.interval.ms", "", "Longest wait for more data before a WAL object is written. Default: 2 (file), 0 (memory), 100 (s3).", Long(0, LONG)),
    s("wal.flush.bytes", "8388608", "A WAL object is written as soon as this many bytes are buffered.", Long(1, LONG)),
    s("wal.max.in.flight", "4", "WAL objects being written at once; their commits still apply in order.", Int(1, 1024)),
    s("wal.buffer.max.bytes", "67108864", "Produce bytes buffered or in flight to the object store before producers wait (backpressure).", Long(1, LONG)),
    s("cache.memory.bytes", "268435456", "Size of the in-memory block cache for reads of WAL and segment objects.", Long(0, LONG)),
    s("cache.disk.bytes", "", "Size of the local-disk block cache under <data.dir>/cache (0 disables it). Default: 0 for file:// stores (their objects are local already), 1073741824 otherwise.", Long(0, LONG)),
    s("cache.block.bytes", "1048576", "Size of a cached block; reads from the object store are ranged GETs of whole blocks (read-ahead).", Long(1, LONG)),
    s("seal.check.interval.ms", "1000", "How often partitions are checked for data to seal into segments.", Long(1, LONG)),
    s("producer.id.expiration.ms", "86400000", "Idempotent producers idle this long are forgotten (their next batch starts a new sequence).", Long(1, LONG)),
    s("group.min.session.timeout.ms", "6000", "Smallest session timeout a group member may ask for.", Long(0, LONG)),
    s("group.max.session.timeout.ms", "1800000", "Largest session timeout a group member may ask for.", Long(0, LONG)),
    s("group.initial.rebalance.delay.ms", "3000", "A new group waits this long for more members before its first rebalance completes.", Long(0, LONG)),
    s("group.max.size", "2147483647", "Members a consumer group may have.", Int(1, INT)),
    s("group.consumer.session.timeout.ms", "45000", "Session timeout of members of consumer-protocol (KIP-848) groups.", Long(1, LONG)),
    s("group.consumer.heartbeat.interval.ms", "5000", "Heartbeat interval given to members of consumer-protocol groups.", Long(1, LONG)),
    s("offsets.retention.minutes", "10080", "Committed offsets of an empty group are deleted after this.", Int(1, INT)),
    s("offset.metadata.max.bytes", "4096", "Largest metadata string of a committed offset.", Int(0, INT)),
    s("fetch.max.wait.cap.ms", "30000", "Upper bound on a Fetch's max_wait_ms.", Long(0, LONG)),
];

const fn s(name: &'static str, default: &'static str, doc: &'static str, kind: Kind) -> SettingDoc {
    SettingDoc {
        name,
        default,
        doc,
        kind,
    }
}

/// Looks up a setting.
pub fn def(name: &str) -> Option<&'static SettingDoc> {
    SETTINGS.iter().find(|d| d.name == name)
}
