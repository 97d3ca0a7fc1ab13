//! HTTP/1.x request framing on the client's byte stream: where each request
//! head starts and its body ends (Content-Length or chunked), so HTTP toxics
//! can act request by request while the bytes themselves pass untouched.
//! Upgrades, CONNECT and anything unparsable turn the rest of the
//! connection into an opaque tunnel.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::{Bytes, BytesMut};

/// Longest request head framed; a longer one ends framing for the connection.
const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 256;

#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    /// The client will not reuse the connection (HTTP/1.0 or `Connection: close`).
    pub close: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
    /// Asks to switch protocols (`Connection: upgrade`) or is a CONNECT.
    pub upgrade: bool,
}

#[derive(Debug)]
pub enum Event {
    /// A complete request head, and its raw bytes.
    Request(Box<RequestHead>, Bytes),
    /// Bytes of the current request's body (chunk framing included).
    Body(Bytes),
    /// Bytes after framing ended (upgrade, CONNECT, or not parsable).
    Opaque(Bytes),
}

#[derive(Debug)]
enum Chunk {
    Size(Vec<u8>),
    Data(u64),
    DataEnd(u8),
    Trailer(Vec<u8>),
}

#[derive(Debug)]
enum State {
    Head,
    Length(u64),
    Chunked(Chunk),
    Tunnel,
}

#[derive(Debug)]
pub struct Framer {
    state: State,
    head: BytesMut,
}

impl Default for Framer {
    fn default() -> Self {
        Framer { state: State::Head, head: BytesMut::new() }
    }
}

impl Framer {
    pub fn feed(&mut self, mut data: Bytes, out: &mut Vec<Event>) {
        while !data.is_empty() {
            match &mut self.state {
                State::Tunnel => {
                    out.push(Event::Opaque(data));
                    return;
                }
                State::Head => {
                    let searched = self.head.len().saturating_sub(3);
                    self.head.extend_from_slice(&data);
                    let Some(end) = head_end(&self.head[searched..]).map(|i| searched + i) else {
                        if self.head.len() > MAX_HEAD {
                            self.give_up(Bytes::new(), out);
                        }
                        return;
                    };
                    // What followed the head stays in `data` for the next state.
                    let extra = self.head.len() - end;
                    data = data.slice(data.len() - extra..);
                    let raw = self.head.split_to(end).freeze();
                    self.head.clear();
                    match parse(&raw) {
                        Some((head, next)) => {
                            self.state = next;
                            out.push(Event::Request(Box::new(head), raw));
                        }
                        None => self.give_up(raw, out),
                    }
                }
                State::Length(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                    out.push(Event::Body(data.split_to(n)));
                }
                State::Chunked(chunk) => {
                    let (n, next) = match chunk {
                        Chunk::Size(line) | Chunk::Trailer(line) => {
                            let Some(i) = data.iter().position(|&b| b == b'\n') else {
                                line.extend_from_slice(&data);
                                if line.len() > MAX_HEAD {
                                    let rest = std::mem::take(&mut data);
                                    self.give_up(rest, out);
                                    return;
                                }
                                out.push(Event::Body(std::mem::take(&mut data)));
                                return;
                            };
                            line.extend_from_slice(&data[..=i]);
                            let next = match chunk {
                                Chunk::Size(line) => match chunk_size(line) {
                                    Some(0) => Some(State::Chunked(Chunk::Trailer(Vec::new()))),
                                    Some(size) => Some(State::Chunked(Chunk::Data(size))),
                                    None => None,
                                },
                                Chunk::Trailer(line) if line.as_slice() == b"\r\n" || line.as_slice() == b"\n" => {
                                    Some(State::Head)
                                }
                                _ => Some(State::Chunked(Chunk::Trailer(Vec::new()))),
                            };
                            (i + 1, next)
                        }
                        Chunk::Data(left) => {
                            let n = (*left).min(data.len() as u64) as usize;
                            *left -= n as u64;
                            (n, (*left == 0).then_some(State::Chunked(Chunk::DataEnd(2))))
                        }
                        Chunk::DataEnd(left) => {
                            let n = (*left as usize).min(data.len());
                            *left -= n as u8;
                            (n, (*left == 0).then_some(State::Chunked(Chunk::Size(Vec::new()))))
                        }
                    };
                    let piece = data.split_to(n);
                    match next {
                        None if matches!(chunk, Chunk::Size(_)) => {
                            // A chunk size that does not parse: stop framing here.
                            self.state = State::Tunnel;
                            out.push(Event::Opaque(piece));
                        }
                        None => out.push(Event::Body(piece)),
                        Some(state) => {
                            self.state = state;
                            out.push(Event::Body(piece));
                        }
                    }
                }
            }
        }
    }

