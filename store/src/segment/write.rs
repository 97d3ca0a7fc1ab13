//! Writing a segment: rows -> a sorted, checksummed Parquet file with its
//! catalog entry and self-description in the footer, and its index (the
//! span index for spans, a tantivy index for logs).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::Path;

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::{
    bloom_range, chunk_range, crc_of_range, pack_footer_text, FlushInfo, SegmentFooter, SegmentMeta, BLOOM_CRC_KEY,
    CHUNK_CRC_KEY, SEGMENT_KEY,
};
use crate::attrcodes::AttrCoder;
use crate::error::{Result, StoreError};
use crate::ids::TraceId;
use crate::logsearch;
use crate::model::*;
use crate::packed::SpanView;
use crate::schema::{self, col};
use crate::spanindex;
use crate::spanstats::{SegmentSummary, SUMMARY_KEY};
use crate::textindex::{IndexKind, TextIndexWriter};

/// Rows per Parquet row group.
pub(super) const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Rows converted to Arrow at a time: the writer encodes each batch into the
/// row group under way, so memory holds this many rows as Arrow arrays (a
/// row group of spans as Arrow is ~50 MB) plus the row group encoded.
pub(super) const BATCH_ROWS: usize = 8 * 1024;
/// Rows per data page: small enough that a trace lookup reads little.
const PAGE_ROWS: usize = 1024;
const ZSTD_LEVEL: i32 = 3;

