//! Handlers of the Jaeger-compatible `/api/...` endpoints.
//!
//! Each handler takes its parameters as extractors (see [`search_params`]
//! and [`crate::request`]), runs the store
//! call on the blocking pool (store reads do Parquet I/O), converts rows to
//! Jaeger's model there too (big traces cost CPU), and answers in Jaeger's
//! envelope. Errors leave as [`QueryError`], converted once to HTTP.

mod dependencies;
mod search_params;
mod trace_json;

use axum::extract::State;
use axum::response::Response;
use seismo_api::jaeger as ui;
use seismo_api::{Response as Envelope, ResponseError};
use seismo_store::{span_kind, SpanRow, TraceId};

pub(crate) use dependencies::dependencies;
pub(crate) use search_params::TraceSearch;

use crate::error::{QueryError, TRACE_NOT_FOUND};
use crate::request::{blocking, json_reply, PathParam, QueryParams};
use crate::state::QueryState;
use search_params::OperationsParams;
use trace_json::{jaeger_trace_id, to_jaeger_trace};

/// `GET /api/services` -> `data: ["svc", ...]`, sorted, with `total`.
pub(crate) async fn services(State(state): State<QueryState>, params: QueryParams) -> Result<Response, QueryError> {
    let services = blocking(&state, |store| store.services()).await?;
    let total = services.len();
    json_reply(&params, &Envelope::with_total(services, total))
}

/// `GET /api/services/{service}/operations` -> `data: ["op", ...]`: Jaeger's
/// legacy form, names of every span kind, each once.
pub(crate) async fn operations_legacy(
    State(state): State<QueryState>,
    params: QueryParams,
    PathParam(service): PathParam,
) -> Result<Response, QueryError> {
    let mut names: Vec<String> =
        blocking(&state, move |store| store.operations(&service)).await?.into_iter().map(|op| op.name).collect();
    names.sort();
    names.dedup();
    let total = names.len();
    json_reply(&params, &Envelope::with_total(names, total))
}

/// `GET /api/operations?service=&spanKind=` -> `data: [{name, spanKind}, ...]`;
/// `spanKind` is `""` for spans of unspecified kind, as Jaeger writes it.
pub(crate) async fn operations(
    State(state): State<QueryState>,
    params: QueryParams,
    OperationsParams { service, kind }: OperationsParams,
) -> Result<Response, QueryError> {
    let operations: Vec<ui::Operation> = blocking(&state, move |store| store.operations(&service))
        .await?
        .into_iter()
        .filter(|op| kind.is_none_or(|k| k == op.span_kind))
        .map(|op| ui::Operation {
            span_kind: match span_kind::name(op.span_kind) {
                "unspecified" => String::new(),
                name => name.to_string(),
            },
            name: op.name,
        })
        .collect();
    let total = operations.len();
    json_reply(&params, &Envelope::with_total(operations, total))
}

/// `GET /api/traces?...` -> `data: [trace, ...]`, `total: 0` as Jaeger. With
/// `traceID=` the listed traces are fetched and missing ones reported in
/// `errors` (`{"msg":"trace not found","traceID":...}`) next to the found ones.
pub(crate) async fn search_traces(
    State(state): State<QueryState>,
    params: QueryParams,
    search: TraceSearch,
) -> Result<Response, QueryError> {
    let raw_traces = search.raw;
    let envelope = if search.trace_ids.is_empty() {
        let query = search.query;
        let traces = blocking(&state, move |store| Ok(convert_all(&store.find_traces(&query)?, raw_traces))).await?;
        Envelope::new(traces)
    } else {
        let ids = search.trace_ids;
        let (traces, missing) = blocking(&state, move |store| {
            let mut traces = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                match to_jaeger_trace(&store.trace(id)?, raw_traces) {
                    Some(trace) => traces.push(trace),
                    None => missing.push(id),
                }
            }
            Ok((traces, missing))
        })
        .await?;
        let errors: Vec<ResponseError> = missing
            .iter()
            .map(|id| ResponseError {
                code: None,
                msg: TRACE_NOT_FOUND.to_string(),
                trace_id: Some(jaeger_trace_id(id)),
            })
            .collect();
        Envelope { errors: (!errors.is_empty()).then_some(errors), ..Envelope::new(traces) }
    };
    json_reply(&params, &envelope)
}

/// `GET /api/traces/{traceID}` -> `data: [trace]`; 404 when unknown, 400 when
/// the id is not 1 to 32 hex digits.
pub(crate) async fn get_trace(
    State(state): State<QueryState>,
    params: QueryParams,
    PathParam(trace_id): PathParam,
) -> Result<Response, QueryError> {
    let id: TraceId = trace_id.parse()?;
    let raw_trace = search_params::parse_get_trace(&params)?;
    let trace = blocking(&state, move |store| Ok(to_jaeger_trace(&store.trace(id)?, raw_trace)))
        .await?
        .ok_or_else(QueryError::trace_not_found)?;
    json_reply(&params, &Envelope::new(vec![trace]))
}

