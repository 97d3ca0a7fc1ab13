//! seismo's load generators, behind `seismo loadgen*`: benchmarks that drive a
//! running `seismo serve` or chaos agent from outside, as real clients do.
//!
//! - [`spans`]: OTLP/gRPC spans shaped like Jaeger's published benchmark, then
//!   trace-by-id lookup latency through the Jaeger API (`seismo loadgen`).
//! - [`logs`]: templated log lines, then timed log searches (`seismo loadgen-logs`).
//! - [`metrics`]: a counter's series, then timed PromQL range queries
//!   (`seismo loadgen-metrics`).
//! - [`proxy`]: what a chaos agent proxy adds to round trips, HTTP requests and
//!   throughput, next to a reference proxy (`seismo loadgen-proxy`), with its
//!   loopback upstreams in [`upstreams`].
//! - [`query`]: the query API client the timed queries share.
//!
//! Design decisions:
//! - **Settings in, reports out.** Each generator takes a plain settings struct
//!   and returns typed reports (`Serialize`, and `Display` where the report is
//!   prose); the binary owns the flags and prints the reports, so the crate
//!   never parses arguments or writes to stdout.
//! - **Every answer through `seismo-client`**: the query API and the agent
//!   API are read with the same wire types the servers write, so a benchmark
//!   breaks loudly when a shape drifts.
//! - **Data is built before the clock starts** and seeded, so runs with the
//!   same settings send the same data and generation never counts against
//!   the server.
//! - **Only acknowledged data counts**: a busy answer (`RESOURCE_EXHAUSTED`,
//!   `UNAVAILABLE`) is retried after a pause, any other error ends the run.

pub mod error;
pub mod logs;
pub mod metrics;
mod otlp;
pub mod proxy;
pub mod query;
pub mod spans;
mod stats;
pub mod upstreams;

pub use error::LoadgenError;
