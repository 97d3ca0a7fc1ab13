//! The OTLP/gRPC receiver: TraceService, LogsService and MetricsService `Export`.
//!
//! tonic does transport and decoding: gzip and zstd request compression are accepted,
//! responses are never compressed (they are a few bytes), and the decoding limit is
//! `max_body_bytes`, enforced by tonic after decompression as well. Two status details
//! matter to OTLP clients, which decide whether to retry from the code alone:
//! - back-pressure (`StoreError::Busy`) and a full disk (`StoreError::DiskFull`) are
//!   `RESOURCE_EXHAUSTED` *with* a `google.rpc.RetryInfo`; without it the spec (and
//!   opentelemetry-rust) treat the code as permanent and drop the data. `UNAVAILABLE`
//!   (closed store) is retried anyway and carries the delay hint too;
//! - an oversized message must be permanent, but tonic reports "message length too
//!   large" as `OUT_OF_RANGE`, which OTLP clients retry; a response mapper layered over
//!   the services rewrites it to `RESOURCE_EXHAUSTED` (no RetryInfo, so not retried).

use axum::http::HeaderValue;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use seismo_store::Store;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::util::MapResponseLayer;

use crate::config::CollectorConfig;
use crate::error::{CollectorError, Transport};
use crate::ingest::{self, BatchSink};
use crate::signal::{Logs, Metrics, OtlpSignal, Traces};

/// The three OTLP gRPC services over `store`, to be served by a `tonic` server
/// (`Server::builder().add_routes(..)`); [`Collector::run`](crate::Collector::run) does that.
pub fn grpc_routes(store: Store, config: &CollectorConfig) -> Routes {
    routes_with_sink(store, config.max_body_bytes)
}

pub(crate) fn routes_with_sink<K: BatchSink>(sink: K, max_body_bytes: usize) -> Routes {
    let receiver = GrpcReceiver { sink };
    let traces = TraceServiceServer::new(receiver.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(max_body_bytes);
    let logs = LogsServiceServer::new(receiver.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(max_body_bytes);
    let metrics = MetricsServiceServer::new(receiver)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(max_body_bytes);
    let routes = Routes::new(traces).add_service(logs).add_service(metrics).into_axum_router();
    Routes::from(routes.layer(MapResponseLayer::new(oversized_is_resource_exhausted::<axum::body::Body>)))
}

/// Response mapper, layered over the services: turns tonic's `OUT_OF_RANGE` for an oversized
/// message into `RESOURCE_EXHAUSTED` (see the module doc). Our handlers never return
/// `OUT_OF_RANGE`, so nothing else is affected. Decode errors are "trailers-only"
/// responses, so the status is in the headers.
fn oversized_is_resource_exhausted<B>(mut response: axum::http::Response<B>) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    if headers.get("grpc-status").is_some_and(|v| v.as_bytes() == b"11") {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
    }
    response
}

#[derive(Clone)]
struct GrpcReceiver<K> {
    sink: K,
}

impl<K: BatchSink> GrpcReceiver<K> {
    async fn export<S: OtlpSignal>(&self, request: Request<S::Request>) -> Result<Response<S::Response>, Status> {
        match ingest::export::<S, K>(&self.sink, Transport::Grpc, request.into_inner()).await {
            Ok(outcome) => Ok(Response::new(S::response(&outcome))),
            Err(error) => Err(to_status(&error)),
        }
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

#[tonic::async_trait]
impl<K: BatchSink> TraceService for GrpcReceiver<K> {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        GrpcReceiver::export::<Traces>(self, request).await
    }
}

#[tonic::async_trait]
impl<K: BatchSink> LogsService for GrpcReceiver<K> {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        GrpcReceiver::export::<Logs>(self, request).await
    }
}

#[tonic::async_trait]
impl<K: BatchSink> MetricsService for GrpcReceiver<K> {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        GrpcReceiver::export::<Metrics>(self, request).await
    }
}

#[cfg(test)]
mod tests;
