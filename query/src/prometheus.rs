//! The Prometheus HTTP API (`/api/v1/...`) over a [`SeriesSource`]: what
//! Grafana's Prometheus data source, promtool and scripts call. Parameters
//! come from the query string and, for POST, a form body (merged like Go's
//! `r.FormValue`, body first); answers use Prometheus' JSON envelope and its
//! error types (`bad_data` 400, `execution` 422, `timeout` 503, `internal`
//! 500).
//!
//! `/query` and `/query_range` run on query threads of their own (see
//! [`QueryRunner`]): a bounded number at once, each with a stack sized for the
//! deepest query [`check_nesting`] lets through and a [`Budget`] of samples
//! and time from [`QueryLimits`].

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use promql_parser::label::{Matcher, Matchers};
use promql_parser::parser::token::T_EQL_REGEX;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr};

use seismo_api::prometheus::{
    self as wire, BuildInfo, ErrorType, ExemplarSeries, Flags, Metadata, Point, PromError, PromResponse, QueryResult,
    RangeSeries, RuntimeInfo, Sample, StringPoint,
};
use serde::Serialize;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::budget::{Budget, QueryLimits};
use super::eval::{instant_query, range_query, EvalError, QueryValue};
use super::nesting::check_nesting;
use super::params::{parse_duration, parse_form, parse_time};
use super::source::{selector_matchers, Labels, SeriesSource};
use super::timebounds::{check_times, time_in_range, time_out_of_range};

/// The earliest time the metadata endpoints read when `start` is absent. It
/// and [`MAX_TIME_MS`] fit in i64 nanoseconds, so a source may convert them.
pub const MIN_TIME_MS: i64 = -(i64::MAX / 1_000_000);
/// The latest time the metadata endpoints read when `end` is absent.
pub const MAX_TIME_MS: i64 = i64::MAX / 1_000_000;

/// Prometheus' cap on points per series in a range query.
const MAX_POINTS_PER_SERIES: i128 = 11_000;

/// How many queries evaluate at once; more wait in a queue, within their
/// timeout (Prometheus' `--query.max-concurrency` default).
pub const MAX_CONCURRENT_QUERIES: usize = 20;

/// The stack of a query thread. The parser, the checks and the evaluator
/// recurse once or a few times per level of the AST, and
/// [`check_nesting`] admits at most
/// [`MAX_NESTING_DEPTH`](super::nesting::MAX_NESTING_DEPTH) levels; the
/// deepest accepted query needs a few MiB in a debug build (see the test
/// `the_deepest_accepted_query_evaluates_on_a_query_thread`). The memory is
/// reserved, not committed: only pages a query touches are.
const QUERY_STACK_BYTES: usize = 32 << 20;

/// The Prometheus version seismo claims in buildinfo: Grafana picks its
/// Prometheus features from it.
const PROMETHEUS_VERSION: &str = "2.53.0";

#[derive(Clone)]
struct ApiState {
    source: Arc<dyn SeriesSource>,
    runner: QueryRunner,
}

/// The Prometheus API routes, with their own state, to merge into a router of
/// any state type: `/api/v1/query`, `/query_range`, `/series`, `/labels`,
/// `/label/{name}/values` (GET and form POST), and the answers Grafana probes
/// for (`/status/buildinfo`, `/status/runtimeinfo`, `/status/flags`,
/// `/metadata`, `/query_exemplars`). Queries run within `limits`.
pub fn routes<S: Clone + Send + Sync + 'static>(source: Arc<dyn SeriesSource>, limits: QueryLimits) -> Router<S> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(label_names).post(label_names))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .route("/api/v1/status/flags", get(|| async { success(Flags::new()) }))
        .route("/api/v1/metadata", get(|| async { success(Metadata::new()) }))
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
        .with_state(ApiState { source, runner: QueryRunner::new(limits) })
}

