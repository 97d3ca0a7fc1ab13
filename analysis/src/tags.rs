//! Reading a span's tags and its process without caring how the JSON typed them.

use seismo_api::jaeger::{KeyValue, Span, Trace};
use serde_json::Value;

/// The span's tag `key`, if present.
pub fn tag<'a>(span: &'a Span, key: &str) -> Option<&'a KeyValue> {
    span.tags.iter().find(|kv| kv.key == key)
}

/// The tag's value as text (strings unquoted, numbers and bools as JSON).
pub fn tag_text(span: &Span, key: &str) -> Option<String> {
    tag(span, key).map(KeyValue::value_text)
}

/// Jaeger's `error` tag: `true`, or `"true"` as some clients send it.
pub fn is_error(span: &Span) -> bool {
    tag(span, "error").is_some_and(|kv| match &kv.value {
        Value::Bool(b) => *b,
        Value::String(s) => s == "true",
        _ => false,
    })
}

/// The service that emitted the span: its process' `serviceName` (`""` when unknown).
pub fn service<'a>(trace: &'a Trace, span: &'a Span) -> &'a str {
    if let Some(p) = &span.process {
        return &p.service_name;
    }
    trace.processes.get(&span.process_id).map(|p| p.service_name.as_str()).unwrap_or("")
}

/// The span's end in microseconds since the epoch.
pub fn end_us(span: &Span) -> u64 {
    span.start_time.saturating_add(span.duration)
}
