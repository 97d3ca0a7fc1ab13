//! Stored span rows -> OTLP/JSON, the payload of Jaeger's api_v3 trace
//! endpoints, plus the trace summaries of `/api/v3/trace-summaries`.
//!
//! Written by hand rather than through `opentelemetry-proto`'s serde support
//! because OTLP/JSON has rules that derive-based encoding gets wrong at the
//! edges: `bytesValue` is base64 (the store keeps bytes as hex), non-finite
//! doubles are the strings `"NaN"` / `"Infinity"`, and default values are left
//! out, as the collector's `ptrace.JSONMarshaler` (which Jaeger uses) does.
//! The other rules: ids are lowercase hex, 64-bit integers are decimal strings
//! (`startTimeUnixNano`, `intValue`), enums are their numbers, keys lowerCamelCase.
//!
//! Grouping is rebuilt from the flat rows: one `ResourceSpans` per (service,
//! resource attributes) and within it one `ScopeSpans` per (scope name,
//! version), each in order of first appearance, so a trace that arrived in one
//! export request comes back in the same shape.

use std::collections::{BTreeMap, HashSet};

use seismo_store::{status_code, AttrValue, KeyValue, SpanRow, SERVICE_NAME};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// OTLP `TracesData` for a list of traces: each trace's `ResourceSpans`, one
/// trace after the other (Jaeger concatenates per-trace results the same way).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TracesData<'a> {
    resource_spans: Vec<ResourceSpans<'a>>,
}

impl<'a> TracesData<'a> {
    pub fn new(traces: &'a [Vec<SpanRow>]) -> Self {
        TracesData { resource_spans: traces.iter().flat_map(|spans| group(spans)).collect() }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: Resource,
    scope_spans: Vec<ScopeSpans<'a>>,
}

#[derive(Serialize)]
struct Resource {
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "attributes")]
    attributes: Vec<KeyValue>,
}

#[derive(Serialize)]
struct ScopeSpans<'a> {
    scope: Scope<'a>,
    spans: Vec<Span<'a>>,
}

#[derive(Serialize)]
struct Scope<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    version: &'a str,
}

/// The resource attributes as OTLP sends them, with `service.name` added when
/// the producer left it out (the row still knows its service).
fn resource_attributes(row: &SpanRow) -> Vec<KeyValue> {
    let mut attrs = row.resource_attributes.clone();
    if !attrs.iter().any(|kv| kv.key == SERVICE_NAME) {
        attrs.insert(0, KeyValue::new(SERVICE_NAME, AttrValue::Str(row.service_name.clone())));
    }
    attrs
}

fn group(spans: &[SpanRow]) -> Vec<ResourceSpans<'_>> {
    let mut out: Vec<ResourceSpans<'_>> = Vec::new();
    for row in spans {
        let attrs = resource_attributes(row);
        let rs = match out.iter().position(|rs| rs.resource.attributes == attrs) {
            Some(i) => &mut out[i],
            None => {
                out.push(ResourceSpans { resource: Resource { attributes: attrs }, scope_spans: Vec::new() });
                out.last_mut().expect("just pushed")
            }
        };
        let scope = Scope { name: &row.scope_name, version: &row.scope_version };
        match rs.scope_spans.iter_mut().find(|ss| ss.scope.name == scope.name && ss.scope.version == scope.version) {
            Some(ss) => ss.spans.push(Span(row)),
            None => rs.scope_spans.push(ScopeSpans { scope, spans: vec![Span(row)] }),
        }
    }
    out
}

/// One span in OTLP/JSON, defaults omitted.
struct Span<'a>(&'a SpanRow);

impl Serialize for Span<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let row = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("traceId", &row.trace_id.to_hex())?;
        map.serialize_entry("spanId", &row.span_id.to_hex())?;
        if !row.trace_state.is_empty() {
            map.serialize_entry("traceState", &row.trace_state)?;
        }
        if let Some(parent) = &row.parent_span_id {
            map.serialize_entry("parentSpanId", &parent.to_hex())?;
        }
        if row.flags != 0 {
            map.serialize_entry("flags", &row.flags)?;
        }
        map.serialize_entry("name", &row.name)?;
        if row.kind != 0 {
            map.serialize_entry("kind", &row.kind)?;
        }
        map.serialize_entry("startTimeUnixNano", &row.start_time_unix_nano.to_string())?;
        map.serialize_entry("endTimeUnixNano", &row.end_time_unix_nano().to_string())?;
        if !row.attributes.is_empty() {
            map.serialize_entry("attributes", &Attributes(&row.attributes))?;
        }
        if row.dropped_attributes_count != 0 {
            map.serialize_entry("droppedAttributesCount", &row.dropped_attributes_count)?;
        }
        if !row.events.is_empty() {
            let events: Vec<Event<'_>> = row.events.iter().map(Event).collect();
            map.serialize_entry("events", &events)?;
        }
        if row.dropped_events_count != 0 {
            map.serialize_entry("droppedEventsCount", &row.dropped_events_count)?;
        }
        if !row.links.is_empty() {
            let links: Vec<Link<'_>> = row.links.iter().map(Link).collect();
            map.serialize_entry("links", &links)?;
        }
        if row.dropped_links_count != 0 {
            map.serialize_entry("droppedLinksCount", &row.dropped_links_count)?;
        }
        map.serialize_entry("status", &Status(row))?;
        map.end()
    }
}

