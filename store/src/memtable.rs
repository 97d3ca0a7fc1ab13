//! The in-memory tail of the store: rows acknowledged since the last flush.
//!
//! Spans are kept packed ([`PackedSpans`]), logs and metric points as plain
//! structs (converted to Arrow only at flush), with a trace-id index so that
//! trace-by-id over the tail costs a hash lookup. The writer thread is the
//! only writer; queries take the read lock briefly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use tantivy::query::Query;

use crate::error::Result;
use crate::ids::TraceId;
use crate::logsearch;
use crate::model::{LogRow, MetricDescriptor, MetricPointRow, SpanRow};
use crate::packed::{PackedRef, PackedSpans};
use crate::query::Operation;
use crate::textindex::{IndexKind, TextIndex, TextIndexWriter};
use crate::wire::TraceBatch;

/// service -> span name -> bit set of span kinds seen.
type Operations = foldhash::HashMap<String, foldhash::HashMap<String, u8>>;

#[derive(Default)]
pub(crate) struct Memtable {
    pub spans: PackedSpans,
    pub logs: Vec<LogRow>,
    pub metrics: Vec<MetricPointRow>,
    /// Distinct metric streams in `metrics`.
    pub metric_descriptors: Vec<MetricDescriptor>,
    /// Trace ids come from clients: hashed with a per-map seed.
    by_trace: HashMap<TraceId, Vec<u32>, foldhash::fast::RandomState>,
    operations: Operations,
    /// Encoded size of what was appended (request bytes).
    pub approx_bytes: usize,
    /// Memory held by logs and metric points, estimated as their encoded size.
    other_bytes: usize,
    pub first_insert: Option<Instant>,
    /// The logs' search index, built lazily by searches (see [`LiveLogIndex`]).
    log_index: Mutex<Option<LiveLogIndex>>,
}

/// An in-RAM index over the memtable's logs, caught up by each search with the
/// records that arrived since the last one. Ingest never pays for it; a search
/// indexes only what is new, so the index work per record is done once.
struct LiveLogIndex {
    writer: TextIndexWriter,
    index: TextIndex,
    indexed: usize,
}

/// Records that `service` has an operation `name` of span kind `kind`,
/// copying the names only when they are new.
fn note_operation(operations: &mut Operations, service: &str, name: &str, kind: i32) {
    let bit = 1u8 << kind.clamp(0, 7);
    match operations.get_mut(service) {
        Some(names) => match names.get_mut(name) {
            Some(kinds) => *kinds |= bit,
            None => {
                names.insert(name.to_owned(), bit);
            }
        },
        None => {
            operations.entry(service.to_owned()).or_default().insert(name.to_owned(), bit);
        }
    }
}

