//! gRPC tests through a real tonic client and server on a loopback port, so compression,
//! message limits and status details are exercised exactly as exporters see them.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use seismo_store::Batch;
use tokio::sync::oneshot;
use tonic::codec::CompressionEncoding;
use tonic::Request;

use super::*;
use crate::ingest::testing::{FakeSink, Script};
use crate::server::bind_with_sink;

const LIMIT: usize = 64 * 1024;

/// A running collector on loopback; dropping it shuts the servers down.
struct Running {
    grpc_url: String,
    _stop: oneshot::Sender<()>,
}

async fn start(sink: FakeSink) -> Running {
    let config = CollectorConfig {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        max_body_bytes: LIMIT,
        max_inflight_bytes: 64 << 20,
        tls: None,
    };
    let collector = bind_with_sink(sink, &config).await.unwrap();
    let grpc_url = format!("http://{}", collector.grpc_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        collector.run(seismo_net::Limits::default(), seismo_net::Access::open(), async { stopped.await.unwrap_or(()) }),
    );
    Running { grpc_url, _stop: stop }
}

async fn trace_client(running: &Running) -> TraceServiceClient<tonic::transport::Channel> {
    TraceServiceClient::connect(running.grpc_url.clone()).await.unwrap()
}

fn spans(name_len: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: "n".repeat(name_len),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn export_is_stored_and_acknowledged() {
    let sink = FakeSink::new(Script::Accept);
    let running = start(sink.clone()).await;
    let response = trace_client(&running).await.export(spans(4)).await.unwrap().into_inner();
    assert_eq!(response.partial_success, None);
    assert_eq!(sink.take_batches(), vec![Batch::Traces(spans(4))]);
}

#[tokio::test]
async fn logs_and_metrics_services_are_served() {
    let sink = FakeSink::new(Script::Accept);
    let running = start(sink.clone()).await;
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default()], ..Default::default() }],
            ..Default::default()
        }],
    };
    LogsServiceClient::connect(running.grpc_url.clone()).await.unwrap().export(logs).await.unwrap();
    let gauge = Metric {
        name: "g".into(),
        data: Some(metric::Data::Gauge(Gauge { data_points: vec![NumberDataPoint::default()] })),
        ..Default::default()
    };
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics { metrics: vec![gauge], ..Default::default() }],
            ..Default::default()
        }],
    };
    MetricsServiceClient::connect(running.grpc_url.clone()).await.unwrap().export(metrics).await.unwrap();
    let batches = sink.take_batches();
    assert!(matches!(batches.as_slice(), [Batch::Logs(_), Batch::Metrics(_)]), "{batches:?}");
}

#[tokio::test]
async fn gzip_and_zstd_requests_are_accepted() {
    let sink = FakeSink::new(Script::Accept);
    let running = start(sink.clone()).await;
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let mut client = trace_client(&running).await.send_compressed(encoding);
        client.export(spans(1000)).await.unwrap();
    }
    assert_eq!(sink.take_batches().len(), 2);
}

#[tokio::test]
async fn partial_success_is_reported() {
    let running = start(FakeSink::new(Script::Reject { rejected: 1, message: "all-zero span id" })).await;
    let response = trace_client(&running).await.export(spans(1)).await.unwrap().into_inner();
    let partial = response.partial_success.unwrap();
    assert_eq!((partial.rejected_spans, partial.error_message.as_str()), (1, "all-zero span id"));
}

#[tokio::test]
async fn empty_request_succeeds_without_the_store() {
    let running = start(FakeSink::new(Script::Closed)).await;
    let response = trace_client(&running).await.export(ExportTraceServiceRequest::default()).await.unwrap();
    assert_eq!(response.into_inner().partial_success, None);
}

