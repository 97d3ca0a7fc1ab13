//! Hand-built traces for the unit tests: times in microseconds from 0.

use std::collections::BTreeMap;

use seismo_api::jaeger::{KeyValue, Process, RefType, Reference, Span, Trace};

pub(crate) const TRACE: &str = "00000000000000000000000000000001";

/// A span of `service` with the given parent, start and duration (µs).
pub(crate) fn span(id: &str, parent: Option<&str>, service: &str, name: &str, start: u64, duration: u64) -> Span {
    Span {
        trace_id: TRACE.into(),
        span_id: id.into(),
        parent_span_id: None,
        flags: 1,
        operation_name: name.into(),
        references: parent
            .map(|p| vec![Reference { ref_type: RefType::ChildOf, trace_id: TRACE.into(), span_id: p.into() }])
            .unwrap_or_default(),
        start_time: start,
        duration,
        tags: Vec::new(),
        logs: Vec::new(),
        process_id: String::new(),
        process: Some(Process { service_name: service.into(), tags: Vec::new() }),
        warnings: None,
    }
}

/// The span with extra tags.
pub(crate) fn tagged(mut s: Span, tags: Vec<KeyValue>) -> Span {
    s.tags.extend(tags);
    s
}

/// A trace of these spans (processes embedded in the spans).
pub(crate) fn trace(spans: Vec<Span>) -> Trace {
    Trace { trace_id: TRACE.into(), spans, processes: BTreeMap::new(), warnings: None }
}
