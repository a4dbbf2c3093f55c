//! Broker settings: one typed struct with documented defaults.
//!
//! Settings use Apache Kafka's broker property names wherever the concept is the same, so
//! that a `server.properties` carries over. They are read, in increasing precedence, from
//! the defaults below, a properties file (`--config FILE`), `STRATUS_`-prefixed environment
//! variables (`STRATUS_LOG_RETENTION_MS=1000` sets `log.retention.ms`), `--set key=value`,
//! and the dedicated flags `--data-dir` and `--listeners`.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One documented setting: its name, default value and meaning.
pub struct SettingDoc {
    /// Property name, Kafka's where the concept is the same.
    pub name: &'static str,
    /// Default value as text.
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

/// Every setting the broker understands, with its default.
pub const SETTINGS: &[SettingDoc] = &[
    s("listeners", "PLAINTEXT://127.0.0.1:9092", "Comma-separated listeners, NAME://HOST:PORT."),
    s("advertised.listeners", "", "Addresses given to clients in Metadata; defaults to listeners."),
    s("node.id", "1", "This broker's id."),
    s("broker.rack", "", "Rack (zone) of this broker, reported in Metadata."),
    s("data.dir", "./stratus-data", "Directory for embedded metadata, the local object store and the disk cache."),
    s("metadata.store.url", "embedded", "Metadata store: embedded (a file under data.dir; one broker) or etcd://HOST:PORT[,HOST:PORT...][/namespace] for a cluster. etcd credentials come from ETCD_USERNAME / ETCD_PASSWORD."),
    s("metadata.request.timeout.ms", "5000", "Deadline of one metadata-store request; a store that does not answer gives retriable errors."),
    s("broker.session.timeout.ms", "6000", "Lease of a broker's registration: a broker silent this long loses its partitions to the others."),
    s("admin.listener", "", "HOST:PORT of the gRPC admin API (stratus admin, the operator). Empty: not served."),
    s("replica.selector.class", "org.apache.kafka.common.replica.RackAwareReplicaSelector", "KIP-392: a consumer with client.rack is pointed to a broker of its rack, which serves it from the object store. Empty: consumers always read from the owner."),
    s("controlled.shutdown.timeout.ms", "30000", "On SIGTERM, longest wait for the controller to move this broker's partitions away."),
    s("object.store.url", "", "Object store URL: file:///path, s3://bucket/prefix, memory://. Default: file://<data.dir>/objects."),
    s("num.partitions", "1", "Partitions of auto-created topics and of CreateTopics with -1."),
    s("default.replication.factor", "1", "Replication factor reported for topics created with -1 (durability comes from the object store)."),
    s("auto.create.topics.enable", "true", "Create unknown topics on Metadata and Produce requests."),
    s("delete.topic.enable", "true", "Allow DeleteTopics."),
    s("message.max.bytes", "1048588", "Largest record batch a topic accepts unless max.message.bytes says otherwise."),
    s("socket.request.max.bytes", "104857600", "Largest request frame; larger ones are refused before they are read."),
    s("queued.max.request.bytes", "536870912", "Bytes of requests read and not yet answered, over all connections; more wait (backpressure)."),
    s("max.connections", "10000", "Connections accepted at once; more wait in the accept queue."),
    s("log.retention.ms", "604800000", "Default retention.ms of topics (-1: keep forever)."),
    s("log.retention.bytes", "-1", "Default retention.bytes of topics (-1: no size limit)."),
    s("log.segment.bytes", "33554432", "Default segment.bytes: a partition's unsealed data is sealed into a segment object at this size."),
    s("log.roll.ms", "3600000", "Default segment.ms: unsealed data older than this is sealed into a segment object."),
    s("log.retention.check.interval.ms", "300000", "How often retention runs."),
    s("log.message.timestamp.type", "CreateTime", "Default message.timestamp.type of topics."),
    s("log.cleanup.policy", "delete", "Default cleanup.policy of topics (only delete is supported)."),
    s("wal.flush.interval.ms", "", "Longest wait for more data before a WAL object is written. Default: 2 (file), 0 (memory), 100 (s3)."),
    s("wal.flush.bytes", "8388608", "A WAL object is written as soon as this many bytes are buffered."),
    s("wal.max.in.flight", "4", "WAL objects being written at once; their commits still apply in order."),
    s("wal.buffer.max.bytes", "67108864", "Produce bytes buffered or in flight to the object store before producers wait (backpressure)."),
    s("cache.memory.bytes", "268435456", "Size of the in-memory block cache for reads of WAL and segment objects."),
    s("cache.disk.bytes", "", "Size of the local-disk block cache under <data.dir>/cache (0 disables it). Default: 0 for file:// stores (their objects are local already), 1073741824 otherwise."),
    s("cache.block.bytes", "1048576", "Size of a cached block; reads from the object store are ranged GETs of whole blocks (read-ahead)."),
    s("seal.check.interval.ms", "1000", "How often partitions are checked for data to seal into segments."),
    s("producer.id.expiration.ms", "86400000", "Idempotent producers idle this long are forgotten (their next batch starts a new sequence)."),
    s("group.min.session.timeout.ms", "6000", "Smallest session timeout a group member may ask for."),
    s("group.max.session.timeout.ms", "1800000", "Largest session timeout a group member may ask for."),
    s("group.initial.rebalance.delay.ms", "3000", "A new group waits this long for more members before its first rebalance completes."),
    s("group.max.size", "2147483647", "Members a consumer group may have."),
    s("group.consumer.session.timeout.ms", "45000", "Session timeout of members of consumer-protocol (KIP-848) groups."),
    s("group.consumer.heartbeat.interval.ms", "5000", "Heartbeat interval given to members of consumer-protocol groups."),
    s("offsets.retention.minutes", "10080", "Committed offsets of an empty group are deleted after this."),
    s("offset.metadata.max.bytes", "4096", "Largest metadata string of a committed offset."),
    s("fetch.max.wait.cap.ms", "30000", "Upper bound on a Fetch's max_wait_ms."),
];

const fn s(name: &'static str, default: &'static str, doc: &'static str) -> SettingDoc {
    SettingDoc { name, default, doc }
}

/// Error in configuration input.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key no setting has.
    #[error("unknown setting '{0}' (see stratus --help)")]
    Unknown(String),
    /// A value that does not parse for its setting.
    #[error("invalid value '{value}' for {key}: {why}")]
    Invalid {
        /// The setting.
        key: String,
        /// The value given.
        value: String,
        /// Why it is wrong.
        why: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {0}: {1}")]
    File(PathBuf, std::io::Error),
}

/// A listener: name and socket address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name (PLAINTEXT).
    pub name: String,
    /// Host to bind or advertise.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Typed broker settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Raw values by name, defaults included, for DescribeConfigs.
    pub raw: BTreeMap<String, String>,
    /// Names set explicitly (not defaults).
    pub explicit: std::collections::BTreeSet<String>,
    /// Listeners to bind.
    pub listeners: Vec<Listener>,
    /// The address advertised for each listener (same order as `listeners`).
    pub advertised: Vec<Listener>,
    /// This broker's id.
    pub node_id: i32,
    /// Rack.
    pub rack: Option<String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Object store URL.
    pub object_store_url: String,
    /// Metadata store URL (`embedded` or `etcd://...`).
    pub metadata_url: String,
    /// Deadline of one metadata request.
    pub metadata_timeout_ms: u64,
    /// Registration lease.
    pub broker_session_timeout_ms: u64,
    /// Admin API address.
    pub admin_listener: Option<String>,
    /// SIGTERM hand-off bound.
    pub controlled_shutdown_timeout_ms: u64,
    /// Point consumers to a broker of their rack (KIP-392).
    pub rack_aware_reads: bool,
    /// Partitions for auto-created topics.
    pub num_partitions: i32,
    /// Reported replication factor default.
    pub default_replication_factor: i16,
    /// Auto-create topics.
    pub auto_create_topics: bool,
    /// DeleteTopics allowed.
    pub delete_topic_enable: bool,
    /// Largest batch.
    pub message_max_bytes: i32,
    /// Largest frame.
    pub socket_request_max_bytes: usize,
    /// Connection bound.
    pub max_connections: usize,
    /// Request bytes buffered broker-wide.
    pub queued_max_request_bytes: usize,
    /// Retention check interval.
    pub retention_check_interval_ms: u64,
    /// WAL linger.
    pub wal_flush_interval_ms: u64,
    /// WAL size trigger.
    pub wal_flush_bytes: usize,
    /// Backpressure bound.
    pub wal_buffer_max_bytes: usize,
    /// Concurrent WAL PUTs.
    pub wal_max_in_flight: usize,
    /// Memory cache bytes.
    pub cache_memory_bytes: u64,
    /// Disk cache bytes.
    pub cache_disk_bytes: u64,
    /// Cache block size.
    pub cache_block_bytes: u64,
    /// Seal check interval.
    pub seal_check_interval_ms: u64,
    /// Fetch wait cap.
    pub fetch_max_wait_cap_ms: u64,
    /// Idle producer expiry.
    pub producer_id_expiration_ms: i64,
    /// Group session timeout bounds.
    pub group_min_session_timeout_ms: u64,
    /// Group session timeout bounds.
    pub group_max_session_timeout_ms: u64,
    /// First-rebalance delay.
    pub group_initial_rebalance_delay_ms: u64,
    /// Group size bound.
    pub group_max_size: usize,
    /// Offsets retention.
    pub offsets_retention_minutes: u64,
    /// Offset metadata bound.
    pub offset_metadata_max_bytes: usize,
    /// KIP-848 session timeout.
    pub group_consumer_session_timeout_ms: u64,
    /// KIP-848 heartbeat interval.
    pub group_consumer_heartbeat_interval_ms: u64,
}

