//! Store round trips: what is appended comes back from the memtable, from
//! segments after a flush, and from the WAL after a reopen.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use seismo_store::*;

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", any_value::Value::StringValue(service.into())),
            kv("host.name", any_value::Value::StringValue("h1".into())),
        ],
        ..Default::default()
    })
}

const T0: u64 = 1_700_000_000_000_000_000;

/// A two-service trace: frontend root (server) -> cart child (server, error).
fn trace_request(trace: u8, offset_ns: u64) -> ExportTraceServiceRequest {
    let tid = vec![trace; 16];
    let root = Span {
        trace_id: tid.clone(),
        span_id: vec![trace, 1, 0, 0, 0, 0, 0, 1],
        name: "GET /checkout".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: T0 + offset_ns,
        end_time_unix_nano: T0 + offset_ns + 50_000_000,
        attributes: vec![
            kv("http.method", any_value::Value::StringValue("GET".into())),
            kv("http.status_code", any_value::Value::IntValue(500)),
        ],
        ..Default::default()
    };
    let child = Span {
        trace_id: tid,
        span_id: vec![trace, 2, 0, 0, 0, 0, 0, 2],
        parent_span_id: root.span_id.clone(),
        name: "AddItem".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: T0 + offset_ns + 1_000_000,
        end_time_unix_nano: T0 + offset_ns + 31_000_000,
        attributes: vec![kv("big", any_value::Value::IntValue(9_007_199_254_740_993))],
        status: Some(Status { code: status::StatusCode::Error as i32, message: "out of stock".into() }),
        events: vec![span::Event {
            time_unix_nano: T0 + offset_ns + 2_000_000,
            name: "exception".into(),
            attributes: vec![kv("exception.type", any_value::Value::StringValue("StockError".into()))],
            ..Default::default()
        }],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource("frontend"),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "web".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    spans: vec![root],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceSpans {
                resource: resource("cart"),
                scope_spans: vec![ScopeSpans { spans: vec![child], ..Default::default() }],
                ..Default::default()
            },
        ],
    }
}

fn small_config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.flush_interval = std::time::Duration::from_secs(3600);
    c
}

fn check_trace(store: &Store, trace: u8) {
    let spans = store.trace(TraceId([trace; 16])).unwrap();
    assert_eq!(spans.len(), 2, "trace {trace}");
    let root = &spans[0];
    assert_eq!(root.service_name, "frontend");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.scope_name, "web");
    assert_eq!(root.duration_nano, 50_000_000);
    assert_eq!(attr(&root.attributes, "http.status_code"), Some(&AttrValue::Int(500)));
    let child = &spans[1];
    assert_eq!(child.service_name, "cart");
    assert_eq!(child.parent_span_id, Some(root.span_id));
    assert_eq!(child.status_code, status_code::ERROR);
    assert_eq!(child.status_message, "out of stock");
    assert_eq!(attr(&child.attributes, "big"), Some(&AttrValue::Int(9_007_199_254_740_993)));
    assert_eq!(child.events[0].name, "exception");
}

fn search(store: &Store, q: TraceQuery) -> Vec<u8> {
    store.find_traces(&q).unwrap().iter().map(|t| t[0].trace_id.0[0]).collect()
}

fn check_searches(store: &Store) {
    assert_eq!(store.services().unwrap(), vec!["cart", "frontend"]);
    let ops = store.operations("cart").unwrap();
    assert_eq!(ops, vec![Operation { name: "AddItem".into(), span_kind: 2 }]);
    // Newest first, over all traces.
    assert_eq!(search(store, TraceQuery { service: Some("frontend".into()), ..Default::default() }), vec![3, 2, 1]);
    assert_eq!(
        search(store, TraceQuery { service: Some("frontend".into()), limit: 2, ..Default::default() }),
        vec![3, 2]
    );
    let tags = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(
        search(
            store,
            TraceQuery { service: Some("cart".into()), tags: tags(&[("error", "true")]), ..Default::default() }
        ),
        vec![3, 2, 1]
    );
    assert_eq!(
        search(
            store,
            TraceQuery { tags: tags(&[("http.status_code", "500"), ("host.name", "h1")]), ..Default::default() }
        ),
        vec![3, 2, 1]
    );
    assert_eq!(
        search(store, TraceQuery { tags: tags(&[("exception.type", "StockError")]), ..Default::default() }),
        vec![3, 2, 1]
    );
    assert!(search(store, TraceQuery { tags: tags(&[("http.method", "POST")]), ..Default::default() }).is_empty());
    // 30 ms child, 50 ms root.
    assert_eq!(
        search(
            store,
            TraceQuery { service: Some("cart".into()), min_duration_ns: Some(40_000_000), ..Default::default() }
        ),
        Vec::<u8>::new()
    );
    assert_eq!(
        search(
            store,
            TraceQuery { service: Some("frontend".into()), min_duration_ns: Some(40_000_000), ..Default::default() }
        )
        .len(),
        3
    );
    // Time window covering only the second trace (1 s apart).
    let t = T0 as i64 + 1_000_000_000;
    assert_eq!(
        search(store, TraceQuery { start_min_ns: Some(t), start_max_ns: Some(t + 500_000_000), ..Default::default() }),
        vec![2]
    );
    assert_eq!(
        search(store, TraceQuery { operation: Some("AddItem".into()), span_kind: Some(3), ..Default::default() }),
        Vec::<u8>::new()
    );
}

fn load(store: &Store) {
    for i in 1..=3u8 {
        let out = store.append_blocking(Batch::Traces(trace_request(i, (i as u64 - 1) * 1_000_000_000))).unwrap();
        assert_eq!(out, AppendOutcome { accepted: 2, rejected: 0, message: None });
    }
}

