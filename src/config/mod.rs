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
pub mod kafka;
pub mod kind;
mod listeners;
mod sources;

use defs::FromSetting;
pub use defs::{
    def, Cluster, Groups, SecurityConfig, Server, SettingDoc, Storage, Telemetry, Topics, Typed,
    CLEANUP_POLICIES, MAX_PARTITIONS, SETTINGS,
};
pub use kind::Kind;
pub(crate) use listeners::parse_listeners;
use listeners::{advertise, check_listener_setting};
pub use listeners::{per_listener, Listener, SecurityProtocol};
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

/// Typed broker settings: the raw values, the typed values by concern, and what is
/// derived from several of them.
#[derive(Clone)]
pub struct Settings {
    /// Raw values by name, defaults included, for DescribeConfigs.
    pub raw: BTreeMap<String, String>,
    /// Names set explicitly (not defaults).
    pub explicit: std::collections::BTreeSet<String>,
    /// The Kafka server.
    pub server: Server,
    /// The metadata store and membership.
    pub cluster: Cluster,
    /// The data directory, the object store, the WAL, the cache, upkeep.
    pub storage: Storage,
    /// Topic defaults.
    pub topics: Topics,
    /// The group coordinator.
    pub groups: Groups,
    /// Metrics, health, traces and logs.
    pub telemetry: Telemetry,
    /// Listener security (defaults; `security_for` gives one listener's).
    pub security: SecurityConfig,
    /// The address advertised for each listener (same order as `server.listeners`): the
    /// advertised listener of the same name, else the listener, never a wildcard host.
    pub advertised: Vec<Listener>,
    /// What was taken differently from a Kafka `server.properties` (ignored settings,
    /// aliases), for the log.
    pub notes: Vec<String>,
}

impl Storage {
    /// The object store: `object.store.url`, or a directory under `data.dir`.
    pub fn object_store_url(&self) -> String {
        match self.object_store.as_str() {
            "" => format!(
                "file://{}",
                absolute(&self.data_dir.join("objects")).display()
            ),
            v => v.to_string(),
        }
    }

    /// `wal.flush.interval.ms`, or its default for the object store: 2 ms for a local
    /// directory, 0 in memory, 100 ms for S3 (requests cost money there).
    pub fn flush_interval_ms(&self) -> u64 {
        let url = self.object_store_url();
        self.wal_flush_interval_ms
            .unwrap_or(if url.starts_with("file:") {
                2
            } else if url.starts_with("memory:") {
                0
            } else {
                100
            })
    }

    /// `wal.flush.min.bytes`, or its default for the object store: 0 for a local
    /// directory or memory (a write costs no request), 256 KiB for S3.
    pub fn flush_min_bytes(&self) -> usize {
        let url = self.object_store_url();
        self.wal_flush_min_bytes.unwrap_or(
            if url.starts_with("file:") || url.starts_with("memory:") {
                0
            } else {
                256 << 10
            },
        )
    }

    /// `cache.memory.bytes`, or its default: 32 MiB for a local directory (the kernel's
    /// page cache holds its files too, and a tail reader finds the newest objects in the
    /// 32 MiB; 64 MiB held a fifth more memory at the peak and read no faster), 256 MiB
    /// otherwise.
    pub fn memory_cache_bytes(&self) -> u64 {
        self.cache_memory_bytes
            .unwrap_or(if self.object_store_url().starts_with("file:") {
                32 << 20
            } else {
                256 << 20
            })
    }

    /// `cache.disk.bytes`, or its default: none for a local directory (its objects are
    /// local already), 1 GiB otherwise.
    pub fn disk_cache_bytes(&self) -> u64 {
        self.cache_disk_bytes
            .unwrap_or(if self.object_store_url().starts_with("file:") {
                0
            } else {
                1 << 30
            })
    }
}

impl Server {
    /// KIP-392: point consumers to a broker of their rack.
    pub fn rack_aware_reads(&self) -> bool {
        self.replica_selector_class.contains("RackAware")
    }

