//! Fault spans as the Chaos screen lists them, across many traces: one
//! [`FaultEvent`] per fault span, read from `seismo-analysis`'s fault
//! impacts (the same answer the Trace screen's attribution panel gives).

use seismo_analysis::{critical_path, fault_impacts, SpanTree};
use seismo_client::api::jaeger::Trace;

pub use seismo_analysis::faults::CHAOS_SERVICE;

/// One injected fault, as its fault span and the trace around it tell it.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultEvent {
    /// The victim request's trace.
    pub trace_id: String,
    /// The fault span.
    pub span_id: String,
    /// Start, µs since the epoch.
    pub start_us: u64,
    /// How long the fault held the request, µs.
    pub duration_us: u64,
    /// What of that delayed the request's end (its time on the critical path), µs.
    pub critical_us: u64,
    /// Whether the fault failed the request.
    pub error: bool,
    /// The toxic type (`latency`, `http_abort`, ...), or `process <action>`.
    pub kind: String,
    /// The proxy, `""` for a process fault.
    pub proxy: String,
    /// The toxic's name.
    pub toxic: String,
    /// The experiment run, `""` when none.
    pub experiment: String,
    /// The service whose request the fault hit, `""` when unknown.
    pub victim: String,
}

/// The fault spans of `trace`, in start order.
pub fn fault_events(trace: &Trace) -> Vec<FaultEvent> {
    let tree = SpanTree::new(trace);
    let path = critical_path(trace, &tree);
    fault_impacts(trace, &tree, &path)
        .into_iter()
        .map(|f| {
            let span = &trace.spans[f.span];
            FaultEvent {
                trace_id: trace.trace_id.clone(),
                span_id: span.span_id.clone(),
                start_us: span.start_time,
                duration_us: f.added_us,
                critical_us: f.critical_us,
                error: f.error,
                kind: f.kind,
                proxy: f.proxy.unwrap_or_default(),
                toxic: f.toxic.unwrap_or_default(),
                experiment: f.experiment.unwrap_or_default(),
                victim: f.victim_service,
            }
        })
        .collect()
}
