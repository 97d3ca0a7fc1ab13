//! Query descriptions the scan API answers.

/// A Jaeger-style trace search: a trace matches when at least one of its spans
/// matches every given predicate. Results are the `limit` traces whose newest
/// matching span started last, newest first, chosen over the whole time window
/// (not the first `limit` found).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceQuery {
    pub service: Option<String>,
    pub operation: Option<String>,
    /// Span kind filter (see `model::span_kind`).
    pub span_kind: Option<i32>,
    /// Every (key, value) must match a span attribute, a resource attribute or an
    /// event attribute of the same span, compared as text (Jaeger semantics).
    pub tags: Vec<(String, String)>,
    /// Inclusive lower bound on span start time, ns since the epoch.
    pub start_min_ns: Option<i64>,
    /// Inclusive upper bound on span start time, ns since the epoch.
    pub start_max_ns: Option<i64>,
    pub min_duration_ns: Option<i64>,
    pub max_duration_ns: Option<i64>,
    /// Maximum number of traces to return; 0 means the default (20).
    pub limit: usize,
}

impl TraceQuery {
    pub const DEFAULT_LIMIT: usize = 20;

    pub fn effective_limit(&self) -> usize {
        if self.limit == 0 {
            Self::DEFAULT_LIMIT
        } else {
            self.limit
        }
    }
}

/// An operation (span name) of a service, with the span kind it was seen with.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Operation {
    pub name: String,
    pub span_kind: i32,
}

/// A request-statistics query: spans of the window, grouped by (service,
/// operation, kind).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsQuery {
    pub service: Option<String>,
    pub operation: Option<String>,
    /// Span kinds to count; empty means all.
    pub span_kinds: Vec<i32>,
    /// Inclusive bounds on span start time, ns since the epoch.
    pub start_ns: i64,
    pub end_ns: i64,
    /// Only spans of the traces a chaos experiment did (or did not) fault.
    pub cohort: Option<Cohort>,
}

/// The span attribute every fault span of a chaos experiment carries.
pub const EXPERIMENT_ATTRIBUTE: &str = "chaos.experiment.id";

/// One side of an experiment's A/B split: the traces holding a span with
/// `chaos.experiment.id = experiment` (`faulted`), or all the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cohort {
    /// The experiment (run) id.
    pub experiment: String,
    /// `true`: only traces holding one of its fault spans; `false`: only traces without.
    pub faulted: bool,
}
