//! The decoded query string and path segments, as extractors that answer a
//! malformed request with a 400 in the legacy API's envelope ([`QueryError`]).

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;

use super::go_syntax::parse_go_int;
use crate::error::QueryError;

pub(crate) const SERVICE: &str = "service";
pub(crate) const OPERATION: &str = "operation";
pub(crate) const SPAN_KIND: &str = "spanKind";
pub(crate) const START: &str = "start";
pub(crate) const END: &str = "end";
pub(crate) const LIMIT: &str = "limit";
pub(crate) const LOOKBACK: &str = "lookback";
const PRETTY_PRINT: &str = "prettyPrint";

/// Jaeger's default number of traces for a search (`defaultQueryLimit`), and
/// the default number of log records.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// Upper bound on `limit`: a search materializes whole traces in memory.
pub(crate) const MAX_LIMIT: usize = 10_000;

/// A decoded query string. Lookups follow Go's `url.Values.Get`: the first value
/// wins, and an empty value counts as absent.
#[derive(Clone, Debug, Default)]
pub(crate) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    #[cfg(test)]
    pub(crate) fn new(pairs: Vec<(String, String)>) -> Self {
        QueryParams(pairs)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// Every value of a repeated parameter, empty ones included (as Go does).
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `prettyPrint` set to anything but `false`, as Jaeger reads it.
    pub(crate) fn pretty_print(&self) -> bool {
        self.get(PRETTY_PRINT).is_some_and(|v| v != "false")
    }

    /// `limit` as trace and log searches read it: a 32-bit Go integer, 0 or
    /// absent for [`DEFAULT_LIMIT`], capped at [`MAX_LIMIT`].
    ///
    /// # Errors
    /// `QueryError::BadRequest` naming `limit` when it does not parse or is negative.
    pub(crate) fn limit(&self) -> Result<usize, QueryError> {
        let Some(text) = self.get(LIMIT) else { return Ok(DEFAULT_LIMIT) };
        match parse_go_int(text, 32).map_err(|e| QueryError::param(LIMIT, e))? {
            n if n < 0 => Err(QueryError::param(LIMIT, format!("limit {n} must not be negative"))),
            0 => Ok(DEFAULT_LIMIT),
            n => Ok(usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT)),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, QueryError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| QueryError::BadRequest(format!("malformed query string: {e}")))?;
        Ok(QueryParams(pairs))
    }
}

/// The one dynamic segment of a path (`/api/traces/{traceID}`), percent-decoded.
#[derive(Clone, Debug)]
pub(crate) struct PathParam(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, QueryError> {
        let Path(segment) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| QueryError::BadRequest(format!("malformed path: {e}")))?;
        Ok(PathParam(segment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> QueryParams {
        QueryParams::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn lookups_follow_go_url_values() {
        let p = params(&[("a", ""), ("a", "2"), ("b", "1"), ("b", "3")]);
        assert_eq!(p.get("a"), None, "the first value wins, and empty is absent");
        assert_eq!(p.get("b"), Some("1"));
        assert_eq!(p.all("a").collect::<Vec<_>>(), ["", "2"]);
        assert!(!params(&[("prettyPrint", "false")]).pretty_print());
        assert!(params(&[("prettyPrint", "1")]).pretty_print());
    }

    #[test]
    fn limit_defaults_caps_and_refuses_negatives() {
        assert_eq!(params(&[]).limit().unwrap(), DEFAULT_LIMIT);
        assert_eq!(params(&[("limit", "0")]).limit().unwrap(), DEFAULT_LIMIT);
        assert_eq!(params(&[("limit", "7")]).limit().unwrap(), 7);
        assert_eq!(params(&[("limit", "2000000")]).limit().unwrap(), MAX_LIMIT);
        for bad in ["ten", "-1", "99999999999"] {
            let e = params(&[("limit", bad)]).limit().unwrap_err().to_string();
            assert!(e.starts_with("unable to parse param 'limit':"), "{bad}: {e}");
        }
    }
}
