//! Immutable segments: one Parquet file (plus a tantivy index for spans and
//! logs) per signal per flush.
//!
//! Span segments are sorted by (trace_id, start time). Trace assembly is the
//! hot path — every search ends by loading whole traces — and with this order a
//! trace's spans sit together: row-group min/max statistics narrow a lookup to
//! one row group, the trace_id bloom filter skips segments that do not hold the
//! trace without any I/O (filters are loaded once, at open), and the page index
//! lets the reader fetch just the pages holding the trace. Service and time
//! predicates prune whole segments from catalog statistics; inside a segment
//! they scan a handful of narrow, dictionary-encoded columns.
//!
//! Every segment describes itself and carries its own checksums, in the
//! Parquet footer's key-value metadata:
//! - `seismo.segment` ([`SegmentFooter`]): its catalog entry, the highest WAL
//!   sequence its flush covered and the signals that flush wrote, so a lost or
//!   unreadable catalog can be rebuilt from the files alone;
//! - `seismo.chunk_crc32`: a CRC-32 of every column chunk (per row group, per
//!   leaf column), because the Parquet writer we use writes no page CRCs. A
//!   chunk is verified the first time a query reads it, not at open: start-up
//!   stays cheap with millions of rows on disk, and each data byte is checked
//!   once per process before it is trusted (the price: the first lookup in a
//!   row group reads its whole chunks once). A mismatch is
//!   `StoreError::Damaged`.
//! - `seismo.bloom_crc32`: a CRC-32 of every bloom filter, verified at open
//!   (the filters are read then anyway; they are small).
//!
//! Not covered: the footer itself (parsed at open; damage there mostly fails
//! to parse or to match the catalog) and the page indexes.
//!
//! The text index is derived data: it is opened (and its files checked
//! against tantivy's own checksums) on first use, and when it is damaged or
//! missing it is moved to quarantine and rebuilt from the Parquet file.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::{PageIndexPolicy, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::ids::TraceId;
use crate::logsearch;
use crate::model::*;
use crate::quarantine::Quarantine;
use crate::query::TraceQuery;
use crate::schema::{self, col, Columns};
use crate::spanstats::{ParentIndex, SegmentSummary, StatsBuilder, STATUS_ERROR, SUMMARY_KEY};
use crate::tags;
use crate::textindex::{Doc, IndexKind, TextIndex, TextIndexWriter};

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Rows per data page: small enough that a trace lookup reads little.
const PAGE_ROWS: usize = 8 * 1024;
const ZSTD_LEVEL: i32 = 3;
/// Footer key of a segment's [`SegmentFooter`].
pub const SEGMENT_KEY: &str = "seismo.segment";
/// Footer key of the column-chunk checksums: JSON `[[crc32 per leaf column] per row group]`.
pub const CHUNK_CRC_KEY: &str = "seismo.chunk_crc32";
/// Footer key of the bloom-filter checksums: JSON `[[[leaf column, crc32] per filter] per row group]`.
pub const BLOOM_CRC_KEY: &str = "seismo.bloom_crc32";

/// What a segment says about itself (in its footer, under [`SEGMENT_KEY`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentFooter {
    /// The catalog entry, except `bytes` (0: the file size is not known
    /// while the footer is written).
    pub meta: SegmentMeta,
    /// The flush that wrote this segment.
    #[serde(flatten)]
    pub flush: FlushInfo,
}

/// Which WAL records a flush covered and which segments it wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlushInfo {
    /// Every WAL record with `seq <= flushed_seq` is in a segment once this
    /// flush's segments are all present.
    pub flushed_seq: u64,
    /// The signals of the segments this flush wrote (all with the same id).
    pub signals: Vec<Signal>,
}

/// What the catalog records about a segment: enough to prune it without opening it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub id: u64,
    pub signal: Signal,
    pub rows: u64,
    /// Parquet plus index bytes on disk.
    pub bytes: u64,
    /// Min / max event time (span start, log time, point time), ns.
    pub min_time: i64,
    pub max_time: i64,
    pub services: Vec<String>,
    /// (service, span name, span kind) for span segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<(String, String, i32)>,
    /// Distinct metric streams for metric segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricDescriptor>,
    pub has_index: bool,
}

impl SegmentMeta {
    pub fn parquet_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{:016}-{}.parquet", self.id, self.signal.as_str()))
    }
    pub fn index_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{:016}-{}.tantivy", self.id, self.signal.as_str()))
    }
    pub fn overlaps(&self, min: Option<i64>, max: Option<i64>) -> bool {
        min.is_none_or(|m| self.max_time >= m) && max.is_none_or(|m| self.min_time <= m)
    }
}

/// Removes every file and directory of segment `id`, finished or temporary
/// (`<id>-<signal>.parquet`, `.parquet.tmp`, `.tantivy`, `.tantivy.tmp`).
/// Only for a segment no catalog names: a flush that failed part-way.
pub fn remove_files(dir: &Path, id: u64) -> std::io::Result<()> {
    let prefix = format!("{id:016}-");
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let path = entry.path();
        tracing::info!(path = %path.display(), "removing a file of a failed flush");
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn writer_props(sort_col: usize, bloom: Option<(&str, usize)>, no_dict: &[&str]) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("valid zstd level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: sort_col as i32,
            descending: false,
            nulls_first: false,
        }]));
    if let Some((column, ndv)) = bloom {
        let path = ColumnPath::from(column);
        b = b
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), 0.01)
            .set_column_bloom_filter_max_ndv(path, ndv.clamp(1, ROW_GROUP_ROWS) as u64);
    }
    for c in no_dict {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*c), false);
    }
    b.build()
}

