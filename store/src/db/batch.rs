//! What an append carries: the decoded export request ([`Batch`]), the
//! protobuf bytes it was decoded from when the transport had them
//! ([`Received`]), and what conversion makes of both ([`Converted`]: the rows
//! for the memtable and the payload for the WAL).
//!
//! Why the bytes travel along: the WAL record is the protobuf encoding of the
//! request (replay decodes it and reruns the conversion), and an OTLP/HTTP
//! protobuf body or an OTLP/gRPC message already *is* that encoding. Writing
//! it as received saves encoding every request a second time; only requests
//! that arrived as OTLP/JSON (or were built in code) are encoded here.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::convert;
use crate::error::Result;
use crate::memtable::Memtable;
use crate::model::*;
use crate::wire::TraceBatch;

/// One OTLP export request, as the collector decoded it.
#[derive(Clone, Debug, PartialEq)]
pub enum Batch {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

impl Batch {
    pub fn signal(&self) -> Signal {
        match self {
            Batch::Traces(_) => Signal::Traces,
            Batch::Logs(_) => Signal::Logs,
            Batch::Metrics(_) => Signal::Metrics,
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Batch::Traces(r) => r.encode_to_vec(),
            Batch::Logs(r) => r.encode_to_vec(),
            Batch::Metrics(r) => r.encode_to_vec(),
        }
    }

    /// Spans, log records or data points in the request (a metric without
    /// data points counts as nothing).
    pub fn items(&self) -> u64 {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        match self {
            Batch::Traces(r) => {
                r.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum()
            }
            Batch::Logs(r) => {
                r.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len() as u64).sum()
            }
            Batch::Metrics(r) => {
                let metrics = r.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics);
                metrics
                    .map(|m| match &m.data {
                        Some(Data::Gauge(g)) => g.data_points.len(),
                        Some(Data::Sum(s)) => s.data_points.len(),
                        Some(Data::Histogram(h)) => h.data_points.len(),
                        Some(Data::ExponentialHistogram(e)) => e.data_points.len(),
                        Some(Data::Summary(s)) => s.data_points.len(),
                        None => 0,
                    } as u64)
                    .sum()
            }
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Batch::Traces(r) => r.encoded_len(),
            Batch::Logs(r) => r.encoded_len(),
            Batch::Metrics(r) => r.encoded_len(),
        }
    }

    /// The request a WAL record holds.
    pub(crate) fn decode(signal: Signal, bytes: &[u8]) -> std::result::Result<Self, prost::DecodeError> {
        Ok(match signal {
            Signal::Traces => Batch::Traces(ExportTraceServiceRequest::decode(bytes)?),
            Signal::Logs => Batch::Logs(ExportLogsServiceRequest::decode(bytes)?),
            Signal::Metrics => Batch::Metrics(ExportMetricsServiceRequest::decode(bytes)?),
        })
    }

    /// Validates and flattens into rows (see `convert` for the rules),
    /// taking the request's strings.
    pub(crate) fn into_rows(self) -> Result<(Rows, u64, Option<String>)> {
        Ok(match self {
            Batch::Traces(r) => {
                let c = convert::spans(r)?;
                (Rows::Spans(c.rows), c.rejected, c.message)
            }
            Batch::Logs(r) => {
                let c = convert::logs(&r)?;
                (Rows::Logs(c.rows), c.rejected, c.message)
            }
            Batch::Metrics(r) => {
                let c = convert::metric_points(&r)?;
                (Rows::Metrics(c.rows), c.rejected, c.message)
            }
        })
    }
}

/// An export request as it reached the store: decoded, and, when the
/// transport had them, the protobuf bytes it was decoded from, which the WAL
/// then stores as they are. `Batch` converts into it (bytes encoded at append).
/// A trace request given as bytes ([`Received::from_trace_protobuf`]) is
/// usually read straight from them instead of decoded (see `wire`).
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    request: Request,
}

#[derive(Clone)]
enum Request {
    Decoded { batch: Batch, protobuf: Option<Bytes> },
    Parsed { spans: TraceBatch, protobuf: Bytes },
}

