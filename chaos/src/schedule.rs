//! The toxic schedule of one direction of one connection: what the TCP toxics
//! do to its bytes ([`Effects`]) and when each piece may go out
//! ([`Schedule`]). Pure bookkeeping over `Instant`s and `Bytes`: no I/O, so
//! the pump owns the sockets and this file owns the arithmetic.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::model::{ms, Kind, Toxic};

/// Most data a direction holds back (latency, bandwidth) before it stops reading.
const MAX_QUEUED: usize = 4 << 20;

/// What one direction of one connection does to its bytes, derived from the
/// toxics that apply to it (toxicity rolled once per toxic per connection).
#[derive(Default)]
pub(crate) struct Effects {
    pub active: Vec<Arc<Toxic>>,
    /// (latency, jitter) in ms, one per latency toxic; they add up.
    latency: Vec<(i64, i64)>,
    /// (average_size, size_variation, delay µs) of the first slicer.
    slicer: Option<(i64, i64, i64)>,
    /// The tightest bandwidth, KB/s.
    bandwidth: Option<i64>,
    pub timeout: Option<Arc<Toxic>>,
    pub reset: Option<Arc<Toxic>>,
    /// The tightest limit_data.
    pub limit: Option<Arc<Toxic>>,
    /// Sum of the slow_close delays, ms.
    pub slow_close: i64,
}

impl Effects {
    pub(crate) fn new(active: Vec<Arc<Toxic>>) -> Effects {
        let mut e = Effects::default();
        for t in &active {
            match &t.kind {
                Kind::Latency { latency, jitter } => e.latency.push((*latency, *jitter)),
                Kind::Slicer { average_size, size_variation, delay } => {
                    e.slicer.get_or_insert((*average_size, *size_variation, *delay));
                }
                Kind::Bandwidth { rate } if *rate > 0 => {
                    e.bandwidth = Some(e.bandwidth.map_or(*rate, |r| r.min(*rate)));
                }
                Kind::Bandwidth { .. } => {}
                Kind::Timeout { .. } => {
                    e.timeout.get_or_insert_with(|| t.clone());
                }
                Kind::ResetPeer { .. } => {
                    e.reset.get_or_insert_with(|| t.clone());
                }
                Kind::LimitData { bytes } => {
                    let tighter = match &e.limit {
                        Some(cur) => matches!(cur.kind, Kind::LimitData { bytes: b } if *bytes < b),
                        None => true,
                    };
                    if tighter {
                        e.limit = Some(t.clone());
                    }
                }
                Kind::SlowClose { delay } => e.slow_close += *delay,
                Kind::HttpAbort { .. } | Kind::HttpDelay { .. } | Kind::Process { .. } => {}
            }
        }
        e.active = active;
        e
    }

    /// Whether bytes wait before going out (else they may be written at once).
    pub(crate) fn delays(&self) -> bool {
        !self.latency.is_empty() || self.slicer.is_some() || self.bandwidth.is_some()
    }
}

struct Piece {
    due: Instant,
    /// Never before this, even when the toxics that delayed it go (an http_delay's hold).
    floor: Instant,
    data: Bytes,
}

/// Pieces waiting to be written, in wire order, each with the instant it is due.
pub(crate) struct Schedule {
    queue: VecDeque<Piece>,
    /// Bytes in `queue`.
    queued: usize,
    /// The latest due instant handed out: order on the wire is kept.
    last_due: Instant,
    /// When the bandwidth limit lets the next byte go.
    bw_free: Instant,
}

impl Schedule {
    pub(crate) fn new() -> Schedule {
        let now = Instant::now();
        Schedule { queue: VecDeque::new(), queued: 0, last_due: now, bw_free: now }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Enough held back: the direction stops reading until some goes out.
    pub(crate) fn is_full(&self) -> bool {
        self.queued >= MAX_QUEUED
    }

    /// When the first piece is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|p| p.due)
    }

