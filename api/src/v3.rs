//! Jaeger's api_v3 HTTP answers (`/api/v3/...`, Go package `apiv3` of
//! jaegertracing/jaeger, written by grpc-gateway): services, operations,
//! trace summaries, traces as OTLP/JSON, and the gateway's error body.
//!
//! Traces travel as OTLP `TracesData` in proto3 JSON, the way the collector's
//! `ptrace.JSONMarshaler` writes it: ids lowercase hex, 64-bit integers as
//! decimal strings, enums as numbers, lowerCamelCase keys, and every field
//! holding its default value left out. The types here write exactly that and
//! read it back; reading also accepts 64-bit integers as JSON numbers, as
//! proto3 JSON parsers must.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// `GET /api/v3/services`: `{"services": [...]}`, sorted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Services {
    /// Service names.
    pub services: Vec<String>,
}

/// `GET /api/v3/operations`: `{"operations": [{"name", "spanKind"}]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Operations {
    /// The operations of the service, sorted by name.
    pub operations: Vec<Operation>,
}

/// One operation of api_v3. Unlike the legacy API, a span of unspecified kind
/// is listed as `internal`, as Jaeger's gateway writes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// The span name.
    pub name: String,
    /// The lowercase OTel span kind (`server`, `client`, ...).
    pub span_kind: String,
}

/// `GET /api/v3/trace-summaries`: `{"summaries": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceSummaries {
    /// One summary per matching trace, newest first.
    pub summaries: Vec<TraceSummary>,
}

/// One entry of `/api/v3/trace-summaries`: what the Jaeger UI's search page
/// lists for a trace (Jaeger's `querysvc/summary.go`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// Service of the root span (the earliest span without a parent); `""` without one.
    pub root_service_name: String,
    /// Name of the root span; `""` without one.
    pub root_operation_name: String,
    /// Earliest span start, ns since the Unix epoch (a decimal string on the wire).
    #[serde(with = "decimal")]
    pub min_start_time_unix_nano: i64,
    /// Latest span end, ns since the Unix epoch (a decimal string on the wire).
    #[serde(with = "decimal")]
    pub max_end_time_unix_nano: i64,
    /// Spans in the trace.
    pub span_count: usize,
    /// Spans with status ERROR.
    pub error_span_count: usize,
    /// Spans whose parent is not in the trace.
    pub orphan_span_count: usize,
    /// Per-service counts, sorted by service name.
    pub services: Vec<ServiceSummary>,
}

/// A service's share of a [`TraceSummary`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSummary {
    /// The service name.
    pub name: String,
    /// Spans of this service.
    pub span_count: usize,
    /// Spans of this service with status ERROR.
    pub error_span_count: usize,
}

/// `GET /api/v3/traces` and `/api/v3/traces/{id}`: grpc-gateway's stream
/// wrapper `{"result": TracesData}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TracesResult {
    /// Every matching trace's spans, one trace after the other.
    pub result: TracesData,
}

/// OTLP `TracesData`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracesData {
    /// One entry per (resource, trace), in order of first appearance.
    #[serde(default)]
    pub resource_spans: Vec<ResourceSpans>,
}

/// OTLP `ResourceSpans`: the spans of one resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpans {
    /// The resource (its attributes include `service.name`).
    #[serde(default)]
    pub resource: Resource,
    /// Spans grouped by instrumentation scope.
    #[serde(default)]
    pub scope_spans: Vec<ScopeSpans>,
}

/// OTLP `Resource`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Resource attributes; left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<KeyValue>,
}

/// OTLP `ScopeSpans`: the spans one instrumentation scope produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScopeSpans {
    /// The instrumentation scope.
    #[serde(default)]
    pub scope: Scope,
    /// Its spans.
    #[serde(default)]
    pub spans: Vec<Span>,
}

/// OTLP `InstrumentationScope` (name and version; both left out when empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Scope name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Scope version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// OTLP `Span`, in proto field order, default values left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// W3C tracestate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_state: String,
    /// The parent span's id; `None` for a root span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// W3C trace flags.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub flags: u32,
    /// The span name.
    pub name: String,
    /// OTLP `SpanKind` number (0 unspecified, 1 internal, 2 server, 3 client,
    /// 4 producer, 5 consumer).
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub kind: i32,
    /// ns since the Unix epoch.
    #[serde(with = "decimal")]
    pub start_time_unix_nano: i64,
    /// ns since the Unix epoch.
    #[serde(with = "decimal")]
    pub end_time_unix_nano: i64,
    /// Span attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<KeyValue>,
    /// Attributes the producer dropped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_attributes_count: u32,
    /// Span events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// Events the producer dropped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_events_count: u32,
    /// Links to other spans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Links the producer dropped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_links_count: u32,
    /// The span status (`{}` when unset).
    #[serde(default)]
    pub status: Status,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

