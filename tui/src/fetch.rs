//! Background fetches: each [`Request`] is one async function of the
//! clients that ends in an [`Action`] (the data, or the error to show). The
//! event loop spawns them and never awaits the network itself; render-once
//! awaits them in turn. Nothing here touches the screen.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use seismo_client::api::jaeger::Trace;
use seismo_client::api::prometheus::QueryResult;
use seismo_client::api::stats::{OperationStats, StatsResponse};
use seismo_client::api::toxiproxy::Proxy;
use seismo_client::{AgentClient, Client, ClientError, LogQuery, StatsQuery, TraceSearch, V3TraceQuery};

use crate::action::{Action, Fetched, Loaded};
use crate::dashboard::{Panel, PanelQuery};
use crate::faults::{fault_events, FaultEvent, CHAOS_SERVICE};
use crate::journals::RunSummary;
use crate::screens::traces::{TraceFilter, TraceRow};

/// Where the dashboard reads from: the two APIs, and the experiment journals.
#[derive(Clone, Debug)]
pub struct Clients {
    /// The query API (`--query-url`).
    pub query: Client,
    /// The chaos agent (`--agent-url`).
    pub agent: AgentClient,
    /// A folder of experiment journals (`--journals`), if given.
    pub journals: Option<std::path::PathBuf>,
}

/// How much to fetch.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The window every screen looks back over.
    pub lookback: Duration,
    /// Points per sparkline (one stats call each).
    pub buckets: usize,
    /// Traces per search.
    pub traces: usize,
    /// Log records per search.
    pub logs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { lookback: Duration::from_secs(3600), buckets: 12, traces: 100, logs: 200 }
    }
}

/// Something to fetch.
#[derive(Clone, Debug)]
pub enum Request {
    /// Per-service stats over the window and per bucket, and dependencies.
    Services,
    /// A trace search.
    Traces(TraceFilter),
    /// These traces, by id (the ones faults touched).
    TraceIds(Vec<String>),
    /// One trace.
    Trace(String),
    /// The log records of one trace.
    TraceLogs(String),
    /// A log search (empty: the newest records).
    Logs(String),
    /// The agent's proxies, the fault spans, and the services' buckets.
    Chaos,
    /// One dashboard panel.
    Panel(usize, Panel),
}

impl Request {
    /// Which data it fetches (what its answer or failure updates).
    pub fn what(&self) -> Fetched {
        match self {
            Request::Services => Fetched::Services,
            Request::Traces(_) | Request::TraceIds(_) => Fetched::Traces,
            Request::Trace(_) => Fetched::Trace,
            Request::TraceLogs(_) => Fetched::TraceLogs,
            Request::Logs(_) => Fetched::Logs,
            Request::Chaos => Fetched::Chaos,
            Request::Panel(i, _) => Fetched::Panel(*i),
        }
    }
}

/// One service's row: totals over the window and its sparklines.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceRow {
    /// `service.name`.
    pub name: String,
    /// Requests (server and consumer spans) in the window.
    pub requests: u64,
    /// Requests per second over the window.
    pub rate: f64,
    /// Share of requests with status ERROR.
    pub error_rate: f64,
    /// Median latency, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
    /// Requests per bucket, oldest first.
    pub requests_series: Vec<u64>,
    /// Errors per bucket, oldest first.
    pub errors_series: Vec<u64>,
    /// p99 per bucket in µs (0 without requests), oldest first.
    pub p99_series: Vec<u64>,
}

/// A dependency edge with the callee's error rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// The caller.
    pub parent: String,
    /// The callee.
    pub child: String,
    /// Calls in the window.
    pub calls: u64,
    /// The callee's error rate over the window (`None` when it served no request).
    pub child_error_rate: Option<f64>,
}

/// The Services screen's data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServicesData {
    /// Window start, µs since the epoch.
    pub start_us: u64,
    /// One bucket's length, µs.
    pub bucket_us: u64,
    /// Services by name.
    pub rows: Vec<ServiceRow>,
    /// Edges, busiest first.
    pub edges: Vec<Edge>,
}

