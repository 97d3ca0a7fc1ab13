//! Chaos fault spans and what each one cost the request it hit.
//!
//! The agent exports every fault it applies as a span `chaos <type>` of
//! service `seismo-chaos`, a child of the span whose request crossed the proxy
//! (the caller's client span, from the request's `traceparent`), with
//! `chaos.*` attributes naming the proxy, the toxic and the experiment run.
//! The fault span covers the time the fault held the request, so its duration
//! is the time it added to that hop, and its share of the critical path is
//! the time it added to the whole request.

use seismo_api::jaeger::{Span, Trace};

use crate::critical::CriticalPath;
use crate::tags::{is_error, service, tag, tag_text};
use crate::tree::SpanTree;

/// The service name the chaos agent exports its fault spans under.
pub const CHAOS_SERVICE: &str = "seismo-chaos";
/// Attribute naming the experiment run that added the toxic.
pub const EXPERIMENT_ID: &str = "chaos.experiment.id";
/// Attribute naming the proxy the fault was applied on.
pub const PROXY: &str = "chaos.proxy";
/// Attribute naming the toxic.
pub const TOXIC_NAME: &str = "chaos.toxic.name";
/// Attribute naming the toxic's type (`latency`, `http_abort`, ...).
pub const TOXIC_TYPE: &str = "chaos.toxic.type";
/// Attribute of a process fault (`kill`, `pause`, `resume`).
pub const PROCESS_ACTION: &str = "chaos.process.action";

/// Whether the span is a fault the chaos agent applied.
pub fn is_fault_span(trace: &Trace, span: &Span) -> bool {
    tag(span, TOXIC_TYPE).is_some()
        || tag(span, PROCESS_ACTION).is_some()
        || (service(trace, span) == CHAOS_SERVICE && span.operation_name.starts_with("chaos "))
}

/// What one fault span did to its trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultImpact {
    /// The fault span (index into `Trace::spans`).
    pub span: usize,
    /// The toxic's type (`latency`, `http_abort`, ...) or `process <action>`.
    pub kind: String,
    /// The toxic's name, for toxic faults.
    pub toxic: Option<String>,
    /// The proxy the fault was applied on.
    pub proxy: Option<String>,
    /// The experiment run that added the toxic, when one did.
    pub experiment: Option<String>,
    /// The span whose request the fault hit (the fault span's parent).
    pub victim: Option<usize>,
    /// The victim's service (`""` when the fault span has no parent in the trace).
    pub victim_service: String,
    /// The victim's operation.
    pub victim_operation: String,
    /// The hop the faulted request was on its way to: the first sibling that
    /// started at or after the fault began (the callee's server span when the
    /// proxy sat in front of it), else the last one that started before.
    pub target: Option<usize>,
    /// The target's service (`""` when there is no target).
    pub target_service: String,
    /// Microseconds the fault held the request: the fault span's duration.
    pub added_us: u64,
    /// Microseconds of the fault on the trace's critical path: what it added
    /// to the request's end-to-end time.
    pub critical_us: u64,
    /// Whether the fault failed the request (an abort, a reset, a timeout).
    pub error: bool,
    /// The fault span's status message, when it set one.
    pub message: Option<String>,
}

impl FaultImpact {
    /// Whether any of the fault's time delayed the end of the trace.
    pub fn on_critical_path(&self) -> bool {
        self.critical_us > 0
    }
}

/// Every fault span of the trace with its impact, in start order.
pub fn fault_impacts(trace: &Trace, tree: &SpanTree, path: &CriticalPath) -> Vec<FaultImpact> {
    let spans = &trace.spans;
    let mut faults: Vec<usize> = (0..spans.len()).filter(|&i| is_fault_span(trace, &spans[i])).collect();
    faults.sort_by_key(|&i| (spans[i].start_time, i));
    faults
        .into_iter()
        .map(|i| {
            let span = &spans[i];
            let victim = tree.parent(i);
            let target = victim.and_then(|v| target_of(trace, tree, v, i));
            let kind = tag_text(span, TOXIC_TYPE)
                .or_else(|| tag_text(span, PROCESS_ACTION).map(|a| format!("process {a}")))
                .unwrap_or_else(|| span.operation_name.trim_start_matches("chaos ").to_string());
            FaultImpact {
                span: i,
                kind,
                toxic: tag_text(span, TOXIC_NAME),
                proxy: tag_text(span, PROXY),
                experiment: tag_text(span, EXPERIMENT_ID),
                victim,
                victim_service: victim.map(|v| service(trace, &spans[v]).to_string()).unwrap_or_default(),
                victim_operation: victim.map(|v| spans[v].operation_name.clone()).unwrap_or_default(),
                target,
                target_service: target.map(|t| service(trace, &spans[t]).to_string()).unwrap_or_default(),
                added_us: span.duration,
                critical_us: path.time_on(i),
                error: is_error(span),
                message: tag_text(span, "otel.status_description"),
            }
        })
        .collect()
}

/// Microseconds the trace's faults added to its end-to-end time.
pub fn critical_fault_us(impacts: &[FaultImpact]) -> u64 {
    impacts.iter().map(|f| f.critical_us).sum()
}

