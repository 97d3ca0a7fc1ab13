//! Wire types of seismo's query API: one copy of each JSON shape, shared by the
//! server (`seismo-query` serializes them) and its clients (the TUI and the
//! experiment runner deserialize them).
//!
//! Design decisions:
//! - **serde only.** Clients pull in this crate without axum, tokio or the store.
//! - **Jaeger's JSON, byte for byte where it matters.** [`jaeger`] mirrors the
//!   "UI model" that Jaeger's query service writes on `/api/...` (Go package
//!   `internal/uimodel` in jaegertracing/jaeger): field names, field order,
//!   `omitempty` fields skipped, `null` where Jaeger writes a nil slice
//!   (`warnings`, `errors`). The Jaeger UI and Grafana's Jaeger data source
//!   read it unchanged.
//! - **Tag values stay loosely typed** (`serde_json::Value` plus a `type` tag),
//!   because Jaeger itself writes an `int64` outside JavaScript's safe integer
//!   range as a string, and `binary` as base64 text. Typed constructors on
//!   [`jaeger::KeyValue`] produce exactly Jaeger's encoding.
//! - **Toxiproxy's JSON** ([`toxiproxy`]): the chaos agent's proxies,
//!   toxics, populate, errors and `/version`, as Toxiproxy clients read them.
//! - **One envelope.** [`envelope::Response`] is Jaeger's `structuredResponse`
//!   (`{"data","total","limit","offset","errors"}`); error bodies are the same
//!   envelope with `data: null`.

pub mod envelope;
pub mod jaeger;
pub mod toxiproxy;

pub use envelope::{ErrorResponse, Response, ResponseError};