impl Settings {
    /// Builds settings from key/value pairs layered over the defaults.
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(
        pairs: I,
    ) -> Result<Self, ConfigError> {
        let mut raw: BTreeMap<String, String> = SETTINGS
            .iter()
            .map(|d| (d.name.to_string(), d.default.to_string()))
            .collect();
        let mut explicit = std::collections::BTreeSet::new();
        for (k, v) in pairs {
            let k = k.trim().to_string();
            if !raw.contains_key(&k) {
                return Err(ConfigError::Unknown(k));
            }
            explicit.insert(k.clone());
            raw.insert(k, v.trim().to_string());
        }
        Self::typed(raw, explicit)
    }

    fn typed(
        raw: BTreeMap<String, String>,
        explicit: std::collections::BTreeSet<String>,
    ) -> Result<Self, ConfigError> {
        let get = |k: &str| raw.get(k).cloned().unwrap_or_default();
        let listeners = parse_listeners("listeners", &get("listeners"))?;
        let given = match get("advertised.listeners").as_str() {
            "" => Vec::new(),
            v => parse_listeners("advertised.listeners", v)?,
        };
        let advertised = advertise(&listeners, &given);
        let data_dir = PathBuf::from(get("data.dir"));
        let object_store_url = match get("object.store.url").as_str() {
            "" => format!("file://{}", absolute(&data_dir.join("objects")).display()),
            v => v.to_string(),
        };
        let default_flush = if object_store_url.starts_with("file:") {
            2
        } else if object_store_url.starts_with("memory:") {
            0
        } else {
            100
        };
        let wal_flush_interval_ms = match get("wal.flush.interval.ms").as_str() {
            "" => default_flush,
            v => num("wal.flush.interval.ms", v)?,
        };
        let rack = Some(get("broker.rack")).filter(|r| !r.is_empty());
        Ok(Settings {
            metadata_url: get("metadata.store.url"),
            metadata_timeout_ms: positive::<u64>(
                "metadata.request.timeout.ms",
                &get("metadata.request.timeout.ms"),
            )?,
            broker_session_timeout_ms: positive::<u64>(
                "broker.session.timeout.ms",
                &get("broker.session.timeout.ms"),
            )?,
            admin_listener: Some(get("admin.listener")).filter(|a| !a.is_empty()),
            rack_aware_reads: get("replica.selector.class").contains("RackAware"),
            controlled_shutdown_timeout_ms: num(
                "controlled.shutdown.timeout.ms",
                &get("controlled.shutdown.timeout.ms"),
            )?,
            node_id: num("node.id", &get("node.id"))?,
            rack,
            num_partitions: positive("num.partitions", &get("num.partitions"))?,
            default_replication_factor: num(
                "default.replication.factor",
                &get("default.replication.factor"),
            )?,
            auto_create_topics: boolean(
                "auto.create.topics.enable",
                &get("auto.create.topics.enable"),
            )?,
            delete_topic_enable: boolean("delete.topic.enable", &get("delete.topic.enable"))?,
            message_max_bytes: positive("message.max.bytes", &get("message.max.bytes"))?,
            socket_request_max_bytes: positive::<i32>(
                "socket.request.max.bytes",
                &get("socket.request.max.bytes"),
            )? as usize,
            max_connections: num("max.connections", &get("max.connections"))?,
            queued_max_request_bytes: positive::<i64>(
                "queued.max.request.bytes",
                &get("queued.max.request.bytes"),
            )?
            .clamp(1 << 20, u32::MAX as i64) as usize,
            retention_check_interval_ms: num(
                "log.retention.check.interval.ms",
                &get("log.retention.check.interval.ms"),
            )?,
            wal_flush_interval_ms,
            wal_flush_bytes: num("wal.flush.bytes", &get("wal.flush.bytes"))?,
            wal_buffer_max_bytes: num("wal.buffer.max.bytes", &get("wal.buffer.max.bytes"))?,
            wal_max_in_flight: positive::<i64>("wal.max.in.flight", &get("wal.max.in.flight"))?
                as usize,
            cache_memory_bytes: num("cache.memory.bytes", &get("cache.memory.bytes"))?,
            cache_disk_bytes: match get("cache.disk.bytes").as_str() {
                "" if object_store_url.starts_with("file:") => 0,
                "" => 1 << 30,
                v => num("cache.disk.bytes", v)?,
            },
            cache_block_bytes: positive::<u64>("cache.block.bytes", &get("cache.block.bytes"))?,
            seal_check_interval_ms: positive::<u64>(
                "seal.check.interval.ms",
                &get("seal.check.interval.ms"),
            )?,
            fetch_max_wait_cap_ms: num("fetch.max.wait.cap.ms", &get("fetch.max.wait.cap.ms"))?,
            group_min_session_timeout_ms: num(
                "group.min.session.timeout.ms",
                &get("group.min.session.timeout.ms"),
            )?,
            group_max_session_timeout_ms: num(
                "group.max.session.timeout.ms",
                &get("group.max.session.timeout.ms"),
            )?,
            group_initial_rebalance_delay_ms: num(
                "group.initial.rebalance.delay.ms",
                &get("group.initial.rebalance.delay.ms"),
            )?,
            group_max_size: positive::<i64>("group.max.size", &get("group.max.size"))? as usize,
            offsets_retention_minutes: positive::<u64>(
                "offsets.retention.minutes",
                &get("offsets.retention.minutes"),
            )?,
            offset_metadata_max_bytes: num(
                "offset.metadata.max.bytes",
                &get("offset.metadata.max.bytes"),
            )?,
            group_consumer_session_timeout_ms: positive::<u64>(
                "group.consumer.session.timeout.ms",
                &get("group.consumer.session.timeout.ms"),
            )?,
            group_consumer_heartbeat_interval_ms: positive::<u64>(
                "group.consumer.heartbeat.interval.ms",
                &get("group.consumer.heartbeat.interval.ms"),
            )?,
            producer_id_expiration_ms: positive::<i64>(
                "producer.id.expiration.ms",
                &get("producer.id.expiration.ms"),
            )?,
            listeners,
            advertised,
            data_dir,
            object_store_url,
            raw,
            explicit,
        })
    }

