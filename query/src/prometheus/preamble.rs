//! The parameters every query and metadata endpoint reads before its own
//! work, as extractors: [`InstantQuery`] (`query`, `time`, `timeout`),
//! [`RangeQuery`] (`query`, `start`, `end`, `step`, `timeout`) and
//! [`SeriesSelection`] (`match[]`, `start`, `end`, `limit`). Each checks in
//! Prometheus' order and answers the first bad parameter with a 400
//! `bad_data` naming it.

use std::time::Instant;

use axum::extract::{FromRequest, Request};
use promql_parser::label::{Matcher, Matchers};
use promql_parser::parser::token::T_EQL_REGEX;
use promql_parser::parser::Expr;
use seismo_promql::{check_nesting, parse, selector_matchers, MAX_TIME_MS, MIN_TIME_MS};

use crate::prometheus::api_error::ApiError;
use crate::prometheus::api_params::parse_duration;
use crate::prometheus::api_state::ApiState;
use crate::prometheus::form::Params;

/// Prometheus' cap on points per series in a range query.
const MAX_POINTS_PER_SERIES: i128 = 11_000;

/// `/api/v1/query`: the query text (nesting already checked), the
/// evaluation time (default now) and the query's deadline.
pub(crate) struct InstantQuery {
    pub(crate) text: String,
    pub(crate) time: i64,
    pub(crate) deadline: Instant,
}

impl FromRequest<ApiState> for InstantQuery {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &ApiState) -> Result<Self, ApiError> {
        let p = Params::from_request(req, st).await?;
        let time = p.eval_time("time", Some(now_ms()))?;
        let deadline = st.runner.deadline(&p)?;
        Ok(InstantQuery { text: query_text(&p)?, time, deadline })
    }
}

/// `/api/v1/query_range`: the query text (nesting already checked), the
/// steps `start, start + step, ... <= end` (unix ms) and the deadline.
pub(crate) struct RangeQuery {
    pub(crate) text: String,
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) step: i64,
    pub(crate) deadline: Instant,
}

impl FromRequest<ApiState> for RangeQuery {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &ApiState) -> Result<Self, ApiError> {
        let p = Params::from_request(req, st).await?;
        let start = p.eval_time("start", None)?;
        let end = p.eval_time("end", None)?;
        if end < start {
            return Err(ApiError::param("end", "end timestamp must not be before start time"));
        }
        let step = parse_duration(p.get("step")).map_err(|e| ApiError::param("step", e))?;
        if step <= 0 {
            return Err(ApiError::param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if (i128::from(end) - i128::from(start)) / i128::from(step) > MAX_POINTS_PER_SERIES {
            return Err(ApiError::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
        }
        let deadline = st.runner.deadline(&p)?;
        Ok(RangeQuery { text: query_text(&p)?, start, end, step, deadline })
    }
}

/// The `query` parameter, its nesting checked: cheap and iterative, so a
/// too-deep query is refused before it takes a query slot.
fn query_text(p: &Params) -> Result<String, ApiError> {
    let text = p.get("query").to_string();
    check_nesting(&text).map_err(|e| ApiError::param("query", e))?;
    Ok(text)
}

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// What the metadata endpoints (`/series`, `/labels`, `/label/{name}/values`)
/// select: the series matching any of `match[]` (every series without it;
/// `/series` requires it: `MATCH_REQUIRED`) with a sample in `[start, end]`,
/// at most `limit` answers (0 = all).
pub(crate) struct SeriesSelection<const MATCH_REQUIRED: bool> {
    pub(crate) sets: Vec<Matchers>,
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) limit: usize,
}

impl<S: Send + Sync, const MATCH_REQUIRED: bool> FromRequest<S> for SeriesSelection<MATCH_REQUIRED> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let p = Params::from_request(req, state).await?;
        let limit = limit(&p)?;
        let raw = p.all("match[]");
        if MATCH_REQUIRED && raw.is_empty() {
            return Err(ApiError::BadData("no match[] parameter provided".into()));
        }
        let start = p.time_or("start", MIN_TIME_MS)?;
        let end = p.time_or("end", MAX_TIME_MS)?;
        let mut sets = parse_matchers(&raw)?;
        if sets.is_empty() {
            let any_name =
                Matcher::new_matcher(T_EQL_REGEX, "__name__".into(), ".+".into()).map_err(ApiError::Internal)?;
            sets.push(Matchers::new(vec![any_name]));
        }
        Ok(SeriesSelection { sets, start, end, limit })
    }
}

/// The `match[]` selectors, each a series selector (`up{job="a"}`).
fn parse_matchers(values: &[&str]) -> Result<Vec<Matchers>, ApiError> {
    values
        .iter()
        .map(|s| match parse(s)? {
            Expr::VectorSelector(vs) => Ok(selector_matchers(&vs)),
            _ => Err(ApiError::BadData(format!("invalid parameter \"match[]\": {s:?} is not a series selector"))),
        })
        .collect()
}

/// Prometheus' optional `limit` (0 = none).
fn limit(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        "" => Ok(0),
        v => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n as usize),
            Ok(_) => Err(ApiError::param("limit", "limit must be non-negative")),
            Err(_) => Err(ApiError::param("limit", format!("cannot parse {v:?} to a valid limit"))),
        },
    }
}