impl ServicesData {
    /// Joins the answers: every service named (also those without
    /// requests), totals from `totals`, sparklines from `buckets` (oldest
    /// first), and edges with the callee's error rate.
    pub fn build(
        names: &[String],
        totals: &StatsResponse,
        buckets: &[StatsResponse],
        edges: &[seismo_client::api::jaeger::DependencyLink],
        start_us: u64,
        window: Duration,
    ) -> ServicesData {
        let find = |stats: &StatsResponse, name: &str| -> Option<OperationStats> {
            stats.services.iter().find(|s| s.service == name).cloned()
        };
        let mut all: Vec<String> = names.to_vec();
        all.extend(totals.services.iter().map(|s| s.service.clone()));
        all.sort();
        all.dedup();
        let secs = window.as_secs_f64().max(1e-9);
        let rows = all
            .into_iter()
            .map(|name| {
                let total = find(totals, &name);
                let series = |f: &dyn Fn(&OperationStats) -> u64| -> Vec<u64> {
                    buckets.iter().map(|b| find(b, &name).map_or(0, |s| f(&s))).collect()
                };
                ServiceRow {
                    requests: total.as_ref().map_or(0, |t| t.request_count),
                    rate: total.as_ref().map_or(0.0, |t| t.request_count as f64 / secs),
                    error_rate: total.as_ref().map_or(0.0, |t| t.error_rate),
                    p50_ms: total.as_ref().and_then(|t| t.p50_ms),
                    p99_ms: total.as_ref().and_then(|t| t.p99_ms),
                    requests_series: series(&|s| s.request_count),
                    errors_series: series(&|s| s.error_count),
                    p99_series: series(&|s| s.p99_ms.map_or(0, |ms| (ms * 1e3).round() as u64)),
                    name,
                }
            })
            .collect::<Vec<_>>();
        let mut edges: Vec<Edge> = edges
            .iter()
            .map(|e| Edge {
                parent: e.parent.clone(),
                child: e.child.clone(),
                calls: e.call_count,
                child_error_rate: rows.iter().find(|r| r.name == e.child && r.requests > 0).map(|r| r.error_rate),
            })
            .collect();
        edges.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| (&a.parent, &a.child).cmp(&(&b.parent, &b.child))));
        let bucket_us = (window.as_micros() as u64 / buckets.len().max(1) as u64).max(1);
        ServicesData { start_us, bucket_us, rows, edges }
    }
}

/// The Chaos screen's data.
#[derive(Clone, Debug, PartialEq)]
pub struct ChaosData {
    /// The agent's proxies by name, or why they could not be read.
    pub proxies: Result<Vec<Proxy>, String>,
    /// Fault spans in the window, newest first.
    pub faults: Vec<FaultEvent>,
    /// The services' rates per bucket, to mark fault windows on.
    pub services: ServicesData,
    /// Experiment runs from the journals folder (`None` without `--journals`),
    /// with how many files were not journals, or why the folder could not be read.
    pub runs: Option<Result<(Vec<RunSummary>, usize), String>>,
}

impl Default for ChaosData {
    fn default() -> Self {
        ChaosData { proxies: Ok(Vec::new()), faults: Vec::new(), services: ServicesData::default(), runs: None }
    }
}

/// A dashboard panel's data.
#[derive(Clone, Debug, PartialEq)]
pub enum PanelData {
    /// Stats panels draw from the Services data; nothing of their own.
    Stats,
    /// PromQL: one series per label set, `(labels, values oldest first)`.
    Series(Vec<(String, Vec<f64>)>),
    /// Trace search results.
    Traces(Vec<TraceRow>),
    /// Log records, newest first.
    Logs(Vec<seismo_client::api::logs::LogRecord>),
}

fn micros_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn failed(what: Fetched, error: ClientError) -> Action {
    tracing::warn!(?what, %error, "Fetch failed.");
    Action::Failed { what, error: error.to_string() }
}

