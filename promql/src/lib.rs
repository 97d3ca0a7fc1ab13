//! PromQL: the evaluation engine and the Prometheus-compatible HTTP API
//! (`/api/v1/query`, `query_range`, `series`, `labels`, `label/{name}/values`
//! and the probes Grafana sends), over any [`SeriesSource`].
//!
//! Design decisions:
//! - **Prometheus' semantics, not an approximation.** Lookback (5 m),
//!   left-open range windows, `rate` extrapolation, `histogram_quantile`,
//!   vector matching and where `__name__` is dropped follow Prometheus 3's
//!   engine, and error texts are Prometheus' own, so Grafana and alert rules
//!   written for Prometheus behave the same.
//! - **The parser is promql-parser.** It checks types and arity; the engine
//!   only evaluates its AST, and answers an execution error naming anything it
//!   does not implement (native histograms, `limitk`, `fill`, ...), never a
//!   panic.
//! - **Whole-range evaluation.** Each AST node is evaluated once for every
//!   step of the query: a selector reads its samples once (`select` over the
//!   whole span) and answers each step by binary search; aggregation groups
//!   and matching signatures are computed once per series, not per step.
//! - **The store is behind a trait.** [`SeriesSource::select`] is all the
//!   engine needs (label matchers and a time range in, series out);
//!   [`MemSource`] serves tests, the store implements it for production.
//! - **No query can take the process down.** Before the parser sees a query
//!   its nesting is bounded by a lexical pass ([`nesting`]); its times and
//!   durations are checked to fit the engine's arithmetic ([`timebounds`]);
//!   evaluation runs within Prometheus' sample and time limits
//!   ([`QueryLimits`]: `--query-max-samples`, `--query-timeout`), counted
//!   before memory is taken.
//! - **Query threads of their own.** Parsing, evaluation and rendering run
//!   on a thread with a stack sized for the deepest query accepted, at most
//!   [`api::MAX_CONCURRENT_QUERIES`] at a time (Prometheus'
//!   `--query.max-concurrency` default), off the async runtime.

mod aggregate;
pub mod api;
mod binary;
mod budget;
mod eval;
mod functions;
mod histogram;
pub mod nesting;
pub mod params;
mod range_functions;
pub mod source;
mod stats;
pub mod timebounds;

pub use api::routes;
pub use budget::{Budget, QueryLimits, DEFAULT_MAX_SAMPLES, DEFAULT_TIMEOUT};
pub use eval::{instant_query, range_query, EvalError, QueryValue, Sample, LOOKBACK_DELTA_MS};
pub use source::{label_value, matches, selector_matchers, Labels, MemSource, Series, SeriesSource, SourceError};
