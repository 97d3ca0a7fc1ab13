//! Every acknowledged span survives `kill -9`: writers stream OTLP/HTTP
//! requests at the real binary while it flushes segments, the process is killed
//! mid-ingest, and after a restart every span whose request got a 200 must be
//! served by the Jaeger API.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const SERVICE: &str = "durability";
const SPANS_PER_TRACE: usize = 20;
const TRACES_PER_REQUEST: usize = 2;

fn trace_id(writer: u8, n: u32) -> [u8; 16] {
    let mut id = [0xd0; 16];
    id[0] = writer + 1;
    id[12..].copy_from_slice(&n.to_be_bytes());
    id
}

fn span_id(trace: &[u8; 16], i: usize) -> [u8; 8] {
    let mut id = [0u8; 8];
    id[..4].copy_from_slice(&trace[12..]);
    id[4] = trace[0];
    id[7] = i as u8 + 1;
    id
}

/// A trace id and span id, as sent.
type SpanIds = ([u8; 16], [u8; 8]);

fn request(writer: u8, first: u32, now_ns: u64) -> (Vec<u8>, Vec<SpanIds>) {
    let mut spans = Vec::new();
    let mut ids = Vec::new();
    for t in 0..TRACES_PER_REQUEST as u32 {
        let tid = trace_id(writer, first + t);
        for i in 0..SPANS_PER_TRACE {
            let sid = span_id(&tid, i);
            ids.push((tid, sid));
            spans.push(Span {
                trace_id: tid.to_vec(),
                span_id: sid.to_vec(),
                parent_span_id: if i == 0 { Vec::new() } else { span_id(&tid, i - 1).to_vec() },
                name: format!("op-{}", i % 4),
                kind: 2,
                start_time_unix_nano: now_ns + i as u64 * 1000,
                end_time_unix_nano: now_ns + i as u64 * 1000 + 500_000,
                attributes: vec![KeyValue {
                    key: "writer".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::IntValue(writer as i64)) }),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue(SERVICE.into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    (req.encode_to_vec(), ids)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Spans the Jaeger API serves for our service, as (trace id hex, span id hex).
fn stored_spans(server: &Server) -> HashSet<(String, String)> {
    let (status, body) = server.get_json(&format!("/api/traces?service={SERVICE}&limit=10000&lookback=1h"));
    assert_eq!(status, 200, "{body}");
    let mut out = HashSet::new();
    add_spans(&body, &mut out);
    out
}

/// Adds the (trace id, span id) of every span of a Jaeger search answer to `out`; returns how many traces it held.
fn add_spans(body: &serde_json::Value, out: &mut HashSet<(String, String)>) -> usize {
    let traces = body["data"].as_array().unwrap();
    for trace in traces {
        for span in trace["spans"].as_array().unwrap() {
            out.insert((span["traceID"].as_str().unwrap().to_string(), span["spanID"].as_str().unwrap().to_string()));
        }
    }
    traces.len()
}

/// As [`stored_spans`], for more traces than one search returns: one search
/// per second of span start times from `since_ns` to now.
fn stored_spans_since(server: &Server, since_ns: u64) -> HashSet<(String, String)> {
    let mut out = HashSet::new();
    let (mut from_us, end_us) = (since_ns / 1_000 - 1_000_000, now_ns() / 1_000 + 1_000_000);
    while from_us < end_us {
        let to_us = from_us + 1_000_000;
        let (status, body) =
            server.get_json(&format!("/api/traces?service={SERVICE}&limit=10000&start={from_us}&end={}", to_us - 1));
        assert_eq!(status, 200, "{body}");
        let traces = add_spans(&body, &mut out);
        assert!(traces < 10_000, "a one-second window holds the search's limit: make the windows smaller");
        from_us = to_us;
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn segment_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("segments"))
        .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "parquet")).count())
        .unwrap_or(0)
}

/// Four writers stream requests at `server` until `ready` says so (or a
/// minute passes), then the server is killed with SIGKILL mid-stream.
/// Returns the spans whose request was acknowledged.
fn stream_then_kill_9(server: Server, ready: impl Fn(&Server, u64) -> bool) -> Vec<SpanIds> {
    let url = server.otlp_url("/v1/traces");
    let acked: Arc<Mutex<Vec<SpanIds>>> = Arc::default();
    let acked_count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4u8)
        .map(|w| {
            let (url, acked, acked_count, stop) = (url.clone(), acked.clone(), acked_count.clone(), stop.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let (body, ids) = request(w, n, now_ns());
                    n += TRACES_PER_REQUEST as u32;
                    match client.post(&url).header("content-type", "application/x-protobuf").body(body).send() {
                        Ok(r) if r.status().is_success() => {
                            acked_count.fetch_add(ids.len() as u64, Ordering::Relaxed);
                            acked.lock().unwrap().extend(ids);
                        }
                        Ok(r) if r.status().as_u16() == 429 => std::thread::sleep(Duration::from_millis(20)),
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => return, // the server is gone
                    }
                }
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&server, acked_count.load(Ordering::Relaxed)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let spans = std::mem::take(&mut *acked.lock().unwrap());
    spans
}

/// The `seismo_store_compactions_total` counter of `/metrics`.
fn compactions(server: &Server) -> u64 {
    let text = reqwest::blocking::get(server.query_url("/metrics")).and_then(|r| r.text()).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("seismo_store_compactions_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Spans of our service the stats API counts over the last hour: a span
/// stored twice (say, by a merge and its inputs) counts twice.
fn counted_spans(server: &Server) -> u64 {
    let now_us = now_ns() / 1_000;
    let (status, body) = server.get_json(&format!(
        "/api/v1/stats?service={SERVICE}&start={}&end={}",
        now_us - 3_600_000_000,
        now_us + 60_000_000
    ));
    assert_eq!(status, 200, "{body}");
    body["services"].as_array().unwrap().iter().map(|svc| svc["requestCount"].as_u64().unwrap()).sum()
}

#[test]
fn every_acknowledged_span_survives_kill_9_during_a_merge() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments (a flush a second or sooner), merged several at a time: merges run back to back while the
    // writers stream, so the kill very likely lands inside one.
    let flags = ["--flush-rows", "1000", "--compact-rows", "200000"];
    let started = now_ns();
    let server = Server::start(dir.path(), &flags);
    let merges = std::cell::Cell::new(0);
    let acked = stream_then_kill_9(server, |server, acked| {
        merges.set(compactions(server));
        acked >= 30_000 && merges.get() >= 2
    });
    assert!(acked.len() >= 30_000, "only {} spans acknowledged before the deadline", acked.len());
    assert!(merges.get() >= 2, "only {} merges ran before the deadline", merges.get());
    let server = Server::start(dir.path(), &["--compact-rows", "0"]);
    let stored = stored_spans_since(&server, started);
    let missing = acked.iter().filter(|(t, s)| !stored.contains(&(hex(t), hex(s)))).count();
    assert_eq!(missing, 0, "of {} acknowledged spans", acked.len());
    assert_eq!(counted_spans(&server), stored.len() as u64, "no span is stored twice");
}

#[test]
fn every_acknowledged_span_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // Small memtables: the kill lands while segments are being written.
    let server = Server::start(dir.path(), &["--flush-rows", "4000"]);
    // Kill once several segments exist and plenty is acknowledged, mid-stream.
    let acked = stream_then_kill_9(server, |_, acked| segment_count(dir.path()) >= 2 && acked >= 20_000);
    assert!(acked.len() >= 20_000, "only {} spans acknowledged before the deadline", acked.len());

    let server = Server::start(dir.path(), &["--flush-rows", "4000"]);
    let stored = stored_spans(&server);
    let missing: Vec<_> = acked.iter().filter(|(t, s)| !stored.contains(&(hex(t), hex(s)))).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged spans lost after kill -9, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(3)]
    );

    // Spot-check whole traces by id, structure included.
    for (t, _) in acked.iter().step_by(997).take(20) {
        let (status, body) = server.get_json(&format!("/api/traces/{}", hex(t)));
        assert_eq!(status, 200);
        let spans = body["data"][0]["spans"].as_array().unwrap();
        assert_eq!(spans.len(), SPANS_PER_TRACE);
        assert_eq!(spans.iter().filter(|s| s["references"].as_array().unwrap().is_empty()).count(), 1);
    }

    // The restarted server takes writes, and a second kill loses none of them.
    let (body, ids) = request(9, 0, now_ns());
    let r = reqwest::blocking::Client::new()
        .post(server.otlp_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .unwrap();
    assert!(r.status().is_success());
    server.kill9();
    let server = Server::start(dir.path(), &[]);
    let stored = stored_spans(&server);
    assert!(ids.iter().all(|(t, s)| stored.contains(&(hex(t), hex(s)))));
    assert!(acked.iter().all(|(t, s)| stored.contains(&(hex(t), hex(s)))));
}
