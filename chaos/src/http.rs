//! HTTP/1.1 connections, request by request: the client's bytes still pass
//! the TCP toxics, then hyper reads each request, the HTTP toxics decide its
//! fate (delay, abort), and the rest go to the upstream on a connection of
//! their own, so keep-alive clients see every toxic change on the next request.

use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry::trace::SpanContext;
use opentelemetry::KeyValue;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::faults::{parent_from_headers, Fault};
use crate::model::{ms, Kind, Toxic};
use crate::proxy::{pipe, Conn};

type Body = BoxBody<Bytes, hyper::Error>;

/// What a connection speaks, from the client's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge (gRPC without TLS).
    H2c,
    /// Anything else, including a server that greets first.
    Opaque,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits for the client's first bytes (or the server's, which settles it).
pub(crate) async fn sniff(client: &TcpStream, upstream: &TcpStream, cancel: &CancellationToken) -> Protocol {
    let mut buf = vec![0u8; PEEK];
    for _ in 0..100 {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Protocol::Opaque,
            r = client.peek(&mut buf) => match r {
                Ok(n) if n > 0 => match classify(&buf[..n]) {
                    Some(p) => return p,
                    // A request line or preface cut short: wait for more of it.
                    None => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
                },
                _ => return Protocol::Opaque,
            },
            _ = upstream.readable() => return Protocol::Opaque,
        }
    }
    Protocol::Opaque
}

/// Longest request line recognised as HTTP; longer ones are proxied as bytes.
const PEEK: usize = 8 << 10;

/// An HTTP/1.x request line (`METHOD SP target SP HTTP/1.x CRLF`) or the h2c
/// preface; RTSP, SIP, Redis inline commands and the rest stay opaque.
/// `None` when too few bytes to tell.
fn classify(b: &[u8]) -> Option<Protocol> {
    let n = b.len().min(H2_PREFACE.len());
    if b[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Protocol::H2c);
    }
    let method_end = match b.iter().position(|&c| c == b' ') {
        Some(i) => i,
        None if b.len() < 16 && b.iter().all(u8::is_ascii_uppercase) => return None,
        None => return Some(Protocol::Opaque),
    };
    if method_end == 0 || method_end > 16 || !b[..method_end].iter().all(u8::is_ascii_uppercase) {
        return Some(Protocol::Opaque);
    }
    let Some(line_end) = b.windows(2).position(|w| w == b"\r\n") else {
        return if b.len() < PEEK { None } else { Some(Protocol::Opaque) };
    };
    let line = &b[..line_end];
    let http1 = line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0");
    Some(if http1 { Protocol::Http1 } else { Protocol::Opaque })
}

/// Serves an HTTP/1.1 or h2c connection request by request.
pub(crate) async fn serve(client: TcpStream, upstream: TcpStream, conn: Arc<Conn>, protocol: Protocol) {
    let (ours, theirs) = tokio::io::duplex(256 << 10);
    let (mut tr, mut tw) = tokio::io::split(theirs);
    let h2 = protocol == Protocol::H2c;
    let forwarder = Arc::new(Forwarder { conn: conn.clone(), h2, upstream: Mutex::new(Upstream::Fresh(upstream)) });
    let service = hyper::service::service_fn(move |req| {
        let f = forwarder.clone();
        async move { f.handle(req).await }
    });
    let cancel = conn.cancel.clone();
    let server = async move {
        let io = TokioIo::new(ours);
        let result = if h2 {
            let server = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
            tokio::select! {
                _ = cancel.cancelled() => Ok(()),
                r = server => r,
            }
        } else {
            let server = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .half_close(true)
                .preserve_header_case(true)
                .max_headers(MAX_HEADERS)
                .serve_connection(io, service)
                .with_upgrades();
            tokio::select! {
                _ = cancel.cancelled() => Ok(()),
                r = server => r,
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "http connection ended");
        }
    };
    tokio::join!(pipe(client, &mut tr, &mut tw, conn), server);
}

enum Upstream {
    /// The connection opened with the client, not yet handshaken.
    Fresh(TcpStream),
    Ready(Sender),
    Gone,
}

enum Sender {
    H1(SendRequest<Body>),
    /// Multiplexed: cloned per request, requests run concurrently.
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

struct Forwarder {
    conn: Arc<Conn>,
    h2: bool,
    upstream: Mutex<Upstream>,
}

/// hyper's default is 100; proxied messages may carry more (cookies). Above 100 hyper
/// sizes its parse buffer by this on every message, so not much more.
const MAX_HEADERS: usize = 256;

/// The upstream failed mid-exchange. The client connection is closed rather
/// than answered, as a plain TCP proxy would show it.
#[derive(Debug)]
struct UpstreamFailed(String);

impl std::fmt::Display for UpstreamFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream failed: {}", self.0)
    }
}

