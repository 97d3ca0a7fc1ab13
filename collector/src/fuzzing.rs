//! The collector's decoding, reachable from the fuzz targets in `fuzz/` (hidden: not an
//! API, no stability promised). It is the path an OTLP/HTTP request body takes after its
//! headers were read: `Content-Encoding` parsed, the body decompressed within the limit,
//! then decoded as protobuf or OTLP/JSON into the signal's export request. OTLP/gRPC
//! bodies reach the same prost decoding through tonic.

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use seismo_store::{Batch, Received, Signal};

use crate::compression::ContentEncoding;
use crate::error::CollectorError;
use crate::http::{decode, WireFormat};
use crate::signal::{Logs, Metrics, Traces};

/// Decodes an OTLP/HTTP request body for `signal` as the HTTP receiver does, given the
/// request's `Content-Type` and `Content-Encoding` header values.
///
/// # Errors
/// What the receiver answers 4xx for: an unsupported content type or encoding, a body
/// past `limit` (before or after decompression), bytes that do not decompress or decode.
pub fn decode_http_body(
    signal: Signal,
    content_type: &[u8],
    content_encoding: Option<&[u8]>,
    body: &[u8],
    limit: usize,
) -> Result<Batch, CollectorError> {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_bytes(content_type)
        .map_err(|_| CollectorError::UnsupportedContentType(String::from_utf8_lossy(content_type).into_owned()))?;
    headers.insert(CONTENT_TYPE, value);
    let format = WireFormat::from_headers(&headers)?;
    let encoding = ContentEncoding::from_header(content_encoding)?;
    let body = encoding.decode(Bytes::copy_from_slice(body), limit)?;
    match signal {
        Signal::Traces => decode::<Traces>(body, format, limit).map(Received::into_batch),
        Signal::Logs => decode::<Logs>(body, format, limit).map(Received::into_batch),
        Signal::Metrics => decode::<Metrics>(body, format, limit).map(Received::into_batch),
    }
}
