//! The in-memory tail of the store: rows acknowledged since the last flush.
//!
//! Rows are kept as plain structs (converted to Arrow only at flush), with a
//! trace-id index so that trace-by-id over the tail costs a hash lookup. The
//! writer thread is the only writer; queries take the read lock briefly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use tantivy::query::Query;

use crate::error::Result;
use crate::ids::TraceId;
use crate::logsearch;
use crate::model::{LogRow, MetricDescriptor, MetricPointRow, SpanRow};
use crate::query::Operation;
use crate::textindex::{IndexKind, TextIndex, TextIndexWriter};

#[derive(Default)]
pub(crate) struct Memtable {
    pub spans: Vec<SpanRow>,
    pub logs: Vec<LogRow>,
    pub metrics: Vec<MetricPointRow>,
    /// Distinct metric streams in `metrics`.
    pub metric_descriptors: Vec<MetricDescriptor>,
    by_trace: HashMap<TraceId, Vec<u32>>,
    /// service -> span name -> bit set of span kinds seen.
    operations: HashMap<String, HashMap<String, u8>>,
    /// Encoded size of what was appended: a cheap proxy for memory held.
    pub approx_bytes: usize,
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

    pub(crate) fn insert_spans(&mut self, rows: Vec<SpanRow>, bytes: usize) {
        self.touch(bytes);
        for row in rows {
            let idx = self.spans.len() as u32;
            self.by_trace.entry(row.trace_id).or_default().push(idx);
            let bit = 1u8 << row.kind.clamp(0, 7);
            match self.operations.get_mut(row.service_name.as_str()) {
                Some(names) => match names.get_mut(row.name.as_str()) {
                    Some(kinds) => *kinds |= bit,
                    None => {
                        names.insert(row.name.clone(), bit);
                    }
                },
                None => {
                    self.operations.insert(row.service_name.clone(), HashMap::from([(row.name.clone(), bit)]));
                }
            }
            self.spans.push(row);
        }
    }

    pub(crate) fn insert_logs(&mut self, rows: Vec<LogRow>, bytes: usize) {
        self.touch(bytes);
        self.logs.extend(rows);
    }

    pub(crate) fn insert_metrics(&mut self, rows: Vec<MetricPointRow>, bytes: usize) {
        self.touch(bytes);
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
        let mut guard = self.log_index.lock().unwrap();
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
    pub(crate) fn trace(&self, id: &TraceId) -> impl Iterator<Item = &SpanRow> {
        self.by_trace.get(id).into_iter().flatten().map(|i| &self.spans[*i as usize])
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
