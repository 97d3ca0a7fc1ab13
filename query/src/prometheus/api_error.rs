//! The Prometheus API's error, converted to an HTTP answer once, here:
//! Prometheus' envelope and error types (`bad_data` 400, `execution` 422,
//! `timeout` 503, `internal` 500).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use seismo_api::prometheus::{ErrorType, PromError};
use seismo_promql::PromqlError;

/// A failed API call, answered in Prometheus' error envelope.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The request is malformed (400 `bad_data`).
    #[error("{0}")]
    BadData(String),
    /// The query cannot be evaluated (422 `execution`), also when it would
    /// hold too many samples.
    #[error("{0}")]
    Execution(String),
    /// The query ran out of time (503 `timeout`).
    #[error("{0}")]
    Timeout(String),
    /// The store or the server failed (500 `internal`).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// Prometheus' wording for a bad parameter: `invalid parameter "name": cause`.
    pub(crate) fn param(name: &str, cause: impl std::fmt::Display) -> Self {
        ApiError::BadData(format!("invalid parameter {name:?}: {cause}"))
    }
}

/// The engine's errors as Prometheus' error types: the one place they are
/// mapped. A refused query text is `bad_data`; callers that know which
/// parameter held it name it with [`ApiError::param`] instead.
impl From<PromqlError> for ApiError {
    fn from(e: PromqlError) -> Self {
        match e {
            PromqlError::BadQuery(m) => ApiError::BadData(m),
            PromqlError::Execution(m) => ApiError::Execution(m),
            PromqlError::TooManySamples => ApiError::Execution(e.to_string()),
            PromqlError::Timeout(_) => ApiError::Timeout(e.to_string()),
            PromqlError::Source(s) => ApiError::Internal(s.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            ApiError::BadData(_) => (StatusCode::BAD_REQUEST, ErrorType::BadData),
            ApiError::Execution(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorType::Execution),
            ApiError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorType::Timeout),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorType::Internal),
        };
        let body = serde_json::to_vec(&PromError::error(kind, self.to_string())).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}
