//! The write path: an append is validated and converted on the caller's
//! thread (a large one, awaited from async code, on tokio's blocking pool),
//! queued to the writer thread, written to the WAL in a group with
//! whatever else queued meanwhile (one fsync for the group), inserted into
//! the active memtable, and only then acknowledged.
//!
//! Back-pressure: a bounded queue answers `Busy`; at the cap on unflushed
//! data an append waits for a flush to make room, and gets `Busy` only when
//! none does within `ingest_wait`.
//! A full disk is a state (`diskfull`): appends are refused at once while it
//! lasts, and the writer thread probes for room and ends it. Any other WAL
//! failure refuses writes until a restart.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TrySendError};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::batch::{Converted, Received, Rows};
use super::flush::{freeze, nudge_flush, request_flush};
use super::{Inner, Store};
use crate::diskfull;
use crate::error::{Result, StoreError};
use crate::model::Signal;
use crate::wal::WalWriter;

/// What an append stored: `rejected > 0` is a partial success to report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub accepted: u64,
    pub rejected: u64,
    pub message: Option<String>,
}

/// What the writer thread is asked to do.
pub(super) enum Cmd {
    Append {
        signal: Signal,
        payload: Bytes,
        rows: Rows,
        done: oneshot::Sender<Result<()>>,
    },
    /// Rotate the WAL and freeze the active memtable at one sequence number (see `flush`).
    Freeze(mpsc::Sender<Result<()>>),
    Stop,
}

