//! A broker that reads time from a manual clock, over an in-memory object store, with one
//! topic: upkeep jobs act exactly when the clock says.

use std::sync::Arc;

use stratus_log::clock::ManualClock;
use stratus_log::objects::Objects;
use stratus_meta::embedded::EmbeddedStore;
use tokio::net::TcpStream;

use super::{create_topic, serve, settings, TestBroker};

pub struct Clocked {
    pub broker: Arc<stratus::Broker>,
    pub clock: Arc<ManualClock>,
    pub objects: Arc<Objects>,
    pub conn: TcpStream,
    _served: TestBroker,
}

/// A broker reading time from a manual clock at `start_ms`, with topic `r` (1 partition).
pub async fn clocked(start_ms: i64, extra: &[(&str, &str)]) -> Clocked {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(EmbeddedStore::open(&dir.path().join("meta.redb")).unwrap());
    let objects = Arc::new(Objects::from_store(Arc::new(
        object_store::memory::InMemory::new(),
    )));
    let clock = ManualClock::at(start_ms);
    let broker = stratus::Broker::open_with_clock(
        settings(dir.path(), extra),
        meta,
        objects.clone(),
        clock.clone(),
    )
    .await
    .unwrap();
    let served = serve(broker.clone(), dir).await;
    let mut conn = TcpStream::connect(served.addr).await.unwrap();
    create_topic(&mut conn, "r", 1).await;
    Clocked {
        broker,
        clock,
        objects,
        conn,
        _served: served,
    }
}
