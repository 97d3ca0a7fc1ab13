//! seismo's PromQL engine: parses a query within limits, evaluates it over
//! any [`SeriesSource`] within a sample and time [`Budget`], and reads the
//! store's OTLP metrics as Prometheus series ([`StoreSource`]). The
//! Prometheus HTTP API around it (`/api/v1/query`, ...) lives in
//! `seismo-query`; this crate knows nothing of HTTP.
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
//!   [`MemSource`] serves tests, [`StoreSource`] reads `seismo-store`, turning
//!   OTLP points into series by the OpenTelemetry Prometheus-compatibility
//!   rules ([`metric_name`], [`label_name`]).
//! - **No query can take the process down.** Before the parser sees a query
//!   its nesting is bounded by a lexical pass ([`check_nesting`]); its times
//!   and durations are checked to fit the engine's arithmetic
//!   ([`check_times`]); evaluation runs within Prometheus' sample and time
//!   limits ([`QueryLimits`]: `--query-max-samples`, `--query-timeout`),
//!   counted before memory is taken. [`parse_query`] does the first two.
//! - **One error type** ([`PromqlError`]), mapped to HTTP once by the caller.

mod aggregate;
mod binary;
mod budget;
mod error;
mod eval;
mod float_stats;
mod functions;
mod histogram;
mod nesting;
mod otlp_names;
mod otlp_series;
mod parse;
mod range_functions;
mod source;
mod store_source;
mod timebounds;

pub use budget::{Budget, QueryLimits, DEFAULT_MAX_SAMPLES, DEFAULT_TIMEOUT};
pub use error::PromqlError;
pub use eval::{instant_query, range_query, QueryValue, Sample, LOOKBACK_DELTA_MS};
pub use nesting::{check_nesting, MAX_NESTING_DEPTH};
pub use otlp_names::{label_name, metric_name};
pub use parse::{parse, parse_query};
pub use source::{label_value, matches, selector_matchers, Labels, MemSource, Series, SeriesSource, SourceError};
pub use store_source::StoreSource;
pub use timebounds::{check_times, time_in_range, time_out_of_range, MAX_TIME_MS, MIN_TIME_MS};
