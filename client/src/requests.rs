//! The parameters of the query API's searches, as typed structs, and how
//! each API wants its times and durations written.
//!
//! Every field is optional unless noted: an absent field is an absent
//! parameter, and the server's default applies (documented on the field).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `GET /api/traces`: Jaeger's trace search.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceSearch {
    /// The service (required by the server).
    pub service: String,
    /// Only traces with a span of this name.
    pub operation: Option<String>,
    /// Only traces with a span holding all these tags (`error` = `true`, ...).
    pub tags: BTreeMap<String, String>,
    /// Earliest span start (default: `end - lookback`).
    pub start: Option<SystemTime>,
    /// Latest span start (default: now).
    pub end: Option<SystemTime>,
    /// Window length when `start` is absent (default 2 days).
    pub lookback: Option<Duration>,
    /// Only spans at least this long.
    pub min_duration: Option<Duration>,
    /// Only spans at most this long.
    pub max_duration: Option<Duration>,
    /// At most this many traces (default 100).
    pub limit: Option<usize>,
}

impl TraceSearch {
    /// A search of `service`'s traces with the server's defaults.
    pub fn service(service: impl Into<String>) -> Self {
        TraceSearch { service: service.into(), ..TraceSearch::default() }
    }

    pub(crate) fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![("service", self.service.clone())];
        push(&mut p, "operation", self.operation.clone());
        if !self.tags.is_empty() {
            p.push(("tags", serde_json::to_string(&self.tags).expect("a map of strings is JSON")));
        }
        push(&mut p, "start", self.start.map(micros));
        push(&mut p, "end", self.end.map(micros));
        push(&mut p, "lookback", self.lookback.map(go_duration));
        push(&mut p, "minDuration", self.min_duration.map(go_duration));
        push(&mut p, "maxDuration", self.max_duration.map(go_duration));
        push(&mut p, "limit", self.limit.map(|l| l.to_string()));
        p
    }
}

/// `GET /api/v3/traces` and `/api/v3/trace-summaries`: api_v3's search. The
/// window is required.
#[derive(Clone, Debug, PartialEq)]
pub struct V3TraceQuery {
    /// Only this service (all services when absent).
    pub service: Option<String>,
    /// Only traces with a span of this name.
    pub operation: Option<String>,
    /// Only traces with a span holding all these attributes.
    pub attributes: BTreeMap<String, String>,
    /// Earliest span start.
    pub start_min: SystemTime,
    /// Latest span start (after `start_min`).
    pub start_max: SystemTime,
    /// Only spans at least this long.
    pub duration_min: Option<Duration>,
    /// Only spans at most this long.
    pub duration_max: Option<Duration>,
    /// At most this many traces (default 100).
    pub search_depth: Option<usize>,
}

impl V3TraceQuery {
    /// Every trace that started in `[start_min, start_max]`.
    pub fn window(start_min: SystemTime, start_max: SystemTime) -> Self {
        V3TraceQuery {
            service: None,
            operation: None,
            attributes: BTreeMap::new(),
            start_min,
            start_max,
            duration_min: None,
            duration_max: None,
            search_depth: None,
        }
    }

    pub(crate) fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        push(&mut p, "query.serviceName", self.service.clone());
        push(&mut p, "query.operationName", self.operation.clone());
        if !self.attributes.is_empty() {
            p.push(("query.attributes", serde_json::to_string(&self.attributes).expect("a map of strings is JSON")));
        }
        p.push(("query.startTimeMin", rfc3339(self.start_min)));
        p.push(("query.startTimeMax", rfc3339(self.start_max)));
        push(&mut p, "query.durationMin", self.duration_min.map(go_duration));
        push(&mut p, "query.durationMax", self.duration_max.map(go_duration));
        push(&mut p, "query.searchDepth", self.search_depth.map(|d| d.to_string()));
        p
    }
}

