//! Row types: one flattened row per span, log record and metric data point.
//!
//! OTLP nests spans under scope under resource; the store flattens that so each
//! row carries its service name and resource attributes. The repeated resource
//! text costs almost nothing on disk (Parquet dictionary-encodes it) and makes
//! every row self-contained for queries.

use serde::{Deserialize, Serialize};

use crate::ids::{SpanId, TraceId};

/// The three OTLP signals the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    pub(crate) fn tag(self) -> u8 {
        match self {
            Signal::Traces => 1,
            Signal::Logs => 2,
            Signal::Metrics => 3,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<Signal> {
        match tag {
            1 => Some(Signal::Traces),
            2 => Some(Signal::Logs),
            3 => Some(Signal::Metrics),
            _ => None,
        }
    }
}

/// A typed attribute value. Types survive the round trip so that the Jaeger API
/// can answer `int64` / `float64` / `bool` / `string` tags faithfully.
///
/// Serialized compactly (`{"s":"x"}`, `{"i":5}`, ...) because it is stored in
/// JSON columns; integers stay exact (serde_json keeps i64 without floats).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    #[serde(rename = "s")]
    Str(String),
    #[serde(rename = "i")]
    Int(i64),
    #[serde(rename = "d")]
    Double(f64),
    #[serde(rename = "b")]
    Bool(bool),
    /// Raw bytes, kept as hex text in storage.
    #[serde(rename = "y")]
    Bytes(String),
    #[serde(rename = "a")]
    Array(Vec<AttrValue>),
    #[serde(rename = "m")]
    Map(Vec<KeyValue>),
    #[serde(rename = "n")]
    Empty,
}

impl AttrValue {
    /// The value as text: what full-text indexing and Jaeger tag matching compare.
    pub fn to_text(&self) -> String {
        match self {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) => d.to_string(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Bytes(h) => h.clone(),
            AttrValue::Array(_) | AttrValue::Map(_) => serde_json::to_string(&self.to_plain_json()).unwrap_or_default(),
            AttrValue::Empty => String::new(),
        }
    }

    /// The value as ordinary JSON (no type tags), for complex values shown as text.
    pub fn to_plain_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            AttrValue::Str(s) => Value::String(s.clone()),
            AttrValue::Int(i) => Value::from(*i),
            AttrValue::Double(d) => Value::from(*d),
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::Bytes(h) => Value::String(h.clone()),
            AttrValue::Array(items) => Value::Array(items.iter().map(|v| v.to_plain_json()).collect()),
            AttrValue::Map(kvs) => {
                Value::Object(kvs.iter().map(|kv| (kv.key.clone(), kv.value.to_plain_json())).collect())
            }
            AttrValue::Empty => Value::Null,
        }
    }
}

/// One attribute. A list of these (not a map) keeps OTLP's order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(rename = "k")]
    pub key: String,
    #[serde(rename = "v")]
    pub value: AttrValue,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: AttrValue) -> Self {
        Self { key: key.into(), value }
    }
}

/// Looks up an attribute by key.
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AttrValue> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

/// OTLP span kind, numbered as in the proto (0 = unspecified).
pub mod span_kind {
    pub const UNSPECIFIED: i32 = 0;
    pub const INTERNAL: i32 = 1;
    pub const SERVER: i32 = 2;
    pub const CLIENT: i32 = 3;
    pub const PRODUCER: i32 = 4;
    pub const CONSUMER: i32 = 5;

    /// The lowercase name Jaeger uses in `span.kind` and `spanKind=`.
    pub fn name(kind: i32) -> &'static str {
        match kind {
            INTERNAL => "internal",
            SERVER => "server",
            CLIENT => "client",
            PRODUCER => "producer",
            CONSUMER => "consumer",
            _ => "unspecified",
        }
    }

    pub fn from_name(name: &str) -> Option<i32> {
        Some(match name {
            "internal" => INTERNAL,
            "server" => SERVER,
            "client" => CLIENT,
            "producer" => PRODUCER,
            "consumer" => CONSUMER,
            "unspecified" => UNSPECIFIED,
            _ => return None,
        })
    }
}

/// OTLP status code, numbered as in the proto.
pub mod status_code {
    pub const UNSET: i32 = 0;
    pub const OK: i32 = 1;
    pub const ERROR: i32 = 2;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    #[serde(rename = "t")]
    pub time_unix_nano: i64,
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    #[serde(rename = "t")]
    pub trace_id: String,
    #[serde(rename = "s")]
    pub span_id: String,
    #[serde(rename = "ts", default, skip_serializing_if = "String::is_empty")]
    pub trace_state: String,
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<KeyValue>,
}

/// One span, flattened with its resource and scope.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanRow {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub flags: u32,
    /// `service.name` of the resource ("unknown_service" when absent, as the SDKs do).
    pub service_name: String,
    pub name: String,
    /// See [`span_kind`].
    pub kind: i32,
    pub start_time_unix_nano: i64,
    /// end - start, never negative.
    pub duration_nano: i64,
    /// See [`status_code`].
    pub status_code: i32,
    pub status_message: String,
    pub attributes: Vec<KeyValue>,
    pub resource_attributes: Vec<KeyValue>,
    pub scope_name: String,
    pub scope_version: String,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
    pub dropped_attributes_count: u32,
    pub dropped_events_count: u32,
    pub dropped_links_count: u32,
}

impl SpanRow {
    pub fn end_time_unix_nano(&self) -> i64 {
        self.start_time_unix_nano.saturating_add(self.duration_nano)
    }
}

