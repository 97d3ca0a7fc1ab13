//! Arrow schemas of the three tables and conversion between rows and batches.
//!
//! Hot fields (ids, service, name, kind, times, status) get their own typed
//! columns so scans read only what they filter on; span attributes are codes
//! into per-segment tables (see `attrcodes`); the long tail (resource
//! attributes, events, links, distributions) lives in compact JSON columns
//! that are read only when whole rows are materialized. Parquet
//! dictionary-encodes the repetitive text (service names, resource JSON), so
//! flattening resources onto every row costs little on disk.
//!
//! Close to 600 lines of code because the three tables' columns, and both
//! directions of their conversion, are one contract: kept side by side, a
//! column added on one side and not the other shows in review.

use std::sync::{Arc, OnceLock};

use arrow::array::*;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::attrcodes::{AttrCoder, AttrReader, AttrTables};
use crate::error::{Result, StoreError};
use crate::ids::{SpanId, TraceId};
use crate::model::*;
use crate::packed::SpanView;

/// Column names shared by writer, scans and tests.
pub(crate) mod col {
    pub(crate) const TRACE_ID: &str = "trace_id";
    pub(crate) const SPAN_ID: &str = "span_id";
    pub(crate) const PARENT_SPAN_ID: &str = "parent_span_id";
    pub(crate) const PARENT_ROW: &str = "parent_row";
    pub(crate) const TRACE_STATE: &str = "trace_state";
    pub(crate) const FLAGS: &str = "flags";
    pub(crate) const SERVICE_NAME: &str = "service_name";
    pub(crate) const NAME: &str = "name";
    pub(crate) const KIND: &str = "kind";
    pub(crate) const START_TIME: &str = "start_time_unix_nano";
    pub(crate) const DURATION: &str = "duration_nano";
    pub(crate) const STATUS_CODE: &str = "status_code";
    pub(crate) const STATUS_MESSAGE: &str = "status_message";
    pub(crate) const ATTRIBUTES: &str = "attributes";
    pub(crate) const ATTR_KEYS: &str = "attr_keys";
    pub(crate) const ATTR_VALUES: &str = "attr_values";
    pub(crate) const ATTR_KEY_CODES: &str = "attr_key_codes";
    /// Format 2's value codes; format 3 has [`ATTR_VALUE_BITS`].
    pub(crate) const ATTR_VALUE_CODES: &str = "attr_value_codes";
    pub(crate) const ATTR_VALUE_BITS: &str = "attr_value_bits";
    pub(crate) const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
    pub(crate) const SCOPE_NAME: &str = "scope_name";
    pub(crate) const SCOPE_VERSION: &str = "scope_version";
    pub(crate) const EVENTS: &str = "events";
    pub(crate) const LINKS: &str = "links";
    pub(crate) const DROPPED: &str = "dropped_counts";
    pub(crate) const TIME: &str = "time_unix_nano";
    pub(crate) const OBSERVED_TIME: &str = "observed_time_unix_nano";
    pub(crate) const SEVERITY_NUMBER: &str = "severity_number";
    pub(crate) const SEVERITY_TEXT: &str = "severity_text";
    pub(crate) const BODY: &str = "body";
    pub(crate) const EVENT_NAME: &str = "event_name";
    pub(crate) const METRIC_NAME: &str = "metric_name";
    pub(crate) const DESCRIPTION: &str = "description";
    pub(crate) const UNIT: &str = "unit";
    pub(crate) const METRIC_KIND: &str = "metric_kind";
    pub(crate) const TEMPORALITY: &str = "temporality";
    pub(crate) const MONOTONIC: &str = "is_monotonic";
    pub(crate) const VALUE: &str = "value";
    pub(crate) const VALUE_INT: &str = "value_int";
    pub(crate) const COUNT: &str = "count";
    pub(crate) const SUM: &str = "sum";
    pub(crate) const DISTRIBUTION: &str = "distribution";
}

