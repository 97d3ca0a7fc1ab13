//! TLS on every listener (issue 15): the OTLP receivers, the query API and the
//! agent's API serve TLS from PEM files, optionally requiring client
//! certificates; a real OpenTelemetry SDK exporter sends over TLS with a
//! bearer token, and the agent exports its fault spans to a TLS collector.

mod common;

#[path = "chaos_agent/agent.rs"]
mod agent;
#[path = "chaos_agent/upstream.rs"]
mod upstream;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agent::Agent;
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use prost::Message;

const INGEST: &str = "ingest-token-0123456789";
const QUERY: &str = "query-token-0123456789";

/// A CA and what it signed, as PEM files in a temporary folder.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca_pem: String,
    /// A client certificate the CA signed, then its key.
    client_identity: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["e2e-client".into()]).unwrap().signed_by(&client_key, &issuer).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca_pem),
        cert: write("server.pem", &server.pem()),
        key: write("server.key", &server_key.serialize_pem()),
        client_identity: format!("{}{}", client.pem(), client_key.serialize_pem()),
        ca_pem,
        _dir: dir,
    }
}

/// `seismo serve` over TLS on loopback ports; killed on drop.
struct TlsServer {
    child: Child,
    grpc: String,
    otlp_http: String,
    http: String,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls_server(data: &Path, pki: &Pki, extra: &[&str]) -> TlsServer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["serve", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .arg("--tls-cert")
        .arg(&pki.cert)
        .arg("--tls-key")
        .arg(&pki.key)
        .args(["--auth-token", &format!("ingest:{INGEST}"), "--auth-token", &format!("query:{QUERY}")])
        .args(extra)
        .env("SEISMO_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("seismo ready:"), "{line:?}");
    let field =
        |name: &str| line.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{name}="))).unwrap().to_string();
    TlsServer { grpc: field("otlp-grpc"), otlp_http: field("otlp-http"), http: field("http"), child }
}

fn https_client(pki: &Pki, identity: bool) -> reqwest::blocking::Client {
    let mut builder = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap());
    if identity {
        builder = builder.identity(reqwest::Identity::from_pem(pki.client_identity.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// The query API's `/api/services`, polled until it lists `service`.
fn wait_for_service(client: &seismo_client::Client, service: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    common::eventually(Duration::from_secs(15), || {
        rt.block_on(client.services()).ok().filter(|s| s.iter().any(|s| s == service)).map(|_| ())
    });
}

#[test]
fn every_serve_listener_speaks_tls_and_an_sdk_exporter_sends_over_it() {
    let pki = pki();
    let data = tempfile::tempdir().unwrap();
    let server = start_tls_server(data.path(), &pki, &[]);

    // /healthz over TLS; plaintext on the TLS port gets no answer.
    let https = https_client(&pki, false);
    let health = https.get(format!("https://{}/healthz", server.http)).send().unwrap();
    assert_eq!(health.status(), 200);
    assert!(reqwest::blocking::get(format!("http://{}/healthz", server.http)).is_err());

    // A real SDK exporter over gRPC + TLS, with the ingest token.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let guard = rt.enter();
    let mut metadata = MetadataMap::new();
    metadata.insert("authorization", format!("Bearer {INGEST}").parse().unwrap());
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem)).domain_name("localhost");
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("https://{}", server.grpc))
        .with_tls_config(tls)
        .with_metadata(metadata)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("tls-sdk-grpc").build())
        .build();
    provider.tracer("tls-e2e").start("checkout").end();
    provider.shutdown().unwrap();
    drop(guard);

    // OTLP/HTTP over TLS.
    let body = common::one_span_export(&[0xc1; 16], &[0xd1; 8], "tls-http", "raw").encode_to_vec();
    let posted = https
        .post(format!("https://{}/v1/traces", server.otlp_http))
        .header("content-type", "application/x-protobuf")
        .header("authorization", format!("Bearer {INGEST}"))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(posted.status(), 200);

    // The client crate reads both back over TLS.
    let client = seismo_client::Client::new(&format!("https://{}", server.http))
        .unwrap()
        .with_token(QUERY)
        .with_tls(Some(pki.ca_pem.as_bytes()), None)
        .unwrap();
    wait_for_service(&client, "tls-sdk-grpc");
    wait_for_service(&client, "tls-http");
    // So does the TUI, given the CA and the token.
    let frame = Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["tui", "--render-once", "200x30", "--screen", "services"])
        .args(["--query-url", &format!("https://{}", server.http), "--query-token", QUERY])
        .arg("--ca-cert")
        .arg(&pki.ca)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&frame.stdout);
    assert!(
        frame.status.success() && text.contains("tls-sdk-grpc"),
        "{text}\n{}",
        String::from_utf8_lossy(&frame.stderr)
    );
    // Without the CA the server's certificate is not trusted.
    let untrusting = seismo_client::Client::new(&format!("https://{}", server.http)).unwrap().with_token(QUERY);
    let err = rt.block_on(untrusting.services()).unwrap_err();
    assert!(err.status().is_none(), "a TLS failure, not an HTTP answer: {err}");
}

