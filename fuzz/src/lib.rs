//! Shared fixtures of the fuzz targets: a small store with traces and logs
//! (half flushed into segments, half in the memtable), the query API's router
//! over it with a way to send it one request, the in-memory PromQL series, the
//! fixed "now" every parser is given, and the panic policy.
//!
//! Everything here is built once per fuzzing process; each input then runs
//! against it. The targets themselves are in `fuzz_targets/`.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use seismo_promql::{MemSource, Series};
use seismo_store::{Batch, Store, StoreConfig};

/// "Now" for every parser that takes one: 2026-12-01T00:00:00Z, in ns.
pub const NOW_NS: i64 = 1_796_083_200_000_000_000;
/// The same instant in ms, around which the PromQL series have samples.
pub const NOW_MS: i64 = NOW_NS / 1_000_000;

/// Makes a panic raised inside `promql-parser` survivable, and every other panic fatal.
/// libfuzzer-sys aborts the process from its panic hook, even for panics that the code
/// under test catches; seismo catches the parser's panics on purpose (some out-of-range
/// numbers panic inside it, a known upstream issue) and answers 400, so those must not
/// stop the fuzzer. A panic is the parser's when its backtrace runs through
/// `promql_parser::parser`, which calls no seismo code. Panics in seismo's own code still
/// abort, and a parser panic that seismo failed to catch still fails the target: the query
/// thread's last-resort `catch_unwind` answers 500, which the target refuses.
pub fn tolerate_promql_parser_panics() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let fatal = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let trace = std::backtrace::Backtrace::force_capture().to_string();
            if !trace.contains("promql_parser::parser") {
                fatal(info);
            }
        }));
    });
}

/// Set by the hook of [`tolerate_tantivy_phrase_seek_assertion`] when it let a panic pass.
pub static KNOWN_PANIC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets one known upstream panic pass, and keeps every other panic fatal: tantivy 0.27's
/// `PhraseScorer::seek_danger` has a `debug_assert!(target >= self.doc())` that fires when a
/// phrase that matches nothing in a segment is excluded (`q=-"payment cart"`, found by the
/// log_query target; the seek itself is harmless, and release builds have no debug
/// assertions). The fuzz build has debug assertions on in every crate, so without this the
/// target would stop on it again and again. The hook sets [`KNOWN_PANIC`]; the target then
/// skips the input whose search thread died of it.
pub fn tolerate_tantivy_phrase_seek_assertion() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let fatal = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let known = info.location().is_some_and(|l| l.file().ends_with("query/phrase_query/phrase_scorer.rs"))
                && info.payload_as_str().is_some_and(|m| m.contains("should be greater than or equal to doc"));
            if known {
                KNOWN_PANIC.store(true, std::sync::atomic::Ordering::SeqCst);
            } else {
                fatal(info);
            }
        }));
    });
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource { attributes: vec![kv("service.name", service), kv("host.name", "node-1")], ..Default::default() })
}

fn trace_id(n: u8) -> Vec<u8> {
    let mut id = vec![0xab; 16];
    id[15] = n;
    id
}

fn span_id(n: u8) -> Vec<u8> {
    let mut id = vec![0xcd; 8];
    id[7] = n;
    id
}

fn spans(round: u8) -> Batch {
    let start = (NOW_NS - 600_000_000_000) as u64 + u64::from(round) * 1_000_000_000;
    let mut frontend = Vec::new();
    let mut cart = Vec::new();
    for i in 0..8u8 {
        let n = round * 16 + i;
        let t = start + u64::from(i) * 10_000_000_000;
        frontend.push(Span {
            trace_id: trace_id(n),
            span_id: span_id(2 * i),
            name: format!("GET /cart/{}", i % 3),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: t,
            end_time_unix_nano: t + 5_000_000 * u64::from(i + 1),
            attributes: vec![kv("http.route", "/cart"), kv("http.method", "GET")],
            status: Some(Status {
                code: if i % 4 == 0 { status::StatusCode::Error } else { status::StatusCode::Ok } as i32,
                message: "boom".into(),
            }),
            ..Default::default()
        });
        cart.push(Span {
            trace_id: trace_id(n),
            span_id: span_id(2 * i + 1),
            parent_span_id: span_id(2 * i),
            name: "cart.get".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: t + 1_000_000,
            end_time_unix_nano: t + 3_000_000,
            attributes: vec![kv("db.system", "redis")],
            ..Default::default()
        });
    }
    let scope = |spans| ScopeSpans {
        scope: Some(InstrumentationScope { name: "fuzz".into(), ..Default::default() }),
        spans,
        ..Default::default()
    };
    Batch::Traces(ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans { resource: resource("frontend"), scope_spans: vec![scope(frontend)], ..Default::default() },
            ResourceSpans { resource: resource("cart"), scope_spans: vec![scope(cart)], ..Default::default() },
        ],
    })
}

fn logs(round: u8) -> Batch {
    let bodies = ["payment failed for order 42", "GET /cart 200 in 12ms", "cache miss: key=user:7", "shutting down"];
    let severities = [(17, "ERROR"), (9, "INFO"), (5, "DEBUG"), (13, "WARN")];
    let records = (0..8u8)
        .map(|i| {
            let t =
                (NOW_NS - 300_000_000_000) as u64 + u64::from(round) * 60_000_000_000 + u64::from(i) * 1_000_000_000;
            let (number, text) = severities[usize::from(i) % 4];
            LogRecord {
                time_unix_nano: t,
                observed_time_unix_nano: t,
                severity_number: number,
                severity_text: text.into(),
                body: Some(AnyValue { value: Some(any_value::Value::StringValue(bodies[usize::from(i) % 4].into())) }),
                attributes: vec![kv("http.route", "/cart"), kv("user.id", &format!("u{i}"))],
                trace_id: trace_id(round * 16 + i),
                span_id: span_id(2 * i),
                ..Default::default()
            }
        })
        .collect();
    Batch::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(if round == 0 { "frontend" } else { "cart" }),
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    })
}

