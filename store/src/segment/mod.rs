//! Immutable segments: one Parquet file per signal per flush (or per merge
//! of segments of one signal, see `db::compact`), plus an index: the span index
//! (`spanindex`) for spans, a tantivy index for logs.
//!
//! Span segments are sorted by (trace_id, start time). Trace assembly is the
//! hot path — every search ends by loading whole traces — and with this order a
//! trace's spans sit together: the trace_id bloom filters skip segments that
//! do not hold the trace without any I/O (filters are loaded once, at open),
//! the span index's trace table names the trace's rows exactly, and the page
//! index lets the reader decode just the (1,024-row) pages holding them.
//! Searches are answered by the span index (`scan::newest_traces`); stats
//! scans read a handful of narrow, dictionary-encoded columns.
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
//! Indexes are derived data: opened (and checked: the span index's CRC,
//! tantivy's own checksums) on first use, and when damaged or missing moved
//! to quarantine and rebuilt from the Parquet file.
//!
//! Split by path: `write` builds a segment's files from rows, `scan` answers
//! the reads; what both rely on (the catalog entry, the footer keys, opening,
//! verification and the text index) is here.

mod merge;
mod scan;
mod write;

pub(crate) use merge::merge;
pub(crate) use write::{write_logs, write_metrics, write_spans};

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::ProjectionMask;
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use serde::{Deserialize, Serialize};

use crate::attrcodes::{self, AttrTables};
use crate::error::{Result, StoreError};
use crate::logsearch;
use crate::model::*;
use crate::quarantine::Quarantine;
use crate::schema::{self, col};
use crate::spanindex::{self, SpanIndex};
use crate::spanstats::{OpKey, OpStats, SegmentSummary, SUMMARY_KEY};
use crate::textindex::{IndexKind, TextIndex};
use write::write_index;

/// Footer key of a segment's [`SegmentFooter`].
pub(crate) const SEGMENT_KEY: &str = "seismo.segment";
/// Footer key of the column-chunk checksums: JSON `[[crc32 per leaf column] per row group]`.
pub(crate) const CHUNK_CRC_KEY: &str = "seismo.chunk_crc32";
/// Footer key of the bloom-filter checksums: JSON `[[[leaf column, crc32] per filter] per row group]`.
pub(crate) const BLOOM_CRC_KEY: &str = "seismo.bloom_crc32";

/// The newest segment format this build reads (see [`SegmentFooter::format`]):
/// 1, the first; 2, span attributes as codes into the footer's tables
/// (`attrcodes`); 3, span attribute value codes bit-packed a row at a time in
/// their keys' widths (`attr_value_bits`), and the span summary and attribute
/// tables packed (see [`pack_footer_text`]).
pub(crate) const SEGMENT_FORMAT: u32 = 3;

/// What starts a packed footer text (see [`pack_footer_text`]).
pub(crate) const PACKED: &str = "zstd+base64:";

/// A footer text that grows with the segment's operations and attribute
/// values (the span summary, the attribute tables), packed when that makes it
/// smaller: zstd, then base64 (Parquet's footer values are text). As JSON
/// these were 1 B per span of a merged segment and 4-5 B per span of a
/// flushed one on the trace benchmark; packed, a fifth of that (the latency
/// sketches' bucket lists repeat their digits).
pub(crate) fn pack_footer_text(text: &str) -> String {
    let packed = packed_footer_text(text);
    if packed.len() < text.len() {
        packed
    } else {
        text.to_string()
    }
}

/// `text` packed, whatever its size.
pub(crate) fn packed_footer_text(text: &str) -> String {
    use base64::Engine;
    // Level 3: every flush packs ~1 MB of summary; level 9 took ~35 ms of it
    // for an output ~15% smaller (0.03 B/span).
    let packed = zstd::bulk::compress(text.as_bytes(), 3).expect("zstd compresses a buffer in memory");
    let mut out = String::with_capacity(PACKED.len() + packed.len() * 4 / 3 + 4);
    out.push_str(PACKED);
    base64::engine::general_purpose::STANDARD.encode_string(packed, &mut out);
    out
}

