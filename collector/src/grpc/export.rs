//! The `Export` method of the three OTLP gRPC services, served over the message's bytes.
//!
//! `opentelemetry-proto`'s generated servers hand the handler a decoded request and drop
//! the bytes it came from; the store's WAL wants exactly those bytes (it stores the
//! protobuf request), so with them it would encode every request a second time. This
//! service is what the generated one does (tonic's `Grpc` with compression and the
//! message-size limit, `UNIMPLEMENTED` for other methods) with one difference: its codec
//! yields the raw (decompressed) message, and the handler decodes it, on the blocking
//! pool when it is large, then passes request and bytes on.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Status};

use super::to_status;
use crate::error::{CollectorError, Transport};
use crate::ingest::{self, BatchSink};
use crate::signal::OtlpSignal;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One OTLP gRPC service (`S`'s), writing into `K`.
pub(super) struct ExportService<S, K> {
    sink: K,
    max_body_bytes: usize,
    signal: PhantomData<fn() -> S>,
}

impl<S, K: Clone> Clone for ExportService<S, K> {
    fn clone(&self) -> Self {
        ExportService { sink: self.sink.clone(), max_body_bytes: self.max_body_bytes, signal: PhantomData }
    }
}

impl<S: OtlpSignal, K: BatchSink> ExportService<S, K> {
    /// The service; messages larger than `max_body_bytes` (after decompression) are refused.
    pub(super) fn new(sink: K, max_body_bytes: usize) -> Self {
        ExportService { sink, max_body_bytes, signal: PhantomData }
    }
}

impl<S: OtlpSignal, K> NamedService for ExportService<S, K> {
    const NAME: &'static str = S::GRPC_SERVICE;
}

impl<S: OtlpSignal, K: BatchSink> tower::Service<axum::http::Request<tonic::body::Body>> for ExportService<S, K> {
    type Response = axum::http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<tonic::body::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let method = request.uri().path().strip_prefix('/').and_then(|p| p.strip_prefix(S::GRPC_SERVICE));
            if method != Some("/Export") {
                return Ok(Status::new(Code::Unimplemented, "OTLP services have one method, Export").into_http());
            }
            let mut grpc = Grpc::new(WireCodec::<S::Response>(PhantomData))
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(this.max_body_bytes);
            Ok(grpc.unary(ExportMethod::<S, K> { sink: this.sink, signal: PhantomData }, request).await)
        })
    }
}

/// Decodes one message and stores it with its bytes.
struct ExportMethod<S, K> {
    sink: K,
    signal: PhantomData<fn() -> S>,
}

impl<S: OtlpSignal, K: BatchSink> UnaryService<Bytes> for ExportMethod<S, K> {
    type Response = S::Response;
    type Future = BoxFuture<Result<tonic::Response<S::Response>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let sink = self.sink.clone();
        Box::pin(async move {
            let message = request.into_inner();
            let decoded = ingest::decode_sized(message.len(), move || {
                S::from_protobuf(message)
                    .map_err(|e| CollectorError::Decode { format: "protobuf", reason: e.to_string() })
            })
            .await;
            let result = match decoded {
                Ok(received) => ingest::export(&sink, Transport::Grpc, received).await,
                Err(error) => {
                    ingest::record_rejection(S::SIGNAL, Transport::Grpc, &error);
                    Err(error)
                }
            };
            match result {
                Ok(outcome) => Ok(tonic::Response::new(S::response(&outcome))),
                Err(error) => Err(to_status(&error)),
            }
        })
    }
}

/// Encodes responses with prost; decodes requests into nothing but their bytes.
struct WireCodec<T>(PhantomData<fn(T)>);

impl<T: Message + Send + 'static> Codec for WireCodec<T> {
    type Encode = T;
    type Decode = Bytes;
    type Encoder = ProtobufEncoder<T>;
    type Decoder = WireDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProtobufEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder
    }
}

struct ProtobufEncoder<T>(PhantomData<fn(T)>);

impl<T: Message> Encoder for ProtobufEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

struct WireDecoder;

impl Decoder for WireDecoder {
    type Item = Bytes;
    type Error = Status;

    /// The whole (decompressed) message; without copying, as tonic's buffer is a `BytesMut`.
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