    /// The raw value of a setting (default included).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw.get(key).map(String::as_str)
    }
}

/// The address to advertise for each bound listener: the advertised listener of the same
/// name, else the listener itself; a wildcard host becomes this machine's host name, as
/// clients cannot connect to 0.0.0.0.
fn advertise(listeners: &[Listener], given: &[Listener]) -> Vec<Listener> {
    listeners
        .iter()
        .map(|l| {
            let mut a = given
                .iter()
                .find(|g| g.name == l.name)
                .cloned()
                .unwrap_or_else(|| l.clone());
            if a.host == "0.0.0.0" || a.host == "::" || a.host.is_empty() {
                a.host = host_name();
            }
            a
        })
        .collect()
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Reads a Java-style properties file: `key=value` lines, `#` and `!` comments.
pub fn read_properties(path: &std::path::Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::File(path.to_path_buf(), e))?;
    Ok(parse_properties(&text))
}

/// Parses properties text.
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let i = l.find(['=', ':'])?;
            Some((l[..i].trim().to_string(), l[i + 1..].trim().to_string()))
        })
        .collect()
}

/// Settings given as `STRATUS_`-prefixed environment variables: `STRATUS_NODE_ID` is
/// `node.id`. Variables that name no setting are ignored (other tools share the prefix).
pub fn env_pairs(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    vars.filter_map(|(k, v)| {
        let rest = k.strip_prefix("STRATUS_")?;
        let name = rest.to_ascii_lowercase().replace('_', ".");
        SETTINGS.iter().any(|d| d.name == name).then_some((name, v))
    })
    .collect()
}

