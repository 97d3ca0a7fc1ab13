//! The client's one error type.

use std::time::Duration;

use seismo_api::prometheus::ErrorType;

/// Why a call failed.
///
/// A server that answered with an error status is [`ClientError::Api`], with
/// the status and the message from the body in whichever error shape the API
/// uses (Jaeger `{"errors":[{"code","msg"}]}`, api_v3
/// `{"error":{"httpCode","message"}}`, Prometheus `{"errorType","error"}`,
/// Toxiproxy `{"error","status"}`).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL given to [`Client::new`](crate::Client::new) or
    /// [`AgentClient::new`](crate::AgentClient::new) is not an
    /// absolute `http(s)` URL.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A CA certificate or client identity given for TLS cannot be used.
    #[error("TLS set-up: {reason}")]
    Tls {
        /// What is wrong with it.
        reason: String,
    },
    /// No complete answer within the client's timeout.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout {
        /// The request URL.
        url: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The request could not be sent or its answer not be read (connection
    /// refused, reset, ...).
    #[error("{url}: {source}")]
    Http {
        /// The request URL.
        url: String,
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{url} answered {status}: {message}")]
    Api {
        /// The request URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's message (the raw body when it is not a known error shape).
        message: String,
        /// Prometheus' error class, for the Prometheus API.
        error_type: Option<ErrorType>,
    },
    /// The answer is not the JSON shape this endpoint answers: the server and
    /// the client disagree about the wire type.
    #[error("{url}: the answer is not the expected JSON: {source}")]
    Decode {
        /// The request URL.
        url: String,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error message of an error answer.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            ClientError::Api { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Whether the server answered 404 (an unknown trace or proxy, for example).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the server refused the request as malformed (400).
    pub fn is_bad_request(&self) -> bool {
        self.status() == Some(400)
    }

    /// Whether the call ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }
}
