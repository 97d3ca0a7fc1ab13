//! `Store`: the write path (convert -> WAL group commit -> memtable -> flush)
//! and the read path (snapshot of memtables + segments).
//!
//! Threads: one writer thread owns the WAL and is the only writer of the
//! active memtable; one flusher thread freezes the memtable (through the writer,
//! so freeze and WAL rotation happen at one sequence number), writes segments
//! and commits them to the catalog. Queries never block writes for long: they
//! clone `Arc`s of the current memtables and segments under a brief read lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::sync::oneshot;

use crate::catalog::Catalog;
use crate::convert;
use crate::diskfull::{self, DiskFullState};
use crate::error::{Result, StoreError};
use crate::ids::{SpanId, TraceId};
use crate::logsearch::{self, LogQuery};
use crate::memtable::Memtable;
use crate::model::*;
use crate::quarantine::Quarantine;
use crate::query::{Operation, StatsQuery, TraceQuery};
use crate::recovery;
use crate::retention;
use crate::segment::{self, FlushInfo, Segment, SegmentMeta};
use crate::spanstats::{self, OpKey, OpStats, Orphan, ParentIndex, SegmentSummary, StatsBuilder};
use crate::tags;
use crate::textindex::{self, IndexKind};
use crate::wal::{self, WalWriter};

/// Tuning of the write path. `StoreConfig::new(dir)` gives the defaults.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// Flush when the memtable holds this many rows...
    pub flush_rows: usize,
    /// ...or this many encoded bytes...
    pub flush_bytes: usize,
    /// ...or its oldest row is this old.
    pub flush_interval: Duration,
    /// Appends waiting for the writer thread before new ones get `Busy`.
    pub queue_capacity: usize,
    /// When the data directory grows past this many bytes, the oldest segments
    /// are deleted (see `retention`); `None` keeps everything.
    pub max_disk_bytes: Option<u64>,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            flush_rows: 256 * 1024,
            flush_bytes: 64 << 20,
            flush_interval: Duration::from_secs(60),
            queue_capacity: 4096,
            max_disk_bytes: None,
        }
    }
}

/// One OTLP export request, as the collector decoded it.
#[derive(Clone, Debug, PartialEq)]
pub enum Batch {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

impl Batch {
    pub fn signal(&self) -> Signal {
        match self {
            Batch::Traces(_) => Signal::Traces,
            Batch::Logs(_) => Signal::Logs,
            Batch::Metrics(_) => Signal::Metrics,
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Batch::Traces(r) => r.encode_to_vec(),
            Batch::Logs(r) => r.encode_to_vec(),
            Batch::Metrics(r) => r.encode_to_vec(),
        }
    }

    fn decode(signal: Signal, bytes: &[u8]) -> std::result::Result<Self, prost::DecodeError> {
        Ok(match signal {
            Signal::Traces => Batch::Traces(ExportTraceServiceRequest::decode(bytes)?),
            Signal::Logs => Batch::Logs(ExportLogsServiceRequest::decode(bytes)?),
            Signal::Metrics => Batch::Metrics(ExportMetricsServiceRequest::decode(bytes)?),
        })
    }

    /// Validates and flattens into rows (see `convert` for the rules).
    fn into_rows(&self) -> Result<(Rows, u64, Option<String>)> {
        Ok(match self {
            Batch::Traces(r) => {
                let c = convert::spans(r)?;
                (Rows::Spans(c.rows), c.rejected, c.message)
            }
            Batch::Logs(r) => {
                let c = convert::logs(r)?;
                (Rows::Logs(c.rows), c.rejected, c.message)
            }
            Batch::Metrics(r) => {
                let c = convert::metric_points(r)?;
                (Rows::Metrics(c.rows), c.rejected, c.message)
            }
        })
    }
}

enum Rows {
    Spans(Vec<SpanRow>),
    Logs(Vec<LogRow>),
    Metrics(Vec<MetricPointRow>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Spans(r) => r.len(),
            Rows::Logs(r) => r.len(),
            Rows::Metrics(r) => r.len(),
        }
    }

    fn insert_into(self, m: &mut Memtable, bytes: usize) {
        match self {
            Rows::Spans(r) => m.insert_spans(r, bytes),
            Rows::Logs(r) => m.insert_logs(r, bytes),
            Rows::Metrics(r) => m.insert_metrics(r, bytes),
        }
    }
}

/// What an append stored: `rejected > 0` is a partial success to report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub accepted: u64,
    pub rejected: u64,
    pub message: Option<String>,
}

/// Counters for self-telemetry.
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub spans: AtomicU64,
    pub logs: AtomicU64,
    pub metric_points: AtomicU64,
    pub rejected: AtomicU64,
    pub busy: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
    /// WAL damage skipped at replay: damaged stretches between intact frames,
    /// and intact frames whose payload no longer decodes.
    pub wal_corrupt_frames: AtomicU64,
    /// Segments moved to `quarantine/` (at start-up or when a read found damage).
    pub quarantined_segments: AtomicU64,
    /// Segment indexes rebuilt from their Parquet file because they were damaged or missing.
    pub rebuilt_indexes: AtomicU64,
    /// Catalogs rebuilt from the segment files because catalog.json was missing or unreadable.
    pub catalog_rebuilds: AtomicU64,
    /// Segments deleted because the data directory passed `max_disk_bytes`.
    pub retention_deleted_segments: AtomicU64,
    /// Requests refused because the disk was full.
    pub disk_full_refusals: AtomicU64,
}

