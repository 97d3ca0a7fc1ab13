//! The Prometheus HTTP API's JSON (`/api/v1/query`, `query_range`, `series`,
//! `labels`, `label/{name}/values`, and the status endpoints Grafana probes),
//! as Prometheus' `web/api/v1` package writes it.
//!
//! Quirks kept on purpose, because Grafana and promtool read them:
//! - a sample is `[<unix seconds>, "<value>"]`: the time a JSON number with at
//!   most millisecond digits and no trailing zeros (`1435781451.781`, `540`),
//!   the value a string (`"NaN"`, `"+Inf"`, `"-Inf"`, never an exponent);
//! - the envelope leaves out what it does not carry: a success has no
//!   `errorType`, an error no `data`.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

/// Every answer: `{"status":"success","data":...}` or
/// `{"status":"error","errorType":"bad_data","error":"..."}`, with optional
/// `warnings`. Field order is Prometheus' (`status`, `data`, `errorType`,
/// `error`, `warnings`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromResponse<T> {
    /// `success` or `error`.
    pub status: PromStatus,
    /// The answer; absent on errors.
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    /// The error class; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ErrorType>,
    /// The error message; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Warnings about a successful answer; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl<T> PromResponse<T> {
    /// A successful answer.
    pub fn success(data: T) -> Self {
        PromResponse {
            status: PromStatus::Success,
            data: Some(data),
            error_type: None,
            error: None,
            warnings: Vec::new(),
        }
    }
}

/// An error answer (its `data` is never present).
pub type PromError = PromResponse<NoData>;

/// The `data` of an answer that carries none (errors): written as `null`
/// (never, since it is left out), and anything is accepted when read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoData;

impl Serialize for NoData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for NoData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        de::IgnoredAny::deserialize(deserializer).map(|_| NoData)
    }
}

impl PromResponse<NoData> {
    /// `{"status":"error","errorType":...,"error":...}`.
    pub fn error(error_type: ErrorType, message: impl Into<String>) -> Self {
        PromResponse {
            status: PromStatus::Error,
            data: None,
            error_type: Some(error_type),
            error: Some(message.into()),
            warnings: Vec::new(),
        }
    }
}

/// The envelope's `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromStatus {
    /// The request succeeded.
    Success,
    /// The request failed; see `errorType` and `error`.
    Error,
}

/// Prometheus' error classes, each with its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// 400: a malformed request.
    BadData,
    /// 422: the query cannot be evaluated (also: too many samples).
    Execution,
    /// 503: the query ran out of time.
    Timeout,
    /// 503: the query was canceled.
    Canceled,
    /// 500: the server failed.
    Internal,
    /// 503: the server cannot answer now.
    Unavailable,
    /// 404: the resource does not exist.
    NotFound,
    /// A class this version does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorType {
    /// The HTTP status Prometheus answers this class with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorType::BadData => 400,
            ErrorType::Execution => 422,
            ErrorType::Timeout | ErrorType::Canceled | ErrorType::Unavailable => 503,
            ErrorType::NotFound => 404,
            ErrorType::Internal | ErrorType::Unknown => 500,
        }
    }
}

/// A series' labels (`__name__` included), sorted by name.
pub type Labels = BTreeMap<String, String>;

/// The `data` of `/api/v1/query` and `/api/v1/query_range`:
/// `{"resultType":"vector","result":[...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum QueryResult {
    /// An instant vector: one sample per series.
    Vector(Vec<Sample>),
    /// A range vector (range queries, and instant queries of a range selector).
    Matrix(Vec<RangeSeries>),
    /// A scalar.
    Scalar(Point),
    /// A string.
    String(StringPoint),
}

/// One series of an instant vector: `{"metric":{...},"value":[t,"v"]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The series' labels.
    pub metric: Labels,
    /// Its sample.
    pub value: Point,
}

/// One series of a matrix: `{"metric":{...},"values":[[t,"v"],...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RangeSeries {
    /// The series' labels.
    pub metric: Labels,
    /// Its samples, oldest first.
    pub values: Vec<Point>,
}

/// A sample: `[<unix seconds>, "<value>"]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Unix milliseconds (Prometheus' own resolution).
    pub t_ms: i64,
    /// The value.
    pub v: f64,
}

/// A string result: `[<unix seconds>, "<text>"]`.
#[derive(Clone, Debug, PartialEq)]
pub struct StringPoint {
    /// Unix milliseconds.
    pub t_ms: i64,
    /// The string.
    pub v: String,
}

