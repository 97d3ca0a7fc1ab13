//! Stored spans -> Jaeger's JSON trace model, mirroring what Jaeger itself
//! serves for OTLP data: the OpenTelemetry collector-contrib translator
//! `pkg/translator/jaeger` (`ProtoFromTraces`), then the query service's
//! standard "sort collections" adjustment, then `uimodel` JSON.
//!
//! Per span, in Jaeger's order:
//! - references: the parent as `CHILD_OF` first, then each link as
//!   `FOLLOWS_FROM` (or `CHILD_OF` when the link says `opentracing.ref_type=child_of`);
//!   a link to the parent itself only retypes the parent reference;
//! - tags: `otel.scope.name`, `otel.scope.version`, the span attributes (sorted
//!   by key), `span.kind` (lowercase, absent when unspecified),
//!   `otel.status_code` (`OK`/`ERROR`, absent when unset), `error=true` (bool,
//!   on ERROR), `otel.status_description` (when the message is not empty),
//!   `w3c.tracestate` (when not empty);
//! - logs: span events sorted by name, each with `event=<name>` (unless an
//!   attribute already is `event`) and its attributes sorted by key;
//! - process: the resource, `service.name` as `serviceName` and the other
//!   attributes (sorted) as tags; identical processes share one `pN` id.
//!
//! `raw` (Jaeger's `raw=true`) skips the sorting, as Jaeger skips its adjusters.

use std::collections::BTreeMap;
use std::str::FromStr;

use seismo_api::jaeger as ui;
use seismo_store::{span_kind, status_code, AttrValue, KeyValue, SpanEvent, SpanId, SpanLink, SpanRow, TraceId};

pub(super) const OTEL_SCOPE_NAME: &str = "otel.scope.name";
pub(super) const OTEL_SCOPE_VERSION: &str = "otel.scope.version";
pub(super) const SPAN_KIND: &str = "span.kind";
pub(super) const OTEL_STATUS_CODE: &str = "otel.status_code";
pub(super) const OTEL_STATUS_DESCRIPTION: &str = "otel.status_description";
pub(super) const ERROR: &str = "error";
pub(super) const W3C_TRACESTATE: &str = "w3c.tracestate";
pub(super) const EVENT: &str = "event";
pub(super) const SERVICE_NAME: &str = "service.name";
pub(super) const OPENTRACING_REF_TYPE: &str = "opentracing.ref_type";
pub(super) const OPENTRACING_REF_TYPE_CHILD_OF: &str = "child_of";
/// The sampled bit, in both OTLP span flags (W3C trace flags) and Jaeger flags.
const SAMPLED_FLAG: u32 = 0x1;

/// Converts the spans of one trace, in the given order. `None` when there are no spans.
pub(super) fn to_jaeger_trace(spans: &[SpanRow], raw: bool) -> Option<ui::Trace> {
    let first = spans.first()?;
    let mut processes = ProcessTable::default();
    let spans = spans
        .iter()
        .map(|row| {
            let process_id = processes.id_of(to_jaeger_process(row, raw));
            to_jaeger_span(row, process_id, raw)
        })
        .collect();
    Some(ui::Trace {
        trace_id: jaeger_trace_id(&first.trace_id),
        spans,
        processes: processes.into_map(),
        warnings: None,
    })
}

/// A trace id as Jaeger prints it: 16 hex digits when the high half is zero, else 32.
pub(super) fn jaeger_trace_id(id: &TraceId) -> String {
    if id.0[..8].iter().all(|b| *b == 0) {
        hex::encode(&id.0[8..])
    } else {
        id.to_hex()
    }
}

pub(super) fn jaeger_span_id(id: &SpanId) -> String {
    id.to_hex()
}

fn to_jaeger_span(row: &SpanRow, process_id: String, raw: bool) -> ui::Span {
    ui::Span {
        trace_id: jaeger_trace_id(&row.trace_id),
        span_id: jaeger_span_id(&row.span_id),
        parent_span_id: None,
        flags: row.flags & SAMPLED_FLAG,
        operation_name: row.name.clone(),
        references: references(row),
        start_time: nanos_to_micros(row.start_time_unix_nano),
        duration: nanos_to_micros(row.duration_nano),
        tags: span_tags(row, raw),
        logs: logs(&row.events, raw),
        process_id,
        process: None,
        warnings: None,
    }
}