impl Store {
    /// Validates and converts the request, writes it to the WAL, waits until
    /// it is fsynced, makes it visible to queries, and only then returns: an
    /// `Ok` means the data survives a crash. Takes a [`Batch`](super::Batch) or a
    /// [`Received`] (a batch with the protobuf bytes it arrived as, which the
    /// WAL then stores without encoding the request again).
    ///
    /// A large request is converted on tokio's blocking pool, so that the
    /// caller's async worker keeps serving other connections meanwhile.
    ///
    /// # Errors
    /// `InvalidId` / `InvalidRequest` for unusable input (nothing is stored);
    /// `Busy` when the write queue or the unflushed data is at its bound (retry
    /// later); `DiskFull` while the disk has no room (retry later, nothing was
    /// stored); `WalFailed` after the WAL failed otherwise; `Closed` after shutdown.
    pub async fn append(&self, request: impl Into<Received>) -> Result<AppendOutcome> {
        let request = request.into();
        self.check_writable()?;
        // Waiting before the conversion: a request held back keeps only its bytes.
        self.wait_for_room().await?;
        let converted = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if request.is_large() => match runtime.spawn_blocking(move || request.convert()).await {
                Ok(converted) => converted,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The runtime is shutting down.
                Err(_) => return Err(StoreError::Closed),
            },
            _ => request.convert(),
        }?;
        let (outcome, rx) = self.submit(converted)?;
        if let Some(rx) = rx {
            rx.await.map_err(|_| StoreError::Closed)??;
        }
        Ok(outcome)
    }

    /// [`Store::append`] for callers outside an async runtime (the conversion
    /// runs on the calling thread).
    pub fn append_blocking(&self, request: impl Into<Received>) -> Result<AppendOutcome> {
        self.check_writable()?;
        if self.unflushed_bytes() >= self.inner.config.max_memtable_bytes {
            // As `wait_for_room`, polling: no runtime to wait on here.
            let (started, c) = (Instant::now(), &self.inner.counters);
            c.ingest_waits.fetch_add(1, Ordering::Relaxed);
            nudge_flush(&self.inner);
            while self.unflushed_bytes() >= self.inner.config.max_memtable_bytes
                && started.elapsed() < self.inner.config.ingest_wait
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            c.ingest_wait_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            self.check_pressure()?;
        }
        let (outcome, rx) = self.submit(request.into().convert()?)?;
        if let Some(rx) = rx {
            rx.blocking_recv().map_err(|_| StoreError::Closed)??;
        }
        Ok(outcome)
    }

    /// Refuses at once, before any conversion, while the store takes no writes.
    fn check_writable(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        if let Some(reason) = self.inner.wal_failure.get() {
            return Err(StoreError::WalFailed(reason.clone()));
        }
        // Refused at once: nothing is converted, queued or written while full.
        if self.inner.disk_full.is_full() {
            if let Some(refusal) = self.inner.disk_full.refusal() {
                self.inner.counters.disk_full_refusals.fetch_add(1, Ordering::Relaxed);
                return Err(refusal);
            }
        }
        Ok(())
    }

    /// Queues converted rows for the writer thread; the receiver resolves when
    /// they are durable (`None` when there was nothing to write).
    #[allow(clippy::type_complexity)]
    fn submit(&self, converted: Converted) -> Result<(AppendOutcome, Option<oneshot::Receiver<Result<()>>>)> {
        let Converted { signal, payload, rows, rejected, message } = converted;
        let c = &self.inner.counters;
        c.rejected.fetch_add(rejected, Ordering::Relaxed);
        let outcome = AppendOutcome { accepted: rows.len() as u64, rejected, message };
        if rows.len() == 0 {
            return Ok((outcome, None));
        }
        let (done, rx) = oneshot::channel();
        match self.inner.tx.try_send(Cmd::Append { signal, payload, rows, done }) {
            Ok(()) => Ok((outcome, Some(rx))),
            Err(TrySendError::Full(_)) => {
                c.busy.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::Busy("write queue is full".into()))
            }
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Closed),
        }
    }

    /// Holds an append back while the unflushed data is at `max_memtable_bytes`,
    /// until a flush makes room, for up to `ingest_wait`; then refuses it
    /// ([`Store::check_pressure`]). So memory stays bounded when ingest outruns
    /// the flush, and a client that waits for each acknowledgement is slowed to
    /// the flush's pace instead of refused. Appends let through together may
    /// take the memtables past the cap by their own size, which the
    /// collector's in-flight budget bounds.
    async fn wait_for_room(&self) -> Result<()> {
        let cap = self.inner.config.max_memtable_bytes;
        if self.unflushed_bytes() < cap {
            return Ok(());
        }
        let started = tokio::time::Instant::now();
        let c = &self.inner.counters;
        c.ingest_waits.fetch_add(1, Ordering::Relaxed);
        // A memtable at the cap is due (see `StoreConfig::full_memtable_bytes`).
        nudge_flush(&self.inner);
        let waited = || c.ingest_wait_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let deadline = started + self.inner.config.ingest_wait;
        loop {
            // Registered before the check, so a flush finishing between the
            // two still wakes this append.
            let room = self.inner.room.notified();
            let mut room = std::pin::pin!(room);
            room.as_mut().enable();
            if self.inner.closed.load(Ordering::Acquire) {
                waited();
                return Err(StoreError::Closed);
            }
            if self.unflushed_bytes() < cap {
                waited();
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                waited();
                return self.check_pressure();
            }
        }
    }

    /// Refuses new data while the unflushed data is at `max_memtable_bytes`.
    fn check_pressure(&self) -> Result<()> {
        let unflushed = self.unflushed_bytes();
        let cap = self.inner.config.max_memtable_bytes;
        if unflushed >= cap {
            self.inner.counters.busy.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Busy(format!(
                "flushing is behind ingest: {unflushed} bytes not yet flushed, the limit is {cap} (--max-memtable-bytes)"
            )));
        }
        Ok(())
    }

    /// Bytes of requests acknowledged but not yet in segments (the active and
    /// the frozen memtables), as counted against `max_memtable_bytes`.
    pub fn unflushed_bytes(&self) -> usize {
        self.inner.sources.read().unwrap().unflushed_bytes()
    }
}

/// Most appends one WAL write groups together.
const GROUP_MAX_CMDS: usize = 1024;
const GROUP_MAX_BYTES: usize = 32 << 20;

