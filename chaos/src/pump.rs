//! The pump: both directions of a connection, each reading from its source,
//! applying the TCP toxics through its `Schedule` and writing to its sink.
//! One direction's state is a `Direction`; the loop in `pump` only waits
//! for the next event (a toxic change, an answer of the agent's, a due piece
//! or deadline, a read) and hands it to the matching `on_*` method.
//!
//! With no toxic on a direction and nothing queued, a read is written straight
//! from the read buffer (no copy, no allocation): the pass-through fast path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::conn::{Chain, Conn};
use crate::model::{ms, Kind, Stream, Toxic};
use crate::schedule::{Effects, Schedule};
use crate::turns::{Answers, Placed, Requests, Turns};

/// Read buffer per direction: small for the many quiet connections, grown
/// (doubling) up to the large size while reads keep filling it, which halves
/// the syscalls of a bulk stream.
const READ_BUF: usize = 16 << 10;
const READ_BUF_MAX: usize = 256 << 10;

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
    let turns = http1.then(|| Arc::new(Turns::default()));
    let mut requests = turns.as_ref().map(|t| Requests::new(t.clone()));
    let mut answers = turns.as_ref().map(|t| Answers::new(t.clone()));
    let upstream = requests.as_mut().map_or(Framing::Bytes, Framing::Requests);
    let downstream = answers.as_mut().map_or(Framing::Bytes, Framing::Answers);
    tokio::join!(
        pump(Stream::Upstream, &mut cr, inner_w, &conn, upstream),
        pump(Stream::Downstream, inner_r, &mut cw, &conn, downstream),
    );
    let reset = conn.reset.load(Ordering::Relaxed);
    if reset {
        if let Ok(s) = cr.reunite(cw) {
            zero_linger(s);
        }
    }
    if let Some(turns) = turns {
        turns.finish(&conn);
    }
    conn.export_spans();
    reset
}

