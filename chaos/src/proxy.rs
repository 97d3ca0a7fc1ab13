//! A proxy: one listener, one upstream, connections piped through the
//! proxy's toxics. Toxics reach open connections through a watch channel, so
//! the API never waits on traffic and every change applies at once.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use opentelemetry::KeyValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::faults::{Fault, FaultSink};
use crate::h1::{Event, Framer, RequestHead, ResponseEvent, Responses};
use crate::http::Protocol;
use crate::model::{ms, Kind, Stream, Toxic};
use opentelemetry::trace::SpanContext;

/// The toxics of a proxy in the order they were added.
#[derive(Debug, Default)]
pub struct Chain {
    pub toxics: Vec<Arc<Toxic>>,
}

/// Bytes through a proxy, per direction: read from the source, written to the sink.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub upstream_received: AtomicU64,
    pub upstream_sent: AtomicU64,
    pub downstream_received: AtomicU64,
    pub downstream_sent: AtomicU64,
}

impl ProxyStats {
    fn counters(&self, dir: Stream) -> (&AtomicU64, &AtomicU64) {
        match dir {
            Stream::Upstream => (&self.upstream_received, &self.upstream_sent),
            Stream::Downstream => (&self.downstream_received, &self.downstream_sent),
        }
    }
}

/// What a proxy's connections share.
pub struct ProxyShared {
    pub name: String,
    pub chain: watch::Receiver<Arc<Chain>>,
    pub stats: Arc<ProxyStats>,
    pub faults: Arc<FaultSink>,
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Stops a proxy's listener and connections; await it to know the port is free.
pub struct Stopping(Option<Running>);

impl Stopping {
    pub async fn wait(self) {
        if let Some(r) = self.0 {
            r.cancel.cancel();
            let _ = r.task.await;
        }
    }
}

pub struct Proxy {
    pub name: String,
    /// The configured listen address until started, then the bound one.
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<Arc<Toxic>>,
    pub stats: Arc<ProxyStats>,
    chain_tx: watch::Sender<Arc<Chain>>,
    faults: Arc<FaultSink>,
    /// The agent's connection tasks, awaited on shutdown so their spans get out.
    tasks: TaskTracker,
    running: Option<Running>,
}

#[derive(Debug)]
pub enum StartError {
    /// The address is taken (409).
    InUse(String),
    /// The address cannot be parsed or bound (400).
    Bad(String),
}

impl Proxy {
    pub fn new(name: String, listen: String, upstream: String, faults: Arc<FaultSink>, tasks: TaskTracker) -> Proxy {
        let (chain_tx, _) = watch::channel(Arc::new(Chain::default()));
        Proxy {
            name,
            listen,
            upstream,
            enabled: false,
            toxics: Vec::new(),
            stats: Arc::new(ProxyStats::default()),
            chain_tx,
            faults,
            tasks,
            running: None,
        }
    }

    /// Binds the listener now (so the answer carries the real port) and starts accepting.
    pub fn start(&mut self) -> Result<(), StartError> {
        if self.running.is_some() {
            self.enabled = true;
            return Ok(());
        }
        let addr = resolve_listen(&self.listen).map_err(StartError::Bad)?;
        let std_listener = bind(addr).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                StartError::InUse(format!("listen address already in use: {addr}"))
            } else {
                StartError::Bad(format!("cannot listen on {addr}: {e}"))
            }
        })?;
        std_listener.set_nonblocking(true).map_err(|e| StartError::Bad(e.to_string()))?;
        let listener = TcpListener::from_std(std_listener).map_err(|e| StartError::Bad(e.to_string()))?;
        self.listen = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| addr.to_string());
        let cancel = CancellationToken::new();
        let shared = Arc::new(ProxyShared {
            name: self.name.clone(),
            chain: self.chain_tx.subscribe(),
            stats: self.stats.clone(),
            faults: self.faults.clone(),
        });
        let task =
            tokio::spawn(accept_loop(listener, shared, self.upstream.clone(), cancel.clone(), self.tasks.clone()));
        self.running = Some(Running { cancel, task });
        self.enabled = true;
        tracing::info!(proxy = %self.name, listen = %self.listen, upstream = %self.upstream, "proxy started");
        Ok(())
    }

    /// Closes the listener and every connection. Await the result before reusing the port.
    pub fn stop(&mut self) -> Stopping {
        self.enabled = false;
        let running = self.running.take();
        if let Some(r) = &running {
            r.cancel.cancel();
            tracing::info!(proxy = %self.name, "proxy stopped");
        }
        Stopping(running)
    }

    pub fn toxic(&self, name: &str) -> Option<&Arc<Toxic>> {
        self.toxics.iter().find(|t| t.name == name)
    }

    pub fn set_toxics(&mut self, toxics: Vec<Arc<Toxic>>) {
        self.toxics = toxics;
        self.publish();
    }

    fn publish(&self) {
        self.chain_tx.send_replace(Arc::new(Chain { toxics: self.toxics.clone() }));
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": self.toxics_json(),
        })
    }

    /// Upstream toxics first, then downstream, each in the order added (as Toxiproxy lists them).
    pub fn toxics_json(&self) -> serde_json::Value {
        let by = |s: Stream| self.toxics.iter().filter(move |t| t.stream == s).map(|t| t.to_json());
        serde_json::Value::Array(by(Stream::Upstream).chain(by(Stream::Downstream)).collect())
    }
}