/// Runs `request` and says how it went, as an action for the app.
pub async fn fetch(clients: &Clients, limits: Limits, request: Request) -> Action {
    let what = request.what();
    let result = match request {
        Request::Services => services(&clients.query, limits).await.map(Loaded::Services),
        Request::Traces(filter) => traces(&clients.query, limits, &filter).await.map(Loaded::Traces),
        Request::TraceIds(ids) => {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            clients.query.traces_by_id(&ids).await.map(|found| {
                let mut rows: Vec<TraceRow> = found.found.iter().map(TraceRow::from_trace).collect();
                rows.sort_by_key(|r| std::cmp::Reverse(r.start_us));
                Loaded::Traces(rows)
            })
        }
        Request::Trace(id) => clients.query.trace(&id).await.map(|t| Loaded::Trace(Box::new(t))),
        Request::TraceLogs(id) => {
            let query = LogQuery { trace_id: Some(id.clone()), limit: Some(limits.logs), ..LogQuery::default() };
            clients.query.logs(&query).await.map(|mut records| {
                records.reverse();
                Loaded::TraceLogs { trace_id: id, records }
            })
        }
        Request::Logs(text) => {
            let query = LogQuery {
                text: (!text.trim().is_empty()).then(|| text.clone()),
                lookback: Some(limits.lookback),
                limit: Some(limits.logs),
                ..LogQuery::default()
            };
            clients.query.logs(&query).await.map(|records| Loaded::Logs { records, query: text })
        }
        Request::Chaos => chaos(clients, limits).await.map(Loaded::Chaos),
        Request::Panel(i, panel) => self::panel(&clients.query, limits, &panel).await.map(|d| Loaded::Panel(i, d)),
    };
    match result {
        Ok(loaded) => Action::Loaded(loaded),
        Err(e) => failed(what, e),
    }
}

async fn services(client: &Client, limits: Limits) -> Result<ServicesData, ClientError> {
    let end = SystemTime::now();
    let start = end - limits.lookback;
    let names = client.services().await?;
    let window =
        |start: SystemTime, end: SystemTime| StatsQuery { start: Some(start), end: Some(end), ..StatsQuery::default() };
    let totals = client.stats(&window(start, end)).await?;
    let n = limits.buckets.max(1) as u32;
    let step = limits.lookback / n;
    let mut buckets = Vec::with_capacity(n as usize);
    for i in 0..n {
        let from = start + step * i;
        buckets.push(client.stats(&window(from, from + step)).await?);
    }
    let edges = client.dependencies(Some(end), Some(limits.lookback)).await?;
    Ok(ServicesData::build(&names, &totals, &buckets, &edges, micros_of(start), limits.lookback))
}

async fn traces(client: &Client, limits: Limits, filter: &TraceFilter) -> Result<Vec<TraceRow>, ClientError> {
    let end = SystemTime::now();
    let mut query = V3TraceQuery::window(end - limits.lookback, end);
    query.service = filter.service.clone().or_else(|| filter.faults_only.then(|| CHAOS_SERVICE.to_string()));
    query.operation = filter.operation.clone();
    query.attributes = filter.tags.clone();
    if filter.errors_only {
        query.attributes.insert("error".into(), "true".into());
    }
    query.duration_min = filter.min_duration;
    query.duration_max = filter.max_duration;
    query.search_depth = Some(filter.limit.unwrap_or(limits.traces));
    let summaries = match client.trace_summaries(&query).await {
        Err(e) if e.is_not_found() => Vec::new(),
        other => other?,
    };
    Ok(summaries.iter().map(TraceRow::from_summary).filter(|row| !filter.faults_only || row.faulted).collect())
}

async fn chaos(clients: &Clients, limits: Limits) -> Result<ChaosData, ClientError> {
    let proxies = match clients.agent.proxies().await {
        Ok(map) => Ok(map.into_values().collect()),
        Err(e) => Err(e.to_string()),
    };
    let search = TraceSearch {
        lookback: Some(limits.lookback),
        limit: Some(limits.traces),
        ..TraceSearch::service(CHAOS_SERVICE)
    };
    let traces: Vec<Trace> = clients.query.search_traces(&search).await?;
    let mut faults: Vec<FaultEvent> = traces.iter().flat_map(fault_events).collect();
    faults.sort_by(|a, b| b.start_us.cmp(&a.start_us).then_with(|| a.span_id.cmp(&b.span_id)));
    let services = services(&clients.query, limits).await?;
    let runs = clients
        .journals
        .as_deref()
        .map(|dir| crate::journals::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display())));
    Ok(ChaosData { proxies, faults, services, runs })
}