    /// The first piece, if due by `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Bytes> {
        if self.queue.front().is_none_or(|p| p.due > now) {
            return None;
        }
        let p = self.queue.pop_front()?;
        self.queued -= p.data.len();
        Some(p.data)
    }

    /// Schedules a chunk that arrived at `arrival`: latency (± jitter) from its
    /// arrival, then the slicer's pieces, then the bandwidth limit.
    pub(crate) fn enqueue(&mut self, fx: &Effects, arrival: Instant, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let first = self.queue.len();
        self.enqueue_pieces(fx, arrival, data);
        for p in self.queue.iter_mut().skip(first) {
            p.floor = arrival;
        }
    }

    fn enqueue_pieces(&mut self, fx: &Effects, arrival: Instant, data: Bytes) {
        let mut delay_ms: i64 = 0;
        for (latency, jitter) in &fx.latency {
            let j = if *jitter > 0 { rand::random_range(-*jitter..*jitter) } else { 0 };
            delay_ms += (latency + j).max(0);
        }
        let due = (arrival + ms(delay_ms)).max(self.last_due);
        let mut pieces: Vec<(Instant, Bytes)> = Vec::new();
        match fx.slicer {
            Some((average, variation, delay_us)) if average > 0 => {
                let mut at = due;
                for range in slices(data.len(), average as usize, variation.max(0) as usize) {
                    pieces.push((at, data.slice(range)));
                    at += Duration::from_micros(delay_us.max(0) as u64);
                }
            }
            _ => pieces.push((due, data)),
        }
        for (due, data) in pieces {
            match fx.bandwidth {
                Some(rate) => {
                    // rate is KB/s, i.e. `rate` bytes per millisecond; send at most 100 ms worth at a time.
                    let step = (rate as usize * 100).max(1);
                    let mut off = 0;
                    while off < data.len() {
                        let end = (off + step).min(data.len());
                        let at = due.max(self.bw_free);
                        self.bw_free = at + Duration::from_micros(((end - off) as u64 * 1000) / rate as u64);
                        self.push(at, data.slice(off..end));
                        off = end;
                    }
                }
                None => self.push(due, data),
            }
        }
    }

    /// Queues `data` as it is, due at `due` (or behind what is queued).
    pub(crate) fn push(&mut self, due: Instant, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let due = due.max(self.last_due);
        self.last_due = due;
        self.queued += data.len();
        self.queue.push_back(Piece { due, floor: due, data });
    }

    /// The delaying toxics went: what they held is due now (but not before its
    /// floor), as Toxiproxy releases it.
    pub(crate) fn release(&mut self, now: Instant) {
        for p in self.queue.iter_mut() {
            p.due = p.due.min(now).max(p.floor);
        }
        self.last_due = self.queue.iter().map(|p| p.due).max().unwrap_or(now);
    }
}

/// Toxiproxy's slicer: halve until a piece is within `variation` of `average`,
/// moving each cut by up to ± `variation`.
fn slices(len: usize, average: usize, variation: usize) -> Vec<std::ops::Range<usize>> {
    fn cut(start: usize, end: usize, average: usize, variation: usize, out: &mut Vec<std::ops::Range<usize>>) {
        if (end - start).saturating_sub(average) <= variation || end - start < 2 {
            out.push(start..end);
            return;
        }
        let mut mid = start + (end - start) / 2;
        if variation > 0 {
            let shift = rand::random_range(0..variation * 2) as isize - variation as isize;
            mid = (mid as isize + shift).clamp(start as isize + 1, end as isize - 1) as usize;
        }
        cut(start, mid, average, variation, out);
        cut(mid, end, average, variation, out);
    }
    let mut out = Vec::new();
    cut(0, len, average, variation, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Stream;

    fn toxic(kind: Kind) -> Arc<Toxic> {
        Arc::new(Toxic { id: 1, name: "t".into(), kind, stream: Stream::Downstream, toxicity: 1.0, experiment: None })
    }

    #[test]
    fn slices_cover_the_chunk_in_order() {
        for (len, avg, var) in [(1000, 10, 0), (1000, 10, 5), (7, 100, 0), (65536, 1, 0)] {
            let s = slices(len, avg, var);
            assert_eq!(s.first().unwrap().start, 0);
            assert_eq!(s.last().unwrap().end, len);
            assert!(s.windows(2).all(|w| w[0].end == w[1].start));
            assert!(s.iter().all(|r| r.len() <= avg + var || r.len() < 2), "{len} {avg} {var}");
        }
    }

    #[test]
    fn bandwidth_spreads_chunks_over_time() {
        let fx = Effects::new(vec![toxic(Kind::Bandwidth { rate: 10 })]);
        let mut s = Schedule::new();
        let now = Instant::now();
        s.enqueue(&fx, now, Bytes::from(vec![0u8; 5000]));
        // 10 KB/s: 1,000-byte pieces 100 ms apart, the last leaving 400 ms after the first.
        assert_eq!(s.queue.len(), 5);
        assert_eq!(s.queue.back().unwrap().due - s.queue.front().unwrap().due, Duration::from_millis(400));
        assert_eq!(s.bw_free - now, Duration::from_millis(500));
    }

    #[test]
    fn released_pieces_keep_their_floor_and_order() {
        let fx = Effects::new(vec![toxic(Kind::Latency { latency: 60_000, jitter: 0 })]);
        let mut s = Schedule::new();
        let now = Instant::now();
        s.enqueue(&fx, now, Bytes::from_static(b"held"));
        let hold = now + Duration::from_secs(5);
        s.push(hold, Bytes::from_static(b"not before"));
        assert_eq!(s.pop_due(now), None, "latency holds the first piece");
        s.release(now);
        assert_eq!(s.pop_due(now).as_deref(), Some(&b"held"[..]));
        assert_eq!(s.pop_due(now), None, "a floor outlives the toxic that delayed it");
        assert!(s.next_due().unwrap() >= hold);
        assert!(!s.is_full());
    }
}
