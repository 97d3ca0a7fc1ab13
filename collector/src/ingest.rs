//! The one path every decoded request takes, whatever its transport: count, skip empty
//! requests, append to the store, and report what happened through `tracing`.
//!
//! Self-telemetry uses bounded labels only (`signal`, `transport`, `reason`, all from
//! fixed sets); error messages go in the event message, never in a label.

use std::future::Future;
use std::time::Duration;

use seismo_net::LogThrottle;

use seismo_store::{AppendOutcome, Received, Store, StoreError};

use crate::error::{CollectorError, Transport};
use crate::signal::Signal;

/// Where decoded batches go. [`Store`] in production; the seam lets the transports be
/// tested against a scripted sink (busy, closed, partial success) without a database.
pub(crate) trait BatchSink: Clone + Send + Sync + 'static {
    /// Appends a request; resolves once it is durable (see [`Store::append`]).
    fn append(&self, request: Received) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send;
}

impl BatchSink for Store {
    fn append(&self, request: Received) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
        Store::append(self, request)
    }
}

/// Requests up to this many bytes are decoded on the async worker; larger ones on the
/// blocking pool, so that a 20 MiB decode does not stall the other connections the
/// worker serves. (The store does the same with the conversion into rows.)
pub(crate) const INLINE_DECODE_MAX_BYTES: usize = 64 * 1024;

/// Runs `work` (decoding `len` bytes) on the async worker when it is small, else on the
/// blocking pool.
///
/// # Errors
/// `work`'s error; [`CollectorError::Internal`] when the blocking task fails.
pub(crate) async fn decode_sized<T: Send + 'static>(
    len: usize,
    work: impl FnOnce() -> Result<T, CollectorError> + Send + 'static,
) -> Result<T, CollectorError> {
    if len <= INLINE_DECODE_MAX_BYTES {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CollectorError::Internal(format!("decoding task failed: {e}")))?
}

/// Stores one export request and returns the store's verdict.
///
/// A request with no spans / log records / data points is acknowledged without touching
/// the store: the OTLP spec says empty requests succeed, and they need no WAL record.
///
/// # Errors
/// [`CollectorError::Store`] when the store refuses the batch; it is already logged.
pub(crate) async fn export<K: BatchSink>(
    sink: &K,
    transport: Transport,
    received: Received,
) -> Result<AppendOutcome, CollectorError> {
    let signal = Signal::of(received.signal());
    let items = received.items();
    if items == 0 {
        tracing::trace!(signal = signal.as_str(), transport = transport.as_str(), "empty OTLP export acknowledged");
        return Ok(AppendOutcome { accepted: 0, rejected: 0, message: None });
    }
    match sink.append(received).await {
        Ok(outcome) => {
            record_outcome(signal, transport, items, &outcome);
            Ok(outcome)
        }
        Err(store_error) => {
            let error = CollectorError::Store(store_error);
            record_rejection(signal, transport, &error);
            Err(error)
        }
    }
}

fn record_outcome(signal: Signal, transport: Transport, items: u64, outcome: &AppendOutcome) {
    if outcome.rejected > 0 {
        tracing::debug!(
            signal = signal.as_str(),
            transport = transport.as_str(),
            items,
            accepted = outcome.accepted,
            rejected = outcome.rejected,
            "OTLP export partially accepted: {}",
            outcome.message.as_deref().unwrap_or("")
        );
    } else {
        tracing::trace!(signal = signal.as_str(), transport = transport.as_str(), items, "OTLP export accepted");
    }
}

/// Back-pressure answers are logged at most this often (with a count of the rest).
static BACK_PRESSURE_LOG: LogThrottle = LogThrottle::new(Duration::from_secs(10));