/// Go-style listen addresses: `host:port`, `:port` and empty (all interfaces,
/// IPv6 and IPv4; port 0 when empty). A host name resolves to its IPv4
/// address first, as Go's resolver prefers.
pub fn resolve_listen(listen: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let listen = listen.trim();
    let spec = if listen.is_empty() {
        "[::]:0".to_string()
    } else if let Some(port) = listen.strip_prefix(':') {
        format!("[::]:{port}")
    } else {
        listen.to_string()
    };
    let addrs: Vec<SocketAddr> =
        spec.to_socket_addrs().map_err(|e| format!("invalid listen address {listen:?}: {e}"))?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("invalid listen address {listen:?}: resolves to nothing"))
}

/// Binds; on a host without IPv6, "all interfaces" falls back to IPv4's.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    match std::net::TcpListener::bind(addr) {
        Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() && e.kind() != std::io::ErrorKind::AddrInUse => {
            std::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], addr.port())))
        }
        r => r,
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<ProxyShared>,
    upstream: String,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    let conn = Arc::new(Conn::new(shared.clone(), peer, upstream.clone(), cancel.child_token()));
                    tasks.spawn(handle(client, conn));
                }
                Err(e) => {
                    tracing::warn!(proxy = %shared.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// A toxic that hit a connection, for its span.
struct Applied {
    toxic: Arc<Toxic>,
    start: SystemTime,
    end: Option<SystemTime>,
    error: Option<String>,
}

/// One client connection and what its two directions share.
pub struct Conn {
    pub proxy: Arc<ProxyShared>,
    pub peer: SocketAddr,
    pub upstream: String,
    pub cancel: CancellationToken,
    reset: AtomicBool,
    /// Set when the connection speaks HTTP: spans then go per request.
    pub http: AtomicBool,
    applied: Mutex<Vec<Applied>>,
    /// HTTP/1 requests in order, each answered by the upstream or by the
    /// agent; their fault spans end when their response starts back.
    exchanges: Mutex<VecDeque<Exchange>>,
    /// The server answered 101 on this HTTP/1 connection: bytes are a tunnel now.
    upgraded: AtomicBool,
}

/// A request hit by a fault, for its span.
pub(crate) struct RequestFault<'a> {
    pub toxic: &'a Toxic,
    pub parent: Option<SpanContext>,
    pub start: SystemTime,
    pub error: Option<String>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: Option<u16>,
}

struct PendingSpan {
    toxic: Arc<Toxic>,
    parent: Option<SpanContext>,
    start: SystemTime,
    method: String,
    path: String,
}

impl Conn {
    fn new(proxy: Arc<ProxyShared>, peer: SocketAddr, upstream: String, cancel: CancellationToken) -> Conn {
        Conn {
            proxy,
            peer,
            upstream,
            cancel,
            reset: AtomicBool::new(false),
            http: AtomicBool::new(false),
            applied: Mutex::new(Vec::new()),
            exchanges: Mutex::new(VecDeque::new()),
            upgraded: AtomicBool::new(false),
        }
    }

    fn applied_start(&self, toxic: &Arc<Toxic>) {
        self.applied.lock().unwrap().push(Applied {
            toxic: toxic.clone(),
            start: SystemTime::now(),
            end: None,
            error: None,
        });
    }

    /// The toxic left this connection: its span goes out now (plain TCP), not at close.
    fn applied_end(&self, id: u64) {
        let ended = {
            let mut applied = self.applied.lock().unwrap();
            applied.iter().position(|a| a.toxic.id == id && a.end.is_none()).map(|i| applied.remove(i))
        };
        if let Some(mut a) = ended {
            a.end = Some(SystemTime::now());
            if !self.http.load(Ordering::Relaxed) {
                self.export(a);
            }
        }
    }

    fn applied_error(&self, id: u64, error: String) {
        let mut applied = self.applied.lock().unwrap();
        if let Some(a) = applied.iter_mut().find(|a| a.toxic.id == id) {
            a.error.get_or_insert(error);
        }
    }

    /// The TCP toxics hitting this connection now (for per-request spans).
    pub fn active_toxics(&self) -> Vec<Arc<Toxic>> {
        self.applied.lock().unwrap().iter().filter(|a| a.end.is_none()).map(|a| a.toxic.clone()).collect()
    }

    /// A fault on one HTTP request: a span in the caller's trace.
    pub(crate) fn record_request_fault(&self, r: RequestFault<'_>, extra: Vec<KeyValue>) {
        let mut attributes = vec![
            KeyValue::new("http.request.method", r.method.to_string()),
            KeyValue::new("url.path", r.path.to_string()),
            KeyValue::new("client.address", self.peer.ip().to_string()),
            KeyValue::new("server.address", self.upstream.clone()),
        ];
        if let Some(s) = r.status {
            attributes.push(KeyValue::new("http.response.status_code", s as i64));
        }
        attributes.extend(extra);
        self.proxy.faults.record(Fault {
            proxy: &self.proxy.name,
            toxic: r.toxic,
            parent: r.parent,
            start: r.start,
            end: SystemTime::now(),
            error: r.error,
            attributes,
        });
    }

    fn finish(&self, p: PendingSpan) {
        let error = p
            .toxic
            .kind
            .is_abort()
            .then(|| format!("{} toxic {} on the connection", p.toxic.kind.type_name(), p.toxic.name));
        let request = RequestFault {
            toxic: &p.toxic,
            parent: p.parent,
            start: p.start,
            error,
            method: &p.method,
            path: &p.path,
            status: None,
        };
        self.record_request_fault(request, vec![]);
    }

    /// One span per toxic still on this connection when it ends (plain TCP only).
    fn export_spans(&self) {
        let exchanges: Vec<Exchange> = self.exchanges.lock().unwrap().drain(..).collect();
        for e in exchanges {
            let (Exchange::Upstream { spans, .. } | Exchange::Answer { spans, .. }) = e;
            spans.into_iter().for_each(|p| self.finish(p));
        }
        let applied: Vec<Applied> = self.applied.lock().unwrap().drain(..).collect();
        if !self.http.load(Ordering::Relaxed) {
            applied.into_iter().for_each(|a| self.export(a));
        }
    }

    fn export(&self, a: Applied) {
        self.proxy.faults.record(Fault {
            proxy: &self.proxy.name,
            toxic: &a.toxic,
            parent: None,
            start: a.start,
            end: a.end.unwrap_or_else(SystemTime::now),
            error: a.error,
            attributes: vec![
                KeyValue::new("client.address", self.peer.ip().to_string()),
                KeyValue::new("client.port", self.peer.port() as i64),
                KeyValue::new("server.address", self.upstream.clone()),
            ],
        });
    }
}

async fn handle(client: TcpStream, conn: Arc<Conn>) {
    let address = dial_address(&conn.upstream);
    let upstream = tokio::select! {
        _ = conn.cancel.cancelled() => return,
        r = TcpStream::connect(address.as_ref()) => r,
    };
    let upstream = match upstream {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(proxy = %conn.proxy.name, upstream = %conn.upstream, error = %e, "upstream connect failed");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let protocol = crate::http::sniff(&client, &upstream, &conn.cancel).await;
    if protocol == Protocol::H2c {
        conn.http.store(true, Ordering::Relaxed);
        crate::http::serve_h2(client, upstream, conn).await;
    } else {
        let http1 = protocol == Protocol::Http1;
        conn.http.store(http1, Ordering::Relaxed);
        let (mut ur, mut uw) = upstream.into_split();
        let reset = pipe(client, &mut ur, &mut uw, conn, http1).await;
        if reset {
            if let Ok(s) = ur.reunite(uw) {
                zero_linger(s);
            }
        }
    }
}

/// Where to connect for an upstream: `:port` means this host, as in Go.
pub(crate) fn dial_address(upstream: &str) -> std::borrow::Cow<'_, str> {
    match upstream.strip_prefix(':') {
        Some(port) => format!("localhost:{port}").into(),
        None => upstream.into(),
    }
}

/// Closing with a zero linger sends RST instead of FIN.
fn zero_linger(s: TcpStream) {
    #[allow(deprecated)]
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Pipes a client socket to `inner` (the upstream socket, or the HTTP/2 layer)
/// through the TCP toxics, both directions, until both end or the connection
/// dies. With `http1`, client bytes are framed into requests for the HTTP
/// toxics. Returns whether a reset_peer fired (the caller resets its side too).
pub(crate) async fn pipe<R, W>(
    client: TcpStream,
    inner_r: &mut R,
    inner_w: &mut W,
    conn: Arc<Conn>,
    http1: bool,
) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = client.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut requests =
        http1.then(|| Requests { framer: Framer::default(), wake: tx, forward: Forward::Now, closing: false });
    let mut answers = Answers { wake: rx, responses: Responses::default(), close: false };
    let answers = if http1 { Some(&mut answers) } else { None };
    tokio::join!(
        pump(Stream::Upstream, &mut cr, inner_w, &conn, requests.as_mut(), None),
        pump(Stream::Downstream, inner_r, &mut cw, &conn, None, answers),
    );
    let reset = conn.reset.load(Ordering::Relaxed);
    if reset {
        if let Ok(s) = cr.reunite(cw) {
            zero_linger(s);
        }
    }
    conn.export_spans();
    reset
}

/// One HTTP/1 request's turn on the connection.
enum Exchange {
    /// Forwarded: the upstream answers it.
    Upstream { head_request: bool, connect: bool, spans: Vec<PendingSpan> },
    /// Aborted: the agent answers it with `bytes` (closing after, if `close`).
    Answer { bytes: Bytes, close: bool, not_before: Option<Instant>, spans: Vec<PendingSpan> },
}

/// The server-to-client side of an HTTP/1 connection: responses delimited as
/// they pass, so the agent's answers go out in their request's turn (also
/// behind pipelined requests) and each request's fault spans end on time.
pub(crate) struct Answers {
    /// Woken when an answer is queued.
    wake: mpsc::UnboundedReceiver<()>,
    responses: Responses,
    /// An answer that closes the connection went out.
    close: bool,
}

impl Answers {
    /// Splits `data` from the server into what goes to the client, in order,
    /// with the agent's answers placed between responses.
    fn route(&mut self, mut data: Bytes, conn: &Conn, out: &mut Vec<(Bytes, Option<Instant>)>) {
        let mut exchanges = conn.exchanges.lock().unwrap();
        loop {
            while self.responses.idle() && matches!(exchanges.front(), Some(Exchange::Answer { .. })) {
                let Some(Exchange::Answer { bytes, close, not_before, spans }) = exchanges.pop_front() else {
                    unreachable!("front is an answer")
                };
                spans.into_iter().for_each(|p| conn.finish(p));
                out.push((bytes, not_before));
                self.close |= close;
            }
            if data.is_empty() {
                return;
            }
            let expected = match exchanges.front() {
                Some(Exchange::Upstream { head_request, connect, .. }) if !self.responses.tunnel() => {
                    Some((*head_request, *connect))
                }
                _ => None,
            };
            let Some((head_request, connect)) = expected else {
                // A tunnel, or bytes no request asked for: they pass as they are.
                out.push((data, None));
                return;
            };
            let (n, event) = self.responses.scan(&data, head_request);
            let piece = data.split_to(n);
            if !piece.is_empty() {
                out.push((piece, None));
            }
            match event {
                Some(ResponseEvent::Head { status, ended }) => {
                    if (100..200).contains(&status) && status != 101 {
                        continue;
                    }
                    // The final head: the request's fault spans end here.
                    if let Some(Exchange::Upstream { spans, .. }) = exchanges.front_mut() {
                        spans.drain(..).for_each(|p| conn.finish(p));
                    }
                    if status == 101 || (connect && (200..300).contains(&status)) {
                        conn.upgraded.store(true, Ordering::Relaxed);
                        self.responses.tunnel_now();
                        exchanges.pop_front();
                    } else if ended {
                        exchanges.pop_front();
                    }
                }
                Some(ResponseEvent::End) => {
                    exchanges.pop_front();
                }
                None => {}
            }
        }
    }

    /// Woken by a new answer: queues the answers whose turn has come; true
    /// once one of them closes the connection.
    fn queue_due(
        &mut self,
        conn: &Conn,
        queue: &mut VecDeque<Piece>,
        queued: &mut usize,
        last_due: &mut Instant,
    ) -> bool {
        let mut pieces = Vec::new();
        self.route(Bytes::new(), conn, &mut pieces);
        for (data, not_before) in pieces {
            push(queue, queued, last_due, not_before.unwrap_or_else(Instant::now), data);
        }
        self.close
    }

    /// The server closed: a response running until the close ended, and the
    /// answers queued behind it go out.
    fn closed(&mut self, conn: &Conn, out: &mut Vec<(Bytes, Option<Instant>)>) {
        let mut exchanges = conn.exchanges.lock().unwrap();
        if self.responses.closed() && matches!(exchanges.front(), Some(Exchange::Upstream { .. })) {
            exchanges.pop_front();
        }
        while let Some(Exchange::Answer { .. }) = exchanges.front() {
            let Some(Exchange::Answer { bytes, not_before, spans, .. }) = exchanges.pop_front() else { unreachable!() };
            spans.into_iter().for_each(|p| conn.finish(p));
            out.push((bytes, not_before));
        }
    }
}

#[derive(Clone, Copy)]
enum Forward {
    Now,
    NotBefore(Instant),
    Drop,
}

/// The client-to-server side of an HTTP/1 connection: requests framed, and
/// the HTTP toxics' verdict on each.
pub(crate) struct Requests {
    framer: Framer,
    wake: mpsc::UnboundedSender<()>,
    /// What happens to the current request's bytes.
    forward: Forward,
    /// The connection is being closed after an answer: drop whatever comes.
    closing: bool,
}

impl Requests {
    /// Splits `data` into what to forward and when.
    fn frame(&mut self, data: Bytes, conn: &Conn, out: &mut Vec<(Bytes, Option<Instant>)>) {
        let mut events = Vec::new();
        if conn.upgraded.load(Ordering::Relaxed) && !self.framer.tunnel() {
            self.framer.tunnel_now(&mut events);
            // A tunnel is plain TCP again: TCP toxics get per-connection spans.
            conn.http.store(false, Ordering::Relaxed);
        }
        self.framer.feed(data, &mut events);
        for event in events {
            if self.closing {
                continue;
            }
            let bytes = match event {
                Event::Request(head, raw) => {
                    self.forward = self.decide(&head, conn);
                    raw
                }
                Event::Body(bytes) => bytes,
                Event::Opaque(bytes) if matches!(self.forward, Forward::Drop) => {
                    // Framing ended inside an aborted request: nothing after it
                    // can be placed, so the connection ends after the answer.
                    drop(bytes);
                    self.closing = true;
                    let answer =
                        Exchange::Answer { bytes: Bytes::new(), close: true, not_before: None, spans: Vec::new() };
                    conn.exchanges.lock().unwrap().push_back(answer);
                    let _ = self.wake.send(());
                    continue;
                }
                Event::Opaque(bytes) => {
                    out.push((bytes, None));
                    continue;
                }
            };
            match self.forward {
                Forward::Now => out.push((bytes, None)),
                Forward::NotBefore(t) => out.push((bytes, Some(t))),
                Forward::Drop => {}
            }
        }
    }

    /// Applies the HTTP toxics to one request, in the order they were added.
    fn decide(&mut self, head: &RequestHead, conn: &Conn) -> Forward {
        let start = SystemTime::now();
        let parent = crate::faults::parent_from_headers(&head.headers);
        let chain = conn.proxy.chain.borrow().clone();
        let mut delay = Duration::ZERO;
        let mut faults = Vec::new();
        for t in &chain.toxics {
            match &t.kind {
                Kind::HttpDelay { delay: d, matcher }
                    if matcher.matches(&head.method, &head.path, &head.headers) && t.roll() =>
                {
                    delay += ms(*d);
                    faults.push(t.clone());
                }
                Kind::HttpAbort { status, matcher, .. }
                    if matcher.matches(&head.method, &head.path, &head.headers) && t.roll() =>
                {
                    // A client waiting for 100 Continue may or may not send the body, and
                    // an aborted upgrade leaves nothing to frame: close after those.
                    let close = head.close || head.expect_continue || head.upgrade;
                    let head_request = head.method == "HEAD";
                    let bytes = crate::h1::abort_response(*status, &t.name, &conn.proxy.name, close, head_request);
                    let not_before = (!delay.is_zero()).then(|| Instant::now() + delay);
                    self.closing = close;
                    // Delays ahead of the abort end with its answer.
                    let spans = pending_spans(faults, &parent, start, head);
                    conn.exchanges.lock().unwrap().push_back(Exchange::Answer { bytes, close, not_before, spans });
                    let _ = self.wake.send(());
                    let error = format!("request aborted with {status} by http_abort toxic {}", t.name);
                    let request = RequestFault {
                        toxic: t,
                        parent: parent.clone(),
                        start,
                        error: Some(error),
                        method: &head.method,
                        path: &head.path,
                        status: Some(*status),
                    };
                    conn.record_request_fault(request, vec![]);
                    return Forward::Drop;
                }
                _ => {}
            }
        }
        faults.extend(conn.active_toxics());
        let spans = pending_spans(faults, &parent, start, head);
        let (head_request, connect) = (head.method == "HEAD", head.method == "CONNECT");
        conn.exchanges.lock().unwrap().push_back(Exchange::Upstream { head_request, connect, spans });
        if delay.is_zero() {
            Forward::Now
        } else {
            Forward::NotBefore(Instant::now() + delay)
        }
    }
}

impl Requests {
    /// At the client's EOF: an unfinished head goes through as it is.
    fn take_pending(&mut self) -> Bytes {
        if self.closing {
            return Bytes::new();
        }
        self.framer.take_pending()
    }
}

/// Spans for the faults on one request, ended when its response starts back.
fn pending_spans(
    faults: Vec<Arc<Toxic>>,
    parent: &Option<SpanContext>,
    start: SystemTime,
    head: &RequestHead,
) -> Vec<PendingSpan> {
    faults
        .into_iter()
        .map(|toxic| PendingSpan {
            toxic,
            parent: parent.clone(),
            start,
            method: head.method.clone(),
            path: head.path.clone(),
        })
        .collect()
}

async fn next_wake(answers: &mut Option<&mut Answers>) -> Option<()> {
    match answers {
        Some(a) => a.wake.recv().await,
        None => std::future::pending().await,
    }
}

/// Most data a direction holds back (latency, bandwidth) before it stops reading.
const MAX_QUEUED: usize = 4 << 20;
/// Read buffer per direction: small for the many quiet connections, grown
/// (doubling) up to the large size while reads keep filling it, which halves
/// the syscalls of a bulk stream.
const READ_BUF: usize = 16 << 10;
const READ_BUF_MAX: usize = 256 << 10;

struct Piece {
    due: Instant,
    /// Never before this, even when the toxics that delayed it go (an http_delay's hold).
    floor: Instant,
    data: Bytes,
}

/// What one direction of one connection does to its bytes, derived from the
/// toxics that apply to it (toxicity rolled once per toxic per connection).
#[derive(Default)]
struct Effects {
    active: Vec<Arc<Toxic>>,
    latency: Vec<(i64, i64)>,
    slicer: Option<(i64, i64, i64)>,
    bandwidth: Option<i64>,
    timeout: Option<Arc<Toxic>>,
    reset: Option<Arc<Toxic>>,
    limit: Option<Arc<Toxic>>,
    slow_close: i64,
}

impl Effects {
    fn delays(&self) -> bool {
        !self.latency.is_empty() || self.slicer.is_some() || self.bandwidth.is_some()
    }
}

fn effects(active: Vec<Arc<Toxic>>) -> Effects {
    let mut e = Effects::default();
    for t in &active {
        match &t.kind {
            Kind::Latency { latency, jitter } => e.latency.push((*latency, *jitter)),
            Kind::Slicer { average_size, size_variation, delay } => {
                e.slicer.get_or_insert((*average_size, *size_variation, *delay));
            }
            Kind::Bandwidth { rate } if *rate > 0 => {
                e.bandwidth = Some(e.bandwidth.map_or(*rate, |r| r.min(*rate)));
            }
            Kind::Bandwidth { .. } => {}
            Kind::Timeout { .. } => {
                e.timeout.get_or_insert_with(|| t.clone());
            }
            Kind::ResetPeer { .. } => {
                e.reset.get_or_insert_with(|| t.clone());
            }
            Kind::LimitData { bytes } => {
                let tighter = match &e.limit {
                    Some(cur) => matches!(cur.kind, Kind::LimitData { bytes: b } if *bytes < b),
                    None => true,
                };
                if tighter {
                    e.limit = Some(t.clone());
                }
            }
            Kind::SlowClose { delay } => e.slow_close += *delay,
            Kind::HttpAbort { .. } | Kind::HttpDelay { .. } | Kind::Process { .. } => {}
        }
    }
    e.active = active;
    e
}

/// One direction: read from `src`, apply the toxics, write to `dst`. On an
/// HTTP/1 connection the upstream direction frames requests (`requests`) and
/// the downstream one delimits responses and places the agent's answers (`answers`).
async fn pump<R, W>(
    dir: Stream,
    src: &mut R,
    dst: &mut W,
    conn: &Conn,
    mut requests: Option<&mut Requests>,
    mut answers: Option<&mut Answers>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (received, sent) = conn.proxy.stats.counters(dir);
    let mut chain_rx = conn.proxy.chain.clone();
    let mut chain_open = true;
    let mut rolls: HashMap<u64, bool> = HashMap::new();
    let mut fx = Effects::default();
    let mut buf = vec![0u8; READ_BUF];
    let mut queue: VecDeque<Piece> = VecDeque::new();
    let mut queued = 0usize;
    let mut last_due = Instant::now();
    let mut bw_free = Instant::now();
    let mut hold_deadline: Option<Instant> = None;
    let mut reset_at: Option<Instant> = None;
    let mut limit_sent: i64 = 0;
    let mut closing = false;
    let mut eof_at: Option<Instant> = None;
    let mut pieces: Vec<(Bytes, Option<Instant>)> = Vec::new();
    // The agent answered a request itself and the connection ends after it.
    let mut answer_close = false;

    // The toxics present when the connection opened apply from the start.
    let mut changed = true;
    loop {
        if changed {
            changed = false;
            let chain = chain_rx.borrow_and_update().clone();
            let active: Vec<Arc<Toxic>> = chain
                .toxics
                .iter()
                .filter(|t| t.stream == dir && !t.kind.is_http())
                .filter(|t| *rolls.entry(t.id).or_insert_with(|| t.roll()))
                .cloned()
                .collect();
            for t in &active {
                if !fx.active.iter().any(|o| o.id == t.id) {
                    conn.applied_start(t);
                }
            }
            for old in &fx.active {
                if !active.iter().any(|t| t.id == old.id) {
                    conn.applied_end(old.id);
                }
            }
            let had_timeout = fx.timeout.as_ref().map(|t| t.id);
            let had_delays = fx.delays();
            let reset_pending = reset_at.is_some();
            let had_limit = fx.limit.as_ref().map(|t| t.id);
            fx = effects(active);
            if had_timeout.is_some() && fx.timeout.is_none() {
                // As Toxiproxy: a timeout toxic's removal closes what it held, so
                // the bytes it swallowed cannot misalign a protocol afterwards.
                conn.cancel.cancel();
                return;
            }
            if fx.limit.as_ref().map(|t| t.id) != had_limit {
                limit_sent = 0;
            }
            match &fx.timeout {
                Some(t) if had_timeout != Some(t.id) => {
                    hold_deadline = match t.kind {
                        Kind::Timeout { timeout } if timeout > 0 => Some(Instant::now() + ms(timeout)),
                        _ => None,
                    };
                }
                Some(_) => {}
                None => hold_deadline = None,
            }
            if fx.reset.is_none() {
                if reset_pending {
                    // It swallowed bytes already: carrying on would misalign the stream.
                    conn.cancel.cancel();
                    return;
                }
                reset_at = None;
            }
            if had_delays && !fx.delays() {
                // Removing a delaying toxic releases what it held, as Toxiproxy does.
                let now = Instant::now();
                for p in queue.iter_mut() {
                    p.due = p.due.min(now).max(p.floor);
                }
                last_due = queue.iter().map(|p| p.due).max().unwrap_or(now);
            }
        }

        let quiet = fx.active.is_empty() && queue.is_empty() && eof_at.is_none() && !closing && !answer_close;
        if quiet {
            // Fast path: no toxic on this direction, copy straight through.
            tokio::select! {
                biased;
                _ = conn.cancel.cancelled() => return,
                r = chain_rx.changed(), if chain_open => {
                    if r.is_err() { chain_open = false } else { changed = true }
                }
                w = next_wake(&mut answers) => match (w, answers.as_deref_mut()) {
                    (Some(()), Some(a)) => answer_close |= a.queue_due(conn, &mut queue, &mut queued, &mut last_due),
                    _ => answers = None,
                },
                r = src.read(&mut buf) => match r {
                    Ok(0) | Err(_) => {
                        eof_at = Some(Instant::now());
                        if let Some(requests) = requests.as_deref_mut() {
                            let rest = requests.take_pending();
                            if !rest.is_empty() {
                                push(&mut queue, &mut queued, &mut last_due, Instant::now(), rest);
                            }
                        }
                        if let Some(a) = answers.as_deref_mut() {
                            a.closed(conn, &mut pieces);
                            for (data, not_before) in pieces.drain(..) {
                                push(&mut queue, &mut queued, &mut last_due, not_before.unwrap_or_else(Instant::now), data);
                            }
                        }
                    }
                    Ok(n) => {
                        received.fetch_add(n as u64, Ordering::Relaxed);
                        let framed = match (requests.as_deref_mut(), answers.as_deref_mut()) {
                            (Some(requests), _) => {
                                requests.frame(Bytes::copy_from_slice(&buf[..n]), conn, &mut pieces);
                                true
                            }
                            (None, Some(a)) => {
                                a.route(Bytes::copy_from_slice(&buf[..n]), conn, &mut pieces);
                                answer_close |= a.close;
                                true
                            }
                            (None, None) => false,
                        };
                        if framed {
                            for (data, not_before) in pieces.drain(..) {
                                match not_before {
                                    None if queue.is_empty() => tokio::select! {
                                        biased;
                                        _ = conn.cancel.cancelled() => return,
                                        w = dst.write_all(&data) => {
                                            if w.is_err() { conn.cancel.cancel(); return }
                                            sent.fetch_add(data.len() as u64, Ordering::Relaxed);
                                        }
                                    },
                                    _ => push(&mut queue, &mut queued, &mut last_due, not_before.unwrap_or_else(Instant::now), data),
                                }
                            }
                        } else {
                            tokio::select! {
                                biased;
                                _ = conn.cancel.cancelled() => return,
                                w = dst.write_all(&buf[..n]) => {
                                    if w.is_err() { conn.cancel.cancel(); return }
                                    sent.fetch_add(n as u64, Ordering::Relaxed);
                                }
                            }
                        }
                        if n == buf.len() && buf.len() < READ_BUF_MAX {
                            buf.resize(buf.len() * 2, 0);
                        }
                    }
                },
            }
            continue;
        }

        // A pending reset wins over closing normally.
        let close_at = if reset_at.is_some() { None } else { eof_at.map(|t| t + ms(fx.slow_close)) };
        let drained_close = (queue.is_empty() && answer_close).then(Instant::now);
        let next_timer = [
            queue.front().map(|p| p.due),
            hold_deadline,
            reset_at,
            if queue.is_empty() { close_at } else { None },
            drained_close,
        ]
        .into_iter()
        .flatten()
        .min();
        let can_read = eof_at.is_none() && !closing && reset_at.is_none() && queued < MAX_QUEUED;
        tokio::select! {
            biased;
            _ = conn.cancel.cancelled() => return,
            r = chain_rx.changed(), if chain_open => {
                if r.is_err() { chain_open = false } else { changed = true }
            }
            w = next_wake(&mut answers) => match (w, answers.as_deref_mut()) {
                (Some(()), Some(a)) => answer_close |= a.queue_due(conn, &mut queue, &mut queued, &mut last_due),
                _ => answers = None,
            },
            _ = sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => {
                let now = Instant::now();
                while queue.front().is_some_and(|p| p.due <= now) {
                    let p = queue.pop_front().unwrap();
                    queued -= p.data.len();
                    tokio::select! {
                        biased;
                        _ = conn.cancel.cancelled() => return,
                        w = dst.write_all(&p.data) => {
                            if w.is_err() { conn.cancel.cancel(); return }
                            sent.fetch_add(p.data.len() as u64, Ordering::Relaxed);
                        }
                    }
                }
                if closing && queue.is_empty() {
                    let _ = dst.flush().await;
                    conn.cancel.cancel();
                    return;
                }
                if answer_close && queue.is_empty() {
                    // FIN first and a moment for the client to read the answer; closing
                    // with its unread bytes in our buffer would send an RST instead.
                    let _ = dst.shutdown().await;
                    tokio::select! {
                        _ = conn.cancel.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => conn.cancel.cancel(),
                    }
                    return;
                }
                if hold_deadline.is_some_and(|d| d <= now) {
                    if let Some(t) = &fx.timeout {
                        conn.applied_error(t.id, format!("connection closed by timeout toxic {}", t.name));
                    }
                    conn.cancel.cancel();
                    return;
                }
                if reset_at.is_some_and(|d| d <= now) {
                    if let Some(t) = &fx.reset {
                        conn.applied_error(t.id, format!("connection reset by reset_peer toxic {}", t.name));
                    }
                    conn.reset.store(true, Ordering::Relaxed);
                    conn.cancel.cancel();
                    return;
                }
                if queue.is_empty() && close_at.is_some_and(|c| c <= now) {
                    let _ = dst.shutdown().await;
                    return;
                }
            }
            r = src.read(&mut buf), if can_read => {
                let n = match r {
                    Ok(0) | Err(_) => {
                        eof_at = Some(Instant::now());
                        if let Some(requests) = requests.as_deref_mut() {
                            // An unfinished head goes through as it is, as plain TCP would.
                            let rest = requests.take_pending();
                            enqueue(&mut queue, &mut queued, &mut last_due, &mut bw_free, &fx, Instant::now(), rest);
                        }
                        if let Some(a) = answers.as_deref_mut() {
                            a.closed(conn, &mut pieces);
                            for (data, not_before) in pieces.drain(..) {
                                let arrival = not_before.unwrap_or_else(Instant::now);
                                enqueue(&mut queue, &mut queued, &mut last_due, &mut bw_free, &fx, arrival, data);
                            }
                        }
                        if let Some(t) = &fx.reset {
                            // The end of the stream counts as data for reset_peer.
                            if let Kind::ResetPeer { timeout } = t.kind {
                                reset_at.get_or_insert(Instant::now() + ms(timeout));
                            }
                            continue;
                        }
                        if fx.timeout.is_some() {
                            // Toxiproxy's timeout closes as soon as the source does.
                            conn.cancel.cancel();
                            return;
                        }
                        continue;
                    }
                    Ok(n) => n,
                };
                received.fetch_add(n as u64, Ordering::Relaxed);
                let now = Instant::now();
                if let Some(t) = &fx.timeout {
                    // Data stops here; with a timeout, the connection closes that long after the last chunk.
                    if let Kind::Timeout { timeout } = t.kind {
                        if timeout > 0 {
                            hold_deadline = Some(now + ms(timeout));
                        }
                    }
                    continue;
                }
                if let Some(t) = &fx.reset {
                    if let Kind::ResetPeer { timeout } = t.kind {
                        reset_at = Some(now + ms(timeout));
                    }
                    continue;
                }
                let mut data = Bytes::copy_from_slice(&buf[..n]);
                if let Some(t) = &fx.limit {
                    if let Kind::LimitData { bytes } = t.kind {
                        let left = (bytes - limit_sent).max(0) as usize;
                        if data.len() >= left {
                            data.truncate(left);
                            closing = true;
                            conn.applied_error(t.id, format!("connection closed after {bytes} bytes by limit_data toxic {}", t.name));
                        }
                        limit_sent += data.len() as i64;
                    }
                }
                let framed = match (requests.as_deref_mut(), answers.as_deref_mut()) {
                    (Some(requests), _) => {
                        requests.frame(data, conn, &mut pieces);
                        true
                    }
                    (None, Some(a)) => {
                        a.route(data, conn, &mut pieces);
                        answer_close |= a.close;
                        true
                    }
                    (None, None) => {
                        enqueue(&mut queue, &mut queued, &mut last_due, &mut bw_free, &fx, now, data);
                        false
                    }
                };
                if framed {
                    for (data, not_before) in pieces.drain(..) {
                        let arrival = not_before.map_or(now, |t| t.max(now));
                        enqueue(&mut queue, &mut queued, &mut last_due, &mut bw_free, &fx, arrival, data);
                    }
                }
                if closing && queue.is_empty() {
                    // Nothing left to send (limit already reached): close now.
                    let _ = dst.flush().await;
                    conn.cancel.cancel();
                    return;
                }
            }
        }
    }
}

/// Schedules a chunk: latency (± jitter) from its arrival, then the slicer's
/// pieces, then the bandwidth limit; order on the wire is kept.
fn enqueue(
    queue: &mut VecDeque<Piece>,
    queued: &mut usize,
    last_due: &mut Instant,
    bw_free: &mut Instant,
    fx: &Effects,
    now: Instant,
    data: Bytes,
) {
    if data.is_empty() {
        return;
    }
    let first = queue.len();
    enqueue_pieces(queue, queued, last_due, bw_free, fx, now, data);
    for p in queue.iter_mut().skip(first) {
        p.floor = now;
    }
}

fn enqueue_pieces(
    queue: &mut VecDeque<Piece>,
    queued: &mut usize,
    last_due: &mut Instant,
    bw_free: &mut Instant,
    fx: &Effects,
    now: Instant,
    data: Bytes,
) {
    let mut delay_ms: i64 = 0;
    for (latency, jitter) in &fx.latency {
        let j = if *jitter > 0 { rand::random_range(-*jitter..*jitter) } else { 0 };
        delay_ms += (latency + j).max(0);
    }
    let due = (now + ms(delay_ms)).max(*last_due);
    let mut pieces: Vec<(Instant, Bytes)> = Vec::new();
    match fx.slicer {
        Some((average, variation, delay_us)) if average > 0 => {
            let mut at = due;
            for range in slices(data.len(), average as usize, variation.max(0) as usize) {
                pieces.push((at, data.slice(range)));
                at += Duration::from_micros(delay_us.max(0) as u64);
            }
        }
        _ => pieces.push((due, data)),
    }
    for (due, data) in pieces {
        match fx.bandwidth {
            Some(rate) => {
                // rate is KB/s, i.e. `rate` bytes per millisecond; send at most 100 ms worth at a time.
                let step = (rate as usize * 100).max(1);
                let mut off = 0;
                while off < data.len() {
                    let end = (off + step).min(data.len());
                    let at = due.max(*bw_free);
                    *bw_free = at + Duration::from_micros(((end - off) as u64 * 1000) / rate as u64);
                    push(queue, queued, last_due, at, data.slice(off..end));
                    off = end;
                }
            }
            None => push(queue, queued, last_due, due, data),
        }
    }
}

fn push(queue: &mut VecDeque<Piece>, queued: &mut usize, last_due: &mut Instant, due: Instant, data: Bytes) {
    let due = due.max(*last_due);
    *last_due = due;
    *queued += data.len();
    queue.push_back(Piece { due, floor: due, data });
}

/// Toxiproxy's slicer: halve until a piece is within `variation` of `average`,
/// moving each cut by up to ± `variation`.
fn slices(len: usize, average: usize, variation: usize) -> Vec<std::ops::Range<usize>> {
    fn cut(start: usize, end: usize, average: usize, variation: usize, out: &mut Vec<std::ops::Range<usize>>) {
        if (end - start).saturating_sub(average) <= variation || end - start < 2 {
            out.push(start..end);
            return;
        }
        let mut mid = start + (end - start) / 2;
        if variation > 0 {
            let shift = rand::random_range(0..variation * 2) as isize - variation as isize;
            mid = (mid as isize + shift).clamp(start as isize + 1, end as isize - 1) as usize;
        }
        cut(start, mid, average, variation, out);
        cut(mid, end, average, variation, out);
    }
    let mut out = Vec::new();
    cut(0, len, average, variation, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_chunk_in_order() {
        for (len, avg, var) in [(1000, 10, 0), (1000, 10, 5), (7, 100, 0), (65536, 1, 0)] {
            let s = slices(len, avg, var);
            assert_eq!(s.first().unwrap().start, 0);
            assert_eq!(s.last().unwrap().end, len);
            assert!(s.windows(2).all(|w| w[0].end == w[1].start));
            assert!(s.iter().all(|r| r.len() <= avg + var || r.len() < 2), "{len} {avg} {var}");
        }
    }

    #[test]
    fn listen_addresses_like_go() {
        assert_eq!(resolve_listen("").unwrap().to_string(), "[::]:0");
        assert_eq!(resolve_listen(":8080").unwrap().to_string(), "[::]:8080");
        assert_eq!(resolve_listen("localhost:0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(resolve_listen("127.0.0.1:0").unwrap().to_string(), "127.0.0.1:0");
        assert!(resolve_listen("nonsense").is_err());
    }

    #[test]
    fn bandwidth_spreads_chunks_over_time() {
        let fx = effects(vec![Arc::new(
            Toxic::from_create(&serde_json::json!({"type": "bandwidth", "attributes": {"rate": 10}})).unwrap(),
        )]);
        let (mut q, mut queued, now) = (VecDeque::new(), 0, Instant::now());
        let (mut last, mut bw) = (now, now);
        enqueue(&mut q, &mut queued, &mut last, &mut bw, &fx, now, Bytes::from(vec![0u8; 5000]));
        // 10 KB/s: 1,000-byte pieces 100 ms apart, the last leaving 400 ms after the first.
        assert_eq!(q.len(), 5);
        assert_eq!(q.back().unwrap().due - q.front().unwrap().due, Duration::from_millis(400));
        assert_eq!(bw - now, Duration::from_millis(500));
    }
}