/// Writes sorted `rows` to `path` one row group at a time (a batch per row
/// group keeps peak memory and reallocation down), through a temporary file,
/// and fsyncs it; the caller syncs the directory once for the whole flush.
/// `footer` key-value pairs go into the footer, followed by the segment's own
/// description and its column-chunk checksums.
fn write_parquet<R>(
    path: &Path,
    schema: arrow::datatypes::SchemaRef,
    rows: &[&R],
    to_batch: impl Fn(&[&R]) -> Result<RecordBatch>,
    props: WriterProperties,
    footer: Vec<(&str, String)>,
    describe: &SegmentFooter,
) -> Result<u64> {
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp)?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
    for chunk in rows.chunks(ROW_GROUP_ROWS) {
        writer.write(&to_batch(chunk)?)?;
    }
    writer.flush()?;
    writer.sync()?;
    // Every column chunk is in the file now; checksum them from it (they are
    // still in the page cache) before the footer that records them.
    let written = File::open(&tmp)?;
    let mut crcs = Vec::new();
    let mut bloom_crcs = Vec::new();
    for rg in writer.flushed_row_groups() {
        let mut row = Vec::with_capacity(rg.num_columns());
        let mut blooms = Vec::new();
        for (ci, c) in rg.columns().iter().enumerate() {
            let (start, len) = chunk_range(c).ok_or_else(|| StoreError::Corrupt("negative chunk offset".into()))?;
            row.push(crc_of_range(&written, start, len)?);
            // Bloom filters follow their row group, so they are written too.
            if let Some((start, len)) = bloom_range(c) {
                blooms.push((ci, crc_of_range(&written, start, len)?));
            }
        }
        crcs.push(row);
        bloom_crcs.push(blooms);
    }
    let mut kvs = footer;
    let describe = serde_json::to_string(describe).expect("footer serializes");
    kvs.push((SEGMENT_KEY, describe));
    kvs.push((CHUNK_CRC_KEY, serde_json::to_string(&crcs).expect("crcs serialize")));
    kvs.push((BLOOM_CRC_KEY, serde_json::to_string(&bloom_crcs).expect("crcs serialize")));
    for (key, value) in kvs {
        writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(key.to_string(), value));
    }
    let file = writer.into_inner()?;
    file.sync_all()?;
    let len = file.metadata()?.len();
    fs::rename(&tmp, path)?;
    Ok(len)
}

/// (offset, length) of a column chunk's pages, or `None` when the metadata
/// holds negative numbers (a damaged footer).
fn chunk_range(c: &parquet::file::metadata::ColumnChunkMetaData) -> Option<(u64, u64)> {
    let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
    let len = c.compressed_size();
    (start >= 0 && len >= 0).then_some((start as u64, len as u64))
}

/// (offset, length) of a column chunk's bloom filter, when it has one.
fn bloom_range(c: &parquet::file::metadata::ColumnChunkMetaData) -> Option<(u64, u64)> {
    let (start, len) = (c.bloom_filter_offset()?, c.bloom_filter_length()?);
    (start >= 0 && len >= 0).then_some((start as u64, len as u64))
}

