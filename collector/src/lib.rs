//! seismo's OTLP receivers: OTLP/gRPC (TraceService, LogsService, MetricsService) and
//! OTLP/HTTP (`POST /v1/traces`, `/v1/logs`, `/v1/metrics`), writing through
//! [`seismo_store::Store`].
//!
//! The collector owns transport, decoding, size limits and status mapping; the store owns
//! validation of ids and durability. A request is acknowledged only after
//! `Store::append` returns, i.e. once its data is fsynced.
//!
//! Design decisions:
//! - **Two steps to start.** [`CollectorConfig::bind`] claims both ports (a taken port fails
//!   at once, naming it), [`Collector::run`] serves until a shutdown future resolves and then
//!   drains in-flight requests. [`http_router`] and [`grpc_routes`] expose the services for
//!   tests and for embedding without sockets.
//! - **Limits before work.** HTTP checks `Content-Type` and `Content-Encoding` (415) before
//!   reading the body, reads at most `max_body_bytes` (413), and decompresses through a
//!   `take(limit + 1)` reader, so a gzip bomb costs at most `limit + 1` bytes (413).
//!   gRPC gets the same limit from tonic, which also bounds decompression.
//! - **Memory is admitted, not assumed.** Both receivers reserve what a request will hold
//!   (body, decoded request, rows) from one budget, `max_inflight_bytes`, before reading
//!   its body; past it requests wait briefly, then get 429 / `RESOURCE_EXHAUSTED` with a
//!   retry hint (`admission.rs`). Connections themselves (timeouts, a connection limit)
//!   are served by `seismo-net`.
//! - **Our own OTLP/JSON decoder.** `opentelemetry-proto`'s serde derives miss parts of
//!   the OTLP/JSON mapping (see `json/mod.rs` and the tests in `json/serde_audit.rs`), so
//!   JSON is walked from a `serde_json::Value` into the prost types, with errors that name
//!   the offending field's path.
//! - **Errors convert once, at the boundary.** One [`CollectorError`]; HTTP statuses are
//!   chosen in `http.rs`, gRPC statuses in `grpc.rs`. Back-pressure is 429 + `Retry-After`
//!   or `RESOURCE_EXHAUSTED` + `RetryInfo` (without RetryInfo, OTLP clients drop the data).
//! - **Partial success is reported, never dropped silently**: the store's rejected count
//!   and message go into the response's `partial_success`.
//! - **Empty requests succeed without touching the store**, as the spec asks.
//! - **One ingest path.** Both transports decode into the same request types and call
//!   `ingest::export`, which also emits the self-telemetry (`tracing` events with bounded
//!   labels: signal, transport, reason).

mod admission;
mod compression;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod http;
mod ingest;
mod json;
mod server;
mod signal;

pub use config::CollectorConfig;
pub use error::{CollectorError, Transport};
pub use grpc::grpc_routes;
pub use http::http_router;
pub use server::Collector;