/// A footer text as written: packed ones unpacked, others (older files) as they are.
///
/// # Errors
/// A message naming what does not decode.
pub(crate) fn unpack_footer_text(value: &str) -> std::result::Result<std::borrow::Cow<'_, str>, String> {
    use base64::Engine;
    let Some(coded) = value.strip_prefix(PACKED) else { return Ok(value.into()) };
    let packed = base64::engine::general_purpose::STANDARD.decode(coded).map_err(|e| format!("not base64: {e}"))?;
    let mut text = Vec::new();
    zstd::stream::copy_decode(&packed[..], &mut text).map_err(|e| format!("not zstd: {e}"))?;
    String::from_utf8(text).map(Into::into).map_err(|e| format!("not UTF-8: {e}"))
}

/// What a segment says about itself (in its footer, under [`SEGMENT_KEY`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SegmentFooter {
    /// The catalog entry, except `bytes` (0: the file size is not known
    /// while the footer is written).
    pub meta: SegmentMeta,
    /// The flush that wrote this segment.
    #[serde(flatten)]
    pub flush: FlushInfo,
    /// The oldest segment format a reader must know to read this file (absent
    /// before formats were written: 1). A build that finds a newer one
    /// refuses to start rather than misread or quarantine the file.
    #[serde(default = "first_format")]
    pub format: u32,
}

fn first_format() -> u32 {
    1
}

impl SegmentFooter {
    pub(crate) fn new(meta: SegmentMeta, flush: FlushInfo) -> Self {
        // Only span segments changed since the first format.
        let format = if meta.signal == Signal::Traces { SEGMENT_FORMAT } else { 1 };
        SegmentFooter { meta, flush, format }
    }
}

/// Which WAL records a flush covered and which segments it wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct FlushInfo {
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
    /// For a segment written by compaction: the segments it replaced. A
    /// restart uses it to finish or undo a merge a crash interrupted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compacted_from: Vec<u64>,
}

impl SegmentMeta {
    pub fn parquet_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{:016}-{}.parquet", self.id, self.signal.as_str()))
    }
    /// The search index: `.idx` (see `spanindex`) for spans, a tantivy
    /// directory for logs.
    pub fn index_path(&self, dir: &Path) -> PathBuf {
        let ext = if self.signal == Signal::Traces { "idx" } else { "tantivy" };
        dir.join(format!("{:016}-{}.{ext}", self.id, self.signal.as_str()))
    }
    /// Where span segments written before the span index kept a tantivy
    /// index; it is removed once the segment's `.idx` is built.
    pub(crate) fn legacy_index_path(&self, dir: &Path) -> Option<PathBuf> {
        (self.signal == Signal::Traces).then(|| dir.join(format!("{:016}-traces.tantivy", self.id)))
    }
    /// Where the segment goes in the catalog's oldest-first order: a merged
    /// segment takes its oldest input's place.
    pub fn age_order(&self) -> u64 {
        self.compacted_from.iter().copied().min().unwrap_or(self.id)
    }
    pub fn overlaps(&self, min: Option<i64>, max: Option<i64>) -> bool {
        min.is_none_or(|m| self.max_time >= m) && max.is_none_or(|m| self.min_time <= m)
    }
}

