//! Parsing and validation of the Jaeger API's query parameters, as pure
//! functions of the decoded query string and "now".
//!
//! The rules are those of Jaeger's query service (`query_parser.go`): times in
//! µs since the epoch, durations as Go durations, `tag=k:v` and `tags={json}`,
//! `service` required unless `traceID` is given, `maxDuration` not below
//! `minDuration`. Where Jaeger is silent seismo validates too (a negative
//! `limit`, `start` after `end`, a bad `lookback`) and names the parameter.

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use seismo_store::{span_kind, TraceId, TraceQuery};

use crate::error::QueryError;
use crate::request::go_syntax::{parse_go_bool, parse_go_duration, parse_go_int, parse_lookback};
use crate::request::query_params::{END, LOOKBACK, OPERATION, SERVICE, SPAN_KIND, START};
use crate::request::{now_ns, QueryParams};

const TAG: &str = "tag";
const TAGS: &str = "tags";
const MIN_DURATION: &str = "minDuration";
const MAX_DURATION: &str = "maxDuration";
const TRACE_ID: &str = "traceID";
const RAW: &str = "raw";
const END_TS: &str = "endTs";

/// Jaeger's default search window when `start` is absent (`defaultTraceQueryLookbackDuration`).
pub(crate) const DEFAULT_TRACE_LOOKBACK_NS: i64 = 2 * 24 * 3600 * 1_000_000_000;
/// Jaeger's default window of `/api/dependencies` (`defaultDependencyLookbackDuration`).
const DEFAULT_DEPENDENCY_LOOKBACK_NS: i64 = 24 * 3600 * 1_000_000_000;

/// A parsed `/api/traces` request: either a list of trace ids to fetch, or a search.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TraceSearch {
    /// Non-empty when `traceID=` was given: fetch exactly these, ignore the search.
    pub(crate) trace_ids: Vec<TraceId>,
    pub(crate) query: TraceQuery,
    /// `raw=true`: skip the adjustments (attribute and event sorting).
    pub(crate) raw: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for TraceSearch {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, QueryError> {
        let params = QueryParams::from_request_parts(parts, state).await?;
        parse_trace_search(&params, now_ns())
    }
}

/// `service` (required) and `spanKind` (optional, lowercase OTel kind) of `/api/operations`.
pub(crate) struct OperationsParams {
    pub(crate) service: String,
    pub(crate) kind: Option<i32>,
}

impl<S: Send + Sync> FromRequestParts<S> for OperationsParams {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, QueryError> {
        let params = QueryParams::from_request_parts(parts, state).await?;
        let (service, kind) = parse_operations(&params)?;
        Ok(OperationsParams { service, kind })
    }
}

/// Parses `/api/traces` parameters, in Jaeger's order of checks.
///
/// # Errors
/// `QueryError::BadRequest` naming the first bad parameter.
pub(crate) fn parse_trace_search(params: &QueryParams, now_ns: i64) -> Result<TraceSearch, QueryError> {
    let service = params.get(SERVICE).map(str::to_string);
    let operation = params.get(OPERATION).map(str::to_string);
    let start = parse_micros(params, START)?;
    let end = parse_micros(params, END)?.unwrap_or(now_ns);
    let tags = parse_tags(params)?;
    let limit = params.limit()?;
    let min_duration = parse_duration_param(params, MIN_DURATION)?;
    let max_duration = parse_duration_param(params, MAX_DURATION)?;
    let mut trace_ids = Vec::new();
    for text in params.all(TRACE_ID) {
        let id =
            TraceId::from_str(text).map_err(|e| QueryError::BadRequest(format!("cannot parse traceID param: {e}")))?;
        if !trace_ids.contains(&id) {
            trace_ids.push(id);
        }
    }
    let raw = parse_bool_param(params, RAW)?;
    // Not read by Jaeger's backend (its UI turns lookback into start/end); seismo
    // uses it when `start` is absent and validates it always.
    let lookback = match params.get(LOOKBACK) {
        None => None,
        Some(text) => parse_lookback(text).map_err(|e| QueryError::param(LOOKBACK, e))?,
    };
    let start = start.unwrap_or_else(|| end.saturating_sub(lookback.unwrap_or(DEFAULT_TRACE_LOOKBACK_NS)));

    // Jaeger's validateQuery.
    if trace_ids.is_empty() && service.is_none() {
        return Err(QueryError::required(SERVICE));
    }
    if let (Some(min), Some(max)) = (min_duration, max_duration) {
        if min != 0 && max != 0 && max < min {
            return Err(QueryError::BadRequest(format!("'{MAX_DURATION}' should be greater than '{MIN_DURATION}'")));
        }
    }
    if start > end {
        return Err(QueryError::BadRequest(format!("'{START}' should not be after '{END}'")));
    }

    Ok(TraceSearch {
        trace_ids,
        query: TraceQuery {
            service,
            operation,
            span_kind: None,
            tags: tags.into_iter().collect(),
            start_min_ns: Some(start),
            start_max_ns: Some(end),
            min_duration_ns: min_duration.filter(|d| *d != 0),
            max_duration_ns: max_duration.filter(|d| *d != 0),
            limit,
        },
        raw,
    })
}