/// CRC-32 of `len` bytes of `file` at `start`, read in bounded pieces.
fn crc_of_range(file: &File, start: u64, len: u64) -> std::io::Result<u32> {
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; (len as usize).min(1 << 20)];
    let mut done = 0u64;
    while done < len {
        let n = ((len - done) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], start + done)?;
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(h.finalize())
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir).map(|it| it.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

/// Builds a text index in a temporary directory and renames it into place.
fn write_index(path: &Path, kind: IndexKind, fill: impl FnOnce(&mut TextIndexWriter) -> Result<()>) -> Result<u64> {
    let tmp = path.with_extension("tantivy.tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    let mut w = TextIndexWriter::create(&tmp, kind)?;
    fill(&mut w)?;
    w.finish()?;
    let size = dir_size(&tmp);
    fs::rename(&tmp, path)?;
    Ok(size)
}

impl SegmentMeta {
    /// Describes a segment about to be written from rows with these times and services.
    fn describe<'a>(
        id: u64,
        signal: Signal,
        rows: usize,
        times: impl Iterator<Item = i64>,
        services: impl Iterator<Item = &'a str>,
        has_index: bool,
    ) -> Self {
        let (min_time, max_time) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        let services: BTreeSet<&str> = services.collect();
        SegmentMeta {
            id,
            signal,
            rows: rows as u64,
            bytes: 0,
            min_time,
            max_time,
            services: services.into_iter().map(str::to_string).collect(),
            operations: Vec::new(),
            metrics: Vec::new(),
            has_index,
        }
    }
}

/// Writes a span segment with its summary in the footer. `rows` must not be empty.
pub fn write_spans(
    dir: &Path,
    id: u64,
    rows: &[SpanRow],
    summary: &SegmentSummary,
    flush: &FlushInfo,
) -> Result<SegmentMeta> {
    let mut sorted: Vec<&SpanRow> = rows.iter().collect();
    sorted.sort_by(|a, b| (a.trace_id, a.start_time_unix_nano).cmp(&(b.trace_id, b.start_time_unix_nano)));
    let traces_per_group = (rows.len().min(ROW_GROUP_ROWS) / 2).max(1);
    let props = writer_props(
        0,
        Some((col::TRACE_ID, traces_per_group)),
        &[col::SPAN_ID, col::PARENT_SPAN_ID, col::EVENTS, col::LINKS],
    );
    let distinct: HashSet<(&str, &str, i32)> =
        rows.iter().map(|r| (r.service_name.as_str(), r.name.as_str(), r.kind)).collect();
    let mut meta = SegmentMeta::describe(
        id,
        Signal::Traces,
        rows.len(),
        rows.iter().map(|r| r.start_time_unix_nano),
        distinct.iter().map(|(s, _, _)| *s),
        true,
    );
    let operations: BTreeSet<(String, String, i32)> =
        distinct.into_iter().map(|(s, n, k)| (s.to_string(), n.to_string(), k)).collect();
    meta.operations = operations.into_iter().collect();
    let footer = serde_json::to_string(summary).expect("summary serializes");
    let describe = SegmentFooter { meta: meta.clone(), flush: flush.clone() };
    let parquet_bytes = write_parquet(
        &meta.parquet_path(dir),
        schema::span_schema(),
        &sorted,
        |c| schema::spans_to_batch(c),
        props,
        vec![(SUMMARY_KEY, footer)],
        &describe,
    )?;
    let index_bytes = write_index(&meta.index_path(dir), IndexKind::Spans, |w| {
        for (i, row) in sorted.iter().enumerate() {
            w.add(i as u64, |doc| span_doc(doc, row))?;
        }
        Ok(())
    })?;
    meta.bytes = parquet_bytes + index_bytes;
    Ok(meta)
}

/// The index document of a span: its tags as exact terms, its texts as words.
fn span_doc(doc: &mut Doc, row: &SpanRow) {
    tags::for_each_pair(row, |k, v| {
        let t = tags::term(k, v);
        if t.len() <= tags::MAX_TERM_BYTES {
            doc.kv(&t);
        }
    });
    doc.text(&row.name);
    doc.text(&row.status_message);
    let event_attrs = row.events.iter().flat_map(|e| e.attributes.iter());
    for kv in row.attributes.iter().chain(event_attrs) {
        if let AttrValue::Str(s) = &kv.value {
            doc.text(s);
        }
    }
    for ev in &row.events {
        doc.text(&ev.name);
    }
}

/// Writes a log segment, sorted by (service, time). `rows` must not be empty.
pub fn write_logs(dir: &Path, id: u64, rows: &[LogRow], flush: &FlushInfo) -> Result<SegmentMeta> {
    let mut sorted: Vec<&LogRow> = rows.iter().collect();
    sorted.sort_by(|a, b| (&a.service_name, a.time_unix_nano).cmp(&(&b.service_name, b.time_unix_nano)));
    let props = writer_props(2, Some((col::TRACE_ID, ROW_GROUP_ROWS / 4)), &[]);
    let services = rows.iter().map(|r| r.service_name.as_str());
    let mut meta =
        SegmentMeta::describe(id, Signal::Logs, rows.len(), rows.iter().map(|r| r.time_unix_nano), services, true);
    let describe = SegmentFooter { meta: meta.clone(), flush: flush.clone() };
    let parquet_bytes = write_parquet(
        &meta.parquet_path(dir),
        schema::log_schema(),
        &sorted,
        |c| schema::logs_to_batch(c),
        props,
        Vec::new(),
        &describe,
    )?;
    let index_bytes = write_index(&meta.index_path(dir), IndexKind::Logs, |w| {
        for (i, row) in sorted.iter().enumerate() {
            w.add(i as u64, |doc| logsearch::fill_doc(doc, row))?;
        }
        Ok(())
    })?;
    meta.bytes = parquet_bytes + index_bytes;
    Ok(meta)
}

/// Writes a metric-point segment, sorted by (metric, service, time). `rows` must not be empty.
pub fn write_metrics(dir: &Path, id: u64, rows: &[MetricPointRow], flush: &FlushInfo) -> Result<SegmentMeta> {
    let mut sorted: Vec<&MetricPointRow> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.metric_name, &a.service_name, a.time_unix_nano).cmp(&(&b.metric_name, &b.service_name, b.time_unix_nano))
    });
    let props = writer_props(0, None, &[]);
    let services = rows.iter().map(|r| r.service_name.as_str());
    let mut meta =
        SegmentMeta::describe(id, Signal::Metrics, rows.len(), rows.iter().map(|r| r.time_unix_nano), services, false);
    let mut descriptors: Vec<MetricDescriptor> = Vec::new();
    for r in &sorted {
        if !descriptors.last().is_some_and(|d| d.describes(r)) {
            descriptors.push(MetricDescriptor::of(r));
        }
    }
    descriptors.sort();
    descriptors.dedup();
    meta.metrics = descriptors;
    let describe = SegmentFooter { meta: meta.clone(), flush: flush.clone() };
    meta.bytes = write_parquet(
        &meta.parquet_path(dir),
        schema::metric_schema(),
        &sorted,
        |c| schema::metrics_to_batch(c),
        props,
        Vec::new(),
        &describe,
    )?;
    Ok(meta)
}

