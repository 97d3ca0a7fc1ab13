//! What the store's unit tests share: a one-span batch, a lookup, a poll.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, Gauge, Metric, NumberDataPoint};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::{Batch, Store};
use crate::ids::TraceId;

/// Trace `[trace; 16]` with one span `[trace; 8]` named "op".
pub(super) fn one_span(trace: u8) -> Batch {
    Batch::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![trace; 16],
                    span_id: vec![trace; 8],
                    name: "op".into(),
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_001_000_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// A resource naming `service`.
fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(service.into())) }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// Span `[span; 8]` of trace `[trace; 16]` from `service`, started at `start_ns`
/// (1 ms long), child of span `[parent; 8]` when given.
pub(super) fn span_of(service: &str, trace: u8, span: u8, parent: Option<u8>, start_ns: u64) -> Batch {
    Batch::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![trace; 16],
                    span_id: vec![span; 8],
                    parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
                    name: "op".into(),
                    start_time_unix_nano: start_ns,
                    end_time_unix_nano: start_ns + 1_000_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// One log record of `service` at `time_ns`.
pub(super) fn log_of(service: &str, body: &str, time_ns: u64) -> Batch {
    Batch::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: time_ns,
                    body: Some(AnyValue { value: Some(any_value::Value::StringValue(body.into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// One gauge point of metric `name` from `service` at `time_ns`.
pub(super) fn gauge_of(service: &str, name: &str, value: f64, time_ns: u64) -> Batch {
    let point = NumberDataPoint {
        time_unix_nano: time_ns,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    };
    Batch::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(service),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points: vec![point] })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

pub(super) fn has_trace(store: &Store, trace: u8) -> bool {
    !store.trace(TraceId([trace; 16])).unwrap().is_empty()
}

/// Waits until `done`, failing the test after 20 s.
pub(super) fn poll(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
