//! Broker settings: one typed struct with documented defaults.
//!
//! Settings use Apache Kafka's broker property names wherever the concept is the same, so
//! that a `server.properties` carries over. They are read, in increasing precedence, from
//! the defaults below, a properties file (`--config FILE`), `STRATUS_`-prefixed environment
//! variables (`STRATUS_LOG_RETENTION_MS=1000` sets `log.retention.ms`), `--set key=value`,
//! and the dedicated flags `--data-dir` and `--listeners`.

use std::collections::BTreeMap;
use std::path::PathBuf;

mod defs;
pub mod kind;
mod sources;

pub use defs::{def, SettingDoc, CLEANUP_POLICIES, MAX_PARTITIONS, SETTINGS};
pub use kind::Kind;
pub use sources::{env_pairs, help_text, parse_properties, read_properties, Given, Origin};

/// Error in configuration input.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key no setting has.
    #[error("unknown setting '{0}' (from {1}); `stratus --help` lists every setting")]
    Unknown(String, Origin),
    /// A value that does not parse for its setting.
    #[error("invalid value '{value}' for {key} (from {origin}): expected {why}")]
    Invalid {
        /// The setting.
        key: String,
        /// The value given.
        value: String,
        /// Where it was given.
        origin: Origin,
        /// What is allowed.
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
    /// Builds settings from key/value pairs layered over the defaults (later pairs win).
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(
        pairs: I,
    ) -> Result<Self, ConfigError> {
        Self::load(
            pairs
                .into_iter()
                .map(|(k, v)| Given::new(k, v, Origin::Given)),
        )
    }

    /// Builds settings from values layered over the defaults (later values win). Every
    /// value is checked against what its setting takes; the first wrong one is refused,
    /// naming the key, the value, where it was given and what is allowed.
    pub fn load(given: impl IntoIterator<Item = Given>) -> Result<Self, ConfigError> {
        let mut raw: BTreeMap<String, String> = SETTINGS
            .iter()
            .map(|d| (d.name.to_string(), d.default.to_string()))
            .collect();
        let mut explicit = std::collections::BTreeSet::new();
        for g in given {
            let Some(d) = def(&g.key) else {
                return Err(ConfigError::Unknown(g.key, g.origin));
            };
            // An empty value of a setting whose default is derived asks for that default.
            let derived = d.default.is_empty() && g.value.is_empty();
            if let Err(why) = d
                .kind
                .check(&g.value)
                .or_else(|e| if derived { Ok(()) } else { Err(e) })
            {
                return Err(ConfigError::Invalid {
                    key: g.key,
                    value: g.value,
                    origin: g.origin,
                    why,
                });
            }
            explicit.insert(g.key.clone());
            raw.insert(g.key, g.value);
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
        origin: Origin::Given,
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

pub(crate) fn parse_listeners(key: &str, v: &str) -> Result<Vec<Listener>, ConfigError> {
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
        assert_eq!(p[0], (2, "node.id".into(), "7".into()));
        let e = env_pairs(
            vec![
                ("STRATUS_LOG_RETENTION_MS".into(), "9".into()),
                ("STRATUS_BIN".into(), "x".into()),
            ]
            .into_iter(),
        );
        assert_eq!(
            e,
            vec![Given::new(
                "log.retention.ms",
                "9",
                Origin::Env("STRATUS_LOG_RETENTION_MS".into())
            )]
        );
    }
}
