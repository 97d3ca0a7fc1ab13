//! OTLP/JSON for traces: `ExportTraceServiceRequest` and everything under it.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde_json::Value;

use super::common::{key_values, resource, scope};
use super::{
    decode_document, enumeration, for_each_field, repeated, span_id, string, trace_id, uint32, uint64, JsonError,
};

/// Decodes an OTLP/JSON trace export request.
///
/// # Errors
/// A [`JsonError`] naming the first field that is not valid OTLP/JSON.
pub(crate) fn decode_traces(bytes: &[u8]) -> Result<ExportTraceServiceRequest, JsonError> {
    decode_document(bytes, |root| {
        let mut out = ExportTraceServiceRequest::default();
        for_each_field(root, |key, field| {
            if key == "resourceSpans" {
                out.resource_spans = repeated(field, resource_spans)?;
            }
            Ok(())
        })?;
        Ok(out)
    })
}

fn resource_spans(value: &Value) -> Result<ResourceSpans, JsonError> {
    let mut out = ResourceSpans::default();
    for_each_field(value, |key, field| {
        match key {
            "resource" => out.resource = Some(resource(field)?),
            "scopeSpans" => out.scope_spans = repeated(field, scope_spans)?,
            "schemaUrl" => out.schema_url = string(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn scope_spans(value: &Value) -> Result<ScopeSpans, JsonError> {
    let mut out = ScopeSpans::default();
    for_each_field(value, |key, field| {
        match key {
            "scope" => out.scope = Some(scope(field)?),
            "spans" => out.spans = repeated(field, span)?,
            "schemaUrl" => out.schema_url = string(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn span(value: &Value) -> Result<Span, JsonError> {
    let mut out = Span::default();
    for_each_field(value, |key, field| {
        match key {
            "traceId" => out.trace_id = trace_id(field)?,
            "spanId" => out.span_id = span_id(field)?,
            "traceState" => out.trace_state = string(field)?,
            "parentSpanId" => out.parent_span_id = span_id(field)?,
            "flags" => out.flags = uint32(field)?,
            "name" => out.name = string(field)?,
            "kind" => out.kind = enumeration(field, |n| SpanKind::from_str_name(n).map(|k| k as i32))?,
            "startTimeUnixNano" => out.start_time_unix_nano = uint64(field)?,
            "endTimeUnixNano" => out.end_time_unix_nano = uint64(field)?,
            "attributes" => out.attributes = key_values(field)?,
            "droppedAttributesCount" => out.dropped_attributes_count = uint32(field)?,
            "events" => out.events = repeated(field, event)?,
            "droppedEventsCount" => out.dropped_events_count = uint32(field)?,
            "links" => out.links = repeated(field, link)?,
            "droppedLinksCount" => out.dropped_links_count = uint32(field)?,
            "status" => out.status = Some(status(field)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn event(value: &Value) -> Result<Event, JsonError> {
    let mut out = Event::default();
    for_each_field(value, |key, field| {
        match key {
            "timeUnixNano" => out.time_unix_nano = uint64(field)?,
            "name" => out.name = string(field)?,
            "attributes" => out.attributes = key_values(field)?,
            "droppedAttributesCount" => out.dropped_attributes_count = uint32(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn link(value: &Value) -> Result<Link, JsonError> {
    let mut out = Link::default();
    for_each_field(value, |key, field| {
        match key {
            "traceId" => out.trace_id = trace_id(field)?,
            "spanId" => out.span_id = span_id(field)?,
            "traceState" => out.trace_state = string(field)?,
            "attributes" => out.attributes = key_values(field)?,
            "droppedAttributesCount" => out.dropped_attributes_count = uint32(field)?,
            "flags" => out.flags = uint32(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn status(value: &Value) -> Result<Status, JsonError> {
    let mut out = Status::default();
    for_each_field(value, |key, field| {
        match key {
            "message" => out.message = string(field)?,
            "code" => out.code = enumeration(field, |n| StatusCode::from_str_name(n).map(|c| c as i32))?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value;

    #[test]
    fn example_decodes() {
        let req = decode_traces(include_bytes!("../../testdata/otlp-json/trace.json")).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(hex::encode(&span.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
        assert_eq!(hex::encode(&span.parent_span_id), "eee19b7ec3c1b173");
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(req.resource_spans[0].scope_spans[0].scope.as_ref().unwrap().version, "1.0.0");
    }

    #[test]
    fn empty_object_is_an_empty_request() {
        assert_eq!(decode_traces(b"{}").unwrap(), ExportTraceServiceRequest::default());
        assert_eq!(decode_traces(br#"{"resourceSpans": []}"#).unwrap(), ExportTraceServiceRequest::default());
        assert_eq!(decode_traces(br#"{"resourceSpans": null}"#).unwrap(), ExportTraceServiceRequest::default());
    }

    #[test]
    fn unknown_fields_are_ignored_at_every_level() {
        let json = br#"{"futureTop": 1, "resourceSpans": [{"x": {}, "scopeSpans": [{"y": [1],
            "spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                       "z": "?", "kind": 1, "status": {"code": 2, "w": true}}]}]}]}"#;
        let req = decode_traces(json).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.kind, 1);
        assert_eq!(span.status.as_ref().unwrap().code, StatusCode::Error as i32);
    }

    #[test]
    fn numbers_are_accepted_where_strings_are_expected_and_stay_exact() {
        let json = br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{
            "startTimeUnixNano": 1544712660000000001, "endTimeUnixNano": "1544712660000000003",
            "attributes": [{"key": "n", "value": {"intValue": 9007199254740993}},
                           {"key": "s", "value": {"intValue": "9007199254740993"}}],
            "events": [{"timeUnixNano": "1544712660000000002", "name": "e"}]}]}]}]}"#;
        let req = decode_traces(json).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_001);
        assert_eq!(span.end_time_unix_nano, 1_544_712_660_000_000_003);
        assert_eq!(span.events[0].time_unix_nano, 1_544_712_660_000_000_002);
        for attr in &span.attributes {
            assert_eq!(attr.value.as_ref().unwrap().value, Some(any_value::Value::IntValue(9_007_199_254_740_993)));
        }
    }

    #[test]
    fn enum_names_are_accepted_too() {
        let json = br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{
            "kind": "SPAN_KIND_CLIENT", "status": {"code": "STATUS_CODE_OK"}}]}]}]}"#;
        let span = decode_traces(json).unwrap().resource_spans[0].scope_spans[0].spans[0].clone();
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(span.status.unwrap().code, StatusCode::Ok as i32);
    }

    #[test]
    fn links_carry_hex_ids() {
        let json = br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"links": [{
            "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "flags": 257}]}]}]}]}"#;
        let span = &decode_traces(json).unwrap().resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.links[0].trace_id, (1..=16).collect::<Vec<u8>>());
        assert_eq!(span.links[0].flags, 257);
    }

    #[test]
    fn bad_input_is_rejected_with_its_path() {
        let cases: &[(&[u8], &str)] = &[
            (b"{", "invalid JSON"),
            (b"[]", "expected an object, found an array"),
            (br#"{"resourceSpans": "nope"}"#, "resourceSpans: expected an array, found a string"),
            (
                br#"{"resourceSpans": [{"scopeSpans": [{"spans": "x"}]}]}"#,
                "resourceSpans[0].scopeSpans[0].spans: expected an array",
            ),
            (
                br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{}, {"traceId": "zz"}]}]}]}"#,
                "resourceSpans[0].scopeSpans[0].spans[1].traceId: invalid hex id",
            ),
            (
                br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "01020304"}]}]}]}"#,
                "spans[0].spanId: id \"01020304\" has 8 hex digits, expected 16",
            ),
            (
                br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}"#,
                "spans[0].startTimeUnixNano: expected an integer",
            ),
            (
                br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "SERVER"}]}]}]}"#,
                "spans[0].kind: unknown enum value",
            ),
        ];
        for (json, expected) in cases {
            let err = decode_traces(json).unwrap_err().to_string();
            assert!(err.contains(expected), "{} -> {err}", String::from_utf8_lossy(json));
        }
    }
}
