//! Router tests: every request goes through `Router::oneshot`, no socket.

use std::io::Write;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use seismo_store::Batch;
use tower::ServiceExt;

use super::*;
use crate::ingest::testing::{FakeSink, Script};

const LIMIT: usize = 1 << 20;

fn one_span_request() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: (1..=16).collect(),
                    span_id: (1..=8).collect(),
                    name: "GET /".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

const ONE_SPAN_JSON: &str = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
    "traceId":"0102030405060708090A0B0C0D0E0F10","spanId":"0102030405060708","name":"GET /"}]}]}]}"#;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn content_type(&self) -> &str {
        self.headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap()).unwrap_or("")
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    fn rpc_status(&self) -> RpcStatus {
        RpcStatus::decode(self.body.clone()).unwrap()
    }
}

async fn send(sink: &FakeSink, request: Request<Body>) -> Reply {
    let response = router_with_sink(sink.clone(), LIMIT, MemoryBudget::new(64 << 20)).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
}

fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path).header(CONTENT_TYPE, content_type).body(body.into()).unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn protobuf_export_is_stored_and_answered_in_protobuf() {
    let sink = FakeSink::new(Script::Accept);
    let reply = send(&sink, post("/v1/traces", PROTOBUF, one_span_request().encode_to_vec())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type(), PROTOBUF);
    assert_eq!(ExportTraceServiceResponse::decode(reply.body).unwrap().partial_success, None);
    assert_eq!(sink.take_batches(), vec![Batch::Traces(one_span_request())]);
}

/// Issue 13: the store encoded every request again for its WAL. A protobuf body (after
/// decompression) reaches the store as sent, for the WAL to write as it is; a JSON body
/// has no protobuf bytes to pass on.
#[tokio::test]
async fn protobuf_bodies_reach_the_store_as_sent_json_ones_without_bytes() {
    let sink = FakeSink::new(Script::Accept);
    let mut wire = one_span_request().encode_to_vec();
    wire.extend_from_slice(&[0xf8, 0x3f, 0x01]); // an unknown field (1023), kept
    send(&sink, post("/v1/traces", PROTOBUF, wire.clone())).await;
    let request = Request::post("/v1/traces")
        .header(CONTENT_TYPE, PROTOBUF)
        .header(CONTENT_ENCODING, "gzip")
        .body(Body::from(gzip(&wire)))
        .unwrap();
    send(&sink, request).await;
    send(&sink, post("/v1/traces", JSON, ONE_SPAN_JSON)).await;
    let received = sink.take_received();
    let carried: Vec<_> = received.iter().map(|r| r.protobuf().map(|b| b.to_vec())).collect();
    assert_eq!(carried, vec![Some(wire.clone()), Some(wire), None]);
    assert!(received.into_iter().all(|r| r.into_batch() == Batch::Traces(one_span_request())));
}

#[tokio::test]
async fn json_export_is_stored_and_answered_in_json() {
    let sink = FakeSink::new(Script::Accept);
    let reply = send(&sink, post("/v1/traces", "application/json; charset=utf-8", ONE_SPAN_JSON)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type(), JSON);
    assert_eq!(reply.json(), serde_json::json!({}));
    assert_eq!(sink.take_batches(), vec![Batch::Traces(one_span_request())]);
}

#[tokio::test]
async fn content_type_is_matched_without_case_or_parameters() {
    let sink = FakeSink::new(Script::Accept);
    for content_type in ["Application/X-Protobuf", "application/x-protobuf ; proto=x"] {
        let reply = send(&sink, post("/v1/traces", content_type, one_span_request().encode_to_vec())).await;
        assert_eq!(reply.status, StatusCode::OK, "{content_type}");
    }
}