/// A failed API call, answered in Prometheus' error envelope.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (400 `bad_data`).
    #[error("{0}")]
    BadData(String),
    /// The query cannot be evaluated (422 `execution`), also when it would
    /// hold too many samples.
    #[error("{0}")]
    Execution(String),
    /// The query ran out of time (503 `timeout`).
    #[error("{0}")]
    Timeout(String),
    /// The store or the server failed (500 `internal`).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn param(name: &str, cause: impl std::fmt::Display) -> Self {
        ApiError::BadData(format!("invalid parameter {name:?}: {cause}"))
    }
}

impl From<EvalError> for ApiError {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::Execution(m) => ApiError::Execution(m),
            EvalError::TooManySamples => ApiError::Execution(e.to_string()),
            EvalError::Timeout(_) => ApiError::Timeout(e.to_string()),
            EvalError::Source(s) => ApiError::Internal(s.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            ApiError::BadData(_) => (StatusCode::BAD_REQUEST, ErrorType::BadData),
            ApiError::Execution(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorType::Execution),
            ApiError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorType::Timeout),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorType::Internal),
        };
        let body = serde_json::to_vec(&PromError::error(kind, self.to_string())).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// Request parameters from the query string and a form body, body first
/// (Go's `r.Form`), with repeated keys kept.
struct Params(Vec<(String, String)>);

impl Params {
    /// The first value of `name`, `""` when absent (Go's `FormValue`).
    fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    fn time_or(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            "" => Ok(default),
            v => parse_time(v).map_err(|e| ApiError::param(name, e)),
        }
    }

    /// A time a query is evaluated at: Prometheus' syntax, within the
    /// engine's time domain.
    fn eval_time(&self, name: &str, default: Option<i64>) -> Result<i64, ApiError> {
        let t = match (self.get(name), default) {
            ("", Some(d)) => d,
            (v, _) => parse_time(v).map_err(|e| ApiError::param(name, e))?,
        };
        if !time_in_range(t) {
            return Err(ApiError::param(name, time_out_of_range(t)));
        }
        Ok(t)
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let form_error = |e: String| ApiError::BadData(format!("error parsing form values: {e}"));
        let query = parse_form(req.uri().query().unwrap_or("")).map_err(form_error)?;
        let is_form = req.method() == Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let mut pairs = Vec::new();
        if is_form {
            let body = Bytes::from_request(req, state).await.map_err(|e| form_error(e.to_string()))?;
            pairs = parse_form(&String::from_utf8_lossy(&body)).map_err(form_error)?;
        }
        pairs.extend(query);
        Ok(Params(pairs))
    }
}

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Parses PromQL text from parameter `name`: its nesting is checked first
/// (the parser recurses), and a panic inside the parser (promql-parser turns
/// some out-of-range numbers into durations with a panicking conversion) is
/// a 400 for that query, not a failure of the server.
fn parse_promql(text: &str) -> Result<Expr, String> {
    check_nesting(text)?;
    catch_unwind(AssertUnwindSafe(|| parser::parse(text)))
        .unwrap_or_else(|_| Err("a number in the query is out of range".into()))
}

/// Parses the query and checks its times and durations, on a query thread.
fn parse_query(text: &str) -> Result<Expr, ApiError> {
    let expr = parse_promql(text).map_err(|e| ApiError::param("query", e))?;
    check_times(&expr).map_err(|e| ApiError::param("query", e))?;
    Ok(expr)
}

/// Runs `/query` and `/query_range` work: at most
/// [`MAX_CONCURRENT_QUERIES`] at once, each on its own thread with a
/// [`QUERY_STACK_BYTES`] stack and a [`Budget`] ending at its deadline.
#[derive(Clone)]
struct QueryRunner {
    limits: QueryLimits,
    slots: Arc<Semaphore>,
}

impl QueryRunner {
    fn new(limits: QueryLimits) -> Self {
        QueryRunner { limits, slots: Arc::new(Semaphore::new(MAX_CONCURRENT_QUERIES)) }
    }

