//! h2c (gRPC without TLS) connections request by request: the client's bytes
//! still pass the TCP toxics (the pump), then hyper reads each HTTP/2 request,
//! the HTTP toxics decide its fate (delay, abort with an HTTP or gRPC status),
//! and the rest go to the upstream over one HTTP/2 connection. HTTP/1.x is
//! framed on the byte stream instead (`h1.rs`, `turns.rs`).

use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry::trace::SpanContext;
use opentelemetry::KeyValue;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::conn::{dial_address, Conn, RequestFault};
use crate::faults::parent_from_headers;
use crate::model::{ms, Kind, Toxic};
use crate::pump::pipe;

type Body = BoxBody<Bytes, hyper::Error>;

/// Serves an h2c connection stream by stream.
pub(crate) async fn serve_h2(client: TcpStream, upstream: TcpStream, conn: Arc<Conn>) {
    let (ours, theirs) = tokio::io::duplex(256 << 10);
    let (mut tr, mut tw) = tokio::io::split(theirs);
    let forwarder = Arc::new(Forwarder { conn: conn.clone(), upstream: Mutex::new(Upstream::Fresh(upstream)) });
    let service = hyper::service::service_fn(move |req| {
        let f = forwarder.clone();
        async move { f.handle(req).await }
    });
    let cancel = conn.cancel.clone();
    let server = async move {
        let server = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(ours), service);
        tokio::select! {
            _ = cancel.cancelled() => {}
            r = server => if let Err(e) = r {
                tracing::debug!(error = %e, "h2c connection ended");
            }
        }
    };
    tokio::join!(pipe(client, &mut tr, &mut tw, conn, false), server);
}

enum Upstream {
    /// The connection opened with the client, not yet handshaken.
    Fresh(TcpStream),
    Ready(SendRequest<Body>),
    /// Closed: the next request opens a new connection.
    Gone,
}

struct Forwarder {
    conn: Arc<Conn>,
    upstream: Mutex<Upstream>,
}

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
                drop(req);
                let resp = abort_response(&self.conn.proxy.name, &toxic, grpc);
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

    async fn forward(&self, req: Request<Incoming>) -> Result<Response<Body>, UpstreamFailed> {
        let mut sender = {
            let mut upstream = self.upstream.lock().await;
            let sender = match std::mem::replace(&mut *upstream, Upstream::Gone) {
                Upstream::Ready(s) if !s.is_closed() => s,
                Upstream::Fresh(stream) => self.handshake(stream).await?,
                _ => {
                    let stream = TcpStream::connect(dial_address(&self.conn.upstream).as_ref())
                        .await
                        .map_err(|e| UpstreamFailed(format!("{}: {e}", self.conn.upstream)))?;
                    let _ = stream.set_nodelay(true);
                    self.handshake(stream).await?
                }
            };
            // Multiplexed: requests go out concurrently on clones of the sender.
            *upstream = Upstream::Ready(sender.clone());
            sender
        };
        sender.ready().await.map_err(|e| UpstreamFailed(e.to_string()))?;
        let resp = sender.send_request(req.map(|b| b.boxed())).await.map_err(|e| UpstreamFailed(e.to_string()))?;
        Ok(resp.map(|b| b.boxed()))
    }

    async fn handshake(&self, stream: TcpStream) -> Result<SendRequest<Body>, UpstreamFailed> {
        let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamFailed(e.to_string()))?;
        let cancel = self.conn.cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = connection => {}
            }
        });
        Ok(sender)
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
        let request = RequestFault { toxic, parent, start, error, method, path, status };
        self.conn.record_request_fault(request, extra);
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