/// An open segment: metadata, bloom filters and index handles cached for the
/// segment's lifetime so a lookup touches only the pages it needs.
pub struct Segment {
    pub meta: SegmentMeta,
    dir: PathBuf,
    path: PathBuf,
    reader_meta: ArrowReaderMetadata,
    /// Per row group: trace_id (min, max) and bloom filter (span and log segments).
    trace_ranges: Vec<Option<(Vec<u8>, Vec<u8>)>>,
    blooms: Vec<Option<Sbbf>>,
    /// Opened on first use (see the module doc).
    index: Mutex<Option<Arc<TextIndex>>>,
    /// Span segments: per-operation stats and service edges from the footer.
    pub summary: Option<SegmentSummary>,
    /// Per row group, per leaf column: the expected CRC-32 and whether the
    /// chunk has been verified yet (absent in older segments).
    chunk_crcs: Option<Vec<Vec<u32>>>,
    verified: Vec<Vec<AtomicBool>>,
    /// Set by the first failed verification, so reads through snapshots
    /// taken before the segment's quarantine fail fast.
    damaged: Mutex<Option<String>>,
    quarantine: Arc<Quarantine>,
}

/// A footer value by key.
fn footer_value<'a>(md: &'a parquet::file::metadata::ParquetMetaData, key: &str) -> Option<&'a str> {
    md.file_metadata().key_value_metadata()?.iter().find(|kv| kv.key == key)?.value.as_deref()
}

