//! The response envelope of Jaeger's query API (Go: `structuredResponse` and
//! `structuredError` in the query service's HTTP handler).

use serde::{Deserialize, Serialize};

/// Every `/api/...` answer: `{"data": ..., "total": N, "limit": 0, "offset": 0, "errors": null}`.
///
/// Jaeger fills `total` for the services and operations lists only; trace
/// searches answer `total: 0`. `limit` and `offset` are always 0 (Jaeger never
/// sets them). `errors` is `null` on success, and on a trace search by id it
/// lists the ids that were not found while `data` holds the ones that were.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response<T> {
    /// The answer; `null` in error bodies.
    pub data: T,
    /// Length of `data` for services and operations lists; 0 otherwise.
    #[serde(default)]
    pub total: usize,
    /// Always 0.
    #[serde(default)]
    pub limit: usize,
    /// Always 0.
    #[serde(default)]
    pub offset: usize,
    /// `null` on success; the request's error, or the trace ids not found.
    #[serde(default)]
    pub errors: Option<Vec<ResponseError>>,
}

impl<T> Response<T> {
    /// A successful answer without a count (trace searches, single traces).
    pub fn new(data: T) -> Self {
        Response { data, total: 0, limit: 0, offset: 0, errors: None }
    }

    /// A successful answer with `total` set (lists of services and operations).
    pub fn with_total(data: T, total: usize) -> Self {
        Response { total, ..Response::new(data) }
    }
}

/// An error body: the envelope with `data: null` and one error.
pub type ErrorResponse = Response<()>;

impl ErrorResponse {
    /// `{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":..,"msg":..}]}`.
    pub fn error(code: u16, msg: impl Into<String>) -> Self {
        Response {
            errors: Some(vec![ResponseError { code: Some(code), msg: msg.into(), trace_id: None }]),
            ..Response::new(())
        }
    }
}

/// One entry of `errors`. `code` is the HTTP status for request errors and is
/// absent (Go `omitempty`) on per-trace "trace not found" entries, which carry
/// `traceID` instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseError {
    /// The HTTP status of a request error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// What went wrong, naming the parameter.
    pub msg: String,
    /// The trace this entry is about (per-trace "trace not found").
    #[serde(rename = "traceID", default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_jaegers_exact_shape() {
        let body = serde_json::to_string(&ErrorResponse::error(400, "unable to parse param 'limit'")).unwrap();
        assert_eq!(
            body,
            r#"{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":400,"msg":"unable to parse param 'limit'"}]}"#
        );
        let back: ErrorResponse = serde_json::from_str(&body).unwrap();
        assert_eq!(back.errors.unwrap()[0].code, Some(400));
    }

    #[test]
    fn success_body_has_null_errors_and_total() {
        let body = serde_json::to_string(&Response::with_total(vec!["a", "b"], 2)).unwrap();
        assert_eq!(body, r#"{"data":["a","b"],"total":2,"limit":0,"offset":0,"errors":null}"#);
    }

    #[test]
    fn per_trace_error_has_trace_id_and_no_code() {
        let err = ResponseError { code: None, msg: "trace not found".into(), trace_id: Some("ab".into()) };
        assert_eq!(serde_json::to_string(&err).unwrap(), r#"{"msg":"trace not found","traceID":"ab"}"#);
    }

    #[test]
    fn deserializes_minimal_envelope() {
        let r: Response<Vec<String>> = serde_json::from_str(r#"{"data":["x"]}"#).unwrap();
        assert_eq!(r.data, vec!["x".to_string()]);
        assert!(r.errors.is_none());
    }
}
