//! The OTLP/gRPC receiver: TraceService, LogsService and MetricsService `Export`.
//!
//! tonic does transport and framing: gzip and zstd request compression are accepted,
//! responses are never compressed (they are a few bytes), and the message limit is
//! `max_body_bytes`, enforced by tonic after decompression as well. The protobuf decoding
//! is ours (`export.rs`), so that the message's bytes go on to the WAL as they are. Two status details
//! matter to OTLP clients, which decide whether to retry from the code alone:
//! - back-pressure (`StoreError::Busy`) and a full disk (`StoreError::DiskFull`) are
//!   `RESOURCE_EXHAUSTED` *with* a `google.rpc.RetryInfo`; without it the spec (and
//!   opentelemetry-rust) treat the code as permanent and drop the data. `UNAVAILABLE`
//!   (closed store) is retried anyway and carries the delay hint too;
//! - an oversized message must be permanent, but tonic reports "message length too
//!   large" as `OUT_OF_RANGE`, which OTLP clients retry; a response mapper layered over
//!   the services rewrites it to `RESOURCE_EXHAUSTED` (no RetryInfo, so not retried);
//! - a message that does not decode is the client's fault, `INVALID_ARGUMENT`; our handler
//!   answers that, but tonic answers `INTERNAL` for a message cut short or that does not
//!   decompress (the same mapper rewrites those).
//!
//! Memory: before tonic reads a message, a middleware reads the 5-byte gRPC frame
//! header, which announces the message length, and reserves memory for it from the
//! receivers' shared budget (see `admission`): tonic itself allocates the announced
//! length up front.

use axum::http::HeaderValue;
use seismo_store::Store;
use tonic::service::Routes;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::util::MapResponseLayer;

use axum::extract::State;
use axum::middleware::{self, Next};
use axum::Router;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::admission::{self, MemoryBudget};

use crate::config::CollectorConfig;
use crate::error::{CollectorError, Transport};
use crate::ingest::{self, BatchSink};
use crate::signal::{Logs, Metrics, Traces};
use export::ExportService;

/// The three OTLP gRPC services over `store`, to be served by a `tonic` server
/// (`Server::builder().add_routes(..)`); [`Collector::run`](crate::Collector::run) does that.
pub fn grpc_routes(store: Store, config: &CollectorConfig) -> Routes {
    Routes::from(routes_with_sink(store, config.max_body_bytes, MemoryBudget::new(config.max_inflight_bytes)))
}

pub(crate) fn routes_with_sink<K: BatchSink>(sink: K, max_body_bytes: usize, budget: MemoryBudget) -> Router {
    let traces = ExportService::<Traces, K>::new(sink.clone(), max_body_bytes);
    let logs = ExportService::<Logs, K>::new(sink.clone(), max_body_bytes);
    let metrics = ExportService::<Metrics, K>::new(sink, max_body_bytes);
    Routes::new(traces)
        .add_service(logs)
        .add_service(metrics)
        .into_axum_router()
        .layer(MapResponseLayer::new(client_errors_as_the_spec_wants::<axum::body::Body>))
        .layer(middleware::from_fn_with_state(Admission { budget, max_body_bytes }, admit))
}

/// Response mapper, layered over the services (see the module doc): tonic's `OUT_OF_RANGE`
/// for an oversized message becomes `RESOURCE_EXHAUSTED`, its `INTERNAL` for a message
/// that does not decode (or is cut short, or does not decompress) `INVALID_ARGUMENT`.
/// Our handlers never answer `OUT_OF_RANGE`, and their `INTERNAL`s carry other messages,
/// so nothing else is affected. These are "trailers-only" responses: the status is in
/// the headers.
fn client_errors_as_the_spec_wants<B>(mut response: axum::http::Response<B>) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    match headers.get("grpc-status").map(HeaderValue::as_bytes) {
        Some(b"11") => {
            headers.insert("grpc-status", HeaderValue::from_static("8"));
        }
        Some(b"13") => {
            let message = headers.get("grpc-message").map(HeaderValue::as_bytes).unwrap_or_default();
            if TONIC_DECODE_ERRORS.iter().any(|prefix| message.starts_with(prefix)) {
                headers.insert("grpc-status", HeaderValue::from_static("3"));
            }
        }
        _ => {}
    }
    response
}

/// How tonic's decode failures start, as percent-encoded in `grpc-message`: prost's
/// `DecodeError`, a stream that ends inside a message, a body that does not decompress.
const TONIC_DECODE_ERRORS: [&[u8]; 3] =
    [b"failed%20to%20decode%20Protobuf%20message", b"Unexpected%20EOF%20decoding%20stream", b"Error%20decompressing"];

#[derive(Clone)]
struct Admission {
    budget: MemoryBudget,
    max_body_bytes: usize,
}

/// Reserves memory for the message the gRPC frame header announces, then lets tonic
/// read it. The reservation is held until the response is ready, i.e. until the store
/// has the data.
async fn admit(
    State(admission): State<Admission>,
    request: axum::extract::Request,
    next: Next,
) -> axum::response::Response {
    let (parts, mut body) = request.into_parts();
    let mut head = BytesMut::new();
    while head.len() < GRPC_FRAME_HEADER {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
            }
            // A body that fails or ends here is tonic's to report.
            Some(Err(_)) | None => break,
        }
    }
    let cost = match head.get(..GRPC_FRAME_HEADER) {
        Some(header) => {
            let announced = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let message = announced.min(admission.max_body_bytes);
            let decoded = if header[0] == 0 { message } else { admission.max_body_bytes };
            message.saturating_add(decoded.saturating_mul(admission::PROTOBUF_HELD_PER_BYTE))
        }
        None => head.len(),
    };
    let reservation = match admission.budget.reserve(cost).await {
        Ok(reservation) => reservation,
        Err(error) => {
            ingest::record_rejection(crate::signal::Signal::from_grpc_path(parts.uri.path()), Transport::Grpc, &error);
            return to_status(&error).into_http();
        }
    };
    let body = axum::body::Body::new(Prepended { head: Some(head.freeze()), rest: body });
    let response = next.run(axum::extract::Request::from_parts(parts, body)).await;
    drop(reservation);
    response
}

/// Compressed flag and message length.
const GRPC_FRAME_HEADER: usize = 5;

/// The bytes `admit` read ahead, then the rest of the body.
struct Prepended {
    head: Option<Bytes>,
    rest: axum::body::Body,
}

impl http_body::Body for Prepended {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let Some(head) = self.head.take().filter(|h| !h.is_empty()) {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(head))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head.as_ref().is_none_or(Bytes::is_empty) && self.rest.is_end_stream()
    }
}

/// The one conversion of a collector error into a gRPC status.
fn to_status(error: &CollectorError) -> Status {
    let code = error.grpc_code();
    if let Some(delay) = error.retry_after() {
        let retry = ErrorDetails::with_retry_info(Some(delay));
        return Status::with_error_details(code, error.to_string(), retry);
    }
    debug_assert_ne!(code, Code::Ok);
    Status::new(code, error.to_string())
}

mod export;
#[cfg(test)]
mod tests;