async fn panel(client: &Client, limits: Limits, panel: &Panel) -> Result<PanelData, ClientError> {
    match &panel.query {
        PanelQuery::Stats(_) => Ok(PanelData::Stats),
        PanelQuery::PromQl(expr) => {
            let end = SystemTime::now();
            let step = (limits.lookback / 60).max(Duration::from_secs(1));
            let result = client.query_range(expr, end - limits.lookback, end, step).await?;
            Ok(PanelData::Series(series_of(result)))
        }
        PanelQuery::Traces(q) => {
            let filter = TraceFilter {
                service: q.service.clone(),
                tags: q.tags.clone(),
                min_duration: q.min_duration.as_deref().and_then(crate::format::parse_duration),
                limit: Some(q.limit.unwrap_or(10)),
                ..TraceFilter::default()
            };
            let mut rows = traces(client, limits, &filter).await?;
            rows.sort_by_key(|r| std::cmp::Reverse(r.duration_us));
            Ok(PanelData::Traces(rows))
        }
        PanelQuery::Logs(text) => {
            let query = LogQuery { lookback: Some(limits.lookback), limit: Some(20), ..LogQuery::text(text.clone()) };
            Ok(PanelData::Logs(client.logs(&query).await?))
        }
    }
}

/// A PromQL answer as `(labels, values)` series: a matrix as is, a vector
/// or scalar as one point each.
pub fn series_of(result: QueryResult) -> Vec<(String, Vec<f64>)> {
    let name = |labels: &BTreeMap<String, String>| {
        let inner: Vec<String> =
            labels.iter().filter(|(k, _)| *k != "__name__").map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{}{{{}}}", labels.get("__name__").map_or("", String::as_str), inner.join(","))
    };
    match result {
        QueryResult::Matrix(series) => {
            series.into_iter().map(|s| (name(&s.metric), s.values.iter().map(|p| p.v).collect())).collect()
        }
        QueryResult::Vector(samples) => samples.into_iter().map(|s| (name(&s.metric), vec![s.value.v])).collect(),
        QueryResult::Scalar(p) => vec![("scalar".into(), vec![p.v])],
        QueryResult::String(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use seismo_client::api::jaeger::DependencyLink;

    use super::*;

    fn stat(service: &str, requests: u64, errors: u64, p99: Option<f64>) -> OperationStats {
        OperationStats {
            service: service.into(),
            operation: None,
            span_kind: None,
            request_count: requests,
            error_count: errors,
            error_rate: if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
            p50_ms: p99.map(|p| p / 2.0),
            p95_ms: p99,
            p99_ms: p99,
        }
    }

    fn stats(services: Vec<OperationStats>) -> StatsResponse {
        StatsResponse { data: Vec::new(), services }
    }

    #[test]
    fn test_build_joins_totals_buckets_and_edges() {
        let totals = stats(vec![stat("api", 120, 12, Some(30.0)), stat("db", 60, 0, Some(4.0))]);
        let buckets = vec![
            stats(vec![stat("api", 100, 2, Some(10.0))]),
            stats(vec![stat("api", 20, 10, Some(30.0)), stat("db", 60, 0, Some(4.0))]),
        ];
        let links = vec![
            DependencyLink { parent: "api".into(), child: "db".into(), call_count: 60 },
            DependencyLink { parent: "web".into(), child: "api".into(), call_count: 120 },
        ];
        let names = vec!["web".to_string(), "api".to_string()];
        let data = ServicesData::build(&names, &totals, &buckets, &links, 1_000, Duration::from_secs(60));
        let names: Vec<&str> = data.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["api", "db", "web"], "named and measured services, each once, sorted");
        let api = &data.rows[0];
        assert_eq!(api.rate, 2.0);
        assert_eq!(api.requests_series, [100, 20]);
        assert_eq!(api.errors_series, [2, 10]);
        assert_eq!(api.p99_series, [10_000, 30_000]);
        assert_eq!(data.rows[1].requests_series, [0, 60], "a bucket without the service is 0");
        assert_eq!(data.rows[2].requests, 0, "web only calls: listed with no requests");
        assert_eq!(data.edges[0].parent, "web", "busiest edge first");
        assert_eq!(data.edges[0].child_error_rate, Some(0.1));
        assert_eq!(data.edges[1].child_error_rate, Some(0.0));
        assert_eq!(data.bucket_us, 30_000_000);
    }

    #[test]
    fn test_series_of_names_series_by_labels() {
        let text =
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"api"},"values":[[1,"1"],[2,"0"]]}]}"#;
        let result: QueryResult = serde_json::from_str(text).unwrap();
        assert_eq!(series_of(result), vec![("up{job=\"api\"}".to_string(), vec![1.0, 0.0])]);
    }
}
