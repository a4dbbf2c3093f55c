//! Typed records kept in the metadata store (their keys are in [`crate::keys`]). Shared by
//! every backend.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{MetaError, MetaStore, Versioned};
use crate::keys;

/// A live broker, as it registers itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Registration {
    /// Node id.
    pub node: i32,
    /// Unique per process start.
    pub incarnation: u64,
    /// Advertised Kafka listeners: (name, host, port).
    pub listeners: Vec<(String, String, u16)>,
    /// `broker.rack`.
    #[serde(default)]
    pub rack: Option<String>,
    /// Admin API address, if served.
    #[serde(default)]
    pub admin: Option<String>,
    /// Set while the broker shuts down: it is handing everything off.
    #[serde(default)]
    pub leaving: bool,
}

/// A broker's measured traffic, per partition it owns: what the controller balances.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    /// The reporting incarnation; a report of another is ignored.
    pub incarnation: u64,
    /// (bytes in, bytes out) per second, smoothed over the last reports; partitions
    /// without traffic are left out.
    pub partitions: BTreeMap<keys::PartitionId, (u64, u64)>,
}

/// What a broker owns, written by the controller. Encoded as any record (version 1:
/// `"<topic-id>:<index>": epoch`, about 46 bytes a partition), or, where that would not
/// fit in etcd's request limit, compact ([`Assignment::encode_compact`], version 2:
/// partitions by topic and epoch, a few bytes each), which builds before it refuse.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(from = "AssignmentWire")]
pub struct Assignment {
    /// The broker incarnation this was computed for; another incarnation owns nothing.
    pub incarnation: u64,
    /// Owned partitions and their leader epochs.
    pub partitions: BTreeMap<keys::PartitionId, i32>,
    /// Owned group-coordinator shards and their epochs.
    #[serde(default)]
    pub shards: BTreeMap<u32, i32>,
}

/// Either encoding of an [`Assignment`].
#[derive(Deserialize)]
struct AssignmentWire {
    incarnation: u64,
    #[serde(default)]
    partitions: BTreeMap<keys::PartitionId, i32>,
    /// Topic id → leader epoch → partition indexes (the compact encoding).
    #[serde(default)]
    topics: BTreeMap<String, BTreeMap<i32, Vec<i32>>>,
    #[serde(default)]
    shards: BTreeMap<u32, i32>,
}

impl From<AssignmentWire> for Assignment {
    fn from(w: AssignmentWire) -> Self {
        let mut partitions = w.partitions;
        for (topic, epochs) in w.topics {
            let topic: std::sync::Arc<str> = std::sync::Arc::from(topic);
            for (epoch, indexes) in epochs {
                for index in indexes {
                    let id = keys::PartitionId {
                        topic_id: topic.clone(),
                        index,
                    };
                    partitions.insert(id, epoch);
                }
            }
        }
        Assignment {
            incarnation: w.incarnation,
            partitions,
            shards: w.shards,
        }
    }
}

/// The version of [`Assignment::encode_compact`].
pub const COMPACT_ASSIGNMENT_VERSION: u64 = 2;

impl Assignment {
    /// The compact encoding: partitions by topic, then by leader epoch (a placement round
    /// gives most of a broker's partitions one epoch), so 2-6 bytes a partition, not 46.
    /// Version 2: a build before it refuses it as written by a newer Stratus, rather than
    /// read it as owning nothing.
    pub fn encode_compact(&self) -> Bytes {
        #[derive(Serialize)]
        struct Compact<'a> {
            incarnation: u64,
            topics: BTreeMap<&'a str, BTreeMap<i32, Vec<i32>>>,
            shards: &'a BTreeMap<u32, i32>,
        }
        let mut topics: BTreeMap<&str, BTreeMap<i32, Vec<i32>>> = BTreeMap::new();
        for (p, epoch) in &self.partitions {
            topics
                .entry(&p.topic_id)
                .or_default()
                .entry(*epoch)
                .or_default()
                .push(p.index);
        }
        let compact = Compact {
            incarnation: self.incarnation,
            topics,
            shards: &self.shards,
        };
        encode_at(&compact, COMPACT_ASSIGNMENT_VERSION)
    }
}

/// The elected controller.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ControllerRecord {
    /// Node id.
    pub node: i32,
    /// Its incarnation.
    pub incarnation: u64,
}

/// A topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicRecord {
    /// Topic id (UUID text).
    pub id: String,
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor as requested (reported in Metadata; durability is the object store's).
    pub replication_factor: i16,
    /// Topic-level config overrides.
    pub configs: BTreeMap<String, String>,
}

/// A user's SCRAM credential for one mechanism (the mechanism is in its key): what the
/// server needs to check a login, never the password.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScramRecord {
    /// Random salt.
    pub salt: Vec<u8>,
    /// `H(ClientKey)`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