impl Segment {
    /// Opens a segment and checks what is cheap to check: the file is there,
    /// its footer parses, its row count and self-description agree with
    /// `meta`. Column chunks and the index are verified on first use.
    ///
    /// # Errors
    /// `Damaged` (naming the file) for a missing, truncated or inconsistent
    /// segment; `Io` for other I/O failures (e.g. out of descriptors), which
    /// say nothing about the bytes.
    pub fn open(dir: &Path, meta: SegmentMeta, quarantine: Arc<Quarantine>) -> Result<Self> {
        let path = meta.parquet_path(dir);
        let damaged = |what: String| StoreError::Damaged(format!("{}: {what}", path.display()));
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(damaged("file is missing".into())),
            Err(e) => return Err(StoreError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))),
        };
        let reader_meta = ArrowReaderMetadata::load(
            &file,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .map_err(|e| damaged(format!("unreadable Parquet footer: {e}")))?;
        let md = reader_meta.metadata().clone();
        if md.file_metadata().num_rows() as u64 != meta.rows {
            return Err(damaged(format!(
                "holds {} rows, the catalog says {}",
                md.file_metadata().num_rows(),
                meta.rows
            )));
        }
        let footer: Option<SegmentFooter> = footer_value(&md, SEGMENT_KEY)
            .map(|json| serde_json::from_str(json).map_err(|e| damaged(format!("segment description: {e}"))))
            .transpose()?;
        if let Some(f) = &footer {
            if (f.meta.id, f.meta.signal, f.meta.rows) != (meta.id, meta.signal, meta.rows) {
                return Err(damaged(format!(
                    "describes itself as segment {} ({}, {} rows), the catalog as {} ({}, {} rows)",
                    f.meta.id,
                    f.meta.signal.as_str(),
                    f.meta.rows,
                    meta.id,
                    meta.signal.as_str(),
                    meta.rows
                )));
            }
        }
        let chunk_crcs: Option<Vec<Vec<u32>>> = footer_value(&md, CHUNK_CRC_KEY)
            .map(|json| serde_json::from_str(json).map_err(|e| damaged(format!("chunk checksums: {e}"))))
            .transpose()?;
        if let Some(crcs) = &chunk_crcs {
            let shape_ok = crcs.len() == md.num_row_groups()
                && crcs.iter().zip(md.row_groups()).all(|(c, rg)| c.len() == rg.num_columns());
            if !shape_ok {
                return Err(damaged("chunk checksums do not match the row groups".into()));
            }
        }
        let verified =
            md.row_groups().iter().map(|rg| (0..rg.num_columns()).map(|_| AtomicBool::new(false)).collect()).collect();
        // Bloom filters are read whole at open, so they are verified here: a
        // flip in one would silently hide traces from lookups by id.
        let bloom_crcs: Option<Vec<Vec<(usize, u32)>>> = footer_value(&md, BLOOM_CRC_KEY)
            .map(|json| serde_json::from_str(json).map_err(|e| damaged(format!("bloom checksums: {e}"))))
            .transpose()?;
        for (rg, filters) in bloom_crcs.iter().flatten().enumerate() {
            for &(ci, expected) in filters {
                let chunk = md
                    .row_groups()
                    .get(rg)
                    .and_then(|g| g.columns().get(ci))
                    .ok_or_else(|| damaged("bloom checksums do not match the row groups".into()))?;
                let (start, len) = bloom_range(chunk)
                    .ok_or_else(|| damaged(format!("row group {rg}: bloom filter of column {ci} is gone")))?;
                let crc = crc_of_range(&file, start, len)
                    .map_err(|e| damaged(format!("row group {rg}: bloom filter of column {ci}: {e}")))?;
                if crc != expected {
                    return Err(damaged(format!("row group {rg}: bloom filter of column {ci}: checksum mismatch")));
                }
            }
        }
        let mut trace_ranges = Vec::new();
        let mut blooms = Vec::new();
        let trace_col = md.file_metadata().schema_descr().columns().iter().position(|c| c.name() == col::TRACE_ID);
        for rg in md.row_groups() {
            let Some(ci) = trace_col else {
                trace_ranges.push(None);
                blooms.push(None);
                continue;
            };
            let chunk = rg.column(ci);
            trace_ranges.push(match chunk.statistics() {
                Some(Statistics::FixedLenByteArray(s)) => match (s.min_bytes_opt(), s.max_bytes_opt()) {
                    (Some(lo), Some(hi)) => Some((lo.to_vec(), hi.to_vec())),
                    _ => None,
                },
                _ => None,
            });
            blooms.push(Sbbf::read_from_column_chunk(chunk, &file).map_err(|e| damaged(format!("bloom filter: {e}")))?);
        }
        let summary = footer_value(&md, SUMMARY_KEY)
            .map(|json| serde_json::from_str(json).map_err(|e| damaged(format!("span summary: {e}"))))
            .transpose()?;
        Ok(Self {
            meta,
            dir: dir.to_path_buf(),
            path,
            reader_meta,
            trace_ranges,
            blooms,
            index: Mutex::new(None),
            summary,
            chunk_crcs,
            verified,
            damaged: Mutex::new(None),
            quarantine,
        })
    }

    /// Reads a segment's self-description from its footer alone (for
    /// rebuilding a catalog): `Ok(None)` for a segment written before
    /// segments described themselves.
    ///
    /// # Errors
    /// `Damaged` when the file is unreadable or its description does not parse.
    pub fn read_footer(path: &Path) -> Result<Option<SegmentFooter>> {
        let damaged = |what: String| StoreError::Damaged(format!("{}: {what}", path.display()));
        let file = File::open(path).map_err(|e| damaged(e.to_string()))?;
        let md = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .map_err(|e| damaged(format!("unreadable Parquet footer: {e}")))?;
        let Some(json) = footer_value(&md, SEGMENT_KEY) else { return Ok(None) };
        let footer: SegmentFooter =
            serde_json::from_str(json).map_err(|e| damaged(format!("segment description: {e}")))?;
        if footer.meta.rows != md.file_metadata().num_rows() as u64 {
            return Err(damaged("row count differs from its description".into()));
        }
        Ok(Some(footer))
    }

    /// The files of this segment (Parquet, and index when it has one).
    pub fn files(&self) -> Vec<PathBuf> {
        files_of(&self.dir, &self.meta)
    }

    fn builder(&self) -> Result<ParquetRecordBatchReaderBuilder<File>> {
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(self.open_file()?, self.reader_meta.clone())
            .with_batch_size(8192))
    }

    /// The Parquet file; its disappearance under a live segment is damage
    /// (a query racing the segment's quarantine sees the same and skips it).
    fn open_file(&self) -> Result<File> {
        File::open(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::Damaged(format!("{}: file is missing", self.path.display())),
            _ => StoreError::Io(e),
        })
    }

    /// Checks the column chunks `mask` selects in `row_groups` against their
    /// footer checksums, each chunk once per process.
    ///
    /// # Errors
    /// `Damaged` naming the file, row group and column on a mismatch.
    fn verify_chunks(&self, row_groups: &[usize], mask: &ProjectionMask) -> Result<()> {
        if let Some(why) = &*self.damaged.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(StoreError::Damaged(why.clone()));
        }
        let result = self.verify_unverified_chunks(row_groups, mask);
        if let Err(StoreError::Damaged(why)) = &result {
            *self.damaged.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.clone());
        }
        result
    }

    fn verify_unverified_chunks(&self, row_groups: &[usize], mask: &ProjectionMask) -> Result<()> {
        let Some(crcs) = &self.chunk_crcs else { return Ok(()) };
        let md = self.reader_meta.metadata();
        let mut file = None;
        for &rg in row_groups {
            for (ci, chunk) in md.row_group(rg).columns().iter().enumerate() {
                if !mask.leaf_included(ci) || self.verified[rg][ci].load(Ordering::Acquire) {
                    continue;
                }
                if file.is_none() {
                    file = Some(self.open_file()?);
                }
                let damaged = |what: &str| {
                    StoreError::Damaged(format!(
                        "{}: row group {rg}, column {}: {what}",
                        self.path.display(),
                        chunk.column_path()
                    ))
                };
                let (start, len) = chunk_range(chunk).ok_or_else(|| damaged("negative offset"))?;
                let crc = match crc_of_range(file.as_ref().unwrap(), start, len) {
                    Ok(crc) => crc,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return Err(damaged("the file ends inside the chunk"))
                    }
                    Err(e) => return Err(e.into()),
                };
                if crc != crcs[rg][ci] {
                    return Err(damaged("checksum mismatch"));
                }
                self.verified[rg][ci].store(true, Ordering::Release);
            }
        }
        Ok(())
    }

    fn projection(&self, columns: &[&str]) -> ProjectionMask {
        ProjectionMask::columns(self.reader_meta.parquet_schema(), columns.iter().copied())
    }

    /// Reads the given row groups (optionally a row selection within them) with `columns`.
    fn read(
        &self,
        row_groups: Vec<usize>,
        columns: Option<&[&str]>,
        selection: Option<RowSelection>,
    ) -> Result<Vec<RecordBatch>> {
        let mask = columns.map(|cols| self.projection(cols)).unwrap_or_else(ProjectionMask::all);
        self.verify_chunks(&row_groups, &mask)?;
        let mut b = self.builder()?.with_row_groups(row_groups);
        if columns.is_some() {
            b = b.with_projection(mask);
        }
        if let Some(sel) = selection {
            b = b.with_row_selection(sel);
        }
        // Verified chunks decode as they were written, so a decoder failure
        // there is a bug and stays an error. Segments written before chunks
        // were checksummed have only the decoder to find damage: there, a
        // decoder error or panic is damage.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Vec<RecordBatch>> {
            Ok(b.build()?.collect::<std::result::Result<Vec<_>, _>>()?)
        }));
        match decoded {
            Ok(Err(e @ (StoreError::Parquet(_) | StoreError::Arrow(_)))) if self.chunk_crcs.is_none() => {
                Err(StoreError::Damaged(format!("{}: {e}", self.path.display())))
            }
            Ok(result) => result,
            Err(_) => Err(StoreError::Damaged(format!("{}: the Parquet decoder panicked", self.path.display()))),
        }
    }

    /// Row groups that may hold `id`, by min/max statistics and bloom filter.
    fn row_groups_for_trace(&self, id: &TraceId) -> Vec<usize> {
        (0..self.trace_ranges.len()).filter(|&rg| self.may_hold_trace(rg, id)).collect()
    }

    /// All spans of trace `id` in this segment.
    pub fn trace(&self, id: &TraceId) -> Result<Vec<SpanRow>> {
        let mut out = Vec::new();
        for rg in self.row_groups_for_trace(id) {
            // Find the trace's rows from the id column alone, then fetch just them.
            let ids = self.read(vec![rg], Some(&[col::TRACE_ID]), None)?;
            let mut hits = Vec::new();
            let mut pos = 0usize;
            for batch in &ids {
                let arr = Columns(batch).fixed(col::TRACE_ID)?;
                for i in 0..arr.len() {
                    if arr.value(i) == id.as_bytes() {
                        hits.push(pos + i);
                    }
                }
                pos += batch.num_rows();
            }
            if hits.is_empty() {
                continue;
            }
            let selection = selection_for(&hits, pos);
            for batch in self.read(vec![rg], None, Some(selection))? {
                out.extend(schema::batch_to_spans(&batch)?);
            }
        }
        Ok(out)
    }

    /// Adds to `hits` (trace id -> newest matching span start) every trace with
    /// a span in this segment that matches `q`.
    pub fn search_traces(&self, q: &TraceQuery, hits: &mut HashMap<TraceId, i64>) -> Result<()> {
        if !self.meta.overlaps(q.start_min_ns, q.start_max_ns) {
            return Ok(());
        }
        if let Some(s) = &q.service {
            if !self.meta.services.iter().any(|x| x == s) {
                return Ok(());
            }
        }
        if let Some(op) = &q.operation {
            if !self.meta.operations.iter().any(|(s, n, _)| n == op && q.service.as_ref().is_none_or(|qs| qs == s)) {
                return Ok(());
            }
        }
        let allowed: Option<HashSet<u32>> = match (self.meta.has_index, q.tags.is_empty()) {
            (_, true) => None,
            (true, false) => {
                let index = self.index()?;
                let terms: Vec<String> = q.tags.iter().map(|(k, v)| tags::term(k, v)).collect();
                if terms.iter().any(|t| t.len() > tags::MAX_TERM_BYTES) {
                    return Ok(());
                }
                let rows = index.rows_with_all_terms(&terms)?;
                if rows.is_empty() {
                    return Ok(());
                }
                Some(rows)
            }
            (false, false) => return Err(StoreError::Corrupt(format!("span segment {} has no index", self.meta.id))),
        };
        let md = self.reader_meta.metadata();
        let start_idx = md.file_metadata().schema_descr().columns().iter().position(|c| c.name() == col::START_TIME);
        let mut base = 0usize;
        for (rg_idx, rg) in md.row_groups().iter().enumerate() {
            let rg_rows = rg.num_rows() as usize;
            let rg_base = base;
            base += rg_rows;
            if let Some(ci) = start_idx {
                if let Some(Statistics::Int64(s)) = rg.column(ci).statistics() {
                    let below = matches!((q.start_min_ns, s.max_opt()), (Some(m), Some(mx)) if *mx < m);
                    let above = matches!((q.start_max_ns, s.min_opt()), (Some(m), Some(mn)) if *mn > m);
                    if below || above {
                        continue;
                    }
                }
            }
            if let Some(rows) = &allowed {
                if !rows.iter().any(|r| (*r as usize) >= rg_base && (*r as usize) < rg_base + rg_rows) {
                    continue;
                }
            }
            let cols = [col::TRACE_ID, col::START_TIME, col::DURATION, col::SERVICE_NAME, col::NAME, col::KIND];
            let mut pos = rg_base;
            for batch in self.read(vec![rg_idx], Some(&cols), None)? {
                let c = Columns(&batch);
                let (tid, start, dur) = (c.fixed(col::TRACE_ID)?, c.i64(col::START_TIME)?, c.i64(col::DURATION)?);
                let (svc, name, kind) = (c.str(col::SERVICE_NAME)?, c.str(col::NAME)?, c.i32(col::KIND)?);
                for i in 0..batch.num_rows() {
                    let row = (pos + i) as u32;
                    let st = start.value(i);
                    let d = dur.value(i);
                    let ok = allowed.as_ref().is_none_or(|a| a.contains(&row))
                        && q.start_min_ns.is_none_or(|m| st >= m)
                        && q.start_max_ns.is_none_or(|m| st <= m)
                        && q.min_duration_ns.is_none_or(|m| d >= m)
                        && q.max_duration_ns.is_none_or(|m| d <= m)
                        && q.service.as_ref().is_none_or(|s| svc.value(i) == s)
                        && q.operation.as_ref().is_none_or(|o| name.value(i) == o)
                        && q.span_kind.is_none_or(|k| kind.value(i) == k);
                    if ok {
                        let id = TraceId::from_slice(tid.value(i))?;
                        let e = hits.entry(id).or_insert(st);
                        *e = (*e).max(st);
                    }
                }
                pos += batch.num_rows();
            }
        }
        Ok(())
    }

    /// Adds to `stats` every span of this segment with start time in [start,
    /// end] (and of `service`, when given), reading only the narrow columns.
    pub fn scan_stats(&self, start: i64, end: i64, service: Option<&str>, stats: &mut StatsBuilder) -> Result<()> {
        let md = self.reader_meta.metadata();
        let start_idx = md.file_metadata().schema_descr().columns().iter().position(|c| c.name() == col::START_TIME);
        let cols = [col::START_TIME, col::DURATION, col::SERVICE_NAME, col::NAME, col::KIND, col::STATUS_CODE];
        for (rg_idx, rg) in md.row_groups().iter().enumerate() {
            if let Some(Statistics::Int64(s)) = start_idx.and_then(|ci| rg.column(ci).statistics()) {
                if s.max_opt().is_some_and(|mx| *mx < start) || s.min_opt().is_some_and(|mn| *mn > end) {
                    continue;
                }
            }
            for batch in self.read(vec![rg_idx], Some(&cols), None)? {
                let c = Columns(&batch);
                let (st, dur, svc) = (c.i64(col::START_TIME)?, c.i64(col::DURATION)?, c.str(col::SERVICE_NAME)?);
                let (name, kind, status) = (c.str(col::NAME)?, c.i32(col::KIND)?, c.i32(col::STATUS_CODE)?);
                for i in 0..batch.num_rows() {
                    let t = st.value(i);
                    if t < start || t > end || service.is_some_and(|s| s != svc.value(i)) {
                        continue;
                    }
                    stats.add(
                        svc.value(i),
                        name.value(i),
                        kind.value(i),
                        status.value(i) == STATUS_ERROR,
                        dur.value(i),
                    );
                }
            }
        }
        Ok(())
    }

    /// Adds to `index` the service of every span of this segment whose trace
    /// is in `traces` (parents for children of a later flush).
    pub fn index_parents(&self, traces: &HashSet<TraceId>, index: &mut ParentIndex) -> Result<()> {
        let groups: Vec<usize> =
            (0..self.trace_ranges.len()).filter(|&rg| traces.iter().any(|t| self.may_hold_trace(rg, t))).collect();
        if groups.is_empty() {
            return Ok(());
        }
        for batch in self.read(groups, Some(&[col::TRACE_ID, col::SPAN_ID, col::SERVICE_NAME]), None)? {
            let c = Columns(&batch);
            let (tid, sid, svc) = (c.fixed(col::TRACE_ID)?, c.fixed(col::SPAN_ID)?, c.str(col::SERVICE_NAME)?);
            for i in 0..batch.num_rows() {
                let trace = TraceId::from_slice(tid.value(i))?;
                if traces.contains(&trace) {
                    index.insert((trace, crate::ids::SpanId::from_slice(sid.value(i))?), svc.value(i).to_string());
                }
            }
        }
        Ok(())
    }

    fn may_hold_trace(&self, rg: usize, id: &TraceId) -> bool {
        let in_range = match &self.trace_ranges[rg] {
            Some((lo, hi)) => lo.as_slice() <= id.as_bytes() && id.as_bytes() <= hi.as_slice(),
            None => true,
        };
        in_range && self.blooms[rg].as_ref().is_none_or(|b| b.check(id.as_bytes()))
    }

    /// The `limit` newest log records matching `query`, as (time, row), newest first.
    pub fn newest_logs(&self, query: &dyn tantivy::query::Query, limit: usize) -> Result<Vec<(i64, u32)>> {
        if !self.meta.has_index {
            return Err(StoreError::Corrupt(format!("log segment {} has no index", self.meta.id)));
        }
        self.index()?.newest_rows(query, limit)
    }

    /// The log records at row positions `rows` (sorted, distinct), in that order.
    pub fn log_rows(&self, rows: &[u32]) -> Result<Vec<LogRow>> {
        let hits: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
        let total = self.meta.rows as usize;
        let groups = (0..self.reader_meta.metadata().num_row_groups()).collect();
        let mut out = Vec::with_capacity(rows.len());
        for b in self.read(groups, None, Some(selection_for(&hits, total)))? {
            out.extend(schema::batch_to_logs(&b)?);
        }
        Ok(out)
    }

    /// Every row of a log segment.
    pub fn all_logs(&self) -> Result<Vec<LogRow>> {
        let groups = (0..self.reader_meta.metadata().num_row_groups()).collect();
        let mut out = Vec::new();
        for b in self.read(groups, None, None)? {
            out.extend(schema::batch_to_logs(&b)?);
        }
        Ok(out)
    }

    /// Every point of `names` in the window, borrowed row by row (see
    /// [`schema::visit_metrics`]): row groups pruned by the name statistics,
    /// then only the matching rows read.
    pub fn visit_metric_points(
        &self,
        names: &HashSet<String>,
        start: Option<i64>,
        end: Option<i64>,
        visit: &mut dyn FnMut(&MetricPointRef<'_>),
    ) -> Result<()> {
        if !self.meta.overlaps(start, end) || !self.meta.metrics.iter().any(|d| names.contains(&d.name)) {
            return Ok(());
        }
        let md = self.reader_meta.metadata();
        let name_idx = md.file_metadata().schema_descr().columns().iter().position(|c| c.name() == col::METRIC_NAME);
        for (rg_idx, rg) in md.row_groups().iter().enumerate() {
            if let Some(Statistics::ByteArray(s)) = name_idx.and_then(|ci| rg.column(ci).statistics()) {
                if let (Some(lo), Some(hi)) = (s.min_bytes_opt(), s.max_bytes_opt()) {
                    if !names.iter().any(|n| lo <= n.as_bytes() && n.as_bytes() <= hi) {
                        continue;
                    }
                }
            }
            let mut hits = Vec::new();
            let mut pos = 0usize;
            for batch in self.read(vec![rg_idx], Some(&[col::METRIC_NAME, col::TIME]), None)? {
                let c = Columns(&batch);
                let (name, time) = (c.str(col::METRIC_NAME)?, c.i64(col::TIME)?);
                for i in 0..batch.num_rows() {
                    let t = time.value(i);
                    if start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e) && names.contains(name.value(i)) {
                        hits.push(pos + i);
                    }
                }
                pos += batch.num_rows();
            }
            if hits.is_empty() {
                continue;
            }
            for b in self.read(vec![rg_idx], None, Some(selection_for(&hits, pos)))? {
                // Each row passed the name and time test above.
                schema::visit_metrics(&b, visit)?;
            }
        }
        Ok(())
    }

    /// Every row of a metric segment.
    pub fn all_metrics(&self) -> Result<Vec<MetricPointRow>> {
        let groups = (0..self.reader_meta.metadata().num_row_groups()).collect();
        let mut out = Vec::new();
        for b in self.read(groups, None, None)? {
            out.extend(schema::batch_to_metrics(&b)?);
        }
        Ok(out)
    }
}

