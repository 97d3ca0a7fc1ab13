//! `seismo chaos run` end to end: a real `seismo serve`, a real chaos agent
//! (its fault spans exported to the server) in front of a loopback HTTP
//! upstream ("payments"), and "checkout" traffic from the OpenTelemetry SDK
//! (a server span per request, a client span per call through the proxy,
//! the client span's context sent as `traceparent`). Each test runs the real
//! binary on an experiment file and reads its exit code, journal and the
//! agent's state afterwards.
//!
//! This file is the harness; the tests are in one module per topic.

#[path = "../chaos_agent/agent.rs"]
mod agent;
#[path = "../common/mod.rs"]
mod common;
#[path = "../chaos_agent/upstream.rs"]
mod upstream;

mod invalid;
mod rollback;
mod verdicts;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use agent::Agent;
use common::{eventually, Server};
use seismo_experiment::Journal;
use serde_json::{json, Value};

/// The system under test: store, agent, a `payments` proxy, checkout traffic.
struct Lab {
    dir: tempfile::TempDir,
    server: Server,
    agent: Agent,
    /// Runs as long as the lab.
    _traffic: Traffic,
    /// The upstream's address (for experiments that create their own proxy).
    upstream: String,
}

impl Lab {
    fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("data"), &[]);
        let agent = Agent::start(&["--otlp-endpoint", &server.grpc_url()]);
        let upstream = upstream::http_upstream();
        let (status, proxy) = agent.request(
            "POST",
            "/proxies",
            Some(
                &json!({"name": "payments", "listen": "127.0.0.1:0", "upstream": upstream.addr.to_string()})
                    .to_string(),
            ),
        );
        assert_eq!(status, 201, "{proxy}");
        let listen = proxy["listen"].as_str().unwrap().to_string();
        let traffic = Traffic::start(&server.grpc_url(), &listen);
        let lab = Lab { dir, server, agent, _traffic: traffic, upstream: upstream.addr.to_string() };
        // The steady state needs requests in the store before the first probe.
        eventually(Duration::from_secs(30), || {
            let (_, v) = lab.server.get_json("/api/v1/stats?service=checkout&lookback=5s");
            (v["services"][0]["requestCount"].as_u64()? >= 20).then_some(())
        });
        lab
    }

    /// Writes an experiment: `[agent]`, `[query]` and fast `[settings]` of
    /// this lab, then `body`.
    fn experiment(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        let text = format!(
            "title = \"{name}\"\n[agent]\nurl = \"http://{}\"\n[query]\nurl = \"http://{}\"\n[settings]\nprobe_interval = \"500ms\"\nsettle = \"1500ms\"\n{body}",
            self.agent.api, self.server.http
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn journal_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.json"))
    }

    /// Runs `seismo chaos run FILE --journal J ...` to its end.
    fn run(&self, file: &Path, extra: &[&str]) -> (i32, String, String, Journal) {
        let journal = file.with_extension("json");
        let out = seismo(
            &[&["chaos", "run"], &[file.to_str().unwrap(), "--journal", journal.to_str().unwrap()][..], extra].concat(),
        );
        let (code, stdout, stderr) = outcome(&out);
        let parsed = Journal::read(&journal).unwrap_or_else(|e| panic!("{e}\nstdout:\n{stdout}\nstderr:\n{stderr}"));
        (code, stdout, stderr, parsed)
    }

    /// Every toxic on the agent, as `proxy/name`, and every proxy.
    fn agent_state(&self) -> (Vec<String>, Vec<String>) {
        let (status, proxies) = self.agent.request("GET", "/proxies", None);
        assert_eq!(status, 200);
        let proxies = proxies.as_object().unwrap();
        let toxics = proxies
            .iter()
            .flat_map(|(p, v)| {
                v["toxics"].as_array().unwrap().iter().map(move |t| format!("{p}/{}", t["name"].as_str().unwrap()))
            })
            .collect();
        (toxics, proxies.keys().cloned().collect())
    }

    /// Asserts the agent holds only the `payments` proxy and no toxic.
    fn assert_clean(&self) {
        let (toxics, proxies) = self.agent_state();
        assert!(toxics.is_empty(), "left on the agent: {toxics:?}");
        assert_eq!(proxies, vec!["payments".to_string()]);
    }

    /// The trace `id` from the query API.
    fn trace(&self, id: &str) -> Value {
        let (status, v) = self.server.get_json(&format!("/api/traces/{id}"));
        assert_eq!(status, 200, "trace {id}: {v}");
        v["data"][0].clone()
    }
}

/// `seismo ARGS`, to its end.
fn seismo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(args)
        .env("SEISMO_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("running seismo")
}

fn outcome(out: &Output) -> (i32, String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// The spans of a Jaeger trace with `tag` = `value`.
fn spans_with_tag<'a>(trace: &'a Value, tag: &str, value: &str) -> Vec<&'a Value> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["tags"].as_array().unwrap().iter().any(|t| t["key"] == tag && t["value"] == value))
        .collect()
}

/// "checkout" requests from the OpenTelemetry SDK, on a thread, until dropped:
/// a server span `GET /checkout` around a client span `POST /pay` that calls
/// payments through the proxy; a 5xx answer marks both as errors.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    fn start(otlp_grpc: &str, proxy: &str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let (otlp_grpc, proxy, stop2) = (otlp_grpc.to_string(), proxy.to_string(), stop.clone());
        let thread = std::thread::spawn(move || checkout_loop(&otlp_grpc, &proxy, &stop2));
        Traffic { stop, thread: Some(thread) }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn checkout_loop(otlp_grpc: &str, proxy: &str, stop: &AtomicBool) {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
    use opentelemetry::Context;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _guard = rt.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(otlp_grpc).build().unwrap();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name("checkout").build())
        .build();
    let tracer = provider.tracer("checkout");
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let root = tracer.span_builder("GET /checkout").with_kind(SpanKind::Server).start(&tracer);
        let root_cx = Context::current_with_span(root);
        let call = tracer.span_builder("POST /pay").with_kind(SpanKind::Client).start_with_context(&tracer, &root_cx);
        let call_cx = root_cx.with_span(call);
        let mut carrier = std::collections::HashMap::new();
        TraceContextPropagator::new().inject_context(&call_cx, &mut carrier);
        let answer = http
            .post(format!("http://{proxy}/pay/{i}"))
            .header("traceparent", carrier["traceparent"].clone())
            .body("{}")
            .send();
        let failed = match answer {
            Ok(r) => r.status().as_u16() >= 500,
            Err(_) => true,
        };
        // Both spans end when the answer came: the simple exporter sends the
        // call's span before the root ends, and that time is not the request's.
        let done = std::time::SystemTime::now();
        if failed {
            call_cx.span().set_status(Status::error("payments failed"));
            root_cx.span().set_status(Status::error("payments failed"));
        }
        call_cx.span().end_with_timestamp(done);
        root_cx.span().end_with_timestamp(done);
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = provider.shutdown();
}