fn f(name: &str, dt: DataType, nullable: bool) -> Field {
    Field::new(name, dt, nullable)
}

/// `List<Utf8>` as `ListBuilder<StringBuilder>` builds it.
fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// `List<UInt32>` as `ListBuilder<UInt32Builder>` builds it.
fn code_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::UInt32, true)))
}

/// An attribute value as text behind a one-letter type tag (`s` string, `i`
/// int64, `d` float64, `t`/`f` bool, `y` bytes as hex, `j` arrays and maps
/// as typed JSON, `n` empty): the form of the attribute tables and of the
/// values written out (see `attrcodes`), with types kept exactly (f64 text
/// round-trips).
pub(crate) fn tagged_text(v: &AttrValue, out: &mut String) {
    use std::fmt::Write;
    match v {
        AttrValue::Str(s) => {
            out.push('s');
            out.push_str(s);
        }
        AttrValue::Int(i) => {
            let _ = write!(out, "i{i}");
        }
        AttrValue::Double(d) => {
            let _ = write!(out, "d{d}");
        }
        AttrValue::Bool(b) => out.push(if *b { 't' } else { 'f' }),
        AttrValue::Bytes(h) => {
            out.push('y');
            out.push_str(h);
        }
        AttrValue::Array(_) | AttrValue::Map(_) => {
            out.push('j');
            out.push_str(&json(v));
        }
        AttrValue::Empty => out.push('n'),
    }
}

pub(crate) fn parse_tagged(s: &str) -> Result<AttrValue> {
    let bad = || StoreError::Corrupt(format!("bad attribute value {s:?} in segment"));
    let (tag, rest) = s.split_at_checked(1).ok_or_else(bad)?;
    Ok(match tag {
        "s" => AttrValue::Str(rest.to_string()),
        "i" => AttrValue::Int(rest.parse().map_err(|_| bad())?),
        "d" => AttrValue::Double(rest.parse().map_err(|_| bad())?),
        "t" => AttrValue::Bool(true),
        "f" => AttrValue::Bool(false),
        "y" => AttrValue::Bytes(rest.to_string()),
        "j" => parse_json(rest, "attribute")?,
        "n" => AttrValue::Empty,
        _ => return Err(bad()),
    })
}

pub(crate) fn span_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            f(col::TRACE_ID, DataType::FixedSizeBinary(16), false),
            f(col::SPAN_ID, DataType::FixedSizeBinary(8), false),
            f(col::PARENT_SPAN_ID, DataType::FixedSizeBinary(8), true),
            f(col::START_TIME, DataType::Int64, false),
            f(col::DURATION, DataType::Int64, false),
            f(col::SERVICE_NAME, DataType::Utf8, false),
            f(col::NAME, DataType::Utf8, false),
            f(col::KIND, DataType::Int32, false),
            f(col::STATUS_CODE, DataType::Int32, false),
            f(col::STATUS_MESSAGE, DataType::Utf8, true),
            f(col::TRACE_STATE, DataType::Utf8, true),
            f(col::FLAGS, DataType::UInt32, false),
            f(col::ATTR_KEY_CODES, code_list(), false),
            f(col::ATTR_KEYS, text_list(), false),
            f(col::ATTR_VALUE_BITS, DataType::Binary, false),
            f(col::ATTR_VALUES, text_list(), false),
            f(col::RESOURCE_ATTRIBUTES, DataType::Utf8, false),
            f(col::SCOPE_NAME, DataType::Utf8, false),
            f(col::SCOPE_VERSION, DataType::Utf8, false),
            f(col::EVENTS, DataType::Utf8, true),
            f(col::LINKS, DataType::Utf8, true),
            f(col::DROPPED, DataType::Utf8, true),
            f(col::PARENT_ROW, DataType::UInt32, true),
        ]))
    })
    .clone()
}

