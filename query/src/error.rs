//! The crate's one error type, converted to an HTTP answer exactly once, here.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use seismo_api::ErrorResponse;
use seismo_store::StoreError;

/// Why a query request failed. Every variant becomes Jaeger's error envelope
/// `{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":N,"msg":"..."}]}`
/// with `N` as the HTTP status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QueryError {
    /// A request parameter is missing or malformed (400). The message names the
    /// parameter, in Jaeger's words where Jaeger has words for it.
    #[error("{0}")]
    BadRequest(String),
    /// The trace (or path) does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The method is not served on this path (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The store failed (500; an invalid id is the caller's fault: 400).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking store task panicked or was cancelled (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    /// Jaeger's wording for a parameter that does not parse:
    /// `unable to parse param 'limit': <cause>`.
    pub(crate) fn param(name: &str, cause: impl std::fmt::Display) -> Self {
        QueryError::BadRequest(format!("unable to parse param '{name}': {cause}"))
    }

    /// Jaeger's wording for a required parameter that is absent.
    pub(crate) fn required(name: &str) -> Self {
        QueryError::BadRequest(format!("parameter '{name}' is required"))
    }

    /// Jaeger's message for an unknown trace id.
    pub(crate) fn trace_not_found() -> Self {
        QueryError::NotFound(TRACE_NOT_FOUND.to_string())
    }

    /// The HTTP status this error answers with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            QueryError::BadRequest(_) => StatusCode::BAD_REQUEST,
            QueryError::NotFound(_) => StatusCode::NOT_FOUND,
            QueryError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            QueryError::Store(StoreError::InvalidId(_) | StoreError::InvalidQuery(_)) => StatusCode::BAD_REQUEST,
            QueryError::Store(_) | QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A [`QueryError`] answered in the envelope of Jaeger's api_v3 HTTP gateway
/// (`apiv3/http_gateway.go`, `tryHandleError`): `api_v3.GRPCGatewayError`
/// marshalled by Go's `encoding/json`, so `grpcCode` (never set) is left out:
/// `{"error":{"httpCode":400,"message":"malformed parameter query.startTimeMin: ..."}}`.
#[derive(Debug)]
pub(crate) struct V3Error(pub(crate) QueryError);

impl From<QueryError> for V3Error {
    fn from(e: QueryError) -> Self {
        V3Error(e)
    }
}

impl From<StoreError> for V3Error {
    fn from(e: StoreError) -> Self {
        V3Error(e.into())
    }
}

impl QueryError {
    /// api_v3's wording for a parameter that does not parse:
    /// `malformed parameter query.durationMin: <cause>`.
    pub(crate) fn malformed(name: &str, cause: impl std::fmt::Display) -> Self {
        QueryError::BadRequest(format!("malformed parameter {name}: {cause}"))
    }
}

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status.is_server_error() {
            tracing::error!(error = %self.0, "query request failed");
        }
        let body = serde_json::to_vec(&seismo_api::v3::ErrorBody::new(status.as_u16(), self.0.to_string()))
            .unwrap_or_default();
        // Jaeger writes it through http.Error (text/plain); the body is JSON, so we say so.
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// Jaeger's `spanstore.ErrTraceNotFound` text.
pub(crate) const TRACE_NOT_FOUND: &str = "trace not found";

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "query request failed");
        }
        // Jaeger answers errors through Go's http.Error (text/plain); the body is
        // JSON either way, so we label it honestly.
        let body = serde_json::to_vec(&ErrorResponse::error(status.as_u16(), self.to_string())).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(QueryError::param("limit", "x").status(), StatusCode::BAD_REQUEST);
        assert_eq!(QueryError::trace_not_found().status(), StatusCode::NOT_FOUND);
        assert_eq!(QueryError::Store(StoreError::InvalidId("bad".into())).status(), StatusCode::BAD_REQUEST);
        assert_eq!(QueryError::Store(StoreError::Closed).status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn messages_name_the_parameter() {
        assert_eq!(QueryError::param("start", "boom").to_string(), "unable to parse param 'start': boom");
        assert_eq!(QueryError::required("service").to_string(), "parameter 'service' is required");
    }
}
