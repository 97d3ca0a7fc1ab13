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
pub(crate) struct RequestHead {
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
pub(crate) enum Event {
    /// A complete request head, and its raw bytes.
    Request(Box<RequestHead>, Bytes),
    /// Bytes of the current request's body (chunk framing included).
    Body(Bytes),
    /// Bytes after framing ended (upgrade, CONNECT, or not parsable).
    Opaque(Bytes),
}

/// Where a chunked body is: in a size line, chunk data, the CRLF after it,
/// or the trailer section.
#[derive(Debug)]
enum Chunk {
    Size(Vec<u8>),
    Data(u64),
    DataEnd(u8),
    Trailer(Vec<u8>),
}

#[derive(Debug, PartialEq)]
enum ChunkStep {
    /// All of the bytes belong to the body, which goes on.
    More,
    /// The body (trailers included) ended after the bytes consumed.
    Done,
    /// A size line that does not parse (or a line too long).
    Bad,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk::Size(Vec::new())
    }

    /// Consumes a prefix of `data` belonging to the chunked body.
    fn scan(&mut self, data: &[u8]) -> (usize, ChunkStep) {
        let mut used = 0;
        while used < data.len() {
            let rest = &data[used..];
            match self {
                Chunk::Size(line) | Chunk::Trailer(line) => {
                    let Some(i) = rest.iter().position(|&b| b == b'\n') else {
                        line.extend_from_slice(rest);
                        if line.len() > MAX_HEAD {
                            return (data.len(), ChunkStep::Bad);
                        }
                        return (data.len(), ChunkStep::More);
                    };
                    line.extend_from_slice(&rest[..=i]);
                    used += i + 1;
                    *self = match self {
                        Chunk::Size(line) => match chunk_size(line) {
                            Some(0) => Chunk::Trailer(Vec::new()),
                            Some(size) => Chunk::Data(size),
                            None => return (used, ChunkStep::Bad),
                        },
                        Chunk::Trailer(line) if line.as_slice() == b"\r\n" || line.as_slice() == b"\n" => {
                            *self = Chunk::new();
                            return (used, ChunkStep::Done);
                        }
                        _ => Chunk::Trailer(Vec::new()),
                    };
                }
                Chunk::Data(left) => {
                    let n = (*left).min(rest.len() as u64) as usize;
                    *left -= n as u64;
                    used += n;
                    if *left == 0 {
                        *self = Chunk::DataEnd(2);
                    }
                }
                Chunk::DataEnd(left) => {
                    let n = (*left as usize).min(rest.len());
                    *left -= n as u8;
                    used += n;
                    if *left == 0 {
                        *self = Chunk::new();
                    }
                }
            }
        }
        (used, ChunkStep::More)
    }
}

#[derive(Debug)]
enum State {
    Head,
    Length(u64),
    Chunked(Chunk),
    Tunnel,
}

#[derive(Debug)]
pub(crate) struct Framer {
    state: State,
    head: BytesMut,
}

impl Default for Framer {
    fn default() -> Self {
        Framer { state: State::Head, head: BytesMut::new() }
    }
}

