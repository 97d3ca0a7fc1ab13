//! Handlers of Jaeger's api_v3 HTTP endpoints (`/api/v3/...`), which the
//! current Jaeger UI and Jaeger v2's query API speak.
//!
//! The contract is Jaeger's HTTP gateway (`apiv3/http_gateway.go`,
//! `apiv3/query_parser.go`): canonical lowerCamelCase parameters
//! (`query.serviceName`, `query.startTimeMin`, `spanKind`, `startTime`) with
//! their deprecated snake_case aliases (`query.service_name`, `span_kind`,
//! `start_time`, and `query.num_traces` for `query.searchDepth`), the canonical
//! name winning; RFC 3339 times; Go durations; `query.attributes` as a JSON
//! object of strings; traces as OTLP/JSON wrapped in `{"result": TracesData}`
//! (grpc-gateway's stream wrapper); errors as `{"error":{"httpCode","message"}}`
//! (see [`V3Error`]). Where seismo differs:
//! - `query.serviceName` may be absent: the store can search every service,
//!   which Jaeger allows for backends that declare it.
//! - `query.filter` (Jaeger's structured filters, off by default behind a
//!   feature gate) is refused with a 400 naming it.
//! - `query.searchDepth` must be positive and is capped at [`MAX_LIMIT`];
//!   `query.durationMax` may not be below `query.durationMin`.
//! - `startTime`/`endTime` of a trace fetch and `rawTraces` are validated but
//!   change nothing: the id alone locates a trace and the OTLP answer is the
//!   stored data, unadjusted, either way.

use std::collections::BTreeMap;

mod otlp_json;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::Response;
use seismo_api::v3::{Operation, Operations, Services, TraceSummaries, TracesData, TracesResult};
use seismo_store::{span_kind, TraceId, TraceQuery};
use serde::Serialize;

use crate::error::{QueryError, V3Error};
use crate::request::go_syntax::{parse_go_bool, parse_go_duration, parse_go_int, parse_rfc3339_nano};
use crate::request::query_params::MAX_LIMIT;
use crate::request::{blocking, json_reply, QueryParams};
use crate::state::QueryState;
use otlp_json::{base64_decode_any, trace_summary, traces_data};

/// The decoded query string of an api_v3 request; a malformed one is a 400
/// in the v3 envelope.
pub(crate) struct V3Params(QueryParams);

impl<S: Send + Sync> FromRequestParts<S> for V3Params {
    type Rejection = V3Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, V3Error> {
        Ok(V3Params(QueryParams::from_request_parts(parts, state).await?))
    }
}

/// The `query.*` parameters of `/api/v3/traces` and `/api/v3/trace-summaries`.
pub(crate) struct FindTraces(TraceQuery);

impl<S: Send + Sync> FromRequestParts<S> for FindTraces {
    type Rejection = V3Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, V3Error> {
        let V3Params(params) = V3Params::from_request_parts(parts, state).await?;
        Ok(FindTraces(parse_find_traces(&params)?))
    }
}

/// A parameter under its canonical name and the deprecated alias Jaeger still reads.
#[derive(Clone, Copy)]
pub(crate) struct Param {
    pub canonical: &'static str,
    pub deprecated: &'static str,
}

const fn param(canonical: &'static str, deprecated: &'static str) -> Param {
    Param { canonical, deprecated }
}

pub(crate) const TRACE_ID: &str = "trace_id";
pub(crate) const SERVICE: &str = "service";
pub(crate) const SPAN_KIND: Param = param("spanKind", "span_kind");
pub(crate) const START_TIME: Param = param("startTime", "start_time");
pub(crate) const END_TIME: Param = param("endTime", "end_time");
pub(crate) const RAW_TRACES: Param = param("rawTraces", "raw_traces");
pub(crate) const SERVICE_NAME: Param = param("query.serviceName", "query.service_name");
pub(crate) const OPERATION_NAME: Param = param("query.operationName", "query.operation_name");
pub(crate) const START_TIME_MIN: Param = param("query.startTimeMin", "query.start_time_min");
pub(crate) const START_TIME_MAX: Param = param("query.startTimeMax", "query.start_time_max");
pub(crate) const SEARCH_DEPTH: Param = param("query.searchDepth", "query.search_depth");
/// A second deprecated alias of `query.searchDepth`, read last.
pub(crate) const NUM_TRACES: &str = "query.num_traces";
pub(crate) const DURATION_MIN: Param = param("query.durationMin", "query.duration_min");
pub(crate) const DURATION_MAX: Param = param("query.durationMax", "query.duration_max");
pub(crate) const QUERY_RAW_TRACES: Param = param("query.rawTraces", "query.raw_traces");
pub(crate) const ATTRIBUTES: &str = "query.attributes";
pub(crate) const FILTER: &str = "query.filter";

