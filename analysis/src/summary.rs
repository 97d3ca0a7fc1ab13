//! One line per trace, for trace lists and experiment exemplars.

use std::collections::BTreeSet;

use seismo_api::jaeger::Trace;

use crate::faults::is_fault_span;
use crate::tags::{end_us, is_error, service};
use crate::tree::SpanTree;

/// What a trace list shows about one trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceOverview {
    /// The trace id.
    pub trace_id: String,
    /// The root's service (the earliest root when the trace has several).
    pub root_service: String,
    /// The root's operation.
    pub root_operation: String,
    /// Earliest span start, µs since the epoch.
    pub start_us: u64,
    /// Latest span end minus earliest start, µs.
    pub duration_us: u64,
    /// Number of spans.
    pub span_count: usize,
    /// Spans marked as errors (fault spans included).
    pub error_count: usize,
    /// Chaos fault spans.
    pub fault_count: usize,
    /// Every service with a span in the trace, sorted.
    pub services: BTreeSet<String>,
}

/// Summarizes a trace.
pub fn summarize(trace: &Trace, tree: &SpanTree) -> TraceOverview {
    let spans = &trace.spans;
    let root = tree.roots().first().map(|&r| &spans[r]);
    let start_us = spans.iter().map(|s| s.start_time).min().unwrap_or(0);
    let end = spans.iter().map(end_us).max().unwrap_or(0);
    TraceOverview {
        trace_id: trace.trace_id.clone(),
        root_service: root.map(|r| service(trace, r).to_string()).unwrap_or_default(),
        root_operation: root.map(|r| r.operation_name.clone()).unwrap_or_default(),
        start_us,
        duration_us: end.saturating_sub(start_us),
        span_count: spans.len(),
        error_count: spans.iter().filter(|s| is_error(s)).count(),
        fault_count: spans.iter().filter(|s| is_fault_span(trace, s)).count(),
        services: spans.iter().map(|s| service(trace, s).to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use seismo_api::jaeger::KeyValue;

    use super::*;
    use crate::faults::{CHAOS_SERVICE, TOXIC_TYPE};
    use crate::fixture::{span, tagged, trace};

    #[test]
    fn counts_errors_faults_and_services_over_the_whole_window() {
        let t = trace(vec![
            span("r", None, "front", "GET /", 100, 50),
            tagged(span("a", Some("r"), "back", "GET /x", 120, 60), vec![KeyValue::bool("error", true)]),
            tagged(
                span("f", Some("a"), CHAOS_SERVICE, "chaos latency", 121, 5),
                vec![KeyValue::string(TOXIC_TYPE, "latency")],
            ),
        ]);
        let o = summarize(&t, &SpanTree::new(&t));
        assert_eq!((o.root_service.as_str(), o.root_operation.as_str()), ("front", "GET /"));
        assert_eq!((o.start_us, o.duration_us), (100, 80));
        assert_eq!((o.span_count, o.error_count, o.fault_count), (3, 1, 1));
        assert_eq!(o.services.into_iter().collect::<Vec<_>>(), vec!["back", "front", CHAOS_SERVICE]);
    }
}
