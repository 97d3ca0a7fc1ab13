//! Merging segments of one signal into one (compaction): a k-way merge of
//! their rows in the segments' own order (spans by trace id and start, log
//! records by service and time, metric points by metric, service and time),
//! streamed a batch at a time, so memory holds one decoded batch per input
//! plus one output row group, whatever the segments' sizes. Spans also wait
//! for the rest of their trace, up to `schema::MAX_POSITIONED_TRACE` rows per
//! input and for the output (parents stored by position resolve only within
//! a whole trace; longer traces keep theirs by id). A merged span segment
//! gets its span index built from the same stream and the inputs' footer
//! summaries combined; a merged log segment its text index.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ListArray, RecordBatch, StringArray};

use super::write::{log_props, metric_props, span_props, ParquetSink, PendingIndex, BATCH_ROWS, ROW_GROUP_ROWS};
use super::{FlushInfo, RowStream, Segment, SegmentFooter, SegmentMeta};
use crate::attrcodes::{self, AttrCoder, AttrTables};
use crate::error::{Result, StoreError};
use crate::ids::TraceId;
use crate::logsearch;
use crate::model::{LogRow, MetricDescriptor, MetricPointRow, Signal, SpanRow};
use crate::packed::{PackedRef, PackedSpans};
use crate::schema::{self, col, MAX_POSITIONED_TRACE};
use crate::spanindex;
use crate::spanstats::{self, OpKey, OpStats, SegmentSummary, SUMMARY_KEY};
use crate::textindex::IndexKind;

/// Rows an input decodes at a time.
const INPUT_BATCH_ROWS: usize = 1024;

/// Turns an input's batches into rows, in file order.
trait Decode {
    type Row;
    /// Appends the rows of `batch` that are ready to `out`.
    fn batch(&mut self, batch: &RecordBatch, out: &mut VecDeque<Self::Row>) -> Result<()>;
    /// Appends the rows held back, once the input has no more batches.
    fn end(&mut self, _out: &mut VecDeque<Self::Row>) -> Result<()> {
        Ok(())
    }
}

/// Rows that stand alone (log records, metric points).
struct EachRow<R>(fn(&RecordBatch) -> Result<Vec<R>>);

impl<R> Decode for EachRow<R> {
    type Row = R;
    fn batch(&mut self, batch: &RecordBatch, out: &mut VecDeque<R>) -> Result<()> {
        out.extend((self.0)(batch)?);
        Ok(())
    }
}

/// Spans, a whole trace at a time: a parent given by its position in the
/// trace (`parent_row`) is found once all the trace's rows are in.
struct WholeTraces {
    rows: Vec<SpanRow>,
    parents: Vec<Option<u32>>,
    /// The input's attribute tables.
    tables: Arc<AttrTables>,
}

impl WholeTraces {
    fn of(input: &Segment) -> Result<Self> {
        Ok(Self { rows: Vec::new(), parents: Vec::new(), tables: input.attributes()? })
    }

    fn release(&mut self, n: usize, out: &mut VecDeque<SpanRow>) -> Result<()> {
        let mut rows: Vec<SpanRow> = self.rows.drain(..n).collect();
        let parents: Vec<Option<u32>> = self.parents.drain(..n).collect();
        schema::resolve_parents(&mut rows, &parents)?;
        out.extend(rows);
        Ok(())
    }
}

impl Decode for WholeTraces {
    type Row = SpanRow;
    fn batch(&mut self, batch: &RecordBatch, out: &mut VecDeque<SpanRow>) -> Result<()> {
        self.rows.extend(schema::batch_to_spans(batch, &self.tables)?);
        self.parents.extend(schema::parent_rows_of(batch)?);
        // The last trace may go on in the next batch, unless it is too long
        // to hold parents by position (then it holds none).
        let last = self.rows.last().map(|r| r.trace_id);
        let open =
            self.rows.iter().rev().take(MAX_POSITIONED_TRACE + 1).take_while(|r| Some(r.trace_id) == last).count();
        let ready = if open > MAX_POSITIONED_TRACE { self.rows.len() } else { self.rows.len() - open };
        self.release(ready, out)
    }
    fn end(&mut self, out: &mut VecDeque<SpanRow>) -> Result<()> {
        self.release(self.rows.len(), out)
    }
}