impl Memtable {
    pub(crate) fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.logs.is_empty() && self.metrics.is_empty()
    }

    pub(crate) fn rows(&self) -> usize {
        self.spans.len() + self.logs.len() + self.metrics.len()
    }

    fn touch(&mut self, bytes: usize) {
        self.approx_bytes += bytes;
        self.first_insert.get_or_insert_with(Instant::now);
    }

    /// Memory held by the rows and their indexes, estimated: what
    /// `--max-memtable-bytes` bounds.
    pub(crate) fn held_bytes(&self) -> usize {
        // A trace-index entry: the id, a vector and its first few positions.
        const PER_TRACE: usize = 16 + 24 + 16 + 16;
        self.spans.held_bytes() + self.by_trace.capacity() * PER_TRACE + self.other_bytes
    }

    pub(crate) fn insert_spans(&mut self, rows: Vec<SpanRow>, bytes: usize) {
        self.touch(bytes);
        for row in rows {
            let at = self.spans.len() as u32;
            self.by_trace.entry(row.trace_id).or_default().push(at);
            note_operation(&mut self.operations, &row.service_name, &row.name, row.kind);
            self.spans.push(row);
        }
    }

    /// [`Memtable::insert_spans`] for spans read from a request's protobuf bytes.
    pub(crate) fn insert_batch(&mut self, batch: TraceBatch, bytes: usize) {
        self.touch(bytes);
        let first = self.spans.len() as u32;
        for (i, span) in batch.spans.iter().enumerate() {
            self.by_trace.entry(span.trace_id).or_default().push(first + i as u32);
            let service = &batch.resources[batch.scopes[span.scope as usize].resource as usize].service;
            note_operation(&mut self.operations, service, span.name.of(&batch.text), span.kind);
        }
        self.spans.push_batch(batch);
    }

    pub(crate) fn insert_logs(&mut self, rows: Vec<LogRow>, bytes: usize) {
        self.touch(bytes);
        self.other_bytes += bytes;
        self.logs.extend(rows);
    }

    pub(crate) fn insert_metrics(&mut self, rows: Vec<MetricPointRow>, bytes: usize) {
        self.touch(bytes);
        self.other_bytes += bytes;
        for r in &rows {
            // Points arrive grouped by metric: compare with the last one first.
            let known = self.metric_descriptors.last().is_some_and(|d| d.describes(r))
                || self.metric_descriptors.iter().any(|d| d.describes(r));
            if !known {
                self.metric_descriptors.push(MetricDescriptor::of(r));
            }
        }
        self.metrics.extend(rows);
    }

    /// The `limit` newest logs matching `query` (compiled by
    /// [`logsearch::compile`]), as (time, position in `logs`), newest first.
    pub(crate) fn newest_logs(&self, query: &dyn Query, limit: usize) -> Result<Vec<(i64, u32)>> {
        if self.logs.is_empty() {
            return Ok(Vec::new());
        }
        let mut guard = match self.log_index.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A search panicked while holding the index (a bug in it or in
                // tantivy), maybe half way through catching it up: rebuild it
                // from the rows rather than fail every later search of this
                // memtable until the next flush.
                let mut guard = poisoned.into_inner();
                *guard = None;
                self.log_index.clear_poison();
                guard
            }
        };
        let live = match guard.as_mut() {
            Some(live) => live,
            None => {
                let (writer, index) = TextIndexWriter::create_in_ram(IndexKind::Logs)?;
                guard.insert(LiveLogIndex { writer, index: TextIndex::from_index(index)?, indexed: 0 })
            }
        };
        if live.indexed < self.logs.len() {
            for (i, row) in self.logs.iter().enumerate().skip(live.indexed) {
                live.writer.add(i as u64, |doc| logsearch::fill_doc(doc, row))?;
            }
            live.writer.commit()?;
            live.index.reload()?;
            live.indexed = self.logs.len();
        }
        live.index.newest_rows(query, limit)
    }

    /// Spans of one trace held here.
    pub(crate) fn trace(&self, id: &TraceId) -> impl Iterator<Item = PackedRef<'_>> {
        self.by_trace.get(id).into_iter().flatten().map(|i| self.spans.get(*i))
    }

    /// (service, operation) pairs seen here.
    pub(crate) fn operations(&self) -> impl Iterator<Item = (&str, Operation)> + '_ {
        self.operations.iter().flat_map(|(service, names)| {
            names.iter().flat_map(move |(name, kinds)| {
                (0..8)
                    .filter(move |k| kinds & (1 << k) != 0)
                    .map(move |k| (service.as_str(), Operation { name: name.clone(), span_kind: k }))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logsearch::{compile, LogQuery};
    use crate::model::AttrValue;
    use crate::textindex::schema;

    fn log(time: i64, body: &str) -> LogRow {
        LogRow {
            time_unix_nano: time,
            observed_time_unix_nano: time,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: AttrValue::Str(body.into()),
            service_name: "svc".into(),
            trace_id: None,
            span_id: None,
            flags: 0,
            event_name: String::new(),
            attributes: Vec::new(),
            resource_attributes: Vec::new(),
            scope_name: String::new(),
            scope_version: String::new(),
            dropped_attributes_count: 0,
        }
    }

    fn search(m: &Memtable, text: &str) -> Vec<(i64, u32)> {
        let q = LogQuery { text: Some(text.into()), ..Default::default() };
        m.newest_logs(&*compile(&q, &schema(IndexKind::Logs).1).unwrap(), 10).unwrap()
    }

    /// Found by the `log_query` fuzz target: a search that panicked while it
    /// held the live log index (tantivy 0.27 has a debug assertion that fires
    /// on `q=-"payment cart"`) poisoned its mutex, and every later log search
    /// of the memtable then panicked too, until the next flush.
    #[test]
    fn a_search_that_panicked_does_not_break_later_searches() {
        let mut m = Memtable::default();
        m.insert_logs(vec![log(1, "payment failed"), log(2, "cache miss")], 100);
        assert_eq!(search(&m, "payment"), vec![(1, 0)]);
        let poisoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = m.log_index.lock().unwrap();
            panic!("a search panics while it holds the index");
        }));
        assert!(poisoned.is_err() && m.log_index.is_poisoned());
        m.insert_logs(vec![log(3, "payment retried")], 100);
        assert_eq!(search(&m, "payment"), vec![(3, 2), (1, 0)]);
        assert!(!m.log_index.is_poisoned());
        assert_eq!(search(&m, "cache"), vec![(2, 1)]);
    }
}