impl std::error::Error for UpstreamFailed {}

impl Forwarder {
    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Body>, UpstreamFailed> {
        let start = SystemTime::now();
        let parent = parent_from_headers(req.headers());
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let chain = self.conn.proxy.chain.borrow().clone();
        let mut abort: Option<Arc<Toxic>> = None;
        for t in chain.toxics.iter() {
            match &t.kind {
                Kind::HttpDelay { delay, matcher } if matcher.matches(&method, &path, req.headers()) && t.roll() => {
                    let began = SystemTime::now();
                    tokio::time::sleep(ms(*delay)).await;
                    self.record(t, parent.clone(), began, None, &method, &path, None, vec![]);
                }
                Kind::HttpAbort { matcher, .. } if matcher.matches(&method, &path, req.headers()) && t.roll() => {
                    abort = Some(t.clone());
                    break;
                }
                _ => {}
            }
        }
        let response = match abort {
            Some(toxic) => {
                let grpc =
                    req.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                let reusable = self.drain(req).await;
                let mut resp = abort_response(&self.conn.proxy.name, &toxic, grpc);
                if !reusable && !self.h2 {
                    resp.headers_mut().insert("connection", HeaderValue::from_static("close"));
                }
                let error = match resp.headers().get("grpc-status") {
                    Some(code) => format!(
                        "request aborted with gRPC status {} by http_abort toxic {}",
                        code.to_str().unwrap_or("?"),
                        toxic.name
                    ),
                    None => {
                        format!("request aborted with {} by http_abort toxic {}", resp.status().as_u16(), toxic.name)
                    }
                };
                let mut attributes = vec![];
                if let Some(code) = resp.headers().get("grpc-status").and_then(|c| c.to_str().ok()?.parse::<i64>().ok())
                {
                    attributes.push(KeyValue::new("rpc.grpc.status_code", code));
                }
                self.record(
                    &toxic,
                    parent.clone(),
                    start,
                    Some(error),
                    &method,
                    &path,
                    Some(resp.status().as_u16()),
                    attributes,
                );
                resp
            }
            None => self.forward(req).await?,
        };
        // TCP toxics on this connection touched this request too.
        for t in self.conn.active_toxics() {
            let error = t.kind.is_abort().then(|| format!("{} toxic {} on the connection", t.kind.type_name(), t.name));
            self.record(&t, parent.clone(), start, error, &method, &path, Some(response.status().as_u16()), vec![]);
        }
        Ok(response)
    }

