//! The collector's one error type. Each variant is converted to a protocol status exactly
//! once, at its boundary: `http.rs` picks the HTTP status, `grpc.rs` builds the
//! `tonic::Status`, and both take the gRPC code (also the `code` of the HTTP error body,
//! a `google.rpc.Status`) from [`CollectorError::grpc_code`].

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use seismo_store::StoreError;

/// Which OTLP transport a listener or a request belongs to (a bounded telemetry label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC, default port 4317.
    Grpc,
    /// OTLP/HTTP, default port 4318.
    Http,
}

impl Transport {
    /// The label used in logs: `"grpc"` or `"http"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

impl Transport {
    /// The listener's name in log lines.
    pub fn as_listener_name(self) -> &'static str {
        match self {
            Transport::Grpc => "OTLP/gRPC",
            Transport::Http => "OTLP/HTTP",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_listener_name())
    }
}

/// Everything that can go wrong in the collector: starting a listener, or one request.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// A listener could not be bound (port taken, no permission, bad interface).
    #[error("cannot listen for {transport} on {addr}: {source}")]
    Bind {
        transport: Transport,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate, key or client CA cannot be used.
    #[error("TLS for the OTLP receivers: {0}")]
    Tls(#[from] seismo_net::TlsError),
    /// A server stopped with an error after it had started.
    #[error("{transport} server on {addr} failed: {source}")]
    Serve {
        transport: Transport,
        addr: SocketAddr,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request's `Content-Type` is neither `application/x-protobuf` nor `application/json`.
    #[error("unsupported Content-Type {0:?}: OTLP/HTTP accepts application/x-protobuf and application/json")]
    UnsupportedContentType(String),
    /// The request's `Content-Encoding` is not one we can decompress.
    #[error("unsupported Content-Encoding {0:?}: accepted are gzip, zstd, deflate and identity")]
    UnsupportedContentEncoding(String),
    /// The body, before or after decompression, is larger than `max_body_bytes`.
    #[error("request body is larger than the limit of {limit} bytes{}", if *.decompressed { " after decompression" } else { "" })]
    PayloadTooLarge { limit: usize, decompressed: bool },
    /// The body claims a compression it does not have, or is truncated.
    #[error("cannot decompress the {encoding} body: {reason}")]
    Decompress { encoding: &'static str, reason: String },
    /// The (decompressed) body is not a valid OTLP message in its content type.
    #[error("invalid OTLP/{format} body: {reason}")]
    Decode { format: &'static str, reason: String },
    /// The body could not be read from the connection (client went away, bad framing).
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
    /// The body did not arrive in time (see `seismo_net::Limits::body_timeout`).
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// The memory budget for requests in flight stayed spent: retry later.
    #[error("too many requests in flight: their memory budget of {budget_bytes} bytes is in use; retry later")]
    Overloaded { budget_bytes: usize },
    /// The store refused or failed the write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug: a decoding task panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CollectorError {
    /// The gRPC status code for this error, per the OTLP spec's failure classes:
    /// bad data is `INVALID_ARGUMENT` (not retryable), back-pressure and a full
    /// disk are `RESOURCE_EXHAUSTED` (retryable with RetryInfo), shutdown and a
    /// failed WAL are `UNAVAILABLE` (retryable).
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            CollectorError::UnsupportedContentType(_)
            | CollectorError::UnsupportedContentEncoding(_)
            | CollectorError::Decompress { .. }
            | CollectorError::Decode { .. }
            | CollectorError::BodyRead(_) => Code::InvalidArgument,
            CollectorError::BodyTimeout(_) => Code::DeadlineExceeded,
            CollectorError::PayloadTooLarge { .. } => Code::ResourceExhausted,
            CollectorError::Overloaded { .. } => Code::ResourceExhausted,
            CollectorError::Store(StoreError::InvalidId(_) | StoreError::InvalidRequest(_)) => Code::InvalidArgument,
            CollectorError::Store(StoreError::Busy(_) | StoreError::DiskFull(_)) => Code::ResourceExhausted,
            CollectorError::Store(StoreError::Closed | StoreError::WalFailed(_)) => Code::Unavailable,
            CollectorError::Store(_)
            | CollectorError::Internal(_)
            | CollectorError::Bind { .. }
            | CollectorError::Tls(_)
            | CollectorError::Serve { .. } => Code::Internal,
        }
    }

    /// A short, bounded label for telemetry (never the message: that is unbounded).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            CollectorError::UnsupportedContentType(_) => "unsupported_content_type",
            CollectorError::UnsupportedContentEncoding(_) => "unsupported_content_encoding",
            CollectorError::PayloadTooLarge { .. } => "payload_too_large",
            CollectorError::Decompress { .. } => "bad_compression",
            CollectorError::Decode { .. } => "bad_encoding",
            CollectorError::BodyRead(_) => "body_read",
            CollectorError::BodyTimeout(_) => "body_timeout",
            CollectorError::Overloaded { .. } => "overloaded",
            CollectorError::Store(StoreError::InvalidId(_)) => "invalid_id",
            CollectorError::Store(StoreError::InvalidRequest(_)) => "invalid_request",
            CollectorError::Store(StoreError::Busy(_)) => "store_busy",
            CollectorError::Store(StoreError::Closed) => "store_closed",
            CollectorError::Store(StoreError::DiskFull(_)) => "disk_full",
            CollectorError::Store(StoreError::WalFailed(_)) => "wal_failed",
            CollectorError::Store(_) => "store_error",
            CollectorError::Internal(_) => "internal",
            CollectorError::Bind { .. } | CollectorError::Tls(_) | CollectorError::Serve { .. } => "server",
        }
    }

    /// How long a client should wait before sending this request again, for the
    /// errors that are worth retrying: the HTTP `Retry-After` header and the gRPC
    /// `google.rpc.RetryInfo` detail. Without RetryInfo OTLP clients treat
    /// `RESOURCE_EXHAUSTED` as permanent and drop the data.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CollectorError::Store(StoreError::Busy(_)) | CollectorError::Overloaded { .. } => {
                Some(Duration::from_secs(1))
            }
            // The store probes for room every second; a disk is rarely freed faster than this.
            CollectorError::Store(StoreError::DiskFull(_)) => Some(Duration::from_secs(5)),
            // A restart (or another collector behind the same address) is needed.
            CollectorError::Store(StoreError::Closed | StoreError::WalFailed(_)) => Some(Duration::from_secs(5)),
            _ => None,
        }
    }

    /// Whether the fault lies with the client (logged at debug) or with us (warn).
    pub(crate) fn is_client_error(&self) -> bool {
        self.grpc_code() == tonic::Code::InvalidArgument
            || matches!(self, CollectorError::PayloadTooLarge { .. } | CollectorError::BodyTimeout(_))
    }

    /// Back-pressure: the request was fine, we could not take it now. The answer carries
    /// a retry hint (HTTP `Retry-After`, gRPC `RetryInfo`), and floods of these are logged
    /// at a bounded rate.
    pub(crate) fn is_back_pressure(&self) -> bool {
        matches!(self, CollectorError::Store(StoreError::Busy(_)) | CollectorError::Overloaded { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn store_errors_map_to_the_otlp_failure_classes() {
        let cases = [
            (StoreError::InvalidId("short".into()), Code::InvalidArgument),
            (StoreError::InvalidRequest("bad".into()), Code::InvalidArgument),
            (StoreError::Busy("queue full".into()), Code::ResourceExhausted),
            (StoreError::Closed, Code::Unavailable),
            (StoreError::DiskFull("writing the WAL: no space".into()), Code::ResourceExhausted),
            (StoreError::WalFailed("i/o error".into()), Code::Unavailable),
            (StoreError::Corrupt("crc".into()), Code::Internal),
            (StoreError::Io(std::io::Error::other("disk")), Code::Internal),
        ];
        for (store_error, code) in cases {
            let error = CollectorError::from(store_error);
            assert_eq!(error.grpc_code(), code);
            // Everything retryable says when; nothing else does.
            let retryable = matches!(code, Code::ResourceExhausted | Code::Unavailable);
            assert_eq!(error.retry_after().is_some(), retryable, "{error}");
        }
    }

    #[test]
    fn messages_name_the_problem() {
        let bind = CollectorError::Bind {
            transport: Transport::Grpc,
            addr: "127.0.0.1:4317".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert!(bind.to_string().starts_with("cannot listen for OTLP/gRPC on 127.0.0.1:4317: "), "{bind}");
        let too_large = CollectorError::PayloadTooLarge { limit: 10, decompressed: true };
        assert_eq!(too_large.to_string(), "request body is larger than the limit of 10 bytes after decompression");
        assert!(too_large.is_client_error());
        assert!(!CollectorError::from(StoreError::Closed).is_client_error());
    }
}
