//! The route table of the query API, and the answers that are not Jaeger's:
//! health, unknown paths, wrong methods.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use seismo_api::health as wire;
use seismo_store::Health;

use seismo_promql::StoreSource;

use crate::error::QueryError;
use crate::state::QueryState;
use crate::{jaeger, logs, prometheus, selfmetrics, stats, v3};
use std::sync::Arc;

/// The query API as an axum router, ready to be served on `--http` (default
/// :16686) or called directly in tests.
///
/// Routes: Jaeger's `GET /api/services`, `/api/services/{service}/operations`,
/// `/api/operations`, `/api/traces`, `/api/traces/{traceID}`,
/// `/api/dependencies`; Jaeger's api_v3 `GET /api/v3/services`,
/// `/api/v3/operations`, `/api/v3/traces`, `/api/v3/traces/{trace_id}` and
/// `/api/v3/trace-summaries` (errors in the v3 envelope); seismo's
/// `GET /api/v1/logs` (full-text log search) and `GET /api/v1/stats` (request
/// statistics); Prometheus' `/api/v1/query`, `query_range`, `series`,
/// `labels`, `label/{name}/values` (GET and POST, over `seismo-promql`); `GET /healthz` and `GET /metrics` (seismo's own
/// counters, Prometheus text). Any other path answers 404 and a
/// wrong method 405, both in Jaeger's JSON error envelope.
pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/api/services", get(jaeger::services))
        .route("/api/services/{service}/operations", get(jaeger::operations_legacy))
        .route("/api/operations", get(jaeger::operations))
        .route("/api/traces", get(jaeger::search_traces))
        .route("/api/traces/{trace_id}", get(jaeger::get_trace))
        .route("/api/dependencies", get(jaeger::dependencies))
        .route("/api/v3/services", get(v3::services))
        .route("/api/v3/operations", get(v3::operations))
        .route("/api/v3/traces", get(v3::find_traces))
        .route("/api/v3/traces/{trace_id}", get(v3::get_trace))
        .route("/api/v3/trace-summaries", get(v3::trace_summaries))
        .route("/api/v1/logs", get(logs::search))
        .route("/api/v1/stats", get(stats::stats))
        .merge(prometheus::routes(Arc::new(StoreSource::new(state.store.clone())), state.query_limits))
        .route("/healthz", get(healthz))
        .route("/metrics", get(selfmetrics::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// 200 `{"status":"ready"}` while the store accepts writes; otherwise 503 with
/// `Retry-After` and why: `{"status":"disk_full","reason":"disk full: ..."}`
/// (ends by itself when there is room), `{"status":"failed","reason":...}`
/// (the WAL failed; a restart is needed) or `{"status":"closed"}` (shutting
/// down). Queries are answered in every state; this says whether ingest is.
async fn healthz(axum::extract::State(state): axum::extract::State<QueryState>) -> Response {
    let body = match state.store.health() {
        Health::Ready => return (StatusCode::OK, Json(wire::Health::ready())).into_response(),
        Health::DiskFull(reason) => wire::Health::refusing("disk_full", reason),
        Health::Failed(reason) => wire::Health::refusing("failed", reason),
        Health::Closed => wire::Health::refusing("closed", "store is closed"),
    };
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "5")], Json(body)).into_response()
}

async fn not_found(uri: Uri) -> QueryError {
    QueryError::NotFound(format!("404 page not found: {}", uri.path()))
}

async fn method_not_allowed(uri: Uri) -> QueryError {
    QueryError::MethodNotAllowed(format!("method not allowed on {}", uri.path()))
}