/// Parsed spans are a function of their bytes: those are what is compared and shown.
impl PartialEq for Request {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Request::Decoded { batch: a, protobuf: x }, Request::Decoded { batch: b, protobuf: y }) => {
                a == b && x == y
            }
            (Request::Parsed { protobuf: x, .. }, Request::Parsed { protobuf: y, .. }) => x == y,
            _ => false,
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Decoded { batch, protobuf } => {
                f.debug_struct("Decoded").field("batch", batch).field("protobuf", protobuf).finish()
            }
            Request::Parsed { spans, protobuf } => {
                f.debug_struct("Parsed").field("spans", &spans.len()).field("protobuf", protobuf).finish()
            }
        }
    }
}

/// Requests at least this large are converted on tokio's blocking pool rather
/// than on the async worker that awaits them (see [`Received::is_large`]).
const CONVERT_INLINE_MAX_BYTES: usize = 64 * 1024;

impl Received {
    /// A request with no wire bytes in hand: the WAL payload is encoded from it.
    pub fn new(batch: Batch) -> Self {
        Received { request: Request::Decoded { batch, protobuf: None } }
    }

    /// A request together with the protobuf bytes it was decoded from
    /// (decompressed, exactly one export request message). The caller vouches
    /// for that: the WAL stores `protobuf`, and replay decodes it instead of
    /// `batch`.
    pub fn with_protobuf(batch: Batch, protobuf: Bytes) -> Self {
        Received { request: Request::Decoded { batch, protobuf: Some(protobuf) } }
    }

    /// A trace export request from its protobuf bytes (decompressed, exactly
    /// one message). A request of the common shape whose every span is valid
    /// is read straight from the bytes, validated and flattened on the
    /// calling thread; any other is decoded with prost and converted at
    /// append, as [`Received::with_protobuf`] does. Both ways store the same.
    ///
    /// # Errors
    /// The bytes are not an `ExportTraceServiceRequest`.
    pub fn from_trace_protobuf(protobuf: Bytes) -> std::result::Result<Self, prost::DecodeError> {
        match TraceBatch::parse(&protobuf) {
            Some(spans) => Ok(Received { request: Request::Parsed { spans, protobuf } }),
            None => {
                let request = ExportTraceServiceRequest::decode(protobuf.clone())?;
                Ok(Received::with_protobuf(Batch::Traces(request), protobuf))
            }
        }
    }

    pub fn signal(&self) -> Signal {
        match &self.request {
            Request::Decoded { batch, .. } => batch.signal(),
            Request::Parsed { .. } => Signal::Traces,
        }
    }

    /// Spans, log records or data points in the request: a request with none
    /// needs no store (the OTLP spec says empty requests succeed).
    pub fn items(&self) -> u64 {
        match &self.request {
            Request::Decoded { batch, .. } => batch.items(),
            Request::Parsed { spans, .. } => spans.len() as u64,
        }
    }

    /// The request as prost messages (decoded from the bytes when it was
    /// read from them; the parse takes only what prost decodes).
    pub fn into_batch(self) -> Batch {
        match self.request {
            Request::Decoded { batch, .. } => batch,
            Request::Parsed { protobuf, .. } => {
                Batch::decode(Signal::Traces, &protobuf).expect("a request the parse read decodes with prost")
            }
        }
    }

    /// The protobuf bytes the request arrived as, if the transport kept them.
    pub fn protobuf(&self) -> Option<&Bytes> {
        match &self.request {
            Request::Decoded { protobuf, .. } => protobuf.as_ref(),
            Request::Parsed { protobuf, .. } => Some(protobuf),
        }
    }

    /// Whether converting this request costs enough CPU (around a millisecond
    /// and up) to keep it off an async worker.
    pub(crate) fn is_large(&self) -> bool {
        match &self.request {
            Request::Decoded { protobuf: Some(bytes), .. } => bytes.len() >= CONVERT_INLINE_MAX_BYTES,
            Request::Decoded { batch, protobuf: None } => batch.encoded_len() >= CONVERT_INLINE_MAX_BYTES,
            // Read and validated already.
            Request::Parsed { .. } => false,
        }
    }

