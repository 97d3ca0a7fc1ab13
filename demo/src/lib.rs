//! The sample system behind `seismo demo`: four small HTTP services that
//! call each other the way a shop does, and the traffic that drives them.
//!
//! ```text
//! traffic -> [frontend proxy] -> frontend -> [checkout proxy] -> checkout
//!   checkout -> [inventory proxy] -> inventory   (the database-like store)
//!   checkout -> [payments proxy]  -> payments
//! ```
//!
//! | module | what it owns |
//! |---|---|
//! | [`service`] | the services (axum routers), their roles and their downstream calls |
//! | [`telemetry`] | each service's own OpenTelemetry pipeline: traces, logs, metrics over OTLP, W3C propagation |
//! | [`traffic`] | steady requests against the frontend, counted |
//!
//! Design decisions:
//! - **Real programs, not fabricated spans.** Each service is its own
//!   process (`seismo demo-service NAME`), with its own listener and its own
//!   OTel SDK pipeline named by its `service.name`. Every span, log record
//!   and metric comes from real requests, so a fault the chaos agent injects
//!   on a hop shows up as the latency and errors of the services above it.
//! - **Every hop is a proxy.** A service knows its downstreams only as URLs,
//!   which `seismo demo` points at the chaos agent's proxies; the services
//!   never talk to the agent.
//! - **Instrumented the way users do it:** `tracing` spans and events,
//!   bridged by `tracing-opentelemetry` and `opentelemetry-appender-tracing`,
//!   exported by `opentelemetry-otlp`; `traceparent` on every outbound call.

pub mod error;
pub mod service;
pub mod telemetry;
pub mod traffic;

pub use error::DemoError;
pub use service::{Role, ServiceConfig};
pub use telemetry::Telemetry;
pub use traffic::{Traffic, TrafficCounts};
