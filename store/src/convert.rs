//! OTLP requests -> flattened rows, with the validation the store owns.
//!
//! Validation rules (the same on ingest and on WAL replay, so replay re-derives
//! exactly the rows that were acknowledged):
//! - a trace or span id of the wrong length makes the whole request invalid
//!   (the OTLP reference collector fails to unmarshal such a request too);
//! - an all-zero trace or span id rejects that one span (reported as partial
//!   success, never silently dropped);
//! - log records may carry no trace context (empty ids); if present they must
//!   have the right length.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pb_common;
use opentelemetry_proto::tonic::metrics::v1 as pb_metrics;
use opentelemetry_proto::tonic::trace::v1 as pb_trace;

use crate::error::{Result, StoreError};
use crate::ids::{SpanId, TraceId};
use crate::model::*;

/// `service.name` attribute key.
pub const SERVICE_NAME: &str = "service.name";
/// What the SDKs report when a resource has no `service.name`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Rows derived from one request plus what was rejected and why.
#[derive(Debug)]
pub(crate) struct Converted<R> {
    pub rows: Vec<R>,
    pub rejected: u64,
    pub message: Option<String>,
}

impl<R> Default for Converted<R> {
    fn default() -> Self {
        Self { rows: Vec::new(), rejected: 0, message: None }
    }
}

impl<R> Converted<R> {
    fn reject(&mut self, why: String) {
        self.rejected += 1;
        if self.message.is_none() {
            self.message = Some(why);
        }
    }
}

pub(crate) fn attr_value(v: &pb_common::AnyValue) -> AttrValue {
    use pb_common::any_value::Value;
    match &v.value {
        None => AttrValue::Empty,
        Some(Value::StringValue(s)) => AttrValue::Str(s.clone()),
        Some(Value::BoolValue(b)) => AttrValue::Bool(*b),
        Some(Value::IntValue(i)) => AttrValue::Int(*i),
        Some(Value::DoubleValue(d)) => AttrValue::Double(*d),
        Some(Value::BytesValue(b)) => AttrValue::Bytes(hex::encode(b)),
        Some(Value::ArrayValue(a)) => AttrValue::Array(a.values.iter().map(attr_value).collect()),
        Some(Value::KvlistValue(kv)) => AttrValue::Map(attributes(&kv.values)),
        // String-table references only occur in profiles; keep the index visibly.
        Some(Value::StringValueStrindex(i)) => AttrValue::Int(*i as i64),
    }
}

pub(crate) fn attributes(kvs: &[pb_common::KeyValue]) -> Vec<KeyValue> {
    kvs.iter()
        .map(|kv| KeyValue {
            key: kv.key.clone(),
            value: kv.value.as_ref().map(attr_value).unwrap_or(AttrValue::Empty),
        })
        .collect()
}

pub(crate) fn service_name(resource: &[KeyValue]) -> String {
    match attr(resource, SERVICE_NAME) {
        Some(AttrValue::Str(s)) if !s.is_empty() => s.clone(),
        Some(v @ (AttrValue::Int(_) | AttrValue::Double(_) | AttrValue::Bool(_))) => v.to_text(),
        _ => UNKNOWN_SERVICE.to_string(),
    }
}