#[test]
fn memtable_segment_and_replay_answer_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(dir.path())).unwrap();
    load(&store);
    for i in 1..=3 {
        check_trace(&store, i);
    }
    check_searches(&store);

    store.flush().unwrap();
    let segments = store.segments();
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].rows, 6);
    for i in 1..=3 {
        check_trace(&store, i);
    }
    check_searches(&store);
    assert!(store.trace(TraceId([9; 16])).unwrap().is_empty());
    store.close().unwrap();

    let store = Store::open(small_config(dir.path())).unwrap();
    for i in 1..=3 {
        check_trace(&store, i);
    }
    check_searches(&store);
    store.close().unwrap();
}

#[test]
fn unflushed_data_is_replayed_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(dir.path())).unwrap();
    load(&store);
    // Simulate a crash: the store is dropped without close (no final flush).
    drop(store);
    let store = Store::open(small_config(dir.path())).unwrap();
    assert!(store.segments().is_empty());
    for i in 1..=3 {
        check_trace(&store, i);
    }
    check_searches(&store);
    // Data both in a segment and in the WAL tail.
    store.flush().unwrap();
    store.append_blocking(Batch::Traces(trace_request(4, 3_000_000_000))).unwrap();
    drop(store);
    let store = Store::open(small_config(dir.path())).unwrap();
    for i in 1..=4 {
        check_trace(&store, i);
    }
    assert_eq!(store.find_traces(&TraceQuery::default()).unwrap().len(), 4);
}

#[test]
fn logs_and_metrics_survive_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(dir.path())).unwrap();
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("cart"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: T0,
                    severity_number: 17,
                    severity_text: "ERROR".into(),
                    body: Some(AnyValue { value: Some(any_value::Value::StringValue("payment declined".into())) }),
                    trace_id: vec![7; 16],
                    span_id: vec![7; 8],
                    attributes: vec![kv("order", any_value::Value::IntValue(42))],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("cart"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "orders".into(),
                    unit: "1".into(),
                    data: Some(metric::Data::Sum(Sum {
                        aggregation_temporality: 2,
                        is_monotonic: true,
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: T0,
                            value: Some(number_data_point::Value::AsInt(12)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    store.append_blocking(Batch::Logs(logs)).unwrap();
    store.append_blocking(Batch::Metrics(metrics)).unwrap();
    let check = |store: &Store| {
        let logs = store.all_logs().unwrap();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].body, AttrValue::Str("payment declined".into()));
        assert_eq!(logs[0].trace_id, Some(TraceId([7; 16])));
        assert_eq!(logs[0].severity_number, 17);
        let points = store.all_metric_points().unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].value_int, Some(12));
        assert!(points[0].is_monotonic);
        assert_eq!(points[0].kind, MetricKind::Sum);
    };
    check(&store);
    store.flush().unwrap();
    assert_eq!(store.segments().len(), 2);
    check(&store);
    store.close().unwrap();
    let store = Store::open(small_config(dir.path())).unwrap();
    check(&store);
}

#[test]
fn bad_ids_store_nothing_and_zero_ids_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(dir.path())).unwrap();
    let mut bad = trace_request(1, 0);
    bad.resource_spans[1].scope_spans[0].spans[0].span_id = vec![1, 2, 3];
    assert!(matches!(store.append_blocking(Batch::Traces(bad)), Err(StoreError::InvalidId(_))));
    assert!(store.trace(TraceId([1; 16])).unwrap().is_empty());

    let mut zero = trace_request(2, 0);
    zero.resource_spans[1].scope_spans[0].spans[0].trace_id = vec![0; 16];
    let out = store.append_blocking(Batch::Traces(zero)).unwrap();
    assert_eq!((out.accepted, out.rejected), (1, 1));
    assert!(out.message.unwrap().contains("all-zero"));
    assert_eq!(store.trace(TraceId([2; 16])).unwrap().len(), 1);
}

#[test]
fn many_traces_across_row_groups_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(dir.path())).unwrap();
    // 2 segments x 40k traces x 2 spans: several row groups each.
    for seg in 0..2u32 {
        let mut req = ExportTraceServiceRequest::default();
        for i in 0..40_000u32 {
            let n = seg * 40_000 + i + 1;
            let mut r = trace_request(0, n as u64 * 1000);
            for rs in &mut r.resource_spans {
                for sp in &mut rs.scope_spans[0].spans {
                    sp.trace_id[..4].copy_from_slice(&n.to_be_bytes());
                    sp.span_id[4..8].copy_from_slice(&n.to_be_bytes());
                }
            }
            let parent = r.resource_spans[0].scope_spans[0].spans[0].span_id.clone();
            r.resource_spans[1].scope_spans[0].spans[0].parent_span_id = parent;
            req.resource_spans.extend(r.resource_spans);
        }
        store.append_blocking(Batch::Traces(req)).unwrap();
        store.flush().unwrap();
    }
    assert_eq!(store.segments().len(), 2);
    for n in [1u32, 777, 40_000, 40_001, 65_537, 80_000] {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        let spans = store.trace(TraceId(id)).unwrap();
        assert_eq!(spans.len(), 2, "trace {n}");
        assert!(spans.iter().all(|s| s.trace_id == TraceId(id)));
    }
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&90_000u32.to_be_bytes());
    assert!(store.trace(TraceId(id)).unwrap().is_empty());
    let found =
        store.find_traces(&TraceQuery { service: Some("cart".into()), limit: 5, ..Default::default() }).unwrap();
    let newest: Vec<u32> = found.iter().map(|t| u32::from_be_bytes(t[0].trace_id.0[..4].try_into().unwrap())).collect();
    assert_eq!(newest, vec![80_000, 79_999, 79_998, 79_997, 79_996]);
}
