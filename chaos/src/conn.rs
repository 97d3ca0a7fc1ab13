//! One proxied connection: what its two directions (and its h2c layer) share,
//! and the fault spans of the toxics that hit it. Plain TCP connections get
//! one span per toxic per connection; HTTP connections get one per request
//! (see `turns.rs` and `h2c.rs`), so this file only keeps the TCP toxics'
//! bookkeeping and the span builder both use.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use opentelemetry::trace::SpanContext;
use opentelemetry::KeyValue;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::faults::{Fault, FaultSink};
use crate::model::{Stream, Toxic};

/// The toxics of a proxy in the order they were added.
#[derive(Debug, Default)]
pub(crate) struct Chain {
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
    /// The (received, sent) counters of one direction.
    pub(crate) fn counters(&self, dir: Stream) -> (&AtomicU64, &AtomicU64) {
        match dir {
            Stream::Upstream => (&self.upstream_received, &self.upstream_sent),
            Stream::Downstream => (&self.downstream_received, &self.downstream_sent),
        }
    }
}

/// What a proxy's connections share. Toxics reach open connections through
/// the watch channel, so the API never waits on traffic.
pub(crate) struct ProxyShared {
    pub name: String,
    pub chain: watch::Receiver<Arc<Chain>>,
    pub stats: Arc<ProxyStats>,
    pub faults: Arc<FaultSink>,
}

/// A TCP toxic that hit a connection, for its span.
struct Applied {
    toxic: Arc<Toxic>,
    start: SystemTime,
    end: Option<SystemTime>,
    error: Option<String>,
}

/// One client connection and what its two directions share.
pub(crate) struct Conn {
    pub proxy: Arc<ProxyShared>,
    pub peer: SocketAddr,
    pub upstream: String,
    /// Cancelled when either direction ends the connection (or the proxy stops).
    pub cancel: CancellationToken,
    /// A reset_peer toxic fired: both sockets close with RST.
    pub reset: AtomicBool,
    /// Set when the connection speaks HTTP: spans then go per request.
    pub http: AtomicBool,
    applied: Mutex<Vec<Applied>>,
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

impl Conn {
    pub(crate) fn new(proxy: Arc<ProxyShared>, peer: SocketAddr, upstream: String, cancel: CancellationToken) -> Conn {
        Conn {
            proxy,
            peer,
            upstream,
            cancel,
            reset: AtomicBool::new(false),
            http: AtomicBool::new(false),
            applied: Mutex::new(Vec::new()),
        }
    }

    /// A TCP toxic started applying to this connection.
    pub(crate) fn applied_start(&self, toxic: &Arc<Toxic>) {
        self.applied.lock().unwrap().push(Applied {
            toxic: toxic.clone(),
            start: SystemTime::now(),
            end: None,
            error: None,
        });
    }

    /// The toxic left this connection: its span goes out now (plain TCP), not at close.
    pub(crate) fn applied_end(&self, id: u64) {
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

    /// The toxic failed the connection (its span gets status ERROR).
    pub(crate) fn applied_error(&self, id: u64, error: String) {
        let mut applied = self.applied.lock().unwrap();
        if let Some(a) = applied.iter_mut().find(|a| a.toxic.id == id) {
            a.error.get_or_insert(error);
        }
    }

    /// The TCP toxics hitting this connection now (for per-request spans).
    pub(crate) fn active_toxics(&self) -> Vec<Arc<Toxic>> {
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

    /// One span per toxic still on this connection when it ends (plain TCP only).
    pub(crate) fn export_spans(&self) {
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

/// Where to connect for an upstream: `:port` means this host, as in Go.
pub(crate) fn dial_address(upstream: &str) -> std::borrow::Cow<'_, str> {
    match upstream.strip_prefix(':') {
        Some(port) => format!("localhost:{port}").into(),
        None => upstream.into(),
    }
}