/// `GET /api/v1/stats`: request statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsQuery {
    /// Only this service.
    pub service: Option<String>,
    /// Only this operation.
    pub operation: Option<String>,
    /// Span kinds counted (`server`, `client`, ...; `all` for every kind);
    /// default `server` and `consumer`: the spans that are requests.
    pub span_kinds: Vec<String>,
    /// Window start (default `end - lookback`).
    pub start: Option<SystemTime>,
    /// Window end (default now).
    pub end: Option<SystemTime>,
    /// Window length when `start` is absent (default 1 hour).
    pub lookback: Option<Duration>,
    /// Only the spans of one side of a chaos experiment's split (sent as
    /// `experiment` and `cohort`).
    pub cohort: Option<Cohort>,
}

/// One side of a chaos experiment's split of the traces of a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cohort {
    /// The run id: fault spans carry it as `chaos.experiment.id`.
    pub experiment: String,
    /// `true`: traces holding a fault span of the run; `false`: all the others.
    pub faulted: bool,
}

impl StatsQuery {
    pub(crate) fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        push(&mut p, "service", self.service.clone());
        push(&mut p, "operation", self.operation.clone());
        if !self.span_kinds.is_empty() {
            p.push(("spanKind", self.span_kinds.join(",")));
        }
        push(&mut p, "start", self.start.map(micros));
        push(&mut p, "end", self.end.map(micros));
        push(&mut p, "lookback", self.lookback.map(go_duration));
        if let Some(cohort) = &self.cohort {
            p.push(("experiment", cohort.experiment.clone()));
            p.push(("cohort", if cohort.faulted { "faulted" } else { "unfaulted" }.to_string()));
        }
        p
    }
}

/// `GET /api/v1/logs`: log search.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogQuery {
    /// Full-text query in tantivy's syntax over body and attributes.
    pub text: Option<String>,
    /// Only this service.
    pub service: Option<String>,
    /// Only these severities (`ERROR`, `WARN`, ..., or numbers 1-24).
    pub severities: Vec<String>,
    /// Only records of this trace (hex).
    pub trace_id: Option<String>,
    /// Window start (default `end - lookback`).
    pub start: Option<SystemTime>,
    /// Window end (default now).
    pub end: Option<SystemTime>,
    /// Window length when `start` is absent (default 2 days).
    pub lookback: Option<Duration>,
    /// At most this many records (default 100).
    pub limit: Option<usize>,
}

impl LogQuery {
    /// Records matching the full-text query `text`.
    pub fn text(text: impl Into<String>) -> Self {
        LogQuery { text: Some(text.into()), ..LogQuery::default() }
    }

    pub(crate) fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        push(&mut p, "q", self.text.clone());
        push(&mut p, "service", self.service.clone());
        if !self.severities.is_empty() {
            p.push(("severity", self.severities.join(",")));
        }
        push(&mut p, "trace_id", self.trace_id.clone());
        push(&mut p, "start", self.start.map(micros));
        push(&mut p, "end", self.end.map(micros));
        push(&mut p, "lookback", self.lookback.map(go_duration));
        push(&mut p, "limit", self.limit.map(|l| l.to_string()));
        p
    }
}

/// The series selection of `/api/v1/series`, `/labels` and
/// `/label/{name}/values`: series matching any of `matchers` (every series
/// when empty; `series` requires one) with a sample in `[start, end]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesQuery {
    /// Series selectors (`up{job="api"}`), sent as `match[]`.
    pub matchers: Vec<String>,
    /// Window start (default: the beginning of time).
    pub start: Option<SystemTime>,
    /// Window end (default: the end of time).
    pub end: Option<SystemTime>,
    /// At most this many results (default: all).
    pub limit: Option<usize>,
}

impl SeriesQuery {
    /// Series matching `matcher`, in the whole time range.
    pub fn matching(matcher: impl Into<String>) -> Self {
        SeriesQuery { matchers: vec![matcher.into()], ..SeriesQuery::default() }
    }

