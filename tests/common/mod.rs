//! Runs the real `seismo` binary for end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `seismo serve` process on ephemeral loopback ports. Killed on drop.
pub(crate) struct Server {
    pub child: Child,
    pub grpc: String,
    pub otlp_http: String,
    pub http: String,
    pub data_dir: PathBuf,
    /// The server's log lines, when started with [`Server::start_capturing_log`].
    log: Option<Arc<Mutex<Vec<String>>>>,
}

impl Server {
    /// Starts `seismo serve` on `data_dir` with extra flags and waits for its ready line.
    pub(crate) fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::launch(data_dir, extra, false)
    }

    /// [`Server::start`], keeping the log (stderr) for [`Server::log_contains`]; the
    /// lines are still printed, so a failing test shows them.
    pub(crate) fn start_capturing_log(data_dir: &Path, extra: &[&str]) -> Server {
        Self::launch(data_dir, extra, true)
    }

    /// The value of the sample `name` (with its labels, as printed: `x_total{a="b"}`)
    /// on the query API's `/metrics`; panics when it is missing.
    pub(crate) fn metric(&self, name: &str) -> u64 {
        let text = reqwest::blocking::get(self.query_url("/metrics")).unwrap().text().unwrap();
        let line =
            text.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("no {name}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    }

    /// Whether a log line so far contains `needle`.
    pub(crate) fn log_contains(&self, needle: &str) -> bool {
        let log = self.log.as_ref().expect("started without capturing the log");
        log.lock().unwrap().iter().any(|line| line.contains(needle))
    }

    fn launch(data_dir: &Path, extra: &[&str], capture_log: bool) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_seismo"))
            .args([
                "serve",
                "--otlp-grpc",
                "127.0.0.1:0",
                "--otlp-http",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env("SEISMO_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(if capture_log { Stdio::piped() } else { Stdio::inherit() })
            .spawn()
            .expect("starting seismo serve");
        let log = child.stderr.take().map(|stderr| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("seismo ready:") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("seismo serve did not print its ready line");
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                .to_string()
        };
        let server = Server {
            grpc: field("otlp-grpc"),
            otlp_http: field("otlp-http"),
            http: field("http"),
            data_dir: data_dir.to_path_buf(),
            child,
            log,
        };
        server.wait_healthy();
        server
    }

    pub(crate) fn query_url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub(crate) fn otlp_url(&self, path: &str) -> String {
        format!("http://{}{}", self.otlp_http, path)
    }

    pub(crate) fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::blocking::Client::new();
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.query_url("/healthz")).send() {
                if r.status().is_success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("seismo never became healthy");
    }

    /// SIGTERM and wait: the graceful path (drain, flush, exit 0).
    pub(crate) fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "seismo exited with {exit:?} after SIGTERM");
    }

    /// SIGKILL: no chance to flush or clean up.
    pub(crate) fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// GET a query API path and parse JSON, returning (status, body).
    pub(crate) fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::blocking::Client::new().get(self.query_url(path)).send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(serde_json::Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes `s` for a URL query value (unreserved characters kept).
pub(crate) fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub(crate) fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An OTLP export of one 1 ms server span that ended now, from `service`.
pub(crate) fn one_span_export(
    trace_id: &[u8],
    span_id: &[u8],
    service: &str,
    name: &str,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue(service.into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id.to_vec(),
                    span_id: span_id.to_vec(),
                    name: name.into(),
                    kind: 2,
                    start_time_unix_nano: now - 1_000_000,
                    end_time_unix_nano: now,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