#[tokio::test]
async fn other_content_types_are_415() {
    let sink = FakeSink::new(Script::Accept);
    for content_type in ["text/plain", "application/protobuf", "application/jsonl", ""] {
        let reply = send(&sink, post("/v1/traces", content_type, ONE_SPAN_JSON)).await;
        assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
        assert_eq!(reply.json()["code"], tonic::Code::InvalidArgument as i32);
    }
    let missing = Request::post("/v1/traces").body(Body::from(ONE_SPAN_JSON)).unwrap();
    let reply = send(&sink, missing).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(reply.json()["message"].as_str().unwrap().contains("application/x-protobuf"));
    assert!(sink.take_batches().is_empty());
}

#[tokio::test]
async fn gzip_and_zstd_bodies_are_decompressed() {
    let sink = FakeSink::new(Script::Accept);
    let proto = one_span_request().encode_to_vec();
    let gz = post("/v1/traces", JSON, gzip(ONE_SPAN_JSON.as_bytes()));
    let mut gz = gz;
    gz.headers_mut().insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    assert_eq!(send(&sink, gz).await.status, StatusCode::OK);
    let mut zst = post("/v1/traces", PROTOBUF, zstd::encode_all(&proto[..], 3).unwrap());
    zst.headers_mut().insert(CONTENT_ENCODING, HeaderValue::from_static("zstd"));
    assert_eq!(send(&sink, zst).await.status, StatusCode::OK);
    assert_eq!(sink.take_batches().len(), 2);
}

#[tokio::test]
async fn unknown_content_encoding_is_415_with_accept_encoding() {
    let sink = FakeSink::new(Script::Accept);
    let mut request = post("/v1/traces", PROTOBUF, one_span_request().encode_to_vec());
    request.headers_mut().insert(CONTENT_ENCODING, HeaderValue::from_static("br"));
    let reply = send(&sink, request).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(reply.headers.get(ACCEPT_ENCODING).unwrap().to_str().unwrap().contains("gzip"));
    assert!(reply.rpc_status().message.contains("\"br\""));
}

#[tokio::test]
async fn gzip_bomb_is_413() {
    let sink = FakeSink::new(Script::Accept);
    let bomb = gzip(&vec![b' '; 8 * LIMIT]); // valid JSON whitespace, 8x the limit
    assert!(bomb.len() < LIMIT);
    let mut request = post("/v1/logs", JSON, bomb);
    request.headers_mut().insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    let reply = send(&sink, request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["code"], tonic::Code::ResourceExhausted as i32);
    assert!(reply.json()["message"].as_str().unwrap().contains("after decompression"));
}

#[tokio::test]
async fn oversized_raw_body_is_413_with_or_without_content_length() {
    let sink = FakeSink::new(Script::Accept);
    let big = vec![b' '; LIMIT + 1];
    let mut declared = post("/v1/traces", JSON, big.clone());
    declared.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(big.len()));
    assert_eq!(send(&sink, declared).await.status, StatusCode::PAYLOAD_TOO_LARGE);

    // No Content-Length header (as with chunked encoding): the limit holds while reading.
    let undeclared = post("/v1/traces", JSON, big);
    assert!(undeclared.headers().get(CONTENT_LENGTH).is_none());
    assert_eq!(send(&sink, undeclared).await.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Exactly the limit is fine (whitespace is not a valid document, so 400, not 413).
    assert_eq!(send(&sink, post("/v1/traces", JSON, vec![b' '; LIMIT])).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn garbage_protobuf_is_400_with_a_protobuf_status() {
    let sink = FakeSink::new(Script::Accept);
    let reply = send(&sink, post("/v1/traces", PROTOBUF, vec![0xff, 0xff, 0xff, 0x07, 0x12])).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.content_type(), PROTOBUF);
    let status = reply.rpc_status();
    assert_eq!(status.code, tonic::Code::InvalidArgument as i32);
    assert!(status.message.starts_with("invalid OTLP/protobuf body"), "{}", status.message);
}

#[tokio::test]
async fn bad_json_is_400_naming_the_field() {
    let sink = FakeSink::new(Script::Accept);
    let cases = [
        ("{", "invalid JSON"),
        (r#"{"resourceSpans":"x"}"#, "resourceSpans: expected an array"),
        (
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"XYZ"}]}]}]}"#,
            "resourceSpans[0].scopeSpans[0].spans[0].traceId: invalid hex id",
        ),
    ];
    for (json, expected) in cases {
        let reply = send(&sink, post("/v1/traces", JSON, json)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{json}");
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(expected), "{json}: {message}");
    }
    assert!(sink.take_batches().is_empty());
}

