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
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    batch: Batch,
    protobuf: Option<Bytes>,
}

/// Requests at least this large are converted on tokio's blocking pool rather
/// than on the async worker that awaits them (see [`Received::is_large`]).
const CONVERT_INLINE_MAX_BYTES: usize = 64 * 1024;

impl Received {
    /// A request with no wire bytes in hand: the WAL payload is encoded from it.
    pub fn new(batch: Batch) -> Self {
        Received { batch, protobuf: None }
    }

    /// A request together with the protobuf bytes it was decoded from
    /// (decompressed, exactly one export request message). The caller vouches
    /// for that: the WAL stores `protobuf`, and replay decodes it instead of
    /// `batch`.
    pub fn with_protobuf(batch: Batch, protobuf: Bytes) -> Self {
        Received { batch, protobuf: Some(protobuf) }
    }

    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    pub fn into_batch(self) -> Batch {
        self.batch
    }

    /// The protobuf bytes the request arrived as, if the transport kept them.
    pub fn protobuf(&self) -> Option<&Bytes> {
        self.protobuf.as_ref()
    }

    /// Whether converting this request costs enough CPU (around a millisecond
    /// and up) to keep it off an async worker.
    pub(crate) fn is_large(&self) -> bool {
        let len = match &self.protobuf {
            Some(bytes) => bytes.len(),
            None => self.batch.encoded_len(),
        };
        len >= CONVERT_INLINE_MAX_BYTES
    }

    /// Validates and flattens the request into rows and, when any row is kept,
    /// takes (or encodes) the WAL payload.
    ///
    /// # Errors
    /// `InvalidId` / `InvalidRequest` when the request is unusable as a whole.
    pub(crate) fn convert(self) -> Result<Converted> {
        let signal = self.batch.signal();
        // Without wire bytes, the payload is encoded before the conversion
        // takes the request's strings.
        let payload = self.protobuf.unwrap_or_else(|| Bytes::from(self.batch.encode()));
        let (rows, rejected, message) = self.batch.into_rows()?;
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
    Logs(Vec<LogRow>),
    Metrics(Vec<MetricPointRow>),
}

impl Rows {
    pub(crate) fn len(&self) -> usize {
        match self {
            Rows::Spans(r) => r.len(),
            Rows::Logs(r) => r.len(),
            Rows::Metrics(r) => r.len(),
        }
    }

    pub(crate) fn insert_into(self, m: &mut Memtable, bytes: usize) {
        match self {
            Rows::Spans(r) => m.insert_spans(r, bytes),
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
}