/// Jaeger's `defaultSearchDepth`.
pub(crate) const DEFAULT_SEARCH_DEPTH: usize = 100;

/// Jaeger's 404 text when a fetch or a search finds nothing.
pub(crate) const NO_TRACES_FOUND: &str = "No traces found";

/// The value and the name it came under: canonical first, then the alias
/// (Go's `getQueryParam`; an empty value counts as absent).
fn lookup(params: &QueryParams, p: Param) -> Option<(&str, &'static str)> {
    params.get(p.canonical).map(|v| (v, p.canonical)).or_else(|| params.get(p.deprecated).map(|v| (v, p.deprecated)))
}

fn parse_with<T, E: std::fmt::Display>(
    params: &QueryParams,
    p: Param,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, QueryError> {
    lookup(params, p).map(|(v, name)| parse(v).map_err(|e| QueryError::malformed(name, e))).transpose()
}

/// Parses the search parameters of `/api/v3/traces` and
/// `/api/v3/trace-summaries`, in Jaeger's order of checks.
///
/// # Errors
/// `QueryError::BadRequest`: `malformed parameter <name>: <cause>` for a value
/// that does not parse, `query.startTimeMin and query.startTimeMax are
/// required`, `query.startTimeMin must be before query.startTimeMax`.
pub(crate) fn parse_find_traces(params: &QueryParams) -> Result<TraceQuery, QueryError> {
    let mut query = TraceQuery {
        service: lookup(params, SERVICE_NAME).map(|(v, _)| v.to_string()),
        operation: lookup(params, OPERATION_NAME).map(|(v, _)| v.to_string()),
        ..TraceQuery::default()
    };
    if let Some(text) = params.get(ATTRIBUTES) {
        let attrs: BTreeMap<String, String> =
            serde_json::from_str(text).map_err(|e| QueryError::malformed(ATTRIBUTES, e))?;
        query.tags = attrs.into_iter().collect();
    }
    if params.get(FILTER).is_some() {
        return Err(QueryError::malformed(FILTER, "structured filters are not supported by seismo"));
    }
    let (Some((min_text, min_name)), Some((max_text, max_name))) =
        (lookup(params, START_TIME_MIN), lookup(params, START_TIME_MAX))
    else {
        return Err(QueryError::BadRequest(format!(
            "{} and {} are required",
            START_TIME_MIN.canonical, START_TIME_MAX.canonical
        )));
    };
    let min = parse_rfc3339_nano(min_text).map_err(|e| QueryError::malformed(min_name, e))?;
    let max = parse_rfc3339_nano(max_text).map_err(|e| QueryError::malformed(max_name, e))?;
    if min >= max {
        return Err(QueryError::BadRequest(format!(
            "{} must be before {}",
            START_TIME_MIN.canonical, START_TIME_MAX.canonical
        )));
    }
    (query.start_min_ns, query.start_max_ns) = (Some(min), Some(max));

    let depth = lookup(params, SEARCH_DEPTH).or_else(|| params.get(NUM_TRACES).map(|v| (v, NUM_TRACES)));
    query.limit = match depth {
        None => DEFAULT_SEARCH_DEPTH,
        Some((text, name)) => match parse_go_int(text, 64).map_err(|e| QueryError::malformed(name, e))? {
            n if n <= 0 => return Err(QueryError::malformed(name, format!("must be positive, got {n}"))),
            n => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
        },
    };
    query.min_duration_ns = parse_with(params, DURATION_MIN, parse_go_duration)?;
    query.max_duration_ns = parse_with(params, DURATION_MAX, parse_go_duration)?;
    if let (Some(min), Some(max)) = (query.min_duration_ns, query.max_duration_ns) {
        if max < min {
            let name = lookup(params, DURATION_MAX).map_or(DURATION_MAX.canonical, |(_, name)| name);
            return Err(QueryError::malformed(name, "must not be below query.durationMin"));
        }
    }
    parse_with(params, QUERY_RAW_TRACES, parse_go_bool)?;
    Ok(query)
}

/// Parses a trace id as Jaeger's `TraceIDFromString`: 1 to 32 hex digits
/// (left-padded), or 8 or 16 bytes in base64 (standard or URL-safe, padded or not).
///
/// # Errors
/// `malformed parameter trace_id: <cause>`.
pub(crate) fn parse_trace_id(text: &str) -> Result<TraceId, QueryError> {
    let hex_error = match text.parse::<TraceId>() {
        Ok(id) => return Ok(id),
        Err(e) => e,
    };
    let from_base64 = (text.len() <= 24).then(|| base64_decode_any(text)).flatten().and_then(|bytes| {
        let mut id = [0u8; 16];
        match bytes.len() {
            8 | 16 => id[16 - bytes.len()..].copy_from_slice(&bytes),
            _ => return None,
        }
        Some(TraceId(id))
    });
    from_base64.ok_or_else(|| QueryError::malformed(TRACE_ID, hex_error))
}

/// `GET /api/v3/services` -> `{"services": [...]}`, sorted.
pub(crate) async fn services(State(state): State<QueryState>) -> Result<Response, V3Error> {
    let services = blocking(&state, |store| store.services()).await?;
    reply(&Services { services })
}

/// `GET /api/v3/operations?service=&spanKind=` -> `{"operations": [{"name", "spanKind"}]}`.
/// `spanKind` is the lowercase kind; spans of unspecified kind count as
/// `internal`, as Jaeger's gateway writes them.
pub(crate) async fn operations(
    State(state): State<QueryState>,
    V3Params(params): V3Params,
) -> Result<Response, V3Error> {
    let service = params.get(SERVICE).unwrap_or_default().to_string();
    let kind = parse_with(&params, SPAN_KIND, |text| {
        span_kind::from_name(&text.to_ascii_lowercase()).ok_or_else(|| format!("unsupported span kind {text:?}"))
    })?;
    let mut operations: Vec<Operation> = blocking(&state, move |store| store.operations(&service))
        .await?
        .into_iter()
        .filter(|op| kind.is_none_or(|k| k == op.span_kind))
        .map(|op| Operation {
            span_kind: match op.span_kind {
                span_kind::UNSPECIFIED => span_kind::name(span_kind::INTERNAL),
                k => span_kind::name(k),
            }
            .to_string(),
            name: op.name,
        })
        .collect();
    operations.dedup();
    reply(&Operations { operations })
}

/// `GET /api/v3/traces?query.*=` -> `{"result": TracesData}` of every matching
/// trace, newest first; 404 `No traces found` when none matches (as Jaeger).
pub(crate) async fn find_traces(
    State(state): State<QueryState>,
    FindTraces(query): FindTraces,
) -> Result<Response, V3Error> {
    // Rows -> wire types on the blocking pool too: big answers cost CPU.
    let traces = blocking(&state, move |store| Ok(traces_data(&store.find_traces(&query)?))).await?;
    traces_reply(traces)
}

/// `GET /api/v3/trace-summaries?query.*=` -> `{"summaries": [...]}`: what the
/// Jaeger UI's search page lists. Empty results are a 200 with no summaries.
pub(crate) async fn trace_summaries(
    State(state): State<QueryState>,
    FindTraces(query): FindTraces,
) -> Result<Response, V3Error> {
    let summaries = blocking(&state, move |store| {
        Ok(store.find_traces(&query)?.iter().filter_map(|spans| trace_summary(spans)).collect())
    })
    .await?;
    reply(&TraceSummaries { summaries })
}

/// `GET /api/v3/traces/{trace_id}?startTime=&endTime=&rawTraces=` ->
/// `{"result": TracesData}`; 404 `No traces found` when unknown.
pub(crate) async fn get_trace(
    State(state): State<QueryState>,
    V3Params(params): V3Params,
    trace_id: Result<Path<String>, PathRejection>,
) -> Result<Response, V3Error> {
    let Path(text) = trace_id.map_err(|e| QueryError::malformed(TRACE_ID, e))?;
    let id = parse_trace_id(&text)?;
    parse_with(&params, START_TIME, parse_rfc3339_nano)?;
    parse_with(&params, END_TIME, parse_rfc3339_nano)?;
    parse_with(&params, RAW_TRACES, parse_go_bool)?;
    let traces = blocking(&state, move |store| Ok(traces_data(&[store.trace(id)?]))).await?;
    traces_reply(traces)
}

fn traces_reply(traces: TracesData) -> Result<Response, V3Error> {
    if traces.resource_spans.is_empty() {
        return Err(QueryError::NotFound(NO_TRACES_FOUND.to_string()).into());
    }
    reply(&TracesResult { result: traces })
}

fn reply<T: Serialize>(body: &T) -> Result<Response, V3Error> {
    Ok(json_reply(&QueryParams::default(), body)?)
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::{json, Value};

    use super::*;
    use crate::router::router;
    use crate::router::tests::{get, test_store, TRACE_A, TRACE_B};
    use crate::state::QueryState;

    /// A window that holds the fixture (spans start about a minute ago).
    const WINDOW: &str = "query.startTimeMin=2000-01-01T00:00:00Z&query.startTimeMax=2100-01-01T00:00:00Z";

    async fn app() -> (tempfile::TempDir, axum::Router) {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path()).await;
        (dir, router(QueryState::new(store)))
    }

    fn assert_v3_error(status: StatusCode, body: &Value, code: u16, needle: &str) {
        assert_eq!(status.as_u16(), code, "{body}");
        assert_eq!(body["error"]["httpCode"], code, "{body}");
        assert_eq!(body["error"].as_object().unwrap().len(), 2, "only httpCode and message: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "message {message:?} lacks {needle:?}");
    }

    /// Trace ids of an OTLP answer, in order of first appearance.
    fn trace_ids(body: &Value) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for rs in body["result"]["resourceSpans"].as_array().unwrap() {
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for span in ss["spans"].as_array().unwrap() {
                    let id = span["traceId"].as_str().unwrap().to_string();
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
        ids
    }

    #[tokio::test]
    async fn services_and_operations() {
        let (_dir, app) = app().await;
        let (status, body) = get(&app, "/api/v3/services").await;
        assert_eq!((status, body), (StatusCode::OK, json!({"services": ["backend", "frontend"]})));

        let (status, body) = get(&app, "/api/v3/operations?service=frontend").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"operations": [
                {"name": "GET /checkout", "spanKind": "server"},
                {"name": "GET /health", "spanKind": "server"},
            ]})
        );
        for (query, want) in [
            ("service=backend&spanKind=client", json!([{"name": "SELECT", "spanKind": "client"}])),
            ("service=backend&span_kind=CLIENT", json!([{"name": "SELECT", "spanKind": "client"}])),
            ("service=backend&spanKind=server", json!([])),
            ("service=nobody", json!([])),
            ("", json!([])),
        ] {
            let (status, body) = get(&app, &format!("/api/v3/operations?{query}")).await;
            assert_eq!((status, &body["operations"]), (StatusCode::OK, &want), "{query}");
        }
        let (status, body) = get(&app, "/api/v3/operations?service=frontend&spanKind=up").await;
        assert_v3_error(status, &body, 400, "malformed parameter spanKind");
        let (status, body) = get(&app, "/api/v3/operations?service=frontend&span_kind=up").await;
        assert_v3_error(status, &body, 400, "malformed parameter span_kind");
    }

    #[tokio::test]
    async fn trace_by_id_is_otlp_json() {
        let (_dir, app) = app().await;
        let (status, body) = get(&app, &format!("/api/v3/traces/{}", TRACE_A.to_uppercase())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let resource_spans = body["result"]["resourceSpans"].as_array().unwrap();
        assert_eq!(resource_spans.len(), 2, "one per service: {body}");
        let frontend = &resource_spans[0];
        assert_eq!(
            frontend["resource"],
            json!({"attributes": [
                {"key": "service.name", "value": {"stringValue": "frontend"}},
                {"key": "host.name", "value": {"stringValue": "box-1"}},
            ]})
        );
        assert_eq!(frontend["scopeSpans"][0]["scope"], json!({"name": "seismo-test", "version": "0.1"}));
        let root = &frontend["scopeSpans"][0]["spans"][0];
        let start = crate::router::tests::base_ns();
        assert_eq!(
            *root,
            json!({
                "traceId": TRACE_A,
                "spanId": "00000000000000a1",
                "name": "GET /checkout",
                "kind": 2,
                "startTimeUnixNano": start.to_string(),
                "endTimeUnixNano": (start + 250_000_000).to_string(),
                "attributes": [
                    {"key": "http.status_code", "value": {"intValue": "503"}},
                    {"key": "http.method", "value": {"stringValue": "GET"}},
                ],
                "events": [{
                    "timeUnixNano": (start + 1_000).to_string(),
                    "name": "retry",
                    "attributes": [{"key": "attempt", "value": {"intValue": "2"}}],
                }],
                "status": {"message": "upstream down", "code": 2},
            })
        );
        let child = &resource_spans[1]["scopeSpans"][0]["spans"][0];
        assert_eq!(child["parentSpanId"], "00000000000000a1");
        assert_eq!(child["kind"], 3);
        assert_eq!(child["attributes"], json!([{"key": "db.ok", "value": {"boolValue": true}}]));
        assert_eq!(child["status"], json!({}));

        // Short hex, base64 and the optional parameters, canonical and deprecated.
        for uri in [
            "/api/v3/traces/beef".to_string(),
            "/api/v3/traces/AAAAAAAAAAAAAAAAAAC%2B7w%3D%3D".to_string(),
            "/api/v3/traces/AAAAAAAAvu8".to_string(),
            format!("/api/v3/traces/{TRACE_B}?startTime=2000-01-01T00:00:00Z&endTime=2100-01-01T00:00:00%2B02:00"),
            format!("/api/v3/traces/{TRACE_B}?start_time=2000-01-01T00:00:00Z&rawTraces=true&raw_traces=0"),
        ] {
            let (status, body) = get(&app, &uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            assert_eq!(trace_ids(&body), [TRACE_B], "{uri}");
        }
    }

    #[tokio::test]
    async fn unknown_trace_is_404() {
        let (_dir, app) = app().await;
        let (status, body) = get(&app, "/api/v3/traces/0123456789abcdef0123456789abcdef").await;
        assert_v3_error(status, &body, 404, NO_TRACES_FOUND);
    }

    #[tokio::test]
    async fn bad_trace_fetch_parameters_are_400s() {
        let (_dir, app) = app().await;
        for (uri, needle) in [
            ("xyz", "malformed parameter trace_id"),
            ("0123456789abcdef0123456789abcdef00", "malformed parameter trace_id"),
            ("AAA_", "malformed parameter trace_id"), // base64 of 3 bytes
            ("beef?startTime=yesterday", "malformed parameter startTime"),
            ("beef?start_time=2024-01-01", "malformed parameter start_time"),
            ("beef?endTime=1700000000", "malformed parameter endTime"),
            ("beef?end_time=now", "malformed parameter end_time"),
            ("beef?rawTraces=perhaps", "malformed parameter rawTraces"),
            ("beef?raw_traces=perhaps", "malformed parameter raw_traces"),
            ("%FF", "malformed parameter trace_id"), // not UTF-8: the path extractor's rejection
        ] {
            let (status, body) = get(&app, &format!("/api/v3/traces/{uri}")).await;
            assert_v3_error(status, &body, 400, needle);
        }
    }

    #[tokio::test]
    async fn search_filters_by_each_parameter() {
        let (_dir, app) = app().await;
        let enc = |s: &str| s.replace(' ', "%20").replace('"', "%22").replace('{', "%7B").replace('}', "%7D");
        let health = TRACE_B;
        for (query, want) in [
            (String::new(), vec![health, TRACE_A]), // every service, newest first
            ("query.serviceName=backend".into(), vec![TRACE_A]),
            ("query.service_name=frontend".into(), vec![health, TRACE_A]),
            (format!("query.serviceName=frontend&query.operationName={}", enc("GET /health")), vec![health]),
            (format!("query.operation_name={}", enc("SELECT")), vec![TRACE_A]),
            ("query.durationMin=100ms".into(), vec![TRACE_A]),
            ("query.duration_min=30ms&query.serviceName=backend".into(), vec![TRACE_A]),
            ("query.durationMax=2ms".into(), vec![health]),
            ("query.duration_max=2ms".into(), vec![health]),
            ("query.searchDepth=1".into(), vec![health]),
            ("query.search_depth=1".into(), vec![health]),
            ("query.num_traces=1".into(), vec![health]),
            (format!("query.attributes={}", enc(r#"{"http.method":"GET"}"#)), vec![TRACE_A]),
            (format!("query.attributes={}", enc(r#"{"db.ok":"true","host.name":"box-1"}"#)), vec![TRACE_A]),
            ("query.rawTraces=true&query.raw_traces=nonsense".into(), vec![health, TRACE_A]),
        ] {
            let (status, body) = get(&app, &format!("/api/v3/traces?{WINDOW}&{query}")).await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            assert_eq!(trace_ids(&body), want, "{query}");
        }
        // Deprecated time names, an offset, and a window that holds nothing.
        let old = "query.start_time_min=2000-01-01T00:00:00Z&query.start_time_max=2000-01-01T01:00:00%2B00:30";
        let (status, body) = get(&app, &format!("/api/v3/traces?{old}")).await;
        assert_v3_error(status, &body, 404, NO_TRACES_FOUND);
        let (status, body) = get(&app, &format!("/api/v3/traces?{WINDOW}&query.serviceName=nobody")).await;
        assert_v3_error(status, &body, 404, NO_TRACES_FOUND);
    }

    #[tokio::test]
    async fn every_bad_search_parameter_is_a_400_naming_it() {
        let (_dir, app) = app().await;
        let w = |q: &str| format!("{WINDOW}&{q}");
        for (query, needle) in [
            (String::new(), "query.startTimeMin and query.startTimeMax are required"),
            (
                "query.startTimeMin=2000-01-01T00:00:00Z".into(),
                "query.startTimeMin and query.startTimeMax are required",
            ),
            (
                "query.startTimeMin=yesterday&query.startTimeMax=2100-01-01T00:00:00Z".into(),
                "malformed parameter query.startTimeMin",
            ),
            (
                "query.start_time_min=2000-01-01T00:00:00Z&query.start_time_max=tomorrow".into(),
                "malformed parameter query.start_time_max",
            ),
            (
                "query.startTimeMin=2100-01-01T00:00:00Z&query.startTimeMax=2000-01-01T00:00:00Z".into(),
                "query.startTimeMin must be before query.startTimeMax",
            ),
            (w("query.searchDepth=many"), "malformed parameter query.searchDepth"),
            (w("query.search_depth=-1"), "malformed parameter query.search_depth"),
            (w("query.num_traces=0"), "malformed parameter query.num_traces"),
            (w("query.durationMin=10"), "malformed parameter query.durationMin"),
            (w("query.duration_min=fast"), "malformed parameter query.duration_min"),
            (w("query.durationMax=1parsec"), "malformed parameter query.durationMax"),
            (w("query.durationMin=2s&query.durationMax=1s"), "malformed parameter query.durationMax"),
            (w("query.attributes=%7Bnot-json"), "malformed parameter query.attributes"),
            (w("query.attributes=%7B%22a%22:1%7D"), "malformed parameter query.attributes"),
            (w("query.filter=%7B%7D"), "malformed parameter query.filter"),
            (w("query.rawTraces=sometimes"), "malformed parameter query.rawTraces"),
            (w("query.raw_traces=sometimes"), "malformed parameter query.raw_traces"),
        ] {
            for endpoint in ["traces", "trace-summaries"] {
                let (status, body) = get(&app, &format!("/api/v3/{endpoint}?{query}")).await;
                assert_v3_error(status, &body, 400, needle);
            }
        }
    }

    #[tokio::test]
    async fn trace_summaries_describe_each_trace() {
        let (_dir, app) = app().await;
        let (status, body) = get(&app, &format!("/api/v3/trace-summaries?{WINDOW}&query.serviceName=backend")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let start = crate::router::tests::base_ns();
        assert_eq!(
            body,
            json!({"summaries": [{
                "traceId": TRACE_A,
                "rootServiceName": "frontend",
                "rootOperationName": "GET /checkout",
                "minStartTimeUnixNano": start.to_string(),
                "maxEndTimeUnixNano": (start + 250_000_000).to_string(),
                "spanCount": 2,
                "errorSpanCount": 1,
                "orphanSpanCount": 0,
                "services": [
                    {"name": "backend", "spanCount": 1, "errorSpanCount": 0},
                    {"name": "frontend", "spanCount": 1, "errorSpanCount": 1},
                ],
            }]})
        );
        let (status, body) = get(&app, &format!("/api/v3/trace-summaries?{WINDOW}&query.serviceName=nobody")).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"summaries": []})));
    }

    #[test]
    fn trace_ids_parse_like_jaeger() {
        let low: TraceId = "ffffffffffffffff".parse().unwrap();
        let both: TraceId = "00000000000000ffffffffffffffffff".parse().unwrap();
        for (text, want) in [
            ("ffffffffffffffff", low),
            ("//////////8=", low),              // 8 bytes, standard, padded
            ("AAAAAAAAAP///////////w==", both), // 16 bytes, standard, padded
            ("AAAAAAAAAP___________w", both),   // 16 bytes, URL-safe, raw
        ] {
            assert_eq!(parse_trace_id(text).unwrap(), want, "{text}");
        }
        for bad in ["not-a-valid-id!", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAlong", "AAA_"] {
            let err = parse_trace_id(bad).unwrap_err().to_string();
            assert!(err.starts_with("malformed parameter trace_id: "), "{err}");
        }
    }
}
