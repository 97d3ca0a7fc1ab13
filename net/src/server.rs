//! The accept loop and the life of one connection.
//!
//! Past 600 lines only with its tests, which drive real sockets through every
//! limit (idle, slow body, connection cap, HTTP/2 GOAWAY, drain, TLS).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::auth::Access;
use crate::body::TimeoutBody;
use crate::limits::Limits;
use crate::throttle::LogThrottle;
use crate::tls::Tls;

/// The protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (and 1.0): the query API, OTLP/HTTP, the agent's API.
    Http1,
    /// HTTP/2 with prior knowledge (h2c): OTLP/gRPC.
    Http2,
}

/// What connections are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serve,
    /// Finish the requests in flight, take no new ones.
    Drain,
    /// Close now.
    Close,
}

/// How long a connection told to close gracefully (idle, or draining) may take.
const GRACE: Duration = Duration::from_secs(5);
/// How often a connection checks whether it has been idle too long.
const IDLE_CHECK: Duration = Duration::from_secs(1);

static LIMIT_REACHED: LogThrottle = LogThrottle::new(Duration::from_secs(10));
static ACCEPT_FAILED: LogThrottle = LogThrottle::new(Duration::from_secs(10));

/// How one listener is served: its name in logs, its protocol, its limits,
/// who may use it, and TLS.
#[derive(Debug, Clone)]
pub struct Endpoint {
    name: &'static str,
    protocol: Protocol,
    limits: Limits,
    access: Access,
    tls: Option<Tls>,
}

impl Endpoint {
    /// A plaintext, open listener with default limits; `name` names it in log
    /// lines ("query API", "OTLP/HTTP", ...).
    pub fn new(name: &'static str, protocol: Protocol) -> Endpoint {
        Endpoint { name, protocol, limits: Limits::default(), access: Access::open(), tls: None }
    }

    /// Timeouts and the connection budget.
    pub fn limits(mut self, limits: Limits) -> Endpoint {
        self.limits = limits;
        self
    }

    /// Who may send requests: checked on each request head, before routing.
    pub fn access(mut self, access: Access) -> Endpoint {
        self.access = access;
        self
    }

    /// TLS on every connection (`None`: plaintext).
    pub fn tls(mut self, tls: Option<Tls>) -> Endpoint {
        self.tls = tls;
        self
    }
}

/// Serves `router` on `listener` as `endpoint` says until `shutdown`
/// resolves, then drains.
///
/// # Errors
/// None today: accept errors (out of file descriptors, a client that reset before it
/// was accepted) and failed TLS handshakes are logged and the loop goes on.
pub async fn serve(
    listener: TcpListener,
    endpoint: Endpoint,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let Endpoint { name, protocol, limits, access, tls } = endpoint;
    let access = Arc::new(access);
    let (phase_tx, phase_rx) = watch::channel(Phase::Serve);
    let open = Arc::new(AtomicUsize::new(0));
    let (closed_tx, mut closed_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                on_accept_error(name, &e).await;
                continue;
            }
        };
        let Some(permit) = limits.connections.try_admit() else {
            if let Some(suppressed) = LIMIT_REACHED.hit() {
                tracing::warn!(
                    listener = name,
                    max = limits.connections.max(),
                    refused_since_last_line = suppressed + 1,
                    "connection limit reached: closing new connections until some close \
                     (raise the open-files limit, ulimit -n, to allow more)"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            protocol,
            router: router.clone(),
            limits: limits.clone(),
            access: access.clone(),
            peer,
            activity: Arc::new(Activity::new()),
        };
        let phase = phase_rx.clone();
        let open = open.clone();
        let closed = closed_tx.clone();
        let tls = tls.clone();
        open.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            match tls {
                None => connection.run(stream, phase).await,
                // The handshake gets the time a request head gets.
                Some(tls) => {
                    match tokio::time::timeout(connection.limits.idle_timeout, tls.acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection.run(stream, phase).await,
                        Ok(Err(e)) => {
                            tracing::debug!(listener = name, peer = %connection.peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(listener = name, peer = %connection.peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
            open.fetch_sub(1, Ordering::AcqRel);
            let _ = closed.send(());
        });
    }
    drop(listener);
    let _ = phase_tx.send(Phase::Drain);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while open.load(Ordering::Acquire) > 0 {
            if closed_rx.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listener = name,
            open = open.load(Ordering::Acquire),
            "connections still busy after {:?}; closing them",
            limits.drain_timeout
        );
        let _ = phase_tx.send(Phase::Close);
    }
    Ok(())
}

async fn on_accept_error(name: &'static str, error: &io::Error) {
    let out_of_files = matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM));
    if out_of_files {
        if let Some(suppressed) = ACCEPT_FAILED.hit() {
            tracing::warn!(listener = name, error = %error, failed_since_last_line = suppressed + 1,
                "cannot accept connections: out of file descriptors or memory");
        }
        // The pending connection stays in the backlog; retrying at once would spin.
        tokio::time::sleep(Duration::from_millis(50)).await;
    } else {
        tracing::debug!(listener = name, error = %error, "accept failed");
    }
}

/// When a connection last finished a request, and how many it has in flight.
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    last_done_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity { started: Instant::now(), in_flight: AtomicUsize::new(0), last_done_ms: AtomicU64::new(0) }
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_done_ms.load(Ordering::Acquire));
        Some(self.started.elapsed().saturating_sub(last))
    }
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.started.elapsed().as_millis() as u64;
        self.0.last_done_ms.store(now, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The per-connection service: request bodies get their deadline, requests are counted.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    protocol: Protocol,
    access: Arc<Access>,
    body_timeout: Duration,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<axum::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::begin(&self.activity);
        if let Err(denied) = self.access.check(request.uri().path(), request.headers()) {
            let response = denied.into_response(self.protocol);
            return Box::pin(async move {
                drop(in_flight);
                Ok(response)
            });
        }
        let request = request.map(|body| axum::body::Body::new(TimeoutBody::new(body, self.body_timeout)));
        let response = self.router.clone().oneshot(request);
        Box::pin(async move {
            let response = response.await;
            drop(in_flight);
            response
        })
    }
}

