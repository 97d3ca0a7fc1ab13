//! Log search across the memtable and segments: the same answers before a
//! flush, after it, and after a reopen; newest first across sources.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use seismo_store::*;

const T0: u64 = 1_700_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

/// Record `i` (time T0 + i s): every third is an ERROR "payment declined"
/// from checkout carrying trace `i`; the others are INFO "cart updated" from cart.
fn records(range: std::ops::Range<u8>) -> ExportLogsServiceRequest {
    let one = |i: u8| {
        let error = i.is_multiple_of(3);
        let service = if error { "checkout" } else { "cart" };
        let record = LogRecord {
            time_unix_nano: T0 + i as u64 * SEC,
            severity_number: if error { 17 } else { 9 },
            severity_text: if error { "ERROR" } else { "INFO" }.into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(if error {
                    format!("payment declined for order {i}")
                } else {
                    format!("cart updated, {i} items")
                })),
            }),
            trace_id: if error { vec![i + 1; 16] } else { vec![] },
            span_id: if error { vec![i + 1; 8] } else { vec![] },
            attributes: vec![kv("http.route", if error { "/pay" } else { "/cart" })],
            ..Default::default()
        };
        ResourceLogs {
            resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
            scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
            ..Default::default()
        }
    };
    ExportLogsServiceRequest { resource_logs: range.map(one).collect() }
}

fn times(store: &Store, q: LogQuery) -> Vec<u64> {
    store.search_logs(&q).unwrap().iter().map(|r| (r.time_unix_nano as u64 - T0) / SEC).collect()
}

fn text(q: &str, limit: usize) -> LogQuery {
    LogQuery { text: Some(q.into()), limit, ..Default::default() }
}

fn check(store: &Store) {
    // Errors are records 0, 3, ..., 57: newest first, across every source.
    assert_eq!(times(store, text("payment declined", 4)), vec![57, 54, 51, 48]);
    assert_eq!(times(store, text("\"declined for order\"", 0)).len(), 20);
    assert_eq!(times(store, text("http.route:\"/cart\"", 0)).len(), 40);
    assert_eq!(times(store, text("updated AND NOT cart", 0)), Vec::<u64>::new());
    let q = LogQuery { trace_id: Some(TraceId([31; 16])), ..Default::default() };
    let found = store.search_logs(&q).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].body, AttrValue::Str("payment declined for order 30".into()));
    assert_eq!(found[0].span_id, Some(SpanId([31; 8])));
    assert_eq!(found[0].service_name, "checkout");
    let q = LogQuery {
        service: Some("checkout".into()),
        severities: vec![severity_range("ERROR").unwrap()],
        start_ns: Some((T0 + 10 * SEC) as i64),
        end_ns: Some((T0 + 20 * SEC) as i64),
        ..Default::default()
    };
    assert_eq!(times(store, q), vec![18, 15, 12]);
    let err = store.search_logs(&text("\"unclosed", 0)).unwrap_err();
    assert!(matches!(err, StoreError::InvalidQuery(_)), "{err}");
}

#[test]
fn searches_memtable_and_segments_alike() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    // Two segments and a memtable, each holding part of the answer.
    store.append_blocking(Batch::Logs(records(0..20))).unwrap();
    store.flush().unwrap();
    store.append_blocking(Batch::Logs(records(20..40))).unwrap();
    store.flush().unwrap();
    store.append_blocking(Batch::Logs(records(40..50))).unwrap();
    // The memtable index catches up with records that arrive after a search.
    check_partial(&store);
    store.append_blocking(Batch::Logs(records(50..60))).unwrap();
    check(&store);
    store.flush().unwrap();
    check(&store);
    store.close().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    check(&store);
}

fn check_partial(store: &Store) {
    assert_eq!(times(store, text("payment", 2)), vec![48, 45]);
}