/// Removes every file and directory of segment `id`, finished or temporary
/// (`<id>-<signal>.parquet`, `.parquet.tmp`, `.idx`, `.idx.tmp`, `.tantivy`, `.tantivy.tmp`).
/// Only for a segment no catalog names: a flush that failed part-way.
pub(crate) fn remove_files(dir: &Path, id: u64) -> std::io::Result<()> {
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

/// An open segment: metadata, bloom filters and index handles cached for the
/// segment's lifetime so a lookup touches only the pages it needs.
pub(crate) struct Segment {
    pub meta: SegmentMeta,
    dir: PathBuf,
    path: PathBuf,
    reader_meta: ArrowReaderMetadata,
    /// Per row group: trace_id (min, max) and bloom filter (span and log segments).
    trace_ranges: Vec<Option<(Vec<u8>, Vec<u8>)>>,
    blooms: Vec<Option<Sbbf>>,
    /// Opened on first use (see the module doc): a log segment's text index...
    index: Mutex<Option<Arc<TextIndex>>>,
    /// ...or a span segment's search index.
    span_index: Mutex<Option<Arc<SpanIndex>>>,
    /// Span segments: service edges and orphans from the footer's summary.
    /// Its per-operation statistics are left out (`ops` is empty): they are
    /// in `op_stats`.
    pub summary: Option<SegmentSummary>,
    op_stats: Option<OnFirstUse<OpList>>,
    /// Span segments: the attribute tables their rows' codes refer to
    /// (empty for segments written before them).
    attributes: OnFirstUse<AttrTables>,
    /// The highest WAL sequence the flush (or merged flushes) covered; 0 when
    /// the segment predates self-description.
    flushed_seq: u64,
    /// Per row group, per leaf column: the expected CRC-32 and whether the
    /// chunk has been verified yet (absent in older segments).
    chunk_crcs: Option<Vec<Vec<u32>>>,
    verified: Vec<Vec<AtomicBool>>,
    /// Set by the first failed verification, so reads through snapshots
    /// taken before the segment's quarantine fail fast.
    damaged: Mutex<Option<String>>,
    /// Set when a merge replaced this segment: its files are deleted when
    /// the last reader lets go of it (see `Drop`).
    retired: AtomicBool,
    quarantine: Arc<Quarantine>,
}

/// A footer value by key.
fn footer_value<'a>(md: &'a ParquetMetaData, key: &str) -> Option<&'a str> {
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
    pub(crate) fn open(dir: &Path, meta: SegmentMeta, quarantine: Arc<Quarantine>) -> Result<Self> {
        let path = meta.parquet_path(dir);
        let damaged = |what: String| StoreError::Damaged(format!("{}: {what}", path.display()));
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(damaged("file is missing".into())),
            Err(e) => return Err(StoreError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))),
        };
        let md = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&file)
            .map_err(|e| damaged(format!("unreadable Parquet footer: {e}")))?;
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
            if f.format > SEGMENT_FORMAT {
                return Err(StoreError::NewerFormat(format!(
                    "{} is in segment format {}, this build reads formats up to {SEGMENT_FORMAT}: \
                     run the seismo that wrote it (or a newer one)",
                    path.display(),
                    f.format
                )));
            }
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
        let text = |key: &str, what: &str| -> Result<Option<(&str, std::borrow::Cow<'_, str>)>> {
            let Some(value) = footer_value(&md, key) else { return Ok(None) };
            Ok(Some((value, unpack_footer_text(value).map_err(|e| damaged(format!("{what}: {e}")))?)))
        };
        let (summary, op_stats) = match text(SUMMARY_KEY, "span summary")? {
            Some((kept, json)) => {
                let mut summary = parse_summary(&json).map_err(|e| damaged(format!("span summary: {e}")))?;
                let ops = std::mem::take(&mut summary.ops);
                (Some(summary), Some(OnFirstUse::keep(kept, ops)))
            }
            None => (None, None),
        };
        let attributes = match text(attrcodes::TABLES_KEY, "attribute tables")? {
            Some((kept, json)) => OnFirstUse::keep(kept, AttrTables::parse(&json).map_err(|e| damaged(e.to_string()))?),
            None => OnFirstUse::parsed(AttrTables::default()),
        };
        let reader_meta = ArrowReaderMetadata::try_new(
            Arc::new(without_footer_texts(md)),
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .map_err(|e| damaged(format!("unreadable Parquet footer: {e}")))?;
        Ok(Self {
            meta,
            dir: dir.to_path_buf(),
            path,
            reader_meta,
            trace_ranges,
            blooms,
            index: Mutex::new(None),
            span_index: Mutex::new(None),
            summary,
            op_stats,
            attributes,
            flushed_seq: footer.as_ref().map_or(0, |f| f.flush.flushed_seq),
            chunk_crcs,
            verified,
            damaged: Mutex::new(None),
            retired: AtomicBool::new(false),
            quarantine,
        })
    }

    /// Reads a segment's self-description from its footer alone (for
    /// rebuilding a catalog): `Ok(None)` for a segment written before
    /// segments described themselves.
    ///
    /// # Errors
    /// `Damaged` when the file is unreadable or its description does not parse.
    pub(crate) fn read_footer(path: &Path) -> Result<Option<SegmentFooter>> {
        let damaged = |what: String| StoreError::Damaged(format!("{}: {what}", path.display()));
        let file = File::open(path).map_err(|e| damaged(e.to_string()))?;
        let md = ParquetMetaDataReader::new()
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

    /// Marks the segment replaced (by a merge the catalog now names): its
    /// files go once no snapshot reads it any more. A crash before that
    /// leaves them to start-up, which knows them from the merged segment.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether a merge replaced this segment.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// The per-operation statistics of a span segment's summary; `None` for a
    /// segment written before summaries.
    ///
    /// # Errors
    /// `Damaged` when the footer's text no longer parses.
    pub(crate) fn op_stats(&self) -> Result<Option<Arc<OpList>>> {
        let Some(ops) = &self.op_stats else { return Ok(None) };
        ops.get(&self.path, "span summary", |json| parse_summary(json).map(|s| s.ops)).map(Some)
    }

    /// The attribute tables the rows' codes refer to (empty for a segment
    /// written before them).
    ///
    /// # Errors
    /// `Damaged` when the footer's text no longer parses.
    pub(crate) fn attributes(&self) -> Result<Arc<AttrTables>> {
        self.attributes.get(&self.path, "attribute tables", |json| AttrTables::parse(json).map_err(|e| e.to_string()))
    }

    /// Why a read found this segment damaged, if one did.
    pub(crate) fn damage(&self) -> Option<String> {
        self.damaged.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The highest WAL sequence number this segment's data came from.
    pub(crate) fn flushed_seq(&self) -> u64 {
        self.flushed_seq
    }

    /// The files of this segment (Parquet, and index when it has one).
    pub(crate) fn files(&self) -> Vec<PathBuf> {
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

    /// Every row in file order, decoded `batch_rows` at a time as the caller
    /// pulls them (a merge's input): memory holds a batch, not the file.
    ///
    /// # Errors
    /// `Damaged` when a chunk fails its checksum; I/O errors.
    pub(crate) fn stream(&self, batch_rows: usize) -> Result<RowStream> {
        let groups: Vec<usize> = (0..self.reader_meta.metadata().num_row_groups()).collect();
        self.verify_chunks(&groups, &ProjectionMask::all())?;
        let reader = self.builder()?.with_batch_size(batch_rows).build()?;
        Ok(RowStream { reader, path: self.path.clone(), checked: self.chunk_crcs.is_some() })
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
        decode_guarded(&self.path, self.chunk_crcs.is_some(), || {
            Ok(b.build()?.collect::<std::result::Result<Vec<_>, _>>()?)
        })
    }
}

/// A packed footer text, parsed when first asked for and kept parsed from
/// then on. The latency sketches of a span segment's summary (~1.7 MB for
/// 400k spans of the trace benchmark) and its attribute tables (~1 MB) are
/// the biggest things an open segment holds, and under heavy ingest most
/// flushed segments are merged away before anything asks for either. Kept
/// packed, 24 such segments took 60 MB less after a start (147 vs 207 MB),
/// and the peak of a 10M-span load fell from ~510 to ~400 MB. The text was
/// parsed once at open, so a damaged one is found there; a later parse that
/// fails is reported as damage too.
pub(crate) struct OnFirstUse<T> {
    state: Mutex<Parsed<T>>,
}

enum Parsed<T> {
    Packed(String),
    Done(Arc<T>),
}

impl<T> OnFirstUse<T> {
    /// `value` as it is, already parsed.
    pub(crate) fn parsed(value: T) -> Self {
        Self { state: Mutex::new(Parsed::Done(Arc::new(value))) }
    }

    /// `value`, parsed from the footer's `text`: kept as that text until
    /// first used when it is packed; as it is otherwise (an older file's
    /// JSON is bigger than what it parses into).
    pub(crate) fn keep(text: &str, value: T) -> Self {
        if text.starts_with(PACKED) {
            Self { state: Mutex::new(Parsed::Packed(text.to_string())) }
        } else {
            Self::parsed(value)
        }
    }

    /// The value, parsing the text if it is the first use.
    ///
    /// # Errors
    /// `Damaged`, naming `path` and `what`, when the text no longer parses.
    pub(crate) fn get(
        &self,
        path: &Path,
        what: &str,
        parse: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<Arc<T>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let value = match &*state {
            Parsed::Done(value) => return Ok(value.clone()),
            Parsed::Packed(text) => unpack_footer_text(text)
                .and_then(|text| parse(&text))
                .map(Arc::new)
                .map_err(|e| StoreError::Damaged(format!("{}: {what}: {e}", path.display())))?,
        };
        *state = Parsed::Done(value.clone());
        Ok(value)
    }

    /// Whether the text has been parsed for use.
    #[cfg(test)]
    pub(crate) fn is_parsed(&self) -> bool {
        matches!(*self.state.lock().unwrap(), Parsed::Done(_))
    }
}

/// The statistics of a segment's operations (a summary's `ops`).
type OpList = Vec<(OpKey, OpStats)>;

/// A span summary as its footer text (unpacked) holds it, trimmed to size.
fn parse_summary(json: &str) -> std::result::Result<SegmentSummary, String> {
    let mut s: SegmentSummary = serde_json::from_str(json).map_err(|e| e.to_string())?;
    s.ops.shrink_to_fit();
    s.ops.iter_mut().for_each(|(_, stats)| stats.latency.buckets.shrink_to_fit());
    Ok(s)
}

/// `md` without the footer's key-value texts of its own (the span summary
/// alone is about 1 MB): parsed at open, they would otherwise stay in memory
/// as long as the segment is open. Arrow's schema entry is kept.
fn without_footer_texts(md: ParquetMetaData) -> ParquetMetaData {
    use parquet::file::metadata::{FileMetaData, ParquetMetaDataBuilder};
    let fm = md.file_metadata();
    let kept: Vec<parquet::file::metadata::KeyValue> =
        fm.key_value_metadata().into_iter().flatten().filter(|kv| !kv.key.starts_with("seismo.")).cloned().collect();
    let file_md = FileMetaData::new(
        fm.version(),
        fm.num_rows(),
        fm.created_by().map(str::to_string),
        Some(kept),
        fm.schema_descr_ptr(),
        fm.column_orders().cloned(),
    );
    let mut old = md.into_builder();
    ParquetMetaDataBuilder::new(file_md)
        .set_row_groups(old.take_row_groups())
        .set_page_index(old.take_page_index())
        .build()
}

/// See [`Segment::stream`].
pub(crate) struct RowStream {
    reader: ParquetRecordBatchReader,
    path: PathBuf,
    /// The chunks were verified against checksums (see [`decode_guarded`]).
    checked: bool,
}

impl RowStream {
    pub(crate) fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let reader = &mut self.reader;
        decode_guarded(&self.path, self.checked, || Ok(reader.next().transpose()?))
    }
}

/// Runs a Parquet decode of `path`. Verified chunks (`checked`) decode as
/// they were written, so a decoder failure there is a bug and stays an
/// error. Segments written before chunks were checksummed have only the
/// decoder to find damage: there, a decoder error or panic is damage.
fn decode_guarded<T>(path: &Path, checked: bool, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)) {
        Ok(Err(e @ (StoreError::Parquet(_) | StoreError::Arrow(_)))) if !checked => {
            Err(StoreError::Damaged(format!("{}: {e}", path.display())))
        }
        Ok(result) => result,
        Err(_) => Err(StoreError::Damaged(format!("{}: the Parquet decoder panicked", path.display()))),
    }
}

