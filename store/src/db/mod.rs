//! `Store`: the handle, and opening and closing it. The database itself is
//! split by path, one module each:
//! - `write`: append -> WAL group commit -> memtable; back-pressure; the
//!   disk-full state on the WAL;
//! - `flush`: freezing the memtable, the flusher thread, writing segments;
//! - `prune`: retention by age and by size, on the flusher thread;
//! - `compact`: merging small segments (of each signal), on the compactor thread;
//! - `sources`: the live set of memtables and segments, and the snapshot
//!   every read walks (damaged segments are set aside there);
//! - `read`: the queries, each saying what it does with the rows of a walk.
//!
//! Threads: one writer thread owns the WAL and is the only writer of the
//! active memtable; one flusher thread freezes the memtable (through the writer,
//! so freeze and WAL rotation happen at one sequence number), writes segments
//! and commits them to the catalog; one compactor thread merges small segments;
//! one thread opens the span segments' indexes after a start, then ends.
//! Queries never block writes for long: they
//! clone `Arc`s of the current memtables and segments under a brief read lock.

mod batch;
mod compact;
mod flush;
mod prune;
mod read;
mod sources;
#[cfg(test)]
mod testing;
mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::diskfull::DiskFullState;
use crate::error::{Result, StoreError};
use crate::memtable::Memtable;
use crate::model::Signal;
use crate::quarantine::Quarantine;
use crate::recovery;
use crate::segment::SegmentMeta;
use crate::wal::{self, WalRecord, WalWriter};
use crate::wire::TraceBatch;
use batch::Rows;
pub use batch::{Batch, Received};
use flush::FlushCmd;
use sources::Sources;
pub use write::AppendOutcome;
use write::Cmd;

/// Tuning of the write path. `StoreConfig::new(dir)` gives the defaults.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// Flush when the memtable holds this many rows...
    pub flush_rows: usize,
    /// ...or holds this many bytes of memory (see `max_memtable_bytes`)...
    pub flush_bytes: usize,
    /// ...or its oldest row is this old.
    pub flush_interval: Duration,
    /// Appends waiting for the writer thread before new ones get `Busy`.
    pub queue_capacity: usize,
    /// Memory held by unflushed data (the active memtable plus those being
    /// flushed: rows, their tables and indexes, estimated) at which appends
    /// get `Busy`: the bound on the store's memory when ingest outruns the
    /// flush. While a flush runs, a fresh memtable takes the writes, so this
    /// should leave room for at least two memtables of `flush_bytes`; a
    /// smaller cap is the flush size instead (see `full_memtable_bytes`).
    pub max_memtable_bytes: usize,
    /// How long an append waits for a flush to bring the unflushed data
    /// under `max_memtable_bytes` before it gets `Busy`: a client that waits
    /// for each acknowledgement is slowed to the flush's pace, not refused.
    pub ingest_wait: Duration,
    /// When the data directory grows past this many bytes, the oldest segments
    /// are deleted (see `retention`); `None` keeps everything.
    pub max_disk_bytes: Option<u64>,
    /// Segments (of each signal) are merged into segments of up to this many rows in
    /// the background (see `compact`); 0 turns compaction off.
    pub compact_rows: u64,
    /// Segments whose newest data is older than this are deleted whole;
    /// `None` keeps everything.
    pub retention: Option<Duration>,
}

impl StoreConfig {
    /// Bytes at which the active memtable is flushed: `flush_bytes`, or the
    /// whole cap when that is smaller (else appends would wait at the cap
    /// for a flush that only the interval brings).
    pub(crate) fn full_memtable_bytes(&self) -> usize {
        self.flush_bytes.min(self.max_memtable_bytes)
    }

    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            flush_rows: 256 * 1024,
            flush_bytes: 64 << 20,
            flush_interval: Duration::from_secs(60),
            queue_capacity: 4096,
            // Eight memtables' worth: what the store held at most before
            // this cap counted the frozen memtables too (a 256 MiB cap on the
            // active one alone). A burst of a million spans fits without a 429.
            max_memtable_bytes: 256 << 20,
            // As long as the collector waits for its in-flight budget.
            ingest_wait: Duration::from_secs(5),
            max_disk_bytes: None,
            compact_rows: 2_000_000,
            retention: None,
        }
    }
}
/// Counters for self-telemetry.
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub spans: AtomicU64,
    pub logs: AtomicU64,
    pub metric_points: AtomicU64,
    pub rejected: AtomicU64,
    pub busy: AtomicU64,
    /// Appends held back at `max_memtable_bytes` until a flush made room, and
    /// the time they waited in all (nanoseconds), refused ones included.
    pub ingest_waits: AtomicU64,
    pub ingest_wait_ns: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
    /// Time spent in flushes that succeeded, in nanoseconds.
    pub flush_busy_ns: AtomicU64,
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
    pub retention_deleted_segments_size: AtomicU64,
    /// Segments deleted because their newest data was older than `retention`.
    pub retention_deleted_segments_age: AtomicU64,
    /// Requests refused because the disk was full.
    pub disk_full_refusals: AtomicU64,
    /// Merges of small segments, of any signal (see `compact`).
    pub compactions: AtomicU64,
    /// Trace requests stored that were read straight from their protobuf
    /// bytes (`wire`), and those decoded into messages first (OTLP/JSON, and
    /// protobuf outside the common shape).
    pub trace_requests_parsed: AtomicU64,
    pub trace_requests_decoded: AtomicU64,
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

