//! Probes: the hypothesis' checks, each evaluated now over a window of the
//! collected telemetry (stats), against the Prometheus API (PromQL), or by
//! calling a URL (HTTP, like Chaos Toolkit's HTTP probe).

use std::time::{Duration, Instant, SystemTime};

use seismo_client::api::prometheus::QueryResult;
use seismo_client::api::stats::OperationStats;
use seismo_client::{Client, StatsQuery};

use crate::file::{Phase, Probe, ProbeKind, Safety};
use crate::journal::{unix_ms, Measure, ProbeResult};

/// What probes need: the query API and an HTTP client for URL probes.
#[derive(Clone, Debug)]
pub struct ProbeContext {
    /// The query API.
    pub query: Client,
    /// For HTTP probes (10 s timeout).
    pub http: reqwest::Client,
}

impl ProbeContext {
    /// A context over `query`.
    pub fn new(query: Client) -> ProbeContext {
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("a default client builds");
        ProbeContext { query, http }
    }
}

/// Evaluates `probe` now. A stats window starts no earlier than `floor`
/// (during the method: its start, so the fault's effect is not diluted by
/// what came before). A probe that cannot be evaluated is not ok.
pub async fn evaluate(ctx: &ProbeContext, probe: &Probe, phase: Phase, floor: Option<SystemTime>) -> ProbeResult {
    let now = SystemTime::now();
    let (kind, outcome) = match probe.kind() {
        ProbeKind::Stats => ("stats", stats_measures(ctx, probe, now, floor).await),
        ProbeKind::PromQl => ("promql", promql_measures(ctx, probe).await),
        ProbeKind::Http => ("http", http_measures(ctx, probe).await),
    };
    let (measures, error) = match outcome {
        Ok(m) => (m, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    // While the method runs, a window too young to hold enough requests
    // says nothing yet (the first probe may come before the first slow
    // request ends); before and after, no traffic is a deviation.
    let inconclusive = phase == Phase::During && measures.iter().any(|m| m.what == "requests" && !m.ok);
    ProbeResult {
        name: probe.name.clone(),
        phase,
        at_ms: unix_ms(now),
        kind: kind.into(),
        ok: inconclusive || (error.is_none() && measures.iter().all(|m| m.ok)),
        measures,
        error,
        inconclusive,
    }
}

/// The per-service totals of `service` (restricted to `operation` when
/// given) over `[start, end]`.
pub async fn service_stats(
    query: &Client,
    service: &str,
    operation: Option<&str>,
    span_kind: Option<&str>,
    start: SystemTime,
    end: SystemTime,
) -> Result<Option<OperationStats>, String> {
    let q = StatsQuery {
        service: Some(service.to_string()),
        operation: operation.map(str::to_string),
        span_kinds: span_kind.map(|k| vec![k.to_string()]).unwrap_or_default(),
        start: Some(start),
        end: Some(end),
        ..StatsQuery::default()
    };
    let answer = query.stats(&q).await.map_err(|e| e.to_string())?;
    Ok(answer.services.into_iter().find(|s| s.service == service))
}

fn window_start(now: SystemTime, window: Duration, floor: Option<SystemTime>) -> SystemTime {
    let start = now.checked_sub(window).unwrap_or(now);
    floor.map_or(start, |f| f.max(start))
}

async fn stats_measures(
    ctx: &ProbeContext,
    probe: &Probe,
    now: SystemTime,
    floor: Option<SystemTime>,
) -> Result<Vec<Measure>, String> {
    let service = probe.service.as_deref().unwrap_or_default();
    let start = window_start(now, probe.window(), floor);
    let stats =
        service_stats(&ctx.query, service, probe.operation.as_deref(), probe.span_kind.as_deref(), start, now).await?;
    let requests = stats.as_ref().map_or(0, |s| s.request_count);
    let mut out = vec![Measure::check("requests", Some(requests as f64), ">=", probe.min_requests.unwrap_or(1) as f64)];
    if let Some(limit) = probe.p50_ms_below {
        out.push(Measure::check("p50_ms", stats.as_ref().and_then(|s| s.p50_ms), "<", limit));
    }
    if let Some(limit) = probe.p99_ms_below {
        out.push(Measure::check("p99_ms", stats.as_ref().and_then(|s| s.p99_ms), "<", limit));
    }
    if let Some(limit) = probe.max_error_rate {
        out.push(Measure::check("error_rate", stats.as_ref().map(|s| s.error_rate), "<=", limit));
    }
    Ok(out)
}

async fn promql_measures(ctx: &ProbeContext, probe: &Probe) -> Result<Vec<Measure>, String> {
    let expr = probe.promql.as_deref().unwrap_or_default();
    let values: Vec<(String, f64)> = match ctx.query.query(expr, None).await.map_err(|e| e.to_string())? {
        QueryResult::Vector(samples) => samples
            .into_iter()
            .map(|s| {
                let labels: Vec<String> = s.metric.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                (format!("{{{}}}", labels.join(",")), s.value.v)
            })
            .collect(),
        QueryResult::Scalar(p) => vec![("scalar".into(), p.v)],
        QueryResult::Matrix(_) | QueryResult::String(_) => {
            return Err(format!("{expr:?} is not an instant vector or scalar"));
        }
    };
    if values.is_empty() {
        return Err(format!("{expr:?} returned no series"));
    }
    let mut out = Vec::new();
    for (series, v) in values {
        if let Some(limit) = probe.below {
            out.push(Measure::check(format!("value{series}"), Some(v), "<", limit));
        }
        if let Some(limit) = probe.above {
            out.push(Measure::check(format!("value{series}"), Some(v), ">", limit));
        }
    }
    Ok(out)
}

async fn http_measures(ctx: &ProbeContext, probe: &Probe) -> Result<Vec<Measure>, String> {
    let url = probe.url.as_deref().unwrap_or_default();
    let method =
        reqwest::Method::from_bytes(probe.method.as_deref().unwrap_or("GET").as_bytes()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let answer = ctx.http.request(method, url).send().await.map_err(|e| format!("{url}: {e}"))?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut out =
        vec![Measure::check("status", Some(answer.status().as_u16() as f64), "==", probe.status.unwrap_or(200) as f64)];
    if let Some(limit) = probe.latency_ms_below {
        out.push(Measure::check("latency_ms", Some(elapsed_ms), "<", limit));
    }
    Ok(out)
}

/// Whether `[safety]` is breached now, and the measures that say so.
pub async fn safety_breached(ctx: &ProbeContext, safety: &Safety, floor: SystemTime) -> (bool, Vec<Measure>) {
    let now = SystemTime::now();
    let window = safety.window.map_or(Duration::from_secs(5), |w| w.0);
    let start = window_start(now, window, Some(floor));
    let Ok(Some(stats)) =
        service_stats(&ctx.query, &safety.service, safety.operation.as_deref(), None, start, now).await
    else {
        // No answer or no requests: nothing says the system is on fire.
        return (false, Vec::new());
    };
    let mut measures = Vec::new();
    if let Some(limit) = safety.max_error_rate {
        measures.push(Measure::check("error_rate", Some(stats.error_rate), "<=", limit));
    }
    if let Some(limit) = safety.p99_ms_below {
        measures.push(Measure::check("p99_ms", stats.p99_ms, "<", limit));
    }
    let breached = measures.iter().any(|m| !m.ok && m.value.is_some());
    (breached, measures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_never_starts_before_the_floor() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(window_start(now, Duration::from_secs(10), None), now - Duration::from_secs(10));
        let floor = now - Duration::from_secs(3);
        assert_eq!(window_start(now, Duration::from_secs(10), Some(floor)), floor);
        let old = now - Duration::from_secs(30);
        assert_eq!(window_start(now, Duration::from_secs(10), Some(old)), now - Duration::from_secs(10));
    }
}