/// Unix ms written as Prometheus writes a timestamp: a JSON number of
/// seconds, `1435781451.781`, `1435781451.5`, `1435781451`.
struct Seconds(i64);

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            serializer.serialize_i64(self.0 / 1000)
        } else {
            // ms / 1000 is the double nearest the decimal with three digits
            // after the point; its shortest round-trip text is that decimal
            // without trailing zeros (for any time up to 10^12 s).
            serializer.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

/// Unix seconds (a JSON number) read back as unix ms.
fn ms_of_seconds<E: de::Error>(seconds: f64) -> Result<i64, E> {
    let ms = (seconds * 1000.0).round();
    if ms.is_finite() && ms.abs() < 9.2e18 {
        Ok(ms as i64)
    } else {
        Err(E::custom(format!("timestamp {seconds} is out of range")))
    }
}

/// A sample value as Prometheus prints it (Go's `FormatFloat(v, 'f', -1, 64)`):
/// the shortest text that reads back as `v`, never an exponent; `NaN`,
/// `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's Display for f64 is shortest round-trip and never uses an exponent.
        v.to_string()
    }
}

/// Reads a sample value as [`format_value`] writes it (and Go's `ParseFloat` reads).
pub fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&Seconds(self.t_ms))?;
        tuple.serialize_element(&format_value(self.v))?;
        tuple.end()
    }
}

impl Serialize for StringPoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&Seconds(self.t_ms))?;
        tuple.serialize_element(&self.v)?;
        tuple.end()
    }
}

/// `[seconds, "text"]` as (ms, text).
fn deserialize_pair<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(i64, String), D::Error> {
    struct PairVisitor;

    impl<'de> Visitor<'de> for PairVisitor {
        type Value = (i64, String);

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a [timestamp, \"value\"] pair")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(i64, String), A::Error> {
            let seconds: f64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
            let text: String = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
            if seq.next_element::<de::IgnoredAny>()?.is_some() {
                return Err(de::Error::invalid_length(3, &self));
            }
            Ok((ms_of_seconds(seconds)?, text))
        }
    }

    deserializer.deserialize_seq(PairVisitor)
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (t_ms, text) = deserialize_pair(deserializer)?;
        let v = parse_value(&text).ok_or_else(|| de::Error::custom(format!("{text:?} is not a sample value")))?;
        Ok(Point { t_ms, v })
    }
}

impl<'de> Deserialize<'de> for StringPoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (t_ms, v) = deserialize_pair(deserializer)?;
        Ok(StringPoint { t_ms, v })
    }
}

/// `/api/v1/status/buildinfo`. seismo claims a Prometheus version (Grafana
/// picks its features from it) and adds its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildInfo {
    /// The Prometheus version the API is compatible with.
    pub version: String,
    /// Source revision.
    pub revision: String,
    /// Source branch.
    pub branch: String,
    /// Who built it.
    pub build_user: String,
    /// When it was built.
    pub build_date: String,
    /// Go version (`none` for seismo).
    pub go_version: String,
    /// Not in Prometheus: the application (`seismo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// Not in Prometheus: seismo's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seismo_version: Option<String>,
}

/// `/api/v1/status/runtimeinfo` (seismo answers Prometheus' fields, mostly empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// Start time (RFC 3339), `""` when not reported.
    #[serde(rename = "startTime")]
    pub start_time: String,
    /// Working directory.
    #[serde(rename = "CWD")]
    pub cwd: String,
    /// Whether the last configuration reload succeeded.
    #[serde(rename = "reloadConfigSuccess")]
    pub reload_config_success: bool,
    /// When the configuration was last loaded.
    #[serde(rename = "lastConfigTime")]
    pub last_config_time: String,
    /// Corrupted WAL segments found.
    #[serde(rename = "corruptionCount")]
    pub corruption_count: i64,
    /// Go's goroutine count (0 for seismo).
    #[serde(rename = "goroutineCount")]
    pub goroutine_count: i64,
    /// Go's GOMAXPROCS (0 for seismo).
    #[serde(rename = "GOMAXPROCS")]
    pub gomaxprocs: i64,
    /// Go's GOGC.
    #[serde(rename = "GOGC")]
    pub gogc: String,
    /// Go's GODEBUG.
    #[serde(rename = "GODEBUG")]
    pub godebug: String,
    /// Retention setting, as text.
    #[serde(rename = "storageRetention")]
    pub storage_retention: String,
}

/// `/api/v1/metadata`: metric name -> what is known about it (seismo answers `{}`).
pub type Metadata = BTreeMap<String, Vec<MetricMetadata>>;

/// One metadata entry of a metric.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricMetadata {
    /// `counter`, `gauge`, `histogram`, `summary`, `unknown`, ...
    #[serde(rename = "type")]
    pub metric_type: String,
    /// The help text.
    pub help: String,
    /// The unit.
    pub unit: String,
}

/// `/api/v1/status/flags`: flag name -> value (seismo answers `{}`).
pub type Flags = BTreeMap<String, String>;

