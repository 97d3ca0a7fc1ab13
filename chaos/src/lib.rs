//! seismo's chaos agent: a Toxiproxy-compatible fault proxy. Toxiproxy's API,
//! toxics and semantics, plus HTTP-aware toxics, process faults, and an OTLP
//! span for every fault inside the trace of the request it hit.
//!
//! Design decisions:
//! - **The API never waits on traffic.** A proxy publishes its toxics through
//!   a watch channel; each connection's pump picks changes up at once.
//! - **State as named structs.** A connection (`conn`) is sniffed once
//!   (`connect`); its bytes go through the pump (`pump`), whose per
//!   direction state keeps the toxics' schedule (`schedule`); HTTP/1 is
//!   framed request by request (`h1`, `turns`), h2c served stream by
//!   stream (`h2c`). Arrows point one way: `proxy -> connect -> {h2c, pump}
//!   -> {turns, schedule} -> conn -> model`.
//! - **One error type**, [`ChaosError`]; it becomes Toxiproxy's
//!   `{"error", "status"}` answer in one place, the API ([`api`]). The JSON
//!   shapes are `seismo_api::toxiproxy`.
//! - **Signals through `nix`**: no `unsafe` in this crate.
//! - **`/metrics` through `prometheus-client`** (`metrics`): the proxies' byte
//!   counters stay atomics on the hot path and are read at scrape time; fault
//!   counts are a counter family the fault sink increments.

mod agent;
pub mod api;
mod conn;
mod connect;
pub mod error;
pub mod faults;
mod h1;
mod h2c;
mod metrics;
pub mod model;
pub mod process;
pub mod proxy;
mod pump;
mod run;
mod schedule;
mod turns;

pub use agent::Agent;
pub use error::ChaosError;
pub use faults::OtlpProtocol;
pub use run::{run, AgentOptions};