fn nanos_to_micros(ns: i64) -> u64 {
    (ns.max(0) / 1_000) as u64
}

fn references(row: &SpanRow) -> Vec<ui::Reference> {
    let trace_id = jaeger_trace_id(&row.trace_id);
    let parent = row.parent_span_id.filter(|p| !p.is_zero()).map(|p| jaeger_span_id(&p));
    let mut refs = Vec::with_capacity(row.links.len() + 1);
    if let Some(parent) = &parent {
        refs.push(ui::Reference {
            ref_type: ui::RefType::ChildOf,
            trace_id: trace_id.clone(),
            span_id: parent.clone(),
        });
    }
    for link in &row.links {
        let (link_trace, link_span) = link_ids(link);
        let ref_type = link_ref_type(link);
        if parent.as_ref() == Some(&link_span) && link_trace == trace_id {
            refs[0].ref_type = ref_type;
            continue;
        }
        refs.push(ui::Reference { ref_type, trace_id: link_trace, span_id: link_span });
    }
    refs
}

/// Link ids are stored as hex text; normalize them to Jaeger's form.
fn link_ids(link: &SpanLink) -> (String, String) {
    let trace = TraceId::from_str(&link.trace_id)
        .map(|id| jaeger_trace_id(&id))
        .unwrap_or_else(|_| link.trace_id.to_ascii_lowercase());
    let span = SpanId::from_str(&link.span_id)
        .map(|id| jaeger_span_id(&id))
        .unwrap_or_else(|_| link.span_id.to_ascii_lowercase());
    (trace, span)
}

fn link_ref_type(link: &SpanLink) -> ui::RefType {
    match seismo_store::attr(&link.attributes, OPENTRACING_REF_TYPE) {
        Some(AttrValue::Str(s)) if s == OPENTRACING_REF_TYPE_CHILD_OF => ui::RefType::ChildOf,
        _ => ui::RefType::FollowsFrom,
    }
}

fn span_tags(row: &SpanRow, raw: bool) -> Vec<ui::KeyValue> {
    let mut tags = Vec::with_capacity(row.attributes.len() + 7);
    if !row.scope_name.is_empty() {
        tags.push(ui::KeyValue::string(OTEL_SCOPE_NAME, &row.scope_name));
    }
    if !row.scope_version.is_empty() {
        tags.push(ui::KeyValue::string(OTEL_SCOPE_VERSION, &row.scope_version));
    }
    tags.extend(sorted_tags(&row.attributes, raw, |_| true));
    if span_kind::name(row.kind) != "unspecified" {
        tags.push(ui::KeyValue::string(SPAN_KIND, span_kind::name(row.kind)));
    }
    match row.status_code {
        status_code::OK => tags.push(ui::KeyValue::string(OTEL_STATUS_CODE, "OK")),
        status_code::ERROR => {
            tags.push(ui::KeyValue::string(OTEL_STATUS_CODE, "ERROR"));
            tags.push(ui::KeyValue::bool(ERROR, true));
        }
        _ => {}
    }
    if !row.status_message.is_empty() {
        tags.push(ui::KeyValue::string(OTEL_STATUS_DESCRIPTION, &row.status_message));
    }
    if !row.trace_state.is_empty() {
        tags.push(ui::KeyValue::string(W3C_TRACESTATE, &row.trace_state));
    }
    tags
}

fn logs(events: &[SpanEvent], raw: bool) -> Vec<ui::Log> {
    let mut events: Vec<&SpanEvent> = events.iter().collect();
    if !raw {
        events.sort_by(|a, b| a.name.cmp(&b.name)); // stable, as pdata's Sort
    }
    events
        .into_iter()
        .map(|event| {
            let mut fields = Vec::with_capacity(event.attributes.len() + 1);
            let has_event_attr = event.attributes.iter().any(|kv| kv.key == EVENT);
            if !event.name.is_empty() && !has_event_attr {
                fields.push(ui::KeyValue::string(EVENT, &event.name));
            }
            fields.extend(sorted_tags(&event.attributes, raw, |_| true));
            ui::Log { timestamp: nanos_to_micros(event.time_unix_nano), fields }
        })
        .collect()
}

