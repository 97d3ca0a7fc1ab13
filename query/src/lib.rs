//! seismo's HTTP query API over `seismo-store`, as an axum
//! [`Router`](axum::Router) built by [`router`]: Jaeger's legacy API
//! (`jaeger`) and api_v3 (`v3`), the Prometheus HTTP API (`prometheus`,
//! over the `seismo-promql` engine), log search (`logs`), request statistics
//! (`stats`), `/healthz` and seismo's own `/metrics` (`selfmetrics`). Serve it
//! on `--http` (default :16686); test it by calling the router directly (no
//! socket).
//!
//! Design decisions:
//! - **Jaeger's contract, not just its shapes.** Endpoints, parameter names,
//!   defaults (`limit` 100, a 2-day window), validation rules (`service`
//!   required unless `traceID` is given) and error texts follow Jaeger's query
//!   service (`http_handler.go`, `query_parser.go`) so the Jaeger UI, Grafana's
//!   Jaeger data source and scripts written against Jaeger work unchanged.
//!   Where Jaeger accepts nonsense silently (negative `limit`, `start` after
//!   `end`, garbage `lookback`) seismo answers 400 naming the parameter.
//! - **One folder per API, plumbing apart.** Each API's handlers, parameter
//!   parsing and wire conversion live in its own module; what they share
//!   (query-string decoding, time windows, the blocking pool, JSON replies)
//!   is in `request`, as axum extractors whose rejection is the API's error,
//!   so no handler imports another.
//! - **OTLP -> Jaeger as Jaeger does it.** The legacy API's conversion mirrors
//!   the collector-contrib translator Jaeger uses plus the query service's
//!   attribute sorting, so a trace looks the same in seismo as in Jaeger;
//!   api_v3 answers OTLP/JSON.
//! - **The store is blocking; the server is not.** Every store read and the
//!   row -> JSON conversion run on tokio's blocking pool; PromQL evaluates on
//!   query threads of its own.
//! - **Errors convert once.** Handlers return `QueryError` (or the v3 and
//!   Prometheus envelopes' errors); its `IntoResponse` is the only place that
//!   picks a status and writes the error envelope. The PromQL engine's
//!   `PromqlError` is mapped to Prometheus' error types in one `From`.
//! - **No request can take the server down.** Query texts are depth-checked
//!   before a recursive parser sees them (PromQL, log search `q`), every time
//!   parameter is checked arithmetic, and PromQL evaluation has a sample and
//!   time budget.

mod error;
mod jaeger;
mod logs;
mod prometheus;
mod request;
mod router;
mod selfmetrics;
mod state;
mod stats;
mod v3;

pub use prometheus::parse_duration as parse_prometheus_duration;
pub use router::router;
pub use seismo_promql::QueryLimits;
pub use state::QueryState;