/// Closing with a zero linger sends RST instead of FIN.
pub(crate) fn zero_linger(s: TcpStream) {
    #[allow(deprecated)]
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

/// How a direction sees its bytes.
enum Framing<'a> {
    /// As bytes (plain TCP, h2c, or an HTTP/1 tunnel's downstream).
    Bytes,
    /// Client to server on HTTP/1: requests, for the HTTP toxics.
    Requests(&'a mut Requests),
    /// Server to client on HTTP/1: responses, with the agent's answers placed.
    Answers(&'a mut Answers),
}

/// The direction is done: the pump returns.
struct Ended;

type Step = Result<(), Ended>;

/// The toxics of the proxy as this direction sees them.
struct ToxicWatch {
    rx: watch::Receiver<Arc<Chain>>,
    /// The proxy still exists (its sender is alive).
    open: bool,
    /// A change not yet applied (also the toxics present at the start).
    changed: bool,
    /// Toxicity rolled once per toxic (per `id`) per connection.
    rolls: HashMap<u64, bool>,
}

/// How the direction ends, besides its source's EOF.
#[derive(Default)]
struct Ending {
    /// The source ended (slow_close counts from here).
    eof_at: Option<Instant>,
    /// A timeout toxic closes the connection at this instant.
    hold_deadline: Option<Instant>,
    /// A reset_peer toxic resets the connection at this instant.
    reset_at: Option<Instant>,
    /// limit_data reached: close once what is queued went out.
    closing: bool,
    /// The agent answered a request itself and the connection ends after it.
    answer_close: bool,
}

/// One direction of one connection.
struct Direction<'a> {
    conn: &'a Conn,
    dir: Stream,
    received: &'a AtomicU64,
    sent: &'a AtomicU64,
    toxics: ToxicWatch,
    fx: Effects,
    schedule: Schedule,
    ending: Ending,
    /// Bytes let through under the current limit_data toxic.
    limit_sent: i64,
    framing: Framing<'a>,
    /// Scratch for what the framing places, kept to reuse its allocation.
    placed: Placed,
}

/// One direction: read from `src`, apply the toxics, write to `dst`.
async fn pump<R, W>(dir: Stream, src: &mut R, dst: &mut W, conn: &Conn, framing: Framing<'_>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (received, sent) = conn.proxy.stats.counters(dir);
    let toxics = ToxicWatch { rx: conn.proxy.chain.clone(), open: true, changed: true, rolls: HashMap::new() };
    let mut d = Direction {
        conn,
        dir,
        received,
        sent,
        toxics,
        fx: Effects::default(),
        schedule: Schedule::new(),
        ending: Ending::default(),
        limit_sent: 0,
        framing,
        placed: Vec::new(),
    };
    let mut buf = vec![0u8; READ_BUF];
    loop {
        if d.toxics.changed && d.on_toxics_changed().is_err() {
            return;
        }
        let timer = d.next_timer();
        let can_read = d.can_read();
        let step = tokio::select! {
            biased;
            _ = conn.cancel.cancelled() => Err(Ended),
            r = d.toxics.rx.changed(), if d.toxics.open => {
                match r {
                    Ok(()) => d.toxics.changed = true,
                    Err(_) => d.toxics.open = false,
                }
                Ok(())
            }
            _ = answer_queued(&d.framing) => {
                d.on_answer_queued();
                Ok(())
            }
            _ = wake_at(timer), if timer.is_some() => d.on_timer(dst).await,
            r = src.read(&mut buf), if can_read => match r {
                Ok(0) | Err(_) => d.on_eof(),
                Ok(n) => {
                    let step = d.on_read(&buf[..n], dst).await;
                    if n == buf.len() && buf.len() < READ_BUF_MAX {
                        buf.resize(buf.len() * 2, 0);
                    }
                    step
                }
            },
        };
        if step.is_err() {
            return;
        }
    }
}

/// Sleeps until `at` (built only when polled, so a quiet direction never
/// touches the timer).
async fn wake_at(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn answer_queued(framing: &Framing<'_>) {
    match framing {
        Framing::Answers(a) => a.answer_queued().await,
        _ => std::future::pending().await,
    }
}

impl Direction<'_> {
    /// Takes the proxy's toxics as they are now: spans start and end, the
    /// effects change, and what the removed toxics held is released or closed.
    fn on_toxics_changed(&mut self) -> Step {
        self.toxics.changed = false;
        let chain = self.toxics.rx.borrow_and_update().clone();
        let rolls = &mut self.toxics.rolls;
        let active: Vec<Arc<Toxic>> = chain
            .toxics
            .iter()
            .filter(|t| t.stream == self.dir && !t.kind.is_http())
            .filter(|t| *rolls.entry(t.id).or_insert_with(|| t.roll()))
            .cloned()
            .collect();
        for t in &active {
            if !self.fx.active.iter().any(|o| o.id == t.id) {
                self.conn.applied_start(t);
            }
        }
        for old in &self.fx.active {
            if !active.iter().any(|t| t.id == old.id) {
                self.conn.applied_end(old.id);
            }
        }
        let had_timeout = self.fx.timeout.as_ref().map(|t| t.id);
        let had_delays = self.fx.delays();
        let had_limit = self.fx.limit.as_ref().map(|t| t.id);
        self.fx = Effects::new(active);
        if had_timeout.is_some() && self.fx.timeout.is_none() {
            // As Toxiproxy: a timeout toxic's removal closes what it held, so
            // the bytes it swallowed cannot misalign a protocol afterwards.
            return self.cancel();
        }
        if self.fx.limit.as_ref().map(|t| t.id) != had_limit {
            self.limit_sent = 0;
        }
        match &self.fx.timeout {
            Some(t) if had_timeout != Some(t.id) => {
                self.ending.hold_deadline = match t.kind {
                    Kind::Timeout { timeout } if timeout > 0 => Some(Instant::now() + ms(timeout)),
                    _ => None,
                };
            }
            Some(_) => {}
            None => self.ending.hold_deadline = None,
        }
        if self.fx.reset.is_none() {
            if self.ending.reset_at.is_some() {
                // It swallowed bytes already: carrying on would misalign the stream.
                return self.cancel();
            }
            self.ending.reset_at = None;
        }
        if had_delays && !self.fx.delays() {
            // Removing a delaying toxic releases what it held, as Toxiproxy does.
            self.schedule.release(Instant::now());
        }
        Ok(())
    }

    /// When the direction closes normally: slow_close after the source's EOF
    /// (a pending reset wins over closing normally).
    fn close_at(&self) -> Option<Instant> {
        if self.ending.reset_at.is_some() {
            return None;
        }
        self.ending.eof_at.map(|t| t + ms(self.fx.slow_close))
    }

    /// The next instant something is due: a piece, a deadline, or the close.
    fn next_timer(&self) -> Option<Instant> {
        let drained = self.schedule.is_empty();
        let answered_close = (drained && self.ending.answer_close).then(Instant::now);
        [
            self.schedule.next_due(),
            self.ending.hold_deadline,
            self.ending.reset_at,
            if drained { self.close_at() } else { None },
            answered_close,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn can_read(&self) -> bool {
        self.ending.eof_at.is_none()
            && !self.ending.closing
            && self.ending.reset_at.is_none()
            && !self.schedule.is_full()
    }

    /// Bytes may skip the schedule: nothing queued ahead, nothing delays them.
    fn direct(&self) -> bool {
        self.schedule.is_empty() && !self.fx.delays()
    }

    /// The agent queued an answer: the ones whose turn has come are scheduled.
    fn on_answer_queued(&mut self) {
        let Framing::Answers(a) = &mut self.framing else { return };
        a.route(Bytes::new(), self.conn, &mut self.placed);
        self.ending.answer_close |= a.close;
        let now = Instant::now();
        for (data, not_before) in self.placed.drain(..) {
            self.schedule.push(not_before.unwrap_or(now), data);
        }
    }

    /// Writes what is due, then acts on the deadline or close that came.
    async fn on_timer<W: AsyncWrite + Unpin>(&mut self, dst: &mut W) -> Step {
        let now = Instant::now();
        while let Some(data) = self.schedule.pop_due(now) {
            self.write(dst, &data).await?;
        }
        let drained = self.schedule.is_empty();
        if self.ending.closing && drained {
            let _ = dst.flush().await;
            return self.cancel();
        }
        if self.ending.answer_close && drained {
            // FIN first and a moment for the client to read the answer; closing
            // with its unread bytes in our buffer would send an RST instead.
            let _ = dst.shutdown().await;
            tokio::select! {
                _ = self.conn.cancel.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => self.conn.cancel.cancel(),
            }
            return Err(Ended);
        }
        if self.ending.hold_deadline.is_some_and(|d| d <= now) {
            if let Some(t) = &self.fx.timeout {
                self.conn.applied_error(t.id, format!("connection closed by timeout toxic {}", t.name));
            }
            return self.cancel();
        }
        if self.ending.reset_at.is_some_and(|d| d <= now) {
            if let Some(t) = &self.fx.reset {
                self.conn.applied_error(t.id, format!("connection reset by reset_peer toxic {}", t.name));
            }
            self.conn.reset.store(true, Ordering::Relaxed);
            return self.cancel();
        }
        if drained && self.close_at().is_some_and(|c| c <= now) {
            let _ = dst.shutdown().await;
            return Err(Ended);
        }
        Ok(())
    }

    /// The source ended (or failed): what the framing still holds goes out,
    /// then the direction closes after slow_close, or as the toxics say.
    fn on_eof(&mut self) -> Step {
        let now = Instant::now();
        self.ending.eof_at = Some(now);
        match &mut self.framing {
            // An unfinished head goes through as it is, as plain TCP would.
            Framing::Requests(r) => self.placed.push((r.take_pending(), None)),
            Framing::Answers(a) => a.closed(self.conn, &mut self.placed),
            Framing::Bytes => {}
        }
        for (data, not_before) in self.placed.drain(..) {
            self.schedule.enqueue(&self.fx, not_before.unwrap_or(now), data);
        }
        if let Some(t) = &self.fx.reset {
            // The end of the stream counts as data for reset_peer.
            if let Kind::ResetPeer { timeout } = t.kind {
                self.ending.reset_at.get_or_insert(now + ms(timeout));
            }
            return Ok(());
        }
        if self.fx.timeout.is_some() {
            // Toxiproxy's timeout closes as soon as the source does.
            return self.cancel();
        }
        Ok(())
    }

    /// A chunk from the source, through the toxics and the framing.
    async fn on_read<W: AsyncWrite + Unpin>(&mut self, mut chunk: &[u8], dst: &mut W) -> Step {
        self.received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        let now = Instant::now();
        if let Some(t) = &self.fx.timeout {
            // Data stops here; with a timeout, the connection closes that long after the last chunk.
            if let Kind::Timeout { timeout } = t.kind {
                if timeout > 0 {
                    self.ending.hold_deadline = Some(now + ms(timeout));
                }
            }
            return Ok(());
        }
        if let Some(t) = &self.fx.reset {
            if let Kind::ResetPeer { timeout } = t.kind {
                self.ending.reset_at = Some(now + ms(timeout));
            }
            return Ok(());
        }
        if let Some(t) = &self.fx.limit {
            if let Kind::LimitData { bytes } = t.kind {
                let left = (bytes - self.limit_sent).max(0) as usize;
                if chunk.len() >= left {
                    chunk = &chunk[..left];
                    self.ending.closing = true;
                    let error = format!("connection closed after {bytes} bytes by limit_data toxic {}", t.name);
                    self.conn.applied_error(t.id, error);
                }
                self.limit_sent += chunk.len() as i64;
            }
        }
        let direct = self.direct();
        match &mut self.framing {
            Framing::Requests(r) => r.frame(Bytes::copy_from_slice(chunk), self.conn, &mut self.placed),
            Framing::Answers(a) => {
                a.route(Bytes::copy_from_slice(chunk), self.conn, &mut self.placed);
                self.ending.answer_close |= a.close;
            }
            // The fast path: nothing delays or precedes the bytes; straight from the read buffer.
            Framing::Bytes if direct => self.write(dst, chunk).await?,
            Framing::Bytes => self.schedule.enqueue(&self.fx, now, Bytes::copy_from_slice(chunk)),
        }
        let mut placed = std::mem::take(&mut self.placed);
        for (data, not_before) in placed.drain(..) {
            match not_before {
                None if self.direct() => self.write(dst, &data).await?,
                _ => self.schedule.enqueue(&self.fx, not_before.map_or(now, |t| t.max(now)), data),
            }
        }
        self.placed = placed;
        if self.ending.closing && self.schedule.is_empty() {
            // Nothing left to send (limit already reached): close now.
            let _ = dst.flush().await;
            return self.cancel();
        }
        Ok(())
    }

    /// Writes to the sink; a failed write ends the connection.
    async fn write<W: AsyncWrite + Unpin>(&self, dst: &mut W, data: &[u8]) -> Step {
        if data.is_empty() {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = self.conn.cancel.cancelled() => Err(Ended),
            w = dst.write_all(data) => match w {
                Ok(()) => {
                    self.sent.fetch_add(data.len() as u64, Ordering::Relaxed);
                    Ok(())
                }
                Err(_) => self.cancel(),
            }
        }
    }

    /// Ends the whole connection (both directions).
    fn cancel(&self) -> Step {
        self.conn.cancel.cancel();
        Err(Ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ProxyShared;
    use crate::faults::{FaultSink, OtlpProtocol};
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_util::sync::CancellationToken;

    /// A connection of a proxy whose toxics the test sets, and the sender to change them.
    fn conn(toxics: Vec<Arc<Toxic>>) -> (Arc<Conn>, watch::Sender<Arc<Chain>>) {
        let (tx, rx) = watch::channel(Arc::new(Chain { toxics }));
        let faults = Arc::new(FaultSink::new(None, OtlpProtocol::Grpc, &Default::default(), None).unwrap());
        let shared = Arc::new(ProxyShared { name: "p".into(), chain: rx, stats: Default::default(), faults });
        let peer = "127.0.0.1:1".parse().unwrap();
        (Arc::new(Conn::new(shared, peer, "127.0.0.1:2".into(), CancellationToken::new())), tx)
    }

    fn toxic(id: u64, kind: Kind) -> Arc<Toxic> {
        Arc::new(Toxic { id, name: format!("t{id}"), kind, stream: Stream::Upstream, toxicity: 1.0, experiment: None })
    }

    /// Runs the upstream direction from `src` to `dst` until it ends.
    fn spawn_pump(conn: &Arc<Conn>, mut src: DuplexStream, mut dst: DuplexStream) -> tokio::task::JoinHandle<()> {
        let conn = conn.clone();
        tokio::spawn(async move { pump(Stream::Upstream, &mut src, &mut dst, &conn, Framing::Bytes).await })
    }

    async fn read_to_end(mut r: DuplexStream) -> Vec<u8> {
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut out)).await;
        read.expect("the pump closed its sink in time").unwrap();
        out
    }

    #[tokio::test]
    async fn without_toxics_bytes_pass_and_eof_closes_the_sink() {
        let (conn, _tx) = conn(vec![]);
        let (mut client, src) = duplex(1 << 16);
        let (dst, server) = duplex(1 << 16);
        let task = spawn_pump(&conn, src, dst);
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(read_to_end(server).await, b"hello");
        task.await.unwrap();
        let stats = &conn.proxy.stats;
        assert_eq!(stats.upstream_received.load(Ordering::Relaxed), 5);
        assert_eq!(stats.upstream_sent.load(Ordering::Relaxed), 5);
        assert!(!conn.cancel.is_cancelled(), "a clean close ends only this direction");
    }

    #[tokio::test]
    async fn removing_latency_releases_what_it_held() {
        let (conn, tx) = conn(vec![toxic(1, Kind::Latency { latency: 3_600_000, jitter: 0 })]);
        let (mut client, src) = duplex(1 << 16);
        let (dst, server) = duplex(1 << 16);
        let task = spawn_pump(&conn, src, dst);
        client.write_all(b"held").await.unwrap();
        client.shutdown().await.unwrap();
        // Read (and held) before the toxic goes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while conn.proxy.stats.upstream_received.load(Ordering::Relaxed) < 4 {
            assert!(Instant::now() < deadline, "the pump never read the bytes");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(conn.proxy.stats.upstream_sent.load(Ordering::Relaxed), 0, "latency holds them");
        // An hour of latency: only the toxic's removal lets the bytes out in time.
        tx.send_replace(Arc::new(Chain::default()));
        assert_eq!(read_to_end(server).await, b"held");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn limit_data_cuts_the_stream_and_ends_the_connection() {
        let (conn, _tx) = conn(vec![toxic(1, Kind::LimitData { bytes: 3 })]);
        let (mut client, src) = duplex(1 << 16);
        let (dst, server) = duplex(1 << 16);
        let task = spawn_pump(&conn, src, dst);
        client.write_all(b"hello").await.unwrap();
        assert_eq!(read_to_end(server).await, b"hel");
        task.await.unwrap();
        assert!(conn.cancel.is_cancelled(), "limit_data closes both directions");
    }
}
