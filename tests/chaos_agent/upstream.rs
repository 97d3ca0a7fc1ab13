//! Loopback upstreams for the agent's proxies (echo, closing, a keep-alive
//! HTTP/1.1 server) and the client side of a connection through a proxy.
//! Shared like agent.rs: tests/client_chaos.rs includes it by `#[path]`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Echoes every byte back; half-closes when the client does.
pub(crate) fn echo_server() -> SocketAddr {
    serve_tcp(|mut s| {
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = s.shutdown(Shutdown::Write);
    })
}

/// Greets with `bye` and closes at once.
pub(crate) fn closing_server() -> SocketAddr {
    serve_tcp(|mut s| {
        let _ = s.write_all(b"bye");
    })
}

pub(crate) fn serve_tcp(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for s in listener.incoming().map_while(Result::ok) {
            let h = handler.clone();
            thread::spawn(move || h(s));
        }
    });
    addr
}

/// One request the HTTP upstream answered.
#[derive(Clone, Debug)]
pub(crate) struct Hit {
    pub path: String,
    pub traceparent: Option<String>,
}

/// A keep-alive HTTP/1.1 upstream answering `200 ok`, recording every request
/// and counting connections.
pub(crate) struct HttpUpstream {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<Hit>>>,
    pub connections: Arc<AtomicUsize>,
}

pub(crate) fn http_upstream() -> HttpUpstream {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (h, c) = (hits.clone(), connections.clone());
    let addr = serve_tcp(move |s| {
        c.fetch_add(1, Ordering::SeqCst);
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut out = s;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (mut length, mut traceparent, mut close) = (0usize, None, false);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (k, v) = line.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap(),
                    "traceparent" => traceparent = Some(v.trim().to_string()),
                    "connection" => close = v.trim().eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            h.lock().unwrap().push(Hit { path, traceparent });
            let resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
            if out.write_all(resp.as_bytes()).is_err() || close {
                return;
            }
        }
    });
    HttpUpstream { addr, hits, connections }
}

pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `msg` and reads the echo; returns how long the round trip took.
pub(crate) fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Duration {
    let t = Instant::now();
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
    t.elapsed()
}