pub(crate) fn ns(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `what` names the item in the error, built only on error.
fn trace_id(bytes: &[u8], what: impl FnOnce() -> String) -> Result<TraceId> {
    TraceId::from_slice(bytes)
        .map_err(|_| StoreError::InvalidId(format!("{}: trace id must be 16 bytes, got {}", what(), bytes.len())))
}

/// `what` names the item in the error, built only on error.
fn span_id(bytes: &[u8], what: impl FnOnce() -> String) -> Result<SpanId> {
    SpanId::from_slice(bytes)
        .map_err(|_| StoreError::InvalidId(format!("{}: span id must be 8 bytes, got {}", what(), bytes.len())))
}

/// [`attr_value`], taking the value's strings instead of copying them.
pub(crate) fn attr_value_owned(v: pb_common::AnyValue) -> AttrValue {
    use pb_common::any_value::Value;
    match v.value {
        Some(Value::StringValue(s)) => AttrValue::Str(s),
        Some(Value::ArrayValue(a)) => AttrValue::Array(a.values.into_iter().map(attr_value_owned).collect()),
        Some(Value::KvlistValue(kv)) => AttrValue::Map(attributes_owned(kv.values)),
        other => attr_value(&pb_common::AnyValue { value: other }),
    }
}

/// [`attributes`], taking the keys and values instead of copying them.
pub(crate) fn attributes_owned(kvs: Vec<pb_common::KeyValue>) -> Vec<KeyValue> {
    kvs.into_iter()
        .map(|kv| KeyValue { key: kv.key, value: kv.value.map(attr_value_owned).unwrap_or(AttrValue::Empty) })
        .collect()
}

/// A span's link; `what` names the span in the error.
///
/// # Errors
/// `InvalidId` when the link's trace or span id has the wrong length.
pub(crate) fn link(l: pb_trace::span::Link, what: impl Fn() -> String) -> Result<SpanLink> {
    Ok(SpanLink {
        trace_id: trace_id(&l.trace_id, || format!("{} link", what()))?.to_hex(),
        span_id: span_id(&l.span_id, || format!("{} link", what()))?.to_hex(),
        trace_state: l.trace_state,
        attributes: attributes_owned(l.attributes),
    })
}

/// A span's event, taking its strings.
pub(crate) fn event(e: pb_trace::span::Event) -> SpanEvent {
    SpanEvent { time_unix_nano: ns(e.time_unix_nano), name: e.name, attributes: attributes_owned(e.attributes) }
}

/// Converts a trace export request into span rows, taking its strings.
///
/// # Errors
/// `InvalidId` when any span carries an id of the wrong length.
pub(crate) fn spans(req: ExportTraceServiceRequest) -> Result<Converted<SpanRow>> {
    let mut out = Converted::default();
    for rs in req.resource_spans {
        let resource_attributes = rs.resource.map(|r| attributes_owned(r.attributes)).unwrap_or_default();
        let service = service_name(&resource_attributes);
        for ss in rs.scope_spans {
            let (scope_name, scope_version) = ss.scope.map(|s| (s.name, s.version)).unwrap_or_default();
            for span in ss.spans {
                // Only errors name the span: no text is built for a good one.
                let what = || format!("span {:?}", span.name);
                let tid = trace_id(&span.trace_id, what)?;
                let sid = span_id(&span.span_id, what)?;
                let parent = if span.parent_span_id.is_empty() {
                    None
                } else {
                    Some(span_id(&span.parent_span_id, || format!("{} parent", what())).map_err(|e| match e {
                        StoreError::InvalidId(m) => StoreError::InvalidId(m.replace("span id", "parent span id")),
                        other => other,
                    })?)
                };
                if tid.is_zero() || sid.is_zero() {
                    out.reject(format!("{}: all-zero trace or span id is invalid", what()));
                    continue;
                }
                let start = ns(span.start_time_unix_nano);
                let end = ns(span.end_time_unix_nano);
                let links = span.links.into_iter().map(|l| link(l, what)).collect::<Result<Vec<_>>>()?;
                let (status_code, status_message) =
                    span.status.map(|s| (s.code, s.message)).unwrap_or((status_code::UNSET, String::new()));
                out.rows.push(SpanRow {
                    trace_id: tid,
                    span_id: sid,
                    parent_span_id: parent.filter(|p| !p.is_zero()),
                    trace_state: span.trace_state,
                    flags: span.flags,
                    service_name: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    start_time_unix_nano: start,
                    duration_nano: end.saturating_sub(start).max(0),
                    status_code,
                    status_message,
                    attributes: attributes_owned(span.attributes),
                    resource_attributes: resource_attributes.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    events: span.events.into_iter().map(event).collect(),
                    links,
                    dropped_attributes_count: span.dropped_attributes_count,
                    dropped_events_count: span.dropped_events_count,
                    dropped_links_count: span.dropped_links_count,
                });
            }
        }
    }
    Ok(out)
}

/// Converts a logs export request into log rows.
///
/// # Errors
/// `InvalidId` when a record carries a trace or span id of the wrong length.
pub(crate) fn logs(req: &ExportLogsServiceRequest) -> Result<Converted<LogRow>> {
    let mut out = Converted::default();
    for rl in &req.resource_logs {
        let resource_attributes = rl.resource.as_ref().map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service = service_name(&resource_attributes);
        for sl in &rl.scope_logs {
            let (scope_name, scope_version) =
                sl.scope.as_ref().map(|s| (s.name.clone(), s.version.clone())).unwrap_or_default();
            for rec in &sl.log_records {
                let tid =
                    if rec.trace_id.is_empty() { None } else { Some(trace_id(&rec.trace_id, || "log record".into())?) };
                let sid =
                    if rec.span_id.is_empty() { None } else { Some(span_id(&rec.span_id, || "log record".into())?) };
                let observed = ns(rec.observed_time_unix_nano);
                let time = if rec.time_unix_nano == 0 { observed } else { ns(rec.time_unix_nano) };
                out.rows.push(LogRow {
                    time_unix_nano: time,
                    observed_time_unix_nano: observed,
                    severity_number: rec.severity_number,
                    severity_text: rec.severity_text.clone(),
                    body: rec.body.as_ref().map(attr_value).unwrap_or(AttrValue::Empty),
                    service_name: service.clone(),
                    trace_id: tid.filter(|t| !t.is_zero()),
                    span_id: sid.filter(|s| !s.is_zero()),
                    flags: rec.flags,
                    event_name: rec.event_name.clone(),
                    attributes: attributes(&rec.attributes),
                    resource_attributes: resource_attributes.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    dropped_attributes_count: rec.dropped_attributes_count,
                });
            }
        }
    }
    Ok(out)
}

/// Converts a metrics export request into one row per data point.
///
/// # Errors
/// Never fails today; the signature matches the other signals.
pub(crate) fn metric_points(req: &ExportMetricsServiceRequest) -> Result<Converted<MetricPointRow>> {
    use pb_metrics::metric::Data;
    let mut out = Converted::default();
    for rm in &req.resource_metrics {
        let resource_attributes = rm.resource.as_ref().map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service = service_name(&resource_attributes);
        for sm in &rm.scope_metrics {
            let scope_name = sm.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
            for m in &sm.metrics {
                let base = MetricPointRow {
                    metric_name: m.name.clone(),
                    description: m.description.clone(),
                    unit: m.unit.clone(),
                    kind: MetricKind::Gauge,
                    temporality: 0,
                    is_monotonic: false,
                    service_name: service.clone(),
                    time_unix_nano: 0,
                    start_time_unix_nano: 0,
                    attributes: Vec::new(),
                    resource_attributes: resource_attributes.clone(),
                    scope_name: scope_name.clone(),
                    value: None,
                    value_int: None,
                    count: None,
                    sum: None,
                    distribution: None,
                    flags: 0,
                };
                match &m.data {
                    None => out.reject(format!("metric {:?} has no data", m.name)),
                    Some(Data::Gauge(g)) => {
                        for p in &g.data_points {
                            out.rows.push(number_point(&base, MetricKind::Gauge, 0, false, p));
                        }
                    }
                    Some(Data::Sum(s)) => {
                        for p in &s.data_points {
                            out.rows.push(number_point(
                                &base,
                                MetricKind::Sum,
                                s.aggregation_temporality,
                                s.is_monotonic,
                                p,
                            ));
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for p in &h.data_points {
                            let mut row = point_base(
                                &base,
                                MetricKind::Histogram,
                                h.aggregation_temporality,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                &p.attributes,
                                p.flags,
                            );
                            row.count = Some(p.count);
                            row.sum = p.sum;
                            row.distribution = Some(Distribution {
                                bucket_counts: p.bucket_counts.clone(),
                                explicit_bounds: p.explicit_bounds.clone(),
                                min: p.min,
                                max: p.max,
                                ..Default::default()
                            });
                            out.rows.push(row);
                        }
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        for p in &h.data_points {
                            let mut row = point_base(
                                &base,
                                MetricKind::ExponentialHistogram,
                                h.aggregation_temporality,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                &p.attributes,
                                p.flags,
                            );
                            row.count = Some(p.count);
                            row.sum = p.sum;
                            row.distribution = Some(Distribution {
                                min: p.min,
                                max: p.max,
                                scale: Some(p.scale),
                                zero_count: Some(p.zero_count),
                                positive_offset: p.positive.as_ref().map(|b| b.offset),
                                positive_counts: p
                                    .positive
                                    .as_ref()
                                    .map(|b| b.bucket_counts.clone())
                                    .unwrap_or_default(),
                                negative_offset: p.negative.as_ref().map(|b| b.offset),
                                negative_counts: p
                                    .negative
                                    .as_ref()
                                    .map(|b| b.bucket_counts.clone())
                                    .unwrap_or_default(),
                                ..Default::default()
                            });
                            out.rows.push(row);
                        }
                    }
                    Some(Data::Summary(s)) => {
                        for p in &s.data_points {
                            let mut row = point_base(
                                &base,
                                MetricKind::Summary,
                                0,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                &p.attributes,
                                p.flags,
                            );
                            row.count = Some(p.count);
                            row.sum = Some(p.sum);
                            row.distribution = Some(Distribution {
                                quantiles: p.quantile_values.iter().map(|q| (q.quantile, q.value)).collect(),
                                ..Default::default()
                            });
                            out.rows.push(row);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn point_base(
    base: &MetricPointRow,
    kind: MetricKind,
    temporality: i32,
    start: u64,
    time: u64,
    attrs: &[pb_common::KeyValue],
    flags: u32,
) -> MetricPointRow {
    MetricPointRow {
        kind,
        temporality,
        time_unix_nano: ns(time),
        start_time_unix_nano: ns(start),
        attributes: attributes(attrs),
        flags,
        ..base.clone()
    }
}

fn number_point(
    base: &MetricPointRow,
    kind: MetricKind,
    temporality: i32,
    monotonic: bool,
    p: &pb_metrics::NumberDataPoint,
) -> MetricPointRow {
    use pb_metrics::number_data_point::Value;
    let mut row = point_base(base, kind, temporality, p.start_time_unix_nano, p.time_unix_nano, &p.attributes, p.flags);
    row.is_monotonic = monotonic;
    match p.value {
        Some(Value::AsDouble(d)) => row.value = Some(d),
        Some(Value::AsInt(i)) => {
            row.value = Some(i as f64);
            row.value_int = Some(i);
        }
        None => {}
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn kv(k: &str, v: pb_common::any_value::Value) -> pb_common::KeyValue {
        pb_common::KeyValue { key: k.into(), value: Some(pb_common::AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        use pb_common::any_value::Value;
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", Value::StringValue("cart".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    fn span(tid: Vec<u8>, sid: Vec<u8>) -> Span {
        Span {
            trace_id: tid,
            span_id: sid,
            name: "GET /".into(),
            start_time_unix_nano: 10,
            end_time_unix_nano: 25,
            ..Default::default()
        }
    }

    #[test]
    fn converts_and_flattens() {
        let out = spans(request(vec![span(vec![1; 16], vec![2; 8])])).unwrap();
        assert_eq!(out.rejected, 0);
        let row = &out.rows[0];
        assert_eq!(row.service_name, "cart");
        assert_eq!(row.duration_nano, 15);
        assert_eq!(row.parent_span_id, None);
    }

    #[test]
    fn wrong_length_id_fails_whole_request() {
        let err = spans(request(vec![span(vec![1; 16], vec![2; 8]), span(vec![1; 10], vec![2; 8])])).unwrap_err();
        assert!(matches!(err, StoreError::InvalidId(m) if m.contains("16 bytes")));
        let err = spans(request(vec![span(vec![1; 16], vec![2; 3])])).unwrap_err();
        assert!(matches!(err, StoreError::InvalidId(_)));
    }

    #[test]
    fn zero_id_is_a_partial_rejection() {
        let out = spans(request(vec![span(vec![0; 16], vec![2; 8]), span(vec![1; 16], vec![2; 8])])).unwrap();
        assert_eq!(out.rows.len(), 1);
        assert_eq!(out.rejected, 1);
        assert!(out.message.unwrap().contains("all-zero"));
    }

    #[test]
    fn missing_service_name_is_unknown_service() {
        let mut req = request(vec![span(vec![1; 16], vec![2; 8])]);
        req.resource_spans[0].resource = None;
        assert_eq!(spans(req).unwrap().rows[0].service_name, UNKNOWN_SERVICE);
    }
}
