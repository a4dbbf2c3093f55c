//! Listeners and connections: framing, bounds, and the per-connection pipeline.
//!
//! A connection task reads whole frames (refusing, before buffering, any frame larger than
//! `socket.request.max.bytes`), decodes the header and hands the request to `handlers`.
//! Produce requests are appended at once, in arrival order, and their responses wait for
//! durability; a writer task sends responses strictly in request order, so several
//! produce requests of one connection share a WAL flush.
//!
//! A listener's security (`auth`) wraps this: a TLS handshake first on SSL listeners (the
//! client certificate gives the principal), and on SASL listeners the connection's gate
//! lets nothing but authentication through until the client has authenticated.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument, Span};

use crate::auth::ListenerSecurity;
use crate::broker::Broker;
use crate::config::Settings;
use crate::handlers::splice::Frame;
use crate::handlers::{self, Principal, ResponseFuture, Session};
use crate::quotas::Throttle;
use crate::read::Piece;
use crate::supervisor::panic_message;
use crate::telemetry::requests::{Measured, Timing};

mod frames;
mod gate;
mod limits;
mod sendfile;
use frames::{FrameReader, Limit};
use gate::{Gate, Verdict};
pub use limits::ConnectionLimits;
use sendfile::SendFile;

/// Requests of one connection being processed or awaiting their turn to respond.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 16;

/// Binds every listener; returns their bound addresses.
pub async fn bind(settings: &Settings) -> anyhow::Result<Bound> {
    let mut kafka = Vec::new();
    for l in &settings.server.listeners {
        let addr = format!("{}://{}:{}", l.name, l.host, l.port);
        let listener = TcpListener::bind((l.host.as_str(), l.port))
            .await
            .map_err(|e| bind_error(&format!("listener {addr}"), "--listeners (listeners)", &e))?;
        info!(listener = %l.name, addr = %listener.local_addr()?, "listening");
        kafka.push(listener);
    }
    let http = match settings.telemetry.http_listener.as_str() {
        "" => None,
        addr => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| bind_error(&format!("http.listener {addr}"), "http.listener", &e))?;
            info!(addr = %l.local_addr()?, "HTTP endpoint (/metrics, /livez, /readyz) listening");
            Some(l)
        }
    };
    let admin = match &settings.server.admin_listener {
        Some(addr) => {
            let l = TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| bind_error(&format!("admin.listener {addr}"), "admin.listener", &e))?;
            info!(addr = %l.local_addr()?, "admin API listening");
            Some(l)
        }
        None => None,
    };
    let limits = ConnectionLimits::new(
        settings.server.max_connections_per_ip,
        &settings.server.max_connections_per_ip_overrides,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Bound {
        kafka,
        admin,
        http,
        limits: Arc::new(limits),
    })
}

/// The bound sockets: Kafka listeners in the order of `listeners`, and the admin API's.
pub struct Bound {
    /// One per Kafka listener.
    pub kafka: Vec<TcpListener>,
    /// The admin API's, if `admin.listener` is set.
    pub admin: Option<TcpListener>,
    /// The HTTP endpoint's (metrics, health), if `http.listener` is set.
    pub http: Option<TcpListener>,
    /// Connections per client address, over every listener.
    pub limits: Arc<ConnectionLimits>,
}

fn bind_error(what: &str, setting: &str, e: &std::io::Error) -> anyhow::Error {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "another process (another broker?) is using that port: stop it, or choose another \
             port with {setting}"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "ports below 1024 need privileges: choose a port of 1024 or more with {setting}"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "no interface of this machine has that address: use 0.0.0.0 or one of its \
             addresses in {setting}"
        ),
        _ => format!("check {setting}"),
    };
    anyhow::anyhow!("cannot listen on {what}: {e}; {hint}")
}