fn convert_all(traces: &[Vec<SpanRow>], raw: bool) -> Vec<ui::Trace> {
    traces.iter().filter_map(|spans| to_jaeger_trace(spans, raw)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- through the router, against a real store ----

    use crate::router::router;
    use crate::router::tests::{assert_jaeger_error, get, test_store, TRACE_A, TRACE_B};
    use axum::http::StatusCode;
    use serde_json::{json, Value};

    /// Percent-encodes a query value (everything but unreserved characters).
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    async fn app() -> (tempfile::TempDir, axum::Router, seismo_store::Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path()).await;
        (dir, router(QueryState::new(store.clone())), store)
    }

    fn trace_ids(body: &Value) -> Vec<String> {
        body["data"].as_array().unwrap().iter().map(|t| t["traceID"].as_str().unwrap().to_string()).collect()
    }

    #[tokio::test]
    async fn services_and_operations() {
        let (_dir, app, _) = app().await;
        let (status, body) = get(&app, "/api/services").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"data": ["backend", "frontend"], "total": 2, "limit": 0, "offset": 0, "errors": null}));

        let (_, body) = get(&app, "/api/services/frontend/operations").await;
        assert_eq!(body["data"], json!(["GET /checkout", "GET /health"]));
        assert_eq!(body["total"], 2);
        let (status, body) = get(&app, "/api/services/nobody/operations").await;
        assert_eq!((status, &body["data"]), (StatusCode::OK, &json!([])));

        let (_, body) = get(&app, "/api/operations?service=backend").await;
        assert_eq!(body["data"], json!([{"name": "SELECT", "spanKind": "client"}]));
        let (_, body) = get(&app, "/api/operations?service=frontend&spanKind=server").await;
        assert_eq!(body["data"].as_array().unwrap().len(), 2);
        let (_, body) = get(&app, "/api/operations?service=frontend&spanKind=client").await;
        assert_eq!(body["data"], json!([]));
        let (status, body) = get(&app, "/api/operations").await;
        assert_jaeger_error(status, &body, 400, "parameter 'service' is required");
        let (status, body) = get(&app, "/api/operations?service=frontend&spanKind=up").await;
        assert_jaeger_error(status, &body, 400, "'spanKind'");
    }

    #[tokio::test]
    async fn search_returns_jaeger_traces() {
        let (_dir, app, _) = app().await;
        let (status, body) = get(&app, "/api/traces?service=frontend").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!((&body["total"], &body["errors"]), (&json!(0), &Value::Null));
        let mut ids = trace_ids(&body);
        ids.sort();
        assert_eq!(ids, ["000000000000beef", TRACE_A]);

        let trace = body["data"].as_array().unwrap().iter().find(|t| t["traceID"] == TRACE_A).unwrap();
        let spans = trace["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 2);
        let root = spans.iter().find(|s| s["spanID"] == "00000000000000a1").unwrap();
        let child = spans.iter().find(|s| s["spanID"] == "00000000000000b1").unwrap();
        assert_eq!(root["operationName"], "GET /checkout");
        assert_eq!(root["duration"], 250_000);
        assert_eq!(root["references"], json!([]));
        assert_eq!(
            root["tags"],
            json!([
                {"key": "otel.scope.name", "type": "string", "value": "seismo-test"},
                {"key": "otel.scope.version", "type": "string", "value": "0.1"},
                {"key": "http.method", "type": "string", "value": "GET"},
                {"key": "http.status_code", "type": "int64", "value": 503},
                {"key": "span.kind", "type": "string", "value": "server"},
                {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                {"key": "error", "type": "bool", "value": true},
                {"key": "otel.status_description", "type": "string", "value": "upstream down"},
            ])
        );
        assert_eq!(
            root["logs"][0]["fields"],
            json!([
                {"key": "event", "type": "string", "value": "retry"},
                {"key": "attempt", "type": "int64", "value": 2},
            ])
        );
        assert_eq!(
            child["references"],
            json!([{"refType": "CHILD_OF", "traceID": TRACE_A, "spanID": "00000000000000a1"}])
        );
        let processes = &trace["processes"];
        assert_eq!(processes[root["processID"].as_str().unwrap()]["serviceName"], "frontend");
        assert_eq!(
            processes[child["processID"].as_str().unwrap()],
            json!({
                "serviceName": "backend",
                "tags": [{"key": "host.name", "type": "string", "value": "box-1"}],
            })
        );
        assert_eq!(trace["warnings"], Value::Null);
    }

    #[tokio::test]
    async fn search_filters() {
        let (_dir, app, _) = app().await;
        for (query, want) in [
            (format!("tags={}", enc(r#"{"error":"true"}"#)), vec![TRACE_A]),
            ("tag=http.method:GET".to_string(), vec![TRACE_A]),
            ("minDuration=100ms".to_string(), vec![TRACE_A]),
            ("maxDuration=2ms".to_string(), vec!["000000000000beef"]),
            (format!("operation={}", enc("GET /health")), vec!["000000000000beef"]),
            ("lookback=1h".to_string(), vec!["000000000000beef", TRACE_A]), // newest first
        ] {
            let (status, body) = get(&app, &format!("/api/traces?service=frontend&{query}")).await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            assert_eq!(trace_ids(&body), want, "{query}");
        }
        // The window's end two hours ago with a one-hour lookback misses them.
        let two_hours_ago_us = (crate::router::tests::base_ns() / 1_000) as i64 - 7_200_000_000;
        let (_, body) = get(&app, &format!("/api/traces?service=frontend&end={two_hours_ago_us}&lookback=1h")).await;
        assert_eq!(body["data"], json!([]));
        let (_, body) = get(&app, "/api/traces?service=frontend&limit=1").await;
        assert_eq!(trace_ids(&body).len(), 1);
        // A window in the distant past holds nothing.
        let (_, body) = get(&app, "/api/traces?service=frontend&start=1000&end=2000").await;
        assert_eq!(body["data"], json!([]));
    }

    #[tokio::test]
    async fn search_by_trace_ids_reports_missing_ones() {
        let (_dir, app, _) = app().await;
        let (status, body) =
            get(&app, &format!("/api/traces?traceID={TRACE_A}&traceID=00000000000000000000000000000001")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(trace_ids(&body), [TRACE_A]);
        assert_eq!(body["errors"], json!([{"msg": "trace not found", "traceID": "0000000000000001"}]));
    }

    #[tokio::test]
    async fn get_trace_by_id() {
        let (_dir, app, _) = app().await;
        let (status, body) = get(&app, &format!("/api/traces/{}", TRACE_A.to_uppercase())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(trace_ids(&body), [TRACE_A]);
        let (status, body) = get(&app, "/api/traces/beef").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(trace_ids(&body), ["000000000000beef"]);
        assert_eq!(TRACE_B.trim_start_matches('0'), "beef");
    }

    #[tokio::test]
    async fn unknown_trace_is_404() {
        let (_dir, app, _) = app().await;
        let (status, body) = get(&app, "/api/traces/0123456789abcdef0123456789abcdef").await;
        assert_jaeger_error(status, &body, 404, "trace not found");
    }

    #[tokio::test]
    async fn malformed_trace_id_is_400() {
        let (_dir, app, _) = app().await;
        for bad in ["xyz", "0123456789abcdef0123456789abcdef00"] {
            let (status, body) = get(&app, &format!("/api/traces/{bad}")).await;
            assert_jaeger_error(status, &body, 400, "trace id");
        }
        let (status, body) = get(&app, &format!("/api/traces/{TRACE_A}?raw=perhaps")).await;
        assert_jaeger_error(status, &body, 400, "'raw'");
    }

    /// The path extractor's rejection is a 400 in Jaeger's envelope, not
    /// axum's plain-text answer.
    #[tokio::test]
    async fn a_path_that_is_not_utf8_is_a_400_in_jaegers_envelope() {
        let (_dir, app, _) = app().await;
        for uri in ["/api/traces/%FF", "/api/services/%C3%28/operations"] {
            let (status, body) = get(&app, uri).await;
            assert_jaeger_error(status, &body, 400, "malformed path");
        }
    }

    #[tokio::test]
    async fn every_bad_search_parameter_is_a_400_naming_it() {
        let (_dir, app, _) = app().await;
        for (query, needle) in [
            ("service=frontend&start=yesterday", "'start'"),
            ("service=frontend&end=now", "'end'"),
            ("service=frontend&limit=many", "'limit'"),
            ("service=frontend&limit=-5", "'limit'"),
            ("service=frontend&minDuration=10", "'minDuration'"),
            ("service=frontend&maxDuration=1parsec", "'maxDuration'"),
            ("service=frontend&minDuration=2s&maxDuration=1s", "'maxDuration'"),
            ("service=frontend&tags=%7Bnot-json", "'tags'"),
            ("service=frontend&tag=novalue", "'tag'"),
            ("service=frontend&lookback=forever", "'lookback'"),
            ("service=frontend&raw=sometimes", "'raw'"),
            ("service=frontend&start=2000&end=1000", "'start'"),
            ("traceID=not-hex", "traceID"),
            ("operation=x", "parameter 'service' is required"),
            ("", "parameter 'service' is required"),
        ] {
            let (status, body) = get(&app, &format!("/api/traces?{query}")).await;
            assert_jaeger_error(status, &body, 400, needle);
        }
    }

    #[tokio::test]
    async fn pretty_print_indents_by_four_spaces() {
        let (_dir, app, _) = app().await;
        let request =
            axum::http::Request::get("/api/services?prettyPrint=true").body(axum::body::Body::empty()).unwrap();
        let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
        let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&bytes).contains("{\n    \"data\": [\n        \"backend\""));
    }

    #[tokio::test]
    async fn answers_survive_a_flush() {
        let (_dir, app, store) = app().await;
        let uri = format!("/api/traces/{TRACE_A}");
        let (_, before) = get(&app, &uri).await;
        let (_, search_before) = get(&app, "/api/traces?service=backend").await;
        tokio::task::spawn_blocking(move || store.flush()).await.unwrap().unwrap();
        assert_eq!(get(&app, &uri).await.1, before);
        assert_eq!(get(&app, "/api/traces?service=backend").await.1, search_before);
    }
}
