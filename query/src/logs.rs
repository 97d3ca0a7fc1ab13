//! `GET /api/v1/logs`: full-text log search.
//!
//! `q` uses tantivy's query syntax (see `seismo_store::LogQuery` for how
//! fields map); `service`, `severity`, `trace_id` and the time window narrow it
//! further. Answers `{"data":[{timeUnixNano, severityText, severityNumber,
//! body, serviceName, traceId, spanId, attributes}]}`, newest first. A record
//! carrying a trace id links to its trace through `traceId`, which
//! `/api/traces/{traceId}` opens.
//!
//! Times: `start`/`end` in µs since the epoch (as Jaeger's `/api/traces`) or
//! RFC 3339; `lookback` a Go duration (`1h`) used when `start` is absent
//! (default 2 days, as trace search).

use axum::extract::State;
use axum::response::Response;
use seismo_api::logs::{LogRecord, LogsResponse};
use seismo_store::{severity_range, LogQuery, LogRow, TraceId};

use crate::error::QueryError;
use crate::request::query_params::SERVICE;
use crate::request::{blocking, json_reply, QueryParams, TimeWindow};
use crate::state::QueryState;

const Q: &str = "q";
const SEVERITY: &str = "severity";
const TRACE_ID: &str = "trace_id";

/// The window of a log search: 2 days by default, as Jaeger's trace search.
pub(crate) type LogWindow = TimeWindow<{ 2 * 24 * 3600 }>;

/// One stored log record as the API answers it.
fn log_record(r: LogRow) -> LogRecord {
    LogRecord {
        time_unix_nano: r.time_unix_nano.to_string(),
        severity_text: r.severity_text,
        severity_number: r.severity_number,
        body: r.body.to_plain_json(),
        service_name: r.service_name,
        trace_id: r.trace_id.map(|t| t.to_string()),
        span_id: r.span_id.map(|s| s.to_string()),
        attributes: r.attributes.into_iter().map(|kv| (kv.key, kv.value.to_plain_json())).collect(),
    }
}

/// `GET /api/v1/logs`.
pub(crate) async fn search(
    State(state): State<QueryState>,
    window: LogWindow,
    params: QueryParams,
) -> Result<Response, QueryError> {
    let q = parse_log_query(&params, window)?;
    let rows = blocking(&state, move |store| store.search_logs(&q)).await?;
    json_reply(&params, &LogsResponse { data: rows.into_iter().map(log_record).collect() })
}

/// Parses `/api/v1/logs` parameters.
///
/// # Errors
/// `QueryError::BadRequest` naming the first bad parameter. (A malformed `q`
/// is reported by the store, which parses it.)
pub(crate) fn parse_log_query(params: &QueryParams, window: LogWindow) -> Result<LogQuery, QueryError> {
    let limit = params.limit()?;
    let mut severities = Vec::new();
    for text in params.all(SEVERITY).flat_map(|v| v.split(',')).filter(|v| !v.trim().is_empty()) {
        severities.push(severity_range(text).ok_or_else(|| {
            QueryError::param(
                SEVERITY,
                format!("unknown severity {text:?}: use TRACE, DEBUG, INFO, WARN, ERROR, FATAL or a number 1-24"),
            )
        })?);
    }
    let trace_id = match params.get(TRACE_ID).filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => Some(text.parse::<TraceId>().map_err(|e| QueryError::param(TRACE_ID, e))?),
    };
    Ok(LogQuery {
        text: params.get(Q).filter(|q| !q.trim().is_empty()).map(str::to_string),
        service: params.get(SERVICE).filter(|s| !s.is_empty()).map(str::to_string),
        severities,
        trace_id,
        start_ns: Some(window.start_ns),
        end_ns: Some(window.end_ns),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::query_params::DEFAULT_LIMIT;

    fn params(pairs: &[(&str, &str)]) -> QueryParams {
        QueryParams::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    const NOW: i64 = 1_700_000_000_000_000_000;

    /// The window and the rest, in the order the handler's extractors run.
    fn parse(params: &QueryParams, now_ns: i64) -> Result<LogQuery, QueryError> {
        parse_log_query(params, LogWindow::parse(params, now_ns)?)
    }

    #[test]
    fn defaults_and_every_parameter() {
        let q = parse(&params(&[]), NOW).unwrap();
        assert_eq!(q.start_ns, Some(NOW - LogWindow::DEFAULT_LOOKBACK_NS));
        assert_eq!(q.end_ns, Some(NOW));
        assert_eq!(q.limit, DEFAULT_LIMIT);
        let q = parse(
            &params(&[
                ("q", "connection refused"),
                ("service", "cart"),
                ("severity", "warn,ERROR"),
                ("trace_id", "0af7651916cd43dd8448eb211c80319c"),
                ("end", "1700000000000000"),
                ("lookback", "15m"),
                ("limit", "7"),
            ]),
            0,
        )
        .unwrap();
        assert_eq!(q.text.as_deref(), Some("connection refused"));
        assert_eq!(q.service.as_deref(), Some("cart"));
        assert_eq!(q.severities, vec![(13, 16), (17, 20)]);
        assert_eq!(q.trace_id.unwrap().to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(q.end_ns, Some(NOW));
        assert_eq!(q.start_ns, Some(NOW - 15 * 60 * 1_000_000_000));
        assert_eq!(q.limit, 7);
        let q = parse(&params(&[("start", "2023-11-14T22:13:20Z"), ("end", "2023-11-14T22:13:21Z")]), 0).unwrap();
        assert_eq!(q.start_ns, Some(NOW));
        assert_eq!(q.end_ns, Some(NOW + 1_000_000_000));
    }

    #[test]
    fn bad_parameters_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("limit", "-1")], "unable to parse param 'limit'"),
            (&[("limit", "many")], "unable to parse param 'limit'"),
            (&[("severity", "LOUD")], "unable to parse param 'severity': unknown severity \"LOUD\""),
            (&[("trace_id", "xyz")], "unable to parse param 'trace_id'"),
            (&[("start", "yesterday")], "unable to parse param 'start'"),
            (&[("lookback", "forever")], "unable to parse param 'lookback'"),
            (&[("start", "20"), ("end", "10")], "'start' should not be after 'end'"),
        ];
        for (pairs, want) in cases {
            let err = parse(&params(pairs), NOW).unwrap_err().to_string();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
    }
}