#[cfg(test)]
pub(crate) mod tests {
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use http_body_util::BodyExt;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
    use seismo_store::{Batch, Store, StoreConfig};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    pub(crate) const TRACE_A: &str = "5b8efff798038103d269b633813fc60c";
    pub(crate) const TRACE_B: &str = "0000000000000000000000000000beef";
    /// Span start times: recent, so the default search window covers them.
    pub(crate) fn base_ns() -> u64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        (now.as_nanos() as u64 / 1_000_000_000 - 60) * 1_000_000_000
    }

    fn attr(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    fn str_attr(key: &str, value: &str) -> KeyValue {
        attr(key, any_value::Value::StringValue(value.into()))
    }

    fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![str_attr("service.name", service), str_attr("host.name", "box-1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "seismo-test".into(),
                    version: "0.1".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn otlp_span(trace: &str, id: &str, parent: &str, name: &str, kind: i32, start: u64, dur: u64) -> Span {
        Span {
            trace_id: hex::decode(trace).unwrap(),
            span_id: hex::decode(id).unwrap(),
            parent_span_id: if parent.is_empty() { vec![] } else { hex::decode(parent).unwrap() },
            name: name.into(),
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            ..Default::default()
        }
    }

    /// Trace A: frontend `GET /checkout` (server, ERROR, 250 ms) -> backend
    /// `SELECT` (client, 40 ms). Trace B: frontend `GET /health` (server, 1 ms).
    pub(crate) async fn test_store(dir: &std::path::Path) -> Store {
        let store = Store::open(StoreConfig::new(dir)).expect("open store");
        let base = base_ns();
        let mut root = otlp_span(TRACE_A, "00000000000000a1", "", "GET /checkout", 2, base, 250_000_000);
        root.attributes =
            vec![attr("http.status_code", any_value::Value::IntValue(503)), str_attr("http.method", "GET")];
        root.status = Some(Status { code: 2, message: "upstream down".into() });
        root.events = vec![span::Event {
            time_unix_nano: base + 1_000,
            name: "retry".into(),
            attributes: vec![attr("attempt", any_value::Value::IntValue(2))],
            ..Default::default()
        }];
        let mut child =
            otlp_span(TRACE_A, "00000000000000b1", "00000000000000a1", "SELECT", 3, base + 5_000_000, 40_000_000);
        child.attributes = vec![attr("db.ok", any_value::Value::BoolValue(true))];
        let health = otlp_span(TRACE_B, "00000000000000c1", "", "GET /health", 2, base + 10_000_000, 1_000_000);
        let request = ExportTraceServiceRequest {
            resource_spans: vec![
                resource_spans("frontend", vec![root, health]),
                resource_spans("backend", vec![child]),
            ],
        };
        store.append(Batch::Traces(request)).await.expect("append");
        store
    }

    pub(crate) async fn call(app: &Router, method: Method, uri: &str) -> (StatusCode, Value) {
        let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{uri}: body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        (status, body)
    }

    pub(crate) async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
        call(app, Method::GET, uri).await
    }

    /// Asserts Jaeger's error envelope with `code` and a message containing `needle`.
    pub(crate) fn assert_jaeger_error(status: StatusCode, body: &Value, code: u16, needle: &str) {
        assert_eq!(status.as_u16(), code, "{body}");
        assert_eq!(body["data"], Value::Null);
        assert_eq!(
            (body["total"].as_u64(), body["limit"].as_u64(), body["offset"].as_u64()),
            (Some(0), Some(0), Some(0))
        );
        let errors = body["errors"].as_array().expect("errors array");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["code"], code);
        let msg = errors[0]["msg"].as_str().unwrap();
        assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
    }

    #[tokio::test]
    async fn healthz_is_ok_when_ready() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(QueryState::new(test_store(dir.path()).await));
        let (status, body) = get(&app, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ready");
    }

    #[tokio::test]
    async fn healthz_says_why_the_store_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path()).await;
        let app = router(QueryState::new(store.clone()));
        store.close().unwrap();
        let response =
            app.clone().oneshot(Request::builder().uri("/healthz").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let (_, body) = get(&app, "/healthz").await;
        assert_eq!((body["status"].as_str(), body["reason"].as_str()), (Some("closed"), Some("store is closed")));
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_answer_jaeger_errors() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(QueryState::new(test_store(dir.path()).await));
        let (status, body) = get(&app, "/api/nope").await;
        assert_jaeger_error(status, &body, 404, "/api/nope");
        let (status, body) = call(&app, Method::POST, "/api/services").await;
        assert_jaeger_error(status, &body, 405, "/api/services");
    }
}
