//! The OTLP/HTTP receiver: `POST /v1/traces`, `/v1/logs`, `/v1/metrics`.
//!
//! A request goes through, in order: `Content-Type` (415), `Content-Encoding` (415), the
//! body read with a byte limit (413), bounded decompression (413), decoding (400), then
//! the store. Cheap checks come first so a bad request costs as little as possible.
//! Responses use the request's content type; errors carry a `google.rpc.Status`
//! (`code` is the gRPC code, `message` names the problem), as the OTLP spec requires.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use prost::Message;
use seismo_store::{AppendOutcome, Received, Store, StoreError};

use crate::admission::{self, MemoryBudget, Reservation};
use crate::compression::ContentEncoding;
use crate::config::CollectorConfig;
use crate::error::{CollectorError, Transport};
use crate::ingest::{self, BatchSink};
use crate::signal::{Logs, Metrics, OtlpSignal, Signal, Traces};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The OTLP/HTTP routes over `store`, ready to be served or called directly in tests.
///
/// Other methods on the OTLP paths answer 405; other paths 404.
pub fn http_router(store: Store, config: &CollectorConfig) -> Router {
    router_with_sink(store, config.max_body_bytes, MemoryBudget::new(config.max_inflight_bytes))
}

#[derive(Clone)]
struct HttpState<K> {
    sink: K,
    max_body_bytes: usize,
    budget: MemoryBudget,
}

pub(crate) fn router_with_sink<K: BatchSink>(sink: K, max_body_bytes: usize, budget: MemoryBudget) -> Router {
    Router::new()
        .route(Signal::Traces.http_path(), post(export::<Traces, K>))
        .route(Signal::Logs.http_path(), post(export::<Logs, K>))
        .route(Signal::Metrics.http_path(), post(export::<Metrics, K>))
        .fallback(unknown_path)
        .with_state(HttpState { sink, max_body_bytes, budget })
}

/// The two OTLP/HTTP encodings; the response uses the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireFormat {
    Protobuf,
    Json,
}

impl WireFormat {
    /// Reads `Content-Type`, ignoring parameters (`; charset=utf-8`) and case.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, CollectorError> {
        let Some(value) = headers.get(CONTENT_TYPE) else {
            return Err(CollectorError::UnsupportedContentType(String::new()));
        };
        let unsupported =
            || CollectorError::UnsupportedContentType(String::from_utf8_lossy(value.as_bytes()).into_owned());
        let text = value.to_str().map_err(|_| unsupported())?;
        let media_type = text.split(';').next().unwrap_or_default().trim();
        if media_type.eq_ignore_ascii_case(PROTOBUF) {
            Ok(WireFormat::Protobuf)
        } else if media_type.eq_ignore_ascii_case(JSON) {
            Ok(WireFormat::Json)
        } else {
            Err(unsupported())
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            WireFormat::Protobuf => PROTOBUF,
            WireFormat::Json => JSON,
        }
    }

    /// Memory held per body byte while decoding and storing (see `admission`).
    fn held_per_byte(self) -> usize {
        match self {
            WireFormat::Protobuf => admission::PROTOBUF_HELD_PER_BYTE,
            WireFormat::Json => admission::JSON_HELD_PER_BYTE,
        }
    }
}

async fn export<S: OtlpSignal, K: BatchSink>(
    State(state): State<HttpState<K>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = match WireFormat::from_headers(&headers) {
        Ok(format) => format,
        Err(error) => {
            ingest::record_rejection(S::SIGNAL, Transport::Http, &error);
            return error_response(&error, WireFormat::Json);
        }
    };
    let result = async {
        // Held until the store has the data: it pays for the body, the decoded request
        // and the rows (see `admission`).
        let mut reservation = None;
        let received = read_request::<S, K>(&headers, body, format, &state, &mut reservation).await?;
        let outcome = ingest::export(&state.sink, Transport::Http, received).await;
        drop(reservation);
        outcome
    };
    match result.await {
        Ok(outcome) => success_response::<S>(format, &outcome),
        // Store errors were logged by `ingest::export`; transport errors are logged here.
        Err(error @ CollectorError::Store(_)) => error_response(&error, format),
        Err(error) => {
            ingest::record_rejection(S::SIGNAL, Transport::Http, &error);
            error_response(&error, format)
        }
    }
}

