//! A typed async client of seismo's HTTP APIs, for the programs that stand
//! on them: the TUI, the experiment runner, `seismo loadgen-*` and the demo.
//!
//! - [`Client`] ([`query`]): the query API on `--http` (default :16686) —
//!   Jaeger legacy and api_v3, logs, stats, dependencies, the Prometheus API,
//!   health.
//! - [`AgentClient`] ([`chaos`]): the chaos agent's API (default :8474) —
//!   Toxiproxy's proxies, toxics, populate, reset, version, and `/processes`.
//! - [`ClientError`] ([`error`]): one error type; an error answer carries the
//!   server's status and message.
//! - [`requests`]: the typed parameters of searches ([`TraceSearch`],
//!   [`LogQuery`], [`StatsQuery`], ...).
//!
//! Design decisions:
//! - **The wire types are `seismo-api`'s**, the same the server serializes
//!   (re-exported as [`api`]); nothing here re-declares a JSON shape, so a
//!   server/client drift is a decode error in the end-to-end tests, not a
//!   silent `null`.
//! - **One transport per base URL** (base URL, bearer token, timeout, error
//!   decoding), shared by both clients: the two APIs live on different
//!   ports, so they are two client types rather than one.
//! - **Errors carry the server's words.** Each API answers errors in its own
//!   shape (Jaeger `{"errors":[{"code","msg"}]}`, api_v3
//!   `{"error":{"httpCode","message"}}`, Prometheus `{"errorType","error"}`,
//!   Toxiproxy `{"error","status"}`); the client reads all four into
//!   [`ClientError::Api`].
//! - **Every request has a timeout** (30 s unless
//!   `with_timeout` says otherwise) covering connect, send and the whole
//!   answer, and carries `Authorization: Bearer` when `with_token` set one.

#![deny(missing_docs)]

pub mod chaos;
pub mod error;
pub mod query;
pub mod requests;
mod transport;

pub use chaos::{AgentClient, ProcessAction};
pub use error::ClientError;
pub use query::{Client, TracesById};
pub use requests::{rfc3339, Cohort, LogQuery, SeriesQuery, StatsQuery, TraceSearch, V3TraceQuery};
pub use seismo_api as api;
pub use transport::DEFAULT_TIMEOUT;