/// Logs a refused request: at `debug` when the client sent something wrong (their
/// problem, and possibly a flood), at `warn` when we could not take good data — but
/// back-pressure, which comes in floods under overload, at most once per 10 s.
/// Refusals while the disk is full are `debug` too: the store logs entering and
/// leaving that state once and counts refusals in /metrics, and a line per
/// request could fill the very disk that is full.
pub(crate) fn record_rejection(signal: Signal, transport: Transport, error: &CollectorError) {
    let (signal, transport, reason) = (signal.as_str(), transport.as_str(), error.reason());
    if error.is_client_error() || matches!(error, CollectorError::Store(StoreError::DiskFull(_))) {
        tracing::debug!(signal, transport, reason, "OTLP export rejected: {error}");
    } else if error.is_back_pressure() {
        tracing::debug!(signal, transport, reason, "OTLP export refused for now: {error}");
        if let Some(suppressed) = BACK_PRESSURE_LOG.hit() {
            tracing::warn!(
                signal,
                transport,
                reason,
                refused_since_last_line = suppressed + 1,
                "ingest is overloaded, clients are told to retry: {error}"
            );
        }
    } else {
        tracing::warn!(signal, transport, reason, "OTLP export failed: {error}");
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A scripted [`BatchSink`] for transport tests.

    use std::sync::{Arc, Mutex};

    use seismo_store::Batch;

    use super::*;

    /// What the fake store answers to every append.
    #[derive(Clone)]
    pub(crate) enum Script {
        Accept,
        Reject { rejected: u64, message: &'static str },
        Busy,
        Closed,
        DiskFull,
        InvalidId,
        Broken,
    }

    #[derive(Clone)]
    pub(crate) struct FakeSink {
        script: Script,
        pub(crate) appended: Arc<Mutex<Vec<Received>>>,
    }

    impl FakeSink {
        pub(crate) fn new(script: Script) -> Self {
            FakeSink { script, appended: Arc::default() }
        }

        /// The batches appended so far (taken).
        pub(crate) fn take_batches(&self) -> Vec<Batch> {
            self.take_received().into_iter().map(Received::into_batch).collect()
        }

        /// The requests appended so far, with the protobuf bytes they carried (taken).
        pub(crate) fn take_received(&self) -> Vec<Received> {
            std::mem::take(&mut *self.appended.lock().unwrap())
        }
    }

    impl BatchSink for FakeSink {
        fn append(&self, request: Received) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
            let result = match &self.script {
                Script::Accept => Ok(AppendOutcome { accepted: 1, rejected: 0, message: None }),
                Script::Reject { rejected, message } => {
                    Ok(AppendOutcome { accepted: 0, rejected: *rejected, message: Some((*message).to_owned()) })
                }
                Script::Busy => Err(StoreError::Busy("write queue full".into())),
                Script::Closed => Err(StoreError::Closed),
                Script::DiskFull => Err(StoreError::DiskFull("writing the WAL: No space left on device".into())),
                Script::InvalidId => Err(StoreError::InvalidId("span id has 3 bytes, expected 8".into())),
                Script::Broken => Err(StoreError::Corrupt("checksum mismatch".into())),
            };
            if result.is_ok() {
                self.appended.lock().unwrap().push(request);
            }
            std::future::ready(result)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{FakeSink, Script};
    use super::*;
    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use seismo_store::Batch;

    fn one_span() -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![Span::default()], ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    #[tokio::test]
    async fn empty_requests_never_reach_the_store() {
        let sink = FakeSink::new(Script::Closed);
        let empty = ExportTraceServiceRequest { resource_spans: vec![ResourceSpans::default()] };
        let outcome = export(&sink, Transport::Http, Received::new(Batch::Traces(empty.clone()))).await.unwrap();
        assert_eq!((outcome.accepted, outcome.rejected), (0, 0));
        let wire = Bytes::from(prost::Message::encode_to_vec(&empty));
        let outcome = export(&sink, Transport::Http, Received::from_trace_protobuf(wire).unwrap()).await.unwrap();
        assert_eq!((outcome.accepted, outcome.rejected), (0, 0));
        assert!(sink.take_batches().is_empty());
    }

    #[tokio::test]
    async fn store_errors_come_back_typed() {
        let sink = FakeSink::new(Script::Busy);
        let err = export(&sink, Transport::Grpc, Received::new(Batch::Traces(one_span()))).await.unwrap_err();
        assert!(matches!(err, CollectorError::Store(StoreError::Busy(_))), "{err}");
    }

    #[tokio::test]
    async fn accepted_batches_reach_the_store() {
        let sink = FakeSink::new(Script::Accept);
        export(&sink, Transport::Grpc, Received::new(Batch::Traces(one_span()))).await.unwrap();
        assert!(matches!(sink.take_batches().as_slice(), [Batch::Traces(req)] if req == &one_span()));
        let wire = Bytes::from(prost::Message::encode_to_vec(&one_span()));
        export(&sink, Transport::Grpc, Received::from_trace_protobuf(wire.clone()).unwrap()).await.unwrap();
        let received = sink.take_received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].protobuf(), Some(&wire));
        assert_eq!(received[0].clone().into_batch(), Batch::Traces(one_span()));
    }
}