    /// The deadline of a query arriving now: the server's `--query-timeout`,
    /// or the request's shorter `timeout` (Prometheus caps it the same way).
    fn deadline(&self, p: &Params) -> Result<Instant, ApiError> {
        let mut timeout = self.limits.timeout;
        let text = p.get("timeout");
        if !text.is_empty() {
            let ms = parse_duration(text).map_err(|e| ApiError::param("timeout", e))?;
            let ms = u64::try_from(ms).map_err(|_| ApiError::param("timeout", "timeout must not be negative"))?;
            timeout = timeout.min(Duration::from_millis(ms));
        }
        // A timeout too far out for the clock means "none": a century.
        let now = Instant::now();
        Ok(now.checked_add(timeout).unwrap_or(now + Duration::from_secs(100 * 365 * 86_400)))
    }

    /// Waits for a slot until `deadline`, then runs `work` on a query thread
    /// and answers what it returns. The slot is held by the thread, so a
    /// client that goes away does not free it before the work stops.
    async fn run<T: Send + 'static>(
        &self,
        deadline: Instant,
        work: impl FnOnce(&Budget) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot = tokio::time::timeout_at(deadline.into(), self.slots.clone().acquire_owned())
            .await
            .map_err(|_| ApiError::from(EvalError::Timeout("query queue")))?
            .map_err(|e| ApiError::Internal(format!("query slots closed: {e}")))?;
        let (tx, rx) = oneshot::channel();
        let max_samples = self.limits.max_samples;
        std::thread::Builder::new()
            .name("promql".into())
            .stack_size(QUERY_STACK_BYTES)
            .spawn(move || {
                let _slot: OwnedSemaphorePermit = slot;
                let budget = Budget::new(max_samples, deadline);
                let answer = catch_unwind(AssertUnwindSafe(|| work(&budget)))
                    .unwrap_or_else(|_| Err(ApiError::Internal("query evaluation panicked".into())));
                let _ = tx.send(answer);
            })
            .map_err(|e| ApiError::Internal(format!("cannot start a query thread: {e}")))?;
        rx.await.map_err(|_| ApiError::Internal("query thread ended without an answer".into()))?
    }
}

async fn query(State(st): State<ApiState>, p: Params) -> Result<Response, ApiError> {
    let t = p.eval_time("time", Some(now_ms()))?;
    let deadline = st.runner.deadline(&p)?;
    let text = p.get("query").to_string();
    // Cheap and iterative: refuse a too-deep query before it takes a slot.
    check_nesting(&text).map_err(|e| ApiError::param("query", e))?;
    let source = st.source.clone();
    let body = st
        .runner
        .run(deadline, move |budget| {
            let expr = parse_query(&text)?;
            success_body(query_result(&instant_query(&*source, &expr, t, budget)?))
        })
        .await?;
    Ok(json_response(body))
}

async fn query_range(State(st): State<ApiState>, p: Params) -> Result<Response, ApiError> {
    let start = p.eval_time("start", None)?;
    let end = p.eval_time("end", None)?;
    if end < start {
        return Err(ApiError::param("end", "end timestamp must not be before start time"));
    }
    let step = parse_duration(p.get("step")).map_err(|e| ApiError::param("step", e))?;
    if step <= 0 {
        return Err(ApiError::param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (i128::from(end) - i128::from(start)) / i128::from(step) > MAX_POINTS_PER_SERIES {
        return Err(ApiError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                .into(),
        ));
    }
    let deadline = st.runner.deadline(&p)?;
    let text = p.get("query").to_string();
    check_nesting(&text).map_err(|e| ApiError::param("query", e))?;
    let source = st.source.clone();
    let body = st
        .runner
        .run(deadline, move |budget| {
            let expr = parse_query(&text)?;
            let kind = match expr.value_type() {
                ValueType::Matrix => Some("range vector"),
                ValueType::String => Some("string"),
                _ => None,
            };
            if let Some(kind) = kind {
                return Err(ApiError::param(
                    "query",
                    format!("invalid expression type {kind:?} for range query, must be Scalar or instant Vector"),
                ));
            }
            success_body(query_result(&range_query(&*source, &expr, start, end, step, budget)?))
        })
        .await?;
    Ok(json_response(body))
}

/// Runs blocking store work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?
}

