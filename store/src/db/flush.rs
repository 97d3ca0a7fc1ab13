//! The flush path: the flusher thread freezes the active memtable (through
//! the writer thread, so freeze and WAL rotation happen at one sequence
//! number), writes each frozen memtable as segments, commits them to the
//! catalog, swaps them in for the memtable and trims the WAL. It is the
//! catalog's one writer besides quarantine, so retention (`prune`: whole
//! segments past `retention` or `max_disk_bytes`) runs on this thread too,
//! after every flush and every `retention::CHECK_INTERVAL`.
//!
//! A failed flush leaves nothing behind and is retried with backoff; a full
//! disk also enters the disk-full state, which stops appends until there is
//! room again.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::prune;
use super::read::parents_elsewhere;
use super::sources::{Snapshot, Table};
use super::write::Cmd;
use super::{Inner, Store};
use crate::catalog::Catalog;
use crate::error::{Result, StoreError};
use crate::memtable::Memtable;
use crate::model::Signal;
use crate::packed::{PackedRef, SpanView};
use crate::retention;
use crate::segment::{self, FlushInfo, Segment, SegmentMeta};
use crate::spanstats::{self, SegmentSummary};
use crate::wal::{self, WalWriter};

/// What the flusher thread is asked to do.
pub(super) enum FlushCmd {
    Flush(mpsc::Sender<Result<()>>),
    /// Flush if the active memtable is due (the writer's nudge when it fills).
    /// Nudges that queued up during a long flush must not each freeze whatever
    /// few rows arrived since: that made many tiny segments.
    IfDue,
    Stop,
}

impl Store {
    /// Flushes everything acknowledged so far into segments and trims the WAL.
    pub fn flush(&self) -> Result<()> {
        let tx = self.inner.flush_tx.lock().unwrap().clone().ok_or(StoreError::Closed)?;
        let (done, rx) = mpsc::channel();
        tx.send(FlushCmd::Flush(done)).map_err(|_| StoreError::Closed)?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }
}

/// Asks the flusher for a flush without waiting for it (a no-op once closed, or
/// when the flusher's queue is full).
pub(super) fn request_flush(inner: &Inner) {
    if let Some(tx) = inner.flush_tx.lock().unwrap().as_ref() {
        let (done, _) = mpsc::channel();
        let _ = tx.try_send(FlushCmd::Flush(done));
    }
}

/// Asks the flusher to flush if one is due (see [`FlushCmd::IfDue`]).
pub(super) fn nudge_flush(inner: &Inner) {
    if let Some(tx) = inner.flush_tx.lock().unwrap().as_ref() {
        let _ = tx.try_send(FlushCmd::IfDue);
    }
}

/// Runs on the writer thread: rotates the WAL and moves the active memtable to
/// the frozen list at one sequence number.
pub(super) fn freeze(inner: &Inner, wal: &mut WalWriter) -> Result<()> {
    let mut sources = inner.sources.write().unwrap();
    if sources.active().read().unwrap().is_empty() {
        return Ok(());
    }
    wal.rotate()?;
    sources.freeze_active(wal.next_seq() - 1);
    Ok(())
}

/// First wait before retrying a failed automatic flush; it doubles per failure up to the max.
const FLUSH_RETRY_MIN: Duration = Duration::from_secs(1);
const FLUSH_RETRY_MAX: Duration = Duration::from_secs(8);