/// An ACL binding (Kafka's numeric codes for types, operations and permissions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AclRecord {
    /// Resource type.
    pub resource_type: i8,
    /// Resource name or prefix.
    pub name: String,
    /// Pattern type (literal or prefixed).
    pub pattern_type: i8,
    /// Principal (`User:alice`).
    pub principal: String,
    /// Host, or `*`.
    pub host: String,
    /// Operation.
    pub operation: i8,
    /// Allow or deny.
    pub permission: i8,
}

/// The name of one part (user or client id) of a client-quota entity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuotaName {
    /// The default entity of its type (`--entity-default`).
    Default,
    /// A named user or client id.
    Name(String),
}

/// The client quotas of one entity (Kafka's quota keys: `producer_byte_rate`,
/// `consumer_byte_rate`, `request_percentage`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuotaRecord {
    /// The user part, if the entity has one.
    pub user: Option<QuotaName>,
    /// The client-id part, if the entity has one.
    pub client_id: Option<QuotaName>,
    /// Quota key to value.
    pub values: BTreeMap<String, f64>,
}

/// A sealed segment object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentRef {
    /// Object key.
    pub key: String,
    /// First offset in it.
    pub base_offset: i64,
    /// One past its last offset.
    pub end_offset: i64,
    /// Bytes of record batches (the index follows them in the object).
    pub data_len: u64,
    /// Total object size.
    pub size: u64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
}

/// An idempotent batch, as producer state remembers it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProducerBatch {
    /// Producer id.
    pub pid: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// First sequence.
    pub first_seq: i32,
    /// Last sequence.
    pub last_seq: i32,
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Broker time of the append (ms); producers idle longer than
    /// `producer.id.expiration.ms` are forgotten.
    #[serde(default)]
    pub appended_ms: i64,
}

/// Durable state of a partition, folded from the WAL index when data is sealed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PartitionRecord {
    /// First offset a consumer can read.
    pub log_start_offset: i64,
    /// Everything below this offset is in `segments`.
    pub sealed_end: i64,
    /// Sealed segments, in offset order.
    pub segments: Vec<SegmentRef>,
    /// Leader epochs and the offset each started at, in order.
    pub epochs: Vec<(i32, i64)>,
    /// Producer state as of `sealed_end` (last batches of each producer).
    pub producers: Vec<ProducerBatch>,
}

/// One partition's bytes inside a WAL object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WalRange {
    /// Topic id.
    pub topic_id: String,
    /// Partition.
    pub partition: i32,
    /// First offset.
    pub base_offset: i64,
    /// One past the last offset.
    pub end_offset: i64,
    /// Byte position in the object.
    pub pos: u64,
    /// Byte length.
    pub len: u64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Idempotent batches in the range, to rebuild producer state without reading data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub producers: Vec<ProducerBatch>,
}

/// The index entry committed for one WAL object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WalEntry {
    /// Object key.
    pub object: String,
    /// Ranges by partition.
    pub ranges: Vec<WalRange>,
}

impl WalRange {
    /// The partition the range belongs to.
    pub fn partition_id(&self) -> keys::PartitionId {
        keys::PartitionId::new(&self.topic_id, self.partition)
    }
}

impl WalEntry {
    /// Where the ranges end in the object (the footer follows; reads never reach it).
    pub fn data_end(&self) -> u64 {
        self.ranges.iter().map(|r| r.pos + r.len).max().unwrap_or(0)
    }
}

/// The most one [`WalRange`] without producer batches adds to an encoded [`WalEntry`]
/// (any numbers, a topic id of up to 36 characters: a UUID).
pub const WAL_RANGE_MAX_BYTES: usize = 256;
/// The most each [`ProducerBatch`] of a range adds to it.
pub const PRODUCER_BATCH_MAX_BYTES: usize = 200;
/// The most an encoded [`WalEntry`] takes besides its ranges (an object name of up to 200
/// characters).
const WAL_ENTRY_BASE_BYTES: usize = 256;
/// The largest WAL index entry a writer builds (a WAL flush, a compaction, or a group of
/// flushes committed together): 1 MiB, well inside etcd's default request limit
/// (`--max-request-bytes`, 1.5 MiB) with room for the key, the compares and gRPC's framing.
/// An entry over the limit is refused whole, and a producer whose flush it holds could
/// only retry into the same refusal.
pub const WAL_ENTRY_BUDGET: usize = 1 << 20;

/// An upper bound of the encoded size of a [`WalEntry`] of `ranges` ranges holding
/// `producer_batches` producer batches in all.
pub fn wal_entry_bound(ranges: usize, producer_batches: usize) -> usize {
    WAL_ENTRY_BASE_BYTES
        + ranges * WAL_RANGE_MAX_BYTES
        + producer_batches * PRODUCER_BATCH_MAX_BYTES
}

