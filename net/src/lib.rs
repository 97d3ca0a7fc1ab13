//! Serving seismo's listeners.
//!
//! Every port seismo opens (OTLP/gRPC, OTLP/HTTP, the query API, the chaos agent's API)
//! faces clients it does not control, so each one is served the same way, here:
//!
//! - **Timeouts on every connection.** A client gets [`Limits::idle_timeout`] to send a
//!   request head, which also closes keep-alive connections that sit unused (HTTP/1) and
//!   HTTP/2 connections with no open stream; a request body must arrive within
//!   [`Limits::body_timeout`]. Slow or idle clients cannot pile up.
//! - **A connection limit.** [`ConnectionLimit`] is one budget that several listeners
//!   share, sized from the process' open-files limit by default; past it new connections
//!   are closed at once with a (rate-limited) log line, so the store keeps the file
//!   descriptors it needs and accepted connections keep being served.
//! - **Graceful drain.** On shutdown the listener stops accepting, open connections
//!   finish their requests (HTTP/2 gets GOAWAY), and whatever is still open after
//!   [`Limits::drain_timeout`] is closed.
//!
//! The services are axum `Router`s (tonic's gRPC routes convert into one), so routing
//! stays testable without a socket and this crate owns only the connections.
//! - **Access.** [`Access`] checks a bearer token's [`Role`] on every request head
//!   before routing (401 / 403, or gRPC `UNAUTHENTICATED` / `PERMISSION_DENIED`), so
//!   each binary states once which role a listener needs.
//! - **TLS.** [`Tls`] (rustls, ring provider) on any listener, with optional client
//!   certificates (mutual TLS); the handshake runs under the idle timeout.

mod auth;
mod body;
mod limits;
mod server;
mod throttle;
mod tls;

pub use auth::{Access, AuthConfigError, Denied, Role, Tokens, MIN_TOKEN_LEN};
pub use body::{BodyTimedOut, TimeoutBody};
pub use limits::{no_transparent_huge_pages, raise_open_files_limit, ConnectionLimit, Limits};
pub use server::{serve, Endpoint, Protocol};
pub use throttle::LogThrottle;
pub use tls::{Tls, TlsError, TlsFiles};