impl Segment {
    /// A log segment's text index, opened and verified on first use; a damaged
    /// or missing index is moved to quarantine and rebuilt from the Parquet file.
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
        if let Some(to) = self.quarantine.move_in(path)? {
            tracing::warn!(from = %path.display(), to = %to.display(), "damaged index moved to quarantine");
        }
        write_index(path, IndexKind::Logs, |w| {
            let mut row = 0u64;
            for batch in &batches {
                for r in schema::batch_to_logs(batch)? {
                    w.add(row, |doc| logsearch::fill_doc(doc, &r))?;
                    row += 1;
                }
            }
            Ok(())
        })?;
        crate::wal::sync_dir(&self.dir)?;
        self.quarantine.counters().rebuilt_indexes.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(index = %path.display(), "segment index rebuilt from its Parquet file");
        TextIndex::open_verified(path)
    }

    /// A span segment's search index, opened and verified on first use. A
    /// damaged one is moved to quarantine and, like a missing one (segments
    /// written before it existed kept a tantivy index, deleted once this one
    /// is in place), rebuilt from the Parquet file.
    ///
    /// # Errors
    /// `Damaged` when the Parquet file itself fails while rebuilding; I/O
    /// errors writing the new index.
    pub(crate) fn span_index(&self) -> Result<Arc<SpanIndex>> {
        let mut slot = self.span_index.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = &*slot {
            return Ok(index.clone());
        }
        let path = self.meta.index_path(&self.dir);
        let open = |path: &Path| {
            SpanIndex::open_verified(path, self.meta.rows)?.with_trace_ids(|firsts| self.trace_ids_at(firsts))
        };
        let index = match open(&path) {
            Ok(index) => index,
            // The Parquet file failed (while reading trace ids): the index is not at fault.
            Err(e) if !matches!(e, StoreError::Corrupt(_)) => return Err(e),
            Err(e) => {
                let legacy = self.meta.legacy_index_path(&self.dir).filter(|p| p.exists());
                if legacy.is_none() {
                    tracing::error!(segment = %self.path.display(), reason = %e,
                        "span index is damaged or missing; rebuilding it from the Parquet file");
                    if let Some(to) = self.quarantine.move_in(&path)? {
                        tracing::warn!(from = %path.display(), to = %to.display(), "damaged index moved to quarantine");
                    }
                }
                let groups: Vec<usize> = (0..self.reader_meta.metadata().num_row_groups()).collect();
                let rows = schema::whole_traces(&self.read(groups, None, None)?, &*self.attributes()?)?;
                let refs: Vec<&SpanRow> = rows.iter().collect();
                spanindex::write(&path, &refs)?;
                crate::wal::sync_dir(&self.dir)?;
                match legacy {
                    Some(old) => {
                        std::fs::remove_dir_all(&old)?;
                        tracing::info!(segment = %self.path.display(), "span index built; the older tantivy index is removed");
                    }
                    None => {
                        self.quarantine.counters().rebuilt_indexes.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(index = %path.display(), "segment index rebuilt from its Parquet file");
                    }
                }
                open(&path)?
            }
        };
        let index = Arc::new(index);
        *slot = Some(index.clone());
        Ok(index)
    }

    /// The trace ids at `rows` (ascending), read from the `trace_id` column a
    /// row group at a time.
    ///
    /// # Errors
    /// `Damaged` when the column does not decode; `Corrupt` when a row is
    /// past the segment's end.
    fn trace_ids_at(&self, rows: &[u32]) -> Result<Vec<crate::ids::TraceId>> {
        let mut out = Vec::with_capacity(rows.len());
        let mut wanted = rows.iter().map(|&r| u64::from(r)).peekable();
        let mut group_start = 0u64;
        for (g, group) in self.reader_meta.metadata().row_groups().iter().enumerate() {
            let group_end = group_start + group.num_rows() as u64;
            if wanted.peek().is_some_and(|&r| r < group_end) {
                let mut at = group_start;
                for batch in self.read(vec![g], Some(&[col::TRACE_ID]), None)? {
                    let ids = batch.column(0).as_any().downcast_ref::<arrow::array::FixedSizeBinaryArray>();
                    let ids = ids.ok_or_else(|| StoreError::Corrupt("trace ids are not 16-byte values".into()))?;
                    let end = at + arrow::array::Array::len(ids) as u64;
                    while let Some(r) = wanted.next_if(|&r| r < end) {
                        out.push(crate::ids::TraceId::from_slice(ids.value((r - at) as usize))?);
                    }
                    at = end;
                }
            }
            group_start = group_end;
        }
        match wanted.next() {
            Some(r) => Err(StoreError::Corrupt(format!("row {r} is past the segment's {group_start} rows"))),
            None => Ok(out),
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if !self.retired.load(Ordering::Acquire) {
            return;
        }
        for path in self.files() {
            if let Err(e) = remove_path(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete the file of a merged segment");
            }
        }
    }
}

