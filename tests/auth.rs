//! Bearer tokens with roles on every listener (issue 15): no token is 401 /
//! `UNAUTHENTICATED`, a token without the listener's role is 403 /
//! `PERMISSION_DENIED`, `/healthz` stays open, and real OpenTelemetry SDK
//! exporters configured with an `authorization` header get their spans in.
//! The chaos agent refuses a non-loopback API without tokens.

mod common;

#[path = "chaos_agent/agent.rs"]
mod agent;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use agent::Agent;
use base64::Engine as _;
use common::Server;
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use prost::Message;

const INGEST: &str = "ingest-token-0123456789";
const QUERY: &str = "query-token-0123456789";
const CHAOS: &str = "chaos-token-0123456789";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// (status, WWW-Authenticate, body) of a request with an optional Authorization value.
fn call(method: &str, url: &str, auth: Option<&str>, body: Option<(&str, Vec<u8>)>) -> (u16, String, String) {
    let client = reqwest::blocking::Client::new();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some((content_type, bytes)) = body {
        req = req.header("content-type", content_type).body(bytes);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, challenge, resp.text().unwrap())
}

fn start_server(dir: &std::path::Path) -> Server {
    Server::start(dir, &["--auth-token", &format!("ingest:{INGEST}"), "--auth-token", &format!("query:{QUERY}")])
}

#[test]
fn the_query_api_needs_a_query_token_and_healthz_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let services = server.query_url("/api/services");

    let (status, challenge, body) = call("GET", &services, None, None);
    assert_eq!((status, challenge.as_str()), (401, "Bearer realm=\"seismo\""), "{body}");
    assert!(body.contains("query role"), "{body}");
    let (status, _, body) = call("GET", &services, Some(&bearer("not-a-token-at-all")), None);
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = call("GET", &services, Some(&bearer(INGEST)), None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("needs the query role"), "{body}");
    let (status, _, body) = call("GET", &services, Some(&bearer(QUERY)), None);
    assert_eq!(status, 200, "{body}");

    // Grafana's data sources send Basic auth: the token is the password.
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("grafana:{QUERY}")));
    assert_eq!(call("GET", &server.query_url("/api/v1/labels"), Some(&basic), None).0, 200);
    // Every endpoint group is behind the token, including seismo's own metrics.
    for path in ["/api/v1/query?query=up", "/api/v3/services", "/api/v1/logs", "/api/v1/stats", "/metrics"] {
        assert_eq!(call("GET", &server.query_url(path), None, None).0, 401, "{path}");
    }
    let (status, _, body) = call("GET", &server.query_url("/healthz"), None, None);
    assert_eq!(status, 200, "{body}");

    // The client crate carries the token.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let without = seismo_client::Client::new(&server.query_url("")).unwrap();
        assert_eq!(without.services().await.unwrap_err().status(), Some(401));
        let with = seismo_client::Client::new(&server.query_url("")).unwrap().with_token(QUERY);
        with.services().await.unwrap();
    });
}

#[test]
fn otlp_over_http_and_grpc_needs_an_ingest_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let request = common::one_span_export(&[0xa1; 16], &[0xb1; 8], "auth-raw", "raw").encode_to_vec();
    let url = server.otlp_url("/v1/traces");
    let post = |auth: Option<&str>| call("POST", &url, auth, Some(("application/x-protobuf", request.clone())));
    assert_eq!(post(None).0, 401);
    assert_eq!(post(Some(&bearer(QUERY))).0, 403);
    assert_eq!(post(Some(&bearer(INGEST))).0, 200);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = TraceServiceClient::connect(server.grpc_url()).await.unwrap();
        let export = |auth: Option<&str>| {
            let mut req = tonic::Request::new(common::one_span_export(&[0xa2; 16], &[0xb2; 8], "auth-raw-grpc", "raw"));
            if let Some(a) = auth {
                req.metadata_mut().insert("authorization", a.parse().unwrap());
            }
            req
        };
        let err = client.export(export(None)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
        assert!(err.message().contains("ingest role"), "{err}");
        let err = client.export(export(Some(&bearer(QUERY)))).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
        client.export(export(Some(&bearer(INGEST)))).await.unwrap();
    });
    for trace in ["a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2"] {
        let url = server.query_url(&format!("/api/traces/{trace}"));
        common::eventually(Duration::from_secs(10), || {
            (call("GET", &url, Some(&bearer(QUERY)), None).0 == 200).then_some(())
        });
    }
}