/// One input's rows in file order, decoded a batch at a time.
struct Cursor<'a, D: Decode> {
    seg: &'a Segment,
    stream: Option<RowStream>,
    rows: VecDeque<D::Row>,
    decode: D,
    ended: bool,
}

impl<D: Decode> Cursor<'_, D> {
    /// The next row, decoding the next batch when the current one is used up.
    fn pop(&mut self) -> Result<Option<D::Row>> {
        while self.rows.is_empty() && !self.ended {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => self.stream.insert(self.seg.stream(INPUT_BATCH_ROWS)?),
            };
            match stream.next_batch()? {
                Some(batch) => self.decode.batch(&batch, &mut self.rows)?,
                None => {
                    self.decode.end(&mut self.rows)?;
                    self.ended = true;
                }
            }
        }
        Ok(self.rows.pop_front())
    }
}

/// Hands `emit` the rows of `inputs`, each already in `key` order, in `key`
/// order; the input's position breaks ties, so equal rows keep the order of
/// the segments (oldest flush first).
fn merge_rows<D: Decode, K: Ord>(
    inputs: &[Arc<Segment>],
    decoder: impl Fn(&Segment) -> Result<D>,
    key: impl Fn(&D::Row) -> K,
    mut emit: impl FnMut(D::Row) -> Result<()>,
) -> Result<()> {
    let mut cursors: Vec<Cursor<'_, D>> = inputs
        .iter()
        .map(|seg| Ok(Cursor { seg, stream: None, rows: VecDeque::new(), decode: decoder(seg)?, ended: false }))
        .collect::<Result<_>>()?;
    let mut heads: BinaryHeap<Reverse<(K, usize)>> = BinaryHeap::new();
    let mut head_rows: Vec<Option<D::Row>> = Vec::with_capacity(cursors.len());
    for (i, c) in cursors.iter_mut().enumerate() {
        let row = c.pop()?;
        if let Some(r) = &row {
            heads.push(Reverse((key(r), i)));
        }
        head_rows.push(row);
    }
    while let Some(Reverse((_, i))) = heads.pop() {
        let row = head_rows[i].take().expect("a head row for every queued input");
        let next = cursors[i].pop()?;
        if let Some(r) = &next {
            heads.push(Reverse((key(r), i)));
        }
        head_rows[i] = next;
        emit(row)?;
    }
    Ok(())
}

/// The catalog entry of the merge of `inputs` (all of `signal`) as segment
/// `id`, and the footer describing it.
fn merged_meta(id: u64, signal: Signal, inputs: &[Arc<Segment>]) -> Result<(SegmentMeta, SegmentFooter)> {
    if inputs.iter().any(|s| s.meta.signal != signal) {
        return Err(StoreError::Corrupt(format!("a merge of {} segments was given another kind", signal.as_str())));
    }
    let rows: u64 = inputs.iter().map(|s| s.meta.rows).sum();
    let mut meta = SegmentMeta::describe(
        id,
        signal,
        rows as usize,
        inputs.iter().flat_map(|s| [s.meta.min_time, s.meta.max_time]),
        inputs.iter().flat_map(|s| s.meta.services.iter().map(String::as_str)),
        signal != Signal::Metrics,
    );
    let operations: BTreeSet<(String, String, i32)> =
        inputs.iter().flat_map(|s| s.meta.operations.iter().cloned()).collect();
    meta.operations = operations.into_iter().collect();
    let metrics: BTreeSet<MetricDescriptor> = inputs.iter().flat_map(|s| s.meta.metrics.iter().cloned()).collect();
    meta.metrics = metrics.into_iter().collect();
    meta.compacted_from = inputs.iter().map(|s| s.meta.id).collect();
    let footer = SegmentFooter::new(
        meta.clone(),
        FlushInfo { flushed_seq: inputs.iter().map(|s| s.flushed_seq()).max().unwrap_or(0), signals: vec![signal] },
    );
    Ok((meta, footer))
}

