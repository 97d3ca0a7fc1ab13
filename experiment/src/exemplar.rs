//! Exemplars: the faulted requests worth opening. The run's fault spans are
//! searched in the store (service `seismo-chaos`, `chaos.experiment.id` =
//! the run), their traces come back whole, and `seismo-analysis` says what
//! each fault cost its request: how long it held it and how much of that lay
//! on the trace's critical path. The same search counts the requests each
//! toxic touched.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use seismo_analysis::{critical_path, fault_impacts, SpanTree};
use seismo_client::{Client, TraceSearch};

use crate::journal::{Exemplar, FaultRecord};

/// Traces searched at most; past this `touched` is a lower bound.
pub const SEARCH_LIMIT: usize = 2000;

/// Fills each fault's `touched` and returns the `keep` worst-hurt requests:
/// failed ones first, then by time on the critical path, then by time held.
///
/// # Errors
/// The query API's error, as text.
pub async fn exemplars(
    query: &Client,
    run_id: &str,
    start: SystemTime,
    end: SystemTime,
    faults: &mut [FaultRecord],
    keep: usize,
) -> Result<Vec<Exemplar>, String> {
    let mut search = TraceSearch::service(seismo_analysis::faults::CHAOS_SERVICE);
    search.tags.insert(seismo_analysis::faults::EXPERIMENT_ID.into(), run_id.into());
    search.start = Some(start);
    search.end = Some(end);
    search.limit = Some(SEARCH_LIMIT);
    let traces = query.search_traces(&search).await.map_err(|e| e.to_string())?;
    let truncated = traces.len() >= SEARCH_LIMIT;
    let mut touched: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    let mut out = Vec::new();
    for trace in &traces {
        let tree = SpanTree::new(trace);
        let path = critical_path(trace, &tree);
        let impacts: Vec<_> = fault_impacts(trace, &tree, &path)
            .into_iter()
            .filter(|f| f.experiment.as_deref() == Some(run_id))
            .collect();
        let Some(worst) = impacts.iter().max_by_key(|f| (f.error, f.critical_us, f.added_us)) else {
            continue;
        };
        for f in &impacts {
            if let Some(name) = &f.toxic {
                touched.entry(name.clone()).or_default().insert(trace.trace_id.clone());
            }
        }
        let trace_us = trace_span_us(trace);
        out.push(Exemplar {
            trace_id: trace.trace_id.clone(),
            toxic: worst.toxic.clone(),
            kind: worst.kind.clone(),
            proxy: worst.proxy.clone(),
            victim_service: worst.victim_service.clone(),
            victim_operation: worst.victim_operation.clone(),
            added_ms: impacts.iter().map(|f| f.added_us).sum::<u64>() as f64 / 1000.0,
            critical_ms: impacts.iter().map(|f| f.critical_us).sum::<u64>() as f64 / 1000.0,
            on_critical_path: impacts.iter().any(|f| f.on_critical_path()),
            error: impacts.iter().any(|f| f.error),
            trace_ms: trace_us as f64 / 1000.0,
        });
    }
    for fault in faults.iter_mut().filter(|f| f.proxy.is_some()) {
        fault.touched = Some(touched.get(&fault.name).map_or(0, |t| t.len() as u64));
        fault.touched_is_lower_bound = truncated;
    }
    rank(&mut out);
    out.truncate(keep);
    Ok(out)
}

/// Worst first: failed requests, then most time on the critical path, then most time held.
pub fn rank(exemplars: &mut [Exemplar]) {
    exemplars.sort_by(|a, b| {
        (b.error, b.critical_ms, b.added_ms)
            .partial_cmp(&(a.error, a.critical_ms, a.added_ms))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.trace_id.cmp(&b.trace_id))
    });
}

/// The trace's extent: first span start to last span end, µs.
fn trace_span_us(trace: &seismo_client::api::jaeger::Trace) -> u64 {
    let start = trace.spans.iter().map(|s| s.start_time).min().unwrap_or(0);
    let end = trace.spans.iter().map(|s| s.start_time + s.duration).max().unwrap_or(0);
    end.saturating_sub(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(id: &str, error: bool, critical_ms: f64, added_ms: f64) -> Exemplar {
        Exemplar {
            trace_id: id.into(),
            toxic: None,
            kind: "latency".into(),
            proxy: None,
            victim_service: "checkout".into(),
            victim_operation: "pay".into(),
            added_ms,
            critical_ms,
            on_critical_path: critical_ms > 0.0,
            error,
            trace_ms: 0.0,
        }
    }

    #[test]
    fn failed_requests_rank_first_then_critical_time() {
        let mut list = vec![
            ex("a", false, 10.0, 10.0),
            ex("b", true, 0.0, 1.0),
            ex("c", false, 300.0, 300.0),
            ex("d", false, 0.0, 500.0),
        ];
        rank(&mut list);
        let order: Vec<&str> = list.iter().map(|e| e.trace_id.as_str()).collect();
        assert_eq!(order, vec!["b", "c", "a", "d"]);
    }
}
