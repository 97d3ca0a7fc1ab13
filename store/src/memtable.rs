//! The in-memory tail of the store: rows acknowledged since the last flush.
//!
//! Rows are kept as plain structs (converted to Arrow only at flush), with a
//! trace-id index so that trace-by-id over the tail costs a hash lookup. The
//! writer thread is the only writer; queries take the read lock briefly.

use std::collections::HashMap;
use std::time::Instant;

use crate::ids::TraceId;
use crate::model::{LogRow, MetricPointRow, SpanRow};
use crate::query::Operation;

#[derive(Default)]
pub struct Memtable {
    pub spans: Vec<SpanRow>,
    pub logs: Vec<LogRow>,
    pub metrics: Vec<MetricPointRow>,
    by_trace: HashMap<TraceId, Vec<u32>>,
    /// service -> span name -> bit set of span kinds seen.
    operations: HashMap<String, HashMap<String, u8>>,
    /// Encoded size of what was appended: a cheap proxy for memory held.
    pub approx_bytes: usize,
    pub first_insert: Option<Instant>,
}

impl Memtable {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.logs.is_empty() && self.metrics.is_empty()
    }

    pub fn rows(&self) -> usize {
        self.spans.len() + self.logs.len() + self.metrics.len()
    }

    fn touch(&mut self, bytes: usize) {
        self.approx_bytes += bytes;
        self.first_insert.get_or_insert_with(Instant::now);
    }

    pub fn insert_spans(&mut self, rows: Vec<SpanRow>, bytes: usize) {
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

    pub fn insert_logs(&mut self, rows: Vec<LogRow>, bytes: usize) {
        self.touch(bytes);
        self.logs.extend(rows);
    }

    pub fn insert_metrics(&mut self, rows: Vec<MetricPointRow>, bytes: usize) {
        self.touch(bytes);
        self.metrics.extend(rows);
    }

    /// Spans of one trace held here.
    pub fn trace(&self, id: &TraceId) -> impl Iterator<Item = &SpanRow> {
        self.by_trace.get(id).into_iter().flatten().map(|i| &self.spans[*i as usize])
    }

    /// (service, operation) pairs seen here.
    pub fn operations(&self) -> impl Iterator<Item = (&str, Operation)> + '_ {
        self.operations.iter().flat_map(|(service, names)| {
            names.iter().flat_map(move |(name, kinds)| {
                (0..8)
                    .filter(move |k| kinds & (1 << k) != 0)
                    .map(move |k| (service.as_str(), Operation { name: name.clone(), span_kind: k }))
            })
        })
    }
}
