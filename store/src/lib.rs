//! seismo's telemetry database.
//!
//! Owns everything between "an OTLP request was decoded" and "a query gets
//! rows": validation and flattening of OTLP into rows, the write-ahead log, the
//! in-memory tail, immutable Parquet segments with an index each (the span
//! index for spans, tantivy for logs), their background compaction, the
//! catalog, and the scans the query API runs.
//!
//! Design decisions:
//! - **Acknowledge only what is durable.** `Store::append` returns after the
//!   request's WAL frame is fsynced (group commit: one fsync covers every
//!   request that queued meanwhile). The WAL stores the OTLP request itself,
//!   as the protobuf bytes it arrived as when the collector passes them on
//!   ([`Received`]), so it is not encoded a second time; replay reruns the
//!   same conversion.
//! - **Read, not decoded.** A trace request of the common shape is read
//!   straight from its protobuf bytes into a flat batch (`wire`), and the
//!   memtable interns its strings from there: no prost tree, no row per span,
//!   no string allocated and freed per attribute. prost and the conversion
//!   stay the definition: anything else goes their way, and tests and a fuzz
//!   target check that both ways store the same spans.
//! - **Visible at once.** Rows enter the memtable right after the fsync, before
//!   the ack, so acknowledged data is queryable immediately.
//! - **Immutable segments, one catalog.** A flush writes segment files, syncs
//!   them, then atomically replaces the catalog; only then is the WAL trimmed.
//!   Files are only ever created whole and renamed, so a local directory and an
//!   object-store bucket can play the same role later.
//! - **Damage is set aside, never spread.** WAL frames verify one by one, so
//!   a damaged frame costs only itself; segments describe themselves and
//!   carry checksums, so a lost catalog is rebuilt and a damaged segment is
//!   moved to `quarantine/` while the rest is served. Nothing is deleted
//!   because it looks unfamiliar.
//! - **One walk for every read.** A query takes a snapshot of the memtables
//!   and segments, names a scope (signal, time window, service) and says what
//!   it does with each source's rows; the walk picks the sources, prunes
//!   segments by their catalog entry and sets aside a segment found damaged.
//!   Flush, quarantine, retention and compaction change the set of sources
//!   in one place (`db::sources`).
//! - **Search touches only what can be in the answer.** A trace search asks
//!   each segment's span index for its newest matching traces (posting lists
//!   in time order), newest segments first, and stops once nothing older can
//!   enter the top `limit` (`spanindex`, `segment::scan`).
//! - **Bounded memory.** A bounded write queue and a cap on unflushed data
//!   (`StoreConfig::max_memtable_bytes`) turn overload into waiting, then
//!   `StoreError::Busy`, instead of growth: at the cap an append waits up to
//!   `StoreConfig::ingest_wait` for a flush to make room. A flush does not
//!   stall ingest: the full memtable is frozen and flushed while a fresh one
//!   takes the writes, so waits and `Busy` mean the flush truly falls behind.
//! - **A full disk is a state, not a death.** ENOSPC / EDQUOT on the WAL or a
//!   flush refuses writes with `StoreError::DiskFull` (nothing half-written is
//!   kept or acknowledged) until a probe finds room; then ingest resumes by
//!   itself. Other WAL failures stop writes for good (`WalFailed`); queries
//!   keep working in both cases. See `diskfull`. Size-based retention
//!   (`StoreConfig::max_disk_bytes`) deletes the oldest segments before it
//!   comes to that; time-based retention (`StoreConfig::retention`) deletes
//!   segments whose newest data is older than the limit. See `retention`.

mod attrcodes;
mod catalog;
mod convert;
/// The `Store` handle and its paths: `write`, `flush`, `read`, and the
/// `sources` every read walks (memtables, then segments).
mod db;
mod diskfull;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod logsearch;
mod memtable;
mod model;
mod packed;
mod quarantine;
mod query;
mod recovery;
mod retention;
mod schema;
mod segment;
mod spanindex;
mod spanstats;
mod tags;
mod textindex;
mod wal;
mod wire;

pub use convert::{SERVICE_NAME, UNKNOWN_SERVICE};
pub use db::{AppendOutcome, Batch, Health, Received, Store, StoreConfig, StoreCounters};
pub use error::{Result, StoreError};
pub use ids::{SpanId, TraceId};
pub use logsearch::{severity_range, LogQuery};
pub use model::*;
pub use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest,
};
pub use quarantine::DIR_NAME as QUARANTINE_DIR;
pub use query::{Cohort, Operation, StatsQuery, TraceQuery, EXPERIMENT_ATTRIBUTE};
pub use segment::SegmentMeta;
pub use spanstats::{merge as merge_op_stats, LatencySketch, OpKey, OpStats};
pub use tags::{
    ERROR as TAG_ERROR, OTEL_SCOPE_NAME, OTEL_SCOPE_VERSION, OTEL_STATUS_CODE, OTEL_STATUS_DESCRIPTION,
    SPAN_KIND as TAG_SPAN_KIND,
};
