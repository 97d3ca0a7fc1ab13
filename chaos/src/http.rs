//! HTTP/1.1 connections, request by request: the client's bytes still pass
//! the TCP toxics, then hyper reads each request, the HTTP toxics decide its
//! fate (delay, abort), and the rest go to the upstream on a connection of
//! their own, so keep-alive clients see every toxic change on the next request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use opentelemetry::trace::SpanContext;
use opentelemetry::KeyValue;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::faults::{parent_from_headers, Fault};
use crate::model::{ms, Kind, Toxic};
use crate::proxy::{pipe, Conn};

type Body = BoxBody<Bytes, hyper::Error>;

/// Decides whether a connection speaks HTTP/1.x: the client talks first with a
/// request line. A server that greets first, or HTTP/2's preface, stays TCP.
pub(crate) async fn speaks_http(client: &TcpStream, upstream: &TcpStream, cancel: &CancellationToken) -> bool {
    let mut buf = [0u8; 16];
    for _ in 0..100 {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return false,
            r = client.peek(&mut buf) => match r {
                Ok(n) if n > 0 => match classify(&buf[..n]) {
                    Some(http) => return http,
                    // A request line cut short: wait for more of it.
                    None => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
                },
                _ => return false,
            },
            _ = upstream.readable() => return false,
        }
    }
    false
}

/// `Some(true)` for an HTTP/1 request line start, `Some(false)` for anything
/// else, `None` when too few bytes to tell.
fn classify(b: &[u8]) -> Option<bool> {
    match b.iter().position(|&c| c == b' ') {
        Some(i) => Some(i > 0 && i <= 10 && b[..i].iter().all(u8::is_ascii_uppercase) && &b[..i] != b"PRI"),
        None if b.len() < 11 && b.iter().all(u8::is_ascii_uppercase) => None,
        None => Some(false),
    }
}

pub(crate) async fn serve(client: TcpStream, upstream: TcpStream, conn: Arc<Conn>) {
    let (ours, theirs) = tokio::io::duplex(256 << 10);
    let (tr, tw) = tokio::io::split(theirs);
    let forwarder = Arc::new(Forwarder { conn: conn.clone(), upstream: Mutex::new(Upstream::Fresh(upstream)) });
    let service = hyper::service::service_fn(move |req| {
        let f = forwarder.clone();
        async move { Ok::<_, Infallible>(f.handle(req).await) }
    });
    let server =
        hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(ours), service);
    let cancel = conn.cancel.clone();
    tokio::join!(pipe(client, tr, tw, conn), async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            r = server => if let Err(e) = r {
                tracing::debug!(error = %e, "http connection ended");
            }
        }
    });
}

enum Upstream {
    /// The connection opened with the client, not yet handshaken.
    Fresh(TcpStream),
    Ready(SendRequest<Body>),
    Gone,
}

struct Forwarder {
    conn: Arc<Conn>,
    upstream: Mutex<Upstream>,
}

impl Forwarder {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let start = SystemTime::now();
        let parent = parent_from_headers(req.headers());
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let chain = self.conn.proxy.chain.borrow().clone();
        let mut abort: Option<(Arc<Toxic>, u16)> = None;
        for t in chain.toxics.iter() {
            match &t.kind {
                Kind::HttpDelay { delay, matcher } if matcher.matches(&method, &path, req.headers()) && t.roll() => {
                    let began = SystemTime::now();
                    tokio::time::sleep(ms(*delay)).await;
                    self.record(t, parent.clone(), began, None, &method, &path, None);
                }
                Kind::HttpAbort { status, matcher } if matcher.matches(&method, &path, req.headers()) && t.roll() => {
                    abort = Some((t.clone(), *status));
                    break;
                }
                _ => {}
            }
        }
        let response = match abort {
            Some((toxic, status)) => {
                // Read the body so the connection stays usable for the next request.
                let _ = req.into_body().collect().await;
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                let msg = format!("aborted by seismo chaos: proxy {} toxic {}\n", self.conn.proxy.name, toxic.name);
                let error = format!("request aborted with {} by http_abort toxic {}", status.as_u16(), toxic.name);
                self.record(&toxic, parent.clone(), start, Some(error), &method, &path, Some(status.as_u16()));
                let mut resp = Response::new(Full::new(Bytes::from(msg)).map_err(|never| match never {}).boxed());
                *resp.status_mut() = status;
                resp.headers_mut().insert("content-type", HeaderValue::from_static("text/plain"));
                if let Ok(v) = HeaderValue::from_str(&toxic.name) {
                    resp.headers_mut().insert("x-seismo-chaos-toxic", v);
                }
                resp
            }
            None => self.forward(req).await,
        };
        // TCP toxics on this connection touched this request too.
        for t in self.conn.active_toxics() {
            let error = t.kind.is_abort().then(|| format!("{} toxic {} on the connection", t.kind.type_name(), t.name));
            self.record(&t, parent.clone(), start, error, &method, &path, Some(response.status().as_u16()));
        }
        response
    }

    async fn forward(&self, req: Request<Incoming>) -> Response<Body> {
        let mut upstream = self.upstream.lock().await;
        let mut sender = match std::mem::replace(&mut *upstream, Upstream::Gone) {
            Upstream::Ready(s) if !s.is_closed() => s,
            Upstream::Fresh(stream) => match self.handshake(stream).await {
                Ok(s) => s,
                Err(e) => return bad_gateway(e),
            },
            _ => match TcpStream::connect(self.conn.upstream.as_str()).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    match self.handshake(stream).await {
                        Ok(s) => s,
                        Err(e) => return bad_gateway(e),
                    }
                }
                Err(e) => return bad_gateway(format!("upstream {}: {e}", self.conn.upstream)),
            },
        };
        if let Err(e) = sender.ready().await {
            return bad_gateway(e.to_string());
        }
        let result = sender.send_request(req.map(|b| b.boxed())).await;
        *upstream = Upstream::Ready(sender);
        match result {
            Ok(resp) => resp.map(|b| b.boxed()),
            Err(e) => bad_gateway(e.to_string()),
        }
    }

    async fn handshake(&self, stream: TcpStream) -> Result<SendRequest<Body>, String> {
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
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

fn bad_gateway(detail: impl std::fmt::Display) -> Response<Body> {
    let msg = format!("seismo chaos: upstream failed: {detail}\n");
    let mut resp = Response::new(Full::new(Bytes::from(msg)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn request_lines_are_http_and_the_rest_is_not() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(true));
        assert_eq!(classify(b"OPTIONS * HTTP/1.1"), Some(true));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), Some(false));
        assert_eq!(classify(b"*3\r\n$3\r\nSET"), Some(false));
        assert_eq!(classify(b"\x16\x03\x01\x02\x00"), Some(false));
        assert_eq!(classify(b"GE"), None);
    }
}
