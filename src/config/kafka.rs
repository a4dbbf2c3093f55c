//! Kafka broker settings that a carried-over `server.properties` holds and that Stratus
//! takes differently: aliases (converted to the setting Stratus reads) and settings that do
//! not apply (accepted with a warning, as Kafka warns of configs it does not use). A key in
//! neither list and in no setting is a typo, and stops the broker.

/// `(alias, setting, factor)`: the alias's value times `factor` is the setting's value
/// (-1 stays -1). Kafka's precedence holds: a setting given itself wins over its aliases,
/// and an earlier alias in this list over a later one for the same setting.
pub const ALIASES: &[(&str, &str, i64)] = &[
    ("broker.id", "node.id", 1),
    ("log.retention.minutes", "log.retention.ms", 60_000),
    ("log.retention.hours", "log.retention.ms", 3_600_000),
    ("log.roll.hours", "log.roll.ms", 3_600_000),
];

/// Kafka settings with no meaning here, and why.
pub const IGNORED: &[(&str, &str)] = &[
    (
        "process.roles",
        "there is no KRaft quorum: the metadata store is metadata.store.url",
    ),
    (
        "controller.quorum.voters",
        "there is no KRaft quorum: the metadata store is metadata.store.url",
    ),
    (
        "controller.quorum.bootstrap.servers",
        "there is no KRaft quorum: the metadata store is metadata.store.url",
    ),
    (
        "inter.broker.listener.name",
        "brokers do not talk to each other: they share the stores",
    ),
    (
        "security.inter.broker.protocol",
        "brokers do not talk to each other: they share the stores",
    ),
    (
        "sasl.mechanism.inter.broker.protocol",
        "brokers do not talk to each other: they share the stores",
    ),
    (
        "ssl.endpoint.identification.algorithm",
        "brokers do not connect to each other, so they verify no server name",
    ),
    (
        "num.network.threads",
        "connections run on the async runtime",
    ),
    ("num.io.threads", "requests run on the async runtime"),
    (
        "socket.send.buffer.bytes",
        "the operating system's defaults apply",
    ),
    (
        "socket.receive.buffer.bytes",
        "the operating system's defaults apply",
    ),
    (
        "log.dirs",
        "data lives in the object store; local files under data.dir",
    ),
    (
        "log.dir",
        "data lives in the object store; local files under data.dir",
    ),
    (
        "num.recovery.threads.per.data.dir",
        "there are no local logs to recover",
    ),
    (
        "log.flush.interval.messages",
        "a write is acknowledged once it is in the object store",
    ),
    (
        "log.flush.interval.ms",
        "a write is acknowledged once it is in the object store",
    ),
    (
        "offsets.topic.replication.factor",
        "group offsets live in the metadata store",
    ),
    (
        "offsets.topic.num.partitions",
        "group offsets live in the metadata store",
    ),
    (
        "transaction.state.log.replication.factor",
        "durability comes from the object store",
    ),
    (
        "transaction.state.log.min.isr",
        "durability comes from the object store",
    ),
    (
        "share.coordinator.state.topic.replication.factor",
        "durability comes from the object store",
    ),
    (
        "share.coordinator.state.topic.min.isr",
        "durability comes from the object store",
    ),
    (
        "min.insync.replicas",
        "durability comes from the object store",
    ),
    (
        "group.coordinator.rebalance.protocols",
        "both group protocols are always served",
    ),
];

/// Why `key` is ignored, if it is a Kafka setting that does not apply.
pub fn ignored(key: &str) -> Option<&'static str> {
    IGNORED.iter().find(|(k, _)| *k == key).map(|(_, why)| *why)
}

/// The setting an alias stands for, its factor and its precedence (lower wins).
pub fn alias(key: &str) -> Option<(&'static str, i64, usize)> {
    ALIASES
        .iter()
        .enumerate()
        .find(|(_, (a, _, _))| *a == key)
        .map(|(rank, (_, to, factor))| (*to, *factor, rank))
}
