//! Cohorts: over the method's window, the requests whose trace holds a fault
//! span of this run against those whose trace does not — the A/B split a
//! fault at `toxicity` < 1 (or on one proxy of several, or behind a matcher)
//! makes in one window. The numbers come from the query API's stats
//! (`experiment=RUN&cohort=faulted|unfaulted`), computed in the store.

use std::time::SystemTime;

use seismo_client::api::stats::OperationStats;
use seismo_client::{Client, Cohort, StatsQuery};

use crate::journal::{CohortComparison, CohortStats, ErroringOperation};

/// A service (and operation) to split.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// The service.
    pub service: String,
    /// Only this operation.
    pub operation: Option<String>,
}

impl From<Option<&OperationStats>> for CohortStats {
    fn from(s: Option<&OperationStats>) -> CohortStats {
        s.map_or_else(CohortStats::default, |s| CohortStats {
            requests: s.request_count,
            errors: s.error_count,
            error_rate: s.error_rate,
            p50_ms: s.p50_ms,
            p99_ms: s.p99_ms,
        })
    }
}

/// The comparison of two cohorts: each side's numbers and faulted − unfaulted.
pub fn compare(target: &Target, faulted: CohortStats, unfaulted: CohortStats) -> CohortComparison {
    let delta = |a: Option<f64>, b: Option<f64>| Some(((a? - b?) * 1000.0).round() / 1000.0);
    CohortComparison {
        service: target.service.clone(),
        operation: target.operation.clone(),
        error_rate_delta: faulted.error_rate - unfaulted.error_rate,
        p50_ms_delta: delta(faulted.p50_ms, unfaulted.p50_ms),
        p99_ms_delta: delta(faulted.p99_ms, unfaulted.p99_ms),
        faulted,
        unfaulted,
    }
}

/// Both cohorts of each target over `[start, end]`.
///
/// # Errors
/// The query API's error, as text.
pub async fn cohorts(
    query: &Client,
    run_id: &str,
    targets: &[Target],
    start: SystemTime,
    end: SystemTime,
) -> Result<Vec<CohortComparison>, String> {
    let mut out = Vec::with_capacity(targets.len());
    for target in targets {
        let side = |faulted: bool| StatsQuery {
            service: Some(target.service.clone()),
            operation: target.operation.clone(),
            start: Some(start),
            end: Some(end),
            cohort: Some(Cohort { experiment: run_id.to_string(), faulted }),
            ..StatsQuery::default()
        };
        let pick =
            |r: seismo_client::api::stats::StatsResponse| r.services.into_iter().find(|s| s.service == target.service);
        let faulted = pick(query.stats(&side(true)).await.map_err(|e| e.to_string())?);
        let unfaulted = pick(query.stats(&side(false)).await.map_err(|e| e.to_string())?);
        out.push(compare(target, faulted.as_ref().into(), unfaulted.as_ref().into()));
    }
    Ok(out)
}

/// Every (service, operation) with errors over `[start, end]`, all span
/// kinds, most errors first.
///
/// # Errors
/// The query API's error, as text.
pub async fn erroring(query: &Client, start: SystemTime, end: SystemTime) -> Result<Vec<ErroringOperation>, String> {
    let q = StatsQuery { span_kinds: vec!["all".into()], start: Some(start), end: Some(end), ..StatsQuery::default() };
    let answer = query.stats(&q).await.map_err(|e| e.to_string())?;
    let mut out: Vec<ErroringOperation> = answer
        .data
        .into_iter()
        .filter(|s| s.error_count > 0)
        .map(|s| ErroringOperation {
            service: s.service,
            operation: s.operation.unwrap_or_default(),
            errors: s.error_count,
            requests: s.request_count,
        })
        .collect();
    out.sort_by(|a, b| {
        b.errors.cmp(&a.errors).then_with(|| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)))
    });
    Ok(out)
}

impl CohortComparison {
    /// Requests in both cohorts.
    pub fn requests_total(&self) -> u64 {
        self.faulted.requests + self.unfaulted.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comparison_is_faulted_minus_unfaulted() {
        let target = Target { service: "checkout".into(), operation: None };
        let faulted = CohortStats { requests: 50, errors: 25, error_rate: 0.5, p50_ms: Some(2.0), p99_ms: Some(9.5) };
        let unfaulted = CohortStats { requests: 50, errors: 0, error_rate: 0.0, p50_ms: Some(1.5), p99_ms: Some(3.0) };
        let c = compare(&target, faulted.clone(), unfaulted.clone());
        assert_eq!(c.error_rate_delta, 0.5);
        assert_eq!((c.p50_ms_delta, c.p99_ms_delta), (Some(0.5), Some(6.5)));
        assert_eq!((c.faulted, c.unfaulted), (faulted, unfaulted));
        // An empty cohort has no latency, so no latency difference.
        let c = compare(&target, CohortStats::from(None), CohortStats::default());
        assert_eq!((c.requests_total(), c.p99_ms_delta, c.error_rate_delta), (0, None, 0.0));
    }
}
