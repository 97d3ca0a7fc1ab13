//! The load generators' one error type.

/// Why a load run stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// A setting is out of range (a zero batch size, ...).
    #[error("{0}")]
    Settings(&'static str),
    /// The OTLP/gRPC endpoint could not be reached.
    #[error("connecting to {endpoint}: {source}")]
    Connect { endpoint: String, source: tonic::transport::Error },
    /// The server refused an export with an error other than "busy".
    #[error("export failed: {0}")]
    Export(#[from] tonic::Status),
    /// A call to the query API or the agent API failed; `what` names it.
    #[error("{what}: {source}")]
    Client { what: String, source: seismo_client::ClientError },
    /// An answer arrived but is not what the load run needs (an empty trace,
    /// a sink that counted the wrong number of bytes, ...).
    #[error("{0}")]
    Unexpected(String),
    /// A socket or process operation failed; `what` names it.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A worker task panicked.
    #[error("a load worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

impl LoadgenError {
    pub(crate) fn client(what: impl Into<String>) -> impl FnOnce(seismo_client::ClientError) -> Self {
        let what = what.into();
        move |source| LoadgenError::Client { what, source }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| LoadgenError::Io { what, source }
    }
}
