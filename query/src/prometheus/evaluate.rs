//! `/api/v1/query` and `/api/v1/query_range`: parse and evaluate on a query
//! thread, within the query's budget, and write the answer there too.

use axum::extract::State;
use axum::response::Response;
use promql_parser::parser::value::ValueType;
use seismo_promql::{instant_query, parse_query, range_query};

use crate::prometheus::api_error::ApiError;
use crate::prometheus::api_state::ApiState;
use crate::prometheus::envelope::{json_response, query_result, success_body};
use crate::prometheus::preamble::{InstantQuery, RangeQuery};

/// `GET|POST /api/v1/query`: the query's value at `time`.
pub(crate) async fn query(State(st): State<ApiState>, q: InstantQuery) -> Result<Response, ApiError> {
    let InstantQuery { text, time, deadline } = q;
    let source = st.source.clone();
    let body = st
        .runner
        .run(deadline, move |budget| {
            let expr = parse_query(&text).map_err(|e| ApiError::param("query", e))?;
            success_body(query_result(&instant_query(&*source, &expr, time, budget)?))
        })
        .await?;
    Ok(json_response(body))
}

/// `GET|POST /api/v1/query_range`: a matrix of the query's values at every
/// step; range vectors and strings are refused, as Prometheus does.
pub(crate) async fn query_range(State(st): State<ApiState>, q: RangeQuery) -> Result<Response, ApiError> {
    let RangeQuery { text, start, end, step, deadline } = q;
    let source = st.source.clone();
    let body = st
        .runner
        .run(deadline, move |budget| {
            let expr = parse_query(&text).map_err(|e| ApiError::param("query", e))?;
            let kind = match expr.value_type() {
                ValueType::Matrix => Some("range vector"),
                ValueType::String => Some("string"),
                _ => None,
            };
            if let Some(kind) = kind {
                return Err(ApiError::param(
                    "query",
                    format!("invalid expression type {kind:?} for range query, must be Scalar or instant Vector"),
                ));
            }
            success_body(query_result(&range_query(&*source, &expr, start, end, step, budget)?))
        })
        .await?;
    Ok(json_response(body))
}
