//! A raw Kafka client for wire-level tests, and an in-process broker to point it at.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
#![allow(dead_code)]

pub mod clocked;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub struct TestBroker {
    pub addr: SocketAddr,
    /// For a broker whose first listener is SSL: how clients connect.
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    cancel: CancellationToken,
    /// Set when `serve` returned an error (a critical task stopped or panicked).
    failed: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    _dir: tempfile::TempDir,
}

/// A client connection: plain TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl TestBroker {
    /// A new connection to the first listener (with a TLS handshake on an SSL one).
    pub async fn connect(&self) -> Box<dyn Io> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        match &self.tls {
            None => Box::new(tcp),
            Some(config) => {
                let name =
                    tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .expect("TLS handshake");
                Box::new(tls)
            }
        }
    }

    /// Panics if the broker stopped on its own (a critical task returned or panicked).
    pub fn assert_alive(&self) {
        if let Some(e) = self.failed.lock().unwrap().as_ref() {
            panic!("the in-process broker stopped: {e}");
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.cancel.cancel();
        if !std::thread::panicking() {
            self.assert_alive();
        }
    }
}

pub fn settings(dir: &std::path::Path, extra: &[(&str, &str)]) -> stratus::Settings {
    // RUST_LOG=debug shows the broker's log in failing tests.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut pairs = vec![
        (
            "listeners".to_string(),
            "PLAINTEXT://127.0.0.1:0".to_string(),
        ),
        ("data.dir".to_string(), dir.display().to_string()),
        ("object.store.url".to_string(), "memory://".to_string()),
        ("cache.disk.bytes".to_string(), "0".to_string()),
        ("http.listener".to_string(), "127.0.0.1:0".to_string()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    stratus::Settings::from_pairs(pairs).unwrap()
}

/// Serves an opened broker in this process.
pub async fn serve(broker: std::sync::Arc<stratus::Broker>, dir: tempfile::TempDir) -> TestBroker {
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let c = cancel.clone();
    let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let f = failed.clone();
    tokio::spawn(async move {
        if let Err(e) = stratus::serve(broker, c, Some(tx)).await {
            *f.lock().unwrap() = Some(format!("{e:#}"));
        }
    });
    let addrs = rx.await.expect("the broker binds its listeners");
    TestBroker {
        addr: addrs[0],
        tls: None,
        cancel,
        failed,
        _dir: dir,
    }
}

pub async fn start(extra: &[(&str, &str)]) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let broker = stratus::Broker::open(settings(dir.path(), extra))
        .await
        .unwrap();
    serve(broker, dir).await
}

/// A broker whose only listener is SSL, with a certificate for localhost from a CA made
/// here; its `connect` trusts that CA.
pub async fn start_tls(extra: &[(&str, &str)]) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let pem = dir.path().join("server.pem");
    std::fs::write(&pem, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
    let pem = pem.display().to_string();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("listeners", "SSL://127.0.0.1:0"),
        ("ssl.keystore.location", pem.as_str()),
    ];
    pairs.extend_from_slice(extra);
    let broker = stratus::Broker::open(settings(dir.path(), &pairs))
        .await
        .unwrap();
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let config = tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut b = serve(broker, dir).await;
    b.tls = Some(std::sync::Arc::new(config));
    b
}

pub async fn send_raw<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    frame: &[u8],
) -> Option<Bytes> {
    // One write: a second small one would wait out the broker's delayed ACK (Nagle).
    let mut out = Vec::with_capacity(4 + frame.len());
    out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    out.extend_from_slice(frame);
    s.write_all(&out).await.ok()?;
    read_frame(s).await
}

pub async fn read_frame<S: AsyncRead + Unpin + ?Sized>(s: &mut S) -> Option<Bytes> {
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.ok()?;
    Some(Bytes::from(buf))
}

pub async fn call<Req, Resp, S>(s: &mut S, api: ApiKey, version: i16, req: &Req) -> Resp
where
    Req: Encodable + HeaderVersionOf,
    Resp: Decodable,
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut buf = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("test")));
    header
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    let mut resp = send_raw(s, &buf).await.expect("a response");
    let h = ResponseHeader::decode(&mut resp, api.response_header_version(version)).unwrap();
    assert_eq!(h.correlation_id, 42);
    Resp::decode(&mut resp, version).unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"))
}

/// Marker so `call` takes only request types.
pub trait HeaderVersionOf {}
impl<T: kafka_protocol::protocol::Request> HeaderVersionOf for T {}

pub fn batch(values: &[&str], magic: i8) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1000 + i as i64,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: magic,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

pub fn produce_req(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])])
}

pub async fn produce_code<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    topic: &str,
    records: Bytes,
) -> (i16, i64) {
    let resp: ProduceResponse = call(s, ApiKey::Produce, 9, &produce_req(topic, records)).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

pub async fn create_topic<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    name: &str,
    partitions: i32,
) {
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    let r: CreateTopicsResponse = call(s, ApiKey::CreateTopics, 7, &create).await;
    assert_eq!(r.topics[0].error_code, 0, "create topic {name}");
}

/// Every record of partition 0 of `topic` from offset 0: (offset, value).
pub async fn fetch_values<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    topic: &str,
) -> Vec<(i64, String)> {
    let req = FetchRequest::default()
        .with_max_wait_ms(10)
        .with_max_bytes(1 << 20)
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = call(s, ApiKey::Fetch, 11, &req).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "fetch {topic}");
    let mut records = p.records.clone().unwrap_or_default();
    kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records)
        .unwrap()
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| {
            (
                r.offset,
                String::from_utf8_lossy(&r.value.unwrap_or_default()).to_string(),
            )
        })
        .collect()
}