fn writer_props(sort_col: usize, bloom: Option<(&str, usize)>, no_dict: &[&str]) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("valid zstd level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        // Row-group minimum and maximum only (reads prune row groups by trace
        // id, start time and metric name): page-level ones went to a column
        // index no read uses (0.17 B/span, and ~200 KB of memory per open
        // segment of 265k spans). The offset index, which trace fetches
        // skip pages by, is written either way.
        .set_statistics_enabled(EnabledStatistics::Chunk)
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

/// Span columns zstd does not shrink (random span ids, dictionary codes,
/// bit-packed attribute values, mostly empty texts): left uncompressed, so a
/// trace fetch, which decodes a page of every column, does not pay a
/// decompression (and a codec set-up) for each of them.
const SPAN_PLAIN_COLUMNS: [&str; 15] = [
    col::SPAN_ID,
    col::ATTR_VALUE_BITS,
    col::TRACE_STATE,
    col::FLAGS,
    col::SERVICE_NAME,
    col::NAME,
    col::KIND,
    col::STATUS_CODE,
    col::STATUS_MESSAGE,
    col::RESOURCE_ATTRIBUTES,
    col::SCOPE_NAME,
    col::SCOPE_VERSION,
    col::EVENTS,
    col::LINKS,
    col::DROPPED,
];

/// Span times, nearly all distinct, are written without a dictionary: the
/// writer's try filled a dictionary page (up to 1 MB) before falling back to
/// plain values, and every read of a row group, a trace fetch's included,
/// decoded that page first (most of a fetch's time at 10M spans). Their bytes
/// split into eight streams (all lowest bytes, then all second bytes, ...)
/// let zstd code each stream by its own statistics: the high bytes of
/// nanosecond times and durations repeat, the low ones do not. On this
/// project's trace benchmark: 3.8 instead of 5.5 B/span for start times, 3.3
/// instead of 5.0 for durations.
const SPAN_SPLIT_COLUMNS: [&str; 2] = [col::START_TIME, col::DURATION];

/// Attribute key codes (see `attrcodes`): small steps whose byte planes zstd
/// codes one by one, so eleven keys of a hundred cost ~4.5 bits each, not the
/// dictionary width of the page.
const SPAN_CODE_COLUMNS: [&str; 1] = ["attr_key_codes.list.item"];

/// Span columns without a dictionary: random ids, and trace ids, which
/// repeat only within a trace (zstd finds the repeats: 1.6 B/span against
/// 1.9 with a dictionary of every trace id of the row group, which each
/// read decoded), and the rarely repeated JSON of events and links.
const SPAN_NO_DICTIONARY: [&str; 5] = [col::TRACE_ID, col::SPAN_ID, col::PARENT_SPAN_ID, col::EVENTS, col::LINKS];

/// Writer settings of a span segment of `rows` rows.
pub(super) fn span_props(rows: usize) -> WriterProperties {
    let traces_per_group = (rows.min(ROW_GROUP_ROWS) / 2).max(1);
    let mut b = writer_props(0, Some((col::TRACE_ID, traces_per_group)), &SPAN_NO_DICTIONARY).into_builder();
    for c in SPAN_PLAIN_COLUMNS {
        b = b.set_column_compression(ColumnPath::from(c), Compression::UNCOMPRESSED);
    }
    for c in SPAN_SPLIT_COLUMNS {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_encoding(ColumnPath::from(c), Encoding::BYTE_STREAM_SPLIT);
    }
    for path in SPAN_CODE_COLUMNS {
        let path = ColumnPath::new(path.split('.').map(str::to_string).collect());
        b = b.set_column_dictionary_enabled(path.clone(), false).set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
    }
    // A row's value codes are packed in their keys' widths already: no
    // dictionary; their lengths delta-coded.
    b = b
        .set_column_dictionary_enabled(ColumnPath::from(col::ATTR_VALUE_BITS), false)
        .set_column_encoding(ColumnPath::from(col::ATTR_VALUE_BITS), Encoding::DELTA_LENGTH_BYTE_ARRAY);
    for path in SPAN_COLUMNS_WITHOUT_STATISTICS {
        let path = ColumnPath::new(path.split('.').map(str::to_string).collect());
        b = b.set_column_statistics_enabled(path, EnabledStatistics::None);
    }
    b.build()
}

/// Span columns (leaf paths) whose minimum and maximum no read uses: reads
/// prune by trace id and start time. Comparing every attribute key and value
/// for the page statistics was 7% of a flush's CPU, and the page index kept
/// them for nothing.
const SPAN_COLUMNS_WITHOUT_STATISTICS: [&str; 15] = [
    "attr_keys.list.item",
    "attr_values.list.item",
    "attr_key_codes.list.item",
    col::ATTR_VALUE_BITS,
    col::RESOURCE_ATTRIBUTES,
    col::EVENTS,
    col::LINKS,
    col::DROPPED,
    col::STATUS_MESSAGE,
    col::TRACE_STATE,
    col::SPAN_ID,
    col::PARENT_SPAN_ID,
    col::PARENT_ROW,
    col::SCOPE_NAME,
    col::SCOPE_VERSION,
];

/// Writes sorted `rows` to `path`, [`BATCH_ROWS`] at a time (row groups
/// are cut at [`ROW_GROUP_ROWS`]); see [`ParquetSink`].
fn write_parquet<R>(
    path: &Path,
    schema: arrow::datatypes::SchemaRef,
    rows: &[R],
    to_batch: impl Fn(&[R]) -> Result<RecordBatch>,
    props: WriterProperties,
    footer: Vec<(&str, String)>,
    describe: &SegmentFooter,
) -> Result<u64> {
    let mut sink = ParquetSink::create(path, schema, props)?;
    for chunk in rows.chunks(BATCH_ROWS) {
        sink.write(&to_batch(chunk)?)?;
    }
    sink.finish(footer, describe)
}

/// A segment's Parquet file being written, through a temporary file that
/// [`ParquetSink::finish`] fsyncs and renames into place; the caller syncs
/// the directory once for the whole flush or merge.
pub(super) struct ParquetSink {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    writer: ArrowWriter<File>,
}

impl ParquetSink {
    pub(super) fn create(path: &Path, schema: arrow::datatypes::SchemaRef, props: WriterProperties) -> Result<Self> {
        let tmp = path.with_extension("parquet.tmp");
        let file = File::create(&tmp)?;
        Ok(Self { path: path.to_path_buf(), writer: ArrowWriter::try_new(file, schema, Some(props))?, tmp })
    }

    /// Appends one batch to the row group under way; the writer closes row
    /// groups at the row count the properties set.
    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        Ok(())
    }

    /// Closes the file: `footer` key-value pairs go into the footer, packed
    /// (see [`pack_footer_text`]), followed by the segment's own description
    /// and its column-chunk checksums. Returns the file's size.
    pub(super) fn finish(self, footer: Vec<(&str, String)>, describe: &SegmentFooter) -> Result<u64> {
        let ParquetSink { path, tmp, mut writer } = self;
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
        let mut kvs: Vec<(&str, String)> =
            footer.into_iter().map(|(key, text)| (key, pack_footer_text(&text))).collect();
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
        fs::rename(&tmp, &path)?;
        Ok(len)
    }
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir).map(|it| it.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

/// Builds a text index in a temporary directory and renames it into place.
pub(super) fn write_index(
    path: &Path,
    kind: IndexKind,
    fill: impl FnOnce(&mut TextIndexWriter) -> Result<()>,
) -> Result<u64> {
    let mut pending = PendingIndex::create(path, kind)?;
    fill(&mut pending.writer)?;
    pending.finish()
}

/// A text index being built in a temporary directory, renamed into place
/// by [`PendingIndex::finish`].
pub(super) struct PendingIndex {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    pub(super) writer: TextIndexWriter,
}

impl PendingIndex {
    pub(super) fn create(path: &Path, kind: IndexKind) -> Result<Self> {
        let tmp = path.with_extension("tantivy.tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        let writer = TextIndexWriter::create(&tmp, kind)?;
        Ok(Self { path: path.to_path_buf(), tmp, writer })
    }

    /// Commits the index and renames it into place; returns its size.
    pub(super) fn finish(self) -> Result<u64> {
        self.writer.finish()?;
        let size = dir_size(&self.tmp);
        fs::rename(&self.tmp, &self.path)?;
        Ok(size)
    }
}

impl SegmentMeta {
    /// Describes a segment about to be written from rows with these times and services.
    pub(super) fn describe<'a>(
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
            compacted_from: Vec::new(),
        }
    }
}

