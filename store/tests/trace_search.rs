//! Trace search against a brute-force scan of the same spans: random spans
//! spread over several flushes (traces split across segments, and some left
//! in the memtable), random queries of every kind, and the same answers
//! from the memtable and segments, after compaction, after a restart, and
//! with every span in segments.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use seismo_store::*;

const T0: i64 = 1_700_000_000_000_000_000;
const SERVICES: [&str; 4] = ["frontend", "cart", "payments", "db"];
const OPS: [&str; 3] = ["GET", "POST", "Query"];

/// A small deterministic generator (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the brute-force scan needs of a span.
#[derive(Clone, Debug)]
struct Plain {
    trace: [u8; 16],
    service: &'static str,
    name: &'static str,
    kind: i32,
    start: i64,
    duration: i64,
    attrs: Vec<(String, String)>,
    error: bool,
}

fn str_kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn request(spans: &[(Plain, [u8; 8])]) -> ExportTraceServiceRequest {
    let resource_spans = spans
        .iter()
        .map(|(p, span_id)| ResourceSpans {
            resource: Some(Resource { attributes: vec![str_kv("service.name", p.service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: p.trace.to_vec(),
                    span_id: span_id.to_vec(),
                    name: p.name.into(),
                    kind: p.kind,
                    start_time_unix_nano: p.start as u64,
                    end_time_unix_nano: (p.start + p.duration) as u64,
                    attributes: p.attrs.iter().map(|(k, v)| str_kv(k, v)).collect(),
                    status: p.error.then(|| Status { code: status::StatusCode::Error as i32, message: String::new() }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// `n` spans over `traces` traces; every start time distinct.
fn spans(rng: &mut Rng, n: usize, traces: u64) -> Vec<(Plain, [u8; 8])> {
    let mut starts: Vec<i64> = (0..n as i64).map(|i| T0 + i * 1_000).collect();
    for i in (1..starts.len()).rev() {
        starts.swap(i, rng.below(i as u64 + 1) as usize);
    }
    (0..n)
        .map(|i| {
            let t = rng.below(traces);
            let mut trace = [0u8; 16];
            trace[..8].copy_from_slice(&t.to_be_bytes());
            trace[8] = 7;
            let attrs =
                (0..rng.below(3)).map(|_| (format!("k{}", rng.below(3)), format!("v{}", rng.below(4)))).collect();
            let plain = Plain {
                trace,
                service: SERVICES[rng.below(4) as usize],
                name: OPS[rng.below(3) as usize],
                kind: 1 + rng.below(3) as i32,
                start: starts[i],
                duration: 1_000 * (1 + rng.below(100) as i64),
                attrs,
                error: rng.below(5) == 0,
            };
            (plain, (i as u64 + 1).to_be_bytes())
        })
        .collect()
}

fn random_query(rng: &mut Rng) -> TraceQuery {
    let mut q = TraceQuery { limit: 1 + rng.below(25) as usize, ..Default::default() };
    if rng.below(4) > 0 {
        q.service = Some(SERVICES[rng.below(4) as usize].into());
    }
    if rng.below(3) == 0 {
        q.operation = Some(OPS[rng.below(3) as usize].into());
    }
    for _ in 0..rng.below(3) {
        match rng.below(4) {
            0 => q.tags.push(("error".into(), "true".into())),
            _ => q.tags.push((format!("k{}", rng.below(3)), format!("v{}", rng.below(4)))),
        }
    }
    if rng.below(4) == 0 {
        q.span_kind = Some(1 + rng.below(3) as i32);
    }
    if rng.below(3) == 0 {
        q.min_duration_ns = Some(1_000 * rng.below(60) as i64);
    }
    if rng.below(4) == 0 {
        q.max_duration_ns = Some(1_000 * (40 + rng.below(60) as i64));
    }
    if rng.below(2) == 0 {
        q.start_min_ns = Some(T0 + 1_000 * rng.below(2_000) as i64);
    }
    if rng.below(2) == 0 {
        q.start_max_ns = Some(T0 + 1_000 * (1_000 + rng.below(2_000) as i64));
    }
    q
}

fn matches(p: &Plain, q: &TraceQuery) -> bool {
    q.service.as_deref().is_none_or(|s| s == p.service)
        && q.operation.as_deref().is_none_or(|o| o == p.name)
        && q.span_kind.is_none_or(|k| k == p.kind)
        && q.start_min_ns.is_none_or(|m| p.start >= m)
        && q.start_max_ns.is_none_or(|m| p.start <= m)
        && q.min_duration_ns.is_none_or(|m| p.duration >= m)
        && q.max_duration_ns.is_none_or(|m| p.duration <= m)
        && q.tags.iter().all(|(k, v)| match k.as_str() {
            "error" => p.error && v == "true",
            _ => p.attrs.iter().any(|(ak, av)| ak == k && av == v),
        })
}

/// The trace ids the search must return, in order.
fn brute_force(all: &[Plain], q: &TraceQuery) -> Vec<[u8; 16]> {
    let mut best: HashMap<[u8; 16], i64> = HashMap::new();
    for p in all.iter().filter(|p| matches(p, q)) {
        let e = best.entry(p.trace).or_insert(p.start);
        *e = (*e).max(p.start);
    }
    let mut ranked: Vec<(i64, [u8; 16])> = best.into_iter().map(|(t, s)| (s, t)).collect();
    ranked.sort_by(|a, b| b.cmp(a));
    ranked.truncate(q.effective_limit());
    ranked.into_iter().map(|(_, t)| t).collect()
}

fn found(store: &Store, q: &TraceQuery, all: &[Plain]) -> Vec<[u8; 16]> {
    let traces = store.find_traces(q).unwrap();
    for t in &traces {
        let id = t[0].trace_id;
        let expected = all.iter().filter(|p| p.trace == id.0).count();
        assert_eq!(t.len(), expected, "every returned trace is complete: {q:?}");
    }
    traces.iter().map(|t| t[0].trace_id.0).collect()
}

fn check_queries(store: &Store, all: &[Plain], seed: u64, when: &str) {
    let mut rng = Rng(seed);
    let mut non_empty = 0;
    for i in 0..100 {
        let q = random_query(&mut rng);
        let want = brute_force(all, &q);
        non_empty += usize::from(!want.is_empty());
        assert_eq!(found(store, &q, all), want, "{when}, query {i}: {q:?}");
    }
    assert!(non_empty > 30, "the queries must mostly find something ({non_empty} of 100 did)");
}

#[test]
fn search_answers_as_a_scan_of_every_span_would() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let generated = spans(&mut rng, 3_000, 400);
    let all: Vec<Plain> = generated.iter().map(|(p, _)| p.clone()).collect();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    // Ten flushes of 250 spans (traces split across them), 500 in the memtable.
    for (i, chunk) in generated.chunks(50).enumerate() {
        store.append_blocking(Batch::Traces(request(chunk))).unwrap();
        if i % 5 == 4 && i < 50 {
            store.flush().unwrap();
        }
    }
    let span_segments = |store: &Store| store.segments().iter().filter(|m| m.signal == Signal::Traces).count();
    // The background compactor may merge at any moment: answers must not change.
    check_queries(&store, &all, 1, "memtable and segments");
    store.compact().unwrap();
    assert!(span_segments(&store) < 10, "small segments were merged");
    assert!(store.counters().compactions.load(std::sync::atomic::Ordering::Relaxed) > 0);
    check_queries(&store, &all, 2, "after compaction");
    store.close().unwrap();

    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    check_queries(&store, &all, 3, "after a restart");
    store.flush().unwrap();
    check_queries(&store, &all, 4, "every span in segments");
    store.close().unwrap();
}