struct Status<'a>(&'a SpanRow);

impl Serialize for Status<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.0.status_message.is_empty() {
            map.serialize_entry("message", &self.0.status_message)?;
        }
        if self.0.status_code != status_code::UNSET {
            map.serialize_entry("code", &self.0.status_code)?;
        }
        map.end()
    }
}

struct Event<'a>(&'a seismo_store::SpanEvent);

impl Serialize for Event<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("timeUnixNano", &self.0.time_unix_nano.to_string())?;
        map.serialize_entry("name", &self.0.name)?;
        if !self.0.attributes.is_empty() {
            map.serialize_entry("attributes", &Attributes(&self.0.attributes))?;
        }
        map.end()
    }
}

struct Link<'a>(&'a seismo_store::SpanLink);

impl Serialize for Link<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("traceId", &self.0.trace_id)?;
        map.serialize_entry("spanId", &self.0.span_id)?;
        if !self.0.trace_state.is_empty() {
            map.serialize_entry("traceState", &self.0.trace_state)?;
        }
        if !self.0.attributes.is_empty() {
            map.serialize_entry("attributes", &Attributes(&self.0.attributes))?;
        }
        map.end()
    }
}

fn attributes<S: Serializer>(attrs: &[KeyValue], serializer: S) -> Result<S::Ok, S::Error> {
    Attributes(attrs).serialize(serializer)
}

/// `[{"key": ..., "value": AnyValue}, ...]`
struct Attributes<'a>(&'a [KeyValue]);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for kv in self.0 {
            seq.serialize_element(&Attribute(kv))?;
        }
        seq.end()
    }
}

struct Attribute<'a>(&'a KeyValue);

impl Serialize for Attribute<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("key", &self.0.key)?;
        map.serialize_entry("value", &AnyValue(&self.0.value))?;
        map.end()
    }
}

/// OTLP `AnyValue`: one `xxxValue` field, or `{}` for an empty value.
struct AnyValue<'a>(&'a AttrValue);

impl Serialize for AnyValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self.0 {
            AttrValue::Str(s) => map.serialize_entry("stringValue", s)?,
            AttrValue::Int(i) => map.serialize_entry("intValue", &i.to_string())?,
            AttrValue::Double(d) if d.is_nan() => map.serialize_entry("doubleValue", "NaN")?,
            AttrValue::Double(d) if d.is_infinite() => {
                map.serialize_entry("doubleValue", if *d > 0.0 { "Infinity" } else { "-Infinity" })?
            }
            AttrValue::Double(d) => map.serialize_entry("doubleValue", d)?,
            AttrValue::Bool(b) => map.serialize_entry("boolValue", b)?,
            // The store keeps bytes as hex; a value that is not hex was never bytes.
            AttrValue::Bytes(h) => match hex::decode(h) {
                Ok(bytes) => map.serialize_entry("bytesValue", &base64_encode(&bytes))?,
                Err(_) => map.serialize_entry("stringValue", h)?,
            },
            AttrValue::Array(items) => {
                let values: Vec<AnyValue<'_>> = items.iter().map(AnyValue).collect();
                map.serialize_entry("arrayValue", &BTreeMap::from([("values", values)]))?
            }
            AttrValue::Map(kvs) => {
                map.serialize_entry("kvlistValue", &BTreeMap::from([("values", Attributes(kvs))]))?
            }
            AttrValue::Empty => {}
        }
        map.end()
    }
}

/// Standard padded base64, as proto3 JSON writes `bytes` fields.
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes base64 in any of the four forms Go's `TraceIDFromString` tries
/// (standard or URL-safe alphabet, padded or not). `None` when it is none of them.
pub fn base64_decode_any(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().find_map(|engine| engine.decode(text).ok())
}