/// The `match[]` selectors, each a series selector (`up{job="a"}`).
fn parse_matchers(values: &[&str]) -> Result<Vec<Matchers>, ApiError> {
    values
        .iter()
        .map(|s| match parse_promql(s).map_err(ApiError::BadData)? {
            Expr::VectorSelector(vs) => Ok(selector_matchers(&vs)),
            _ => Err(ApiError::BadData(format!("invalid parameter \"match[]\": {s:?} is not a series selector"))),
        })
        .collect()
}

/// The metadata endpoints' common part: the label sets of the series matching
/// any of `match[]` (all series without it) in `[start, end]`.
async fn matching_series(st: ApiState, p: &Params, required: bool) -> Result<BTreeSet<Labels>, ApiError> {
    let raw = p.all("match[]");
    if required && raw.is_empty() {
        return Err(ApiError::BadData("no match[] parameter provided".into()));
    }
    let start = p.time_or("start", MIN_TIME_MS)?;
    let end = p.time_or("end", MAX_TIME_MS)?;
    let mut sets = parse_matchers(&raw)?;
    if sets.is_empty() {
        let any_name = Matcher::new_matcher(T_EQL_REGEX, "__name__".into(), ".+".into()).map_err(ApiError::Internal)?;
        sets.push(Matchers::new(vec![any_name]));
    }
    blocking(move || {
        let mut out = BTreeSet::new();
        for m in &sets {
            out.extend(st.source.select_labels(m, start, end).map_err(|e| ApiError::Internal(e.to_string()))?);
        }
        Ok(out)
    })
    .await
}

/// Prometheus' optional `limit` (0 = none).
fn limit(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        "" => Ok(0),
        v => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n as usize),
            Ok(_) => Err(ApiError::param("limit", "limit must be non-negative")),
            Err(_) => Err(ApiError::param("limit", format!("cannot parse {v:?} to a valid limit"))),
        },
    }
}

fn truncate<T>(mut v: Vec<T>, limit: usize) -> Vec<T> {
    if limit > 0 {
        v.truncate(limit);
    }
    v
}

async fn series(State(st): State<ApiState>, p: Params) -> Result<Response, ApiError> {
    let limit = limit(&p)?;
    let found = truncate(matching_series(st, &p, true).await?.into_iter().collect(), limit);
    Ok(success(found.iter().map(labels_map).collect::<Vec<_>>()))
}

async fn label_names(State(st): State<ApiState>, p: Params) -> Result<Response, ApiError> {
    let limit = limit(&p)?;
    let found = matching_series(st, &p, false).await?;
    let names: BTreeSet<&str> = found.iter().flat_map(|l| l.iter().map(|(n, _)| n.as_str())).collect();
    Ok(success(truncate(names.into_iter().collect(), limit)))
}

async fn label_values(State(st): State<ApiState>, Path(name): Path<String>, p: Params) -> Result<Response, ApiError> {
    if name.is_empty() {
        return Err(ApiError::BadData(format!("invalid label name: {name:?}")));
    }
    let limit = limit(&p)?;
    let found = matching_series(st, &p, false).await?;
    let values: BTreeSet<&str> = found
        .iter()
        .filter_map(|l| l.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()))
        .filter(|v| !v.is_empty())
        .collect();
    Ok(success(truncate(values.into_iter().collect(), limit)))
}

async fn exemplars(p: Params) -> Result<Response, ApiError> {
    // seismo keeps no exemplars; the parameters are still checked.
    p.time_or("start", MIN_TIME_MS)?;
    p.time_or("end", MAX_TIME_MS)?;
    Ok(success(Vec::<ExemplarSeries>::new()))
}

async fn buildinfo() -> Response {
    success(BuildInfo {
        version: PROMETHEUS_VERSION.into(),
        revision: "seismo".into(),
        branch: "HEAD".into(),
        build_user: "seismo".into(),
        build_date: String::new(),
        go_version: "none".into(),
        application: Some("seismo".into()),
        seismo_version: Some(env!("CARGO_PKG_VERSION").into()),
    })
}

async fn runtimeinfo() -> Response {
    success(RuntimeInfo { reload_config_success: true, ..RuntimeInfo::default() })
}

