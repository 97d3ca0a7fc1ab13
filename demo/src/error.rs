//! The demo library's one error type.

/// What can go wrong starting a sample service or its telemetry.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The OTLP exporters could not be built.
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// A downstream a role needs was not given, or given twice.
    #[error("{0}")]
    Config(String),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
}
