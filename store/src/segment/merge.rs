//! Merging span segments into one (compaction): a k-way merge of their rows
//! in the segments' own order (trace id, start), streamed a batch at a time,
//! so memory holds one decoded batch per input plus one output row group,
//! whatever the segments' sizes. The merged segment gets its span index
//! built from the same stream and the inputs' footer summaries combined.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use super::write::{span_props, ParquetSink, BATCH_ROWS, ROW_GROUP_ROWS};
use super::{FlushInfo, RowStream, Segment, SegmentFooter, SegmentMeta};
use crate::error::{Result, StoreError};
use crate::ids::TraceId;
use crate::model::{Signal, SpanRow};
use crate::packed::{PackedRef, PackedSpans};
use crate::schema;
use crate::spanindex;
use crate::spanstats::{self, OpKey, OpStats, SegmentSummary, SUMMARY_KEY};

/// Rows an input decodes at a time.
const INPUT_BATCH_ROWS: usize = 1024;

/// One input's rows in file order, decoded a batch at a time.
struct Cursor<'a> {
    seg: &'a Segment,
    stream: Option<RowStream>,
    rows: VecDeque<SpanRow>,
}

impl Cursor<'_> {
    /// The next row, decoding the next batch when the current one is used up.
    fn pop(&mut self) -> Result<Option<SpanRow>> {
        while self.rows.is_empty() {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => self.stream.insert(self.seg.stream(INPUT_BATCH_ROWS)?),
            };
            match stream.next_batch()? {
                Some(batch) => self.rows.extend(schema::batch_to_spans(&batch)?),
                None => return Ok(None),
            }
        }
        Ok(self.rows.pop_front())
    }
}

/// Writes the rows of `inputs` (span segments) as segment `id` in `dir`:
/// Parquet file and span index, the inputs' summaries merged in its footer,
/// `compacted_from` naming the inputs. Returns its catalog entry. The
/// caller syncs the directory and swaps it in. `pace` runs between row
/// groups: it may wait (ingest comes first) or stop the merge with an
/// error; the caller removes what was written.
///
/// # Errors
/// `Damaged` when an input's data fails verification; I/O errors.
pub(crate) fn merge_spans(
    dir: &Path,
    id: u64,
    inputs: &[Arc<Segment>],
    pace: &dyn Fn() -> Result<()>,
) -> Result<SegmentMeta> {
    if inputs.iter().any(|s| s.meta.signal != Signal::Traces) {
        return Err(StoreError::Corrupt("only span segments are merged".into()));
    }
    let rows: u64 = inputs.iter().map(|s| s.meta.rows).sum();
    let mut meta = SegmentMeta::describe(
        id,
        Signal::Traces,
        rows as usize,
        inputs.iter().flat_map(|s| [s.meta.min_time, s.meta.max_time]),
        inputs.iter().flat_map(|s| s.meta.services.iter().map(String::as_str)),
        true,
    );
    let operations: BTreeSet<(String, String, i32)> =
        inputs.iter().flat_map(|s| s.meta.operations.iter().cloned()).collect();
    meta.operations = operations.into_iter().collect();
    meta.compacted_from = inputs.iter().map(|s| s.meta.id).collect();
    let footer = SegmentFooter {
        meta: meta.clone(),
        flush: FlushInfo {
            flushed_seq: inputs.iter().map(|s| s.flushed_seq()).max().unwrap_or(0),
            signals: vec![Signal::Traces],
        },
    };
    let summary = merge_summaries(inputs.iter().filter_map(|s| s.summary.as_ref()));

    let mut sink = ParquetSink::create(&meta.parquet_path(dir), schema::span_schema(), span_props(rows as usize))?;
    let mut index = spanindex::Builder::default();
    pace()?;
    let mut cursors: Vec<Cursor<'_>> =
        inputs.iter().map(|seg| Cursor { seg, stream: None, rows: VecDeque::new() }).collect();
    // Heads of the inputs, smallest (trace id, start) first; the input's
    // position breaks ties so equal rows keep a stable order.
    let mut heads: BinaryHeap<Reverse<(TraceId, i64, usize)>> = BinaryHeap::new();
    let mut head_rows: Vec<Option<SpanRow>> = Vec::with_capacity(cursors.len());
    for (i, c) in cursors.iter_mut().enumerate() {
        let row = c.pop()?;
        if let Some(r) = &row {
            heads.push(Reverse((r.trace_id, r.start_time_unix_nano, i)));
        }
        head_rows.push(row);
    }
    // The next output batch, packed.
    let mut out = PackedSpans::default();
    let mut written = 0u64;
    while let Some(Reverse((_, _, i))) = heads.pop() {
        let row = head_rows[i].take().expect("a head row for every queued input");
        let next = cursors[i].pop()?;
        if let Some(r) = &next {
            heads.push(Reverse((r.trace_id, r.start_time_unix_nano, i)));
        }
        head_rows[i] = next;
        index.add(&row)?;
        out.push(row);
        if out.len() == BATCH_ROWS {
            written += flush_rows(&mut sink, &mut out)?;
            if written.is_multiple_of(ROW_GROUP_ROWS as u64) {
                pace()?;
            }
        }
    }
    written += flush_rows(&mut sink, &mut out)?;
    if written != rows {
        return Err(StoreError::Corrupt(format!("merged {written} rows, the inputs hold {rows}")));
    }
    let summary_json = serde_json::to_string(&summary).expect("summary serializes");
    let parquet_bytes = sink.finish(vec![(SUMMARY_KEY, summary_json)], &footer)?;
    let index_bytes = index.write(&meta.index_path(dir))?;
    meta.bytes = parquet_bytes + index_bytes;
    Ok(meta)
}

fn flush_rows(sink: &mut ParquetSink, out: &mut PackedSpans) -> Result<u64> {
    if out.is_empty() {
        return Ok(0);
    }
    let rows: Vec<PackedRef<'_>> = out.iter().collect();
    sink.write(&schema::spans_to_batch(&rows)?)?;
    let n = out.len() as u64;
    *out = PackedSpans::default();
    Ok(n)
}

/// One summary for the merged segment: operation stats merged, edges added
/// up (each was counted once, by the segment that resolved it), orphans kept.
fn merge_summaries<'a>(summaries: impl Iterator<Item = &'a SegmentSummary>) -> SegmentSummary {
    let mut ops: HashMap<OpKey, OpStats> = HashMap::new();
    let mut edges: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut orphans = Vec::new();
    let mut seen_orphans = HashSet::new();
    for s in summaries {
        for (key, stats) in &s.ops {
            spanstats::merge(ops.entry(key.clone()).or_default(), stats);
        }
        for (p, c, n) in &s.edges {
            *edges.entry((p.clone(), c.clone())).or_default() += n;
        }
        for o in &s.orphans {
            if seen_orphans.insert((o.trace_id, o.parent_span_id, o.child_service.clone())) {
                orphans.push(o.clone());
            }
        }
    }
    let mut ops: Vec<(OpKey, OpStats)> = ops.into_iter().collect();
    ops.sort_by(|a, b| a.0.cmp(&b.0));
    SegmentSummary { ops, edges: edges.into_iter().map(|((p, c), n)| (p, c, n)).collect(), orphans }
}