/// Writes a span segment with its summary in the footer. `rows` must not be empty.
pub(crate) fn write_spans<S: SpanView>(
    dir: &Path,
    id: u64,
    rows: &[S],
    summary: &SegmentSummary,
    flush: &FlushInfo,
) -> Result<SegmentMeta> {
    // Keys taken once: a comparison then reads two keys side by side in one
    // array, not two spans wherever they are (the position breaks ties, as a
    // stable sort would).
    let mut keys: Vec<(TraceId, i64, u32)> =
        rows.iter().enumerate().map(|(i, r)| (r.trace_id(), r.start(), i as u32)).collect();
    keys.sort_unstable();
    let sorted: Vec<&S> = keys.iter().map(|&(_, _, i)| &rows[i as usize]).collect();
    drop(keys);
    let props = span_props(rows.len());
    let distinct: foldhash::HashSet<(&str, &str, i32)> =
        rows.iter().map(|r| (r.service_name(), r.name(), r.kind())).collect();
    let mut meta = SegmentMeta::describe(
        id,
        Signal::Traces,
        rows.len(),
        rows.iter().map(|r| r.start()),
        distinct.iter().map(|(s, _, _)| *s),
        true,
    );
    let operations: BTreeSet<(String, String, i32)> =
        distinct.into_iter().map(|(s, n, k)| (s.to_string(), n.to_string(), k)).collect();
    meta.operations = operations.into_iter().collect();
    let footer = serde_json::to_string(summary).expect("summary serializes");
    let describe = SegmentFooter::new(meta.clone(), flush.clone());
    let parents = schema::parent_rows(&sorted);
    let mut attributes = AttrCoder::of_rows(&sorted);
    let mut sink = ParquetSink::create(&meta.parquet_path(dir), schema::span_schema(), props)?;
    for (rows, parents) in sorted.chunks(BATCH_ROWS).zip(parents.chunks(BATCH_ROWS)) {
        sink.write(&schema::spans_to_batch(rows, parents, &mut attributes)?)?;
    }
    drop(parents);
    let parquet_bytes = sink.finish(vec![(SUMMARY_KEY, footer), attributes.footer()], &describe)?;
    let index_bytes = spanindex::write(&meta.index_path(dir), &sorted)?;
    meta.bytes = parquet_bytes + index_bytes;
    Ok(meta)
}

/// Writer settings of a log segment (sorted by service, then time).
pub(super) fn log_props() -> WriterProperties {
    writer_props(2, Some((col::TRACE_ID, ROW_GROUP_ROWS / 4)), &[])
}

/// Writer settings of a metric-point segment (sorted by metric, service, time).
pub(super) fn metric_props() -> WriterProperties {
    writer_props(0, None, &[])
}

