//! The three OTLP signals and what differs between them: request and response types,
//! JSON decoder, how items are counted, and the name of the partial-success counter.
//! Transports are written once, generically over [`OtlpSignal`].

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use seismo_store::{AppendOutcome, Batch, Received};

use crate::json::{self, JsonError};

/// One of the OTLP signals; also a bounded telemetry label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub(crate) fn of(signal: seismo_store::Signal) -> Signal {
        match signal {
            seismo_store::Signal::Traces => Signal::Traces,
            seismo_store::Signal::Logs => Signal::Logs,
            seismo_store::Signal::Metrics => Signal::Metrics,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// The OTLP/HTTP path of the signal.
    pub(crate) fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Logs => "/v1/logs",
            Signal::Metrics => "/v1/metrics",
        }
    }

    /// The signal a gRPC method path (`/opentelemetry.proto.collector.<signal>.v1.…`) is for;
    /// traces when the path names none (the label must come from a fixed set).
    pub(crate) fn from_grpc_path(path: &str) -> Signal {
        if path.contains(".logs.") {
            Signal::Logs
        } else if path.contains(".metrics.") {
            Signal::Metrics
        } else {
            Signal::Traces
        }
    }

    /// The JSON name of the partial-success counter in the export response.
    fn rejected_key(self) -> &'static str {
        match self {
            Signal::Traces => "rejectedSpans",
            Signal::Logs => "rejectedLogRecords",
            Signal::Metrics => "rejectedDataPoints",
        }
    }
}

/// The partial success to report, if any: OTLP wants it set when items were rejected,
/// and allows it with zero rejections to carry a warning message.
fn partial_success(outcome: &AppendOutcome) -> Option<(i64, String)> {
    (outcome.rejected > 0 || outcome.message.is_some()).then(|| {
        let rejected = i64::try_from(outcome.rejected).unwrap_or(i64::MAX);
        (rejected, outcome.message.clone().unwrap_or_default())
    })
}

/// What a transport needs to know about a signal.
pub(crate) trait OtlpSignal: Send + Sync + 'static {
    const SIGNAL: Signal;
    /// The gRPC service that exports it (`Export` is its one method).
    const GRPC_SERVICE: &'static str;
    type Request: prost::Message + Default + Send + 'static;
    type Response: prost::Message + Default + Send + 'static;

    fn decode_json(bytes: &[u8]) -> Result<Self::Request, JsonError>;
    fn into_batch(request: Self::Request) -> Batch;

    /// A protobuf message (decompressed) as the store takes it, keeping the bytes for
    /// the WAL.
    ///
    /// # Errors
    /// The bytes are not the signal's export request.
    fn from_protobuf(message: Bytes) -> Result<Received, prost::DecodeError> {
        let request = Self::Request::decode(message.clone())?;
        Ok(Received::with_protobuf(Self::into_batch(request), message))
    }
    fn response(outcome: &AppendOutcome) -> Self::Response;

    /// The export response in OTLP/JSON. The rejected count is written as a JSON number,
    /// not the proto3 string form: every OTLP/JSON parser accepts numbers for int64, while
    /// opentelemetry-rust's exporter (serde derives, plain `i64`) rejects strings.
    fn response_json(outcome: &AppendOutcome) -> serde_json::Value {
        match partial_success(outcome) {
            None => serde_json::json!({}),
            Some((rejected, message)) => serde_json::json!({
                "partialSuccess": { Self::SIGNAL.rejected_key(): rejected, "errorMessage": message }
            }),
        }
    }
}

/// Marker for the traces signal.
pub(crate) struct Traces;
/// Marker for the logs signal.
pub(crate) struct Logs;
/// Marker for the metrics signal.
pub(crate) struct Metrics;

impl OtlpSignal for Traces {
    const SIGNAL: Signal = Signal::Traces;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;

    fn decode_json(bytes: &[u8]) -> Result<Self::Request, JsonError> {
        json::decode_traces(bytes)
    }

    fn into_batch(request: Self::Request) -> Batch {
        Batch::Traces(request)
    }

    /// Read straight from the bytes when the request has the common shape (see
    /// [`Received::from_trace_protobuf`]).
    fn from_protobuf(message: Bytes) -> Result<Received, prost::DecodeError> {
        Received::from_trace_protobuf(message)
    }

    fn response(outcome: &AppendOutcome) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: partial_success(outcome)
                .map(|(rejected_spans, error_message)| ExportTracePartialSuccess { rejected_spans, error_message }),
        }
    }
}

impl OtlpSignal for Logs {
    const SIGNAL: Signal = Signal::Logs;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;

    fn decode_json(bytes: &[u8]) -> Result<Self::Request, JsonError> {
        json::decode_logs(bytes)
    }

    fn into_batch(request: Self::Request) -> Batch {
        Batch::Logs(request)
    }

    fn response(outcome: &AppendOutcome) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: partial_success(outcome).map(|(rejected_log_records, error_message)| {
                ExportLogsPartialSuccess { rejected_log_records, error_message }
            }),
        }
    }
}

impl OtlpSignal for Metrics {
    const SIGNAL: Signal = Signal::Metrics;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;

    fn decode_json(bytes: &[u8]) -> Result<Self::Request, JsonError> {
        json::decode_metrics(bytes)
    }

    fn into_batch(request: Self::Request) -> Batch {
        Batch::Metrics(request)
    }

    fn response(outcome: &AppendOutcome) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: partial_success(outcome).map(|(rejected_data_points, error_message)| {
                ExportMetricsPartialSuccess { rejected_data_points, error_message }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(accepted: u64, rejected: u64, message: Option<&str>) -> AppendOutcome {
        AppendOutcome { accepted, rejected, message: message.map(str::to_owned) }
    }

    #[test]
    fn full_success_has_no_partial_success() {
        assert_eq!(Traces::response(&outcome(3, 0, None)).partial_success, None);
        assert_eq!(Traces::response_json(&outcome(3, 0, None)), json!({}));
    }

    #[test]
    fn rejections_are_reported_per_signal() {
        let partial = outcome(1, 2, Some("2 spans have an all-zero span id"));
        let traces = Traces::response(&partial).partial_success.unwrap();
        assert_eq!((traces.rejected_spans, traces.error_message.as_str()), (2, "2 spans have an all-zero span id"));
        assert_eq!(Logs::response(&partial).partial_success.unwrap().rejected_log_records, 2);
        assert_eq!(Metrics::response(&partial).partial_success.unwrap().rejected_data_points, 2);
        assert_eq!(
            Metrics::response_json(&partial),
            json!({"partialSuccess": {"rejectedDataPoints": 2, "errorMessage": "2 spans have an all-zero span id"}})
        );
    }

    #[test]
    fn a_warning_without_rejections_is_still_reported() {
        let warned = Logs::response(&outcome(5, 0, Some("clock skew"))).partial_success.unwrap();
        assert_eq!((warned.rejected_log_records, warned.error_message.as_str()), (0, "clock skew"));
    }

    #[test]
    fn json_response_parses_with_the_opentelemetry_rust_derives() {
        let body = Traces::response_json(&outcome(0, 4, Some("bad"))).to_string();
        let parsed: ExportTraceServiceResponse = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed.partial_success.unwrap().rejected_spans, 4);
        let parsed: ExportTraceServiceResponse = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed.partial_success, None);
    }
}