/// OTLP `Status`: `message` and `code` (0 unset, 1 ok, 2 error), each left out at its default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The status description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// OTLP `StatusCode` number.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub code: i32,
}

/// OTLP `Span.Event`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// ns since the Unix epoch.
    #[serde(with = "decimal")]
    pub time_unix_nano: i64,
    /// The event name.
    pub name: String,
    /// Event attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<KeyValue>,
}

/// OTLP `Span.Link`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    /// The linked span's trace id (hex).
    pub trace_id: String,
    /// The linked span's id (hex).
    pub span_id: String,
    /// W3C tracestate of the link.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_state: String,
    /// Link attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<KeyValue>,
}

/// OTLP `KeyValue`: `{"key": ..., "value": AnyValue}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Attribute key.
    pub key: String,
    /// Attribute value.
    #[serde(default)]
    pub value: AnyValue,
}

impl KeyValue {
    /// A key/value pair.
    pub fn new(key: impl Into<String>, value: AnyValue) -> Self {
        KeyValue { key: key.into(), value }
    }
}

/// OTLP `AnyValue` in proto3 JSON: one `xxxValue` member, or `{}` when empty.
///
/// `intValue` is written as a decimal string; a non-finite `doubleValue` as
/// `"NaN"`, `"Infinity"` or `"-Infinity"`; `bytesValue` is base64 text, kept
/// as text here (the JSON's own form; decode it where bytes are needed).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum AnyValue {
    /// `stringValue`.
    String(String),
    /// `boolValue`.
    Bool(bool),
    /// `intValue`.
    Int(i64),
    /// `doubleValue`.
    Double(f64),
    /// `bytesValue`, standard base64 text.
    Bytes(String),
    /// `arrayValue: {"values": [...]}`.
    Array(Vec<AnyValue>),
    /// `kvlistValue: {"values": [{"key", "value"}...]}`.
    KvList(Vec<KeyValue>),
    /// `{}`: no value.
    #[default]
    Empty,
}

/// `{"values": [...]}` as read.
#[derive(Deserialize)]
struct Values<T> {
    #[serde(default = "Vec::new")]
    values: Vec<T>,
}

/// `{"values": [...]}` as written.
#[derive(Serialize)]
struct ValuesRef<'a, T> {
    values: &'a [T],
}

/// A non-finite double as proto3 JSON spells it.
struct Double(f64);

impl Serialize for Double {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            d if d.is_nan() => serializer.serialize_str("NaN"),
            d if d.is_infinite() => serializer.serialize_str(if d > 0.0 { "Infinity" } else { "-Infinity" }),
            d => serializer.serialize_f64(d),
        }
    }
}

impl Serialize for AnyValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            AnyValue::String(s) => map.serialize_entry("stringValue", s)?,
            AnyValue::Bool(b) => map.serialize_entry("boolValue", b)?,
            AnyValue::Int(i) => map.serialize_entry("intValue", &i.to_string())?,
            AnyValue::Double(d) => map.serialize_entry("doubleValue", &Double(*d))?,
            AnyValue::Bytes(b) => map.serialize_entry("bytesValue", b)?,
            AnyValue::Array(items) => map.serialize_entry("arrayValue", &ValuesRef { values: items.as_slice() })?,
            AnyValue::KvList(kvs) => map.serialize_entry("kvlistValue", &ValuesRef { values: kvs.as_slice() })?,
            AnyValue::Empty => {}
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnyValueVisitor;

        impl<'de> Visitor<'de> for AnyValueVisitor {
            type Value = AnyValue;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an OTLP AnyValue object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
                let mut value = AnyValue::Empty;
                while let Some(key) = map.next_key::<String>()? {
                    value = match key.as_str() {
                        "stringValue" => AnyValue::String(map.next_value()?),
                        "boolValue" => AnyValue::Bool(map.next_value()?),
                        "intValue" => AnyValue::Int(map.next_value::<Decimal>()?.0),
                        "doubleValue" => AnyValue::Double(parse_double(map.next_value()?).map_err(de::Error::custom)?),
                        "bytesValue" => AnyValue::Bytes(map.next_value()?),
                        "arrayValue" => AnyValue::Array(map.next_value::<Values<AnyValue>>()?.values),
                        "kvlistValue" => AnyValue::KvList(map.next_value::<Values<KeyValue>>()?.values),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                            continue;
                        }
                    };
                }
                Ok(value)
            }
        }

        deserializer.deserialize_map(AnyValueVisitor)
    }
}

