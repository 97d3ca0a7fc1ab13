//! Fault spans as the chaos screen lists them: one [`FaultEvent`] per span
//! the agent exported (service `seismo-chaos`), with its `chaos.*`
//! attributes read out and the victim (the parent span's service).

use seismo_client::api::jaeger::{RefType, Span, Trace};

/// The service the chaos agent's fault spans carry.
pub const CHAOS_SERVICE: &str = "seismo-chaos";

/// One injected fault, as a fault span recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultEvent {
    /// The victim request's trace.
    pub trace_id: String,
    /// The fault span.
    pub span_id: String,
    /// Start, µs since the epoch.
    pub start_us: u64,
    /// How long the fault span lasted, µs.
    pub duration_us: u64,
    /// The toxic type (`latency`, `http_abort`, ...), or the process action.
    pub kind: String,
    /// The proxy (`chaos.proxy`), `""` for a process fault.
    pub proxy: String,
    /// The toxic's name (`chaos.toxic.name`).
    pub toxic: String,
    /// The experiment run (`chaos.experiment.id`), `""` when none.
    pub experiment: String,
    /// The service whose span the fault hit (the parent's), `""` when unknown.
    pub victim: String,
}

/// The service of `span` in `trace`.
pub fn service_of<'a>(trace: &'a Trace, span: &'a Span) -> &'a str {
    span.process.as_ref().or_else(|| trace.processes.get(&span.process_id)).map_or("", |p| p.service_name.as_str())
}

/// A tag's value as text.
pub fn tag(span: &Span, key: &str) -> Option<String> {
    span.tags.iter().find(|t| t.key == key).map(|t| t.value_text())
}

/// The fault spans of `trace`, in trace order.
pub fn fault_events(trace: &Trace) -> Vec<FaultEvent> {
    trace
        .spans
        .iter()
        .filter(|s| service_of(trace, s) == CHAOS_SERVICE)
        .map(|s| {
            let parent = s
                .references
                .iter()
                .find(|r| r.ref_type == RefType::ChildOf)
                .map(|r| r.span_id.as_str())
                .or(s.parent_span_id.as_deref());
            let victim = parent
                .and_then(|p| trace.spans.iter().find(|c| c.span_id == p))
                .map_or(String::new(), |p| service_of(trace, p).to_string());
            FaultEvent {
                trace_id: s.trace_id.clone(),
                span_id: s.span_id.clone(),
                start_us: s.start_time,
                duration_us: s.duration,
                kind: tag(s, "chaos.toxic.type")
                    .or_else(|| tag(s, "chaos.process.action"))
                    .unwrap_or_else(|| s.operation_name.trim_start_matches("chaos ").to_string()),
                proxy: tag(s, "chaos.proxy").unwrap_or_default(),
                toxic: tag(s, "chaos.toxic.name").unwrap_or_default(),
                experiment: tag(s, "chaos.experiment.id").unwrap_or_default(),
                victim,
            }
        })
        .collect()
}