/// The writer thread: the WAL's owner and the active memtable's only writer.
pub(super) fn writer_loop(inner: std::sync::Arc<Inner>, mut wal: WalWriter, rx: Receiver<Cmd>) {
    let mut buf = Vec::with_capacity(1 << 20);
    let mut group: Vec<(Rows, usize, oneshot::Sender<Result<()>>)> = Vec::new();
    let mut last_probe = Instant::now();
    loop {
        // Wake up at least once per probe interval: while the disk is full no
        // append reaches this thread (they are refused at once), and the flusher
        // may have entered the state while this thread waited.
        let wait = if inner.disk_full.is_full() {
            diskfull::PROBE_INTERVAL.saturating_sub(last_probe.elapsed())
        } else {
            diskfull::PROBE_INTERVAL
        };
        let first = match rx.recv_timeout(wait) {
            Ok(cmd) => Some(cmd),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if inner.disk_full.is_full() && last_probe.elapsed() >= diskfull::PROBE_INTERVAL {
            probe_disk(&inner, &mut wal);
            last_probe = Instant::now();
        }
        let mut next = first;
        let mut control = None;
        buf.clear();
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Append { signal, payload, rows, done } => {
                    wal.encode(&mut buf, signal, &payload);
                    group.push((rows, payload.len(), done));
                }
                other => {
                    control = Some(other);
                    break;
                }
            }
            if group.len() < GROUP_MAX_CMDS && buf.len() < GROUP_MAX_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if !group.is_empty() {
            match write_group(&inner, &mut wal, &buf) {
                Ok(()) => {
                    let c = &inner.counters;
                    c.wal_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
                    c.wal_syncs.fetch_add(1, Ordering::Relaxed);
                    let active = inner.sources.read().unwrap().active().clone();
                    let mut m = active.write().unwrap();
                    for (rows, bytes, done) in group.drain(..) {
                        let counter = match &rows {
                            Rows::Spans(_) | Rows::Parsed(_) => &c.spans,
                            Rows::Logs(_) => &c.logs,
                            Rows::Metrics(_) => &c.metric_points,
                        };
                        counter.fetch_add(rows.len() as u64, Ordering::Relaxed);
                        match &rows {
                            Rows::Parsed(_) => c.trace_requests_parsed.fetch_add(1, Ordering::Relaxed),
                            Rows::Spans(_) => c.trace_requests_decoded.fetch_add(1, Ordering::Relaxed),
                            Rows::Logs(_) | Rows::Metrics(_) => 0,
                        };
                        rows.insert_into(&mut m, bytes);
                        let _ = done.send(Ok(()));
                    }
                    let full =
                        m.rows() >= inner.config.flush_rows || m.held_bytes() >= inner.config.full_memtable_bytes();
                    drop(m);
                    if full {
                        nudge_flush(&inner);
                    }
                }
                Err(refusal) => {
                    if matches!(refusal, StoreError::DiskFull(_)) {
                        inner.counters.disk_full_refusals.fetch_add(group.len() as u64, Ordering::Relaxed);
                    }
                    for (_, _, done) in group.drain(..) {
                        let _ = done.send(Err(same_refusal(&refusal)));
                    }
                }
            }
        }
        match control {
            Some(Cmd::Freeze(reply)) => {
                let r = freeze(&inner, &mut wal);
                let _ = reply.send(r);
            }
            Some(Cmd::Stop) => break,
            _ => {}
        }
    }
}

/// Writes and fsyncs one group, or says why it may not be written. On `Err`
/// nothing of the group may be acknowledged.
///
/// A full disk (ENOSPC / EDQUOT) enters the disk-full state and cuts the group
/// off the WAL again (see [`WalWriter::repair`]); any other failure stops
/// writes for good: the device is failing, and retrying after a failed fsync
/// could acknowledge data that never reached the disk. Both are answered as
/// "retry later" by the collector, never as a permanent error, because the
/// client still holds the data.
fn write_group(inner: &Inner, wal: &mut WalWriter, buf: &[u8]) -> Result<()> {
    if let Some(reason) = inner.wal_failure.get() {
        return Err(StoreError::WalFailed(reason.clone()));
    }
    if let Some(refusal) = inner.disk_full.refusal() {
        return Err(refusal);
    }
    let Err(e) = wal_write(inner, wal, buf) else { return Ok(()) };
    if diskfull::is_out_of_space(&e) {
        let reason = format!("writing the WAL: {e}");
        inner.disk_full.enter(reason.clone(), buf.len() as u64);
        if let Err(e) = wal.repair() {
            tracing::warn!(error = %e, "cannot cut the failed group off the WAL yet; will retry before the next write");
        }
        return Err(StoreError::DiskFull(reason));
    }
    tracing::error!(error = %e, "WAL write failed; refusing writes until restarted (queries go on)");
    let reason = inner.wal_failure.get_or_init(|| e.to_string()).clone();
    Err(StoreError::WalFailed(reason))
}

