//! Every broker setting, written once: its name (Kafka's where the concept is the same),
//! default, meaning, the values it takes, and the typed field it fills, grouped by concern.
//! Security settings (`ssl.*`, `sasl.*`) may also be given per listener, as
//! `listener.name.<listener>.<setting>` (see `Settings::security_for`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::kind::{Kind, INT, LONG};
use super::{ConfigError, Listener};
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

/// A typed value from a setting's text (already checked against its kind).
pub(super) trait FromSetting: Sized {
    fn from_setting(key: &str, text: &str) -> Result<Self, ConfigError>;
}

macro_rules! settings {
    ($(
        #[doc = $gdoc:literal]
        $group:ident: $Group:ident {
            $( #[doc = $doc:literal] $field:ident: $ty:ty = ($key:literal, $default:literal, $kind:expr), )*
        }
    )*) => {
        $(
            #[doc = $gdoc]
            #[derive(Debug, Clone)]
            pub struct $Group {
                $( #[doc = concat!("`", $key, "`: ", $doc)] pub $field: $ty, )*
            }

            impl $Group {
                pub(super) fn from_raw(raw: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
                    Ok($Group {
                        $( $field: FromSetting::from_setting(
                            $key,
                            raw.get($key).map(String::as_str).unwrap_or($default),
                        )?, )*
                    })
                }
            }
        )*

        /// Every setting the broker understands, with its default.
        pub const SETTINGS: &[SettingDoc] = &[
            $($( SettingDoc { name: $key, default: $default, doc: $doc, kind: $kind }, )*)*
        ];

        /// The typed settings, by concern.
        #[derive(Debug, Clone)]
        pub struct Typed {
            $( #[doc = $gdoc] pub $group: $Group, )*
        }

        impl Typed {
            pub(super) fn from_raw(raw: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
                Ok(Typed { $( $group: $Group::from_raw(raw)?, )* })
            }
        }
    };
}

settings! {
    #[doc = "The Kafka server: listeners, identity, request limits."]
    server: Server {
        #[doc = "Comma-separated listeners, NAME://HOST:PORT."]
        listeners: Vec<Listener> = ("listeners", "PLAINTEXT://127.0.0.1:9092", Listeners(false)),
        #[doc = "Listener names of a KRaft controller (from a carried-over server.properties): such listeners are not bound."]
        controller_listener_names: String = ("controller.listener.names", "", Text),
        #[doc = "Addresses given to clients in Metadata; defaults to listeners."]
        advertised_listeners: Vec<Listener> = ("advertised.listeners", "", Listeners(true)),
        #[doc = "This broker's id."]
        node_id: i32 = ("node.id", "1", Int(0, INT)),
        #[doc = "Rack (zone) of this broker, reported in Metadata."]
        rack: Option<String> = ("broker.rack", "", Text),
        #[doc = "HOST:PORT of the gRPC admin API (stratus admin, the operator). Empty: not served."]
        admin_listener: Option<String> = ("admin.listener", "", Address),
        #[doc = "PEM file with the admin API's key and certificate chain: the admin API speaks TLS. Needed unless admin.listener is a loopback address."]
        admin_ssl_keystore_location: String = ("admin.ssl.keystore.location", "", Text),
        #[doc = "PEM file of the CAs whose client certificates the admin API accepts; set, every caller needs one."]
        admin_ssl_truststore_location: String = ("admin.ssl.truststore.location", "", Text),
        #[doc = "File holding a bearer token every admin API call must carry (stratus admin --token-file)."]
        admin_token_file: String = ("admin.token.file", "", Text),
        #[doc = "KIP-392: a consumer with client.rack is pointed to a broker of its rack, which serves it from the object store. Empty: consumers always read from the owner."]
        replica_selector_class: String = ("replica.selector.class", "org.apache.kafka.common.replica.RackAwareReplicaSelector", Text),
        #[doc = "On SIGTERM, longest wait for the controller to move this broker's partitions away."]
        controlled_shutdown_timeout_ms: u64 = ("controlled.shutdown.timeout.ms", "30000", Long(0, LONG)),
        #[doc = "Largest request frame; larger ones are refused before they are read."]
        socket_request_max_bytes: usize = ("socket.request.max.bytes", "104857600", Int(1, INT)),
        #[doc = "Bytes of requests read and not yet answered, over all connections; more wait (backpressure)."]
        queued_max_request_bytes: u64 = ("queued.max.request.bytes", "536870912", Long(1, LONG)),
        #[doc = "Connections accepted at once; more wait in the accept queue."]
        max_connections: usize = ("max.connections", "10000", Int(1, INT)),
        #[doc = "Connections from one client address; more are closed as soon as they are accepted."]
        max_connections_per_ip: usize = ("max.connections.per.ip", "2147483647", Int(0, INT)),
        #[doc = "Per-address exceptions to max.connections.per.ip: host:count,host:count (host names are resolved at startup)."]
        max_connections_per_ip_overrides: String = ("max.connections.per.ip.overrides", "", Text),
        #[doc = "A connection with no request for this long and none in flight is closed."]
        connections_max_idle_ms: u64 = ("connections.max.idle.ms", "600000", Long(1, LONG)),
        #[doc = "Most bytes one Fetch response carries, whatever the client asks for."]
        fetch_max_bytes: usize = ("fetch.max.bytes", "57671680", Int(1024, INT)),
        #[doc = "Fetch sessions (KIP-227) kept at once; when full, one idle for 2 minutes makes room or none is created (0: never)."]
        max_incremental_fetch_session_cache_slots: usize = ("max.incremental.fetch.session.cache.slots", "1000", Int(0, INT)),
        #[doc = "On plaintext listeners (PLAINTEXT, SASL_PLAINTEXT) of a local store, send fetched record data from sealed segment files with sendfile(2), not through memory."]
        fetch_sendfile_enable: bool = ("fetch.sendfile.enable", "true", Bool),
        #[doc = "Upper bound on a Fetch's max_wait_ms."]
        fetch_max_wait_cap_ms: u64 = ("fetch.max.wait.cap.ms", "30000", Long(0, LONG)),
        #[doc = "Samples a client-quota rate is measured over."]
        quota_window_num: usize = ("quota.window.num", "11", Int(2, INT)),
        #[doc = "Length of one client-quota sample, in seconds."]
        quota_window_size_seconds: u64 = ("quota.window.size.seconds", "1", Long(1, 3600)),
    }
    #[doc = "Listener security: TLS, SASL and authentication limits. Each may be given for one listener as listener.name.<listener>.<setting>."]
    security: SecurityConfig {
        #[doc = "LISTENER:PROTOCOL pairs: the security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) of each listener name; a listener named after a protocol needs no entry."]
        listener_security_protocol_map: String = ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", Text),
        #[doc = "Format of the keystore: PEM or PKCS12 (JKS must be converted)."]
        ssl_keystore_type: String = ("ssl.keystore.type", "PEM", Choice(&["PEM", "PKCS12", "JKS"])),
        #[doc = "PEM file with the broker's private key and certificate chain (re-read when it changes)."]
        ssl_keystore_location: String = ("ssl.keystore.location", "", Text),
        #[doc = "The broker's private key as PEM text (with ssl.keystore.certificate.chain), instead of a file."]
        ssl_keystore_key: String = ("ssl.keystore.key", "", Password),
        #[doc = "The broker's certificate chain as PEM text (with ssl.keystore.key)."]
        ssl_keystore_certificate_chain: String = ("ssl.keystore.certificate.chain", "", Password),
        #[doc = "Password of a PKCS12 keystore."]
        ssl_keystore_password: String = ("ssl.keystore.password", "", Password),
        #[doc = "Password of an encrypted PEM private key (PKCS#8)."]
        ssl_key_password: String = ("ssl.key.password", "", Password),
        #[doc = "Format of the truststore: PEM or PKCS12."]
        ssl_truststore_type: String = ("ssl.truststore.type", "PEM", Choice(&["PEM", "PKCS12", "JKS"])),
        #[doc = "PEM file of the CA certificates that sign client certificates (re-read when it changes)."]
        ssl_truststore_location: String = ("ssl.truststore.location", "", Text),
        #[doc = "The CA certificates as PEM text, instead of a file."]
        ssl_truststore_certificates: String = ("ssl.truststore.certificates", "", Password),
        #[doc = "Password of a PKCS12 truststore."]
        ssl_truststore_password: String = ("ssl.truststore.password", "", Password),
        #[doc = "Client certificates: required (verified by the truststore), requested (verified if given) or none (not asked for)."]
        ssl_client_auth: String = ("ssl.client.auth", "none", Choice(&["required", "requested", "none"])),
        #[doc = "TLS versions: TLSv1.2 and/or TLSv1.3."]
        ssl_enabled_protocols: String = ("ssl.enabled.protocols", "TLSv1.2,TLSv1.3", Text),
        #[doc = "Cipher suites by IANA name. Empty: every suite rustls offers."]
        ssl_cipher_suites: String = ("ssl.cipher.suites", "", Text),
        #[doc = "Rules mapping a client certificate's subject (RFC 2253) to its principal: DEFAULT, RULE:pattern/replacement/[LU], as Kafka writes them."]
        ssl_principal_mapping_rules: String = ("ssl.principal.mapping.rules", "DEFAULT", Text),
        #[doc = "SASL mechanisms offered on SASL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER."]
        sasl_enabled_mechanisms: String = ("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", Text),
        #[doc = "JAAS line whose user_<name>=\"<password>\" options are the PLAIN users (usually given as listener.name.<listener>.plain.sasl.jaas.config)."]
        sasl_jaas_config: String = ("sasl.jaas.config", "", Password),
        #[doc = "The OAUTHBEARER JAAS line (usually given as listener.name.<listener>.oauthbearer.sasl.jaas.config); its ssl.truststore.location option (PEM) is trusted for an https JWKS endpoint."]
        sasl_oauthbearer_jaas_config: String = ("sasl.oauthbearer.jaas.config", "", Password),
        #[doc = "Where OAUTHBEARER tokens' signing keys are: a JWKS file (file:///path or a path, re-read when it changes) or an https URL (fetched at start and every sasl.oauthbearer.jwks.endpoint.refresh.ms, and when a token names an unknown key)."]
        sasl_oauthbearer_jwks_endpoint_url: String = ("sasl.oauthbearer.jwks.endpoint.url", "", Text),
        #[doc = "How often an https JWKS is fetched again."]
        sasl_oauthbearer_jwks_endpoint_refresh_ms: u64 = ("sasl.oauthbearer.jwks.endpoint.refresh.ms", "3600000", Long(1000, LONG)),
        #[doc = "First wait before fetching a JWKS again after a failure (doubling up to sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms)."]
        sasl_oauthbearer_jwks_endpoint_retry_backoff_ms: u64 = ("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", "100", Long(1, LONG)),
        #[doc = "Longest wait between attempts to fetch a JWKS."]
        sasl_oauthbearer_jwks_endpoint_retry_backoff_max_ms: u64 = ("sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms", "10000", Long(1, LONG)),
        #[doc = "Audiences a token must name one of in its aud claim, separated by commas. Empty: any."]
        sasl_oauthbearer_expected_audience: String = ("sasl.oauthbearer.expected.audience", "", Text),
        #[doc = "Issuer a token's iss claim must be. Empty: any."]
        sasl_oauthbearer_expected_issuer: String = ("sasl.oauthbearer.expected.issuer", "", Text),
        #[doc = "Claim whose value is the principal."]
        sasl_oauthbearer_sub_claim_name: String = ("sasl.oauthbearer.sub.claim.name", "sub", Text),
        #[doc = "Claim holding a token's scopes (read, not enforced)."]
        sasl_oauthbearer_scope_claim_name: String = ("sasl.oauthbearer.scope.claim.name", "scope", Text),
        #[doc = "Difference allowed between the identity provider's clock and the broker's when checking exp and nbf."]
        sasl_oauthbearer_clock_skew_seconds: i64 = ("sasl.oauthbearer.clock.skew.seconds", "30", Long(0, INT)),
        #[doc = "File of PLAIN users, one user=password per line."]
        sasl_plain_credentials_file: String = ("sasl.plain.credentials.file", "", Text),
        #[doc = "Largest frame a connection may send before it has authenticated."]
        sasl_server_max_receive_size: usize = ("sasl.server.max.receive.size", "524288", Int(1, INT)),
        #[doc = "Lifetime of a SASL session (KIP-368): the client re-authenticates on the same connection before it ends, or the connection is closed at its next request. 0: no limit."]
        connections_max_reauth_ms: i64 = ("connections.max.reauth.ms", "0", Long(0, LONG)),
        #[doc = "A failed SASL authentication is answered (and its connection closed) this much later, which slows password guessing."]
        connection_failed_authentication_delay_ms: u64 = ("connection.failed.authentication.delay.ms", "100", Long(0, LONG)),
        #[doc = "Switches authorization by ACLs on: any value does (Kafka's org.apache.kafka.metadata.authorizer.StandardAuthorizer is the usual one). Empty: every client may do everything."]
        authorizer_class_name: String = ("authorizer.class.name", "", Text),
        #[doc = "Principals that may do everything, separated by semicolons: User:admin;User:operator."]
        super_users: String = ("super.users", "", Text),
        #[doc = "With authorization on, whether a resource that no ACL names is open to everyone."]
        allow_everyone_if_no_acl_found: bool = ("allow.everyone.if.no.acl.found", "false", Bool),
        #[doc = "Longest time a new connection may take for its TLS handshake and SASL authentication."]
        authentication_timeout_ms: u64 = ("authentication.timeout.ms", "10000", Long(1, LONG)),
    }
    #[doc = "The metadata store and membership."]
    cluster: Cluster {
        #[doc = "Metadata store: embedded (a file under data.dir; one broker) or etcd://HOST:PORT[,HOST:PORT...][/namespace] for a cluster. etcd credentials come from ETCD_USERNAME / ETCD_PASSWORD."]
        metadata_url: String = ("metadata.store.url", "embedded", Url(&["embedded", "etcd://"], true)),
        #[doc = "How brokers reach etcd: PLAINTEXT, or SSL (TLS, checked against metadata.store.ssl.truststore.location or the system's CAs)."]
        metadata_security_protocol: String = ("metadata.store.security.protocol", "PLAINTEXT", Choice(&["PLAINTEXT", "SSL"])),
        #[doc = "PEM file of the CA certificates that sign etcd's server certificate (SSL). Empty: the system's."]
        metadata_ssl_truststore_location: String = ("metadata.store.ssl.truststore.location", "", Text),
        #[doc = "PEM file with the broker's client certificate chain and private key, for an etcd that asks for client certificates (--client-cert-auth)."]
        metadata_ssl_keystore_location: String = ("metadata.store.ssl.keystore.location", "", Text),
        #[doc = "Deadline of one metadata-store request; a store that does not answer gives retriable errors."]
        metadata_timeout_ms: u64 = ("metadata.request.timeout.ms", "5000", Long(1, LONG)),
        #[doc = "How often the brokers compact etcd's history (one of them a round), keeping at least that much of it: etcd keeps every revision until compacted, and counts them against its quota (about 1.4 MB a second at 50 MB/s of produce). 0: never (an etcd run with --auto-compaction-retention)."]
        metadata_compaction_interval_ms: u64 = ("metadata.store.compaction.interval.ms", "60000", Long(0, LONG)),
        #[doc = "Lease of a broker's registration: a broker silent this long loses its partitions to the others."]
        broker_session_timeout_ms: u64 = ("broker.session.timeout.ms", "6000", Long(1, LONG)),
        #[doc = "How often a broker reports the bytes per second each of its partitions takes in and sends out (one key per broker in the metadata store); a rebalance evens out these rates across brokers."]
        load_report_interval_ms: u64 = ("load.report.interval.ms", "30000", Long(100, LONG)),
        #[doc = "Whether the controller rebalances on its own every auto.rebalance.interval.ms: partitions move when two brokers' measured traffic differs by more than 10 % of the mean (at least 64 KiB/s), or their partition counts by more than one."]
        auto_rebalance_enable: bool = ("auto.rebalance.enable", "false", Bool),
        #[doc = "How often the controller checks the balance when auto.rebalance.enable is true."]
        auto_rebalance_interval_ms: u64 = ("auto.rebalance.interval.ms", "300000", Long(1000, LONG)),
    }
    #[doc = "The data directory, the object store, the WAL, the read cache and upkeep."]
    storage: Storage {
        #[doc = "Directory for embedded metadata, the local object store and the disk cache."]
        data_dir: PathBuf = ("data.dir", "./stratus-data", Text),
        #[doc = "Object store URL: file:///path, s3://bucket/prefix, memory://. Default: file://<data.dir>/objects."]
        object_store: String = ("object.store.url", "", Url(&["file://", "s3://", "s3a://", "memory:"], true)),
        #[doc = "PEM file of CA certificates trusted for an https S3 endpoint (AWS_ENDPOINT_URL), besides the system's."]
        object_store_ssl_truststore_location: String = ("object.store.ssl.truststore.location", "", Text),
        #[doc = "Longest wait for more data before a WAL object is written. Default: 2 (file), 0 (memory), 100 (s3)."]
        wal_flush_interval_ms: Option<u64> = ("wal.flush.interval.ms", "", Long(0, LONG)),
        #[doc = "Largest WAL object: a flush starts when this many bytes are buffered, whatever else."]
        wal_flush_bytes: usize = ("wal.flush.bytes", "8388608", Long(1, LONG)),
        #[doc = "Buffered bytes written at once while fewer than wal.max.in.flight objects are being written; less waits for an idle WAL or wal.flush.interval.ms, or, while the WAL writes at least this much per wal.flush.interval.ms, from a quarter of it that arrived within the interval / 20, for no append during the interval / 50. Default: 0 (file, memory: every write goes at once), 262144 (s3)."]
        wal_flush_min_bytes: Option<usize> = ("wal.flush.min.bytes", "", Long(0, LONG)),
        #[doc = "WAL objects being written at once; their commits still apply in order."]
        wal_max_in_flight: usize = ("wal.max.in.flight", "4", Int(1, 1024)),
        #[doc = "Produce bytes buffered or in flight to the object store before producers wait (backpressure)."]
        wal_buffer_max_bytes: usize = ("wal.buffer.max.bytes", "67108864", Long(1, LONG)),
        #[doc = "Size of the in-memory block cache for reads of WAL and segment objects. Default: 33554432 for file:// stores (the kernel's page cache holds their files as well), 268435456 otherwise."]
        cache_memory_bytes: Option<u64> = ("cache.memory.bytes", "", Long(0, LONG)),
        #[doc = "Size of the local-disk block cache under <data.dir>/cache (0 disables it). Default: 0 for file:// stores (their objects are local already), 1073741824 otherwise."]
        cache_disk_bytes: Option<u64> = ("cache.disk.bytes", "", Long(0, LONG)),
        #[doc = "Size of a cached block; reads from the object store are ranged GETs of whole blocks (read-ahead)."]
        cache_block_bytes: u64 = ("cache.block.bytes", "1048576", Long(1, LONG)),
        #[doc = "How often partitions are checked for data to seal into segments."]
        seal_check_interval_ms: u64 = ("seal.check.interval.ms", "1000", Long(1, LONG)),
        #[doc = "How often WAL compaction writes the live data of older WAL objects again as one object, so that the metadata store's WAL index stays small (0 disables it)."]
        wal_compaction_interval_ms: u64 = ("wal.compaction.interval.ms", "10000", Long(0, LONG)),
        #[doc = "Most bytes one WAL compaction run writes (and holds in memory)."]
        wal_compaction_max_bytes: u64 = ("wal.compaction.max.bytes", "67108864", Long(1048576, LONG)),
        #[doc = "Longest a partition's data stays in the WAL before it is sealed into a segment, whatever the topic's segment.ms: the WAL index (the metadata store's footprint) holds about this long of the broker's data, so it stays bounded with many slow partitions and a long segment.ms (0: segment.ms alone)."]
        wal_unsealed_max_ms: i64 = ("wal.unsealed.max.ms", "3600000", Long(0, LONG)),
        #[doc = "How often a broker merges old segments of the partitions it owns that retain more than segment.merge.min.segments, so that each partition's record in the metadata store stays small (0 disables it)."]
        segment_merge_interval_ms: u64 = ("segment.merge.interval.ms", "60000", Long(0, LONG)),
        #[doc = "Segments a partition retains before its old ones are merged (in size tiers of 8, each byte written again about once per tier)."]
        segment_merge_min_segments: usize = ("segment.merge.min.segments", "1000", Long(0, LONG)),
        #[doc = "Largest merged segment (bytes of batches), and most bytes one merge run writes. A merge also spans at most an eighth of its topic's retention.bytes and retention.ms."]
        segment_merge_max_bytes: u64 = ("segment.merge.max.bytes", "1073741824", Long(1048576, LONG)),
        #[doc = "Segments whose newest record is younger than this are not merged."]
        segment_merge_min_age_ms: i64 = ("segment.merge.min.age.ms", "600000", Long(0, LONG)),
        #[doc = "How often retention runs."]
        retention_check_interval_ms: u64 = ("log.retention.check.interval.ms", "300000", Long(1, LONG)),
    }
    #[doc = "Topic defaults and topic administration (Kafka's log.* names)."]
    topics: Topics {
        #[doc = "Partitions of auto-created topics and of CreateTopics with -1."]
        num_partitions: i32 = ("num.partitions", "1", Int(1, MAX_PARTITIONS as i64)),
        #[doc = "Replication factor reported for topics created with -1 (durability comes from the object store)."]
        default_replication_factor: i16 = ("default.replication.factor", "1", Int(1, i16::MAX as i64)),
        #[doc = "Create unknown topics on Metadata and Produce requests."]
        auto_create_topics: bool = ("auto.create.topics.enable", "true", Bool),
        #[doc = "Allow DeleteTopics."]
        delete_topic_enable: bool = ("delete.topic.enable", "true", Bool),
        #[doc = "Largest record batch a topic accepts unless max.message.bytes says otherwise."]
        message_max_bytes: i32 = ("message.max.bytes", "1048588", Int(1, INT)),
        #[doc = "Default retention.ms of topics (-1: keep forever)."]
        retention_ms: i64 = ("log.retention.ms", "604800000", Long(-1, LONG)),
        #[doc = "Default retention.bytes of topics (-1: no size limit)."]
        retention_bytes: i64 = ("log.retention.bytes", "-1", Long(-1, LONG)),
        #[doc = "Default segment.bytes: a partition's unsealed data is sealed into a segment object at this size."]
        segment_bytes: i32 = ("log.segment.bytes", "33554432", Int(14, INT)),
        #[doc = "Default segment.ms: unsealed data older than this is sealed into a segment object."]
        roll_ms: i64 = ("log.roll.ms", "3600000", Long(1, LONG)),
        #[doc = "Default message.timestamp.type of topics."]
        message_timestamp_type: String = ("log.message.timestamp.type", "CreateTime", Choice(&["CreateTime", "LogAppendTime"])),
        #[doc = "Default cleanup.policy of topics (only delete is supported)."]
        cleanup_policy: String = ("log.cleanup.policy", "delete", Choice(CLEANUP_POLICIES)),
        #[doc = "Idempotent producers idle this long are forgotten (their next batch starts a new sequence)."]
        producer_id_expiration_ms: i64 = ("producer.id.expiration.ms", "86400000", Long(1, LONG)),
    }
    #[doc = "The group coordinator."]
    groups: Groups {
        #[doc = "Smallest session timeout a group member may ask for."]
        group_min_session_timeout_ms: u64 = ("group.min.session.timeout.ms", "6000", Long(0, LONG)),
        #[doc = "Largest session timeout a group member may ask for."]
        group_max_session_timeout_ms: u64 = ("group.max.session.timeout.ms", "1800000", Long(0, LONG)),
        #[doc = "A new group waits this long for more members before its first rebalance completes."]
        group_initial_rebalance_delay_ms: u64 = ("group.initial.rebalance.delay.ms", "3000", Long(0, LONG)),
        #[doc = "Members a consumer group may have."]
        group_max_size: usize = ("group.max.size", "2147483647", Int(1, INT)),
        #[doc = "Session timeout of members of consumer-protocol (KIP-848) groups."]
        group_consumer_session_timeout_ms: u64 = ("group.consumer.session.timeout.ms", "45000", Long(1, LONG)),
        #[doc = "Heartbeat interval given to members of consumer-protocol groups."]
        group_consumer_heartbeat_interval_ms: u64 = ("group.consumer.heartbeat.interval.ms", "5000", Long(1, LONG)),
        #[doc = "Committed offsets of an empty group are deleted after this."]
        offsets_retention_minutes: u64 = ("offsets.retention.minutes", "10080", Int(1, INT)),
        #[doc = "Largest metadata string of a committed offset."]
        offset_metadata_max_bytes: usize = ("offset.metadata.max.bytes", "4096", Int(0, INT)),
    }
    #[doc = "Telemetry: the HTTP endpoint (metrics, health), OTLP export, logs."]
    telemetry: Telemetry {
        #[doc = "HOST:PORT of the HTTP endpoint serving /metrics (Prometheus text), /livez and /readyz; empty: none. Use 0.0.0.0:9644 for Prometheus and kubelet probes from other hosts."]
        http_listener: String = ("http.listener", "127.0.0.1:9644", Address),
        #[doc = "Log lines as text, or one JSON object per line."]
        log_format: String = ("log.format", "text", Choice(&["text", "json"])),
        #[doc = "Also export per-partition series (consumer lag per partition); off by default to keep the series count bounded."]
        metrics_partition_series: bool = ("metrics.partition.series", "false", Bool),
        #[doc = "Label sets one metric may hold; beyond it, new label sets count under one series labelled __overflow__."]
        metrics_max_series: usize = ("metrics.max.series.per.metric", "2000", Int(10, 1_000_000)),
        #[doc = "OTLP/gRPC endpoint (http://host:4317) that receives metrics and traces; empty: OTEL_EXPORTER_OTLP_ENDPOINT, else no export."]
        otel_exporter_otlp_endpoint: String = ("otel.exporter.otlp.endpoint", "", Text),
        #[doc = "service.name of what is exported (OTEL_SERVICE_NAME when not set)."]
        otel_service_name: String = ("otel.service.name", "stratus", Text),
        #[doc = "Share of requests traced, 0 to 1 (OTEL_TRACES_SAMPLER_ARG when not set); a request of a sampled trace is always traced."]
        otel_traces_sampler_arg: f64 = ("otel.traces.sampler.arg", "0.01", Ratio),
        #[doc = "How often metrics are exported over OTLP (OTEL_METRIC_EXPORT_INTERVAL when not set)."]
        otel_metric_export_interval_ms: u64 = ("otel.metric.export.interval.ms", "60000", Long(100, LONG)),
    }
}

/// Looks up a setting.
pub fn def(name: &str) -> Option<&'static SettingDoc> {
    SETTINGS.iter().find(|d| d.name == name)
}