/// The optional `start`/`end`/`raw` of `/api/traces/{traceID}`: validated as
/// Jaeger does; only `raw` changes the answer (the id alone locates a trace).
///
/// # Errors
/// `QueryError::BadRequest` naming the bad parameter.
pub(crate) fn parse_get_trace(params: &QueryParams) -> Result<bool, QueryError> {
    parse_micros(params, START)?;
    parse_micros(params, END)?;
    parse_bool_param(params, RAW)
}

/// `service` (required) and `spanKind` (optional, lowercase OTel kind) of `/api/operations`.
///
/// # Errors
/// `QueryError::BadRequest` when `service` is absent or `spanKind` is not a kind.
pub(crate) fn parse_operations(params: &QueryParams) -> Result<(String, Option<i32>), QueryError> {
    let service = params.get(SERVICE).ok_or_else(|| QueryError::required(SERVICE))?;
    let kind = match params.get(SPAN_KIND) {
        None => None,
        Some(text) => Some(
            span_kind::from_name(&text.to_ascii_lowercase())
                .ok_or_else(|| QueryError::param(SPAN_KIND, format!("unsupported span kind: '{text}'")))?,
        ),
    };
    Ok((service.to_string(), kind))
}

/// `/api/dependencies`: `endTs` (ms since epoch, default now) and `lookback`
/// (ms, default 24h), as Jaeger; returns the window `(start_ns, end_ns)`.
///
/// # Errors
/// `QueryError::BadRequest` naming the bad parameter.
pub(crate) fn parse_dependencies(params: &QueryParams, now_ns: i64) -> Result<(i64, i64), QueryError> {
    let end = match params.get(END_TS) {
        None => now_ns,
        Some(text) => millis_to_ns(END_TS, parse_go_int(text, 64).map_err(|e| QueryError::param(END_TS, e))?)?,
    };
    let lookback = match params.get(LOOKBACK) {
        None => DEFAULT_DEPENDENCY_LOOKBACK_NS,
        Some(text) => {
            let ms = parse_go_int(text, 64).map_err(|e| QueryError::param(LOOKBACK, e))?;
            if ms < 0 {
                return Err(QueryError::param(LOOKBACK, format!("lookback {ms} must not be negative")));
            }
            millis_to_ns(LOOKBACK, ms)?
        }
    };
    Ok((end.saturating_sub(lookback), end))
}

fn millis_to_ns(name: &str, ms: i64) -> Result<i64, QueryError> {
    ms.checked_mul(1_000_000).ok_or_else(|| QueryError::param(name, format!("{ms} ms is out of range")))
}

/// A time in µs since the epoch, as ns.
fn parse_micros(params: &QueryParams, name: &str) -> Result<Option<i64>, QueryError> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    let micros = parse_go_int(text, 64).map_err(|e| QueryError::param(name, e))?;
    micros.checked_mul(1_000).map(Some).ok_or_else(|| QueryError::param(name, format!("{micros} µs is out of range")))
}

fn parse_duration_param(params: &QueryParams, name: &str) -> Result<Option<i64>, QueryError> {
    params.get(name).map(|text| parse_go_duration(text).map_err(|e| QueryError::param(name, e))).transpose()
}

fn parse_bool_param(params: &QueryParams, name: &str) -> Result<bool, QueryError> {
    match params.get(name) {
        None => Ok(false),
        Some(text) => parse_go_bool(text).map_err(|e| QueryError::param(name, e)),
    }
}