/// One entry of `/api/v3/trace-summaries`, computed from a whole trace as
/// Jaeger's query service does when the storage has no native summaries
/// (`querysvc/summary.go`): the root is the earliest span without a parent,
/// errors are spans with status ERROR, orphans are spans whose parent is absent,
/// services sorted by name.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    pub trace_id: String,
    pub root_service_name: String,
    pub root_operation_name: String,
    /// Decimal string: proto3 JSON writes 64-bit integers as strings.
    pub min_start_time_unix_nano: String,
    pub max_end_time_unix_nano: String,
    pub span_count: usize,
    pub error_span_count: usize,
    pub orphan_span_count: usize,
    pub services: Vec<ServiceSummary>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSummary {
    pub name: String,
    pub span_count: usize,
    pub error_span_count: usize,
}

impl TraceSummary {
    /// `None` for an empty trace.
    pub fn of(spans: &[SpanRow]) -> Option<TraceSummary> {
        let first = spans.first()?;
        let ids: HashSet<_> = spans.iter().map(|s| s.span_id).collect();
        let mut services: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut root: Option<&SpanRow> = None;
        let (mut min_start, mut max_end) = (i64::MAX, i64::MIN);
        let (mut errors, mut orphans) = (0, 0);
        for span in spans {
            let is_error = span.status_code == status_code::ERROR;
            let entry = services.entry(&span.service_name).or_default();
            entry.0 += 1;
            if is_error {
                entry.1 += 1;
                errors += 1;
            }
            min_start = min_start.min(span.start_time_unix_nano);
            max_end = max_end.max(span.end_time_unix_nano());
            match span.parent_span_id {
                None if root.is_none_or(|r| span.start_time_unix_nano < r.start_time_unix_nano) => root = Some(span),
                Some(parent) if !ids.contains(&parent) => orphans += 1,
                _ => {}
            }
        }
        Some(TraceSummary {
            trace_id: first.trace_id.to_hex(),
            root_service_name: root.map(|r| r.service_name.clone()).unwrap_or_default(),
            root_operation_name: root.map(|r| r.name.clone()).unwrap_or_default(),
            min_start_time_unix_nano: min_start.to_string(),
            max_end_time_unix_nano: max_end.to_string(),
            span_count: spans.len(),
            error_span_count: errors,
            orphan_span_count: orphans,
            services: services
                .into_iter()
                .map(|(name, (span_count, error_span_count))| ServiceSummary {
                    name: name.to_string(),
                    span_count,
                    error_span_count,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_values_follow_otlp_json() {
        let cases = [
            (AttrValue::Str("x".into()), json!({"stringValue": "x"})),
            (AttrValue::Int(-9_007_199_254_740_993), json!({"intValue": "-9007199254740993"})),
            (AttrValue::Double(1.5), json!({"doubleValue": 1.5})),
            (AttrValue::Double(f64::NAN), json!({"doubleValue": "NaN"})),
            (AttrValue::Double(f64::NEG_INFINITY), json!({"doubleValue": "-Infinity"})),
            (AttrValue::Bool(false), json!({"boolValue": false})),
            (AttrValue::Bytes("00ff10".into()), json!({"bytesValue": "AP8Q"})),
            (AttrValue::Empty, json!({})),
            (
                AttrValue::Array(vec![AttrValue::Int(1), AttrValue::Str("a".into())]),
                json!({"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "a"}]}}),
            ),
            (
                AttrValue::Map(vec![KeyValue::new("k", AttrValue::Bool(true))]),
                json!({"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": true}}]}}),
            ),
        ];
        for (value, want) in cases {
            assert_eq!(serde_json::to_value(AnyValue(&value)).unwrap(), want, "{value:?}");
        }
    }

    #[test]
    fn base64_round_trips_in_every_form() {
        for (bytes, std) in [(&b""[..], ""), (b"f", "Zg=="), (b"fo", "Zm8="), (b"foo", "Zm9v"), (&[0xfb, 0xff], "+/8=")]
        {
            assert_eq!(base64_encode(bytes), std);
            assert_eq!(base64_decode_any(std).unwrap(), bytes);
        }
        assert_eq!(base64_decode_any("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64_decode_any("+/8").unwrap(), [0xfb, 0xff]);
        for bad in ["Zg=", "Z", "Zm9v!", "+_8=", "Zg==="] {
            assert_eq!(base64_decode_any(bad), None, "{bad}");
        }
    }
}
