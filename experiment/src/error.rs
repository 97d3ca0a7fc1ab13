//! The crate's one error type.

use std::path::PathBuf;

/// Why an experiment could not be read or run.
///
/// A run that starts always ends with a journal; these are the errors that
/// stop it before there is one (the file) or that a step reports into it.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS reported.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid experiment: `line:column` and the field named.
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        /// The file (or `<text>`).
        origin: String,
        /// 1-based line of the offending field or table.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A call to the agent or the query API failed.
    #[error(transparent)]
    Api(#[from] seismo_client::ClientError),
    /// An HTTP probe or rollback could not reach its URL.
    #[error("{url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A journal could not be written or read back.
    #[error("journal {path}: {message}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = ExperimentError> = std::result::Result<T, E>;