/// `{"status":"success","data":<data>}`.
fn success<T: Serialize>(data: T) -> Response {
    match success_body(data) {
        Ok(body) => json_response(body),
        Err(e) => e.into_response(),
    }
}

/// The bytes of `{"status":"success","data":<data>}`. Query results are
/// written on their query thread, so a large matrix costs the query's own
/// thread, not the server's.
fn success_body<T: Serialize>(data: T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(&PromResponse::success(data))
        .map_err(|e| ApiError::Internal(format!("failed writing the answer: {e}")))
}

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn labels_map(labels: &Labels) -> wire::Labels {
    labels.iter().cloned().collect()
}

/// A query's value as Prometheus answers it: `{"resultType":...,"result":...}`.
fn query_result(v: &QueryValue) -> QueryResult {
    match v {
        QueryValue::Scalar { t, v } => QueryResult::Scalar(Point { t_ms: *t, v: *v }),
        QueryValue::String { t, v } => QueryResult::String(StringPoint { t_ms: *t, v: v.clone() }),
        QueryValue::Vector(samples) => QueryResult::Vector(
            samples
                .iter()
                .map(|s| Sample { metric: labels_map(&s.labels), value: Point { t_ms: s.t, v: s.v } })
                .collect(),
        ),
        QueryValue::Matrix(series) => QueryResult::Matrix(
            series
                .iter()
                .map(|s| RangeSeries {
                    metric: labels_map(&s.labels),
                    values: s.samples.iter().map(|&(t_ms, v)| Point { t_ms, v }).collect(),
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::source::{MemSource, Series};
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app() -> Router {
        app_with(QueryLimits::default())
    }

    fn app_with(limits: QueryLimits) -> Router {
        let labels = |pairs: &[(&str, &str)]| {
            let mut l: Labels = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            l.sort();
            l
        };
        // up{job="api"} = 1 and up{job="db"} = 0 every 15 s over 0..=600 s;
        // http_requests_total{job="api"} counts 0, 15, 30, ... (1 per second).
        let every_15s = |f: fn(i64) -> f64| (0..=40).map(|i| (i * 15_000, f(i))).collect::<Vec<_>>();
        let source = MemSource::new(vec![
            Series { labels: labels(&[("__name__", "up"), ("job", "api")]), samples: every_15s(|_| 1.0) },
            Series { labels: labels(&[("__name__", "up"), ("job", "db")]), samples: every_15s(|_| 0.0) },
            Series {
                labels: labels(&[("__name__", "http_requests_total"), ("job", "api")]),
                samples: every_15s(|i| (i * 15) as f64),
            },
        ]);
        routes(Arc::new(source), limits)
    }

    async fn call(req: Request<Body>) -> (StatusCode, serde_json::Value, String) {
        call_app(app(), req).await
    }

    async fn call_app(app: Router, req: Request<Body>) -> (StatusCode, serde_json::Value, String) {
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        (status, json, text)
    }

    async fn get(uri: &str) -> (StatusCode, serde_json::Value, String) {
        call(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    async fn post(uri: &str, form: &str) -> (StatusCode, serde_json::Value, String) {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap();
        call(req).await
    }

    #[tokio::test]
    async fn instant_query_answers_prometheus_exact_envelope() {
        let (status, _, text) = get("/api/v1/query?query=up%7Bjob%3D%22api%22%7D&time=600.5").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            text,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"api"},"value":[600.5,"1"]}]}}"#
        );
        let (_, _, text) = get("/api/v1/query?query=1%2F0&time=1").await;
        assert_eq!(text, r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#);
    }

    #[tokio::test]
    async fn post_form_and_rfc3339_time() {
        // 1970-01-01T00:09:00+00:00 is 540 s: the counter's value there is 540; its
        // rate over [1m] is 1 per second up to float rounding (45 * (60/45) / 60).
        let form = "query=http_requests_total%20%2B%200&time=1970-01-01T00:09:00%2B00:00";
        let (status, json, _) = post("/api/v1/query", form).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["data"]["result"][0]["metric"], serde_json::json!({"job": "api"}));
        assert_eq!(json["data"]["result"][0]["value"], serde_json::json!([540, "540"]));
        let (_, json, _) = post("/api/v1/query", "query=rate(http_requests_total[1m])&time=600").await;
        let rate: f64 = json["data"]["result"][0]["value"][1].as_str().unwrap().parse().unwrap();
        assert!((rate - 1.0).abs() < 1e-12, "{rate}");
    }

    #[tokio::test]
    async fn range_query_returns_a_matrix_per_step() {
        let (status, json, _) = post("/api/v1/query_range", "query=sum(up)&start=0&end=60&step=30s").await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["data"]["resultType"], "matrix");
        assert_eq!(json["data"]["result"][0]["metric"], serde_json::json!({}));
        assert_eq!(json["data"]["result"][0]["values"], serde_json::json!([[0, "1"], [30, "1"], [60, "1"]]));
        // Query string and body merge; the body wins for a repeated single value.
        let (_, json, _) = post("/api/v1/query_range?query=up&step=1h", "start=0&end=60&step=15").await;
        assert_eq!(json["data"]["result"][0]["values"].as_array().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn bad_requests_are_bad_data_with_prometheus_wording() {
        let (status, json, _) = get("/api/v1/query_range?query=up&start=x&end=60&step=15").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            json,
            serde_json::json!({"status": "error", "errorType": "bad_data",
                "error": "invalid parameter \"start\": cannot parse \"x\" to a valid timestamp"})
        );
        let (status, json, _) = get("/api/v1/query_range?query=up&start=0&end=86400&step=1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            json["error"],
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
        );
        let (status, json, _) = get("/api/v1/query_range?query=up&start=10&end=0&step=1").await;
        assert_eq!(
            (status, json["error"].as_str().unwrap()),
            (StatusCode::BAD_REQUEST, "invalid parameter \"end\": end timestamp must not be before start time")
        );
        let (_, json, _) = get("/api/v1/query_range?query=up&start=0&end=10&step=0").await;
        assert!(json["error"].as_str().unwrap().starts_with("invalid parameter \"step\": zero or negative"), "{json}");
        let (status, json, _) = get("/api/v1/query?query=sum(").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["errorType"], "bad_data");
        assert!(json["error"].as_str().unwrap().starts_with("invalid parameter \"query\": "), "{json}");
        let (status, json, _) = get("/api/v1/query_range?query=up%5B5m%5D&start=0&end=10&step=1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            json["error"],
            "invalid parameter \"query\": invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
        );
        let (status, _, _) = get("/api/v1/query?query=up&time=soon").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn evaluation_errors_are_execution_errors() {
        // on() matches both `up` series to the one `vector(1)` series: one-to-one
        // matching with two left series is "multiple matches", a 422.
        let (status, json, _) = get("/api/v1/query?query=up%20%2B%20on()%20vector(1)&time=10").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json["errorType"], "execution");
    }

    #[tokio::test]
    async fn instant_query_of_a_range_selector_is_a_matrix() {
        let (_, json, _) = get("/api/v1/query?query=up%7Bjob%3D%22db%22%7D%5B30s%5D&time=600").await;
        assert_eq!(json["data"]["resultType"], "matrix");
        assert_eq!(json["data"]["result"][0]["values"], serde_json::json!([[585, "0"], [600, "0"]]));
    }

    #[tokio::test]
    async fn series_with_repeated_match_params() {
        let (status, json, _) =
            get("/api/v1/series?match[]=up%7Bjob%3D%22db%22%7D&match%5B%5D=http_requests_total&start=0&end=600").await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(
            json["data"],
            serde_json::json!([{"__name__": "http_requests_total", "job": "api"}, {"__name__": "up", "job": "db"}])
        );
        let (status, json, _) = post("/api/v1/series", "match[]=up&match[]=up").await;
        assert_eq!((status, json["data"].as_array().unwrap().len()), (StatusCode::OK, 2));
        let (status, json, _) = get("/api/v1/series").await;
        assert_eq!(
            (status, json["error"].as_str().unwrap()),
            (StatusCode::BAD_REQUEST, "no match[] parameter provided")
        );
        // No sample in the range: no series.
        let (_, json, _) = get("/api/v1/series?match[]=up&start=10000&end=20000").await;
        assert_eq!(json["data"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn label_names_and_values() {
        let (_, json, _) = get("/api/v1/labels").await;
        assert_eq!(json["data"], serde_json::json!(["__name__", "job"]));
        let (_, json, _) = get("/api/v1/label/__name__/values").await;
        assert_eq!(json["data"], serde_json::json!(["http_requests_total", "up"]));
        let (_, json, _) = get("/api/v1/label/job/values?match[]=http_requests_total").await;
        assert_eq!(json["data"], serde_json::json!(["api"]));
        let (_, json, _) = get("/api/v1/label/job/values?limit=1").await;
        assert_eq!(json["data"], serde_json::json!(["api"]));
    }

    #[tokio::test]
    async fn probes_grafana_sends() {
        let (status, json, _) = get("/api/v1/status/buildinfo").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["data"]["version"], PROMETHEUS_VERSION);
        assert_eq!(json["data"]["seismoVersion"], env!("CARGO_PKG_VERSION"));
        let (_, _, text) = get("/api/v1/metadata").await;
        assert_eq!(text, r#"{"status":"success","data":{}}"#);
        let (_, _, text) = post("/api/v1/query_exemplars", "query=up&start=0&end=10").await;
        assert_eq!(text, r#"{"status":"success","data":[]}"#);
    }

    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// Regression (issue 14): these overflowed the stack and aborted the process.
    #[tokio::test]
    async fn too_deep_queries_are_bad_data_before_parsing() {
        for q in [
            format!("{}up{}", "abs(".repeat(2000), ")".repeat(2000)),
            format!("1{}", "+1".repeat(4999)),
            "(".repeat(100_000),
        ] {
            let (status, json, _) = post("/api/v1/query", &format!("query={}", enc(&q))).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(json["errorType"], "bad_data");
            let msg = json["error"].as_str().unwrap();
            assert!(msg.starts_with("invalid parameter \"query\": query is nested too deeply: more than 256"), "{msg}");
        }
        let (status, json, _) = post("/api/v1/series", &format!("match[]={}", enc(&"(".repeat(5000)))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    }

    /// The stack of a query thread holds the deepest queries the nesting
    /// check accepts, of every recursive shape (in a debug build the deepest
    /// needs about 4 MiB; the thread has 32).
    #[tokio::test]
    async fn the_deepest_accepted_query_evaluates_on_a_query_thread() {
        let n = crate::promql::nesting::MAX_NESTING_DEPTH - 2;
        for q in [
            format!("{}vector(1){}", "abs(".repeat(n), ")".repeat(n)),
            format!("{}vector(1){}", "sum(".repeat(n), ")".repeat(n)),
            format!("{}vector(1){}", "topk(1,".repeat(n), ")".repeat(n)),
            format!("{}vector(1){}", "clamp(".repeat(n), ",0,1)".repeat(n)),
            format!("{}vector(1){}", "label_replace(".repeat(n), r#","a","b","c","d")"#.repeat(n)),
            format!("{}vector(1){}", "(".repeat(n), ")".repeat(n)),
            format!("vector(1){}", " or vector(1)".repeat(n)),
            format!("1{}", "+1".repeat(n)),
            format!("{}vector(1){}", "max_over_time((".repeat(n / 3), ")[1m:10s])".repeat(n / 3)),
        ] {
            crate::promql::nesting::check_nesting(&q).unwrap();
            let (status, json, _) = get(&format!("/api/v1/query_range?query={}&start=0&end=60&step=15", enc(&q))).await;
            assert_eq!(status, StatusCode::OK, "{json}");
        }
    }

    #[tokio::test]
    async fn sample_limit_is_an_execution_error_before_allocating() {
        let small = || app_with(QueryLimits { max_samples: 1000, ..QueryLimits::default() });
        let too_many = "query processing would load too many samples into memory in query execution";
        for uri in [
            // 31.5 billion inner steps: refused before the grid is allocated.
            format!("/api/v1/query?query={}&time=600", enc("max_over_time(vector(1)[1y:1ms])")),
            format!("/api/v1/query?query={}&time=600", enc("vector(1)[100y:1ms]")),
            // 3 series x 2,001 steps of a range query.
            format!("/api/v1/query_range?query={}&start=0&end=2000&step=1", enc("up + 0")),
        ] {
            let (status, json, _) = call_app(small(), Request::get(&uri).body(Body::empty()).unwrap()).await;
            assert_eq!((status, json["errorType"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("execution")));
            assert_eq!(json["error"], too_many);
        }
        // Samples a selector loads count too: 2 series x 41 samples > 50.
        let tiny = app_with(QueryLimits { max_samples: 50, ..QueryLimits::default() });
        let uri = format!("/api/v1/query?query={}&time=600", enc("count_over_time(up[10m])"));
        let (status, json, _) = call_app(tiny, Request::get(&uri).body(Body::empty()).unwrap()).await;
        assert_eq!((status, json["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(too_many)));
        let uri = format!("/api/v1/query?query={}&time=600", enc("count_over_time(up[5m:1s])"));
        let (status, json, _) = call_app(small(), Request::get(&uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["data"]["result"][0]["value"][1], "300");
    }

    #[tokio::test]
    async fn out_of_range_times_and_durations_are_bad_data() {
        for (uri, param) in [
            ("/api/v1/query_range?query=up&start=-9.2e15&end=9.2e15&step=1", "start"),
            ("/api/v1/query?query=up&time=9e15", "time"),
            ("/api/v1/query?query=up%20offset%201e300", "query"),
            ("/api/v1/query?query=rate(up%5B1e300%5D)", "query"),
            ("/api/v1/query?query=up%20offset%201000000y", "query"),
            ("/api/v1/query?query=up%20%40%201e15", "query"),
            ("/api/v1/query?query=up&timeout=-1s", "timeout"),
        ] {
            let (status, json, _) = get(uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {json}");
            let msg = json["error"].as_str().unwrap();
            assert!(msg.starts_with(&format!("invalid parameter \"{param}\"")), "{uri}: {msg}");
        }
    }

    #[tokio::test]
    async fn a_query_waiting_past_its_deadline_in_the_queue_times_out() {
        let runner = QueryRunner::new(QueryLimits::default());
        let held = runner.slots.clone().acquire_many_owned(MAX_CONCURRENT_QUERIES as u32).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(20);
        let got = runner.run(deadline, |_| Ok(())).await.unwrap_err();
        assert!(matches!(&got, ApiError::Timeout(m) if m == "query timed out in query queue"), "{got:?}");
        drop(held);
        // A free slot runs the work on a query thread, with its budget.
        let deadline = Instant::now() + Duration::from_secs(60);
        let name = runner.run(deadline, |_| Ok(std::thread::current().name().map(str::to_string))).await.unwrap();
        assert_eq!(name.as_deref(), Some("promql"));
    }

    #[tokio::test]
    async fn timeout_parameter_shortens_the_server_limit_only() {
        let runner = QueryRunner::new(QueryLimits { timeout: Duration::from_secs(10), ..QueryLimits::default() });
        let params = |t: &str| Params(vec![("timeout".into(), t.into())]);
        // The deadline is `now + timeout` for a `now` between these two instants.
        let timeout_of = |p: &Params| {
            let before = Instant::now();
            let deadline = runner.deadline(p).unwrap();
            let after = Instant::now();
            (deadline - after, deadline - before)
        };
        let within = |(lo, hi): (Duration, Duration), want: Duration| lo <= want && want <= hi;
        assert!(within(timeout_of(&params("1s")), Duration::from_secs(1)));
        assert!(within(timeout_of(&params("1h")), Duration::from_secs(10)), "capped at the server's 10 s");
        assert!(within(timeout_of(&params("")), Duration::from_secs(10)));
        assert!(runner.deadline(&params("-1")).is_err());
    }
}