struct Connection {
    protocol: Protocol,
    router: Router,
    limits: Limits,
    access: Arc<Access>,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl Connection {
    async fn run<I>(self, stream: I, phase: watch::Receiver<Phase>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(stream);
        let service = ConnectionService {
            router: self.router.clone(),
            protocol: self.protocol,
            access: self.access.clone(),
            body_timeout: self.limits.body_timeout,
            activity: self.activity.clone(),
        };
        match self.protocol {
            Protocol::Http1 => {
                // The head timer also runs while a keep-alive connection waits for its
                // next request, so it is the idle timeout too.
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(self.limits.idle_timeout)
                    .keep_alive(true)
                    .serve_connection(io, service)
                    .with_upgrades();
                self.drive(conn, phase).await;
            }
            Protocol::Http2 => {
                let conn = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    // Pings find peers that vanished without a FIN.
                    .keep_alive_interval(Some(Duration::from_secs(30)))
                    .keep_alive_timeout(Duration::from_secs(20))
                    .serve_connection(io, service);
                self.drive(conn, phase).await;
            }
        }
    }

    /// Runs the connection until it ends, is idle too long, or is told to stop.
    async fn drive<C: GracefulConnection>(&self, conn: C, mut phase: watch::Receiver<Phase>) {
        tokio::pin!(conn);
        let mut check = tokio::time::interval(IDLE_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing_since: Option<Instant> = None;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                changed = phase.changed() => {
                    let now = if changed.is_ok() { *phase.borrow_and_update() } else { Phase::Close };
                    match now {
                        Phase::Serve => {}
                        Phase::Drain => {
                            if closing_since.is_none() {
                                conn.as_mut().close_gracefully();
                                closing_since = Some(Instant::now());
                            }
                        }
                        Phase::Close => return,
                    }
                }
                _ = check.tick() => {
                    match closing_since {
                        Some(since) if since.elapsed() > GRACE => {
                            tracing::debug!(peer = %self.peer, "connection did not close in time; dropping it");
                            return;
                        }
                        Some(_) => {}
                        None => {
                            // HTTP/1 enforces idleness with its head timer; HTTP/2 has no
                            // such timer, so an idle connection is sent GOAWAY from here.
                            let idle = self.activity.idle_for().is_some_and(|d| d > self.limits.idle_timeout);
                            if self.protocol == Protocol::Http2 && idle {
                                tracing::debug!(peer = %self.peer, "closing an idle HTTP/2 connection");
                                conn.as_mut().close_gracefully();
                                closing_since = Some(Instant::now());
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A hyper connection future that can be asked to finish gracefully.
trait GracefulConnection: Future<Output = Result<(), hyper::Error>> {
    fn close_gracefully(self: Pin<&mut Self>);
}

impl<I, S> GracefulConnection for http1::UpgradeableConnection<TokioIo<I>, S>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = axum::body::Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn close_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> GracefulConnection for http2::Connection<TokioIo<I>, S, TokioExecutor>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = axum::body::Body>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn close_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BodyTimedOut, ConnectionLimit};
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Echoes the body's length; a body that timed out is 408, as the receivers answer.
    async fn count(body: Body) -> (StatusCode, String) {
        match body.collect().await {
            Ok(b) => (StatusCode::OK, b.to_bytes().len().to_string()),
            Err(e) if BodyTimedOut::find(&e).is_some() => (StatusCode::REQUEST_TIMEOUT, e.to_string()),
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
        }
    }

    struct Running {
        addr: SocketAddr,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<io::Result<()>>,
    }

    async fn start(protocol: Protocol, limits: Limits) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/count", post(count));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let endpoint = Endpoint::new("test", protocol).limits(limits);
        let task = tokio::spawn(serve(listener, endpoint, router, async {
            let _ = stopped.await;
        }));
        Running { addr, stop, task }
    }

    fn quick_limits(connections: usize) -> Limits {
        Limits {
            idle_timeout: Duration::from_millis(300),
            body_timeout: Duration::from_millis(300),
            drain_timeout: Duration::from_secs(2),
            connections: ConnectionLimit::new(connections),
        }
    }

    /// Reads until the peer closes; the deadline only keeps a broken test from hanging.
    async fn read_until_closed(stream: &mut TcpStream) -> String {
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
            .await
            .expect("the server never closed the connection")
            .ok();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let server = start(Protocol::Http1, quick_limits(8)).await;
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        read_until_closed(&mut silent).await;

        // Keep-alive: one request answered, then the idle connection is closed too.
        let mut keep_alive = TcpStream::connect(server.addr).await.unwrap();
        keep_alive.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").await.unwrap();
        let answer = read_until_closed(&mut keep_alive).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with('3'), "{answer}");
        server.stop.send(()).unwrap();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_slow_body_is_answered_408() {
        let server = start(Protocol::Http1, quick_limits(8)).await;
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly a little").await.unwrap();
        let answer = read_until_closed(&mut slow).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within"), "{answer}");
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_and_the_rest_served() {
        let server = start(Protocol::Http1, Limits { idle_timeout: Duration::from_secs(30), ..quick_limits(2) }).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(TcpStream::connect(server.addr).await.unwrap());
        }
        // Both slots are taken once the server has accepted them: poll until it refuses.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut extra = TcpStream::connect(server.addr).await.unwrap();
            let _ = extra.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await;
            let answer = read_until_closed(&mut extra).await;
            if answer.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "the limit never applied");
        }
        // A held connection is still served.
        held[0]
            .write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab")
            .await
            .unwrap();
        let answer = read_until_closed(&mut held[0]).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn an_idle_http2_connection_gets_goaway_and_is_closed() {
        let server =
            start(Protocol::Http2, Limits { idle_timeout: Duration::from_millis(200), ..quick_limits(8) }).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        // The client preface and an empty SETTINGS frame, then silence.
        stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
        let mut seen = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut seen))
            .await
            .expect("an idle HTTP/2 connection stayed open")
            .ok();
        // A GOAWAY frame (type 7) was sent before the close.
        let goaway = seen.windows(4).any(|w| w[3] == 0x07 && w[0] == 0 && w[1] == 0);
        assert!(goaway, "no GOAWAY in {seen:?}");
    }

    #[tokio::test]
    async fn shutdown_drains_then_returns_while_a_client_stays_connected() {
        let server = start(Protocol::Http1, Limits { idle_timeout: Duration::from_secs(60), ..quick_limits(8) }).await;
        let _connected = TcpStream::connect(server.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server.task).await.expect("drain hangs").unwrap().unwrap();
    }

    /// A client TLS connection to `addr` trusting `ca_pem`, with a client certificate if given.
    async fn tls_connect(
        addr: SocketAddr,
        ca_pem: &str,
        client: Option<(&str, &str)>,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await?;
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await
    }

    #[tokio::test]
    async fn tls_with_client_certificates_serves_only_clients_that_present_one() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::tls::tests::test_pki(dir.path());
        let tls = Tls::load(&pki.files, Protocol::Http1).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/count", post(count));
        let endpoint = Endpoint::new("test", Protocol::Http1).limits(quick_limits(8)).tls(Some(tls));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, endpoint, router, async {
            let _ = stopped.await;
        }));

        let mut ok = tls_connect(addr, &pki.ca_pem, Some((&pki.client_cert_pem, &pki.client_key_pem))).await.unwrap();
        ok.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = ok.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with('4'), "{answer}");

        // Without a client certificate the server ends the handshake (TLS 1.3
        // reports it on the first read).
        let refused = match tls_connect(addr, &pki.ca_pem, None).await {
            Err(_) => true,
            Ok(mut s) => {
                let _ = s.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await;
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).await.is_err() || buf.is_empty()
            }
        };
        assert!(refused, "a client without a certificate was served");
        // Plaintext on a TLS port is not served either.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        assert!(!read_until_closed(&mut plain).await.contains("HTTP/1.1 200"));
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
