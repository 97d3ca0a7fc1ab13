//! Bad input against the real binary: every fixture in
//! `tests/fixtures/bad_input/` (one file per case, expected status in its
//! README table) plus generated cases (too large, gzip bomb, unknown encoding,
//! gRPC). After each one the server must keep serving, and nothing already
//! stored may be lost or anything from the bad request stored.

mod common;

use std::io::Write;
use std::path::Path;

use common::Server;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const LIMIT: usize = 1 << 20;
const BASELINE_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad_input")
}

/// Rows of the README table: (fixture, endpoint, content type, status).
fn table() -> Vec<(String, String, String, u16)> {
    let readme = std::fs::read_to_string(fixtures().join("README.md")).unwrap();
    readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(|c| c.trim().trim_matches('`')).collect();
            (cells[1].to_string(), cells[2].to_string(), cells[3].to_string(), cells[4].parse().unwrap())
        })
        .collect()
}

fn baseline_request(trace_hex: &str, service: &str) -> ExportTraceServiceRequest {
    let trace_id = (0..16).map(|i| u8::from_str_radix(&trace_hex[2 * i..2 * i + 2], 16).unwrap()).collect::<Vec<_>>();
    common::one_span_export(&trace_id, &[0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31], service, "baseline")
}

fn post(
    server: &Server,
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, String) {
    let mut req =
        reqwest::blocking::Client::new().post(server.otlp_url(path)).header("content-type", content_type).body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.send().expect("the server must answer, not drop the connection");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, String::from_utf8_lossy(&resp.bytes().unwrap()).into_owned())
}

/// The baseline trace is intact, nothing else was stored, and ingest still works.
fn assert_healthy_and_intact(server: &Server, case: &str) {
    let (status, body) = server.get_json(&format!("/api/traces/{BASELINE_TRACE}"));
    assert_eq!(status, 200, "after {case}: baseline trace lost: {body}");
    assert_eq!(body["data"][0]["spans"].as_array().unwrap().len(), 1, "after {case}");
    let (_, services) = server.get_json("/api/services");
    assert_eq!(services["data"], serde_json::json!(["baseline"]), "after {case}: a bad request stored data");
}

#[test]
fn every_bad_input_gets_its_status_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-body-bytes", &LIMIT.to_string()]);
    let (status, _, _) = post(
        &server,
        "/v1/traces",
        "application/x-protobuf",
        None,
        baseline_request(BASELINE_TRACE, "baseline").encode_to_vec(),
    );
    assert_eq!(status, 200);

    let rows = table();
    assert!(rows.len() >= 10, "fixture table not found or too short");
    for (file, endpoint, content_type, expected) in &rows {
        let body = std::fs::read(fixtures().join(file)).unwrap_or_else(|e| panic!("fixture {file}: {e}"));
        let (status, ct, text) = post(&server, endpoint, content_type, None, body);
        let case = format!("{file} as {content_type} to {endpoint}");
        assert_eq!(status, *expected, "{case}: {text}");
        if content_type == "application/json" {
            assert!(ct.starts_with("application/json"), "{case}: response type {ct}");
            let v: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{case}: error body is not JSON: {text}"));
            assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{case}: error names no problem: {text}");
        }
        assert_healthy_and_intact(&server, &case);
    }

    // Too large as sent.
    let (status, _, _) = post(&server, "/v1/traces", "application/x-protobuf", None, vec![0u8; LIMIT + 1024]);
    assert_eq!(status, 413);
    assert_healthy_and_intact(&server, "oversized body");

    // A gzip bomb: 16 MiB of zeros in about 16 KiB; must be cut off at the limit.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
    gz.write_all(&vec![0u8; 16 * LIMIT]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < LIMIT / 4, "bomb is {} bytes", bomb.len());
    let (status, _, text) = post(&server, "/v1/traces", "application/x-protobuf", Some("gzip"), bomb);
    assert_eq!(status, 413, "{text}");
    assert_healthy_and_intact(&server, "gzip bomb");

    // zstd bomb too.
    let zbomb = zstd::encode_all(&vec![0u8; 16 * LIMIT][..], 1).unwrap();
    let (status, _, _) = post(&server, "/v1/traces", "application/x-protobuf", Some("zstd"), zbomb);
    assert_eq!(status, 413);

    // Unknown encoding.
    let (status, _, _) = post(&server, "/v1/traces", "application/json", Some("br"), b"{}".to_vec());
    assert_eq!(status, 415);

    // A valid gzip body still works after all that.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&baseline_request("1af7651916cd43dd8448eb211c80319c", "baseline").encode_to_vec()).unwrap();
    let (status, _, _) = post(&server, "/v1/traces", "application/x-protobuf", Some("gzip"), gz.finish().unwrap());
    assert_eq!(status, 200);
    let (status, _) = server.get_json("/api/traces/1af7651916cd43dd8448eb211c80319c");
    assert_eq!(status, 200);

    // gRPC: bad ids are INVALID_ARGUMENT, too large is RESOURCE_EXHAUSTED.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = TraceServiceClient::connect(server.grpc_url()).await.unwrap();
        let mut bad = baseline_request("2af7651916cd43dd8448eb211c80319c", "grpc-bad");
        bad.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1, 2, 3];
        let err = client.export(bad).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert!(err.message().contains("span id"), "{err}");
        let mut big = baseline_request("3af7651916cd43dd8448eb211c80319c", "grpc-big");
        big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(LIMIT + 1);
        let err = client.export(big).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    });
    assert_healthy_and_intact(&server, "gRPC bad input");

    // And it all survives a restart, even with that gRPC client still connected.
    server.stop();
    let server = Server::start(dir.path(), &[]);
    assert_healthy_and_intact(&server, "restart");
}