#[test]
fn with_a_client_ca_only_clients_with_a_certificate_are_served() {
    let pki = pki();
    let data = tempfile::tempdir().unwrap();
    let ca = pki.ca.to_str().unwrap().to_string();
    let server = start_tls_server(data.path(), &pki, &["--tls-client-ca", &ca]);
    let url = format!("https://{}/healthz", server.http);
    assert!(https_client(&pki, false).get(&url).send().is_err(), "served without a client certificate");
    assert_eq!(https_client(&pki, true).get(&url).send().unwrap().status(), 200);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = seismo_client::Client::new(&format!("https://{}", server.http))
        .unwrap()
        .with_token(QUERY)
        .with_tls(Some(pki.ca_pem.as_bytes()), Some(pki.client_identity.as_bytes()))
        .unwrap();
    rt.block_on(client.services()).unwrap();
}

#[test]
fn bad_tls_files_stop_serve_with_the_file_named() {
    let pki = pki();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["serve", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--tls-cert")
        .arg(&pki.key) // a key where the certificate belongs
        .arg("--tls-key")
        .arg(&pki.key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.key") && stderr.contains("CERTIFICATE"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["serve", "--data-dir"])
        .arg(data.path())
        .arg("--tls-cert")
        .arg(&pki.cert)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a certificate without a key is refused");
}

#[test]
fn the_agent_serves_its_api_over_tls_and_exports_faults_to_a_tls_collector() {
    let pki = pki();
    let data = tempfile::tempdir().unwrap();
    let server = start_tls_server(data.path(), &pki, &[]);
    let (cert, key, ca) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap(), pki.ca.to_str().unwrap());
    let otlp = format!("https://localhost:{}", server.grpc.rsplit(':').next().unwrap());
    let agent = Agent::start(&[
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--otlp-endpoint",
        &otlp,
        "--otlp-ca-cert",
        ca,
        "--otlp-token",
        INGEST,
    ]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = seismo_client::AgentClient::new(&format!("https://{}", agent.api))
        .unwrap()
        .with_tls(Some(pki.ca_pem.as_bytes()), None)
        .unwrap();
    let upstream = upstream::echo_server();
    rt.block_on(async {
        let proxy = seismo_api::toxiproxy::ProxyRequest {
            name: Some("echo".into()),
            listen: Some("127.0.0.1:0".into()),
            upstream: Some(upstream.to_string()),
            enabled: None,
        };
        let created = client.create_proxy(&proxy).await.unwrap();
        let toxic: seismo_api::toxiproxy::ToxicRequest =
            serde_json::from_value(serde_json::json!({"type": "latency", "attributes": {"latency": 5}})).unwrap();
        client.add_toxic("echo", &toxic).await.unwrap();
        let mut conn = upstream::connect(created.listen.parse().unwrap());
        upstream::round_trip(&mut conn, b"ping");
    });
    assert!(reqwest::blocking::get(format!("http://{}/proxies", agent.api)).is_err(), "plaintext on a TLS API");

    // The fault span went over gRPC + TLS with the ingest token.
    let query = seismo_client::Client::new(&format!("https://{}", server.http))
        .unwrap()
        .with_token(QUERY)
        .with_tls(Some(pki.ca_pem.as_bytes()), None)
        .unwrap();
    wait_for_service(&query, "seismo-chaos");
}