    /// Validates and flattens the request into rows and, when any row is kept,
    /// takes (or encodes) the WAL payload.
    ///
    /// # Errors
    /// `InvalidId` / `InvalidRequest` when the request is unusable as a whole.
    pub(crate) fn convert(self) -> Result<Converted> {
        let (batch, protobuf) = match self.request {
            Request::Decoded { batch, protobuf } => (batch, protobuf),
            Request::Parsed { spans, protobuf } => {
                let payload = if spans.len() == 0 { Bytes::new() } else { protobuf };
                let rows = Rows::Parsed(spans);
                return Ok(Converted { signal: Signal::Traces, payload, rows, rejected: 0, message: None });
            }
        };
        let signal = batch.signal();
        // Without wire bytes, the payload is encoded before the conversion
        // takes the request's strings.
        let payload = protobuf.unwrap_or_else(|| Bytes::from(batch.encode()));
        let (rows, rejected, message) = batch.into_rows()?;
        let payload = if rows.len() == 0 { Bytes::new() } else { payload };
        Ok(Converted { signal, payload, rows, rejected, message })
    }
}

impl From<Batch> for Received {
    fn from(batch: Batch) -> Self {
        Received::new(batch)
    }
}

/// A request made ready for the writer thread.
pub(crate) struct Converted {
    pub signal: Signal,
    /// The WAL record's payload: the request's protobuf encoding (empty when
    /// no row is kept: nothing is written then).
    pub payload: Bytes,
    pub rows: Rows,
    pub rejected: u64,
    pub message: Option<String>,
}

/// The rows of one batch, on their way to the memtable.
pub(crate) enum Rows {
    Spans(Vec<SpanRow>),
    Parsed(TraceBatch),
    Logs(Vec<LogRow>),
    Metrics(Vec<MetricPointRow>),
}

impl Rows {
    pub(crate) fn len(&self) -> usize {
        match self {
            Rows::Spans(r) => r.len(),
            Rows::Parsed(b) => b.len(),
            Rows::Logs(r) => r.len(),
            Rows::Metrics(r) => r.len(),
        }
    }

    pub(crate) fn insert_into(self, m: &mut Memtable, bytes: usize) {
        match self {
            Rows::Spans(r) => m.insert_spans(r, bytes),
            Rows::Parsed(b) => m.insert_batch(b, bytes),
            Rows::Logs(r) => m.insert_logs(r, bytes),
            Rows::Metrics(r) => m.insert_metrics(r, bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::one_span;
    use super::*;

    #[test]
    fn the_wal_payload_is_the_received_bytes_or_the_encoding() {
        let batch = one_span(1);
        let encoded = Bytes::from(batch.encode());
        // Bytes as a client may send them: the same message with an unknown
        // field appended. Stored as received, not re-encoded.
        let mut wire = encoded.to_vec();
        wire.extend_from_slice(&[0xf8, 0x3f, 0x01]); // field 1023, varint 1
        let wire = Bytes::from(wire);
        let converted = Received::with_protobuf(batch.clone(), wire.clone()).convert().unwrap();
        assert_eq!(converted.payload, wire);
        assert_eq!(Batch::decode(Signal::Traces, &converted.payload).unwrap(), batch);

        let converted = Received::from(batch.clone()).convert().unwrap();
        assert_eq!(converted.payload, encoded);
        assert_eq!((converted.rows.len(), converted.rejected), (1, 0));
    }

    #[test]
    fn nothing_is_encoded_when_no_row_is_kept() {
        let Batch::Traces(mut request) = one_span(1) else { unreachable!() };
        request.resource_spans[0].scope_spans[0].spans[0].span_id = vec![0; 8];
        let converted = Received::new(Batch::Traces(request)).convert().unwrap();
        assert_eq!((converted.rows.len(), converted.rejected), (0, 1));
        assert!(converted.payload.is_empty());
    }

    #[test]
    fn items_are_counted_at_the_leaves() {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics};
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

        let spans = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![
                    ScopeSpans { spans: vec![Span::default(); 2], ..Default::default() },
                    ScopeSpans { spans: vec![Span::default()], ..Default::default() },
                ],
                ..Default::default()
            }],
        };
        assert_eq!(Batch::Traces(spans).items(), 3);
        assert_eq!(Batch::Traces(ExportTraceServiceRequest::default()).items(), 0);
        let gauge = Metric {
            data: Some(Data::Gauge(Gauge { data_points: vec![NumberDataPoint::default(); 4] })),
            ..Default::default()
        };
        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics: vec![gauge, Metric::default()], ..Default::default() }],
                ..Default::default()
            }],
        };
        assert_eq!(Batch::Metrics(metrics).items(), 4);
    }
}