    /// Bytes of requests read and not yet answered (`queued.max.request.bytes`, at least
    /// 1 MiB so that a request of the default size fits).
    pub fn request_memory_bytes(&self) -> usize {
        self.queued_max_request_bytes
            .clamp(1 << 20, u32::MAX as u64) as usize
    }
}

macro_rules! from_parse {
    ($($t:ty),*) => {$(
        impl FromSetting for $t {
            fn from_setting(key: &str, text: &str) -> Result<Self, ConfigError> {
                text.parse().map_err(|e| invalid(key, text, e))
            }
        }
    )*};
}
from_parse!(i16, i32, i64, u64, usize, f64, String);

impl FromSetting for bool {
    fn from_setting(key: &str, text: &str) -> Result<Self, ConfigError> {
        match text.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(invalid(key, text, "true or false")),
        }
    }
}

impl FromSetting for PathBuf {
    fn from_setting(_: &str, text: &str) -> Result<Self, ConfigError> {
        Ok(PathBuf::from(text))
    }
}

impl FromSetting for Vec<Listener> {
    fn from_setting(key: &str, text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        parse_listeners(key, text)
    }
}

/// Empty text: not set.
impl<T: FromSetting> FromSetting for Option<T> {
    fn from_setting(key: &str, text: &str) -> Result<Self, ConfigError> {
        if text.is_empty() {
            return Ok(None);
        }
        T::from_setting(key, text).map(Some)
    }
}