    fn give_up(&mut self, raw: Bytes, out: &mut Vec<Event>) {
        self.state = State::Tunnel;
        let mut pending = std::mem::take(&mut self.head).freeze();
        if !raw.is_empty() {
            let mut both = BytesMut::from(&raw[..]);
            both.extend_from_slice(&pending);
            pending = both.freeze();
        }
        if !pending.is_empty() {
            out.push(Event::Opaque(pending));
        }
    }

    pub fn tunnel(&self) -> bool {
        matches!(self.state, State::Tunnel)
    }

    /// The server switched protocols: everything from here on is opaque.
    pub fn tunnel_now(&mut self, out: &mut Vec<Event>) {
        if !self.tunnel() {
            self.give_up(Bytes::new(), out);
        }
    }

    /// An unfinished head, handed back at the end of the stream.
    pub fn take_pending(&mut self) -> Bytes {
        std::mem::take(&mut self.head).freeze()
    }
}

/// Where a head ends: after its blank line (CRLF CRLF, or bare LF LF as httparse allows).
fn head_end(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = std::str::from_utf8(line).ok()?;
    let size = line.trim_end_matches(['\r', '\n']).split(';').next()?.trim();
    u64::from_str_radix(size, 16).ok()
}

/// Parses a complete head; returns it and the state for what follows.
fn parse(raw: &[u8]) -> Option<(RequestHead, State)> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let method = req.method?.to_string();
    let path = req.path?.split('?').next().unwrap_or("").to_string();
    let version = req.version?;
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        headers.append(name, value);
    }
    let has_token = |name: &str, token: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    let close = if version == 0 { !has_token("connection", "keep-alive") } else { has_token("connection", "close") };
    let expect_continue = headers.get("expect").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let connect = method == "CONNECT";
    let upgrade = connect || (has_token("connection", "upgrade") && headers.contains_key("upgrade"));
    // An Upgrade request stays framed: the tunnel starts only when the server
    // answers 101 (the caller calls `tunnel_now`); a refusal keeps HTTP going.
    let next = if connect {
        State::Tunnel
    } else if let Some(te) = headers.get_all("transfer-encoding").iter().next_back() {
        let last = te.to_str().ok()?.rsplit(',').next()?.trim().to_ascii_lowercase();
        if last != "chunked" {
            // A request body without a length cannot be framed.
            return None;
        }
        State::Chunked(Chunk::Size(Vec::new()))
    } else if let Some(len) = headers.get("content-length") {
        match len.to_str().ok()?.trim().parse::<u64>().ok()? {
            0 => State::Head,
            n => State::Length(n),
        }
    } else {
        State::Head
    };
    Some((RequestHead { method, path, headers, close, expect_continue, upgrade }, next))
}