/// The version of the record encoding this build writes. Every record is a JSON object
/// with a `"v"` field; records written before versioning have none and are version 1.
/// A build reads every version up to its own and refuses newer ones (written by a newer
/// Stratus) with [`MetaError::Corrupt`] instead of misreading them. A change that old
/// builds would misread bumps this; golden files under `tests/golden/` keep every older
/// encoding readable.
pub const RECORD_VERSION: u64 = 1;
/// The newest version this build reads: [`RECORD_VERSION`] for every record, and the
/// compact [`Assignment`] ([`COMPACT_ASSIGNMENT_VERSION`]), which it writes only where
/// version 1 would not fit in etcd's request limit. (A later change to any other record
/// takes version 3, so that this build refuses it.)
pub const READ_VERSION: u64 = 2;
/// The field that holds the version.
const VERSION_FIELD: &str = "v";

/// Serializes a record, with its version.
pub fn encode<T: Serialize>(v: &T) -> Bytes {
    encode_at(v, RECORD_VERSION)
}

/// Serializes a record as `version`.
fn encode_at<T: Serialize>(v: &T, version: u64) -> Bytes {
    // Serializing these plain structs cannot fail.
    let mut value = serde_json::to_value(v).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert(VERSION_FIELD.into(), version.into());
    }
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}

/// Deserializes a record of any version up to [`READ_VERSION`], naming the key in the
/// error. A record that does not decode is corrupt, not a store outage: retrying cannot
/// help.
pub fn decode<T: DeserializeOwned>(key: &str, v: &Versioned) -> Result<T, MetaError> {
    decode_bytes(key, &v.value)
}

/// [`decode`] of bare bytes (a watch event, a WAL object's footer).
pub fn decode_bytes<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, MetaError> {
    let corrupt = |reason: String| MetaError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if let Some(map) = value.as_object_mut() {
        check_version(map.remove(VERSION_FIELD).as_ref(), &corrupt)?;
    }
    serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
}

/// [`decode_bytes`] of a record that is a struct (a WAL index entry, a partition record),
/// read straight into `T` after a pass that reads only its version: going through a
/// `serde_json::Value` (a map and a string per field) made decoding WAL index entries
/// 7.5 % of a broker's CPU with 1,000 slow partitions. Not for a record that is a map or an
/// enum: its version field would be read as one of its keys.
pub fn decode_struct<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, MetaError> {
    let corrupt = |reason: String| MetaError::Corrupt {
        key: key.to_string(),
        reason,
    };
    /// A record's version; every other field is skipped unread.
    #[derive(serde::Deserialize)]
    struct Version {
        #[serde(rename = "v")]
        version: Option<serde_json::Value>,
    }
    let Version { version } = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    check_version(version.as_ref(), &corrupt)?;
    serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))
}

/// Refuses a version this build cannot read (`None`: written before versions, 1).
fn check_version(
    version: Option<&serde_json::Value>,
    corrupt: &dyn Fn(String) -> MetaError,
) -> Result<(), MetaError> {
    let version = match version {
        None => 1,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| corrupt(format!("version {v} is not a number")))?,
    };
    if version > READ_VERSION {
        return Err(corrupt(format!(
            "record version {version} was written by a newer Stratus (this one reads up to \
             {READ_VERSION}); upgrade this broker"
        )));
    }
    Ok(())
}

/// Reads and decodes one record.
pub async fn load<T: DeserializeOwned>(
    store: &dyn MetaStore,
    key: &str,
) -> Result<Option<(T, u64)>, MetaError> {
    match store.get(key).await? {
        Some(v) => Ok(Some((decode(key, &v)?, v.mod_revision))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound writers keep entries under holds for the longest numbers and names.
    #[test]
    fn the_entry_bound_holds_for_the_widest_ranges_and_producer_batches() {
        let batch = ProducerBatch {
            pid: i64::MIN,
            epoch: i16::MIN,
            first_seq: i32::MIN,
            last_seq: i32::MIN,
            base_offset: i64::MIN,
            last_offset: i64::MIN,
            appended_ms: i64::MIN,
        };
        let range = |producers: usize| WalRange {
            topic_id: "f".repeat(36),
            partition: i32::MIN,
            base_offset: i64::MIN,
            end_offset: i64::MIN,
            pos: u64::MAX,
            len: u64::MAX,
            max_timestamp: i64::MIN,
            producers: vec![batch; producers],
        };
        for (ranges, producers) in [(0, 0), (1, 0), (1, 1), (3, 5), (100, 7)] {
            let entry = WalEntry {
                object: "o".repeat(200),
                ranges: (0..ranges).map(|_| range(producers)).collect(),
            };
            let encoded = encode(&entry).len();
            let bound = wal_entry_bound(ranges, ranges * producers);
            assert!(
                encoded <= bound,
                "{ranges} ranges of {producers}: {encoded} > {bound}"
            );
            // Tight enough to be useful: within a fifth of the widest encoding.
            if ranges > 0 {
                assert!(
                    bound - encoded <= bound / 5,
                    "{ranges} ranges of {producers}: {encoded} ≪ {bound}"
                );
            }
        }
    }
}