/// One log record, flattened with its resource and scope.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    /// The record's time; `observed_time_unix_nano` when the record has none.
    pub time_unix_nano: i64,
    pub observed_time_unix_nano: i64,
    pub severity_number: i32,
    pub severity_text: String,
    pub body: AttrValue,
    pub service_name: String,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub flags: u32,
    pub event_name: String,
    pub attributes: Vec<KeyValue>,
    pub resource_attributes: Vec<KeyValue>,
    pub scope_name: String,
    pub scope_version: String,
    pub dropped_attributes_count: u32,
}

/// The kind of OTLP metric a data point belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

impl MetricKind {
    pub fn as_i32(self) -> i32 {
        match self {
            MetricKind::Gauge => 1,
            MetricKind::Sum => 2,
            MetricKind::Histogram => 3,
            MetricKind::ExponentialHistogram => 4,
            MetricKind::Summary => 5,
        }
    }

    pub fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            1 => MetricKind::Gauge,
            2 => MetricKind::Sum,
            3 => MetricKind::Histogram,
            4 => MetricKind::ExponentialHistogram,
            5 => MetricKind::Summary,
            _ => return None,
        })
    }
}

/// Distribution payload of histogram, exponential histogram and summary points.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Distribution {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bucket_counts: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explicit_bounds: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Exponential histogram fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_offset: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positive_counts: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_offset: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negative_counts: Vec<u64>,
    /// Summary quantiles as (quantile, value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantiles: Vec<(f64, f64)>,
}

/// What identifies a metric stream's shape: the Prometheus name and series a
/// query side derives depend on all of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MetricDescriptor {
    pub name: String,
    pub unit: String,
    pub kind: MetricKind,
    /// OTLP aggregation temporality (0 unspecified, 1 delta, 2 cumulative).
    pub temporality: i32,
    pub is_monotonic: bool,
}

impl MetricDescriptor {
    pub fn of(row: &MetricPointRow) -> Self {
        MetricDescriptor {
            name: row.metric_name.clone(),
            unit: row.unit.clone(),
            kind: row.kind,
            temporality: row.temporality,
            is_monotonic: row.is_monotonic,
        }
    }

    /// True when `row` belongs to this descriptor (no allocation).
    pub fn describes(&self, row: &MetricPointRow) -> bool {
        self.describes_ref(&row.as_ref())
    }

    pub fn of_ref(p: &MetricPointRef<'_>) -> Self {
        MetricDescriptor {
            name: p.metric_name.to_string(),
            unit: p.unit.to_string(),
            kind: p.kind,
            temporality: p.temporality,
            is_monotonic: p.is_monotonic,
        }
    }

    pub fn describes_ref(&self, p: &MetricPointRef<'_>) -> bool {
        self.kind == p.kind
            && self.temporality == p.temporality
            && self.is_monotonic == p.is_monotonic
            && self.name == p.metric_name
            && self.unit == p.unit
    }
}

/// A metric point borrowed from where it is stored: what queries that read
/// many points need of each, with no allocation per point.
#[derive(Clone, Copy, Debug)]
pub struct MetricPointRef<'a> {
    pub metric_name: &'a str,
    pub unit: &'a str,
    pub kind: MetricKind,
    pub temporality: i32,
    pub is_monotonic: bool,
    pub service_name: &'a str,
    pub time_unix_nano: i64,
    pub attributes: &'a [KeyValue],
    pub resource_attributes: &'a [KeyValue],
    pub value: Option<f64>,
    pub value_int: Option<i64>,
    pub count: Option<u64>,
    pub sum: Option<f64>,
    pub distribution: Option<&'a Distribution>,
    /// Set by readers that know it: equal ids mean equal attributes, resource
    /// attributes and service (within one visit), so callers can group
    /// without comparing them.
    pub label_source: Option<u64>,
}

impl MetricPointRow {
    pub fn as_ref(&self) -> MetricPointRef<'_> {
        MetricPointRef {
            metric_name: &self.metric_name,
            unit: &self.unit,
            kind: self.kind,
            temporality: self.temporality,
            is_monotonic: self.is_monotonic,
            service_name: &self.service_name,
            time_unix_nano: self.time_unix_nano,
            attributes: &self.attributes,
            resource_attributes: &self.resource_attributes,
            value: self.value,
            value_int: self.value_int,
            count: self.count,
            sum: self.sum,
            distribution: self.distribution.as_ref(),
            label_source: None,
        }
    }
}

/// One metric data point with its metric's metadata, resource and scope.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPointRow {
    /// The OTLP metric name (dots and all; Prometheus naming is the query side's job).
    pub metric_name: String,
    pub description: String,
    pub unit: String,
    pub kind: MetricKind,
    /// OTLP aggregation temporality (0 unspecified, 1 delta, 2 cumulative).
    pub temporality: i32,
    pub is_monotonic: bool,
    pub service_name: String,
    pub time_unix_nano: i64,
    pub start_time_unix_nano: i64,
    pub attributes: Vec<KeyValue>,
    pub resource_attributes: Vec<KeyValue>,
    pub scope_name: String,
    /// Gauge / sum value (ints widened to f64 here, exact ints kept in `value_int`).
    pub value: Option<f64>,
    pub value_int: Option<i64>,
    /// Histogram / summary count and sum.
    pub count: Option<u64>,
    pub sum: Option<f64>,
    pub distribution: Option<Distribution>,
    pub flags: u32,
}
