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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

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
use crate::query::TraceQuery;
use crate::schema::{self, col, Columns};
use crate::spanstats::{ParentIndex, SegmentSummary, StatsBuilder, STATUS_ERROR, SUMMARY_KEY};
use crate::tags;
use crate::textindex::{IndexKind, TextIndex, TextIndexWriter};

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Rows per data page: small enough that a trace lookup reads little.
const PAGE_ROWS: usize = 8 * 1024;
const ZSTD_LEVEL: i32 = 3;

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
fn write_parquet<R>(
    path: &Path,
    schema: arrow::datatypes::SchemaRef,
    rows: &[&R],
    to_batch: impl Fn(&[&R]) -> Result<RecordBatch>,
    props: WriterProperties,
    footer: Option<(&str, String)>,
) -> Result<u64> {
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp)?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
    if let Some((key, value)) = footer {
        writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(key.to_string(), value));
    }
    for chunk in rows.chunks(ROW_GROUP_ROWS) {
        writer.write(&to_batch(chunk)?)?;
    }
    let file = writer.into_inner()?;
    file.sync_all()?;
    let len = file.metadata()?.len();
    fs::rename(&tmp, path)?;
    Ok(len)
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
pub fn write_spans(dir: &Path, id: u64, rows: &[SpanRow], summary: &SegmentSummary) -> Result<SegmentMeta> {
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
    let parquet_bytes = write_parquet(
        &meta.parquet_path(dir),
        schema::span_schema(),
        &sorted,
        |c| schema::spans_to_batch(c),
        props,
        Some((SUMMARY_KEY, footer)),
    )?;
    let index_bytes = write_index(&meta.index_path(dir), IndexKind::Spans, |w| {
        for (i, row) in sorted.iter().enumerate() {
            w.add(i as u64, |doc| {
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
            })?;
        }
        Ok(())
    })?;
    meta.bytes = parquet_bytes + index_bytes;
    Ok(meta)
}

/// Writes a log segment, sorted by (service, time). `rows` must not be empty.
pub fn write_logs(dir: &Path, id: u64, rows: &[LogRow]) -> Result<SegmentMeta> {
    let mut sorted: Vec<&LogRow> = rows.iter().collect();
    sorted.sort_by(|a, b| (&a.service_name, a.time_unix_nano).cmp(&(&b.service_name, b.time_unix_nano)));
    let props = writer_props(2, Some((col::TRACE_ID, ROW_GROUP_ROWS / 4)), &[]);
    let services = rows.iter().map(|r| r.service_name.as_str());
    let mut meta =
        SegmentMeta::describe(id, Signal::Logs, rows.len(), rows.iter().map(|r| r.time_unix_nano), services, true);
    let parquet_bytes = write_parquet(
        &meta.parquet_path(dir),
        schema::log_schema(),
        &sorted,
        |c| schema::logs_to_batch(c),
        props,
        None,
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
pub fn write_metrics(dir: &Path, id: u64, rows: &[MetricPointRow]) -> Result<SegmentMeta> {
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
    meta.bytes = write_parquet(
        &meta.parquet_path(dir),
        schema::metric_schema(),
        &sorted,
        |c| schema::metrics_to_batch(c),
        props,
        None,
    )?;
    Ok(meta)
}

/// An open segment: metadata, bloom filters and index handles cached for the
/// segment's lifetime so a lookup touches only the pages it needs.
pub struct Segment {
    pub meta: SegmentMeta,
    path: PathBuf,
    reader_meta: ArrowReaderMetadata,
    /// Per row group: trace_id (min, max) and bloom filter (span and log segments).
    trace_ranges: Vec<Option<(Vec<u8>, Vec<u8>)>>,
    blooms: Vec<Option<Sbbf>>,
    index: Option<TextIndex>,
    /// Span segments: per-operation stats and service edges from the footer.
    pub summary: Option<SegmentSummary>,
}

impl Segment {
    /// Opens a segment listed in the catalog.
    ///
    /// # Errors
    /// I/O or format errors when a file is missing or unreadable.
    pub fn open(dir: &Path, meta: SegmentMeta) -> Result<Self> {
        let path = meta.parquet_path(dir);
        let file = File::open(&path)?;
        let reader_meta = ArrowReaderMetadata::load(
            &file,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )?;
        let md = reader_meta.metadata().clone();
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
            blooms.push(Sbbf::read_from_column_chunk(chunk, &file)?);
        }
        let index = if meta.has_index { Some(TextIndex::open(&meta.index_path(dir))?) } else { None };
        let summary = match md
            .file_metadata()
            .key_value_metadata()
            .and_then(|kvs| kvs.iter().find(|kv| kv.key == SUMMARY_KEY).and_then(|kv| kv.value.clone()))
        {
            Some(json) => Some(
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("{}: span summary: {e}", path.display())))?,
            ),
            None => None,
        };
        Ok(Self { meta, path, reader_meta, trace_ranges, blooms, index, summary })
    }

    fn builder(&self) -> Result<ParquetRecordBatchReaderBuilder<File>> {
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(File::open(&self.path)?, self.reader_meta.clone())
            .with_batch_size(8192))
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
        let mut b = self.builder()?.with_row_groups(row_groups);
        if let Some(cols) = columns {
            b = b.with_projection(self.projection(cols));
        }
        if let Some(sel) = selection {
            b = b.with_row_selection(sel);
        }
        Ok(b.build()?.collect::<std::result::Result<Vec<_>, _>>()?)
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
        let allowed: Option<HashSet<u32>> = match (&self.index, q.tags.is_empty()) {
            (_, true) => None,
            (Some(index), false) => {
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
            (None, false) => return Err(StoreError::Corrupt(format!("span segment {} has no index", self.meta.id))),
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
        match &self.index {
            Some(index) => index.newest_rows(query, limit),
            None => Err(StoreError::Corrupt(format!("log segment {} has no index", self.meta.id))),
        }
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