/// Reads, decompresses and decodes the body into the signal's request, reserving
/// memory for it in `reservation` first: for an identity body with a length, all it will
/// hold at once; otherwise the raw body first and the decoding once its size is known.
/// A protobuf body goes along with the request, for the WAL to store as it is.
async fn read_request<S: OtlpSignal, K>(
    headers: &HeaderMap,
    body: Body,
    format: WireFormat,
    state: &HttpState<K>,
    reservation: &mut Option<Reservation>,
) -> Result<Received, CollectorError> {
    let limit = state.max_body_bytes;
    let encoding = ContentEncoding::from_header(headers.get(CONTENT_ENCODING).map(HeaderValue::as_bytes))?;
    let declared = declared_length(headers).map(|len| len.min(limit as u64 + 1) as usize);
    if declared.is_some_and(|len| len > limit) {
        drain(body).await;
        return Err(CollectorError::PayloadTooLarge { limit, decompressed: false });
    }
    let upfront = match (declared, encoding) {
        (Some(len), ContentEncoding::Identity) => len.saturating_add(len.saturating_mul(format.held_per_byte())),
        (Some(len), _) => len,
        (None, _) => limit,
    };
    let held = reservation.insert(state.budget.reserve(upfront).await?);
    let raw = read_body(declared, body, limit).await?;
    // A small compressed body can still inflate to `limit` bytes: decompression is never
    // done on the async worker.
    let body = match encoding {
        ContentEncoding::Identity => raw,
        _ => tokio::task::spawn_blocking(move || encoding.decode(raw, limit))
            .await
            .map_err(|e| CollectorError::Internal(format!("decompression task failed: {e}")))??,
    };
    if !(encoding == ContentEncoding::Identity && declared.is_some()) {
        // Not reserved up front: the decoded request, and an inflated body beside the raw one.
        let inflated = if encoding == ContentEncoding::Identity { 0 } else { body.len() };
        state.budget.grow(held, body.len().saturating_mul(format.held_per_byte()).saturating_add(inflated)).await?;
    }
    ingest::decode_sized(body.len(), move || decode::<S>(body, format, limit)).await
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// The body buffer's first allocation, whatever length the client announces.
const INITIAL_BUFFER_BYTES: usize = 256 * 1024;

/// Most bytes of an oversized body read (and dropped) before answering 413.
const DRAIN_MAX_BYTES: usize = 64 << 20;
/// Longest time spent draining an oversized body.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);

/// Collects the body, refusing it as soon as it passes `limit` bytes (or says it will).
///
/// An oversized body is drained (read and dropped, within `DRAIN_MAX_BYTES` and
/// `DRAIN_MAX_TIME`) before the 413 goes out: a server that answers early and
/// closes makes the client fail with a broken pipe instead of reading the
/// status, and exporters retry a broken connection but must not retry a 413.
///
/// The buffer grows as bytes arrive rather than to the announced length at once: a client
/// announcing 20 MiB and sending a kilobyte costs a kilobyte.
async fn read_body(declared: Option<usize>, mut body: Body, limit: usize) -> Result<Bytes, CollectorError> {
    let too_large = CollectorError::PayloadTooLarge { limit, decompressed: false };
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(INITIAL_BUFFER_BYTES));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match seismo_net::BodyTimedOut::find(&e) {
            Some(timed_out) => CollectorError::BodyTimeout(timed_out.0),
            None => CollectorError::BodyRead(e.to_string()),
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(body).await;
                return Err(too_large);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and drops the rest of a body, bounded in bytes and time.
async fn drain(mut body: Body) {
    let read = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len();
                if seen > DRAIN_MAX_BYTES {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, read).await;
}

/// Decodes an uncompressed body (checked against `limit` once more).
pub(crate) fn decode<S: OtlpSignal>(body: Bytes, format: WireFormat, limit: usize) -> Result<Received, CollectorError> {
    let body = ContentEncoding::Identity.decode(body, limit)?;
    match format {
        WireFormat::Protobuf => {
            S::from_protobuf(body).map_err(|e| CollectorError::Decode { format: "protobuf", reason: e.to_string() })
        }
        WireFormat::Json => match S::decode_json(&body) {
            Ok(request) => Ok(Received::new(S::into_batch(request))),
            Err(e) => Err(CollectorError::Decode { format: "JSON", reason: e.to_string() }),
        },
    }
}

fn success_response<S: OtlpSignal>(format: WireFormat, outcome: &AppendOutcome) -> Response {
    let body = match format {
        WireFormat::Protobuf => S::response(outcome).encode_to_vec(),
        WireFormat::Json => S::response_json(outcome).to_string().into_bytes(),
    };
    (StatusCode::OK, [(CONTENT_TYPE, format.content_type())], body).into_response()
}

/// `google.rpc.Status`, the OTLP/HTTP error body (details omitted).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn http_status(error: &CollectorError) -> StatusCode {
    match error {
        CollectorError::UnsupportedContentType(_) | CollectorError::UnsupportedContentEncoding(_) => {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        }
        CollectorError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        CollectorError::Decompress { .. } | CollectorError::Decode { .. } | CollectorError::BodyRead(_) => {
            StatusCode::BAD_REQUEST
        }
        CollectorError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        CollectorError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
        CollectorError::Store(StoreError::InvalidId(_) | StoreError::InvalidRequest(_)) => StatusCode::BAD_REQUEST,
        CollectorError::Store(StoreError::Busy(_)) => StatusCode::TOO_MANY_REQUESTS,
        // Not 507 Insufficient Storage: the OTLP/HTTP spec lets exporters retry
        // only 429, 502, 503 and 504 ("all other 4xx or 5xx MUST NOT be
        // retried"), so a 507 would make them drop the data. The body says "disk full".
        CollectorError::Store(StoreError::DiskFull(_)) => StatusCode::SERVICE_UNAVAILABLE,
        CollectorError::Store(StoreError::Closed | StoreError::WalFailed(_)) => StatusCode::SERVICE_UNAVAILABLE,
        CollectorError::Store(_)
        | CollectorError::Internal(_)
        | CollectorError::Bind { .. }
        | CollectorError::Tls(_)
        | CollectorError::Serve { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error response: status, `google.rpc.Status` body in `format`, and the headers
/// that tell a client what to do next.
fn error_response(error: &CollectorError, format: WireFormat) -> Response {
    let status = http_status(error);
    let rpc_status = RpcStatus { code: error.grpc_code() as i32, message: error.to_string() };
    let body = match format {
        WireFormat::Protobuf => rpc_status.encode_to_vec(),
        WireFormat::Json => {
            serde_json::json!({"code": rpc_status.code, "message": rpc_status.message}).to_string().into_bytes()
        }
    };
    let mut response = (status, [(CONTENT_TYPE, format.content_type())], body).into_response();
    let headers = response.headers_mut();
    // Back-pressure, a full disk, a closed store: OTLP clients honour Retry-After on 429/503.
    if let Some(delay) = error.retry_after() {
        headers.insert(RETRY_AFTER, HeaderValue::from(delay.as_secs().max(1)));
    }
    // RFC 9110 §15.5.16: say which codings would work.
    if let CollectorError::UnsupportedContentEncoding(_) = error {
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, zstd, deflate, identity"));
    }
    response
}

async fn unknown_path() -> Response {
    let message = "not found: OTLP/HTTP serves POST /v1/traces, /v1/logs and /v1/metrics";
    let body = serde_json::json!({"code": tonic::Code::NotFound as i32, "message": message}).to_string();
    (StatusCode::NOT_FOUND, [(CONTENT_TYPE, JSON)], body).into_response()
}

#[cfg(test)]
mod tests;
