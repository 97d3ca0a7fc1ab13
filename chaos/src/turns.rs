//! The HTTP/1 turn queue of one connection: requests in the order the client
//! sent them, each answered either by the upstream or by the agent itself
//! (an `http_abort`). The client-to-server side ([`Requests`]) frames requests
//! and applies the HTTP toxics; the server-to-client side ([`Answers`])
//! delimits responses, so the agent's answers go out in their request's turn
//! (also behind pipelined requests) and each request's fault spans end when
//! its response starts back. Both sides share one [`Turns`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use opentelemetry::trace::SpanContext;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::conn::{Conn, RequestFault};
use crate::h1::{Event, Framer, RequestHead, ResponseEvent, Responses};
use crate::model::{ms, Kind, Toxic};

/// Bytes for the other side of the pump, each not before its instant (if any).
pub(crate) type Placed = Vec<(Bytes, Option<Instant>)>;

/// What the two sides of an HTTP/1 connection share.
#[derive(Default)]
pub(crate) struct Turns {
    exchanges: Mutex<VecDeque<Exchange>>,
    /// The server answered 101 (or 2xx to CONNECT): bytes are a tunnel now.
    upgraded: AtomicBool,
    /// Rung when the agent queued an answer of its own.
    answer_queued: Notify,
}

impl Turns {
    fn push(&self, exchange: Exchange) {
        self.exchanges.lock().unwrap().push_back(exchange);
    }

    /// The connection ended: spans of requests still waiting for their turn go out.
    pub(crate) fn finish(&self, conn: &Conn) {
        let exchanges: Vec<Exchange> = self.exchanges.lock().unwrap().drain(..).collect();
        for e in exchanges {
            let (Exchange::Upstream { spans, .. } | Exchange::Answer { spans, .. }) = e;
            spans.into_iter().for_each(|p| p.finish(conn));
        }
    }
}

/// One HTTP/1 request's turn on the connection.
enum Exchange {
    /// Forwarded: the upstream answers it.
    Upstream { head_request: bool, connect: bool, spans: Vec<PendingSpan> },
    /// Aborted: the agent answers it with `bytes` (closing after, if `close`).
    Answer { bytes: Bytes, close: bool, not_before: Option<Instant>, spans: Vec<PendingSpan> },
}

/// A request's fault span, ended when its response starts back.
struct PendingSpan {
    toxic: Arc<Toxic>,
    parent: Option<SpanContext>,
    start: SystemTime,
    method: String,
    path: String,
}

impl PendingSpan {
    fn for_faults(
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

    fn finish(self, conn: &Conn) {
        let error = self
            .toxic
            .kind
            .is_abort()
            .then(|| format!("{} toxic {} on the connection", self.toxic.kind.type_name(), self.toxic.name));
        let request = RequestFault {
            toxic: &self.toxic,
            parent: self.parent,
            start: self.start,
            error,
            method: &self.method,
            path: &self.path,
            status: None,
        };
        conn.record_request_fault(request, vec![]);
    }
}

/// The server-to-client side of an HTTP/1 connection.
pub(crate) struct Answers {
    turns: Arc<Turns>,
    responses: Responses,
    /// An answer that closes the connection went out.
    pub close: bool,
}

impl Answers {
    pub(crate) fn new(turns: Arc<Turns>) -> Answers {
        Answers { turns, responses: Responses::default(), close: false }
    }

    /// Resolves when the agent queued an answer of its own (place it with `route`).
    pub(crate) async fn answer_queued(&self) {
        self.turns.answer_queued.notified().await
    }

    /// Splits `data` from the server into what goes to the client, in order,
    /// with the agent's answers placed between responses. Empty `data` places
    /// the answers whose turn has come.
    pub(crate) fn route(&mut self, mut data: Bytes, conn: &Conn, out: &mut Placed) {
        let mut exchanges = self.turns.exchanges.lock().unwrap();
        loop {
            while self.responses.idle() && matches!(exchanges.front(), Some(Exchange::Answer { .. })) {
                let Some(Exchange::Answer { bytes, close, not_before, spans }) = exchanges.pop_front() else {
                    unreachable!("front is an answer")
                };
                spans.into_iter().for_each(|p| p.finish(conn));
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
                        spans.drain(..).for_each(|p| p.finish(conn));
                    }
                    if status == 101 || (connect && (200..300).contains(&status)) {
                        self.turns.upgraded.store(true, Ordering::Relaxed);
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

    /// The server closed: a response running until the close ended, and the
    /// answers queued behind it go out.
    pub(crate) fn closed(&mut self, conn: &Conn, out: &mut Placed) {
        let mut exchanges = self.turns.exchanges.lock().unwrap();
        if self.responses.closed() && matches!(exchanges.front(), Some(Exchange::Upstream { .. })) {
            exchanges.pop_front();
        }
        while let Some(Exchange::Answer { .. }) = exchanges.front() {
            let Some(Exchange::Answer { bytes, not_before, spans, .. }) = exchanges.pop_front() else { unreachable!() };
            spans.into_iter().for_each(|p| p.finish(conn));
            out.push((bytes, not_before));
        }
    }
}

/// What happens to the current request's bytes.
#[derive(Clone, Copy)]
enum Forward {
    Now,
    NotBefore(Instant),
    Drop,
}

/// The client-to-server side of an HTTP/1 connection: requests framed, and
/// the HTTP toxics' verdict on each.
pub(crate) struct Requests {
    turns: Arc<Turns>,
    framer: Framer,
    forward: Forward,
    /// The connection is being closed after an answer: drop whatever comes.
    closing: bool,
}

impl Requests {
    pub(crate) fn new(turns: Arc<Turns>) -> Requests {
        Requests { turns, framer: Framer::default(), forward: Forward::Now, closing: false }
    }

    /// Splits `data` into what to forward and when.
    pub(crate) fn frame(&mut self, data: Bytes, conn: &Conn, out: &mut Placed) {
        let mut events = Vec::new();
        if self.turns.upgraded.load(Ordering::Relaxed) && !self.framer.tunnel() {
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
                    self.answer(Exchange::Answer {
                        bytes: Bytes::new(),
                        close: true,
                        not_before: None,
                        spans: Vec::new(),
                    });
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

    /// At the client's EOF: an unfinished head goes through as it is.
    pub(crate) fn take_pending(&mut self) -> Bytes {
        if self.closing {
            return Bytes::new();
        }
        self.framer.take_pending()
    }

    fn answer(&self, answer: Exchange) {
        self.turns.push(answer);
        self.turns.answer_queued.notify_one();
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
                    let spans = PendingSpan::for_faults(faults, &parent, start, head);
                    self.answer(Exchange::Answer { bytes, close, not_before, spans });
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
        let spans = PendingSpan::for_faults(faults, &parent, start, head);
        let (head_request, connect) = (head.method == "HEAD", head.method == "CONNECT");
        self.turns.push(Exchange::Upstream { head_request, connect, spans });
        if delay.is_zero() {
            Forward::Now
        } else {
            Forward::NotBefore(Instant::now() + delay)
        }
    }
}
