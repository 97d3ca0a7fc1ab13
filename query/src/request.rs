//! The request plumbing every API of the crate shares, as axum extractors
//! and small reply helpers, so handlers never import from each other:
//! - [`QueryParams`]: the decoded query string (Go's `url.Values` rules),
//!   itself an extractor rejecting a malformed query string with a 400;
//! - [`PathParam`]: one path segment, a 400 when it does not decode;
//! - [`TimeWindow`]: `start`/`end` (µs or RFC 3339) and `lookback`, with a
//!   per-endpoint default window;
//! - [`blocking`] and [`json_reply`]: a store call on the blocking pool, and
//!   an answer as JSON (`prettyPrint` honoured);
//! - [`go_syntax`]: Go's grammar for durations, integers, booleans and
//!   RFC 3339 times, which Jaeger's clients were written against.

pub(crate) mod go_syntax;
pub(crate) mod query_params;
mod reply;
mod time_window;

pub(crate) use query_params::{PathParam, QueryParams};
pub(crate) use reply::{blocking, json_reply, now_ns};
pub(crate) use time_window::TimeWindow;