/// Removes a segment's file or index directory; one already gone is not an error.
pub(crate) fn remove_path(path: &Path) -> std::io::Result<()> {
    let removed = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    match removed {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The files a segment described by `meta` has in `dir`.
pub(crate) fn files_of(dir: &Path, meta: &SegmentMeta) -> Vec<PathBuf> {
    let mut files = vec![meta.parquet_path(dir)];
    if meta.has_index {
        files.push(meta.index_path(dir));
    }
    files.extend(meta.legacy_index_path(dir).filter(|p| p.exists()));
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SpanId, TraceId};
    use crate::spanstats;

    /// A segment keeps its summary's statistics and its attribute tables
    /// packed until something reads them; they then read as written.
    #[test]
    fn packed_footer_texts_wait_for_their_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<SpanRow> = (0..2000u32)
            .map(|i| {
                let mut trace = [0u8; 16];
                trace[12..].copy_from_slice(&(i / 4 + 1).to_be_bytes());
                SpanRow {
                    trace_id: TraceId(trace),
                    span_id: SpanId(u64::from(i + 1).to_be_bytes()),
                    service_name: format!("svc{}", i % 4),
                    name: format!("op{}", i % 10),
                    start_time_unix_nano: i64::from(i) * 1000,
                    duration_nano: 1000 + i64::from(i * i % 7919) * 997,
                    attributes: vec![KeyValue { key: "k".into(), value: AttrValue::Str(format!("value-{}", i % 300)) }],
                    ..SpanRow::default()
                }
            })
            .collect();
        let summary = spanstats::summarize(&rows, &Default::default(), &[]);
        let flush = FlushInfo { flushed_seq: 1, signals: vec![Signal::Traces] };
        let meta = write_spans(dir.path(), 1, &rows, &summary, &flush).unwrap();
        let quarantine = Arc::new(Quarantine::new(dir.path(), Default::default()));
        let seg = Segment::open(dir.path(), meta, quarantine).unwrap();
        let ops = seg.op_stats.as_ref().unwrap();
        assert!(!ops.is_parsed() && !seg.attributes.is_parsed(), "both texts are packed");
        assert_eq!(seg.summary.as_ref().unwrap().edges, summary.edges);
        assert!(seg.summary.as_ref().unwrap().ops.is_empty(), "the statistics wait in their text");

        assert_eq!(*seg.op_stats().unwrap().unwrap(), summary.ops);
        assert!(ops.is_parsed() && !seg.attributes.is_parsed());
        let ids: Vec<TraceId> = (1..=500u32)
            .map(|t| {
                let mut trace = [0u8; 16];
                trace[12..].copy_from_slice(&t.to_be_bytes());
                TraceId(trace)
            })
            .collect();
        let mut back = seg.traces(&ids).unwrap();
        back.sort_by_key(|r| r.span_id);
        assert!(seg.attributes.is_parsed());
        assert_eq!(back.len(), rows.len());
        assert!(back.iter().zip(&rows).all(|(b, r)| b.attributes == r.attributes));
    }
}