/// One series' exemplars in `/api/v1/query_exemplars` (seismo keeps none and answers `[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExemplarSeries {
    /// The series' labels.
    pub series_labels: Labels,
    /// Its exemplars.
    pub exemplars: Vec<Exemplar>,
}

/// One exemplar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exemplar {
    /// The exemplar's own labels (`trace_id`, ...).
    pub labels: Labels,
    /// The value, as text.
    pub value: String,
    /// Unix seconds.
    pub timestamp: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus' text of a unix-ms timestamp, to compare the serializer with.
    fn prometheus_seconds(ms: i64) -> String {
        let sign = if ms < 0 { "-" } else { "" };
        let (secs, frac) = (ms.unsigned_abs() / 1000, ms.unsigned_abs() % 1000);
        if frac == 0 {
            format!("{sign}{secs}")
        } else {
            format!("{sign}{secs}.{}", format!("{frac:03}").trim_end_matches('0'))
        }
    }

    #[test]
    fn timestamps_are_written_as_prometheus_writes_them() {
        let mut cases = vec![0, 1, -1, 10, 100, 999, 1000, 1001, -1500, 600_500, 540_000, 1_435_781_451_781];
        // A sweep over today's times and over Prometheus' time domain (±9.2e12 ms).
        let mut ms: i64 = 1;
        while ms < 10_000_000_000_000 {
            cases.extend([ms, ms + 1, ms + 7, ms + 10, ms + 123, -ms - 3]);
            ms = ms * 3 + 1;
        }
        cases.extend((0..5000).map(|i| 1_764_633_600_000 + i * 37));
        for ms in cases {
            let text = serde_json::to_string(&Point { t_ms: ms, v: 1.0 }).unwrap();
            assert_eq!(text, format!(r#"[{},"1"]"#, prometheus_seconds(ms)), "{ms}");
            assert_eq!(serde_json::from_str::<Point>(&text).unwrap().t_ms, ms);
        }
    }

    #[test]
    fn query_results_are_prometheus_exact_envelope() {
        let labels: Labels =
            [("__name__", "up"), ("job", "api")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let vector = PromResponse::success(QueryResult::Vector(vec![Sample {
            metric: labels.clone(),
            value: Point { t_ms: 600_500, v: 1.0 },
        }]));
        let text = serde_json::to_string(&vector).unwrap();
        assert_eq!(
            text,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"api"},"value":[600.5,"1"]}]}}"#
        );
        assert_eq!(serde_json::from_str::<PromResponse<QueryResult>>(&text).unwrap(), vector);
        let scalar =
            serde_json::to_string(&PromResponse::success(QueryResult::Scalar(Point { t_ms: 1000, v: f64::INFINITY })));
        assert_eq!(scalar.unwrap(), r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#);
        let matrix = QueryResult::Matrix(vec![RangeSeries {
            metric: Labels::new(),
            values: vec![Point { t_ms: 0, v: 1.5e-7 }, Point { t_ms: 30_000, v: 1e21 }],
        }]);
        let text = serde_json::to_string(&matrix).unwrap();
        assert_eq!(
            text,
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[0,"0.00000015"],[30,"1000000000000000000000"]]}]}"#
        );
        assert_eq!(serde_json::from_str::<QueryResult>(&text).unwrap(), matrix);
        let string = QueryResult::String(StringPoint { t_ms: 1, v: "a\"b".into() });
        let text = serde_json::to_string(&string).unwrap();
        assert_eq!(text, r#"{"resultType":"string","result":[0.001,"a\"b"]}"#);
        assert_eq!(serde_json::from_str::<QueryResult>(&text).unwrap(), string);
    }

    #[test]
    fn errors_have_no_data() {
        let err = PromError::error(ErrorType::BadData, "invalid parameter \"start\": x");
        let text = serde_json::to_string(&err).unwrap();
        assert_eq!(text, r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"start\": x"}"#);
        let back: PromError = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (back.error_type, back.error.as_deref()),
            (Some(ErrorType::BadData), Some("invalid parameter \"start\": x"))
        );
        let odd: PromError = serde_json::from_str(r#"{"status":"error","errorType":"brand_new","error":"x"}"#).unwrap();
        assert_eq!(odd.error_type, Some(ErrorType::Unknown));
        assert_eq!(ErrorType::Execution.http_status(), 422);
    }

    #[test]
    fn values_print_without_exponent() {
        for (v, text) in
            [(1.0, "1"), (0.1, "0.1"), (1e21, "1000000000000000000000"), (f64::NAN, "NaN"), (f64::NEG_INFINITY, "-Inf")]
        {
            assert_eq!(format_value(v), text);
            let back = parse_value(text).unwrap();
            assert!(back == v || (back.is_nan() && v.is_nan()));
        }
    }
}