pub(crate) fn log_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            f(col::TIME, DataType::Int64, false),
            f(col::OBSERVED_TIME, DataType::Int64, false),
            f(col::SERVICE_NAME, DataType::Utf8, false),
            f(col::SEVERITY_NUMBER, DataType::Int32, false),
            f(col::SEVERITY_TEXT, DataType::Utf8, false),
            f(col::BODY, DataType::Utf8, false),
            f(col::TRACE_ID, DataType::FixedSizeBinary(16), true),
            f(col::SPAN_ID, DataType::FixedSizeBinary(8), true),
            f(col::FLAGS, DataType::UInt32, false),
            f(col::EVENT_NAME, DataType::Utf8, false),
            f(col::ATTRIBUTES, DataType::Utf8, false),
            f(col::RESOURCE_ATTRIBUTES, DataType::Utf8, false),
            f(col::SCOPE_NAME, DataType::Utf8, false),
            f(col::SCOPE_VERSION, DataType::Utf8, false),
            f(col::DROPPED, DataType::UInt32, false),
        ]))
    })
    .clone()
}

pub(crate) fn metric_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            f(col::METRIC_NAME, DataType::Utf8, false),
            f(col::SERVICE_NAME, DataType::Utf8, false),
            f(col::TIME, DataType::Int64, false),
            f(col::START_TIME, DataType::Int64, false),
            f(col::METRIC_KIND, DataType::Int32, false),
            f(col::TEMPORALITY, DataType::Int32, false),
            f(col::MONOTONIC, DataType::Boolean, false),
            f(col::ATTRIBUTES, DataType::Utf8, false),
            f(col::VALUE, DataType::Float64, true),
            f(col::VALUE_INT, DataType::Int64, true),
            f(col::COUNT, DataType::UInt64, true),
            f(col::SUM, DataType::Float64, true),
            f(col::DISTRIBUTION, DataType::Utf8, true),
            f(col::DESCRIPTION, DataType::Utf8, false),
            f(col::UNIT, DataType::Utf8, false),
            f(col::RESOURCE_ATTRIBUTES, DataType::Utf8, false),
            f(col::SCOPE_NAME, DataType::Utf8, false),
            f(col::FLAGS, DataType::UInt32, false),
        ]))
    })
    .clone()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("row values always serialize")
}

/// A string column of JSON, serialized straight into one reused buffer
/// (no String per row).
fn json_column<'a, T: serde::Serialize + ?Sized + 'a>(
    values: impl Iterator<Item = Option<&'a T>>,
    rows: usize,
) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(rows, rows * 64);
    let mut buf = Vec::with_capacity(1024);
    for v in values {
        match v {
            Some(v) => {
                buf.clear();
                serde_json::to_writer(&mut buf, v).expect("row values always serialize");
                b.append_value(std::str::from_utf8(&buf).expect("serde_json writes UTF-8"));
            }
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

fn parse_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad {what} JSON in segment: {e}")))
}

fn non_empty(s: &str) -> Option<&str> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

/// The resource attributes column: one JSON text per row, serialized once
/// per resource when rows share it (packed memtable rows do).
fn resource_column<S: SpanView>(rows: &[S]) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 64);
    let mut last: Option<(*const KeyValue, usize)> = None;
    let mut text = Vec::with_capacity(1024);
    for r in rows {
        let attrs = r.resource_attributes();
        let id = (attrs.as_ptr(), attrs.len());
        if last != Some(id) {
            text.clear();
            serde_json::to_writer(&mut text, attrs).expect("row values always serialize");
            last = Some(id);
        }
        b.append_value(std::str::from_utf8(&text).expect("serde_json writes UTF-8"));
    }
    Arc::new(b.finish())
}

/// The longest trace (its rows in one segment) whose parents are stored by
/// position: a reader streaming a segment holds a trace's rows until its
/// last one to resolve them, and this bounds what it holds.
pub(crate) const MAX_POSITIONED_TRACE: usize = 1024;