fn target_of(trace: &Trace, tree: &SpanTree, victim: usize, fault: usize) -> Option<usize> {
    let spans = &trace.spans;
    let start = spans[fault].start_time;
    let siblings = || tree.children(victim).iter().copied().filter(|&s| s != fault && !is_fault_span(trace, &spans[s]));
    // Children are in start order: the first at or after the fault, else the last before it.
    siblings().find(|&s| spans[s].start_time >= start).or_else(|| siblings().rfind(|&s| spans[s].start_time < start))
}

#[cfg(test)]
mod tests {
    use seismo_api::jaeger::KeyValue;

    use super::*;
    use crate::critical::critical_path;
    use crate::fixture::{span, tagged, trace};

    fn latency_fault(id: &str, parent: &str, start: u64, duration: u64) -> Span {
        tagged(
            span(id, Some(parent), CHAOS_SERVICE, "chaos latency", start, duration),
            vec![
                KeyValue::string(PROXY, "payments"),
                KeyValue::string(TOXIC_NAME, "slow"),
                KeyValue::string(TOXIC_TYPE, "latency"),
                KeyValue::int64("chaos.toxic.latency", 400),
                KeyValue::string(EXPERIMENT_ID, "run-1"),
            ],
        )
    }

    fn impacts(t: &Trace) -> Vec<FaultImpact> {
        let tree = SpanTree::new(t);
        let path = critical_path(t, &tree);
        fault_impacts(t, &tree, &path)
    }

    #[test]
    fn a_latency_fault_before_the_callee_is_charged_to_the_request() {
        // checkout's client span waits 400 for the fault, then 100 for payments.
        let t = trace(vec![
            span("r", None, "checkout", "POST /checkout", 0, 520),
            span("c", Some("r"), "checkout", "POST /pay", 10, 505),
            latency_fault("f", "c", 12, 400),
            span("s", Some("c"), "payments", "POST /pay", 412, 100),
        ]);
        let got = impacts(&t);
        assert_eq!(got.len(), 1);
        let f = &got[0];
        assert_eq!(
            (f.span, f.kind.as_str(), f.toxic.as_deref(), f.proxy.as_deref()),
            (2, "latency", Some("slow"), Some("payments"))
        );
        assert_eq!(f.experiment.as_deref(), Some("run-1"));
        assert_eq!(
            (f.victim, f.victim_service.as_str(), f.victim_operation.as_str()),
            (Some(1), "checkout", "POST /pay")
        );
        assert_eq!((f.target, f.target_service.as_str()), (Some(3), "payments"));
        assert_eq!((f.added_us, f.critical_us), (400, 400));
        assert!(f.on_critical_path() && !f.error);
        assert_eq!(critical_fault_us(&got), 400);
    }

    #[test]
    fn a_fault_on_a_call_the_request_did_not_wait_for_is_off_the_path() {
        // Two parallel calls; the fault delays the short one, which still
        // ends before the long one: it cost the request nothing.
        let t = trace(vec![
            span("r", None, "front", "GET /", 0, 1000),
            span("a", Some("r"), "front", "GET /slow", 10, 950),
            span("b", Some("r"), "front", "GET /cache", 20, 300),
            latency_fault("f", "b", 21, 200),
            span("bs", Some("b"), "cache", "GET", 221, 90),
        ]);
        let f = &impacts(&t)[0];
        assert_eq!((f.victim_service.as_str(), f.target_service.as_str()), ("front", "cache"));
        assert_eq!(f.added_us, 200);
        assert!(!f.on_critical_path());
    }

    #[test]
    fn an_abort_is_an_error_with_its_message_and_process_faults_are_named() {
        let abort = tagged(
            span("f", Some("c"), CHAOS_SERVICE, "chaos http_abort", 11, 0),
            vec![
                KeyValue::string(TOXIC_TYPE, "http_abort"),
                KeyValue::bool("error", true),
                KeyValue::string("otel.status_description", "aborted with 503"),
            ],
        );
        let kill = tagged(
            span("k", None, CHAOS_SERVICE, "chaos process", 5, 1),
            vec![KeyValue::string(PROCESS_ACTION, "kill")],
        );
        let t = trace(vec![
            span("r", None, "front", "GET /", 0, 20),
            span("c", Some("r"), "front", "GET /pay", 10, 5),
            abort,
            kill,
        ]);
        let got = impacts(&t);
        assert_eq!(got.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(), vec!["process kill", "http_abort"]);
        assert!(got[1].error);
        assert_eq!(got[1].message.as_deref(), Some("aborted with 503"));
        assert_eq!(got[1].target, None, "the abort answered before any callee span");
        assert_eq!((got[0].victim, got[0].victim_service.as_str()), (None, ""));
    }

    #[test]
    fn ordinary_spans_are_not_faults() {
        let t = trace(vec![span("r", None, "front", "chaos monkey endpoint", 0, 20)]);
        assert!(!is_fault_span(&t, &t.spans[0]));
        assert!(impacts(&t).is_empty());
    }
}