    pub(crate) fn params(&self) -> Vec<(&'static str, String)> {
        let mut p: Vec<(&'static str, String)> = self.matchers.iter().map(|m| ("match[]", m.clone())).collect();
        push(&mut p, "start", self.start.map(prometheus_time));
        push(&mut p, "end", self.end.map(prometheus_time));
        push(&mut p, "limit", self.limit.map(|l| l.to_string()));
        p
    }
}

fn push(params: &mut Vec<(&'static str, String)>, name: &'static str, value: Option<String>) {
    if let Some(value) = value {
        params.push((name, value));
    }
}

/// Signed ns since the Unix epoch (a time before 1970 is negative).
fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// µs since the epoch: how Jaeger's `/api/traces`, logs and stats take times.
pub(crate) fn micros(t: SystemTime) -> String {
    unix_nanos(t).div_euclid(1_000).to_string()
}

/// ms since the epoch: how `/api/dependencies` takes `endTs`.
pub(crate) fn millis(t: SystemTime) -> String {
    unix_nanos(t).div_euclid(1_000_000).to_string()
}

/// Unix seconds with ms precision (`1435781451.781`): Prometheus' time parameter.
pub(crate) fn prometheus_time(t: SystemTime) -> String {
    let ms = unix_nanos(t).div_euclid(1_000_000);
    let (secs, frac) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    format!("{secs}.{frac:03}")
}

/// Seconds with ms precision: Prometheus' `step` (a float of seconds).
pub(crate) fn prometheus_duration(d: Duration) -> String {
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// A Go duration in µs (`1500000us`), which every Go-duration parameter takes.
pub(crate) fn go_duration(d: Duration) -> String {
    format!("{}us", d.as_micros())
}

/// RFC 3339 in UTC with ns (`2015-07-01T20:10:51.781000000Z`): api_v3's times.
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn times_in_each_apis_form() {
        // Prometheus' API docs' example time.
        let t = at_ms(1_435_781_451_781);
        assert_eq!(rfc3339(t), "2015-07-01T20:10:51.781000000Z");
        assert_eq!(prometheus_time(t), "1435781451.781");
        assert_eq!(micros(t), "1435781451781000");
        assert_eq!(millis(t), "1435781451781");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(at_ms(951_782_400_000)), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(rfc3339(at_ms(4_102_444_799_000)), "2099-12-31T23:59:59.000000000Z");
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(1)), "1969-12-31T23:59:59.000000000Z");
        assert_eq!(prometheus_time(UNIX_EPOCH - Duration::from_millis(1500)), "-2.500");
        assert_eq!(prometheus_duration(Duration::from_millis(15_250)), "15.250");
        assert_eq!(go_duration(Duration::from_millis(3)), "3000us");
    }

    #[test]
    fn absent_fields_are_absent_parameters() {
        assert_eq!(TraceSearch::service("cart").params(), vec![("service", "cart".to_string())]);
        assert!(LogQuery::default().params().is_empty());
        let mut search = TraceSearch::service("cart");
        search.tags.insert("error".into(), "true".into());
        search.min_duration = Some(Duration::from_millis(2));
        search.limit = Some(5);
        assert_eq!(
            search.params(),
            vec![
                ("service", "cart".to_string()),
                ("tags", r#"{"error":"true"}"#.to_string()),
                ("minDuration", "2000us".to_string()),
                ("limit", "5".to_string())
            ]
        );
        let q = StatsQuery {
            service: Some("checkout".into()),
            cohort: Some(Cohort { experiment: "r1".into(), faulted: false }),
            ..StatsQuery::default()
        };
        assert_eq!(
            q.params(),
            vec![
                ("service", "checkout".to_string()),
                ("experiment", "r1".to_string()),
                ("cohort", "unfaulted".to_string())
            ]
        );
        let q = SeriesQuery { matchers: vec!["up".into(), "down".into()], ..SeriesQuery::default() };
        assert_eq!(q.params(), vec![("match[]", "up".to_string()), ("match[]", "down".to_string())]);
    }
}