fn absolute(p: &std::path::Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

fn invalid(key: &str, value: &str, why: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        why: why.to_string(),
    }
}

fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    v.parse::<T>().map_err(|e| invalid(key, v, e))
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    key: &str,
    v: &str,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let n: T = num(key, v)?;
    if n <= T::default() {
        return Err(invalid(key, v, "must be positive"));
    }
    Ok(n)
}

fn boolean(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, v, "expected true or false")),
    }
}

fn parse_listeners(key: &str, v: &str) -> Result<Vec<Listener>, ConfigError> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, addr) = part
            .split_once("://")
            .ok_or_else(|| invalid(key, part, "expected NAME://HOST:PORT"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, part, "expected NAME://HOST:PORT"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|e| invalid(key, part, e))?;
        out.push(Listener {
            name: name.to_string(),
            host: if host.is_empty() {
                "0.0.0.0".into()
            } else {
                host.to_string()
            },
            port,
        });
    }
    if out.is_empty() {
        return Err(invalid(key, v, "no listener given"));
    }
    Ok(out)
}

/// Text for `stratus --help`: every setting, its default and meaning.
pub fn help_text() -> String {
    let mut s = String::from(
        "Settings (--set key=value, a properties file, or STRATUS_KEY_NAME env vars):\n",
    );
    for d in SETTINGS {
        let def = if d.default.is_empty() {
            "(see text)"
        } else {
            d.default
        };
        s.push_str(&format!(
            "  {:<34} default {}\n      {}\n",
            d.name, def, d.doc
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = Settings::from_pairs(vec![]).unwrap();
        assert_eq!(s.listeners[0].port, 9092);
        assert_eq!(s.wal_flush_interval_ms, 2);
        assert!(s.object_store_url.starts_with("file:///"));
    }

    #[test]
    fn overrides_and_errors() {
        let s = Settings::from_pairs(vec![
            (
                "listeners".into(),
                "PLAINTEXT://127.0.0.1:1234,PLAINTEXT2://:99".into(),
            ),
            ("num.partitions".into(), "3".into()),
        ])
        .unwrap();
        assert_eq!(s.listeners.len(), 2);
        assert_eq!(s.listeners[1].host, "0.0.0.0");
        assert_ne!(
            s.advertised[1].host, "0.0.0.0",
            "a wildcard is never advertised"
        );
        let a = Settings::from_pairs(vec![
            (
                "listeners".into(),
                "INTERNAL://127.0.0.1:1,EXTERNAL://0.0.0.0:2".into(),
            ),
            (
                "advertised.listeners".into(),
                "EXTERNAL://kafka.example.com:9094".into(),
            ),
        ])
        .unwrap();
        assert_eq!(a.advertised[0].host, "127.0.0.1");
        assert_eq!(
            (a.advertised[1].host.as_str(), a.advertised[1].port),
            ("kafka.example.com", 9094)
        );
        assert_eq!(s.num_partitions, 3);
        assert!(Settings::from_pairs(vec![("nope".into(), "1".into())]).is_err());
        assert!(Settings::from_pairs(vec![("num.partitions".into(), "0".into())]).is_err());
    }

    #[test]
    fn env_and_properties() {
        let p = parse_properties("# c\nnode.id = 7\nlog.retention.ms=5\n");
        assert_eq!(p[0], ("node.id".into(), "7".into()));
        let e = env_pairs(
            vec![
                ("STRATUS_LOG_RETENTION_MS".into(), "9".into()),
                ("STRATUS_BIN".into(), "x".into()),
            ]
            .into_iter(),
        );
        assert_eq!(e, vec![("log.retention.ms".into(), "9".into())]);
    }
}