/// The response for an aborted request. No body for HEAD, 204 and 304 (and
/// no length for the latter two), so the client's framing stays right.
pub fn abort_response(status: u16, toxic: &str, proxy: &str, close: bool, head_request: bool) -> Bytes {
    let reason = axum::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Aborted");
    let body = format!("aborted by seismo chaos: proxy {proxy} toxic {toxic}\n");
    let toxic_header = if toxic.bytes().all(|b| b.is_ascii_graphic()) { toxic } else { "-" };
    let connection = if close { "connection: close\r\n" } else { "" };
    let bodiless = status == 204 || status == 304;
    let length = if bodiless { String::new() } else { format!("content-length: {}\r\n", body.len()) };
    let body = if bodiless || head_request { "" } else { body.as_str() };
    Bytes::from(format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\n{length}x-seismo-chaos-toxic: {toxic_header}\r\n{connection}\r\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns (heads, body bytes, opaque bytes).
    fn run(input: &[u8], step: usize) -> (Vec<String>, Vec<u8>, Vec<u8>) {
        let mut f = Framer::default();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            f.feed(Bytes::copy_from_slice(piece), &mut out);
        }
        let (mut heads, mut body, mut opaque) = (Vec::new(), Vec::new(), Vec::new());
        for e in out {
            match e {
                Event::Request(h, raw) => {
                    assert!(raw.ends_with(b"\n\r\n") || raw.ends_with(b"\n\n"));
                    heads.push(format!("{} {}", h.method, h.path));
                }
                Event::Body(b) => body.extend_from_slice(&b),
                Event::Opaque(b) => opaque.extend_from_slice(&b),
            }
        }
        (heads, body, opaque)
    }

    #[test]
    fn keep_alive_requests_with_every_body_framing() {
        let input = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n\
POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: y\r\n\r\n\
DELETE /d HTTP/1.1\r\n\r\n";
        for step in [1, 2, 3, 7, 64, input.len()] {
            let (heads, body, opaque) = run(input, step);
            assert_eq!(heads, ["GET /a", "POST /b", "POST /c", "DELETE /d"], "step {step}");
            assert_eq!(
                String::from_utf8(body).unwrap(),
                "hello4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: y\r\n\r\n",
                "step {step}"
            );
            assert!(opaque.is_empty());
        }
    }

    #[test]
    fn connect_and_garbage_become_opaque_upgrades_wait_for_101() {
        let input = b"CONNECT db:5432 HTTP/1.1\r\nHost: db\r\n\r\n\x00\x01binary";
        let (heads, body, opaque) = run(input, 5);
        assert_eq!(heads, ["CONNECT db:5432"]);
        assert!(body.is_empty());
        assert_eq!(opaque, b"\x00\x01binary");
        let mut f = Framer::default();
        let mut out = Vec::new();
        f.feed(Bytes::from_static(b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"), &mut out);
        assert!(matches!(&out[0], Event::Request(h, _) if h.upgrade));
        assert!(!f.tunnel(), "still HTTP until the server agrees");
        f.tunnel_now(&mut out);
        f.feed(Bytes::from_static(b"\x81\x05hello"), &mut out);
        assert!(matches!(out.last(), Some(Event::Opaque(b)) if &b[..] == b"\x81\x05hello"));
        let (heads, _, _) = run(b"GET /bare HTTP/1.1\nHost: h\n\nGET /next HTTP/1.1\r\n\r\n", 3);
        assert_eq!(heads, ["GET /bare", "GET /next"]);
        let (heads, _, opaque) = run(b"GET / HTTP/1.1\r\nbad header line\r\n\r\nrest", 4);
        assert!(heads.is_empty());
        assert_eq!(opaque, b"GET / HTTP/1.1\r\nbad header line\r\n\r\nrest");
    }

    #[test]
    fn connection_semantics() {
        let mut f = Framer::default();
        let mut out = Vec::new();
        f.feed(
            Bytes::from_static(
                b"GET / HTTP/1.0\r\n\r\nPOST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            ),
            &mut out,
        );
        let heads: Vec<_> =
            out.iter().filter_map(|e| if let Event::Request(h, _) = e { Some(h) } else { None }).collect();
        assert!(heads[0].close && !heads[0].expect_continue);
        assert!(!heads[1].close && heads[1].expect_continue);
        assert!(!f.tunnel());
    }

    #[test]
    fn abort_response_is_valid_http() {
        let r = abort_response(503, "pay_503", "payments", true, false);
        let mut slots = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut slots);
        let httparse::Status::Complete(n) = resp.parse(&r).unwrap() else { panic!() };
        assert_eq!(resp.code, Some(503));
        assert_eq!(resp.reason, Some("Service Unavailable"));
        let len: usize = std::str::from_utf8(resp.headers.iter().find(|h| h.name == "content-length").unwrap().value)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(r.len() - n, len);
        let head = abort_response(503, "t", "p", false, true);
        assert!(head.ends_with(b"\r\n\r\n") && std::str::from_utf8(&head).unwrap().contains("content-length: "));
        let none = abort_response(204, "t", "p", false, false);
        assert!(none.ends_with(b"\r\n\r\n") && !std::str::from_utf8(&none).unwrap().contains("content-length"));
    }
}