/// A store with two rounds of traces and logs: the first flushed into
/// segments (Parquet + tantivy), the second in the memtable. Lives in a
/// temporary directory for the life of the process.
pub fn fixture_store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    &STORE.get_or_init(|| open_fixture(true)).1
}

/// The same data, all of it in the memtable: reads cost no file access, so a
/// target that runs several queries per input stays fast.
pub fn memtable_store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    &STORE.get_or_init(|| open_fixture(false)).1
}

fn open_fixture(flush_first_round: bool) -> (tempfile::TempDir, Store) {
    let dir = tempfile::Builder::new().prefix("seismo-fuzz-").tempdir().expect("a temporary directory");
    let mut config = StoreConfig::new(dir.path());
    config.flush_interval = Duration::from_secs(365 * 86_400);
    let store = Store::open(config).expect("open the fixture store");
    for round in 0..2 {
        store.append_blocking(spans(round)).expect("append spans");
        store.append_blocking(logs(round)).expect("append logs");
        if round == 0 && flush_first_round {
            store.flush().expect("flush the first round");
        }
    }
    (dir, store)
}

/// The query API as the server serves it (`seismo_query::router`) over `store`, with a
/// current-thread runtime to drive it; built once per store.
pub struct Api {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

impl Api {
    /// The router over `store`, with PromQL limits of 50 000 samples and 2 s per query (so a
    /// slow query ends well within libFuzzer's `-timeout`).
    pub fn new(store: &Store) -> Self {
        let limits = seismo_query::QueryLimits { max_samples: 50_000, timeout: Duration::from_secs(2) };
        let router = seismo_query::router(seismo_query::QueryState::new(store.clone()).with_query_limits(limits));
        // Multi-threaded like the server: handlers block on the blocking pool.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        Api { runtime, router }
    }

    /// Sends `request` through the router as a connection would, and answers the status
    /// and the whole body.
    pub fn send(&self, request: axum::http::Request<axum::body::Body>) -> (axum::http::StatusCode, Vec<u8>) {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.expect("the router answers");
            let status = response.status();
            (status, response.into_body().collect().await.expect("a body").to_bytes().to_vec())
        })
    }
}

/// Series for the PromQL target: counters, a histogram and a gauge with a
/// sample every 15 s over the 10 minutes before [`NOW_MS`], plus stale and
/// special values.
pub fn promql_series() -> MemSource {
    let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let times = || (0..=40).map(|i| NOW_MS - 600_000 + i * 15_000);
    let mut series = Vec::new();
    for (code, rate) in [("200", 10.0), ("500", 0.5)] {
        series.push(Series {
            labels: labels(&[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", "a:80"),
                ("code", code),
            ]),
            samples: times().enumerate().map(|(i, t)| (t, rate * i as f64)).collect(),
        });
    }
    for (le, share) in [("0.1", 0.5), ("0.5", 0.9), ("+Inf", 1.0)] {
        series.push(Series {
            labels: labels(&[("__name__", "request_duration_seconds_bucket"), ("job", "api"), ("le", le)]),
            samples: times().enumerate().map(|(i, t)| (t, (share * 4.0 * i as f64).floor())).collect(),
        });
    }
    series.push(Series {
        labels: labels(&[("__name__", "temperature_celsius"), ("room", "a")]),
        samples: times().enumerate().map(|(i, t)| (t, 20.0 + (i % 7) as f64 - 3.0)).collect(),
    });
    series.push(Series {
        labels: labels(&[("__name__", "odd_values"), ("kind", "special")]),
        samples: times()
            .zip([f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, f64::MAX, f64::MIN_POSITIVE].into_iter().cycle())
            .collect(),
    });
    MemSource::new(series)
}

/// The collector's body limit (20 MiB, its default).
pub const BODY_LIMIT: usize = seismo_collector::CollectorConfig::DEFAULT_MAX_BODY_BYTES;

/// The request's protobuf encoding: what `Store::append` writes into the WAL.
pub fn encode(batch: &Batch) -> Vec<u8> {
    use prost::Message;
    match batch {
        Batch::Traces(r) => r.encode_to_vec(),
        Batch::Logs(r) => r.encode_to_vec(),
        Batch::Metrics(r) => r.encode_to_vec(),
    }
}

/// What must hold for every request the collector decoded: the store's
/// validation does not panic, and the request survives the WAL — written as a
/// frame and replayed, it yields exactly the rows the append produced (or is
/// skipped, when the append would have refused it before writing anything).
pub fn check_decoded(batch: &Batch) {
    let converted = seismo_store::fuzzing::convert(batch);
    let mut file = Vec::new();
    seismo_store::fuzzing::encode_wal_frame(&mut file, 1, batch.signal(), &encode(batch));
    let replay = seismo_store::fuzzing::replay_wal_file(&file);
    assert_eq!(replay.seqs, [1], "an intact frame replays");
    assert_eq!(replay.valid_len, file.len() as u64, "an intact file is not truncated");
    match converted {
        Ok((rows, _)) => assert_eq!((replay.rows, replay.skipped), (rows as u64, 0), "replay yields the appended rows"),
        Err(_) => assert_eq!(replay.skipped, 1, "a refused request does not replay either"),
    }
}
