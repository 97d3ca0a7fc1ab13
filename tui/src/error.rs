//! The crate's one error type.

use std::path::PathBuf;

/// Why the dashboard could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// A dashboard definition is malformed: which file, line and field, and why.
    #[error("{}:{line}: {field}: {message}", file.display())]
    Dashboard {
        /// The file (or `<default>` for the built-in one).
        file: PathBuf,
        /// 1-based line of the offending field (or of its panel).
        line: usize,
        /// The field's path: `panel[2].view`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The dashboards folder has no `.toml` file.
    #[error("{}: no dashboard (*.toml) in this folder", .0.display())]
    NoDashboard(PathBuf),
    /// Reading a file or drawing on the terminal failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A URL given on the command line is not one the client accepts.
    #[error(transparent)]
    Client(#[from] seismo_client::ClientError),
    /// `--render-once` got a size that is not `WIDTHxHEIGHT`.
    #[error("bad size {0:?}: expected WIDTHxHEIGHT, e.g. 120x40")]
    BadSize(String),
}

impl TuiError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TuiError {
        let context = context.into();
        move |source| TuiError::Io { context, source }
    }
}
