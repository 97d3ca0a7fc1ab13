//! The parameters of a Prometheus API request: the query string and, for a
//! form POST, the body, merged like Go's `r.Form` (body first), repeated keys
//! kept. An extractor: a malformed form is a 400 `bad_data`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, Method};
use seismo_promql::{time_in_range, time_out_of_range};

use crate::prometheus::api_error::ApiError;
use crate::prometheus::api_params::{parse_form, parse_time};

/// Request parameters from the query string and a form body, body first
/// (Go's `r.Form`), with repeated keys kept.
pub(crate) struct Params(pub(crate) Vec<(String, String)>);

impl Params {
    /// The first value of `name`, `""` when absent (Go's `FormValue`).
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    pub(crate) fn time_or(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            "" => Ok(default),
            v => parse_time(v).map_err(|e| ApiError::param(name, e)),
        }
    }

    /// A time a query is evaluated at: Prometheus' syntax, within the
    /// engine's time domain.
    pub(crate) fn eval_time(&self, name: &str, default: Option<i64>) -> Result<i64, ApiError> {
        let t = match (self.get(name), default) {
            ("", Some(d)) => d,
            (v, _) => parse_time(v).map_err(|e| ApiError::param(name, e))?,
        };
        if !time_in_range(t) {
            return Err(ApiError::param(name, time_out_of_range(t)));
        }
        Ok(t)
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let form_error = |e: String| ApiError::BadData(format!("error parsing form values: {e}"));
        let query = parse_form(req.uri().query().unwrap_or("")).map_err(form_error)?;
        let is_form = req.method() == Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let mut pairs = Vec::new();
        if is_form {
            let body = Bytes::from_request(req, state).await.map_err(|e| form_error(e.to_string()))?;
            pairs = parse_form(&String::from_utf8_lossy(&body)).map_err(form_error)?;
        }
        pairs.extend(query);
        Ok(Params(pairs))
    }
}
