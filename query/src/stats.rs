//! `GET /api/v1/stats`: request count, error count, error rate and latency
//! percentiles per service and operation — what the terminal dashboard shows
//! and what experiments check their steady-state hypotheses against.
//!
//! Parameters: `service`, `operation`, `spanKind` (comma-separated kinds, or
//! `all`; default `server,consumer`: the spans that are requests), and the
//! window as `/api/v1/logs` takes it (`start`/`end` in µs or RFC 3339,
//! `lookback`, default 1h). Answers
//! `{"data":[{service, operation, spanKind, requestCount, errorCount,
//! errorRate, p50Ms, p95Ms, p99Ms}], "services":[...the same per service...]}`,
//! sorted. Latencies are milliseconds, accurate to 1% (mergeable sketches,
//! which keep large windows cheap).
//!
//! Cohorts of a chaos experiment: `experiment=RUN&cohort=faulted` counts only
//! the spans of traces holding a span with `chaos.experiment.id = RUN` (a
//! fault span of that run), `cohort=unfaulted` only the others, over the same
//! window: the A/B split `seismo chaos run` reports. Both parameters go
//! together; without them the answer is the plain one.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use seismo_api::stats::{OperationStats, StatsResponse};
use seismo_store::{span_kind, Cohort, OpStats, StatsQuery};

use crate::error::QueryError;
use crate::request::query_params::{OPERATION, SERVICE, SPAN_KIND};
use crate::request::{blocking, json_reply, now_ns, QueryParams, TimeWindow};
use crate::state::QueryState;

/// The experiment (run) id whose fault spans split the traces into cohorts.
pub(crate) const EXPERIMENT: &str = "experiment";
/// Which side of the split: `faulted` or `unfaulted`.
pub(crate) const COHORT: &str = "cohort";

/// The window of `/api/v1/stats`: the last hour by default, a dashboard's "now".
type StatsWindow = TimeWindow<3600>;

/// The answer entry of one operation (`kind` set) or one service's totals
/// (`operation` and `kind` absent): latencies in ms rounded to µs.
fn operation_stats(service: String, operation: Option<String>, kind: Option<i32>, s: &OpStats) -> OperationStats {
    let ms = |q: f64| s.latency.quantile(q).map(|ns| (ns / 1e6 * 1000.0).round() / 1000.0);
    OperationStats {
        service,
        operation,
        span_kind: kind.map(|k| span_kind::name(k).to_string()),
        request_count: s.spans,
        error_count: s.errors,
        error_rate: if s.spans == 0 { 0.0 } else { s.errors as f64 / s.spans as f64 },
        p50_ms: ms(0.5),
        p95_ms: ms(0.95),
        p99_ms: ms(0.99),
    }
}

/// `GET /api/v1/stats`.
pub(crate) async fn stats(State(state): State<QueryState>, params: QueryParams) -> Result<Response, QueryError> {
    let q = parse_stats_query(&params, now_ns())?;
    let ops = blocking(&state, move |store| store.span_stats(&q)).await?;
    let mut per_service: BTreeMap<String, OpStats> = BTreeMap::new();
    for ((service, _, _), s) in &ops {
        seismo_store::merge_op_stats(per_service.entry(service.clone()).or_default(), s);
    }
    let data = ops.into_iter().map(|((svc, op, kind), s)| operation_stats(svc, Some(op), Some(kind), &s)).collect();
    let services = per_service.into_iter().map(|(svc, s)| operation_stats(svc, None, None, &s)).collect();
    json_reply(&params, &StatsResponse { data, services })
}

/// # Errors
/// `QueryError::BadRequest` naming the bad parameter.
pub(crate) fn parse_stats_query(params: &QueryParams, now_ns: i64) -> Result<StatsQuery, QueryError> {
    let TimeWindow { start_ns, end_ns } = StatsWindow::parse(params, now_ns)?;
    let span_kinds = match params.get(SPAN_KIND) {
        None | Some("") => vec![span_kind::SERVER, span_kind::CONSUMER],
        Some(text) if text.eq_ignore_ascii_case("all") || text == "*" => Vec::new(),
        Some(text) => text
            .split(',')
            .map(|k| {
                span_kind::from_name(&k.trim().to_ascii_lowercase())
                    .ok_or_else(|| QueryError::param(SPAN_KIND, format!("unsupported span kind: '{k}'")))
            })
            .collect::<Result<_, _>>()?,
    };
    let cohort = match (params.get(EXPERIMENT), params.get(COHORT)) {
        (None, None) => None,
        (Some(experiment), Some(side)) => {
            let faulted = match side.to_ascii_lowercase().as_str() {
                "faulted" => true,
                "unfaulted" => false,
                _ => return Err(QueryError::param(COHORT, format!("expected 'faulted' or 'unfaulted', got '{side}'"))),
            };
            Some(Cohort { experiment: experiment.to_string(), faulted })
        }
        (Some(_), None) => return Err(QueryError::param(COHORT, "required with 'experiment' (faulted or unfaulted)")),
        (None, Some(_)) => return Err(QueryError::param(EXPERIMENT, "required with 'cohort' (the run id)")),
    };
    Ok(StatsQuery {
        cohort,
        service: params.get(SERVICE).filter(|s| !s.is_empty()).map(str::to_string),
        operation: params.get(OPERATION).filter(|s| !s.is_empty()).map(str::to_string),
        span_kinds,
        start_ns,
        end_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> QueryParams {
        QueryParams::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn defaults_count_server_and_consumer_spans_of_the_last_hour() {
        let q = parse_stats_query(&params(&[]), 10 * StatsWindow::DEFAULT_LOOKBACK_NS).unwrap();
        assert_eq!(q.span_kinds, vec![span_kind::SERVER, span_kind::CONSUMER]);
        assert_eq!(
            (q.start_ns, q.end_ns),
            (9 * StatsWindow::DEFAULT_LOOKBACK_NS, 10 * StatsWindow::DEFAULT_LOOKBACK_NS)
        );
        let q = parse_stats_query(&params(&[("spanKind", "client,Producer"), ("service", "cart")]), 0).unwrap();
        assert_eq!(q.span_kinds, vec![span_kind::CLIENT, span_kind::PRODUCER]);
        assert_eq!(q.service.as_deref(), Some("cart"));
        assert!(parse_stats_query(&params(&[("spanKind", "all")]), 0).unwrap().span_kinds.is_empty());
        assert_eq!(q.cohort, None);
        let q = parse_stats_query(&params(&[("experiment", "r1"), ("cohort", "Unfaulted")]), 0).unwrap();
        assert_eq!(q.cohort, Some(Cohort { experiment: "r1".into(), faulted: false }));
    }

    #[test]
    fn bad_parameters_are_named() {
        for (pairs, want) in [
            (&[("spanKind", "sideways")][..], "unable to parse param 'spanKind': unsupported span kind: 'sideways'"),
            (&[("start", "soon")][..], "unable to parse param 'start'"),
            (&[("lookback", "-")][..], "unable to parse param 'lookback'"),
            (&[("experiment", "r1")][..], "unable to parse param 'cohort': required with 'experiment'"),
            (&[("cohort", "faulted")][..], "unable to parse param 'experiment': required with 'cohort'"),
            (&[("experiment", "r1"), ("cohort", "hit")][..], "unable to parse param 'cohort': expected"),
        ] {
            let err = parse_stats_query(&params(pairs), 0).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