#[tokio::test]
async fn empty_requests_succeed_without_the_store() {
    let sink = FakeSink::new(Script::Closed);
    let reply = send(&sink, post("/v1/traces", PROTOBUF, Vec::new())).await;
    assert_eq!((reply.status, reply.body.len()), (StatusCode::OK, 0));
    let reply = send(&sink, post("/v1/metrics", JSON, "{}")).await;
    assert_eq!((reply.status, reply.json()), (StatusCode::OK, serde_json::json!({})));
    let empty_logs = ExportLogsServiceRequest { resource_logs: vec![Default::default()] };
    let reply = send(&sink, post("/v1/logs", PROTOBUF, empty_logs.encode_to_vec())).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn store_errors_map_to_http_statuses() {
    let cases = [
        (Script::InvalidId, StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, None),
        (Script::Busy, StatusCode::TOO_MANY_REQUESTS, tonic::Code::ResourceExhausted, Some("1")),
        (Script::Closed, StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable, Some("5")),
        (Script::DiskFull, StatusCode::SERVICE_UNAVAILABLE, tonic::Code::ResourceExhausted, Some("5")),
        (Script::Broken, StatusCode::INTERNAL_SERVER_ERROR, tonic::Code::Internal, None),
    ];
    for (script, status, code, retry) in cases {
        let sink = FakeSink::new(script);
        let reply = send(&sink, post("/v1/traces", JSON, ONE_SPAN_JSON)).await;
        assert_eq!(reply.status, status);
        assert_eq!(reply.json()["code"], code as i32);
        let retry_after = reply.headers.get(RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(retry_after.as_deref(), retry);
    }
}

/// Regression, issue 14 item 8: a full disk answered 500 INTERNAL, which OTLP
/// exporters do not retry. Now a retryable 503 (not 507: the OTLP/HTTP spec
/// forbids retrying it) with Retry-After and a body naming the problem.
#[tokio::test]
async fn disk_full_is_a_retryable_503_naming_the_problem() {
    let sink = FakeSink::new(Script::DiskFull);
    let reply = send(&sink, post("/v1/traces", PROTOBUF, one_span_request().encode_to_vec())).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers[RETRY_AFTER], "5");
    let status = reply.rpc_status();
    assert_eq!(status.code, tonic::Code::ResourceExhausted as i32);
    assert!(status.message.starts_with("disk full: "), "{}", status.message);
}

#[tokio::test]
async fn partial_success_is_reported_in_both_encodings() {
    let sink = FakeSink::new(Script::Reject { rejected: 1, message: "span id is all zeros" });
    let reply = send(&sink, post("/v1/traces", JSON, ONE_SPAN_JSON)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        serde_json::json!({"partialSuccess": {"rejectedSpans": 1, "errorMessage": "span id is all zeros"}})
    );
    let reply = send(&sink, post("/v1/traces", PROTOBUF, one_span_request().encode_to_vec())).await;
    let partial = ExportTraceServiceResponse::decode(reply.body).unwrap().partial_success.unwrap();
    assert_eq!((partial.rejected_spans, partial.error_message.as_str()), (1, "span id is all zeros"));
}

#[tokio::test]
async fn wrong_method_is_405_and_unknown_path_is_404() {
    let sink = FakeSink::new(Script::Accept);
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let request = Request::builder().method(method.clone()).uri("/v1/logs").body(Body::empty()).unwrap();
        assert_eq!(send(&sink, request).await.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    for path in ["/v1/trace", "/v1/traces/", "/v2/traces", "/"] {
        let reply = send(&sink, post(path, JSON, "{}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn large_bodies_are_decoded_off_the_async_thread_with_the_same_result() {
    let sink = FakeSink::new(Script::Accept);
    let mut request = one_span_request();
    request.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(2 * crate::ingest::INLINE_DECODE_MAX_BYTES);
    let reply = send(&sink, post("/v1/traces", PROTOBUF, request.encode_to_vec())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(sink.take_batches(), vec![Batch::Traces(request)]);
}

/// Tests against the real store: what ends up acknowledged is really written.
mod with_store {
    use std::path::PathBuf;

    use seismo_store::{Store, StoreConfig};

    use super::*;

    fn fixtures_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/bad_input")
    }

    fn open_store(dir: &tempfile::TempDir) -> Store {
        Store::open(StoreConfig::new(dir.path())).unwrap()
    }

    async fn send_to(router: &Router, request: Request<Body>) -> Reply {
        let response = router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Reply { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
    }

    /// The fixture README's table, row by row: (file, endpoint, content type, status).
    fn fixture_table() -> Vec<(String, String, String, u16)> {
        let readme = std::fs::read_to_string(fixtures_dir().join("README.md")).unwrap();
        let unquote = |cell: &str| cell.trim().trim_matches('`').to_owned();
        readme
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').collect();
                (unquote(cells[1]), unquote(cells[2]), unquote(cells[3]), unquote(cells[4]).parse().unwrap())
            })
            .collect()
    }

    #[tokio::test]
    async fn bad_input_fixtures_get_the_status_their_readme_promises() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let router = http_router(store.clone(), &CollectorConfig::default());
        let table = fixture_table();
        assert!(table.len() >= 10, "README table not parsed: {table:?}");
        for (file, endpoint, content_type, status) in table {
            let body = std::fs::read(fixtures_dir().join(&file)).unwrap();
            let reply = send_to(&router, post(&endpoint, &content_type, body)).await;
            assert_eq!(reply.status.as_u16(), status, "{file} to {endpoint} as {content_type}: {:?}", reply.body);
            let message = match reply.content_type() {
                PROTOBUF => reply.rpc_status().message,
                _ => reply.json()["message"].as_str().unwrap().to_owned(),
            };
            assert!(!message.is_empty(), "{file}: the error body must name the problem");
        }
        let counters = store.counters();
        assert_eq!(counters.spans.load(std::sync::atomic::Ordering::Relaxed), 0, "a bad request stored spans");
    }

    #[tokio::test]
    async fn short_span_id_names_the_id_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let router = http_router(open_store(&dir), &CollectorConfig::default());
        let body = std::fs::read(fixtures_dir().join("short_span_id.pb")).unwrap();
        let decoded = ExportTraceServiceRequest::decode(&body[..]).unwrap();
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans[0].span_id.len(), 3);
        let reply = send_to(&router, post("/v1/traces", PROTOBUF, body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(reply.rpc_status().message.contains("span id"), "{:?}", reply.rpc_status());
    }

    #[tokio::test]
    async fn good_exports_are_acknowledged_and_all_zero_ids_are_a_partial_success() {
        let dir = tempfile::tempdir().unwrap();
        let router = http_router(open_store(&dir), &CollectorConfig::default());
        let reply = send_to(&router, post("/v1/traces", JSON, ONE_SPAN_JSON)).await;
        assert_eq!((reply.status, reply.json()), (StatusCode::OK, serde_json::json!({})));

        let mut request = one_span_request();
        let mut zero = request.resource_spans[0].scope_spans[0].spans[0].clone();
        zero.span_id = vec![0; 8];
        request.resource_spans[0].scope_spans[0].spans.push(zero);
        let reply = send_to(&router, post("/v1/traces", PROTOBUF, request.encode_to_vec())).await;
        assert_eq!(reply.status, StatusCode::OK);
        let partial = ExportTraceServiceResponse::decode(reply.body).unwrap().partial_success.unwrap();
        assert_eq!(partial.rejected_spans, 1);
        assert!(!partial.error_message.is_empty());
    }
}
