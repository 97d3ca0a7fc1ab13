//! A proxy's connections from accept to hand-off: dial the upstream, sniff
//! which protocol the client speaks (HTTP/1, h2c, or opaque bytes) and hand
//! the connection to the pump (framing HTTP/1 on the way) or to the h2c layer.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conn::{dial_address, Conn, ProxyShared};
use crate::h2c::serve_h2;
use crate::pump::{pipe, zero_linger};

/// Accepts until `cancel`; each connection runs on `tasks` (awaited on shutdown
/// so its spans get out) and is cancelled with the proxy.
pub(crate) async fn accept_loop(
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
                    tasks.spawn(handle(client, peer, shared.clone(), upstream.clone(), cancel.child_token()));
                }
                Err(e) => {
                    tracing::warn!(proxy = %shared.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

async fn handle(
    client: TcpStream,
    peer: SocketAddr,
    shared: Arc<ProxyShared>,
    upstream: String,
    cancel: CancellationToken,
) {
    let conn = Arc::new(Conn::new(shared, peer, upstream, cancel));
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
    let protocol = sniff(&client, &upstream, &conn.cancel).await;
    if protocol == Protocol::H2c {
        conn.http.store(true, Ordering::Relaxed);
        serve_h2(client, upstream, conn).await;
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

/// What a connection speaks, from the client's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge (gRPC without TLS).
    H2c,
    /// Anything else, including a server that greets first.
    Opaque,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits for the client's first bytes (or the server's, which settles it).
async fn sniff(client: &TcpStream, upstream: &TcpStream, cancel: &CancellationToken) -> Protocol {
    let mut buf = vec![0u8; PEEK];
    // An HTTP/2 server sends its SETTINGS without waiting for the client:
    // then the client's bytes still decide.
    let mut server_h2 = false;
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
            _ = upstream.readable(), if !server_h2 => {
                let mut head = [0u8; 9];
                match upstream.peek(&mut head).await {
                    Ok(9) if is_h2_settings(&head) => server_h2 = true,
                    // A server that greets first (SMTP, MySQL, ...): bytes only.
                    _ => return Protocol::Opaque,
                }
            }
        }
    }
    Protocol::Opaque
}

/// The frame header of an HTTP/2 server's first SETTINGS frame: a length
/// that is a multiple of 6, type 4, no ACK, stream 0.
fn is_h2_settings(h: &[u8; 9]) -> bool {
    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
    len.is_multiple_of(6) && h[3] == 0x04 && h[4] & 0x01 == 0 && h[5..9] == [0, 0, 0, 0]
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

    #[test]
    fn h2_server_settings_are_recognised() {
        use super::is_h2_settings;
        assert!(is_h2_settings(&[0, 0, 18, 4, 0, 0, 0, 0, 0]));
        assert!(is_h2_settings(&[0, 0, 0, 4, 0, 0, 0, 0, 0]));
        assert!(!is_h2_settings(&[0, 0, 0, 4, 1, 0, 0, 0, 0]), "an ACK is not a preface");
        assert!(!is_h2_settings(b"220 smtp."), "a greeting");
        assert!(!is_h2_settings(&[0x4a, 0, 0, 0, 10, b'8', b'.', b'0', b'.']), "MySQL handshake");
    }
}
