//! seismo's HTTP query API over `seismo-store`: Jaeger-compatible trace
//! endpoints, log search ([`logs`]), request statistics ([`stats`]),
//! OTLP metrics as Prometheus series ([`promseries`]) and health, as an axum [`Router`](axum::Router) built by
//! [`router`]. Serve it on `--http` (default :16686); test it by calling the
//! router directly (no socket).
//!
//! Design decisions:
//! - **Jaeger's contract, not just its shapes.** Endpoints, parameter names,
//!   defaults (`limit` 100, a 2-day window), validation rules (`service`
//!   required unless `traceID` is given) and error texts follow Jaeger's query
//!   service (`http_handler.go`, `query_parser.go`) so the Jaeger UI, Grafana's
//!   Jaeger data source and scripts written against Jaeger work unchanged.
//!   Where Jaeger accepts nonsense silently (negative `limit`, `start` after
//!   `end`, garbage `lookback`) seismo answers 400 naming the parameter.
//! - **Both Jaeger APIs.** The legacy `/api/...` JSON API and api_v3
//!   (`/api/v3/...`, OTLP/JSON traces, [`jaeger_v3`]) which the current Jaeger
//!   UI uses for services, span names and search; each answers errors in its
//!   own envelope.
//! - **OTLP -> Jaeger as Jaeger does it.** [`convert`] mirrors the
//!   collector-contrib translator Jaeger uses plus the query service's
//!   attribute sorting, so a trace looks the same in seismo as in Jaeger.
//! - **The store is blocking; the server is not.** Every store read and the
//!   row -> JSON conversion run on tokio's blocking pool.
//! - **Errors convert once.** Handlers return [`QueryError`]; its
//!   `IntoResponse` is the only place that picks a status and writes Jaeger's
//!   error envelope.
//! - **PromQL** ([`promql`]): Prometheus' engine and `/api/v1` query API over any series source,
//!   within Prometheus' per-query limits ([`QueryLimits`]).
//! - **No request can take the server down.** Query texts are depth-checked
//!   before a recursive parser sees them (PromQL, log search `q`), every time
//!   parameter is checked arithmetic, and PromQL evaluation has a sample and
//!   time budget.
//! - **Parsers are pure.** Go-compatible duration/int/bool parsing
//!   ([`duration`]) and parameter validation ([`params`]) take strings and
//!   "now", and are unit-tested without HTTP.

#![forbid(unsafe_code)]

pub mod convert;
mod dependencies;
pub mod duration;
mod error;
mod jaeger_handlers;
pub mod jaeger_v3;
pub mod logs;
pub mod otlp_json;
pub mod params;
pub mod promql;
pub mod promseries;
mod router;
mod selfmetrics;
pub mod stats;

pub use error::QueryError;
pub use promql::QueryLimits;
pub use router::{router, QueryState};
