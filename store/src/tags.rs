//! What a Jaeger `tags` filter matches on a span, in one place.
//!
//! Jaeger matches a tag against the span's tags, its process (resource) tags and
//! its log (event) fields, comparing values as text. It also exposes derived tags
//! (`error`, `span.kind`, `otel.status_code`, ...) that users search by. The
//! segment's tantivy index stores exactly these pairs as `key=value` terms, and
//! memtable scans compare against the same pairs, so a search answers the same
//! before and after a flush.

use crate::model::{span_kind, status_code, AttrValue, KeyValue};
use crate::packed::SpanView;

/// Longest `key=value` term kept in the index; longer values match by
/// full-text search only (tantivy caps term length, and such values are not
/// what anyone types into a tag filter).
pub(crate) const MAX_TERM_BYTES: usize = 512;

/// Derived tag keys, as Jaeger's OTLP translation names them.
pub const ERROR: &str = "error";
pub const SPAN_KIND: &str = "span.kind";
pub const OTEL_STATUS_CODE: &str = "otel.status_code";
pub const OTEL_STATUS_DESCRIPTION: &str = "otel.status_description";
pub const OTEL_SCOPE_NAME: &str = "otel.scope.name";
pub const OTEL_SCOPE_VERSION: &str = "otel.scope.version";

/// The index term for one tag pair.
pub(crate) fn term(key: &str, value: &str) -> String {
    let mut t = String::with_capacity(key.len() + value.len() + 1);
    t.push_str(key);
    t.push('=');
    t.push_str(value);
    t
}

/// Calls `f(key, value_text)` for every tag pair a filter can match on `row`.
pub(crate) fn for_each_pair(row: &impl SpanView, mut f: impl FnMut(&str, &str)) {
    for kv in row.attributes() {
        attribute_pair(kv, &mut f);
    }
    for_each_pair_but_attributes(row, f);
}

/// Calls `f(key, value_text)` for one attribute.
pub(crate) fn attribute_pair(kv: &KeyValue, mut f: impl FnMut(&str, &str)) {
    match &kv.value {
        AttrValue::Str(s) => f(&kv.key, s),
        other => f(&kv.key, &other.to_text()),
    }
}

/// [`for_each_pair`] but for the span's own attributes.
pub(crate) fn for_each_pair_but_attributes(row: &impl SpanView, mut f: impl FnMut(&str, &str)) {
    for kv in row.resource_attributes() {
        attribute_pair(kv, &mut f);
    }
    for ev in row.events() {
        for kv in &ev.attributes {
            attribute_pair(kv, &mut f);
        }
    }
    if row.kind() != span_kind::UNSPECIFIED {
        f(SPAN_KIND, span_kind::name(row.kind()));
    }
    match row.status_code() {
        status_code::ERROR => {
            f(ERROR, "true");
            f(OTEL_STATUS_CODE, "ERROR");
        }
        status_code::OK => f(OTEL_STATUS_CODE, "OK"),
        _ => {}
    }
    if !row.status_message().is_empty() {
        f(OTEL_STATUS_DESCRIPTION, row.status_message());
    }
    if !row.scope_name().is_empty() {
        f(OTEL_SCOPE_NAME, row.scope_name());
    }
    if !row.scope_version().is_empty() {
        f(OTEL_SCOPE_VERSION, row.scope_version());
    }
}

/// True when the span carries every `(key, value)` pair.
pub(crate) fn matches_all(row: &impl SpanView, wanted: &[(String, String)]) -> bool {
    if wanted.is_empty() {
        return true;
    }
    let mut found = vec![false; wanted.len()];
    for_each_pair(row, |k, v| {
        for (i, (wk, wv)) in wanted.iter().enumerate() {
            if !found[i] && wk == k && wv == v && term(k, v).len() <= MAX_TERM_BYTES {
                found[i] = true;
            }
        }
    });
    found.iter().all(|f| *f)
}
