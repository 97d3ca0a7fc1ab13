//! Wire types of seismo's HTTP APIs: one copy of each JSON shape, shared by the
//! server (`seismo-query` serializes them) and its clients (`seismo-client`,
//! and through it the TUI, the experiment runner and the load generators,
//! deserialize them).
//!
//! | module | endpoints |
//! |---|---|
//! | [`envelope`], [`jaeger`] | Jaeger's legacy `/api/services`, `/api/operations`, `/api/traces`, `/api/dependencies`, and their error body |
//! | [`v3`] | Jaeger's api_v3 `/api/v3/...`: services, operations, OTLP/JSON traces, trace summaries, the gateway's error body |
//! | [`logs`] | `/api/v1/logs` |
//! | [`stats`] | `/api/v1/stats` |
//! | [`prometheus`] | the Prometheus envelope and results of `/api/v1/query`, `query_range`, `series`, `labels`, `label/{name}/values`, `status/*`, `metadata` |
//! | [`health`] | `/healthz` |
//!
//! Design decisions:
//! - **serde only.** Clients pull in this crate without axum, tokio or the store.
//! - **Owned types.** Every field owns its data (no `&'static str`), so the
//!   same type is built by the server and read by a client.
//! - **The wire decides.** Field names, field order, left-out defaults and
//!   number formatting follow the system each API imitates, byte for byte
//!   where a client could notice: Jaeger's "UI model" (Go package
//!   `internal/uimodel`), grpc-gateway's proto3 JSON for api_v3, Prometheus'
//!   `web/api/v1`. Each module says which quirks it keeps.
//! - **Jaeger tag values stay loosely typed** (`serde_json::Value` plus a
//!   `type` tag), because Jaeger itself writes an `int64` outside
//!   JavaScript's safe integer range as a string, and `binary` as base64 text.
//!   Typed constructors on [`jaeger::KeyValue`] produce exactly Jaeger's encoding.
//! - **Toxiproxy's JSON** ([`toxiproxy`]): the chaos agent's proxies,
//!   toxics, populate, errors and `/version`, as Toxiproxy clients read them.
//! - **Each API has its error body.** Jaeger's legacy API: the envelope with
//!   `data: null` ([`ErrorResponse`]); api_v3: [`v3::ErrorBody`]; Prometheus:
//!   [`prometheus::PromError`].

#![deny(missing_docs)]

pub mod envelope;
pub mod health;
pub mod jaeger;
pub mod logs;
pub mod prometheus;
pub mod stats;
pub mod toxiproxy;
pub mod v3;

pub use envelope::{ErrorResponse, Response, ResponseError};
