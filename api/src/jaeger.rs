//! Jaeger's JSON trace model, as the Jaeger query service writes it on `/api/...`
//! (Go package `internal/uimodel` of jaegertracing/jaeger).
//!
//! Ids are lowercase hex strings in Jaeger's form: a span id is 16 hex digits;
//! a trace id is 32 digits, or 16 when its high 64 bits are zero (Go's
//! `TraceID.String`). Times are microseconds since the Unix epoch, durations
//! microseconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A trace: its spans, and the processes (resources) they reference by id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The trace id in Jaeger's form (see the module docs).
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// The spans, in storage order.
    pub spans: Vec<Span>,
    /// Keyed `p1`, `p2`, ... in order of first use. A `BTreeMap` because Go writes
    /// map keys sorted, so the JSON is byte-identical.
    #[serde(default)]
    pub processes: BTreeMap<String, Process>,
    /// Jaeger writes `null` when there are none.
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
}

/// A span. Field order is Jaeger's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// The trace id in Jaeger's form.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// 16 lowercase hex digits.
    #[serde(rename = "spanID")]
    pub span_id: String,
    /// Deprecated by Jaeger in favour of `references`; never written by seismo,
    /// accepted when reading older JSON.
    #[serde(rename = "parentSpanID", default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// Jaeger flags; bit 1 = sampled. Omitted when zero, as Jaeger does.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub flags: u32,
    /// The span name.
    #[serde(rename = "operationName")]
    pub operation_name: String,
    /// Parent (`CHILD_OF`) and links (`FOLLOWS_FROM`).
    #[serde(default)]
    pub references: Vec<Reference>,
    /// Microseconds since the Unix epoch.
    #[serde(rename = "startTime")]
    pub start_time: u64,
    /// Microseconds.
    pub duration: u64,
    /// Span attributes plus Jaeger's derived tags (`span.kind`, `error`, `otel.*`).
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    /// Span events.
    #[serde(default)]
    pub logs: Vec<Log>,
    /// Key into [`Trace::processes`].
    #[serde(rename = "processID", default, skip_serializing_if = "String::is_empty")]
    pub process_id: String,
    /// Only in Jaeger's embedded-process form; never written by seismo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    /// Jaeger writes `null` when there are none.
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// A reference from one span to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// Parent or link.
    #[serde(rename = "refType")]
    pub ref_type: RefType,
    /// The referenced span's trace.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// The referenced span.
    #[serde(rename = "spanID")]
    pub span_id: String,
}

/// The kind of a [`Reference`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefType {
    /// The parent span (OTLP `parent_span_id`).
    #[serde(rename = "CHILD_OF")]
    ChildOf,
    /// A causal link (OTLP span links).
    #[serde(rename = "FOLLOWS_FROM")]
    FollowsFrom,
}

/// The process that emitted spans: the OTLP resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Process {
    /// `service.name` of the resource.
    #[serde(rename = "serviceName")]
    pub service_name: String,
    /// The other resource attributes.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

/// A log entry of a span: an OTLP span event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Log {
    /// Microseconds since the Unix epoch.
    pub timestamp: u64,
    /// `event` (the event name) and the event's attributes.
    #[serde(default)]
    pub fields: Vec<KeyValue>,
}

/// The type tag of a [`KeyValue`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// `string`.
    #[default]
    String,
    /// `bool`.
    Bool,
    /// `int64`: a number, or a decimal string outside ±(2^53 − 1).
    Int64,
    /// `float64`: a number, or `"NaN"`, `"+Inf"`, `"-Inf"`.
    Float64,
    /// `binary`: base64 text.
    Binary,
}

/// A typed tag: `{"key": "http.status_code", "type": "int64", "value": 200}`.
///
/// `value` is raw JSON because Jaeger's encoding depends on the value: `int64`
/// outside ±(2^53 − 1) is written as a decimal string, `binary` as base64 text.
/// Build values with the typed constructors to get that encoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The tag key.
    pub key: String,
    /// How to read `value`.
    #[serde(rename = "type", default)]
    pub value_type: ValueType,
    /// The value, encoded as its type says.
    pub value: serde_json::Value,
}

/// Largest integer a JavaScript number holds exactly (Jaeger's `jsMaxSafeInteger`).
pub const JS_MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

impl KeyValue {
    /// A `string` tag.
    pub fn string(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::raw(key, ValueType::String, serde_json::Value::String(value.into()))
    }

    /// A `bool` tag.
    pub fn bool(key: impl Into<String>, value: bool) -> Self {
        Self::raw(key, ValueType::Bool, serde_json::Value::Bool(value))
    }

    /// A JSON number, or a decimal string outside JavaScript's safe range (as Jaeger).
    pub fn int64(key: impl Into<String>, value: i64) -> Self {
        let json = if (-JS_MAX_SAFE_INTEGER..=JS_MAX_SAFE_INTEGER).contains(&value) {
            serde_json::Value::from(value)
        } else {
            serde_json::Value::String(value.to_string())
        };
        Self::raw(key, ValueType::Int64, json)
    }

    /// A JSON number; NaN and infinities (which JSON cannot hold) as Go prints
    /// them: `"NaN"`, `"+Inf"`, `"-Inf"`.
    pub fn float64(key: impl Into<String>, value: f64) -> Self {
        let json = match serde_json::Number::from_f64(value) {
            Some(n) => serde_json::Value::Number(n),
            None if value.is_nan() => serde_json::Value::String("NaN".into()),
            None if value > 0.0 => serde_json::Value::String("+Inf".into()),
            None => serde_json::Value::String("-Inf".into()),
        };
        Self::raw(key, ValueType::Float64, json)
    }

