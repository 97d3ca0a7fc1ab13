//! Prometheus' success envelope, `{"status":"success","data":<data>}`, and
//! the query results inside it.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use seismo_api::prometheus::{self as wire, Point, PromResponse, QueryResult, RangeSeries, Sample, StringPoint};
use seismo_promql::{Labels, QueryValue};
use serde::Serialize;

use crate::prometheus::api_error::ApiError;

/// `{"status":"success","data":<data>}`.
pub(crate) fn success<T: Serialize>(data: T) -> Response {
    match success_body(data) {
        Ok(body) => json_response(body),
        Err(e) => e.into_response(),
    }
}

/// The bytes of `{"status":"success","data":<data>}`. Query results are
/// written on their query thread, so a large matrix costs the query's own
/// thread, not the server's.
pub(crate) fn success_body<T: Serialize>(data: T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(&PromResponse::success(data))
        .map_err(|e| ApiError::Internal(format!("failed writing the answer: {e}")))
}

pub(crate) fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(crate) fn labels_map(labels: &Labels) -> wire::Labels {
    labels.iter().cloned().collect()
}

/// A query's value as Prometheus answers it: `{"resultType":...,"result":...}`.
pub(crate) fn query_result(v: &QueryValue) -> QueryResult {
    match v {
        QueryValue::Scalar { t, v } => QueryResult::Scalar(Point { t_ms: *t, v: *v }),
        QueryValue::String { t, v } => QueryResult::String(StringPoint { t_ms: *t, v: v.clone() }),
        QueryValue::Vector(samples) => QueryResult::Vector(
            samples
                .iter()
                .map(|s| Sample { metric: labels_map(&s.labels), value: Point { t_ms: s.t, v: s.v } })
                .collect(),
        ),
        QueryValue::Matrix(series) => QueryResult::Matrix(
            series
                .iter()
                .map(|s| RangeSeries {
                    metric: labels_map(&s.labels),
                    values: s.samples.iter().map(|&(t_ms, v)| Point { t_ms, v }).collect(),
                })
                .collect(),
        ),
    }
}