/// `tag=key:value` (repeated; the value may contain colons) and `tags={"k":"v"}`
/// (JSON object of strings, repeated); JSON wins over `tag` on the same key.
fn parse_tags(params: &QueryParams) -> Result<BTreeMap<String, String>, QueryError> {
    let mut tags = BTreeMap::new();
    for tag in params.all(TAG) {
        let Some((key, value)) = tag.split_once(':') else {
            return Err(QueryError::BadRequest(format!(
                "malformed '{TAG}' parameter, expecting key:value, received: {tag}"
            )));
        };
        tags.insert(key.to_string(), value.to_string());
    }
    for json in params.all(TAGS) {
        let parsed: Option<BTreeMap<String, String>> = serde_json::from_str(json)
            .map_err(|e| QueryError::BadRequest(format!("malformed '{TAGS}' parameter, cannot unmarshal JSON: {e}")))?;
        tags.extend(parsed.unwrap_or_default());
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::query_params::{DEFAULT_LIMIT, MAX_LIMIT};

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn params(query: &[(&str, &str)]) -> QueryParams {
        QueryParams::new(query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn search(query: &[(&str, &str)]) -> Result<TraceSearch, String> {
        parse_trace_search(&params(query), NOW).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_jaeger() {
        let s = search(&[("service", "api")]).unwrap();
        assert_eq!(s.query.service.as_deref(), Some("api"));
        assert_eq!(s.query.limit, DEFAULT_LIMIT);
        assert_eq!(s.query.start_max_ns, Some(NOW));
        assert_eq!(s.query.start_min_ns, Some(NOW - DEFAULT_TRACE_LOOKBACK_NS));
        assert!(s.trace_ids.is_empty() && !s.raw);
    }

    #[test]
    fn full_search_is_parsed() {
        let s = search(&[
            ("service", "api"),
            ("operation", "GET /"),
            ("start", "1000"),
            ("end", "2000"),
            ("limit", "20"),
            ("minDuration", "1.5ms"),
            ("maxDuration", "1s"),
            ("tag", "http.url:http://x:80/"),
            ("tags", r#"{"error":"true","http.url":"override"}"#),
            ("lookback", "custom"),
            ("raw", "true"),
        ])
        .unwrap();
        let q = s.query;
        assert_eq!(q.operation.as_deref(), Some("GET /"));
        assert_eq!((q.start_min_ns, q.start_max_ns), (Some(1_000_000), Some(2_000_000)));
        assert_eq!(q.limit, 20);
        assert_eq!((q.min_duration_ns, q.max_duration_ns), (Some(1_500_000), Some(1_000_000_000)));
        assert_eq!(q.tags, vec![("error".into(), "true".into()), ("http.url".into(), "override".into())]);
        assert!(s.raw);
    }

    #[test]
    fn tag_value_keeps_colons() {
        let s = search(&[("service", "a"), ("tag", "url:http://x:80/")]).unwrap();
        assert_eq!(s.query.tags, vec![("url".into(), "http://x:80/".into())]);
    }

    #[test]
    fn lookback_sets_start_when_absent() {
        let s = search(&[("service", "a"), ("end", "1000000000"), ("lookback", "1h")]).unwrap();
        let end = 1_000_000_000_000;
        assert_eq!(s.query.start_min_ns, Some(end - 3_600_000_000_000));
    }

    #[test]
    fn bad_start() {
        let e = search(&[("service", "a"), ("start", "yesterday")]).unwrap_err();
        assert_eq!(e, r#"unable to parse param 'start': strconv.ParseInt: parsing "yesterday": invalid syntax"#);
    }

    #[test]
    fn bad_end() {
        let e = search(&[("service", "a"), ("end", "1.5")]).unwrap_err();
        assert!(e.starts_with("unable to parse param 'end':"), "{e}");
        let e = search(&[("service", "a"), ("end", "9223372036854775807")]).unwrap_err();
        assert!(e.starts_with("unable to parse param 'end':"), "{e}");
    }

    #[test]
    fn start_after_end() {
        let e = search(&[("service", "a"), ("start", "2000"), ("end", "1000")]).unwrap_err();
        assert!(e.contains("'start'") && e.contains("'end'"), "{e}");
    }

    #[test]
    fn bad_limit() {
        for bad in ["ten", "-1", "99999999999"] {
            let e = search(&[("service", "a"), ("limit", bad)]).unwrap_err();
            assert!(e.starts_with("unable to parse param 'limit':"), "{bad}: {e}");
        }
        assert_eq!(search(&[("service", "a"), ("limit", "0")]).unwrap().query.limit, DEFAULT_LIMIT);
        assert_eq!(search(&[("service", "a"), ("limit", "2000000")]).unwrap().query.limit, MAX_LIMIT);
    }

    #[test]
    fn bad_min_and_max_duration() {
        let e = search(&[("service", "a"), ("minDuration", "10")]).unwrap_err();
        assert_eq!(e, r#"unable to parse param 'minDuration': time: missing unit in duration "10""#);
        let e = search(&[("service", "a"), ("maxDuration", "fast")]).unwrap_err();
        assert!(e.starts_with("unable to parse param 'maxDuration':"), "{e}");
        let e = search(&[("service", "a"), ("minDuration", "2s"), ("maxDuration", "1s")]).unwrap_err();
        assert_eq!(e, "'maxDuration' should be greater than 'minDuration'");
    }

    #[test]
    fn bad_tags_json_and_tag() {
        let e = search(&[("service", "a"), ("tags", "{not json")]).unwrap_err();
        assert!(e.starts_with("malformed 'tags' parameter, cannot unmarshal JSON:"), "{e}");
        let e = search(&[("service", "a"), ("tags", r#"{"status":200}"#)]).unwrap_err();
        assert!(e.starts_with("malformed 'tags' parameter"), "{e}");
        let e = search(&[("service", "a"), ("tag", "novalue")]).unwrap_err();
        assert_eq!(e, "malformed 'tag' parameter, expecting key:value, received: novalue");
        assert!(search(&[("service", "a"), ("tags", "null")]).unwrap().query.tags.is_empty());
    }

    #[test]
    fn bad_lookback_and_raw() {
        let e = search(&[("service", "a"), ("lookback", "a while")]).unwrap_err();
        assert!(e.starts_with("unable to parse param 'lookback':"), "{e}");
        let e = search(&[("service", "a"), ("raw", "maybe")]).unwrap_err();
        assert!(e.starts_with("unable to parse param 'raw':"), "{e}");
    }

    #[test]
    fn missing_service_unless_trace_ids() {
        assert_eq!(search(&[]).unwrap_err(), "parameter 'service' is required");
        assert_eq!(search(&[("service", "")]).unwrap_err(), "parameter 'service' is required");
        let s = search(&[("traceID", "abc"), ("traceID", "ABC"), ("traceID", "def")]).unwrap();
        assert_eq!(s.trace_ids.len(), 2, "duplicates removed, case-insensitive hex");
    }

    #[test]
    fn bad_trace_id_param() {
        let e = search(&[("traceID", "xyz")]).unwrap_err();
        assert!(e.starts_with("cannot parse traceID param:"), "{e}");
    }

    #[test]
    fn operations_params() {
        assert_eq!(
            parse_operations(&params(&[("service", "a"), ("spanKind", "Server")])).unwrap(),
            ("a".to_string(), Some(span_kind::SERVER))
        );
        assert_eq!(parse_operations(&params(&[("service", "a")])).unwrap().1, None);
        let e = parse_operations(&params(&[("spanKind", "server")])).unwrap_err();
        assert_eq!(e.to_string(), "parameter 'service' is required");
        let e = parse_operations(&params(&[("service", "a"), ("spanKind", "sideways")])).unwrap_err();
        assert!(e.to_string().starts_with("unable to parse param 'spanKind':"));
    }

    #[test]
    fn get_trace_params() {
        assert!(parse_get_trace(&params(&[("raw", "1")])).unwrap());
        assert!(parse_get_trace(&params(&[("start", "x")])).is_err());
    }

    #[test]
    fn dependencies_params() {
        assert_eq!(parse_dependencies(&params(&[]), NOW).unwrap(), (NOW - DEFAULT_DEPENDENCY_LOOKBACK_NS, NOW));
        assert_eq!(
            parse_dependencies(&params(&[("endTs", "2000"), ("lookback", "1000")]), NOW).unwrap(),
            (1_000_000_000, 2_000_000_000)
        );
        let e = parse_dependencies(&params(&[("endTs", "now")]), NOW).unwrap_err();
        assert!(e.to_string().starts_with("unable to parse param 'endTs':"));
        let e = parse_dependencies(&params(&[("lookback", "1h")]), NOW).unwrap_err();
        assert!(e.to_string().starts_with("unable to parse param 'lookback':"));
    }

    #[test]
    fn query_params_get_is_first_non_empty_value() {
        let p = params(&[("service", "a"), ("service", "b"), ("x", "")]);
        assert_eq!(p.get("service"), Some("a"));
        assert_eq!(p.get("x"), None);
        assert!(params(&[("prettyPrint", "1")]).pretty_print());
        assert!(!params(&[("prettyPrint", "false")]).pretty_print());
    }
}