#[test]
fn sdk_exporters_send_their_bearer_header() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _guard = rt.enter();

    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("authorization", bearer(INGEST).parse().unwrap());
    let grpc = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(server.grpc_url())
        .with_metadata(metadata)
        .build()
        .unwrap();
    let http = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(server.otlp_url("/v1/traces"))
        .with_headers(HashMap::from([("authorization".to_string(), bearer(INGEST))]))
        .build()
        .unwrap();
    let mut trace_ids = Vec::new();
    for (exporter, service) in [(grpc, "auth-sdk-grpc"), (http, "auth-sdk-http")] {
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service).build())
            .build();
        let mut span = provider.tracer("auth-e2e").start("checkout");
        trace_ids.push(span.span_context().trace_id().to_string());
        span.end();
        provider.shutdown().unwrap();
    }
    drop(_guard);
    for id in trace_ids {
        let url = server.query_url(&format!("/api/traces/{id}"));
        common::eventually(Duration::from_secs(10), || {
            (call("GET", &url, Some(&bearer(QUERY)), None).0 == 200).then_some(())
        });
    }
}

#[test]
fn the_agent_api_needs_a_chaos_token() {
    let agent = Agent::start(&["--auth-token", &format!("chaos:{CHAOS}"), "--auth-token", &format!("query:{QUERY}")]);
    let proxies = agent.url("/proxies");
    let (status, challenge, body) = call("GET", &proxies, None, None);
    assert_eq!((status, challenge.as_str()), (401, "Bearer realm=\"seismo\""), "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["status"], 401, "Toxiproxy's error shape: {body}");
    assert_eq!(call("GET", &proxies, Some(&bearer(QUERY)), None).0, 403);
    assert_eq!(call("GET", &proxies, Some(&bearer(CHAOS)), None).0, 200);
    let create = br#"{"name":"p","listen":"127.0.0.1:0","upstream":"127.0.0.1:1"}"#.to_vec();
    assert_eq!(call("POST", &proxies, None, Some(("application/json", create.clone()))).0, 401);
    assert_eq!(call("POST", &proxies, Some(&bearer(CHAOS)), Some(("application/json", create))).0, 201);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = seismo_client::AgentClient::new(&agent.url("")).unwrap().with_token(CHAOS);
        assert!(client.proxies().await.unwrap().contains_key("p"));
    });
}

#[test]
fn the_agent_refuses_a_non_loopback_api_without_tokens_unless_insecure() {
    let out = Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["chaos", "agent", "--api", "0.0.0.0:0"])
        .env("SEISMO_LOG", "warn")
        .env_remove("SEISMO_AUTH_TOKENS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to serve the chaos API") && stderr.contains("--auth-token chaos:"), "{stderr}");

    // With a token, or with --insecure, it serves.
    for extra in [vec!["--auth-token".to_string(), format!("chaos:{CHAOS}")], vec!["--insecure".to_string()]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_seismo"))
            .args(["chaos", "agent", "--api", "0.0.0.0:0"])
            .args(&extra)
            .env("SEISMO_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("seismo chaos agent ready:"), "{extra:?}: {line:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn the_agent_can_refuse_or_limit_the_commands_it_starts() {
    let off = Agent::start(&["--no-processes"]);
    let (status, body) = off.request("POST", "/processes", Some(r#"{"command":["sleep","30"]}"#));
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--no-processes"), "{body}");

    let limited = Agent::start(&["--allow-command", "sleep"]);
    let (status, body) = limited.request("POST", "/processes", Some(r#"{"command":["/bin/sh","-c","id"]}"#));
    assert_eq!(status, 403, "{body}");
    let (status, body) = limited.request("POST", "/processes", Some(r#"{"command":["sleep","30"]}"#));
    assert_eq!(status, 201, "{body}");
    assert!(limited.stop(), "the agent stops the sleep it started and exits 0");
}

#[test]
fn bad_token_specs_are_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["serve", "--http", "127.0.0.1:0", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0"])
        .args(["--auth-token", "reader:0123456789abc"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown role \"reader\""), "{stderr}");
}