/// Accepts connections until cancelled; connection tasks join `tracker`.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    index: usize,
    limits: Arc<ConnectionLimits>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(
        broker.settings.server.max_connections.max(1),
    ));
    let security = broker.security.listeners[index].clone();
    let metrics = &broker.telemetry.connections;
    let created = metrics.created.get(&[&security.name]);
    let open = metrics
        .open
        .get(&[&security.name, &security.protocol.to_string()]);
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (socket, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning on the error.
                    warn!(error = %e, "accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // An IPv4 client of an IPv6 wildcard listener is its IPv4 address, for ACL hosts
        // and per-address limits alike.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let admitted = match limits.admit(peer.ip()) {
            Ok(a) => a,
            Err(limit) => {
                info!(%peer, limit, "too many connections from this address (max.connections.per.ip); closed");
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let broker = broker.clone();
        let cancel = cancel.clone();
        let security = security.clone();
        created.inc();
        open.inc();
        let open = open.clone();
        tracker.spawn(async move {
            // A panic here is a bug (input must never cause one): the binary aborts on it
            // (main.rs); embedded, the supervisor stops the broker all the same.
            let tasks = broker.supervisor.clone();
            // Every log line of this connection names it: listener, client address, and
            // once known the principal and client id.
            let span = info_span!(
                "connection",
                listener = %security.name,
                peer = %peer,
                principal = tracing::field::Empty,
                client_id = tracing::field::Empty,
            );
            let served = AssertUnwindSafe(accept(broker, security, index, socket, peer, cancel))
                .catch_unwind()
                .instrument(span)
                .await;
            if let Err(panic) = served {
                tasks.fail(
                    "connection",
                    format!("it panicked: {}", panic_message(&*panic)),
                );
            }
            open.dec();
            drop(permit);
            drop(admitted);
        });
    }
}

/// Sets a new connection up as its listener's security asks (TLS handshake, principal of
/// a client certificate), then serves it.
async fn accept(
    broker: Arc<Broker>,
    security: Arc<ListenerSecurity>,
    index: usize,
    socket: TcpStream,
    peer: SocketAddr,
    cancel: CancellationToken,
) {
    let mut session = Session {
        listener: index,
        peer,
        principal: Principal::Anonymous,
        sends_files: false,
    };
    let Some(tls) = &security.tls else {
        session.sends_files = broker.settings.server.fetch_sendfile_enable;
        let (rd, wr) = socket.into_split();
        return connection(broker, security, session, rd, wr, cancel).await;
    };
    let handshake = tokio::time::timeout(security.auth_timeout, tls.acceptor().accept(socket));
    let stream = tokio::select! {
        _ = cancel.cancelled() => return,
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                info!(%peer, listener = %security.name, error = %e, "TLS handshake failed; connection closed");
                failed_authentication(&broker, &security);
                return;
            }
            Err(_) => {
                info!(%peer, listener = %security.name, "no TLS handshake within authentication.timeout.ms; connection closed");
                return;
            }
        },
    };
    if security.sasl.is_none() {
        if let Some(cert) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            let name = stratus_auth::principal::subject_dn(cert)
                .and_then(|dn| security.principal_rules.apply(&dn));
            match name {
                Ok(name) => session.principal = Principal::User(Arc::from(name.as_str())),
                Err(e) => {
                    info!(%peer, listener = %security.name, error = %e, "no principal for the client certificate; connection closed");
                    failed_authentication(&broker, &security);
                    return;
                }
            }
        }
    }
    let (rd, wr) = tokio::io::split(stream);
    connection(broker, security, session, rd, wr, cancel).await
}