/// Where each span's parent is among the rows of its trace, for `rows`
/// sorted by trace id and holding whole traces (a segment's): the parent's
/// position counted from the trace's first row, `None` for a root or a
/// parent the rows do not hold. A parent found this way takes ~4 bits in
/// the segment (the `parent_row` column: small numbers, dictionary-coded)
/// instead of its 8 random bytes in `parent_span_id` (4.4 B/span even with
/// zstd finding the siblings' repeats).
///
/// Traces of more than [`MAX_POSITIONED_TRACE`] rows keep their parents by
/// id.
pub(crate) fn parent_rows<S: SpanView>(rows: &[S]) -> Vec<Option<u32>> {
    let mut out = Vec::with_capacity(rows.len());
    let mut by_id: foldhash::HashMap<SpanId, u32> = foldhash::HashMap::default();
    for spans in rows.chunk_by(|a, b| a.trace_id() == b.trace_id()) {
        let len = spans.len();
        if len > MAX_POSITIONED_TRACE {
            out.resize(out.len() + len, None);
            continue;
        }
        // A short trace is searched in place; a long one through a map
        // (the first of spans sharing an id wins: their ids are the same).
        let long = len > 32;
        if long {
            by_id.clear();
            for (i, r) in spans.iter().enumerate().rev() {
                by_id.insert(r.span_id(), i as u32);
            }
        }
        out.extend(spans.iter().map(|r| {
            let parent = r.parent_span_id()?;
            if long {
                by_id.get(&parent).copied()
            } else {
                spans.iter().position(|s| s.span_id() == parent).map(|i| i as u32)
            }
        }));
    }
    out
}

/// A span batch: `parents` from [`parent_rows`] (for the same rows) say
/// which parents go into `parent_row` instead of `parent_span_id`.
/// Attributes are coded by `attributes` (see `attrcodes`).
pub(crate) fn spans_to_batch<S: SpanView>(
    rows: &[S],
    parents: &[Option<u32>],
    attributes: &mut AttrCoder,
) -> Result<RecordBatch> {
    let n = rows.len();
    debug_assert_eq!(parents.len(), n);
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut parent = FixedSizeBinaryBuilder::with_capacity(n, 8);
    for (r, row) in rows.iter().zip(parents) {
        trace_id.append_value(r.trace_id().0)?;
        span_id.append_value(r.span_id().0)?;
        match r.parent_span_id() {
            Some(p) if row.is_none() => parent.append_value(p.0)?,
            _ => parent.append_null(),
        }
    }
    let dropped = |r: &S| Some(r.dropped()).filter(|d| *d != [0; 3]).map(|d| json(&d));
    let [attr_key_codes, attr_keys, attr_value_bits, attr_values] = attributes.columns(rows);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent.finish()),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.start()))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.duration()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.service_name()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.name()))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.kind()))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.status_code()))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| non_empty(r.status_message())))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| non_empty(r.trace_state())))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.flags()))),
        attr_key_codes,
        attr_keys,
        attr_value_bits,
        attr_values,
        resource_column(rows),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.scope_name()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.scope_version()))),
        json_column(rows.iter().map(|r| Some(r.events()).filter(|e| !e.is_empty())), n),
        json_column(rows.iter().map(|r| Some(r.links()).filter(|l| !l.is_empty())), n),
        Arc::new(StringArray::from_iter(rows.iter().map(dropped))),
        Arc::new(UInt32Array::from_iter(parents.iter().copied())),
    ];
    Ok(RecordBatch::try_new(span_schema(), columns)?)
}

/// Typed access to a batch's columns by name.
pub(crate) struct Columns<'a>(pub &'a RecordBatch);