#[tokio::test]
async fn busy_store_is_resource_exhausted_with_retry_info() {
    let running = start(FakeSink::new(Script::Busy)).await;
    let status = trace_client(&running).await.export(spans(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry = status.get_details_retry_info().expect("RetryInfo makes the client retry");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
}

#[tokio::test]
async fn other_store_errors_map_to_their_codes() {
    let cases = [(Script::InvalidId, Code::InvalidArgument, None), (Script::Broken, Code::Internal, None)];
    let retried = [
        (Script::Closed, Code::Unavailable, Some(Duration::from_secs(5))),
        // Regression, issue 14 item 8: a full disk was INTERNAL, which clients drop.
        (Script::DiskFull, Code::ResourceExhausted, Some(Duration::from_secs(5))),
    ];
    for (script, code, delay) in cases.into_iter().chain(retried) {
        let running = start(FakeSink::new(script)).await;
        let status = trace_client(&running).await.export(spans(1)).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert_eq!(status.get_details_retry_info().map(|r| r.retry_delay), delay.map(Some), "{status:?}");
    }
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted_without_retry_info() {
    let sink = FakeSink::new(Script::Accept);
    let running = start(sink.clone()).await;
    // Plain: tonic says OUT_OF_RANGE (retryable for OTLP clients); we rewrite it.
    let status = trace_client(&running).await.export(spans(LIMIT + 1)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.get_details_retry_info().is_none());
    // Compressed below the limit, inflating past it: tonic's bounded decompression.
    let mut client = trace_client(&running).await.send_compressed(CompressionEncoding::Gzip);
    let status = client.export(spans(4 * LIMIT)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(sink.take_batches().is_empty());
}

/// Sends whatever bytes it is given as the gRPC message: what a broken client does.
#[derive(Clone, Copy, Default)]
struct RawBytes;

impl tonic::codec::Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = bytes::Buf::chunk(src).to_vec();
        bytes::Buf::advance(src, bytes.len());
        Ok(Some(bytes))
    }
}

/// Issue 14: a message that is not protobuf was answered INTERNAL (tonic's default),
/// which the README promised as INVALID_ARGUMENT.
#[tokio::test]
async fn a_message_that_does_not_decode_is_invalid_argument() {
    let sink = FakeSink::new(Script::Accept);
    let running = start(sink.clone()).await;
    let channel = tonic::transport::Endpoint::from_shared(running.grpc_url.clone()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let path =
        axum::http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    // Field 1 (resource_spans), length-delimited, claiming 100 bytes that are not there.
    grpc.ready().await.unwrap();
    let status = grpc.unary(Request::new(vec![0x0a, 0x64, 0x01]), path.clone(), RawBytes).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("failed to decode Protobuf message"), "{status:?}");
    assert!(sink.take_batches().is_empty());
    // The connection is still good for a valid export.
    grpc.ready().await.unwrap();
    let valid = prost::Message::encode_to_vec(&spans(4));
    grpc.unary(Request::new(valid), path, RawBytes).await.unwrap();
    assert_eq!(sink.take_batches(), vec![Batch::Traces(spans(4))]);
}

/// Issue 13: the store encoded every request again for its WAL. The message bytes (after
/// decompression) now reach it as sent.
#[tokio::test]
async fn the_message_reaches_the_store_as_sent() {
    let sink = FakeSink::new(Script::Accept);
    let running = start(sink.clone()).await;
    let channel = tonic::transport::Endpoint::from_shared(running.grpc_url.clone()).unwrap().connect().await.unwrap();
    let path =
        axum::http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    let mut wire = prost::Message::encode_to_vec(&spans(4));
    wire.extend_from_slice(&[0xf8, 0x3f, 0x01]); // an unknown field (1023), kept
    for encoding in [None, Some(CompressionEncoding::Gzip)] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        if let Some(encoding) = encoding {
            grpc = grpc.send_compressed(encoding);
        }
        grpc.ready().await.unwrap();
        grpc.unary(Request::new(wire.clone()), path.clone(), RawBytes).await.unwrap();
    }
    let received = sink.take_received();
    assert_eq!(received.len(), 2);
    for r in &received {
        assert_eq!(r.protobuf().map(|b| b.to_vec()), Some(wire.clone()));
        assert_eq!(r.clone().into_batch(), Batch::Traces(spans(4)));
    }
}

#[tokio::test]
async fn other_methods_are_unimplemented() {
    let sink = FakeSink::new(Script::Accept);
    let running = start(sink.clone()).await;
    let channel = tonic::transport::Endpoint::from_shared(running.grpc_url.clone()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let path =
        axum::http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Import");
    grpc.ready().await.unwrap();
    let status = grpc.unary(Request::new(Vec::new()), path, RawBytes).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(sink.take_batches().is_empty());
}

#[test]
fn only_oversize_and_decode_failures_are_rewritten() {
    let with_status = |code: &'static str, message: Option<&'static str>| {
        let mut response = axum::http::Response::new(());
        response.headers_mut().insert("grpc-status", HeaderValue::from_static(code));
        if let Some(message) = message {
            response.headers_mut().insert("grpc-message", HeaderValue::from_static(message));
        }
        client_errors_as_the_spec_wants(response).headers()["grpc-status"].clone()
    };
    assert_eq!(with_status("11", None), "8");
    assert_eq!(with_status("3", None), "3");
    assert_eq!(with_status("0", None), "0");
    assert_eq!(with_status("13", Some("failed%20to%20decode%20Protobuf%20message:%20invalid%20wire%20type")), "3");
    assert_eq!(with_status("13", Some("Unexpected%20EOF%20decoding%20stream.")), "3");
    // Our own INTERNALs (a store failure) stay INTERNAL.
    assert_eq!(with_status("13", Some("i/o%20error:%20disk")), "13");
    assert_eq!(with_status("13", None), "13");
    let untouched = client_errors_as_the_spec_wants(axum::http::Response::new(()));
    assert!(untouched.headers().get("grpc-status").is_none());
}