    /// Raw bytes, written as standard padded base64 (Go's encoding of `[]byte`).
    pub fn binary(key: impl Into<String>, bytes: &[u8]) -> Self {
        Self::raw(key, ValueType::Binary, serde_json::Value::String(base64_encode(bytes)))
    }

    /// A tag with `value` already in Jaeger's encoding for `value_type`.
    pub fn raw(key: impl Into<String>, value_type: ValueType, value: serde_json::Value) -> Self {
        KeyValue { key: key.into(), value_type, value }
    }

    /// The value as display text: strings unquoted, everything else as JSON.
    pub fn value_text(&self) -> String {
        match &self.value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// An operation of a service, as `/api/operations` lists it. `spanKind` is the
/// lowercase OTel kind (`server`, `client`, ...) or `""` when unspecified.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Operation {
    /// The span name.
    pub name: String,
    /// The lowercase span kind, `""` when unspecified.
    #[serde(rename = "spanKind")]
    pub span_kind: String,
}

/// A service-to-service edge of `/api/dependencies`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DependencyLink {
    /// The calling service.
    pub parent: String,
    /// The called service.
    pub child: String,
    /// Parent -> child span edges in the window.
    #[serde(rename = "callCount")]
    pub call_count: u64,
}

/// Standard base64 with padding; small enough to keep this crate serde-only.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, s) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[*s as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span() -> Span {
        Span {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: "b7ad6b7169203331".into(),
            parent_span_id: None,
            flags: 0,
            operation_name: "GET /".into(),
            references: vec![Reference {
                ref_type: RefType::ChildOf,
                trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
                span_id: "00f067aa0ba902b7".into(),
            }],
            start_time: 1_700_000_000_000_000,
            duration: 1500,
            tags: vec![KeyValue::int64("http.status_code", 200)],
            logs: vec![Log { timestamp: 1_700_000_000_000_100, fields: vec![KeyValue::string("event", "x")] }],
            process_id: "p1".into(),
            process: None,
            warnings: None,
        }
    }

    #[test]
    fn span_serializes_in_jaegers_field_order_with_omitempty() {
        let json = serde_json::to_string(&span()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"traceID":"0af7651916cd43dd8448eb211c80319c","spanID":"b7ad6b7169203331","#,
                r#""operationName":"GET /","references":[{"refType":"CHILD_OF","#,
                r#""traceID":"0af7651916cd43dd8448eb211c80319c","spanID":"00f067aa0ba902b7"}],"#,
                r#""startTime":1700000000000000,"duration":1500,"#,
                r#""tags":[{"key":"http.status_code","type":"int64","value":200}],"#,
                r#""logs":[{"timestamp":1700000000000100,"fields":[{"key":"event","type":"string","value":"x"}]}],"#,
                r#""processID":"p1","warnings":null}"#
            )
        );
        let back: Span = serde_json::from_str(&json).unwrap();
        assert_eq!(back, span());
    }

    #[test]
    fn flags_written_only_when_set() {
        let mut s = span();
        s.flags = 1;
        assert!(serde_json::to_string(&s).unwrap().contains(r#""flags":1,"operationName""#));
    }

    #[test]
    fn trace_round_trips_with_sorted_process_keys() {
        let mut processes = BTreeMap::new();
        processes.insert("p2".to_string(), Process { service_name: "b".into(), tags: vec![] });
        processes.insert("p1".to_string(), Process { service_name: "a".into(), tags: vec![] });
        let trace = Trace { trace_id: "ab".into(), spans: vec![span()], processes, warnings: None };
        let json = serde_json::to_string(&trace).unwrap();
        assert!(json.contains(r#""processes":{"p1":{"serviceName":"a","tags":[]},"p2":"#));
        assert!(json.ends_with(r#""warnings":null}"#));
        assert_eq!(serde_json::from_str::<Trace>(&json).unwrap(), trace);
    }

    #[test]
    fn typed_values_encode_as_jaeger_does() {
        let j = |kv: KeyValue| serde_json::to_string(&kv).unwrap();
        assert_eq!(j(KeyValue::bool("error", true)), r#"{"key":"error","type":"bool","value":true}"#);
        assert_eq!(j(KeyValue::float64("f", 1.5)), r#"{"key":"f","type":"float64","value":1.5}"#);
        assert_eq!(j(KeyValue::float64("f", f64::NAN)), r#"{"key":"f","type":"float64","value":"NaN"}"#);
        assert_eq!(
            j(KeyValue::int64("big", i64::MAX)),
            r#"{"key":"big","type":"int64","value":"9223372036854775807"}"#
        );
        assert_eq!(
            j(KeyValue::int64("edge", JS_MAX_SAFE_INTEGER)),
            r#"{"key":"edge","type":"int64","value":9007199254740991}"#
        );
        assert_eq!(j(KeyValue::binary("b", b"hi!?")), r#"{"key":"b","type":"binary","value":"aGkhPw=="}"#);
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), want);
        }
    }

    #[test]
    fn operation_and_dependency_shapes() {
        let op = Operation { name: "GET /".into(), span_kind: "server".into() };
        assert_eq!(serde_json::to_string(&op).unwrap(), r#"{"name":"GET /","spanKind":"server"}"#);
        let link = DependencyLink { parent: "a".into(), child: "b".into(), call_count: 3 };
        assert_eq!(serde_json::to_string(&link).unwrap(), r#"{"parent":"a","child":"b","callCount":3}"#);
    }

    #[test]
    fn value_text_unquotes_strings_only() {
        assert_eq!(KeyValue::string("k", "v").value_text(), "v");
        assert_eq!(KeyValue::int64("k", 7).value_text(), "7");
    }
}