impl<'a> Columns<'a> {
    fn get<T: 'static>(&self, name: &str) -> Result<&'a T> {
        self.0
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or_else(|| StoreError::Corrupt(format!("segment lacks column {name} of the expected type")))
    }
    pub(crate) fn str(&self, name: &str) -> Result<&'a StringArray> {
        self.get(name)
    }
    pub(crate) fn i64(&self, name: &str) -> Result<&'a Int64Array> {
        self.get(name)
    }
    pub(crate) fn i32(&self, name: &str) -> Result<&'a Int32Array> {
        self.get(name)
    }
    pub(crate) fn u32(&self, name: &str) -> Result<&'a UInt32Array> {
        self.get(name)
    }
    pub(crate) fn u64(&self, name: &str) -> Result<&'a UInt64Array> {
        self.get(name)
    }
    pub(crate) fn f64(&self, name: &str) -> Result<&'a Float64Array> {
        self.get(name)
    }
    pub(crate) fn bool(&self, name: &str) -> Result<&'a BooleanArray> {
        self.get(name)
    }
    pub(crate) fn fixed(&self, name: &str) -> Result<&'a FixedSizeBinaryArray> {
        self.get(name)
    }
}

fn opt_str(a: &StringArray, i: usize) -> &str {
    if a.is_null(i) {
        ""
    } else {
        a.value(i)
    }
}

/// The `parent_row` of each row of a span batch (see [`parent_rows`]);
/// all `None` in segments written before the column.
pub(crate) fn parent_rows_of(batch: &RecordBatch) -> Result<Vec<Option<u32>>> {
    if batch.column_by_name(col::PARENT_ROW).is_none() {
        return Ok(vec![None; batch.num_rows()]);
    }
    Ok(Columns(batch).u32(col::PARENT_ROW)?.iter().collect())
}

/// Sets the parents that `parents` (from [`parent_rows_of`]) give by their
/// position in the trace. `rows` must hold whole traces of one segment, in
/// its row order.
///
/// # Errors
/// `Corrupt` when a position is outside its trace.
pub(crate) fn resolve_parents(rows: &mut [SpanRow], parents: &[Option<u32>]) -> Result<()> {
    let mut parents = parents.iter();
    for trace in rows.chunk_by_mut(|a, b| a.trace_id == b.trace_id) {
        let len = trace.len();
        for (i, at) in (0..len).zip(parents.by_ref()) {
            if let Some(at) = *at {
                let parent = trace
                    .get(at as usize)
                    .map(|p| p.span_id)
                    .ok_or_else(|| StoreError::Corrupt(format!("parent row {at} outside its trace of {len} spans")))?;
                trace[i].parent_span_id = Some(parent);
            }
        }
    }
    Ok(())
}

/// The rows of span batches holding whole traces of one segment, in its
/// row order, parents and all.
pub(crate) fn whole_traces(batches: &[RecordBatch], tables: &AttrTables) -> Result<Vec<SpanRow>> {
    let mut rows = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    let mut parents = Vec::with_capacity(rows.capacity());
    for batch in batches {
        rows.extend(batch_to_spans(batch, tables)?);
        parents.extend(parent_rows_of(batch)?);
    }
    resolve_parents(&mut rows, &parents)?;
    Ok(rows)
}