fn to_jaeger_process(row: &SpanRow, raw: bool) -> ui::Process {
    ui::Process {
        service_name: row.service_name.clone(),
        tags: sorted_tags(&row.resource_attributes, raw, |kv| kv.key != SERVICE_NAME),
    }
}

fn sorted_tags(attrs: &[KeyValue], raw: bool, keep: impl Fn(&KeyValue) -> bool) -> Vec<ui::KeyValue> {
    let mut kept: Vec<&KeyValue> = attrs.iter().filter(|kv| keep(kv)).collect();
    if !raw {
        kept.sort_by(|a, b| a.key.cmp(&b.key));
    }
    kept.into_iter().map(to_jaeger_tag).collect()
}

/// One attribute as a typed Jaeger tag. Arrays and maps become their JSON text
/// typed `string`, and an empty value an empty `string`, as the translator does.
pub(super) fn to_jaeger_tag(kv: &KeyValue) -> ui::KeyValue {
    let key = kv.key.clone();
    match &kv.value {
        AttrValue::Str(s) => ui::KeyValue::string(key, s),
        AttrValue::Int(i) => ui::KeyValue::int64(key, *i),
        AttrValue::Double(d) => ui::KeyValue::float64(key, *d),
        AttrValue::Bool(b) => ui::KeyValue::bool(key, *b),
        AttrValue::Bytes(hex_text) => match hex::decode(hex_text) {
            Ok(bytes) => ui::KeyValue::binary(key, &bytes),
            Err(_) => ui::KeyValue::raw(key, ui::ValueType::Binary, hex_text.clone().into()),
        },
        other @ (AttrValue::Array(_) | AttrValue::Map(_)) => ui::KeyValue::string(key, other.to_text()),
        AttrValue::Empty => ui::KeyValue::string(key, ""),
    }
}

/// Assigns `p1`, `p2`, ... to distinct processes in order of first use.
#[derive(Default)]
struct ProcessTable {
    // Few processes per trace: a linear scan beats hashing JSON-ish values.
    entries: Vec<(ui::Process, String)>,
}

impl ProcessTable {
    fn id_of(&mut self, process: ui::Process) -> String {
        if let Some((_, id)) = self.entries.iter().find(|(p, _)| *p == process) {
            return id.clone();
        }
        let id = format!("p{}", self.entries.len() + 1);
        self.entries.push((process, id.clone()));
        id
    }

