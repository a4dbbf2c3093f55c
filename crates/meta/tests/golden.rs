//! Golden files of every stored record: each encoding Stratus ever wrote must still decode
//! to the same record, and this build must write exactly the current one. A change to a
//! record that fails here needs a new `RECORD_VERSION` and a new golden file, never an edit
//! of an old one. `STRATUS_BLESS=1 cargo test -p stratus-meta --test golden` writes the
//! files of the current version that are missing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;

use serde::{de::DeserializeOwned, Serialize};
use stratus_meta::repo::*;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// `name.unversioned.json` (written before records had versions) and `name.v1.json` both
/// decode to `record`, and `record` encodes to `name.v<RECORD_VERSION>.json`.
fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(name: &str, record: T) {
    let current = golden(&format!("{name}.v{RECORD_VERSION}.json"));
    let encoded = encode(&record);
    if std::env::var_os("STRATUS_BLESS").is_some() {
        let unversioned = golden(&format!("{name}.unversioned.json"));
        if !unversioned.exists() {
            // What every build before record versions wrote: the bare serde_json encoding.
            std::fs::write(&unversioned, serde_json::to_vec(&record).unwrap()).unwrap();
        }
        if !current.exists() {
            std::fs::write(&current, &encoded).unwrap();
        }
    }
    for version in ["unversioned".to_string(), format!("v{RECORD_VERSION}")] {
        let path = golden(&format!("{name}.{version}.json"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let decoded: T = decode_bytes(name, &bytes).unwrap();
        assert_eq!(decoded, record, "{}", path.display());
        if STRUCTS.contains(&name) {
            let direct: T = decode_struct(name, &bytes).unwrap();
            assert_eq!(direct, record, "{} read by decode_struct", path.display());
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&encoded),
        String::from_utf8_lossy(&std::fs::read(&current).unwrap()),
        "this build no longer writes {}",
        current.display()
    );
}

/// The records read with [`decode_struct`] too (structs, not maps or enums).
const STRUCTS: &[&str] = &["topic", "partition", "wal-entry", "controller"];

fn producer() -> ProducerBatch {
    ProducerBatch {
        pid: 4000,
        epoch: 2,
        first_seq: 10,
        last_seq: 14,
        base_offset: 100,
        last_offset: 104,
        appended_ms: 1_764_000_000_000,
    }
}

#[test]
fn topic_record() {
    check(
        "topic",
        TopicRecord {
            id: "6f1d2c3b-0a4e-4b5f-9c8d-7e6f5a4b3c2d".into(),
            name: "orders".into(),
            partitions: 12,
            replication_factor: 3,
            configs: BTreeMap::from([("retention.ms".into(), "86400000".into())]),
        },
    );
}

#[test]
fn partition_record() {
    check(
        "partition",
        PartitionRecord {
            log_start_offset: 50,
            sealed_end: 200,
            segments: vec![SegmentRef {
                key: "topics/6f1d2c3b-0a4e-4b5f-9c8d-7e6f5a4b3c2d/3/00000000000000000000.seg"
                    .into(),
                base_offset: 0,
                end_offset: 200,
                data_len: 40_000,
                size: 40_600,
                max_timestamp: 1_764_000_000_500,
            }],
            epochs: vec![(1, 0), (7, 150)],
            producers: vec![producer()],
        },
    );
}

#[test]
fn wal_entry() {
    check(
        "wal-entry",
        WalEntry {
            object: "wal/2/00000000000000ab-00000000000000000042.wal".into(),
            ranges: vec![
                WalRange {
                    topic_id: "6f1d2c3b-0a4e-4b5f-9c8d-7e6f5a4b3c2d".into(),
                    partition: 3,
                    base_offset: 200,
                    end_offset: 205,
                    pos: 0,
                    len: 1_000,
                    max_timestamp: 1_764_000_001_000,
                    producers: vec![producer()],
                },
                WalRange {
                    topic_id: "6f1d2c3b-0a4e-4b5f-9c8d-7e6f5a4b3c2d".into(),
                    partition: 4,
                    base_offset: 0,
                    end_offset: 1,
                    pos: 1_000,
                    len: 80,
                    max_timestamp: -1,
                    producers: vec![],
                },
            ],
        },
    );
}

#[test]
fn assignment() {
    check(
        "assignment",
        Assignment {
            incarnation: 0xabcdef,
            partitions: BTreeMap::from([(
                stratus_meta::keys::PartitionId::new("6f1d2c3b-0a4e-4b5f-9c8d-7e6f5a4b3c2d", 3),
                7,
            )]),
            shards: BTreeMap::from([(6, 7), (33, 2)]),
        },
    );
}

/// The compact assignment (version 2, written where version 1 would pass etcd's request
/// limit): its golden file decodes to the record, and this build writes exactly it.
#[test]
fn compact_assignment() {
    let id = |t: &str, i| stratus_meta::keys::PartitionId::new(t, i);
    let t1 = "6f1d2c3b-0a4e-4b5f-9c8d-7e6f5a4b3c2d";
    let t2 = "0b5e8a52-0000-4000-8000-000000000000";
    let record = Assignment {
        incarnation: 0xabcdef,
        partitions: BTreeMap::from([
            (id(t1, 0), 7),
            (id(t1, 3), 7),
            (id(t1, 5), 9),
            (id(t2, 1), 7),
        ]),
        shards: BTreeMap::from([(6, 7), (33, 2)]),
    };
    let path = golden("assignment.v2.json");
    if std::env::var_os("STRATUS_BLESS").is_some() && !path.exists() {
        std::fs::write(&path, record.encode_compact()).unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&record.encode_compact()),
        String::from_utf8_lossy(&bytes),
        "this build no longer writes {}",
        path.display()
    );
    let decoded: Assignment = decode_bytes("brokers/1/assignment", &bytes).unwrap();
    assert_eq!(decoded, record);
}

#[test]
fn registration() {
    check(
        "registration",
        Registration {
            node: 2,
            incarnation: 0xabcdef,
            listeners: vec![("PLAINTEXT".into(), "broker-2.stratus".into(), 9092)],
            rack: Some("zone-b".into()),
            admin: Some("0.0.0.0:9644".into()),
            leaving: false,
        },
    );
}

#[test]
fn controller() {
    check(
        "controller",
        ControllerRecord {
            node: 1,
            incarnation: 0x1234,
        },
    );
}

#[test]
fn a_record_from_a_newer_version_is_refused_as_corrupt_not_misread() {
    let newer = format!(r#"{{"node":1,"incarnation":2,"v":{}}}"#, READ_VERSION + 1);
    for decode in [
        decode_bytes::<ControllerRecord>,
        decode_struct::<ControllerRecord>,
    ] {
        let err = decode("cluster/controller", newer.as_bytes()).unwrap_err();
        assert!(
            matches!(err, stratus_meta::MetaError::Corrupt { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("written by a newer Stratus"),
            "{err}"
        );
        let garbage = decode("cluster/controller", b"{\"node\":").unwrap_err();
        assert!(
            garbage
                .to_string()
                .starts_with("corrupt record at cluster/controller"),
            "{garbage}"
        );
        let not_a_number = decode(
            "cluster/controller",
            br#"{"node":1,"incarnation":2,"v":"1"}"#,
        )
        .unwrap_err();
        assert!(
            not_a_number.to_string().contains("is not a number"),
            "{not_a_number}"
        );
    }
}

#[test]
fn scram_record() {
    check(
        "scram",
        ScramRecord {
            salt: vec![1, 2, 3, 4],
            stored_key: vec![5; 32],
            server_key: vec![6; 32],
            iterations: 4096,
        },
    );
}

#[test]
fn acl_record() {
    check(
        "acl",
        AclRecord {
            resource_type: 2,
            name: "orders-".into(),
            pattern_type: 4,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: 3,
            permission: 3,
        },
    );
}

#[test]
fn quota_record() {
    check(
        "quota",
        QuotaRecord {
            user: Some(QuotaName::Name("alice".into())),
            client_id: Some(QuotaName::Default),
            values: BTreeMap::from([
                ("producer_byte_rate".to_string(), 1048576.0),
                ("request_percentage".to_string(), 12.5),
            ]),
        },
    );
}