async fn connection<R, W>(
    broker: Arc<Broker>,
    security: Arc<ListenerSecurity>,
    mut session: Session,
    mut rd: R,
    wr: W,
    cancel: CancellationToken,
) where
    R: AsyncRead + Unpin + Send,
    W: SendFile + 'static,
{
    let peer = session.peer;
    let mut gate = Gate::new(&security, &broker.security.scram);
    let auth_deadline = Instant::now() + security.auth_timeout;
    let idle = Duration::from_millis(broker.settings.server.connections_max_idle_ms);
    let mut last_request = Instant::now();
    // Requests read and not yet answered (or dropped, for acks=0).
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::channel::<Reply>(MAX_IN_FLIGHT_PER_CONNECTION);
    let answered = in_flight.clone();
    let measured = broker.clone();
    let writer = tokio::spawn(
        async move {
            let mut wr = BufWriter::new(wr);
            while let Some(fut) = rx.recv().await {
                let (resp, timing) = fut.await;
                answered.fetch_sub(1, Ordering::Relaxed);
                let sending = Instant::now();
                let Some(resp) = resp else {
                    if let Some(t) = &timing {
                        measured.telemetry.requests.finished(t, Duration::ZERO);
                    }
                    continue;
                };
                // A client that stops reading is closed after connections.max.idle.ms, as
                // Kafka does, rather than holding its responses forever.
                let ok = tokio::time::timeout(idle, async {
                    wr.write_all(&(resp.len() as u32).to_be_bytes()).await?;
                    // Record data goes from the cache to the socket: a part larger than
                    // the buffer is written directly, not copied into it; a range of a
                    // segment file after what is buffered, from the file.
                    for part in resp.parts() {
                        match part {
                            Piece::Bytes(b) => wr.write_all(b).await?,
                            Piece::File(f) => {
                                wr.flush().await?;
                                wr.get_mut().send_file(f).await?;
                                measured.telemetry.connections.sendfile_bytes.add(f.len);
                            }
                        }
                    }
                    if rx.is_empty() {
                        wr.flush().await?;
                    }
                    std::io::Result::Ok(())
                })
                .await;
                if !matches!(ok, Ok(Ok(()))) {
                    return;
                }
                if let Some(t) = &timing {
                    measured.telemetry.requests.finished(t, sending.elapsed());
                }
            }
            let _ = wr.flush().await;
        }
        .instrument(Span::current()),
    );
    let max_request = broker.settings.server.socket_request_max_bytes;
    let mut named = false;
    let mut frames = FrameReader::default();
    let throttle = Arc::new(Throttle::default());
    loop {
        // Over a client quota: read nothing more until the throttle time has passed (it
        // may be extended meanwhile, when the throttled response goes out).
        while let Some(until) = throttle.muted_until() {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
        if cancel.is_cancelled() {
            break;
        }
        let unauthenticated = !gate.authenticated();
        let limit = if unauthenticated {
            Limit {
                max: gate.max_frame(max_request),
                setting: "sasl.server.max.receive.size",
            }
        } else {
            Limit {
                max: max_request,
                setting: "socket.request.max.bytes",
            }
        };
        let (memory, memory_total) = if unauthenticated {
            (&broker.security.preauth_memory, crate::auth::PREAUTH_MEMORY)
        } else {
            (
                &broker.request_memory,
                broker.settings.server.request_memory_bytes(),
            )
        };
        let frame = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(auth_deadline.into()), if unauthenticated => {
                info!(%peer, listener = %security.name, "not authenticated within authentication.timeout.ms; connection closed");
                break;
            }
            _ = tokio::time::sleep_until((last_request + idle).into()) => {
                if in_flight.load(Ordering::Relaxed) == 0 {
                    debug!(%peer, listener = %security.name, "idle for connections.max.idle.ms; connection closed");
                    break;
                }
                // Requests in flight (a long poll): not idle; the frame read goes on.
                last_request = Instant::now();
                continue;
            }
            f = frames.next(&mut rd, limit, memory, memory_total) => f,
        };
        let (frame, permit) = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if is_disconnect(&e) => {
                debug!(%peer, error = %e, "client went away");
                break;
            }
            Err(e) => {
                warn!(%peer, error = %e, "closing connection");
                break;
            }
        };
        last_request = Instant::now();
        let received = last_request;
        in_flight.fetch_add(1, Ordering::Relaxed);
        let was_authenticated = gate.authenticated();
        match gate.check(&frame, &mut session.principal).await {
            Verdict::Pass => {
                if !named {
                    // The first request the connection may send names its client and
                    // (after authentication) its principal in the log lines that follow.
                    named = true;
                    let span = Span::current();
                    span.record("principal", tracing::field::display(&session.principal));
                    if let Some(id) = frames::client_id(&frame) {
                        span.record("client_id", id);
                    }
                }
            }
            Verdict::Answer(out) => {
                if !was_authenticated && gate.authenticated() {
                    broker
                        .telemetry
                        .connections
                        .successful_authentication
                        .get(&[&security.name])
                        .inc();
                    named = false;
                }
                if tx.send(ready(Some(out), permit)).await.is_err() {
                    break;
                }
                continue;
            }
            Verdict::Close(out, why) => {
                info!(%peer, listener = %security.name, principal = %session.principal, reason = %why, "closing connection");
                if let Some(out) = out {
                    let _ = tx.send(ready(Some(out), permit)).await;
                }
                break;
            }
            Verdict::Refuse(out, why) => {
                info!(%peer, listener = %security.name, reason = %why, "closing connection");
                failed_authentication(&broker, &security);
                // As Kafka: the answer to a failed login comes late, to slow guessing.
                let delay = Duration::from_millis(security.failed_login_delay_ms);
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
                if let Some(out) = out {
                    let _ = tx.send(ready(Some(out), permit)).await;
                }
                break;
            }
        }
        let api = frame
            .get(0..2)
            .map_or(-1, |k| i16::from_be_bytes([k[0], k[1]]));
        let span = broker.telemetry.request_span(api, received, &security.name);
        let trace = span.context().cloned();
        match handlers::dispatch(&broker, session.clone(), frame, &throttle, trace).await {
            Ok(fut) => {
                // The request's bytes count against queued.max.request.bytes until it is
                // answered.
                let fut: ResponseFuture = Box::pin(async move {
                    let resp = fut.await;
                    drop(permit);
                    resp
                });
                let fut: Reply = Box::pin(Measured::new(
                    fut,
                    Timing::new(api, received, Instant::now(), span),
                ));
                if tx.send(fut).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                warn!(%peer, error = %e, "closing connection: undecodable request");
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    debug!(%peer, "connection closed");
}

/// A response to write (`None`: nothing, for acks=0) and, for a request that was
/// dispatched, its timing.
type Reply =
    std::pin::Pin<Box<dyn std::future::Future<Output = (Option<Frame>, Option<Timing>)> + Send>>;

/// A response that is ready now; the request's memory is released once it is sent.
fn ready(out: Option<Bytes>, permit: OwnedSemaphorePermit) -> Reply {
    Box::pin(async move {
        drop(permit);
        (out.map(Frame::from), None)
    })
}

fn failed_authentication(broker: &Broker, security: &ListenerSecurity) {
    broker
        .telemetry
        .connections
        .failed_authentication
        .get(&[&security.name])
        .inc();
}

/// A client that closed or reset its connection: routine, not worth a warning.
fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}