impl std::fmt::Debug for Settings {
    /// Never the values of secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let raw: BTreeMap<&str, &str> = self
            .raw
            .iter()
            .map(|(k, v)| {
                let secret = k.ends_with("sasl.jaas.config")
                    || def(k).is_some_and(|d| d.kind.sensitive())
                    || k.strip_prefix("listener.name.")
                        .and_then(|r| r.split_once('.'))
                        .and_then(|(_, s)| def(s))
                        .is_some_and(|d| d.kind.sensitive());
                (
                    k.as_str(),
                    if secret && !v.is_empty() {
                        "[hidden]"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("Settings")
            .field("raw", &raw)
            .finish_non_exhaustive()
    }
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
        let mut notes = Vec::new();
        // Aliases apply after every setting given itself: (setting, rank) → (value, note).
        let mut aliased: BTreeMap<&str, (usize, String, String)> = BTreeMap::new();
        for g in given {
            if let Some(why) = kafka::ignored(&g.key) {
                notes.push(format!("{} (from {}) is ignored: {why}", g.key, g.origin));
                continue;
            }
            if let Some((to, factor, rank)) = kafka::alias(&g.key) {
                let n: i64 = g.value.parse().map_err(|_| ConfigError::Invalid {
                    key: g.key.clone(),
                    value: g.value.clone(),
                    origin: g.origin.clone(),
                    why: "a whole number".into(),
                })?;
                let value = if n < 0 { n } else { n.saturating_mul(factor) };
                let note = format!("{} (from {}) is read as {to}={value}", g.key, g.origin);
                if aliased.get(to).is_none_or(|(r, _, _)| rank <= *r) {
                    aliased.insert(to, (rank, value.to_string(), note));
                }
                continue;
            }
            if let Some(rest) = g.key.strip_prefix("listener.name.") {
                check_listener_setting(&g.key, rest, &g.value).map_err(|(why, unknown)| {
                    match unknown {
                        true => ConfigError::Unknown(g.key.clone(), g.origin.clone()),
                        false => ConfigError::Invalid {
                            key: g.key.clone(),
                            value: g.value.clone(),
                            origin: g.origin.clone(),
                            why,
                        },
                    }
                })?;
                explicit.insert(g.key.clone());
                raw.insert(g.key, g.value);
                continue;
            }
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
        for (to, (_, value, note)) in aliased {
            if explicit.contains(to) {
                continue;
            }
            if let Some(d) = def(to) {
                d.kind.check(&value).map_err(|why| ConfigError::Invalid {
                    key: to.to_string(),
                    value: value.clone(),
                    origin: Origin::Given,
                    why,
                })?;
            }
            notes.push(note);
            explicit.insert(to.to_string());
            raw.insert(to.to_string(), value);
        }
        let mut settings = Self::typed(raw, explicit)?;
        settings.notes = notes;
        Ok(settings)
    }

    fn typed(
        raw: BTreeMap<String, String>,
        explicit: std::collections::BTreeSet<String>,
    ) -> Result<Self, ConfigError> {
        let Typed {
            server,
            security,
            cluster,
            storage,
            topics,
            groups,
            telemetry,
        } = Typed::from_raw(&raw)?;
        let mut server = server;
        // A KRaft controller listener carried over from Kafka is not a Kafka listener here.
        let controller: Vec<&str> = server
            .controller_listener_names
            .split(',')
            .map(str::trim)
            .collect();
        server
            .listeners
            .retain(|l| !controller.contains(&l.name.as_str()));
        if server.listeners.is_empty() {
            return Err(invalid(
                "listeners",
                raw.get("listeners").map(String::as_str).unwrap_or(""),
                "a listener that controller.listener.names does not name",
            ));
        }
        let advertised = advertise(&server.listeners, &server.advertised_listeners);
        let settings = Settings {
            notes: Vec::new(),
            raw,
            explicit,
            server,
            security,
            cluster,
            storage,
            topics,
            groups,
            telemetry,
            advertised,
        };
        for l in &settings.server.listeners {
            settings.security_protocol(&l.name)?;
            settings.security_for(&l.name)?;
        }
        Ok(settings)
    }

    /// The raw value of a setting (default included).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw.get(key).map(String::as_str)
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

pub(super) fn invalid(key: &str, value: &str, why: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        origin: Origin::Given,
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = Settings::from_pairs(vec![]).unwrap();
        assert_eq!(s.server.listeners[0].port, 9092);
        assert_eq!(s.storage.flush_interval_ms(), 2);
        assert!(s.storage.object_store_url().starts_with("file:///"));
    }

    #[test]
    fn cache_sizes_default_by_store_and_yield_to_a_setting() {
        let local = Settings::from_pairs(vec![]).unwrap();
        assert_eq!(local.storage.memory_cache_bytes(), 32 << 20);
        assert_eq!(local.storage.disk_cache_bytes(), 0);
        let s3 = |extra: Vec<(String, String)>| {
            let mut pairs = vec![("object.store.url".into(), "s3://bucket/prefix".into())];
            pairs.extend(extra);
            Settings::from_pairs(pairs).unwrap()
        };
        assert_eq!(s3(vec![]).storage.memory_cache_bytes(), 256 << 20);
        assert_eq!(s3(vec![]).storage.disk_cache_bytes(), 1 << 30);
        let set = s3(vec![("cache.memory.bytes".into(), "0".into())]);
        assert_eq!(set.storage.memory_cache_bytes(), 0);
    }

    #[test]
    fn overrides_and_errors() {
        let s = Settings::from_pairs(vec![
            (
                "listeners".into(),
                "PLAINTEXT://127.0.0.1:1234,PLAINTEXT2://:99".into(),
            ),
            (
                "listener.security.protocol.map".into(),
                "PLAINTEXT:PLAINTEXT,PLAINTEXT2:PLAINTEXT".into(),
            ),
            ("num.partitions".into(), "3".into()),
        ])
        .unwrap();
        assert_eq!(s.server.listeners.len(), 2);
        assert_eq!(s.server.listeners[1].host, "0.0.0.0");
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
            (
                "listener.security.protocol.map".into(),
                "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT".into(),
            ),
        ])
        .unwrap();
        assert_eq!(a.advertised[0].host, "127.0.0.1");
        assert_eq!(
            (a.advertised[1].host.as_str(), a.advertised[1].port),
            ("kafka.example.com", 9094)
        );
        assert_eq!(s.topics.num_partitions, 3);
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