impl Segment {
    /// The text index, opened and verified on first use; a damaged or missing
    /// index is moved to quarantine and rebuilt from the Parquet file.
    ///
    /// # Errors
    /// `Damaged` when the Parquet file itself fails while rebuilding; I/O
    /// errors writing the new index.
    fn index(&self) -> Result<Arc<TextIndex>> {
        let mut slot = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = &*slot {
            return Ok(index.clone());
        }
        let path = self.meta.index_path(&self.dir);
        let index = match TextIndex::open_verified(&path) {
            Ok(index) => index,
            Err(e) => {
                tracing::error!(
                    segment = %self.path.display(),
                    reason = %e,
                    "segment index is damaged or missing; rebuilding it from the Parquet file"
                );
                self.rebuild_index(&path)?
            }
        };
        let index = Arc::new(index);
        *slot = Some(index.clone());
        Ok(index)
    }

    /// Moves the damaged index at `path` to quarantine, writes a new one from
    /// the segment's rows (in file order, so row numbers match) and opens it.
    fn rebuild_index(&self, path: &Path) -> Result<TextIndex> {
        let groups: Vec<usize> = (0..self.reader_meta.metadata().num_row_groups()).collect();
        let batches = self.read(groups, None, None)?;
        let kind = if self.meta.signal == Signal::Logs { IndexKind::Logs } else { IndexKind::Spans };
        if let Some(to) = self.quarantine.move_in(path)? {
            tracing::warn!(from = %path.display(), to = %to.display(), "damaged index moved to quarantine");
        }
        write_index(path, kind, |w| {
            let mut row = 0u64;
            for batch in &batches {
                if kind == IndexKind::Logs {
                    for r in schema::batch_to_logs(batch)? {
                        w.add(row, |doc| logsearch::fill_doc(doc, &r))?;
                        row += 1;
                    }
                } else {
                    for r in schema::batch_to_spans(batch)? {
                        w.add(row, |doc| span_doc(doc, &r))?;
                        row += 1;
                    }
                }
            }
            Ok(())
        })?;
        crate::wal::sync_dir(&self.dir)?;
        self.quarantine.counters().rebuilt_indexes.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(index = %path.display(), "segment index rebuilt from its Parquet file");
        TextIndex::open_verified(path)
    }
}

/// The files a segment described by `meta` has in `dir`.
pub fn files_of(dir: &Path, meta: &SegmentMeta) -> Vec<PathBuf> {
    let mut files = vec![meta.parquet_path(dir)];
    if meta.has_index {
        files.push(meta.index_path(dir));
    }
    files
}

/// A row selection choosing the sorted row positions `hits` out of `total`.
fn selection_for(hits: &[usize], total: usize) -> RowSelection {
    let mut selectors = Vec::new();
    let mut cursor = 0;
    for &h in hits {
        if h > cursor {
            selectors.push(RowSelector::skip(h - cursor));
        }
        selectors.push(RowSelector::select(1));
        cursor = h + 1;
    }
    if total > cursor {
        selectors.push(RowSelector::skip(total - cursor));
    }
    RowSelection::from(selectors)
}