/// What the store's threads and handles share.
struct Inner {
    config: StoreConfig,
    wal_dir: PathBuf,
    seg_dir: PathBuf,
    /// The memtables and segments queries read (see `sources`).
    sources: RwLock<Sources>,
    /// To the writer thread.
    tx: SyncSender<Cmd>,
    /// To the flusher thread; `None` once closed.
    flush_tx: Mutex<Option<SyncSender<FlushCmd>>>,
    /// Dropped to stop the compactor thread.
    compact_stop: Mutex<Option<SyncSender<()>>>,
    /// The catalog as last stored. Its lock orders every change of the
    /// segment set (flush, quarantine, retention).
    catalog: Mutex<Catalog>,
    closed: AtomicBool,
    counters: Arc<StoreCounters>,
    quarantine: Arc<Quarantine>,
    /// Set (once, for good) when a WAL write fails for a reason other than space.
    wal_failure: OnceLock<String>,
    disk_full: DiskFullState,
    /// Woken when a flush makes room under `max_memtable_bytes`, and at close.
    room: tokio::sync::Notify,
    /// Test hook: the next WAL writes fail half-way with ENOSPC and probes find no room.
    #[cfg(test)]
    inject_enospc: AtomicBool,
    /// Test hook: automatic flushes are not started (asked-for ones still run).
    #[cfg(test)]
    hold_flushes: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The telemetry database. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Puts the rows of one replayed WAL record into `memtable`: the conversion
/// `Store::append` ran before writing it. Returns how many rows it added.
///
/// # Errors
/// `Corrupt` when the payload does not decode; the conversion's own errors.
pub(crate) fn replay_record(rec: &WalRecord, memtable: &mut Memtable) -> Result<usize> {
    // Trace requests as `Received::from_trace_protobuf` reads them.
    let parsed = (rec.signal == Signal::Traces).then(|| TraceBatch::parse(&rec.payload)).flatten();
    let rows = match parsed {
        Some(spans) => Rows::Parsed(spans),
        None => {
            let batch = Batch::decode(rec.signal, &rec.payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            batch.into_rows()?.0
        }
    };
    let added = rows.len();
    rows.insert_into(memtable, rec.payload.len());
    Ok(added)
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
            match replay_record(&rec, &mut memtable) {
                Ok(rows) => replayed += rows as u64,
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
            sources: RwLock::new(Sources::new(memtable, segments)),
            tx,
            flush_tx: Mutex::new(None),
            compact_stop: Mutex::new(None),
            catalog: Mutex::new(catalog),
            closed: AtomicBool::new(false),
            counters,
            quarantine,
            wal_failure: OnceLock::new(),
            disk_full: DiskFullState::default(),
            room: tokio::sync::Notify::new(),
            #[cfg(test)]
            inject_enospc: AtomicBool::new(false),
            #[cfg(test)]
            hold_flushes: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            config,
        });
        let (flush_tx, flush_rx) = mpsc::sync_channel(16);
        *inner.flush_tx.lock().unwrap() = Some(flush_tx);
        let writer = {
            let inner = inner.clone();
            std::thread::Builder::new().name("seismo-wal".into()).spawn(move || write::writer_loop(inner, wal, rx))?
        };
        let flusher = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("seismo-flush".into())
                .spawn(move || flush::flusher_loop(inner, flush_rx))?
        };
        let (compact_stop, stopped) = mpsc::sync_channel(1);
        *inner.compact_stop.lock().unwrap() = Some(compact_stop);
        let compactor = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("seismo-compact".into())
                .spawn(move || compact::compactor_loop(inner, stopped))?
        };
        let indexes = {
            let inner = inner.clone();
            std::thread::Builder::new().name("seismo-indexes".into()).spawn(move || read::open_span_indexes(&inner))?
        };
        inner.threads.lock().unwrap().extend([writer, flusher, compactor, indexes]);
        Ok(Store { inner })
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    pub fn counters(&self) -> &StoreCounters {
        &self.inner.counters
    }

    /// Catalog entries of the segments currently open.
    pub fn segments(&self) -> Vec<SegmentMeta> {
        self.inner.sources.read().unwrap().segments().iter().map(|s| s.meta.clone()).collect()
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

    /// Stops accepting writes, flushes, and stops the background threads.
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.room.notify_waiters();
        // A merge under way sees `closed` and stops at its next row group.
        drop(self.inner.compact_stop.lock().unwrap().take());
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
}