/// Whether the store accepts writes, and if not why ([`Store::health`]).
/// Queries are answered in every state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Accepting writes.
    Ready,
    /// The disk (or quota) is full; writes resume by themselves once there is room.
    /// The text is [`StoreError::DiskFull`]'s: "disk full: writing the WAL: ...".
    DiskFull(String),
    /// The WAL failed for another reason; writes are refused until a restart.
    Failed(String),
    /// [`Store::close`] was called.
    Closed,
}

type Table = Arc<RwLock<Memtable>>;

struct Frozen {
    table: Table,
    /// Highest WAL sequence number the table holds.
    last_seq: u64,
}

struct State {
    active: Table,
    frozen: Vec<Frozen>,
    segments: Vec<Arc<Segment>>,
}

enum Cmd {
    Append { signal: Signal, payload: Vec<u8>, rows: Rows, done: oneshot::Sender<Result<()>> },
    Freeze(mpsc::Sender<Result<()>>),
    Stop,
}

struct Inner {
    config: StoreConfig,
    wal_dir: PathBuf,
    seg_dir: PathBuf,
    state: RwLock<State>,
    tx: SyncSender<Cmd>,
    flush_tx: Mutex<Option<SyncSender<FlushCmd>>>,
    catalog: Mutex<Catalog>,
    closed: AtomicBool,
    counters: Arc<StoreCounters>,
    quarantine: Arc<Quarantine>,
    /// Set (once, for good) when a WAL write fails for a reason other than space.
    wal_failure: OnceLock<String>,
    disk_full: DiskFullState,
    /// Test hook: the next WAL writes fail half-way with ENOSPC and probes find no room.
    #[cfg(test)]
    inject_enospc: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

enum FlushCmd {
    Flush(mpsc::Sender<Result<()>>),
    Stop,
}

/// The telemetry database. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// A frozen view for one query.
struct Snapshot {
    tables: Vec<Table>,
    segments: Vec<Arc<Segment>>,
}

impl Store {
    /// Opens (or creates) the store in `config.data_dir`: loads the catalog
    /// (rebuilding it from the segment files when it is missing or
    /// unreadable), opens its segments, replays the WAL beyond the last flush,
    /// and starts the writer and flusher threads.
    ///
    /// Damage does not stop the store: a damaged segment is moved to
    /// `quarantine/`, a damaged WAL frame or record is skipped, each named in
    /// the log and counted in [`StoreCounters`].
    ///
    /// # Errors
    /// I/O errors that are not damage (permissions, no space, no descriptors).
    pub fn open(config: StoreConfig) -> Result<Store> {
        let wal_dir = config.data_dir.join("wal");
        let seg_dir = config.data_dir.join("segments");
        std::fs::create_dir_all(&wal_dir)?;
        std::fs::create_dir_all(&seg_dir)?;
        let counters = Arc::new(StoreCounters::default());
        let quarantine = Arc::new(Quarantine::new(&config.data_dir, counters.clone()));
        let recovery::Recovered { catalog, segments } = recovery::recover(&config.data_dir, &seg_dir, &quarantine)?;

        let mut memtable = Memtable::default();
        let mut replayed = 0u64;
        let mut skipped = 0u64;
        let report = wal::replay(&wal_dir, catalog.flushed_seq, |rec| {
            let rows = Batch::decode(rec.signal, &rec.payload)
                .map_err(|e| StoreError::Corrupt(e.to_string()))
                .and_then(|b| b.into_rows());
            match rows {
                Ok((rows, _, _)) => {
                    replayed += rows.len() as u64;
                    rows.insert_into(&mut memtable, rec.payload.len());
                }
                Err(e) => {
                    // The frame's checksum passed, so these are the bytes that
                    // were written; one bad record must not cost the others.
                    skipped += 1;
                    tracing::error!(
                        seq = rec.seq,
                        signal = rec.signal.as_str(),
                        error = %e,
                        "WAL record does not decode; skipped it and replayed the rest"
                    );
                }
            }
        })?;
        counters.wal_corrupt_frames.fetch_add(report.corrupt_regions + skipped, Ordering::Relaxed);
        if replayed > 0 {
            tracing::info!(rows = replayed, "replayed the WAL beyond the last flush");
        }
        let last_seq = report.last_seq;
        let wal = WalWriter::create(&wal_dir, last_seq + 1)?;

        let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
        let inner = Arc::new(Inner {
            wal_dir,
            seg_dir,
            state: RwLock::new(State { active: Arc::new(RwLock::new(memtable)), frozen: Vec::new(), segments }),
            tx,
            flush_tx: Mutex::new(None),
            catalog: Mutex::new(catalog),
            closed: AtomicBool::new(false),
            counters,
            quarantine,
            wal_failure: OnceLock::new(),
            disk_full: DiskFullState::default(),
            #[cfg(test)]
            inject_enospc: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            config,
        });
        let (flush_tx, flush_rx) = mpsc::sync_channel(16);
        *inner.flush_tx.lock().unwrap() = Some(flush_tx);
        let writer = {
            let inner = inner.clone();
            std::thread::Builder::new().name("seismo-wal".into()).spawn(move || writer_loop(inner, wal, rx))?
        };
        let flusher = {
            let inner = inner.clone();
            std::thread::Builder::new().name("seismo-flush".into()).spawn(move || flusher_loop(inner, flush_rx))?
        };
        inner.threads.lock().unwrap().extend([writer, flusher]);
        Ok(Store { inner })
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    pub fn counters(&self) -> &StoreCounters {
        &self.inner.counters
    }

    /// True while the store accepts writes (see [`Store::health`] for why not).
    pub fn is_ready(&self) -> bool {
        self.health() == Health::Ready
    }

    /// Whether writes are accepted, and if not why.
    pub fn health(&self) -> Health {
        if self.inner.closed.load(Ordering::Acquire) {
            Health::Closed
        } else if let Some(reason) = self.inner.wal_failure.get() {
            Health::Failed(StoreError::WalFailed(reason.clone()).to_string())
        } else if let Some(refusal) = self.inner.disk_full.refusal() {
            Health::DiskFull(refusal.to_string())
        } else {
            Health::Ready
        }
    }

    /// True while writes are refused because the disk is full.
    pub fn is_disk_full(&self) -> bool {
        self.inner.disk_full.is_full()
    }

    /// Validates and converts `batch`, writes it to the WAL, waits until it is
    /// fsynced, makes it visible to queries, and only then returns: an `Ok`
    /// means the data survives a crash.
    ///
    /// # Errors
    /// `InvalidId` / `InvalidRequest` for unusable input (nothing is stored);
    /// `Busy` when the write queue or the unflushed data is at its bound (retry
    /// later); `DiskFull` while the disk has no room (retry later, nothing was
    /// stored); `WalFailed` after the WAL failed otherwise; `Closed` after shutdown.
    pub async fn append(&self, batch: Batch) -> Result<AppendOutcome> {
        let (outcome, rx) = self.submit(batch)?;
        if let Some(rx) = rx {
            rx.await.map_err(|_| StoreError::Closed)??;
        }
        Ok(outcome)
    }

    /// [`Store::append`] for callers outside an async runtime.
    pub fn append_blocking(&self, batch: Batch) -> Result<AppendOutcome> {
        let (outcome, rx) = self.submit(batch)?;
        if let Some(rx) = rx {
            rx.blocking_recv().map_err(|_| StoreError::Closed)??;
        }
        Ok(outcome)
    }

    #[allow(clippy::type_complexity)]
    fn submit(&self, batch: Batch) -> Result<(AppendOutcome, Option<oneshot::Receiver<Result<()>>>)> {
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
        let signal = batch.signal();
        let (rows, rejected, message) = batch.into_rows()?;
        let c = &self.inner.counters;
        c.rejected.fetch_add(rejected, Ordering::Relaxed);
        let outcome = AppendOutcome { accepted: rows.len() as u64, rejected, message };
        if rows.len() == 0 {
            return Ok((outcome, None));
        }
        self.check_pressure()?;
        let payload = batch.encode();
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

    /// Refuses new data while flushing lags far behind ingest, so memory stays bounded.
    fn check_pressure(&self) -> Result<()> {
        let state = self.inner.state.read().unwrap();
        let cfg = &self.inner.config;
        let active_bytes = state.active.read().unwrap().approx_bytes;
        if state.frozen.len() >= 2 || active_bytes > cfg.flush_bytes.saturating_mul(4) {
            self.inner.counters.busy.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Busy("flushing is behind ingest".into()));
        }
        Ok(())
    }

    /// Flushes everything acknowledged so far into segments and trims the WAL.
    pub fn flush(&self) -> Result<()> {
        let tx = self.inner.flush_tx.lock().unwrap().clone().ok_or(StoreError::Closed)?;
        let (done, rx) = mpsc::channel();
        tx.send(FlushCmd::Flush(done)).map_err(|_| StoreError::Closed)?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Stops accepting writes, flushes, and stops the background threads.
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = {
            let tx = self.inner.flush_tx.lock().unwrap().take();
            match tx {
                Some(tx) => {
                    let (done, rx) = mpsc::channel();
                    let r = if tx.send(FlushCmd::Flush(done)).is_ok() { rx.recv().unwrap_or(Ok(())) } else { Ok(()) };
                    let _ = tx.send(FlushCmd::Stop);
                    r
                }
                None => Ok(()),
            }
        };
        let _ = self.inner.tx.send(Cmd::Stop);
        for t in self.inner.threads.lock().unwrap().drain(..) {
            let _ = t.join();
        }
        result
    }

    fn snapshot(&self) -> Snapshot {
        let state = self.inner.state.read().unwrap();
        let mut tables = vec![state.active.clone()];
        tables.extend(state.frozen.iter().map(|f| f.table.clone()));
        Snapshot { tables, segments: state.segments.clone() }
    }

    /// `result` of a read of `seg`, unless the read found the segment
    /// damaged: then the segment is quarantined and the caller goes on
    /// without it (`Ok(None)`), so one damaged file costs only its own rows.
    fn unless_damaged<T>(&self, seg: &Arc<Segment>, result: Result<T>) -> Result<Option<T>> {
        match result {
            Err(StoreError::Damaged(why)) => {
                self.inner.quarantine_damaged(seg, &why);
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Catalog entries of the segments currently open.
    pub fn segments(&self) -> Vec<SegmentMeta> {
        self.inner.state.read().unwrap().segments.iter().map(|s| s.meta.clone()).collect()
    }

    /// Service names that sent spans, sorted.
    pub fn services(&self) -> Result<Vec<String>> {
        let snap = self.snapshot();
        let mut out: HashSet<String> = HashSet::new();
        for t in &snap.tables {
            let m = t.read().unwrap();
            out.extend(m.operations().map(|(s, _)| s.to_string()));
        }
        for s in snap.segments.iter().filter(|s| s.meta.signal == Signal::Traces) {
            out.extend(s.meta.services.iter().cloned());
        }
        let mut v: Vec<String> = out.into_iter().collect();
        v.sort();
        Ok(v)
    }

    /// Distinct (span name, kind) pairs of `service`, sorted.
    pub fn operations(&self, service: &str) -> Result<Vec<Operation>> {
        let snap = self.snapshot();
        let mut out: HashSet<Operation> = HashSet::new();
        for t in &snap.tables {
            let m = t.read().unwrap();
            out.extend(m.operations().filter(|(s, _)| *s == service).map(|(_, o)| o));
        }
        for s in snap.segments.iter().filter(|s| s.meta.signal == Signal::Traces) {
            out.extend(
                s.meta
                    .operations
                    .iter()
                    .filter(|(svc, _, _)| svc == service)
                    .map(|(_, name, kind)| Operation { name: name.clone(), span_kind: *kind }),
            );
        }
        let mut v: Vec<Operation> = out.into_iter().collect();
        v.sort();
        Ok(v)
    }

    /// Every stored span of trace `id`, ordered by start time; empty when unknown.
    pub fn trace(&self, id: TraceId) -> Result<Vec<SpanRow>> {
        let snap = self.snapshot();
        self.trace_in(&snap, &id)
    }

    fn trace_in(&self, snap: &Snapshot, id: &TraceId) -> Result<Vec<SpanRow>> {
        let mut spans = Vec::new();
        for t in &snap.tables {
            spans.extend(t.read().unwrap().trace(id).cloned());
        }
        for s in snap.segments.iter().filter(|s| s.meta.signal == Signal::Traces) {
            spans.extend(self.unless_damaged(s, s.trace(id))?.unwrap_or_default());
        }
        // An exporter that retried after a lost response sends a span twice.
        let mut seen = HashSet::new();
        spans.retain(|s| seen.insert((s.span_id, s.start_time_unix_nano, s.duration_nano)));
        spans.sort_by_key(|s| (s.start_time_unix_nano, s.span_id));
        Ok(spans)
    }

    /// Traces matching `q` (see [`TraceQuery`]): newest first, each complete.
    pub fn find_traces(&self, q: &TraceQuery) -> Result<Vec<Vec<SpanRow>>> {
        let snap = self.snapshot();
        let mut hits: HashMap<TraceId, i64> = HashMap::new();
        for t in &snap.tables {
            let m = t.read().unwrap();
            for row in m.spans.iter().filter(|r| span_matches(r, q)) {
                let e = hits.entry(row.trace_id).or_insert(row.start_time_unix_nano);
                *e = (*e).max(row.start_time_unix_nano);
            }
        }
        for s in snap.segments.iter().filter(|s| s.meta.signal == Signal::Traces) {
            self.unless_damaged(s, s.search_traces(q, &mut hits))?;
        }
        let mut ranked: Vec<(i64, TraceId)> = hits.into_iter().map(|(id, t)| (t, id)).collect();
        ranked.sort_by(|a, b| b.cmp(a));
        ranked.truncate(q.effective_limit());
        // A trace can come back empty when its segment was found damaged
        // between the search and the fetch.
        let mut traces = Vec::with_capacity(ranked.len());
        for (_, id) in ranked {
            let spans = self.trace_in(&snap, &id)?;
            if !spans.is_empty() {
                traces.push(spans);
            }
        }
        Ok(traces)
    }

    /// The newest log records matching `q` (see [`LogQuery`]), newest first.
    ///
    /// Each memtable and segment answers from its index with its own newest
    /// `limit` matches; segments are visited newest first and the walk stops
    /// once `limit` matches are newer than everything left.
    ///
    /// # Errors
    /// `InvalidQuery` when `q.text` does not parse; I/O errors from segments.
    pub fn search_logs(&self, q: &LogQuery) -> Result<Vec<LogRow>> {
        let query = logsearch::compile(q, &textindex::schema(IndexKind::Logs).1)?;
        let limit = q.effective_limit();
        let snap = self.snapshot();
        // (time, where: memtable i or segment usize::MAX - j, row)
        let mut hits: Vec<(i64, usize, u32)> = Vec::new();
        for (i, t) in snap.tables.iter().enumerate() {
            let m = t.read().unwrap();
            hits.extend(m.newest_logs(&*query, limit)?.into_iter().map(|(time, row)| (time, i, row)));
        }
        let mut segs: Vec<(usize, &Arc<Segment>)> = snap
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.meta.signal == Signal::Logs && s.meta.overlaps(q.start_ns, q.end_ns))
            .filter(|(_, s)| q.service.as_ref().is_none_or(|svc| s.meta.services.contains(svc)))
            .collect();
        segs.sort_by_key(|(_, s)| std::cmp::Reverse(s.meta.max_time));
        for (j, seg) in segs {
            if hits.len() >= limit {
                hits.sort_unstable_by(|a, b| b.cmp(a));
                hits.truncate(limit);
                if hits[limit - 1].0 > seg.meta.max_time {
                    break;
                }
            }
            let newest = self.unless_damaged(seg, seg.newest_logs(&*query, limit))?.unwrap_or_default();
            hits.extend(newest.into_iter().map(|(time, row)| (time, usize::MAX - j, row)));
        }
        hits.sort_unstable_by(|a, b| b.cmp(a));
        hits.truncate(limit);

        // Fetch the rows: memtable rows by position, segment rows one read per segment.
        let mut by_source: HashMap<usize, Vec<u32>> = HashMap::new();
        for (_, src, row) in &hits {
            by_source.entry(*src).or_default().push(*row);
        }
        let mut fetched: HashMap<(usize, u32), LogRow> = HashMap::with_capacity(hits.len());
        for (src, mut rows) in by_source {
            rows.sort_unstable();
            rows.dedup();
            if src < snap.tables.len() {
                let m = snap.tables[src].read().unwrap();
                fetched.extend(rows.iter().map(|&r| ((src, r), m.logs[r as usize].clone())));
            } else {
                let seg = &snap.segments[usize::MAX - src];
                let Some(got) = self.unless_damaged(seg, seg.log_rows(&rows))? else { continue };
                fetched.extend(rows.iter().copied().zip(got).map(|(r, row)| ((src, r), row)));
            }
        }
        Ok(hits.iter().filter_map(|(_, src, row)| fetched.remove(&(*src, *row))).collect())
    }

    /// Request statistics per (service, operation, kind) over the window.
    ///
    /// Segments the window covers whole answer from their footer summaries;
    /// segments cut by the window and the memtables are scanned exactly.
    /// Latency quantiles come from mergeable sketches accurate to 1%.
    ///
    /// # Errors
    /// I/O or format errors from segments.
    pub fn span_stats(&self, q: &StatsQuery) -> Result<Vec<(OpKey, OpStats)>> {
        let snap = self.snapshot();
        let (start, end) = (q.start_ns, q.end_ns);
        let service = q.service.as_deref();
        let mut exact = StatsBuilder::default();
        for t in &snap.tables {
            let m = t.read().unwrap();
            for s in m.spans.iter() {
                let st = s.start_time_unix_nano;
                if st >= start && st <= end && service.is_none_or(|x| x == s.service_name) {
                    exact.add_span(s);
                }
            }
        }
        let mut merged: HashMap<OpKey, OpStats> = HashMap::new();
        for seg in
            snap.segments.iter().filter(|s| s.meta.signal == Signal::Traces && s.meta.overlaps(Some(start), Some(end)))
        {
            if service.is_some_and(|x| !seg.meta.services.iter().any(|s| s == x)) {
                continue;
            }
            match &seg.summary {
                Some(summary) if seg.meta.min_time >= start && seg.meta.max_time <= end => {
                    for (key, stats) in &summary.ops {
                        spanstats::merge(merged.entry(key.clone()).or_default(), stats);
                    }
                }
                _ => {
                    self.unless_damaged(seg, seg.scan_stats(start, end, service, &mut exact))?;
                }
            }
        }
        for (key, stats) in exact.finish() {
            spanstats::merge(merged.entry(key).or_default(), &stats);
        }
        let mut out: Vec<(OpKey, OpStats)> = merged
            .into_iter()
            .filter(|((svc, name, kind), _)| {
                service.is_none_or(|x| x == svc)
                    && q.operation.as_ref().is_none_or(|o| o == name)
                    && (q.span_kinds.is_empty() || q.span_kinds.contains(kind))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Parent -> child service edges (span counts) of spans started in the
    /// window, same-service edges included. Segments count whole when they
    /// overlap the window (a segment spans at most one flush interval);
    /// memtable spans count exactly.
    ///
    /// # Errors
    /// I/O or format errors from segments.
    pub fn dependencies(&self, start: i64, end: i64) -> Result<Vec<(String, String, u64)>> {
        let snap = self.snapshot();
        let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut span_segments = Vec::new();
        for seg in snap.segments.iter().filter(|s| s.meta.signal == Signal::Traces) {
            span_segments.push(seg.clone());
            if !seg.meta.overlaps(Some(start), Some(end)) {
                continue;
            }
            for (p, c, n) in seg.summary.iter().flat_map(|s| s.edges.iter()) {
                *counts.entry((p.clone(), c.clone())).or_default() += n;
            }
        }
        let tables: Vec<_> = snap.tables.iter().map(|t| t.read().unwrap()).collect();
        let spans: Vec<&SpanRow> = tables
            .iter()
            .flat_map(|m| m.spans.iter())
            .filter(|s| s.start_time_unix_nano >= start && s.start_time_unix_nano <= end)
            .collect();
        if !spans.is_empty() {
            let mut damaged = Vec::new();
            let (earlier, pending) =
                parents_elsewhere(&recent_span_segments(&span_segments), &spans, &mut |seg, why| {
                    damaged.push((seg.clone(), why))
                })?;
            for (seg, why) in damaged {
                self.inner.quarantine_damaged(&seg, &why);
            }
            let (edges, _) = spanstats::edges(&spans, &earlier, &pending);
            for (k, n) in edges {
                *counts.entry(k).or_default() += n;
            }
        }
        Ok(counts.into_iter().map(|((p, c), n)| (p, c, n)).collect())
    }

    /// Distinct metric streams with points in [start, end] (by segment time
    /// range; the memtables' are always included), sorted.
    pub fn metric_descriptors(&self, start: Option<i64>, end: Option<i64>) -> Vec<MetricDescriptor> {
        let snap = self.snapshot();
        let mut out: HashSet<MetricDescriptor> = HashSet::new();
        for t in &snap.tables {
            out.extend(t.read().unwrap().metric_descriptors.iter().cloned());
        }
        for s in snap.segments.iter().filter(|s| s.meta.signal == Signal::Metrics && s.meta.overlaps(start, end)) {
            out.extend(s.meta.metrics.iter().cloned());
        }
        let mut v: Vec<MetricDescriptor> = out.into_iter().collect();
        v.sort();
        v
    }

    /// Calls `visit` with every stored point of `names` in the window
    /// (memtables and segments, unordered), borrowed: no row is built or
    /// copied, attribute JSON is parsed once per distinct text.
    pub fn visit_metric_points(
        &self,
        names: &HashSet<String>,
        start: Option<i64>,
        end: Option<i64>,
        visit: &mut dyn FnMut(&MetricPointRef<'_>),
    ) -> Result<()> {
        let snap = self.snapshot();
        let in_window = |t: i64| start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e);
        for t in &snap.tables {
            let m = t.read().unwrap();
            for r in m.metrics.iter().filter(|r| in_window(r.time_unix_nano) && names.contains(&r.metric_name)) {
                visit(&r.as_ref());
            }
        }
        for s in snap.segments.iter().filter(|s| s.meta.signal == Signal::Metrics) {
            self.unless_damaged(s, s.visit_metric_points(names, start, end, visit))?;
        }
        Ok(())
    }

    /// Every stored log record (memtables and segments), unordered. Used by
    /// tests and tools until the logs query API lands.
    pub fn all_logs(&self) -> Result<Vec<LogRow>> {
        let snap = self.snapshot();
        let mut out = Vec::new();
        for t in &snap.tables {
            out.extend(t.read().unwrap().logs.iter().cloned());
        }
        for s in snap.segments.iter().filter(|s| s.meta.signal == Signal::Logs) {
            out.extend(self.unless_damaged(s, s.all_logs())?.unwrap_or_default());
        }
        Ok(out)
    }

    /// Every stored metric data point, unordered (see [`Store::all_logs`]).
    pub fn all_metric_points(&self) -> Result<Vec<MetricPointRow>> {
        let snap = self.snapshot();
        let mut out = Vec::new();
        for t in &snap.tables {
            out.extend(t.read().unwrap().metrics.iter().cloned());
        }
        for s in snap.segments.iter().filter(|s| s.meta.signal == Signal::Metrics) {
            out.extend(self.unless_damaged(s, s.all_metrics())?.unwrap_or_default());
        }
        Ok(out)
    }
}

fn span_matches(r: &SpanRow, q: &TraceQuery) -> bool {
    q.service.as_ref().is_none_or(|s| &r.service_name == s)
        && q.operation.as_ref().is_none_or(|o| &r.name == o)
        && q.span_kind.is_none_or(|k| r.kind == k)
        && q.start_min_ns.is_none_or(|m| r.start_time_unix_nano >= m)
        && q.start_max_ns.is_none_or(|m| r.start_time_unix_nano <= m)
        && q.min_duration_ns.is_none_or(|m| r.duration_nano >= m)
        && q.max_duration_ns.is_none_or(|m| r.duration_nano <= m)
        && tags::matches_all(r, &q.tags)
}

impl Inner {
    /// Sets aside a segment a read found damaged: out of the catalog (so a
    /// restart does not trust it), out of the live set (so queries stop
    /// reading it), then its files into quarantine. Idempotent: the first of
    /// several queries that hit the damage does the work.
    fn quarantine_damaged(&self, seg: &Arc<Segment>, why: &str) {
        let mut catalog = self.catalog.lock().unwrap();
        {
            let mut state = self.state.write().unwrap();
            let before = state.segments.len();
            state.segments.retain(|s| !Arc::ptr_eq(s, seg));
            if state.segments.len() == before {
                return;
            }
        }
        let mut next = catalog.clone();
        next.segments.retain(|m| (m.id, m.signal) != (seg.meta.id, seg.meta.signal));
        if let Err(e) = next.store(&self.config.data_dir) {
            tracing::error!(error = %e, reason = why, "could not drop a damaged segment from the catalog; it stays in place");
            return;
        }
        *catalog = next;
        drop(catalog);
        if let Err(e) = self.quarantine.segment(&seg.files(), why) {
            tracing::error!(error = %e, reason = why, "could not move a damaged segment to quarantine");
        }
    }
}

/// Most appends one WAL write groups together.
const GROUP_MAX_CMDS: usize = 1024;
const GROUP_MAX_BYTES: usize = 32 << 20;

fn writer_loop(inner: Arc<Inner>, mut wal: WalWriter, rx: Receiver<Cmd>) {
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
                    let active = inner.state.read().unwrap().active.clone();
                    let mut m = active.write().unwrap();
                    for (rows, bytes, done) in group.drain(..) {
                        let counter = match &rows {
                            Rows::Spans(_) => &c.spans,
                            Rows::Logs(_) => &c.logs,
                            Rows::Metrics(_) => &c.metric_points,
                        };
                        counter.fetch_add(rows.len() as u64, Ordering::Relaxed);
                        rows.insert_into(&mut m, bytes);
                        let _ = done.send(Ok(()));
                    }
                    let full = m.rows() >= inner.config.flush_rows || m.approx_bytes >= inner.config.flush_bytes;
                    drop(m);
                    if full {
                        request_flush(&inner);
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

/// Asks the flusher for a flush without waiting for it (a no-op once closed, or
/// when one is already queued).
fn request_flush(inner: &Inner) {
    if let Some(tx) = inner.flush_tx.lock().unwrap().as_ref() {
        let (done, _) = mpsc::channel();
        let _ = tx.try_send(FlushCmd::Flush(done));
    }
}

/// Runs on the writer thread: rotates the WAL and moves the active memtable to
/// the frozen list at one sequence number.
fn freeze(inner: &Inner, wal: &mut WalWriter) -> Result<()> {
    let mut state = inner.state.write().unwrap();
    if state.active.read().unwrap().is_empty() {
        return Ok(());
    }
    wal.rotate()?;
    let last_seq = wal.next_seq() - 1;
    let table = std::mem::replace(&mut state.active, Arc::new(RwLock::new(Memtable::default())));
    state.frozen.push(Frozen { table, last_seq });
    Ok(())
}

/// First wait before retrying a failed automatic flush; it doubles per failure up to the max.
const FLUSH_RETRY_MIN: Duration = Duration::from_secs(1);
const FLUSH_RETRY_MAX: Duration = Duration::from_secs(8);

fn flusher_loop(inner: Arc<Inner>, rx: Receiver<FlushCmd>) {
    let mut failures = 0u32;
    let mut retry_at: Option<Instant> = None;
    let mut retention_checked = Instant::now();
    loop {
        if retention_checked.elapsed() >= retention::CHECK_INTERVAL {
            enforce_disk_limit(&inner);
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
            None => {
                if retry_at.is_some_and(|t| Instant::now() < t) {
                    continue;
                }
                let due = {
                    let state = inner.state.read().unwrap();
                    let m = state.active.read().unwrap();
                    !state.frozen.is_empty()
                        || m.rows() >= inner.config.flush_rows
                        || m.approx_bytes >= inner.config.flush_bytes
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
                enforce_disk_limit(&inner);
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
                        let state = inner.state.read().unwrap();
                        state.frozen.first().map_or(0, |f| f.table.read().unwrap().approx_bytes as u64)
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

fn flush_now(inner: &Inner) -> Result<()> {
    let (reply, rx) = mpsc::channel();
    inner.tx.send(Cmd::Freeze(reply)).map_err(|_| StoreError::Closed)?;
    rx.recv().map_err(|_| StoreError::Closed)??;
    loop {
        let next = {
            let state = inner.state.read().unwrap();
            state.frozen.first().map(|f| (f.table.clone(), f.last_seq))
        };
        let Some((table, last_seq)) = next else { return Ok(()) };
        flush_table(inner, &table, last_seq)?;
    }
}

/// Deletes the oldest segments while the data directory is over
/// `max_disk_bytes`: catalog first (durably), then the open segments, then the
/// files. Runs on the flusher thread, the catalog's one writer.
fn enforce_disk_limit(inner: &Inner) {
    let Some(limit) = inner.config.max_disk_bytes else { return };
    let used = retention::dir_bytes(&inner.config.data_dir);
    if used <= limit {
        return;
    }
    let mut catalog = inner.catalog.lock().unwrap();
    let count = retention::oldest_to_drop(&catalog.segments, used, limit);
    if count == 0 {
        tracing::warn!(used, limit, "data directory is over --max-disk-bytes, but holds no segment to delete");
        return;
    }
    let mut next = catalog.clone();
    let dropped: Vec<SegmentMeta> = next.segments.drain(..count).collect();
    if let Err(e) = next.store(&inner.config.data_dir) {
        tracing::error!(error = %e, "retention cannot update the catalog; keeping every segment for now");
        return;
    }
    *catalog = next;
    drop_segments(inner, &dropped);
    drop(catalog);
    let freed: u64 = dropped.iter().map(|m| m.bytes).sum();
    inner.counters.retention_deleted_segments.fetch_add(dropped.len() as u64, Ordering::Relaxed);
    tracing::info!(
        segments = dropped.len(),
        freed,
        used,
        limit,
        "deleted the oldest segments to stay under --max-disk-bytes"
    );
}

/// Takes segments the catalog no longer names out of the query path and deletes their files.
fn drop_segments(inner: &Inner, dropped: &[SegmentMeta]) {
    let gone = |s: &Arc<Segment>| dropped.iter().any(|m| m.id == s.meta.id && m.signal == s.meta.signal);
    inner.state.write().unwrap().segments.retain(|s| !gone(s));
    for meta in dropped {
        for path in [meta.parquet_path(&inner.seg_dir), meta.index_path(&inner.seg_dir)] {
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            if let Err(e) = removed.or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a segment retention dropped");
            }
        }
    }
}

/// Writes, syncs and opens the segments of one memtable as segment `id`.
/// Writes and opens the segments of one flush; `flushed_seq` is what they cover,
/// recorded in their footers so that a lost catalog can be rebuilt from them.
/// Recent segments found damaged while summarizing are pushed to `damaged`.
fn write_segments(
    inner: &Inner,
    id: u64,
    m: &Memtable,
    flushed_seq: u64,
    damaged: &mut Vec<(Arc<Segment>, String)>,
) -> Result<(Vec<SegmentMeta>, Vec<Arc<Segment>>)> {
    let signals = [
        (Signal::Traces, m.spans.is_empty()),
        (Signal::Logs, m.logs.is_empty()),
        (Signal::Metrics, m.metrics.is_empty()),
    ];
    let flush = FlushInfo {
        flushed_seq,
        signals: signals.iter().filter(|(_, empty)| !empty).map(|(s, _)| *s).collect(),
    };
    let mut metas = Vec::new();
    if !m.spans.is_empty() {
        let summary = summarize_flush(inner, &m.spans, damaged)?;
        metas.push(segment::write_spans(&inner.seg_dir, id, &m.spans, &summary, &flush)?);
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

/// Removes what a failed flush wrote of segment `id` (finished or temporary
/// files); no catalog names it. Failures are logged: start-up removes strays too.
fn remove_unlisted_segment(seg_dir: &Path, id: u64) {
    if let Err(e) = segment::remove_files(seg_dir, id) {
        tracing::warn!(segment = id, error = %e, "cannot remove the files of a failed flush");
    }
}

/// How many of the newest span segments a flush searches for the parents of
/// its children (and whose orphans it tries to adopt).
const RECENT_SEGMENTS: usize = 4;

fn recent_span_segments(segments: &[Arc<Segment>]) -> Vec<Arc<Segment>> {
    let mut recent: Vec<Arc<Segment>> =
        segments.iter().rev().filter(|s| s.meta.signal == Signal::Traces).take(RECENT_SEGMENTS).cloned().collect();
    recent.reverse();
    recent
}

/// The summary of a flush's spans, with parents looked up in recent segments.
/// Segments found damaged are added to `damaged`, for the caller to
/// quarantine once it no longer holds the catalog lock.
fn summarize_flush(
    inner: &Inner,
    spans: &[SpanRow],
    damaged: &mut Vec<(Arc<Segment>, String)>,
) -> Result<SegmentSummary> {
    let recent = recent_span_segments(&inner.state.read().unwrap().segments);
    let refs: Vec<&SpanRow> = spans.iter().collect();
    let (earlier, pending) = parents_elsewhere(&recent, &refs, &mut |seg, why| damaged.push((seg.clone(), why)))?;
    Ok(spanstats::summarize(spans, &earlier, &pending))
}

/// For spans about to be summarized: the services of their parents found in
/// `recent` segments, and the orphans `recent` segments left. A segment whose
/// bytes fail verification is passed to `on_damage` and skipped.
fn parents_elsewhere(
    recent: &[Arc<Segment>],
    spans: &[&SpanRow],
    on_damage: &mut dyn FnMut(&Arc<Segment>, String),
) -> Result<(ParentIndex, Vec<Orphan>)> {
    let present: HashSet<(TraceId, SpanId)> = spans.iter().map(|s| (s.trace_id, s.span_id)).collect();
    let missing: HashSet<TraceId> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_some_and(|p| !present.contains(&(s.trace_id, p))))
        .map(|s| s.trace_id)
        .collect();
    let mut earlier = ParentIndex::new();
    if !missing.is_empty() {
        for seg in recent {
            match seg.index_parents(&missing, &mut earlier) {
                Err(StoreError::Damaged(why)) => on_damage(seg, why),
                other => other?,
            }
        }
    }
    let pending: Vec<Orphan> =
        recent.iter().filter_map(|s| s.summary.as_ref()).flat_map(|s| s.orphans.iter().cloned()).collect();
    Ok((earlier, pending))
}

/// Writes one frozen memtable as segments, commits them to the catalog, swaps
/// them in for the memtable, and trims the WAL.
fn flush_table(inner: &Inner, table: &Arc<RwLock<Memtable>>, last_seq: u64) -> Result<()> {
    let started = std::time::Instant::now();
    let m = table.read().unwrap();
    let mut catalog = inner.catalog.lock().unwrap();
    let id = catalog.next_segment_id;
    let mut damaged = Vec::new();
    // A failed flush (a full disk, typically) leaves no file behind: a half-written
    // segment would hold the very space the retry needs, and no catalog names it.
    let written = write_segments(inner, id, &m, catalog.flushed_seq.max(last_seq), &mut damaged);
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
    let committed = stored.is_ok() || Catalog::load(&inner.config.data_dir).is_ok_and(|on_disk| on_disk.as_ref() == Some(&next));
    if !committed {
        drop(opened);
        remove_unlisted_segment(&inner.seg_dir, id);
        return stored;
    }
    *catalog = next;
    drop(catalog);
    for (seg, why) in damaged {
        inner.quarantine_damaged(&seg, &why);
    }
    {
        let mut state = inner.state.write().unwrap();
        state.frozen.retain(|f| !Arc::ptr_eq(&f.table, table));
        state.segments.extend(opened);
    }
    stored?;
    wal::remove_flushed(&inner.wal_dir, last_seq)?;
    inner.counters.flushes.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        segment = id,
        rows = m.rows(),
        bytes = metas.iter().map(|x| x.bytes).sum::<u64>(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "flushed memtable to segments"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn one_span(trace: u8) -> Batch {
        Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![trace; 16],
                        span_id: vec![trace; 8],
                        name: "op".into(),
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_001_000_000,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn has_trace(store: &Store, trace: u8) -> bool {
        !store.trace(TraceId([trace; 16])).unwrap().is_empty()
    }

    fn poll(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Regression, issue 14 item 8: a full disk closed the store for good (the
    /// failing request got an I/O error, every later one "store is closed",
    /// freeing space did not help).
    #[test]
    fn wal_out_of_space_is_a_state_that_ends_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
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

    #[test]
    fn retention_deletes_the_oldest_segments_past_max_disk_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        for trace in 1..=3 {
            store.append_blocking(one_span(trace)).unwrap();
            store.flush().unwrap();
        }
        let first = store.segments()[0].clone();
        let used = retention::dir_bytes(dir.path());
        store.close().unwrap();

        // Over the limit by less than the oldest segment: that one goes, the rest stays.
        let mut config = StoreConfig::new(dir.path());
        config.max_disk_bytes = Some(used - first.bytes / 2);
        let store = Store::open(config).unwrap();
        enforce_disk_limit(&store.inner);
        assert_eq!(store.segments().len(), 2);
        assert!(!store.segments().iter().any(|s| s.id == first.id));
        assert!(!first.parquet_path(&dir.path().join("segments")).exists());
        assert!(!first.index_path(&dir.path().join("segments")).exists());
        assert!(!has_trace(&store, 1) && has_trace(&store, 2) && has_trace(&store, 3));
        assert_eq!(store.counters().retention_deleted_segments.load(Ordering::Relaxed), 1);
        enforce_disk_limit(&store.inner);
        assert_eq!(store.segments().len(), 2, "under the limit now: nothing more goes");
        store.close().unwrap();
        // The catalog was updated first: a restart does not bring the segment back.
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        assert_eq!(store.segments().len(), 2);
        assert!(!has_trace(&store, 1) && has_trace(&store, 3));
        store.close().unwrap();
    }
}