/// Writes a log segment, sorted by (service, time). `rows` must not be empty.
pub(crate) fn write_logs(dir: &Path, id: u64, rows: &[LogRow], flush: &FlushInfo) -> Result<SegmentMeta> {
    let mut sorted: Vec<&LogRow> = rows.iter().collect();
    sorted.sort_by(|a, b| (&a.service_name, a.time_unix_nano).cmp(&(&b.service_name, b.time_unix_nano)));
    let props = log_props();
    let services = rows.iter().map(|r| r.service_name.as_str());
    let mut meta =
        SegmentMeta::describe(id, Signal::Logs, rows.len(), rows.iter().map(|r| r.time_unix_nano), services, true);
    let describe = SegmentFooter::new(meta.clone(), flush.clone());
    let parquet_bytes = write_parquet(
        &meta.parquet_path(dir),
        schema::log_schema(),
        &sorted,
        schema::logs_to_batch,
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
pub(crate) fn write_metrics(dir: &Path, id: u64, rows: &[MetricPointRow], flush: &FlushInfo) -> Result<SegmentMeta> {
    let mut sorted: Vec<&MetricPointRow> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.metric_name, &a.service_name, a.time_unix_nano).cmp(&(&b.metric_name, &b.service_name, b.time_unix_nano))
    });
    let props = metric_props();
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
    let describe = SegmentFooter::new(meta.clone(), flush.clone());
    meta.bytes = write_parquet(
        &meta.parquet_path(dir),
        schema::metric_schema(),
        &sorted,
        schema::metrics_to_batch,
        props,
        Vec::new(),
        &describe,
    )?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SpanId;
    use crate::model::{AttrValue, KeyValue, SpanRow};

    /// `rows` written as span segment 1 of a new directory, and its Parquet metadata.
    fn written(rows: &[SpanRow]) -> (tempfile::TempDir, SegmentMeta, parquet::file::metadata::ParquetMetaData) {
        let dir = tempfile::tempdir().unwrap();
        let flush = FlushInfo { flushed_seq: 1, signals: vec![Signal::Traces] };
        let meta = write_spans(dir.path(), 1, rows, &SegmentSummary::default(), &flush).unwrap();
        let bytes = bytes::Bytes::from(fs::read(meta.parquet_path(dir.path())).unwrap());
        let md = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&bytes).unwrap();
        (dir, meta, md)
    }

    #[test]
    fn span_segments_keep_statistics_only_where_reads_prune() {
        let rows: Vec<SpanRow> = (1..=3u8)
            .map(|i| SpanRow {
                trace_id: TraceId([i; 16]),
                span_id: SpanId([i; 8]),
                parent_span_id: Some(SpanId([9; 8])),
                service_name: "svc".into(),
                name: "op".into(),
                start_time_unix_nano: i as i64,
                attributes: vec![KeyValue { key: "k".into(), value: AttrValue::Str(format!("v{i}")) }],
                status_message: "m".into(),
                ..Default::default()
            })
            .collect();
        let (_dir, _, md) = written(&rows);
        let chunks = md.row_groups()[0].columns();
        let with_statistics: Vec<String> =
            chunks.iter().filter(|c| c.statistics().is_some()).map(|c| c.column_path().string()).collect();
        for path in SPAN_COLUMNS_WITHOUT_STATISTICS {
            assert!(chunks.iter().any(|c| c.column_path().string() == path), "{path} is a leaf column");
            assert!(!with_statistics.contains(&path.to_string()), "{path} has statistics");
        }
        for path in [col::TRACE_ID, col::START_TIME, col::SERVICE_NAME, col::NAME] {
            assert!(with_statistics.contains(&path.to_string()), "{path} lost its statistics");
        }
        // Row-group statistics only: no column index; the offset index stays.
        for c in chunks {
            let path = c.column_path().string();
            assert!(c.column_index_length().is_none(), "{path} has a column index");
            assert!(c.offset_index_length().is_some(), "{path} lost its offset index");
        }
    }

    #[test]
    fn span_times_are_split_into_byte_streams_and_ids_have_no_dictionary() {
        let rows: Vec<SpanRow> = (1..=100u8)
            .map(|i| SpanRow {
                trace_id: TraceId([i / 10; 16]),
                span_id: SpanId([i; 8]),
                service_name: "svc".into(),
                name: "op".into(),
                start_time_unix_nano: 1_700_000_000_000_000_000 + i64::from(i) * 7_777,
                duration_nano: 1_000 + i64::from(i),
                ..Default::default()
            })
            .collect();
        let (dir, meta, md) = written(&rows);
        let chunk = |name: &str| {
            md.row_groups()[0].columns().iter().find(|c| c.column_path().string() == name).unwrap().clone()
        };
        for name in SPAN_SPLIT_COLUMNS {
            let c = chunk(name);
            assert!(
                c.encodings().any(|e| e == Encoding::BYTE_STREAM_SPLIT),
                "{name}: {:?}",
                c.encodings().collect::<Vec<_>>()
            );
            assert!(c.dictionary_page_offset().is_none(), "{name} has a dictionary");
        }
        for name in SPAN_NO_DICTIONARY {
            assert!(chunk(name).dictionary_page_offset().is_none(), "{name} has a dictionary");
        }
        assert!(chunk(col::SERVICE_NAME).dictionary_page_offset().is_some(), "repeated texts keep theirs");
        let bits = chunk(col::ATTR_VALUE_BITS);
        assert!(bits.dictionary_page_offset().is_none() && bits.compression() == Compression::UNCOMPRESSED);
        assert!(
            bits.encodings().any(|e| e == Encoding::DELTA_LENGTH_BYTE_ARRAY),
            "{:?}",
            bits.encodings().collect::<Vec<_>>()
        );
        let quarantine = std::sync::Arc::new(crate::quarantine::Quarantine::new(dir.path(), Default::default()));
        let back = crate::segment::Segment::open(dir.path(), meta, quarantine).unwrap();
        let ids: Vec<TraceId> = rows.iter().map(|r| r.trace_id).collect();
        let mut read = back.traces(&ids).unwrap();
        read.sort_by_key(|r| r.span_id);
        assert_eq!(read, rows);
    }
}