impl Framer {
    pub(crate) fn feed(&mut self, mut data: Bytes, out: &mut Vec<Event>) {
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
                    let (n, step) = chunk.scan(&data);
                    let piece = data.split_to(n);
                    match step {
                        ChunkStep::More => out.push(Event::Body(piece)),
                        ChunkStep::Done => {
                            self.state = State::Head;
                            out.push(Event::Body(piece));
                        }
                        ChunkStep::Bad => {
                            // A chunk size that does not parse: stop framing here.
                            self.state = State::Tunnel;
                            out.push(Event::Opaque(piece));
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

    pub(crate) fn tunnel(&self) -> bool {
        matches!(self.state, State::Tunnel)
    }

    /// The server switched protocols: everything from here on is opaque.
    pub(crate) fn tunnel_now(&mut self, out: &mut Vec<Event>) {
        if !self.tunnel() {
            self.give_up(Bytes::new(), out);
        }
    }

    /// An unfinished head, handed back at the end of the stream.
    pub(crate) fn take_pending(&mut self) -> Bytes {
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
        State::Chunked(Chunk::new())
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

/// Where the responses to forwarded requests begin and end, read off the
/// bytes coming back from the server (which pass on untouched), so the
/// agent's own answers go out in their turn and request spans end on time.
#[derive(Debug, Default)]
pub(crate) struct Responses {
    state: RState,
    head: Vec<u8>,
}

#[derive(Debug, Default)]
enum RState {
    #[default]
    Head,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Tunnel,
}

#[derive(Debug, PartialEq)]
pub(crate) enum ResponseEvent {
    /// A head with this status; `ended` when no body follows (HEAD, 204,
    /// 304, length 0). A 1xx other than 101 is followed by another head.
    Head { status: u16, ended: bool },
    /// The body ended.
    End,
}

impl Responses {
    /// Between responses: nothing of the next one has arrived.
    pub(crate) fn idle(&self) -> bool {
        matches!(self.state, RState::Head) && self.head.is_empty()
    }

    /// Switched protocols (or stopped making sense): no more responses.
    pub(crate) fn tunnel(&self) -> bool {
        matches!(self.state, RState::Tunnel)
    }

    /// A CONNECT was accepted: what follows is the tunnel.
    pub(crate) fn tunnel_now(&mut self) {
        self.state = RState::Tunnel;
        self.head.clear();
    }

    /// Scans `data`, bytes of the response to a request (`head_request` when
    /// it was a HEAD); returns how many bytes it consumed, up to and
    /// including the first event.
    pub(crate) fn scan(&mut self, data: &[u8], head_request: bool) -> (usize, Option<ResponseEvent>) {
        match &mut self.state {
            RState::Tunnel | RState::UntilClose => (data.len(), None),
            RState::Head => {
                let before = self.head.len();
                let searched = before.saturating_sub(3);
                self.head.extend_from_slice(data);
                let Some(end) = head_end(&self.head[searched..]).map(|i| searched + i) else {
                    if self.head.len() > MAX_HEAD {
                        self.state = RState::Tunnel;
                        self.head.clear();
                    }
                    return (data.len(), None);
                };
                let parsed = parse_response(&self.head[..end], head_request);
                self.head.clear();
                match parsed {
                    None => {
                        self.state = RState::Tunnel;
                        (data.len(), None)
                    }
                    Some((status, next, ended)) => {
                        self.state = next;
                        (end - before, Some(ResponseEvent::Head { status, ended }))
                    }
                }
            }
            RState::Length(left) => {
                let n = (*left).min(data.len() as u64);
                *left -= n;
                if *left == 0 {
                    self.state = RState::Head;
                    (n as usize, Some(ResponseEvent::End))
                } else {
                    (n as usize, None)
                }
            }
            RState::Chunked(chunk) => match chunk.scan(data) {
                (n, ChunkStep::More) => (n, None),
                (n, ChunkStep::Done) => {
                    self.state = RState::Head;
                    (n, Some(ResponseEvent::End))
                }
                (_, ChunkStep::Bad) => {
                    self.state = RState::Tunnel;
                    (data.len(), None)
                }
            },
        }
    }

    /// The server closed the connection: a body running until then ended.
    pub(crate) fn closed(&mut self) -> bool {
        let until_close = matches!(self.state, RState::UntilClose);
        self.state = RState::Tunnel;
        until_close
    }
}

/// A response head: its status, what follows, and whether it already ended.
fn parse_response(raw: &[u8], head_request: bool) -> Option<(u16, RState, bool)> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    match resp.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let status = resp.code?;
    if status == 101 {
        return Some((status, RState::Tunnel, true));
    }
    if (100..200).contains(&status) {
        return Some((status, RState::Head, false));
    }
    if head_request || status == 204 || status == 304 {
        return Some((status, RState::Head, true));
    }
    let headers = &*resp.headers;
    let header = |name: &'static str| headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name));
    let chunked = header("transfer-encoding").next_back().is_some_and(|h| {
        std::str::from_utf8(h.value)
            .is_ok_and(|v| v.rsplit(',').next().unwrap_or("").trim().eq_ignore_ascii_case("chunked"))
    });
    if chunked {
        return Some((status, RState::Chunked(Chunk::new()), false));
    }
    match header("content-length").next() {
        Some(h) => match std::str::from_utf8(h.value).ok()?.trim().parse::<u64>().ok()? {
            0 => Some((status, RState::Head, true)),
            n => Some((status, RState::Length(n), false)),
        },
        None => Some((status, RState::UntilClose, false)),
    }
}

/// The response for an aborted request. No body for HEAD, 204 and 304 (and
/// no length for the latter two), so the client's framing stays right.
pub(crate) fn abort_response(status: u16, toxic: &str, proxy: &str, close: bool, head_request: bool) -> Bytes {
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
    fn responses_are_delimited_whatever_their_framing() {
        let stream: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n\
HTTP/1.1 200 OK\r\n\r\nuntil close";
        // The fifth answers a HEAD: its length announces no body.
        let heads = [false, false, false, true, false];
        for step in [1, 5, stream.len()] {
            let mut r = Responses::default();
            let (mut exchange, mut events) = (0usize, Vec::new());
            for piece in stream.chunks(step) {
                let mut at = 0;
                while at < piece.len() {
                    let (n, ev) = r.scan(&piece[at..], heads.get(exchange).copied().unwrap_or(false));
                    at += n;
                    match ev {
                        Some(ResponseEvent::Head { ended: true, status }) => {
                            events.push(format!("{status} end"));
                            exchange += 1;
                        }
                        Some(ResponseEvent::Head { status, .. }) => events.push(format!("{status}")),
                        Some(ResponseEvent::End) => {
                            events.push("end".into());
                            exchange += 1;
                        }
                        None => {}
                    }
                }
            }
            assert!(r.closed(), "the last body runs until close");
            assert_eq!(events, ["100", "200", "end", "200", "end", "204 end", "200 end", "200"], "step {step}");
        }
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
