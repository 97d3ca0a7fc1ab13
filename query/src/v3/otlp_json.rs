//! Stored span rows -> OTLP/JSON, the payload of Jaeger's api_v3 trace
//! endpoints, plus the trace summaries of `/api/v3/trace-summaries`.
//!
//! Built as `seismo_api::v3` wire types (which clients read back) rather than
//! through `opentelemetry-proto`'s serde support, because OTLP/JSON has rules
//! that derive-based encoding gets wrong at the edges: `bytesValue` is base64 (the store keeps bytes as hex), non-finite
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

use seismo_api::v3::{self as wire, AnyValue};
use seismo_store::{status_code, AttrValue, KeyValue, SpanRow, SERVICE_NAME};

/// OTLP `TracesData` for a list of traces: each trace's `ResourceSpans`, one
/// trace after the other (Jaeger concatenates per-trace results the same way).
pub(super) fn traces_data(traces: &[Vec<SpanRow>]) -> wire::TracesData {
    wire::TracesData { resource_spans: traces.iter().flat_map(|spans| group(spans)).collect() }
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

/// One `ResourceSpans` per distinct resource, one `ScopeSpans` per scope
/// within it, each in order of first appearance.
fn group(spans: &[SpanRow]) -> Vec<wire::ResourceSpans> {
    let mut resources: Vec<(Vec<KeyValue>, wire::ResourceSpans)> = Vec::new();
    for row in spans {
        let attrs = resource_attributes(row);
        let i = match resources.iter().position(|(a, _)| *a == attrs) {
            Some(i) => i,
            None => {
                let resource = wire::Resource { attributes: attributes(&attrs) };
                resources.push((attrs, wire::ResourceSpans { resource, scope_spans: Vec::new() }));
                resources.len() - 1
            }
        };
        let rs = &mut resources[i].1;
        let span = span(row);
        match rs
            .scope_spans
            .iter_mut()
            .find(|ss| ss.scope.name == row.scope_name && ss.scope.version == row.scope_version)
        {
            Some(ss) => ss.spans.push(span),
            None => rs.scope_spans.push(wire::ScopeSpans {
                scope: wire::Scope { name: row.scope_name.clone(), version: row.scope_version.clone() },
                spans: vec![span],
            }),
        }
    }
    resources.into_iter().map(|(_, rs)| rs).collect()
}

/// One span in OTLP/JSON (the wire type leaves defaults out).
fn span(row: &SpanRow) -> wire::Span {
    wire::Span {
        trace_id: row.trace_id.to_hex(),
        span_id: row.span_id.to_hex(),
        trace_state: row.trace_state.clone(),
        parent_span_id: row.parent_span_id.map(|p| p.to_hex()),
        flags: row.flags,
        name: row.name.clone(),
        kind: row.kind,
        start_time_unix_nano: row.start_time_unix_nano,
        end_time_unix_nano: row.end_time_unix_nano(),
        attributes: attributes(&row.attributes),
        dropped_attributes_count: row.dropped_attributes_count,
        events: row
            .events
            .iter()
            .map(|e| wire::Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name.clone(),
                attributes: attributes(&e.attributes),
            })
            .collect(),
        dropped_events_count: row.dropped_events_count,
        links: row
            .links
            .iter()
            .map(|l| wire::Link {
                trace_id: l.trace_id.clone(),
                span_id: l.span_id.clone(),
                trace_state: l.trace_state.clone(),
                attributes: attributes(&l.attributes),
            })
            .collect(),
        dropped_links_count: row.dropped_links_count,
        status: wire::Status {
            message: row.status_message.clone(),
            code: if row.status_code == status_code::UNSET { 0 } else { row.status_code },
        },
    }
}

fn attributes(attrs: &[KeyValue]) -> Vec<wire::KeyValue> {
    attrs.iter().map(|kv| wire::KeyValue::new(kv.key.clone(), any_value(&kv.value))).collect()
}

/// OTLP `AnyValue` of a stored value.
fn any_value(value: &AttrValue) -> AnyValue {
    match value {
        AttrValue::Str(s) => AnyValue::String(s.clone()),
        AttrValue::Int(i) => AnyValue::Int(*i),
        AttrValue::Double(d) => AnyValue::Double(*d),
        AttrValue::Bool(b) => AnyValue::Bool(*b),
        // The store keeps bytes as hex; a value that is not hex was never bytes.
        AttrValue::Bytes(h) => match hex::decode(h) {
            Ok(bytes) => AnyValue::Bytes(base64_encode(&bytes)),
            Err(_) => AnyValue::String(h.clone()),
        },
        AttrValue::Array(items) => AnyValue::Array(items.iter().map(any_value).collect()),
        AttrValue::Map(kvs) => AnyValue::KvList(attributes(kvs)),
        AttrValue::Empty => AnyValue::Empty,
    }
}

/// Standard padded base64, as proto3 JSON writes `bytes` fields.
pub(super) fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes base64 in any of the four forms Go's `TraceIDFromString` tries
/// (standard or URL-safe alphabet, padded or not). `None` when it is none of them.
pub(super) fn base64_decode_any(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().find_map(|engine| engine.decode(text).ok())
}

/// One entry of `/api/v3/trace-summaries`, computed from a whole trace as
/// Jaeger's query service does when the storage has no native summaries
/// (`querysvc/summary.go`): the root is the earliest span without a parent,
/// errors are spans with status ERROR, orphans are spans whose parent is absent,
/// services sorted by name. `None` for an empty trace.
pub(super) fn trace_summary(spans: &[SpanRow]) -> Option<wire::TraceSummary> {
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
    Some(wire::TraceSummary {
        trace_id: first.trace_id.to_hex(),
        root_service_name: root.map(|r| r.service_name.clone()).unwrap_or_default(),
        root_operation_name: root.map(|r| r.name.clone()).unwrap_or_default(),
        min_start_time_unix_nano: min_start,
        max_end_time_unix_nano: max_end,
        span_count: spans.len(),
        error_span_count: errors,
        orphan_span_count: orphans,
        services: services
            .into_iter()
            .map(|(name, (span_count, error_span_count))| wire::ServiceSummary {
                name: name.to_string(),
                span_count,
                error_span_count,
            })
            .collect(),
    })
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
            assert_eq!(serde_json::to_value(any_value(&value)).unwrap(), want, "{value:?}");
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
