//! The engine's one error type. The query API maps it to an HTTP status and
//! Prometheus' error type once, at its boundary.

use crate::source::SourceError;

/// Why a query was refused or failed. The texts are Prometheus' own where
/// Prometheus has words for it.
///
/// The HTTP API answers `BadQuery` with 400 `bad_data`, `Execution` and
/// `TooManySamples` with 422 `execution` (the query's fault), `Timeout` with
/// 503 `timeout` (its cost) and `Source` with 500 `internal` (the store's).
#[derive(Debug, thiserror::Error)]
pub enum PromqlError {
    /// The query text is refused before evaluation: too deeply nested, not
    /// PromQL, or naming a time or duration outside the engine's domain.
    #[error("{0}")]
    BadQuery(String),
    /// The query cannot be evaluated (many-to-many matching, duplicate label
    /// sets, an unsupported function, ...).
    #[error("{0}")]
    Execution(String),
    /// The query would hold more than `--query-max-samples` samples at once.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The query ran past its deadline; the text names the phase.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The series source failed.
    #[error(transparent)]
    Source(SourceError),
}

impl From<SourceError> for PromqlError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::TooManySamples => PromqlError::TooManySamples,
            other => PromqlError::Source(other),
        }
    }
}

impl PromqlError {
    pub(crate) fn unsupported(what: &str) -> Self {
        PromqlError::Execution(format!("{what} is not supported by seismo's PromQL engine"))
    }
}