/// Rows written to a merged segment, a batch at a time, pausing (`pace`)
/// between row groups.
struct Output<'a, R> {
    sink: ParquetSink,
    batch: Vec<R>,
    written: u64,
    encode: fn(&[&R]) -> Result<RecordBatch>,
    pace: &'a dyn Fn() -> Result<()>,
}

impl<'a, R> Output<'a, R> {
    fn new(sink: ParquetSink, encode: fn(&[&R]) -> Result<RecordBatch>, pace: &'a dyn Fn() -> Result<()>) -> Self {
        Output { sink, batch: Vec::with_capacity(BATCH_ROWS), written: 0, encode, pace }
    }

    fn push(&mut self, row: R) -> Result<()> {
        self.batch.push(row);
        if self.batch.len() == BATCH_ROWS {
            self.write_batch()?;
            if self.written.is_multiple_of(ROW_GROUP_ROWS as u64) {
                (self.pace)()?;
            }
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let rows: Vec<&R> = self.batch.iter().collect();
        self.sink.write(&(self.encode)(&rows)?)?;
        self.written += rows.len() as u64;
        self.batch.clear();
        Ok(())
    }

    /// Writes what is left and closes the file; checks that every input row
    /// went out. Returns the file's size.
    fn finish(mut self, footer_kvs: Vec<(&str, String)>, footer: &SegmentFooter) -> Result<u64> {
        self.write_batch()?;
        if self.written != footer.meta.rows {
            return Err(StoreError::Corrupt(format!(
                "merged {} rows, the inputs hold {}",
                self.written, footer.meta.rows
            )));
        }
        self.sink.finish(footer_kvs, footer)
    }
}

/// Merges `inputs`, segments of `signal`, into segment `id` (see
/// [`merge_spans`], [`merge_logs`], [`merge_metrics`]).
pub(crate) fn merge(
    dir: &Path,
    id: u64,
    signal: Signal,
    inputs: &[Arc<Segment>],
    pace: &dyn Fn() -> Result<()>,
) -> Result<SegmentMeta> {
    let merge = match signal {
        Signal::Traces => merge_spans,
        Signal::Logs => merge_logs,
        Signal::Metrics => merge_metrics,
    };
    merge(dir, id, inputs, pace)
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
fn merge_spans(dir: &Path, id: u64, inputs: &[Arc<Segment>], pace: &dyn Fn() -> Result<()>) -> Result<SegmentMeta> {
    let (mut meta, footer) = merged_meta(id, Signal::Traces, inputs)?;
    let ops = inputs.iter().map(|s| s.op_stats()).collect::<Result<Vec<_>>>()?;
    let summary = merge_summaries(
        inputs.iter().zip(&ops).filter_map(|(s, ops)| Some((s.summary.as_ref()?, ops.as_deref()?.as_slice()))),
    );
    let props = span_props(meta.rows as usize);
    let sink = ParquetSink::create(&meta.parquet_path(dir), schema::span_schema(), props)?;
    let mut out = SpanOutput {
        sink,
        index: spanindex::Builder::default(),
        trace: Vec::new(),
        long_trace: None,
        out: PackedSpans::default(),
        parents: Vec::new(),
        attributes: coder_for(inputs)?,
        written: 0,
        pace,
    };
    pace()?;
    merge_rows(inputs, WholeTraces::of, |r: &SpanRow| (r.trace_id, r.start_time_unix_nano), |row| out.push(row))?;
    out.end_trace()?;
    out.write_batch()?;
    let SpanOutput { sink, index, written, attributes, .. } = out;
    if written != meta.rows {
        return Err(StoreError::Corrupt(format!("merged {written} rows, the inputs hold {}", meta.rows)));
    }
    let summary_json = serde_json::to_string(&summary).expect("summary serializes");
    let parquet_bytes = sink.finish(vec![(SUMMARY_KEY, summary_json), attributes.footer()], &footer)?;
    let index_bytes = index.write(&meta.index_path(dir))?;
    meta.bytes = parquet_bytes + index_bytes;
    Ok(meta)
}

/// The attribute coder of a merge of `inputs`, its tables complete before
/// the first row (see `attrcodes`): the keys and values of the inputs'
/// tables, and of the segments written before the tables those their rows
/// use (read from the key and value columns; once per such segment), so the
/// attributes of an older store get coded too.
fn coder_for(inputs: &[Arc<Segment>]) -> Result<AttrCoder> {
    let tables = inputs.iter().map(|s| s.attributes()).collect::<Result<Vec<_>>>()?;
    let mut older: HashMap<String, u64> = HashMap::new();
    // Their distinct pairs (key, tagged value), as far as a table could hold them.
    let (mut pairs, mut pair_bytes) = (BTreeSet::new(), 0usize);
    for (seg, _) in inputs.iter().zip(&tables).filter(|(_, t)| t.keys().next().is_none()) {
        let groups = (0..seg.reader_meta.metadata().num_row_groups()).collect();
        for batch in seg.read(groups, Some(&[col::ATTR_KEYS, col::ATTR_VALUES]), None)? {
            let text = |i: usize, what: &str| {
                let list = batch.column(i).as_any().downcast_ref::<ListArray>();
                let items = list.and_then(|k| k.values().as_any().downcast_ref::<StringArray>().cloned());
                items.ok_or_else(|| StoreError::Corrupt(format!("attribute {what} are not text lists")))
            };
            let (keys, values) = (text(0, "keys")?, text(1, "values")?);
            for (key, value) in keys.iter().zip(values.iter()) {
                let (Some(key), Some(value)) = (key, value) else { continue };
                *older.entry(key.to_string()).or_default() += 1;
                if pair_bytes < attrcodes::MAX_TABLE_BYTES && pairs.insert((key.to_string(), value.to_string())) {
                    pair_bytes += key.len() + value.len();
                }
            }
        }
    }
    let keys = tables.iter().flat_map(|t| t.keys());
    let mut coder = AttrCoder::with_keys(keys.chain(older.iter().map(|(k, n)| (k.as_str(), *n))));
    for t in &tables {
        coder.learn_tables(t);
    }
    for (key, value) in &pairs {
        coder.learn_text(key, value);
    }
    Ok(coder)
}

/// Writes the rows of `inputs` (log segments) as segment `id` in `dir`, with
/// its text index; otherwise as [`merge_spans`]. The Parquet file is renamed
/// into place before the index, as a flush does: a merge cut short between
/// the two leaves a file that start-up removes (its inputs are listed).
fn merge_logs(dir: &Path, id: u64, inputs: &[Arc<Segment>], pace: &dyn Fn() -> Result<()>) -> Result<SegmentMeta> {
    let (mut meta, footer) = merged_meta(id, Signal::Logs, inputs)?;
    let sink = ParquetSink::create(&meta.parquet_path(dir), schema::log_schema(), log_props())?;
    let mut out = Output::new(sink, schema::logs_to_batch, pace);
    let mut index = PendingIndex::create(&meta.index_path(dir), IndexKind::Logs)?;
    pace()?;
    merge_rows(
        inputs,
        |_| Ok(EachRow(schema::batch_to_logs)),
        |r: &LogRow| (r.service_name.clone(), r.time_unix_nano),
        |row| {
            let at = out.written + out.batch.len() as u64;
            index.writer.add(at, |doc| logsearch::fill_doc(doc, &row))?;
            out.push(row)
        },
    )?;
    let parquet_bytes = out.finish(Vec::new(), &footer)?;
    meta.bytes = parquet_bytes + index.finish()?;
    Ok(meta)
}

/// Writes the rows of `inputs` (metric-point segments) as segment `id` in
/// `dir`; otherwise as [`merge_spans`].
fn merge_metrics(dir: &Path, id: u64, inputs: &[Arc<Segment>], pace: &dyn Fn() -> Result<()>) -> Result<SegmentMeta> {
    let (mut meta, footer) = merged_meta(id, Signal::Metrics, inputs)?;
    let sink = ParquetSink::create(&meta.parquet_path(dir), schema::metric_schema(), metric_props())?;
    let mut out = Output::new(sink, schema::metrics_to_batch, pace);
    pace()?;
    let key = |r: &MetricPointRow| (r.metric_name.clone(), r.service_name.clone(), r.time_unix_nano);
    merge_rows(inputs, |_| Ok(EachRow(schema::batch_to_metrics)), key, |row| out.push(row))?;
    meta.bytes = out.finish(Vec::new(), &footer)?;
    Ok(meta)
}

/// A merged span segment being written: the rows of a trace are gathered
/// (its parents are found by position once it is whole), then indexed and
/// packed into the next batch.
struct SpanOutput<'a> {
    sink: ParquetSink,
    index: spanindex::Builder,
    trace: Vec<SpanRow>,
    /// A trace too long for parents by position, while its rows come.
    long_trace: Option<TraceId>,
    out: PackedSpans,
    /// `parent_row` of each row of `out`.
    parents: Vec<Option<u32>>,
    attributes: AttrCoder,
    written: u64,
    pace: &'a dyn Fn() -> Result<()>,
}

impl SpanOutput<'_> {
    fn push(&mut self, row: SpanRow) -> Result<()> {
        if self.long_trace == Some(row.trace_id) {
            return self.put(row, None);
        }
        if self.trace.last().is_some_and(|r| r.trace_id != row.trace_id) {
            self.end_trace()?;
        }
        self.trace.push(row);
        if self.trace.len() > MAX_POSITIONED_TRACE {
            // Too long for parents by position: its rows go as they come.
            self.long_trace = Some(self.trace[0].trace_id);
            for row in std::mem::take(&mut self.trace) {
                self.put(row, None)?;
            }
        }
        Ok(())
    }

