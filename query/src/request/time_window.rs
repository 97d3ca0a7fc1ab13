//! The time window of seismo's own endpoints (`/api/v1/logs`,
//! `/api/v1/stats`): `start` and `end` as µs since the epoch (as Jaeger's
//! `/api/traces`) or RFC 3339, and `lookback` (a Go duration, `1h`, `2d`)
//! counted back from `end` when `start` is absent.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::go_syntax::{parse_go_int, parse_lookback, parse_rfc3339_nano};
use super::query_params::{QueryParams, END, LOOKBACK, START};
use super::reply::now_ns;
use crate::error::QueryError;

/// `[start_ns, end_ns]` of a request, `end` defaulting to now and `start` to
/// `end` minus `lookback`, or minus `DEFAULT_LOOKBACK_SECS` without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeWindow<const DEFAULT_LOOKBACK_SECS: i64> {
    pub(crate) start_ns: i64,
    pub(crate) end_ns: i64,
}

impl<const DEFAULT_LOOKBACK_SECS: i64> TimeWindow<DEFAULT_LOOKBACK_SECS> {
    /// The default window's length.
    pub(crate) const DEFAULT_LOOKBACK_NS: i64 = DEFAULT_LOOKBACK_SECS * 1_000_000_000;

    /// The window of `params` as of `now_ns`.
    ///
    /// # Errors
    /// `QueryError::BadRequest` naming `start`, `end` or `lookback`, also when
    /// `start` is after `end`.
    pub(crate) fn parse(params: &QueryParams, now_ns: i64) -> Result<Self, QueryError> {
        let end_ns = parse_time(params, END)?.unwrap_or(now_ns);
        let lookback = match params.get(LOOKBACK) {
            None => None,
            Some(text) => parse_lookback(text).map_err(|e| QueryError::param(LOOKBACK, e))?,
        };
        let start_ns = match parse_time(params, START)? {
            Some(s) => s,
            None => end_ns.saturating_sub(lookback.unwrap_or(Self::DEFAULT_LOOKBACK_NS)),
        };
        if start_ns > end_ns {
            return Err(QueryError::BadRequest(format!("'{START}' should not be after '{END}'")));
        }
        Ok(TimeWindow { start_ns, end_ns })
    }
}

impl<S: Send + Sync, const DEFAULT_LOOKBACK_SECS: i64> FromRequestParts<S> for TimeWindow<DEFAULT_LOOKBACK_SECS> {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, QueryError> {
        let params = QueryParams::from_request_parts(parts, state).await?;
        Self::parse(&params, now_ns())
    }
}

/// A time parameter: µs since the epoch, or RFC 3339.
///
/// # Errors
/// `QueryError::BadRequest` naming the parameter.
pub(crate) fn parse_time(params: &QueryParams, name: &str) -> Result<Option<i64>, QueryError> {
    let Some(text) = params.get(name) else { return Ok(None) };
    if let Ok(micros) = parse_go_int(text, 64) {
        return micros
            .checked_mul(1_000)
            .map(Some)
            .ok_or_else(|| QueryError::param(name, format!("{micros} µs is out of range")));
    }
    parse_rfc3339_nano(text)
        .map(Some)
        .map_err(|_| QueryError::param(name, format!("{text:?} is neither µs since the epoch nor an RFC 3339 time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Hour = TimeWindow<3600>;
    const NOW: i64 = 1_700_000_000_000_000_000;

    fn params(pairs: &[(&str, &str)]) -> QueryParams {
        QueryParams::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn defaults_end_now_and_look_back_the_default() {
        let w = Hour::parse(&params(&[]), NOW).unwrap();
        assert_eq!((w.start_ns, w.end_ns), (NOW - 3_600_000_000_000, NOW));
        let w = Hour::parse(&params(&[("end", "1700000000000000"), ("lookback", "15m")]), 0).unwrap();
        assert_eq!((w.start_ns, w.end_ns), (NOW - 15 * 60 * 1_000_000_000, NOW));
        let w = Hour::parse(&params(&[("start", "2023-11-14T22:13:20Z"), ("end", "2023-11-14T22:13:21Z")]), 0).unwrap();
        assert_eq!((w.start_ns, w.end_ns), (NOW, NOW + 1_000_000_000));
    }

    #[test]
    fn bad_parameters_are_named() {
        for (pairs, want) in [
            (&[("start", "yesterday")][..], "unable to parse param 'start'"),
            (&[("end", "9223372036854775807")][..], "unable to parse param 'end'"),
            (&[("lookback", "forever")][..], "unable to parse param 'lookback'"),
            (&[("start", "20"), ("end", "10")][..], "'start' should not be after 'end'"),
        ] {
            let err = Hour::parse(&params(pairs), NOW).unwrap_err().to_string();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
    }
}
