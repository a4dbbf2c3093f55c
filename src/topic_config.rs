//! Topic-level configs: Kafka's names, defaults and the broker settings behind them.

use std::collections::BTreeMap;

use crate::config::kind::{Kind, INT, LONG};
use crate::config::{Settings, CLEANUP_POLICIES};

/// A topic config Stratus knows.
pub struct TopicConfigDef {
    /// Kafka's topic config name.
    pub name: &'static str,
    /// The broker setting that gives its default, if any.
    pub broker_key: Option<&'static str>,
    /// Kafka's default when no broker setting applies.
    pub default: &'static str,
    /// Kind of value, for validation.
    pub kind: Kind,
}

const fn d(
    name: &'static str,
    broker_key: Option<&'static str>,
    default: &'static str,
    kind: Kind,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        broker_key,
        default,
        kind,
    }
}

/// Every topic config, in name order. Those Stratus honours: retention.ms,
/// retention.bytes, segment.bytes, segment.ms, max.message.bytes, message.timestamp.type,
/// cleanup.policy (a topic whose policy lacks `delete` keeps everything: compaction is not
/// done yet, and keeping every record satisfies what compaction promises). The rest are stored and reported as Kafka does.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    d(
        "cleanup.policy",
        Some("log.cleanup.policy"),
        "delete",
        Kind::Choice(CLEANUP_POLICIES),
    ),
    d(
        "compression.type",
        None,
        "producer",
        Kind::Choice(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
    ),
    d("delete.retention.ms", None, "86400000", Kind::Long(0, LONG)),
    d("file.delete.delay.ms", None, "60000", Kind::Long(0, LONG)),
    d(
        "flush.messages",
        None,
        "9223372036854775807",
        Kind::Long(1, LONG),
    ),
    d("flush.ms", None, "9223372036854775807", Kind::Long(0, LONG)),
    d("index.interval.bytes", None, "4096", Kind::Int(0, INT)),
    d("local.retention.bytes", None, "-2", Kind::Long(-2, LONG)),
    d("local.retention.ms", None, "-2", Kind::Long(-2, LONG)),
    d(
        "max.compaction.lag.ms",
        None,
        "9223372036854775807",
        Kind::Long(1, LONG),
    ),
    d(
        "max.message.bytes",
        Some("message.max.bytes"),
        "1048588",
        Kind::Int(0, INT),
    ),
    d(
        "message.timestamp.after.max.ms",
        None,
        "3600000",
        Kind::Long(0, LONG),
    ),
    d(
        "message.timestamp.before.max.ms",
        None,
        "9223372036854775807",
        Kind::Long(0, LONG),
    ),
    d(
        "message.timestamp.type",
        Some("log.message.timestamp.type"),
        "CreateTime",
        Kind::Choice(&["CreateTime", "LogAppendTime"]),
    ),
    d("min.cleanable.dirty.ratio", None, "0.5", Kind::Ratio),
    d("min.compaction.lag.ms", None, "0", Kind::Long(0, LONG)),
    d("min.insync.replicas", None, "1", Kind::Int(1, INT)),
    d("preallocate", None, "false", Kind::Bool),
    d("remote.storage.enable", None, "false", Kind::Bool),
    d(
        "retention.bytes",
        Some("log.retention.bytes"),
        "-1",
        Kind::Long(-1, LONG),
    ),
    d(
        "retention.ms",
        Some("log.retention.ms"),
        "604800000",
        Kind::Long(-1, LONG),
    ),
    d(
        "segment.bytes",
        Some("log.segment.bytes"),
        "33554432",
        Kind::Int(14, INT),
    ),
    d("segment.index.bytes", None, "10485760", Kind::Int(4, INT)),
    d("segment.jitter.ms", None, "0", Kind::Long(0, LONG)),
    d(
        "segment.ms",
        Some("log.roll.ms"),
        "3600000",
        Kind::Long(1, LONG),
    ),
    d("unclean.leader.election.enable", None, "false", Kind::Bool),
];

/// Looks up a config definition.
pub fn def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Where a config value comes from, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Set on the topic (DYNAMIC_TOPIC_CONFIG).
    Topic = 1,
    /// Set in the broker's configuration (STATIC_BROKER_CONFIG).
    StaticBroker = 4,
    /// The default (DEFAULT_CONFIG).
    Default = 5,
}

/// The value of `name` for a topic with `overrides`, and its source.
pub fn resolve(
    name: &str,
    overrides: &BTreeMap<String, String>,
    settings: &Settings,
) -> Option<(String, Source)> {
    let def = def(name)?;
    if let Some(v) = overrides.get(name) {
        return Some((v.clone(), Source::Topic));
    }
    if let Some(k) = def.broker_key {
        let v = settings.get(k).unwrap_or(def.default).to_string();
        let source = if settings.explicit.contains(k) {
            Source::StaticBroker
        } else {
            Source::Default
        };
        return Some((v, source));
    }
    Some((def.default.to_string(), Source::Default))
}

/// A numeric config of a topic (falls back to the default on bad stored text).
pub fn resolve_i64(name: &str, overrides: &BTreeMap<String, String>, settings: &Settings) -> i64 {
    let fallback = def(name).and_then(|d| d.default.parse().ok()).unwrap_or(-1);
    resolve(name, overrides, settings)
        .and_then(|(v, _)| v.parse().ok())
        .unwrap_or(fallback)
}

/// Checks a value for a topic config; the error says why it is refused.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some(def) = def(name) else {
        return Err(format!("Unknown topic config name: {name}"));
    };
    let ok = match def.kind {
        // Kafka's topic booleans are lower case.
        Kind::Bool => value == "true" || value == "false",
        kind => kind.check(value).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("Invalid value {value} for configuration {name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_and_validation() {
        let settings =
            Settings::from_pairs(vec![("log.retention.ms".into(), "1000".into())]).unwrap();
        let mut o = BTreeMap::new();
        assert_eq!(
            resolve("retention.ms", &o, &settings),
            Some(("1000".into(), Source::StaticBroker))
        );
        assert_eq!(
            resolve("segment.bytes", &o, &settings).unwrap().1,
            Source::Default
        );
        o.insert("retention.ms".into(), "5".into());
        assert_eq!(resolve_i64("retention.ms", &o, &settings), 5);
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "x").is_err());
        assert!(validate("nope", "1").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        let names: Vec<_> = TOPIC_CONFIGS.iter().map(|d| d.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