#[cfg(not(test))]
fn wal_write(_inner: &Inner, wal: &mut WalWriter, buf: &[u8]) -> std::io::Result<()> {
    wal.write_and_sync(buf)
}

#[cfg(test)]
fn wal_write(inner: &Inner, wal: &mut WalWriter, buf: &[u8]) -> std::io::Result<()> {
    if inner.inject_enospc.load(Ordering::Acquire) {
        return wal.write_half_then_fail(buf, std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    wal.write_and_sync(buf)
}

/// One group's refusal, again for each of its callers.
fn same_refusal(e: &StoreError) -> StoreError {
    match e {
        StoreError::DiskFull(reason) => StoreError::DiskFull(reason.clone()),
        StoreError::WalFailed(reason) => StoreError::WalFailed(reason.clone()),
        other => StoreError::WalFailed(other.to_string()),
    }
}

/// Runs on the writer thread while the disk is full: first cuts a failed group
/// still hanging off the WAL, then asks the file system for room; success ends
/// the state and the next append is written.
fn probe_disk(inner: &Inner, wal: &mut WalWriter) {
    if let Err(e) = wal.repair() {
        tracing::debug!(error = %e, "disk still full: cannot cut the failed group off the WAL yet");
        return;
    }
    #[cfg(test)]
    if inner.inject_enospc.load(Ordering::Acquire) {
        return;
    }
    match diskfull::probe(&inner.wal_dir, inner.disk_full.needed()) {
        Ok(true) => {
            inner.disk_full.clear();
            // Memtables frozen by failed flushes hold back ingest (`check_pressure`):
            // flush them now rather than at the flusher's next backed-off retry.
            request_flush(inner);
        }
        Ok(false) => {}
        Err(e) => tracing::debug!(error = %e, "disk probe failed; still refusing writes"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::testing::{has_trace, one_span, poll};
    use crate::db::{Batch, Health, Received, Store, StoreConfig};
    use crate::error::StoreError;

    /// Regression, issue 14 item 8: a full disk closed the store for good (the
    /// failing request got an I/O error, every later one "store is closed",
    /// freeing space did not help).
    #[test]
    fn wal_out_of_space_is_a_state_that_ends_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        // No flusher: the WAL alone must hold what was acknowledged. (The flush
        // a successful probe requests would otherwise still be running, on the
        // dropped store's thread, when the directory is opened again below: it
        // trimmed the WAL under the new store, which lost trace 1.)
        drop(store.inner.flush_tx.lock().unwrap().take());
        store.append_blocking(one_span(1)).unwrap();

        store.inner.inject_enospc.store(true, Ordering::Release);
        let err = store.append_blocking(one_span(2)).unwrap_err();
        assert!(matches!(&err, StoreError::DiskFull(m) if m.starts_with("writing the WAL: ")), "{err}");
        assert!(err.to_string().starts_with("disk full: "), "{err}");
        assert!(matches!(store.health(), Health::DiskFull(m) if m.starts_with("disk full: ")));
        assert!(store.is_disk_full() && !store.is_ready());
        // Refused at once while full; queries go on.
        let err = store.append_blocking(one_span(3)).unwrap_err();
        assert!(matches!(err, StoreError::DiskFull(_)), "{err}");
        assert_eq!(store.counters().disk_full_refusals.load(Ordering::Relaxed), 2);
        assert!(has_trace(&store, 1));
        assert!(!has_trace(&store, 2) && !has_trace(&store, 3));

        // Room again: the writer's probe ends the state without a restart.
        store.inner.inject_enospc.store(false, Ordering::Release);
        poll("writes resume", || store.is_ready());
        store.append_blocking(one_span(4)).unwrap();
        assert!(has_trace(&store, 4));
        store.inner.inject_enospc.store(true, Ordering::Release);
        drop(store); // as good as a crash: no flush, the WAL alone must replay

        // The half-written group was cut off the WAL, so what was acknowledged
        // after it replays (a torn frame in the middle would stop the replay).
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        assert!(has_trace(&store, 1) && has_trace(&store, 4));
        assert!(!has_trace(&store, 2) && !has_trace(&store, 3));
        store.close().unwrap();
    }

    /// The flusher can enter the state while the writer waits for appends,
    /// which are then all refused before they reach it: the writer must still
    /// wake up and probe.
    #[test]
    fn a_full_disk_seen_by_a_flush_ends_without_any_append_arriving() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.inner.disk_full.enter("flushing to segments: No space left on device (os error 28)".into(), 0);
        assert!(matches!(store.append_blocking(one_span(1)), Err(StoreError::DiskFull(_))));
        poll("the probe ends the state", || store.is_ready());
        store.append_blocking(one_span(1)).unwrap();
        store.close().unwrap();
    }

    /// Issue 13: the WAL stores the protobuf bytes a request arrived as; a
    /// restart replays them into the same rows (here with an unknown field
    /// that a re-encoding would have dropped).
    #[test]
    fn received_bytes_are_what_the_wal_replays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        drop(store.inner.flush_tx.lock().unwrap().take());
        let batch = one_span(7);
        let Batch::Traces(request) = &batch else { unreachable!() };
        let mut wire = prost::Message::encode_to_vec(request);
        wire.extend_from_slice(&[0xf8, 0x3f, 0x01]); // field 1023, varint 1
        store.append_blocking(Received::with_protobuf(batch.clone(), wire.into())).unwrap();
        let before = store.trace(crate::ids::TraceId([7; 16])).unwrap();
        drop(store); // a crash: no flush, the WAL alone must replay

        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        assert_eq!(store.trace(crate::ids::TraceId([7; 16])).unwrap(), before);
        assert_eq!(before.len(), 1);
        store.close().unwrap();
    }

    /// Appends are refused (`Busy`) only once the unflushed data reaches
    /// `max_memtable_bytes` (and with no wait, at once), and taken again once
    /// a flush made room.
    #[test]
    fn appends_are_refused_only_at_the_memtable_cap() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path());
        config.max_memtable_bytes = 4096;
        config.ingest_wait = std::time::Duration::ZERO;
        let store = Store::open(config).unwrap();
        // At this cap the memtable is due at once: hold automatic flushes so
        // the refusal does not race them.
        store.inner.hold_flushes.store(true, Ordering::Release);
        let mut accepted = 0;
        let err = loop {
            match store.append_blocking(one_span(accepted as u8 + 1)) {
                Ok(_) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 1000, "never refused");
        };
        assert!(matches!(&err, StoreError::Busy(m) if m.contains("--max-memtable-bytes")), "{err}");
        assert!(store.unflushed_bytes() >= 4096, "refused at {} bytes", store.unflushed_bytes());
        // Every append before the cap was taken: each one-span request is far below it.
        assert!(accepted > 10, "{accepted}");
        assert_eq!(store.counters().busy.load(Ordering::Relaxed), 1);
        store.flush().unwrap();
        assert_eq!(store.unflushed_bytes(), 0);
        store.append_blocking(one_span(1)).unwrap();
        store.close().unwrap();
    }

    /// A store (of `config`) whose unflushed data has just reached a 4 KiB
    /// cap, where appends wait up to `wait`, with automatic flushes held;
    /// and the next unused trace number.
    fn store_at_the_cap(wait: std::time::Duration, mut config: StoreConfig) -> (Store, u8) {
        config.max_memtable_bytes = 4096;
        config.ingest_wait = wait;
        let store = Store::open(config).unwrap();
        // The memtable is due at the cap: no flush may empty it meanwhile.
        store.inner.hold_flushes.store(true, Ordering::Release);
        let mut trace = 1u8;
        while store.unflushed_bytes() < 4096 {
            store.append_blocking(one_span(trace)).unwrap();
            trace += 1;
        }
        (store, trace)
    }

    /// At the cap, an append waits for the flush that makes room and is
    /// taken then: a client waiting for each acknowledgement is slowed down,
    /// not refused. Past the wait it is refused.
    #[test]
    fn appends_at_the_memtable_cap_wait_for_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let (store, trace) = store_at_the_cap(std::time::Duration::from_secs(60), StoreConfig::new(dir.path()));
        let counters = store.counters();
        assert_eq!(counters.ingest_waits.load(Ordering::Relaxed), 0);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let flusher = {
            let store = store.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(200));
                store.flush().unwrap();
            })
        };
        runtime.block_on(store.append(one_span(trace))).unwrap();
        // Only a flush brings the memtables under the cap (nothing else is due).
        assert!(counters.flushes.load(Ordering::Relaxed) >= 1, "taken before any flush");
        assert_eq!(counters.ingest_waits.load(Ordering::Relaxed), 1);
        assert!(counters.ingest_wait_ns.load(Ordering::Relaxed) > 0);
        assert_eq!(counters.busy.load(Ordering::Relaxed), 0);
        assert!(has_trace(&store, trace));
        flusher.join().unwrap();
        store.close().unwrap();

        // With no flush coming, the wait ends in a refusal naming the cap.
        let dir = tempfile::tempdir().unwrap();
        let (store, trace) = store_at_the_cap(std::time::Duration::from_millis(100), StoreConfig::new(dir.path()));
        let err = runtime.block_on(store.append(one_span(trace))).unwrap_err();
        assert!(matches!(&err, StoreError::Busy(m) if m.contains("--max-memtable-bytes")), "{err}");
        assert!(!has_trace(&store, trace));
        store.close().unwrap();
    }

    /// With a cap below `flush_bytes`, a memtable at the cap is flushed at
    /// once: an append waiting there is taken without waiting for the flush
    /// interval (an hour here).
    #[test]
    fn a_memtable_at_a_cap_below_flush_bytes_is_flushed_for_the_waiting_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path());
        config.flush_interval = std::time::Duration::from_secs(3600);
        let (store, trace) = store_at_the_cap(std::time::Duration::from_secs(20), config);
        store.inner.hold_flushes.store(false, Ordering::Release);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(store.append(one_span(trace))).unwrap();
        assert!(store.counters().flushes.load(Ordering::Relaxed) >= 1);
        assert_eq!(store.counters().busy.load(Ordering::Relaxed), 0);
        store.close().unwrap();
    }

    /// The writer nudges the flusher after every group once the memtable is
    /// full; nudges that queued up during a flush used to freeze whatever few
    /// rows had arrived since, each a tiny segment. Automatic flushes now
    /// write only memtables that reached `flush_rows`.
    #[test]
    fn automatic_flushes_write_only_full_memtables() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path());
        config.flush_rows = 4;
        let store = Store::open(config).unwrap();
        for trace in 1..=60u8 {
            store.append_blocking(one_span(trace)).unwrap();
        }
        // What is left unflushed is less than a full memtable, so not due.
        poll("the full memtables are flushed", || store.segments().iter().map(|s| s.rows).sum::<u64>() >= 57);
        let segments = store.segments();
        assert!(!segments.is_empty());
        for meta in &segments {
            assert!(meta.rows >= 4, "a segment of {} rows: {segments:?}", meta.rows);
        }
        store.close().unwrap();
    }

    #[test]
    fn a_failed_wal_write_for_another_reason_refuses_writes_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.inner.wal_failure.set("Input/output error (os error 5)".into()).unwrap();
        let err = store.append_blocking(one_span(1)).unwrap_err();
        assert!(matches!(err, StoreError::WalFailed(_)), "{err}");
        assert!(matches!(store.health(), Health::Failed(m) if m.contains("os error 5")));
        store.close().unwrap();
        assert_eq!(store.health(), Health::Closed);
    }
}