    fn into_map(self) -> BTreeMap<String, ui::Process> {
        self.entries.into_iter().map(|(p, id)| (id, p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    fn kv(key: &str, value: AttrValue) -> KeyValue {
        KeyValue::new(key, value)
    }

    fn row(span: &str, parent: Option<&str>) -> SpanRow {
        SpanRow {
            trace_id: TRACE.parse().unwrap(),
            span_id: span.parse().unwrap(),
            parent_span_id: parent.map(|p| p.parse().unwrap()),
            trace_state: String::new(),
            flags: 0,
            service_name: "checkout".into(),
            name: "GET /cart".into(),
            kind: span_kind::UNSPECIFIED,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            duration_nano: 2_500_999,
            status_code: status_code::UNSET,
            status_message: String::new(),
            attributes: vec![],
            resource_attributes: vec![kv("service.name", AttrValue::Str("checkout".into()))],
            scope_name: String::new(),
            scope_version: String::new(),
            events: vec![],
            links: vec![],
            dropped_attributes_count: 0,
            dropped_events_count: 0,
            dropped_links_count: 0,
        }
    }

    fn tags_json(span: &ui::Span) -> serde_json::Value {
        serde_json::to_value(&span.tags).unwrap()
    }

    #[test]
    fn ids_times_and_flags() {
        let mut r = row("b7ad6b7169203331", None);
        r.flags = 0x301; // sampled + OTLP "has/is remote" bits: only sampled is Jaeger's
        let t = to_jaeger_trace(&[r], false).unwrap();
        assert_eq!(t.trace_id, TRACE);
        let s = &t.spans[0];
        assert_eq!((s.span_id.as_str(), s.flags), ("b7ad6b7169203331", 1));
        assert_eq!((s.start_time, s.duration), (1_700_000_000_123_456, 2_500));
        assert!(s.references.is_empty() && s.tags.is_empty() && s.logs.is_empty());
        let short: TraceId = "00000000000000000123456789abcdef".parse().unwrap();
        assert_eq!(jaeger_trace_id(&short), "0123456789abcdef");
    }

    #[test]
    fn typed_attributes_keep_their_type_sorted_by_key() {
        let mut r = row("b7ad6b7169203331", None);
        r.attributes = vec![
            kv("z.str", AttrValue::Str("v".into())),
            kv("a.int", AttrValue::Int(200)),
            kv("m.double", AttrValue::Double(0.25)),
            kv("b.bool", AttrValue::Bool(false)),
            kv("c.bytes", AttrValue::Bytes("68692103".into())),
            kv("d.array", AttrValue::Array(vec![AttrValue::Int(1), AttrValue::Str("x".into())])),
            kv("e.map", AttrValue::Map(vec![kv("k", AttrValue::Bool(true))])),
            kv("f.empty", AttrValue::Empty),
        ];
        let t = to_jaeger_trace(&[r.clone()], false).unwrap();
        assert_eq!(
            tags_json(&t.spans[0]),
            json!([
                {"key": "a.int", "type": "int64", "value": 200},
                {"key": "b.bool", "type": "bool", "value": false},
                {"key": "c.bytes", "type": "binary", "value": "aGkhAw=="},
                {"key": "d.array", "type": "string", "value": "[1,\"x\"]"},
                {"key": "e.map", "type": "string", "value": "{\"k\":true}"},
                {"key": "f.empty", "type": "string", "value": ""},
                {"key": "m.double", "type": "float64", "value": 0.25},
                {"key": "z.str", "type": "string", "value": "v"},
            ])
        );
        let raw = to_jaeger_trace(&[r], true).unwrap();
        assert_eq!(raw.spans[0].tags[0].key, "z.str", "raw keeps stored order");
    }

    #[test]
    fn parent_and_links_become_references() {
        let mut r = row("b7ad6b7169203331", Some("00f067aa0ba902b7"));
        r.links = vec![
            SpanLink {
                trace_id: "4BF92F3577B34DA6A3CE929D0E0E4736".into(),
                span_id: "00f067aa0ba902b8".into(),
                trace_state: String::new(),
                attributes: vec![],
            },
            SpanLink {
                trace_id: TRACE.into(),
                span_id: "1111111111111111".into(),
                trace_state: String::new(),
                attributes: vec![kv(OPENTRACING_REF_TYPE, AttrValue::Str("child_of".into()))],
            },
        ];
        let t = to_jaeger_trace(&[r], false).unwrap();
        assert_eq!(
            serde_json::to_value(&t.spans[0].references).unwrap(),
            json!([
                {"refType": "CHILD_OF", "traceID": TRACE, "spanID": "00f067aa0ba902b7"},
                {"refType": "FOLLOWS_FROM", "traceID": "4bf92f3577b34da6a3ce929d0e0e4736", "spanID": "00f067aa0ba902b8"},
                {"refType": "CHILD_OF", "traceID": TRACE, "spanID": "1111111111111111"},
            ])
        );
    }

    #[test]
    fn link_to_the_parent_retypes_the_parent_reference() {
        let mut r = row("b7ad6b7169203331", Some("00f067aa0ba902b7"));
        r.links = vec![SpanLink {
            trace_id: TRACE.into(),
            span_id: "00f067aa0ba902b7".into(),
            trace_state: String::new(),
            attributes: vec![],
        }];
        let refs = &to_jaeger_trace(&[r], false).unwrap().spans[0].references;
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].ref_type, ui::RefType::FollowsFrom);
    }

    #[test]
    fn error_status_kind_scope_and_tracestate_tags_in_jaeger_order() {
        let mut r = row("b7ad6b7169203331", None);
        r.kind = span_kind::SERVER;
        r.status_code = status_code::ERROR;
        r.status_message = "connection refused".into();
        r.scope_name = "io.opentelemetry.http".into();
        r.scope_version = "1.2.3".into();
        r.trace_state = "congo=t61rcWkgMzE".into();
        r.attributes = vec![kv("http.method", AttrValue::Str("GET".into()))];
        let t = to_jaeger_trace(&[r], false).unwrap();
        assert_eq!(
            tags_json(&t.spans[0]),
            json!([
                {"key": "otel.scope.name", "type": "string", "value": "io.opentelemetry.http"},
                {"key": "otel.scope.version", "type": "string", "value": "1.2.3"},
                {"key": "http.method", "type": "string", "value": "GET"},
                {"key": "span.kind", "type": "string", "value": "server"},
                {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                {"key": "error", "type": "bool", "value": true},
                {"key": "otel.status_description", "type": "string", "value": "connection refused"},
                {"key": "w3c.tracestate", "type": "string", "value": "congo=t61rcWkgMzE"},
            ])
        );
    }

    #[test]
    fn ok_status_and_every_kind() {
        let mut r = row("b7ad6b7169203331", None);
        r.status_code = status_code::OK;
        for (kind, name) in [
            (span_kind::INTERNAL, "internal"),
            (span_kind::CLIENT, "client"),
            (span_kind::PRODUCER, "producer"),
            (span_kind::CONSUMER, "consumer"),
        ] {
            r.kind = kind;
            let t = to_jaeger_trace(&[r.clone()], false).unwrap();
            assert_eq!(
                tags_json(&t.spans[0]),
                json!([
                    {"key": "span.kind", "type": "string", "value": name},
                    {"key": "otel.status_code", "type": "string", "value": "OK"},
                ])
            );
        }
    }

    #[test]
    fn events_become_logs_sorted_by_name() {
        let mut r = row("b7ad6b7169203331", None);
        r.events = vec![
            SpanEvent {
                time_unix_nano: 1_700_000_000_200_000_999,
                name: "retry".into(),
                attributes: vec![kv("attempt", AttrValue::Int(2)), kv("after", AttrValue::Double(1.5))],
            },
            SpanEvent {
                time_unix_nano: 1_700_000_000_300_000_000,
                name: "exception".into(),
                attributes: vec![kv("exception.message", AttrValue::Str("boom".into()))],
            },
            SpanEvent {
                time_unix_nano: 1_700_000_000_400_000_000,
                name: "named".into(),
                attributes: vec![kv("event", AttrValue::Str("own".into()))],
            },
        ];
        let logs = serde_json::to_value(&to_jaeger_trace(&[r], false).unwrap().spans[0].logs).unwrap();
        assert_eq!(
            logs,
            json!([
                {"timestamp": 1_700_000_000_300_000u64, "fields": [
                    {"key": "event", "type": "string", "value": "exception"},
                    {"key": "exception.message", "type": "string", "value": "boom"},
                ]},
                {"timestamp": 1_700_000_000_400_000u64, "fields": [
                    {"key": "event", "type": "string", "value": "own"},
                ]},
                {"timestamp": 1_700_000_000_200_000u64, "fields": [
                    {"key": "event", "type": "string", "value": "retry"},
                    {"key": "after", "type": "float64", "value": 1.5},
                    {"key": "attempt", "type": "int64", "value": 2},
                ]},
            ])
        );
    }

    #[test]
    fn processes_are_deduplicated_per_trace() {
        let mut a1 = row("0000000000000001", None);
        a1.resource_attributes.push(kv("host.name", AttrValue::Str("h1".into())));
        a1.resource_attributes.insert(0, kv("a.first", AttrValue::Int(1)));
        let a2 = a1.clone();
        let mut b = row("0000000000000002", Some("0000000000000001"));
        b.service_name = "payments".into();
        b.resource_attributes = vec![kv("service.name", AttrValue::Str("payments".into()))];
        let mut a3 = a1.clone();
        a3.resource_attributes[2] = kv("host.name", AttrValue::Str("h2".into()));
        let t = to_jaeger_trace(&[a1, b, a2, a3], false).unwrap();
        let ids: Vec<&str> = t.spans.iter().map(|s| s.process_id.as_str()).collect();
        assert_eq!(ids, ["p1", "p2", "p1", "p3"]);
        assert_eq!(
            serde_json::to_value(&t.processes).unwrap(),
            json!({
                "p1": {"serviceName": "checkout", "tags": [
                    {"key": "a.first", "type": "int64", "value": 1},
                    {"key": "host.name", "type": "string", "value": "h1"},
                ]},
                "p2": {"serviceName": "payments", "tags": []},
                "p3": {"serviceName": "checkout", "tags": [
                    {"key": "a.first", "type": "int64", "value": 1},
                    {"key": "host.name", "type": "string", "value": "h2"},
                ]},
            })
        );
    }

    #[test]
    fn empty_trace_is_none() {
        assert!(to_jaeger_trace(&[], false).is_none());
    }
}