/// Materializes the rows of a span batch read with the full schema. Parents
/// given by position (`parent_row`) are left out: see [`resolve_parents`].
/// `tables` are the segment's attribute tables.
pub(crate) fn batch_to_spans(batch: &RecordBatch, tables: &AttrTables) -> Result<Vec<SpanRow>> {
    let c = Columns(batch);
    let (trace_id, span_id, parent) = (c.fixed(col::TRACE_ID)?, c.fixed(col::SPAN_ID)?, c.fixed(col::PARENT_SPAN_ID)?);
    let (start, duration) = (c.i64(col::START_TIME)?, c.i64(col::DURATION)?);
    let (service, name, kind) = (c.str(col::SERVICE_NAME)?, c.str(col::NAME)?, c.i32(col::KIND)?);
    let (status, status_msg, trace_state) =
        (c.i32(col::STATUS_CODE)?, c.str(col::STATUS_MESSAGE)?, c.str(col::TRACE_STATE)?);
    let (flags, res) = (c.u32(col::FLAGS)?, c.str(col::RESOURCE_ATTRIBUTES)?);
    let attributes = AttrReader::of(batch, tables)?;
    let (scope, scope_v, events, links, dropped) = (
        c.str(col::SCOPE_NAME)?,
        c.str(col::SCOPE_VERSION)?,
        c.str(col::EVENTS)?,
        c.str(col::LINKS)?,
        c.str(col::DROPPED)?,
    );
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let [da, de, dl]: [u32; 3] =
            if dropped.is_null(i) { [0; 3] } else { parse_json(dropped.value(i), "dropped counts")? };
        out.push(SpanRow {
            trace_id: TraceId::from_slice(trace_id.value(i))?,
            span_id: SpanId::from_slice(span_id.value(i))?,
            parent_span_id: if parent.is_null(i) { None } else { Some(SpanId::from_slice(parent.value(i))?) },
            trace_state: opt_str(trace_state, i).to_string(),
            flags: flags.value(i),
            service_name: service.value(i).to_string(),
            name: name.value(i).to_string(),
            kind: kind.value(i),
            start_time_unix_nano: start.value(i),
            duration_nano: duration.value(i),
            status_code: status.value(i),
            status_message: opt_str(status_msg, i).to_string(),
            attributes: attributes.row(i)?,
            resource_attributes: parse_json(res.value(i), "resource attributes")?,
            scope_name: scope.value(i).to_string(),
            scope_version: scope_v.value(i).to_string(),
            events: if events.is_null(i) { Vec::new() } else { parse_json(events.value(i), "events")? },
            links: if links.is_null(i) { Vec::new() } else { parse_json(links.value(i), "links")? },
            dropped_attributes_count: da,
            dropped_events_count: de,
            dropped_links_count: dl,
        });
    }
    Ok(out)
}

pub(crate) fn logs_to_batch(rows: &[&LogRow]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    for r in rows {
        match r.trace_id {
            Some(t) => trace_id.append_value(t.0)?,
            None => trace_id.append_null(),
        }
        match r.span_id {
            Some(s) => span_id.append_value(s.0)?,
            None => span_id.append_null(),
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.time_unix_nano))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.observed_time_unix_nano))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.service_name))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.severity_number))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.severity_text))),
        json_column(rows.iter().map(|r| Some(&r.body)), n),
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.flags))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.event_name))),
        json_column(rows.iter().map(|r| Some(&r.attributes)), n),
        json_column(rows.iter().map(|r| Some(&r.resource_attributes)), n),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.scope_name))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.scope_version))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.dropped_attributes_count))),
    ];
    Ok(RecordBatch::try_new(log_schema(), columns)?)
}

pub(crate) fn batch_to_logs(batch: &RecordBatch) -> Result<Vec<LogRow>> {
    let c = Columns(batch);
    let (time, observed, service) = (c.i64(col::TIME)?, c.i64(col::OBSERVED_TIME)?, c.str(col::SERVICE_NAME)?);
    let (sev_n, sev_t, body) = (c.i32(col::SEVERITY_NUMBER)?, c.str(col::SEVERITY_TEXT)?, c.str(col::BODY)?);
    let (trace_id, span_id, flags) = (c.fixed(col::TRACE_ID)?, c.fixed(col::SPAN_ID)?, c.u32(col::FLAGS)?);
    let (event, attrs, res) = (c.str(col::EVENT_NAME)?, c.str(col::ATTRIBUTES)?, c.str(col::RESOURCE_ATTRIBUTES)?);
    let (scope, scope_v, dropped) = (c.str(col::SCOPE_NAME)?, c.str(col::SCOPE_VERSION)?, c.u32(col::DROPPED)?);
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        out.push(LogRow {
            time_unix_nano: time.value(i),
            observed_time_unix_nano: observed.value(i),
            severity_number: sev_n.value(i),
            severity_text: sev_t.value(i).to_string(),
            body: parse_json(body.value(i), "body")?,
            service_name: service.value(i).to_string(),
            trace_id: if trace_id.is_null(i) { None } else { Some(TraceId::from_slice(trace_id.value(i))?) },
            span_id: if span_id.is_null(i) { None } else { Some(SpanId::from_slice(span_id.value(i))?) },
            flags: flags.value(i),
            event_name: event.value(i).to_string(),
            attributes: parse_json(attrs.value(i), "attributes")?,
            resource_attributes: parse_json(res.value(i), "resource attributes")?,
            scope_name: scope.value(i).to_string(),
            scope_version: scope_v.value(i).to_string(),
            dropped_attributes_count: dropped.value(i),
        });
    }
    Ok(out)
}