    fn end_trace(&mut self) -> Result<()> {
        let parents = schema::parent_rows(&self.trace);
        for (row, parent) in std::mem::take(&mut self.trace).into_iter().zip(parents) {
            self.put(row, parent)?;
        }
        Ok(())
    }

    /// Indexes and packs `row`, writing the batch when it is full.
    fn put(&mut self, row: SpanRow, parent: Option<u32>) -> Result<()> {
        self.index.add(&row)?;
        self.out.push(row);
        self.parents.push(parent);
        if self.out.len() >= BATCH_ROWS {
            self.write_batch()?;
        }
        Ok(())
    }

    /// Writes the packed rows; pauses (`pace`) when a row group was completed.
    fn write_batch(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let groups = self.written / ROW_GROUP_ROWS as u64;
        let rows: Vec<PackedRef<'_>> = self.out.iter().collect();
        self.sink.write(&schema::spans_to_batch(&rows, &self.parents, &mut self.attributes)?)?;
        self.written += rows.len() as u64;
        drop(rows);
        self.out = PackedSpans::default();
        self.parents.clear();
        if self.written / ROW_GROUP_ROWS as u64 > groups {
            (self.pace)()?;
        }
        Ok(())
    }
}

/// One summary for the merged segment: operation stats merged, edges added
/// up (each was counted once, by the segment that resolved it), orphans kept.
fn merge_summaries<'a>(
    summaries: impl Iterator<Item = (&'a SegmentSummary, &'a [(OpKey, OpStats)])>,
) -> SegmentSummary {
    let mut ops: HashMap<OpKey, OpStats> = HashMap::new();
    let mut edges: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut orphans = Vec::new();
    let mut seen_orphans = HashSet::new();
    for (s, s_ops) in summaries {
        for (key, stats) in s_ops {
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
