//! An audit, as tests, of `opentelemetry-proto`'s `with-serde` derives (0.33) against the
//! OTLP/JSON rules. It is why `json/` walks a `serde_json::Value` itself: each test
//! named `with_serde_*_gap` pins a rule the derives break. If one of them starts failing,
//! upstream fixed that gap; the decision can be revisited, but every rule must still hold.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

fn spans_json(span: &str) -> String {
    format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#)
}

fn traces(span: &str) -> Result<ExportTraceServiceRequest, serde_json::Error> {
    serde_json::from_str(&spans_json(span))
}

fn attribute(value: &str) -> Result<ExportTraceServiceRequest, serde_json::Error> {
    traces(&format!(r#"{{"attributes":[{{"key":"k","value":{value}}}]}}"#))
}

fn first_attribute(req: &ExportTraceServiceRequest) -> Option<AnyValueKind> {
    req.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.as_ref()?.value.clone()
}

// ---- What the derives get right ----

#[test]
fn with_serde_decodes_hex_ids_in_either_case() {
    let req = traces(r#"{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174"}"#).unwrap();
    let span = &req.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(hex::encode(&span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(span.span_id.len(), 8);
    assert!(traces(r#"{"traceId":"not-hex"}"#).is_err());
}

#[test]
fn with_serde_decodes_uint64_times_as_strings_and_numbers() {
    let req = traces(r#"{"startTimeUnixNano":"1544712660000000001","endTimeUnixNano":1544712660000000003}"#).unwrap();
    let span = &req.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_001);
    assert_eq!(span.end_time_unix_nano, 1_544_712_660_000_000_003);
}

#[test]
fn with_serde_keeps_int_values_exact_as_string_and_number() {
    for value in [r#"{"intValue":"9007199254740993"}"#, r#"{"intValue":9007199254740993}"#] {
        let req = attribute(value).unwrap();
        assert_eq!(first_attribute(&req), Some(AnyValueKind::IntValue(9_007_199_254_740_993)));
    }
}

#[test]
fn with_serde_ignores_unknown_fields_takes_int_enums_and_empty_object() {
    let req = traces(r#"{"kind":2,"someFutureField":{"a":[1]}}"#).unwrap();
    assert_eq!(req.resource_spans[0].scope_spans[0].spans[0].kind, 2);
    assert_eq!(serde_json::from_str::<ExportTraceServiceRequest>("{}").unwrap(), Default::default());
    assert_eq!(serde_json::from_str::<ExportLogsServiceRequest>("{}").unwrap(), Default::default());
    assert_eq!(serde_json::from_str::<ExportMetricsServiceRequest>("{}").unwrap(), Default::default());
}

// ---- The gaps ----

/// Go's pdata (the OpenTelemetry Collector's otlphttp exporter) omits empty repeated
/// fields, so an empty array attribute arrives as `{"arrayValue":{}}`.
#[test]
fn with_serde_empty_array_and_kvlist_gap() {
    assert!(attribute(r#"{"arrayValue":{}}"#).is_err());
    assert!(attribute(r#"{"kvlistValue":{}}"#).is_err());
}

/// proto3 JSON: "null is accepted for all field types and treated as the default value".
#[test]
fn with_serde_null_field_gap() {
    assert!(traces(r#"{"name":null}"#).is_err());
    assert!(serde_json::from_str::<ExportTraceServiceRequest>(r#"{"resourceSpans":null}"#).is_err());
}

/// proto3 JSON parsers accept enum names as well as numbers.
#[test]
fn with_serde_enum_name_gap() {
    assert!(traces(r#"{"kind":"SPAN_KIND_SERVER"}"#).is_err());
}

/// proto3 JSON writes non-finite doubles as "NaN" / "Infinity"; only quantiles accept
/// them. Worse, the oneof is a `#[serde(flatten)] Option`, and serde turns a failing
/// flattened `Option` into `None`: the value is *silently dropped* and the point is kept
/// without a value, instead of being decoded or rejected.
#[test]
fn with_serde_special_double_gap() {
    let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g",
        "gauge":{"dataPoints":[{"asDouble":"NaN"}]}}]}]}]}"#;
    let req: ExportMetricsServiceRequest = serde_json::from_str(json).unwrap();
    let metric = &req.resource_metrics[0].scope_metrics[0].metrics[0];
    let Some(Data::Gauge(gauge)) = &metric.data else { panic!("gauge expected: {metric:?}") };
    assert_eq!(gauge.data_points[0].value, None);
}

/// The same silent drop for any bad value inside a flattened oneof: a metric whose
/// data points are malformed loses its data instead of failing the request.
#[test]
fn with_serde_flattened_oneof_swallows_errors_gap() {
    let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g",
        "gauge":{"dataPoints":"not an array"}}]}]}]}"#;
    let req: ExportMetricsServiceRequest = serde_json::from_str(json).unwrap();
    assert_eq!(req.resource_metrics[0].scope_metrics[0].metrics[0].data, None);
}

/// proto3 JSON parsers accept any integer as a string, 32-bit ones included.
#[test]
fn with_serde_uint32_string_gap() {
    assert!(traces(r#"{"droppedAttributesCount":"3"}"#).is_err());
}

/// A wrong-length id is accepted by the derives (the store would catch it, but the error
/// could not name the field).
#[test]
fn with_serde_id_length_is_unchecked_gap() {
    assert!(traces(r#"{"traceId":"0102030405"}"#).is_ok());
}