fn parse_double(v: serde_json::Value) -> Result<f64, String> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a double")),
        serde_json::Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(|_| format!("{other:?} is not a double")),
        },
        other => Err(format!("{other} is not a double")),
    }
}

/// A 64-bit integer read from a decimal string or a JSON number.
struct Decimal(i64);

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(i64),
            Text(String),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(n) => Ok(Decimal(n)),
            Either::Text(t) => {
                t.parse().map(Decimal).map_err(|_| de::Error::custom(format!("{t:?} is not an integer")))
            }
        }
    }
}

/// `#[serde(with = "decimal")]`: an `i64` written as a decimal string (proto3
/// JSON's 64-bit integers), read from a string or a number.
pub(crate) mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        super::Decimal::deserialize(deserializer).map(|d| d.0)
    }
}

/// The error body of the api_v3 gateway (`api_v3.GRPCGatewayError`):
/// `{"error":{"httpCode":400,"message":"malformed parameter ..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`]. `grpcCode` is never set by Jaeger's HTTP
/// gateway, so Go's `encoding/json` leaves it out; so does seismo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// The HTTP status.
    pub http_code: u16,
    /// What went wrong, naming the parameter.
    pub message: String,
}

impl ErrorBody {
    /// The body for `http_code` and `message`.
    pub fn new(http_code: u16, message: impl Into<String>) -> Self {
        ErrorBody { error: ErrorDetail { http_code, message: message.into() } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_values_follow_otlp_json_both_ways() {
        let cases = [
            (AnyValue::String("x".into()), json!({"stringValue": "x"})),
            (AnyValue::Int(-9_007_199_254_740_993), json!({"intValue": "-9007199254740993"})),
            (AnyValue::Double(1.5), json!({"doubleValue": 1.5})),
            (AnyValue::Double(f64::NEG_INFINITY), json!({"doubleValue": "-Infinity"})),
            (AnyValue::Bool(false), json!({"boolValue": false})),
            (AnyValue::Bytes("AP8Q".into()), json!({"bytesValue": "AP8Q"})),
            (AnyValue::Empty, json!({})),
            (
                AnyValue::Array(vec![AnyValue::Int(1), AnyValue::String("a".into())]),
                json!({"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "a"}]}}),
            ),
            (
                AnyValue::KvList(vec![KeyValue::new("k", AnyValue::Bool(true))]),
                json!({"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": true}}]}}),
            ),
        ];
        for (value, want) in cases {
            assert_eq!(serde_json::to_value(&value).unwrap(), want, "{value:?}");
            assert_eq!(serde_json::from_value::<AnyValue>(want).unwrap(), value);
        }
        let nan: AnyValue = serde_json::from_value(json!({"doubleValue": "NaN"})).unwrap();
        assert!(matches!(nan, AnyValue::Double(d) if d.is_nan()));
        // proto3 JSON readers take 64-bit integers as numbers too.
        assert_eq!(serde_json::from_value::<AnyValue>(json!({"intValue": 7})).unwrap(), AnyValue::Int(7));
    }

    #[test]
    fn span_leaves_defaults_out_in_proto_order() {
        let span = Span {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: "b7ad6b7169203331".into(),
            name: "GET /".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_001_000_000,
            ..Span::default()
        };
        let text = serde_json::to_string(&span).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"GET /","kind":2,"#,
                r#""startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000001000000","status":{}}"#
            )
        );
        assert_eq!(serde_json::from_str::<Span>(&text).unwrap(), span);
    }

    #[test]
    fn error_body_is_the_gateways_shape() {
        let body = ErrorBody::new(400, "malformed parameter spanKind: x");
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(text, r#"{"error":{"httpCode":400,"message":"malformed parameter spanKind: x"}}"#);
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).unwrap(), body);
    }

    #[test]
    fn summary_times_are_decimal_strings() {
        let summary = TraceSummary {
            trace_id: "ab".into(),
            root_service_name: "a".into(),
            root_operation_name: "op".into(),
            min_start_time_unix_nano: 5,
            max_end_time_unix_nano: 9,
            span_count: 1,
            error_span_count: 0,
            orphan_span_count: 0,
            services: vec![ServiceSummary { name: "a".into(), span_count: 1, error_span_count: 0 }],
        };
        let value = serde_json::to_value(&summary).unwrap();
        assert_eq!((&value["minStartTimeUnixNano"], &value["maxEndTimeUnixNano"]), (&json!("5"), &json!("9")));
        assert_eq!(serde_json::from_value::<TraceSummary>(value).unwrap(), summary);
    }
}