/// The flusher thread: flushes when asked, when the active memtable is big or
/// old enough, and checks the disk limit.
pub(super) fn flusher_loop(inner: Arc<Inner>, rx: Receiver<FlushCmd>) {
    let mut failures = 0u32;
    let mut retry_at: Option<Instant> = None;
    let mut retention_checked = Instant::now();
    loop {
        if retention_checked.elapsed() >= retention::CHECK_INTERVAL {
            prune::enforce_retention(&inner);
            retention_checked = Instant::now();
        }
        let cmd = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(cmd) => Some(cmd),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let reply = match cmd {
            Some(FlushCmd::Stop) => return,
            Some(FlushCmd::Flush(reply)) => Some(reply),
            Some(FlushCmd::IfDue) | None => {
                if retry_at.is_some_and(|t| Instant::now() < t) {
                    continue;
                }
                #[cfg(test)]
                if inner.hold_flushes.load(Ordering::Acquire) {
                    continue;
                }
                let due = {
                    let sources = inner.sources.read().unwrap();
                    let m = sources.active().read().unwrap();
                    !sources.frozen().is_empty()
                        || m.rows() >= inner.config.flush_rows
                        || m.held_bytes() >= inner.config.full_memtable_bytes()
                        || m.first_insert.is_some_and(|t| t.elapsed() >= inner.config.flush_interval)
                };
                if !due {
                    continue;
                }
                None
            }
        };
        let r = flush_now(&inner);
        match &r {
            Ok(()) => {
                failures = 0;
                retry_at = None;
                // The flush freed its WAL files: its own estimate of the room it needed is moot.
                inner.disk_full.forget_needed();
                prune::enforce_retention(&inner);
                retention_checked = Instant::now();
            }
            Err(e) => {
                inner.counters.flush_errors.fetch_add(1, Ordering::Relaxed);
                let delay = FLUSH_RETRY_MIN.saturating_mul(1 << failures.min(3)).min(FLUSH_RETRY_MAX);
                failures = failures.saturating_add(1);
                retry_at = Some(Instant::now() + delay);
                if e.is_out_of_space() {
                    // Writes stop too: the WAL would only grow until memory pressure
                    // refused them, and the state tells clients and /healthz the truth.
                    let needed = {
                        let sources = inner.sources.read().unwrap();
                        sources.frozen().first().map_or(0, |f| f.table.read().unwrap().approx_bytes as u64)
                    };
                    inner.disk_full.enter(format!("flushing to segments: {e}"), needed);
                }
                tracing::error!(error = %e, retry_in_secs = delay.as_secs(), "flush failed; data stays in the WAL and memtable, will retry");
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(r);
        }
    }
}

/// Freezes the active memtable and flushes every frozen one, oldest first.
fn flush_now(inner: &Inner) -> Result<()> {
    let (reply, rx) = mpsc::channel();
    inner.tx.send(Cmd::Freeze(reply)).map_err(|_| StoreError::Closed)?;
    rx.recv().map_err(|_| StoreError::Closed)??;
    loop {
        let next = {
            let sources = inner.sources.read().unwrap();
            sources.frozen().first().map(|f| (f.table.clone(), f.last_seq))
        };
        let Some((table, last_seq)) = next else { return Ok(()) };
        flush_table(inner, &table, last_seq)?;
    }
}

/// Writes one frozen memtable as segments, commits them to the catalog, swaps
/// them in for the memtable, and trims the WAL.
fn flush_table(inner: &Inner, table: &Table, last_seq: u64) -> Result<()> {
    let started = Instant::now();
    let m = table.read().unwrap();
    // Where the summary looks for parents. Taken before the catalog lock and
    // dropped after it: dropping quarantines what it found damaged, which
    // takes that lock.
    let recent = inner.snapshot();
    let mut catalog = inner.catalog.lock().unwrap();
    let id = catalog.next_segment_id;
    // A failed flush (a full disk, typically) leaves no file behind: a half-written
    // segment would hold the very space the retry needs, and no catalog names it.
    let written = write_segments(inner, &recent, id, &m, catalog.flushed_seq.max(last_seq));
    let (metas, opened) = match written {
        Ok(written) => written,
        Err(e) => {
            remove_unlisted_segment(&inner.seg_dir, id);
            return Err(e);
        }
    };
    let mut next = catalog.clone();
    next.next_segment_id = id + 1;
    next.flushed_seq = next.flushed_seq.max(last_seq);
    next.segments.extend(metas.iter().cloned());
    let stored = next.store(&inner.config.data_dir);
    // The catalog is replaced by a rename: an error after it (syncing the
    // directory) leaves the new catalog in place, naming these segments. Then they
    // are kept and used, but the WAL is not trimmed: whether the rename survives
    // a crash is unknown, and the WAL covers either outcome.
    let committed =
        stored.is_ok() || Catalog::load(&inner.config.data_dir).is_ok_and(|on_disk| on_disk.as_ref() == Some(&next));
    if !committed {
        drop(opened);
        remove_unlisted_segment(&inner.seg_dir, id);
        return stored;
    }
    *catalog = next;
    drop(catalog);
    drop(recent);
    inner.sources.write().unwrap().flushed(table, opened);
    inner.room.notify_waiters();
    stored?;
    wal::remove_flushed(&inner.wal_dir, last_seq)?;
    inner.counters.flushes.fetch_add(1, Ordering::Relaxed);
    inner.counters.flush_busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    tracing::info!(
        segment = id,
        rows = m.rows(),
        bytes = metas.iter().map(|x| x.bytes).sum::<u64>(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "flushed memtable to segments"
    );
    Ok(())
}

/// Writes, syncs and opens the segments of one memtable as segment `id`;
/// `flushed_seq` is what they cover, recorded in their footers so that a lost
/// catalog can be rebuilt from them. The span summary looks up parents in
/// `recent`.
fn write_segments(
    inner: &Inner,
    recent: &Snapshot<'_>,
    id: u64,
    m: &Memtable,
    flushed_seq: u64,
) -> Result<(Vec<SegmentMeta>, Vec<Arc<Segment>>)> {
    let signals = [
        (Signal::Traces, m.spans.is_empty()),
        (Signal::Logs, m.logs.is_empty()),
        (Signal::Metrics, m.metrics.is_empty()),
    ];
    let flush =
        FlushInfo { flushed_seq, signals: signals.iter().filter(|(_, empty)| !empty).map(|(s, _)| *s).collect() };
    let mut metas = Vec::new();
    if !m.spans.is_empty() {
        let spans: Vec<PackedRef<'_>> = m.spans.iter().collect();
        let summary = summarize_flush(recent, &spans)?;
        metas.push(segment::write_spans(&inner.seg_dir, id, &spans, &summary, &flush)?);
    }
    if !m.logs.is_empty() {
        metas.push(segment::write_logs(&inner.seg_dir, id, &m.logs, &flush)?);
    }
    if !m.metrics.is_empty() {
        metas.push(segment::write_metrics(&inner.seg_dir, id, &m.metrics, &flush)?);
    }
    wal::sync_dir(&inner.seg_dir)?;
    let opened = metas
        .iter()
        .map(|meta| Segment::open(&inner.seg_dir, meta.clone(), inner.quarantine.clone()).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    Ok((metas, opened))
}

/// The summary of a flush's spans, with parents looked up in recent segments.
fn summarize_flush<S: SpanView>(recent: &Snapshot<'_>, spans: &[S]) -> Result<SegmentSummary> {
    let (earlier, pending) = parents_elsewhere(recent, spans)?;
    Ok(spanstats::summarize(spans, &earlier, &pending))
}

/// Removes what a failed flush wrote of segment `id` (finished or temporary
/// files); no catalog names it. Failures are logged: start-up removes strays too.
pub(super) fn remove_unlisted_segment(seg_dir: &Path, id: u64) {
    if let Err(e) = segment::remove_files(seg_dir, id) {
        tracing::warn!(segment = id, error = %e, "cannot remove the files of a failed flush");
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{has_trace, one_span};
    use super::*;
    use crate::db::StoreConfig;

    #[test]
    fn a_failed_flush_leaves_no_segment_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.append_blocking(one_span(1)).unwrap();
        store.flush().unwrap();
        let seg_dir = dir.path().join("segments");
        let listed: Vec<_> = std::fs::read_dir(&seg_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        // What a flush of segment 2 that died part-way leaves.
        std::fs::write(seg_dir.join(format!("{:016}-traces.parquet", 2)), b"whole").unwrap();
        std::fs::write(seg_dir.join(format!("{:016}-logs.parquet.tmp", 2)), b"half").unwrap();
        std::fs::create_dir(seg_dir.join(format!("{:016}-traces.tantivy.tmp", 2))).unwrap();
        remove_unlisted_segment(&seg_dir, 2);
        let mut left: Vec<_> = std::fs::read_dir(&seg_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        let mut listed = listed;
        listed.sort();
        assert_eq!(left, listed);
        assert!(has_trace(&store, 1));
        store.close().unwrap();
    }
}