    /// Reads (and drops) up to 64 KiB of an aborted request's body, so a
    /// keep-alive connection can carry on. False when the connection cannot be
    /// reused: a bigger or slow body, or a client waiting for `100 Continue`.
    async fn drain(&self, req: Request<Incoming>) -> bool {
        let expects = req.headers().get("expect").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects {
            return false;
        }
        let mut body = req.into_body();
        let mut read = 0usize;
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(1), body.frame()).await {
                Ok(None) => return true,
                Ok(Some(Ok(frame))) => {
                    read += frame.data_ref().map_or(0, |d| d.len());
                    if read > 64 << 10 {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }

    async fn forward(&self, mut req: Request<Incoming>) -> Result<Response<Body>, UpstreamFailed> {
        let mut upstream = self.upstream.lock().await;
        let sender = match std::mem::replace(&mut *upstream, Upstream::Gone) {
            Upstream::Ready(s) if !s.is_closed() => s,
            Upstream::Fresh(stream) => self.handshake(stream).await?,
            _ => {
                let stream = TcpStream::connect(self.conn.upstream.as_str())
                    .await
                    .map_err(|e| UpstreamFailed(format!("{}: {e}", self.conn.upstream)))?;
                let _ = stream.set_nodelay(true);
                self.handshake(stream).await?
            }
        };
        // WebSocket and other upgrades: once both sides switch protocols, the
        // bytes flow straight through (still past the TCP toxics on the client side).
        let client_upgrade = wants_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
        let req = req.map(|b| b.boxed());
        let result = match sender {
            Sender::H2(mut s) => {
                *upstream = Upstream::Ready(Sender::H2(s.clone()));
                drop(upstream);
                match s.ready().await {
                    Ok(()) => s.send_request(req).await,
                    Err(e) => Err(e),
                }
            }
            Sender::H1(mut s) => {
                let result = match s.ready().await {
                    Ok(()) => s.send_request(req).await,
                    Err(e) => Err(e),
                };
                // An upgraded upstream connection is the tunnel now, not for requests.
                let upgraded = result.as_ref().is_ok_and(|r| r.status() == StatusCode::SWITCHING_PROTOCOLS);
                if !upgraded {
                    *upstream = Upstream::Ready(Sender::H1(s));
                }
                result
            }
        };
        let mut resp = result.map_err(|e| UpstreamFailed(e.to_string()))?;
        if let Some(client_upgrade) = client_upgrade {
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(tunnel(client_upgrade, upstream_upgrade, self.conn.cancel.clone()));
            }
        }
        Ok(resp.map(|b| b.boxed()))
    }

    async fn handshake(&self, stream: TcpStream) -> Result<Sender, UpstreamFailed> {
        let io = TokioIo::new(stream);
        let cancel = self.conn.cancel.clone();
        let failed = |e: hyper::Error| UpstreamFailed(e.to_string());
        if self.h2 {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(failed)?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = connection => {}
                }
            });
            Ok(Sender::H2(sender))
        } else {
            let (sender, connection) = hyper::client::conn::http1::Builder::new()
                .preserve_header_case(true)
                .max_headers(MAX_HEADERS)
                .handshake(io)
                .await
                .map_err(failed)?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = connection.with_upgrades() => {}
                }
            });
            Ok(Sender::H1(sender))
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        toxic: &Toxic,
        parent: Option<SpanContext>,
        start: SystemTime,
        error: Option<String>,
        method: &str,
        path: &str,
        status: Option<u16>,
        extra: Vec<KeyValue>,
    ) {
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("url.path", path.to_string()),
            KeyValue::new("client.address", self.conn.peer.ip().to_string()),
            KeyValue::new("server.address", self.conn.upstream.clone()),
        ];
        if let Some(s) = status {
            attributes.push(KeyValue::new("http.response.status_code", s as i64));
        }
        attributes.extend(extra);
        self.conn.proxy.faults.record(Fault {
            proxy: &self.conn.proxy.name,
            toxic,
            parent,
            start,
            end: SystemTime::now(),
            error,
            attributes,
        });
    }
}

fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.method() == axum::http::Method::CONNECT
        || req
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// Joins the two upgraded halves of a WebSocket (or other) upgrade.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade, cancel: CancellationToken) {
    let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) else { return };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
    }
}

/// The answer to an aborted request: the toxic's HTTP status, or for a gRPC
/// request when `grpc_status` is set, a trailers-only gRPC error.
fn abort_response(proxy: &str, toxic: &Toxic, grpc: bool) -> Response<Body> {
    let Kind::HttpAbort { status, grpc_status, .. } = &toxic.kind else { unreachable!("not an http_abort toxic") };
    let msg = format!("aborted by seismo chaos: proxy {proxy} toxic {}", toxic.name);
    let mut resp = match grpc_status {
        Some(code) if grpc => {
            let mut r = Response::new(Empty::<Bytes>::new().map_err(|never| match never {}).boxed());
            let h = r.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from(*code as u16));
            // grpc-message is percent-encoded; ours is plain ASCII without '%'.
            if let Ok(v) = HeaderValue::from_str(&msg.replace('%', "%25")) {
                h.insert("grpc-message", v);
            }
            r
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from(msg + "\n")).map_err(|never| match never {}).boxed());
            *r.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            r.headers_mut().insert("content-type", HeaderValue::from_static("text/plain"));
            r
        }
    };
    if let Ok(v) = HeaderValue::from_str(&toxic.name) {
        resp.headers_mut().insert("x-seismo-chaos-toxic", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::{classify, Protocol, H2_PREFACE};

    #[test]
    fn request_lines_are_http_prefaces_h2_and_the_rest_opaque() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\nHost: x\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"OPTIONS * HTTP/1.0\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"GET / HTTP/1.1"), None, "line not complete yet");
        assert_eq!(classify(H2_PREFACE), Some(Protocol::H2c));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(classify(b"OPTIONS rtsp://cam/stream RTSP/1.0\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"INVITE sip:bob@example.com SIP/2.0\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"SET k v\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"*3\r\n$3\r\nSET"), Some(Protocol::Opaque));
        assert_eq!(classify(b"\x16\x03\x01\x02\x00"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GE"), None);
    }
}
