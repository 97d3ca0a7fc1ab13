//! Request statistics and the service graph: the same numbers from the
//! memtable, from segment summaries, and from segments cut by the window;
//! parent/child edges found when parent and child land in different flushes.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use seismo_store::*;

const T0: i64 = 1_700_000_000_000_000_000;
const MS: i64 = 1_000_000;
const SEC: i64 = 1_000_000_000;

/// (trace, span, parent, kind, start s, duration ms, error).
type SpanSpec = (u8, u8, Option<u8>, i32, i64, i64, bool);

/// Spans of `service`, one per [`SpanSpec`].
fn spans(service: &str, list: &[SpanSpec]) -> Batch {
    let spans = list
        .iter()
        .map(|&(trace, id, parent, kind, start_s, dur_ms, error)| Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("{service} op"),
            kind,
            start_time_unix_nano: (T0 + start_s * SEC) as u64,
            end_time_unix_nano: (T0 + start_s * SEC + dur_ms * MS) as u64,
            status: error.then(|| Status { code: status::StatusCode::Error as i32, ..Default::default() }),
            ..Default::default()
        })
        .collect();
    Batch::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue(service.into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    })
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn stats(store: &Store, service: &str, start_s: i64, end_s: i64) -> Vec<(OpKey, u64, u64)> {
    let q = StatsQuery {
        service: Some(service.into()),
        start_ns: T0 + start_s * SEC,
        end_ns: T0 + end_s * SEC,
        ..Default::default()
    };
    store.span_stats(&q).unwrap().into_iter().map(|(k, s)| (k, s.spans, s.errors)).collect()
}

fn check(store: &Store) {
    // Traces 1..=20: cart server span i (start i s, i ms, every 4th an error)
    // under a frontend client span (parent) in another flush.
    let cart = stats(store, "cart", 0, 100);
    assert_eq!(cart, vec![(("cart".into(), "cart op".into(), SERVER), 20, 5)]);
    // A window that cuts segments: starts 5..=12 only (8 spans, errors at 8 and 12).
    assert_eq!(stats(store, "cart", 5, 12)[0].1, 8);
    assert_eq!(stats(store, "cart", 5, 12)[0].2, 2);
    let all = store.span_stats(&StatsQuery { start_ns: T0, end_ns: T0 + 100 * SEC, ..Default::default() }).unwrap();
    assert_eq!(all.len(), 2);
    let (_, cart_stats) = all.iter().find(|(k, _)| k.0 == "cart").unwrap();
    // Durations 1..=20 ms: p50 is 10 ms, p95 19 ms, within 1%.
    let p50 = cart_stats.latency.quantile(0.5).unwrap();
    assert!((p50 - 10.0 * MS as f64).abs() <= 0.1 * MS as f64, "{p50}");
    let p95 = cart_stats.latency.quantile(0.95).unwrap();
    assert!((p95 - 19.0 * MS as f64).abs() <= 0.2 * MS as f64, "{p95}");
    assert_eq!(store.dependencies(T0, T0 + 100 * SEC).unwrap(), vec![("frontend".into(), "cart".into(), 20)]);
}

#[test]
fn stats_and_edges_agree_across_memtable_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let cart = |range: std::ops::RangeInclusive<u8>| {
        let list: Vec<_> = range.map(|i| (i, 100 + i, Some(i), SERVER, i as i64, i as i64, i % 4 == 0)).collect();
        spans("cart", &list)
    };
    let frontend = |range: std::ops::RangeInclusive<u8>| {
        let list: Vec<_> = range.map(|i| (i, i, None, CLIENT, i as i64, 50, false)).collect();
        spans("frontend", &list)
    };
    // Children 1..=10 flushed before their parents arrive; parents 11..=20
    // flushed before their children arrive.
    store.append_blocking(cart(1..=10)).unwrap();
    store.append_blocking(frontend(11..=20)).unwrap();
    store.flush().unwrap();
    store.append_blocking(frontend(1..=10)).unwrap();
    store.append_blocking(cart(11..=20)).unwrap();
    check(&store);
    store.flush().unwrap();
    check(&store);
    store.close().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    check(&store);
}

/// Fault spans of experiment `run` (service `seismo-chaos`) in `traces`, each
/// a child of that trace's cart span.
fn fault_spans(run: &str, traces: &[u8]) -> Batch {
    let Batch::Traces(mut req) = spans(
        "seismo-chaos",
        &traces.iter().map(|&t| (t, 200 + t, Some(100 + t), 1, t as i64, 1, false)).collect::<Vec<_>>(),
    ) else {
        unreachable!()
    };
    for span in &mut req.resource_spans[0].scope_spans[0].spans {
        span.attributes.push(KeyValue {
            key: EXPERIMENT_ATTRIBUTE.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(run.into())) }),
            ..Default::default()
        });
    }
    Batch::Traces(req)
}

/// A cohort keeps the spans of the traces an experiment's fault spans are in
/// (or of all the others), the same from the memtable as from segments,
/// whole or cut by the window.
#[test]
fn cohorts_split_by_the_experiments_fault_spans() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    // cart spans 1..=20 (every 4th an error); run-1 faulted traces 4, 8, 12, 16, 20 and 3;
    // another run faulted 5.
    let list: Vec<_> = (1..=20u8).map(|i| (i, 100 + i, None, SERVER, i as i64, i as i64, i % 4 == 0)).collect();
    store.append_blocking(spans("cart", &list)).unwrap();
    store.append_blocking(fault_spans("run-1", &[3, 4, 8, 12])).unwrap();
    let cohort = |store: &Store, run: &str, faulted: bool, start_s: i64| {
        let q = StatsQuery {
            service: Some("cart".into()),
            start_ns: T0 + start_s * SEC,
            end_ns: T0 + 100 * SEC,
            cohort: Some(Cohort { experiment: run.into(), faulted }),
            ..Default::default()
        };
        let got = store.span_stats(&q).unwrap();
        got.iter().map(|(_, s)| (s.spans, s.errors)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let check = |store: &Store| {
        assert_eq!(cohort(store, "run-1", true, 0), (6, 5));
        assert_eq!(cohort(store, "run-1", false, 0), (14, 0));
        assert_eq!(cohort(store, "run-2", true, 0), (1, 0));
        assert_eq!(cohort(store, "run-2", false, 0), (19, 5));
        assert_eq!(cohort(store, "nobody", true, 0), (0, 0));
        // A window from 10 s: cart spans 10..=20, of which 12, 16, 20 faulted.
        assert_eq!(cohort(store, "run-1", true, 10), (3, 3));
        assert_eq!(cohort(store, "run-1", false, 10), (8, 0));
    };
    store.flush().unwrap();
    store.append_blocking(fault_spans("run-1", &[16, 20])).unwrap();
    store.append_blocking(fault_spans("run-2", &[5])).unwrap();
    check(&store);
    store.flush().unwrap();
    check(&store);
}