pub(crate) fn metrics_to_batch(rows: &[&MetricPointRow]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.metric_name))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.service_name))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.time_unix_nano))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.start_time_unix_nano))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.kind.as_i32()))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.temporality))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.is_monotonic)))),
        json_column(rows.iter().map(|r| Some(&r.attributes)), rows.len()),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.value))),
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.value_int))),
        Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.count))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.sum))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.distribution.as_ref().map(json)))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.description))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.unit))),
        json_column(rows.iter().map(|r| Some(&r.resource_attributes)), rows.len()),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.scope_name))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.flags))),
    ];
    Ok(RecordBatch::try_new(metric_schema(), columns)?)
}

/// Calls `visit` with each row of a metric batch, borrowed: attribute JSON is
/// parsed once per distinct text, and nothing else is allocated per row
/// (but a histogram's distribution).
pub(crate) fn visit_metrics(batch: &RecordBatch, visit: &mut dyn FnMut(&MetricPointRef<'_>)) -> Result<()> {
    // Rows of this batch with the same two attribute texts share a label source.
    static BATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let batch_id = BATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 40;
    let c = Columns(batch);
    let (name, service, time, unit) =
        (c.str(col::METRIC_NAME)?, c.str(col::SERVICE_NAME)?, c.i64(col::TIME)?, c.str(col::UNIT)?);
    let (kind, temporality, mono) = (c.i32(col::METRIC_KIND)?, c.i32(col::TEMPORALITY)?, c.bool(col::MONOTONIC)?);
    let (attrs, res, value, value_int) =
        (c.str(col::ATTRIBUTES)?, c.str(col::RESOURCE_ATTRIBUTES)?, c.f64(col::VALUE)?, c.i64(col::VALUE_INT)?);
    let (count, sum, dist) = (c.u64(col::COUNT)?, c.f64(col::SUM)?, c.str(col::DISTRIBUTION)?);
    let mut index: foldhash::HashMap<&str, usize> = Default::default();
    let mut parsed: Vec<Vec<KeyValue>> = Vec::new();
    // Each distinct attribute text parsed once; rows point at it by index.
    fn slot<'a>(
        index: &mut foldhash::HashMap<&'a str, usize>,
        parsed: &mut Vec<Vec<KeyValue>>,
        text: &'a str,
        what: &str,
    ) -> Result<usize> {
        if let Some(&k) = index.get(text) {
            return Ok(k);
        }
        parsed.push(parse_json(text, what)?);
        index.insert(text, parsed.len() - 1);
        Ok(parsed.len() - 1)
    }
    for i in 0..batch.num_rows() {
        let ai = slot(&mut index, &mut parsed, attrs.value(i), "attributes")?;
        let ri = slot(&mut index, &mut parsed, res.value(i), "resource attributes")?;
        let kind_i = kind.value(i);
        let distribution: Option<Distribution> =
            if dist.is_null(i) { None } else { Some(parse_json(dist.value(i), "distribution")?) };
        visit(&MetricPointRef {
            metric_name: name.value(i),
            unit: unit.value(i),
            kind: MetricKind::from_i32(kind_i)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown metric kind {kind_i}")))?,
            temporality: temporality.value(i),
            is_monotonic: mono.value(i),
            service_name: service.value(i),
            time_unix_nano: time.value(i),
            attributes: &parsed[ai],
            resource_attributes: &parsed[ri],
            value: (!value.is_null(i)).then(|| value.value(i)),
            value_int: (!value_int.is_null(i)).then(|| value_int.value(i)),
            count: (!count.is_null(i)).then(|| count.value(i)),
            sum: (!sum.is_null(i)).then(|| sum.value(i)),
            distribution: distribution.as_ref(),
            label_source: Some(batch_id | (ai as u64) << 20 | ri as u64),
        });
    }
    Ok(())
}

