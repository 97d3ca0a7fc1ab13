//! How handlers reach the store and answer: store calls on tokio's blocking
//! pool (store reads do Parquet I/O), answers as JSON.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::header;
use axum::response::{IntoResponse, Response};
use seismo_store::{Store, StoreError};
use serde::Serialize;

use super::query_params::QueryParams;
use crate::error::QueryError;
use crate::state::QueryState;

/// Runs a store call on the blocking pool.
pub(crate) async fn blocking<T, F>(state: &QueryState, f: F) -> Result<T, QueryError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| QueryError::Internal(format!("store task failed: {e}")))?
        .map_err(QueryError::from)
}

/// Serializes an answer; `prettyPrint` indents by four spaces, as Jaeger.
pub(crate) fn json_reply<T: Serialize>(params: &QueryParams, body: &T) -> Result<Response, QueryError> {
    let bytes = if params.pretty_print() {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
        body.serialize(&mut ser).map(|()| out)
    } else {
        serde_json::to_vec(body)
    }
    .map_err(|e| QueryError::Internal(format!("failed writing HTTP response: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// Now, in ns since the epoch: the end of a window the request left open.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)).unwrap_or(0)
}