pub(crate) fn batch_to_metrics(batch: &RecordBatch) -> Result<Vec<MetricPointRow>> {
    let c = Columns(batch);
    let (name, service, time, start) =
        (c.str(col::METRIC_NAME)?, c.str(col::SERVICE_NAME)?, c.i64(col::TIME)?, c.i64(col::START_TIME)?);
    let (kind, temporality, mono) = (c.i32(col::METRIC_KIND)?, c.i32(col::TEMPORALITY)?, c.bool(col::MONOTONIC)?);
    let (attrs, value, value_int) = (c.str(col::ATTRIBUTES)?, c.f64(col::VALUE)?, c.i64(col::VALUE_INT)?);
    let (count, sum, dist) = (c.u64(col::COUNT)?, c.f64(col::SUM)?, c.str(col::DISTRIBUTION)?);
    let (desc, unit, res, scope, flags) = (
        c.str(col::DESCRIPTION)?,
        c.str(col::UNIT)?,
        c.str(col::RESOURCE_ATTRIBUTES)?,
        c.str(col::SCOPE_NAME)?,
        c.u32(col::FLAGS)?,
    );
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        out.push(MetricPointRow {
            metric_name: name.value(i).to_string(),
            description: desc.value(i).to_string(),
            unit: unit.value(i).to_string(),
            kind: MetricKind::from_i32(kind.value(i))
                .ok_or_else(|| StoreError::Corrupt(format!("unknown metric kind {}", kind.value(i))))?,
            temporality: temporality.value(i),
            is_monotonic: mono.value(i),
            service_name: service.value(i).to_string(),
            time_unix_nano: time.value(i),
            start_time_unix_nano: start.value(i),
            attributes: parse_json(attrs.value(i), "attributes")?,
            resource_attributes: parse_json(res.value(i), "resource attributes")?,
            scope_name: scope.value(i).to_string(),
            value: (!value.is_null(i)).then(|| value.value(i)),
            value_int: (!value_int.is_null(i)).then(|| value_int.value(i)),
            count: (!count.is_null(i)).then(|| count.value(i)),
            sum: (!sum.is_null(i)).then(|| sum.value(i)),
            distribution: if dist.is_null(i) { None } else { Some(parse_json(dist.value(i), "distribution")?) },
            flags: flags.value(i),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_attribute_text_round_trips_every_type() {
        let values = [
            AttrValue::Str("GET /x".into()),
            AttrValue::Str(String::new()),
            AttrValue::Int(i64::MIN),
            AttrValue::Int(9_007_199_254_740_993),
            AttrValue::Double(0.1 + 0.2),
            AttrValue::Double(f64::INFINITY),
            AttrValue::Double(-0.0),
            AttrValue::Bool(true),
            AttrValue::Bool(false),
            AttrValue::Bytes("00ff".into()),
            AttrValue::Array(vec![AttrValue::Int(1), AttrValue::Str("a".into())]),
            AttrValue::Map(vec![KeyValue::new("k", AttrValue::Bool(true))]),
            AttrValue::Empty,
        ];
        for v in values {
            let mut s = String::new();
            tagged_text(&v, &mut s);
            assert_eq!(parse_tagged(&s).unwrap(), v, "{s}");
        }
        let mut s = String::new();
        tagged_text(&AttrValue::Double(f64::NAN), &mut s);
        assert!(matches!(parse_tagged(&s).unwrap(), AttrValue::Double(d) if d.is_nan()));
        assert!(parse_tagged("").is_err());
        assert!(parse_tagged("x1").is_err());
        assert!(parse_tagged("inope").is_err());
    }
}
