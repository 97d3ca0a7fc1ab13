//! Span load (`seismo loadgen`): OTLP/gRPC spans, then trace-by-id latency.
//!
//! Every request is built before the clock starts (so generation does not
//! count against the server), then sent with a fixed number of requests in
//! flight; only acknowledged spans count. The span mix follows Jaeger's
//! published ClickHouse benchmark: traces of 10 spans over several services,
//! 11 attributes per span drawn from 97 keys and 1,000 values. With a query
//! URL it then measures trace-by-id latency through the Jaeger API.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::otlp::{self, kv, kv_any};
use crate::query;
use crate::stats::{ms, percentile};
use crate::LoadgenError;

const SERVICES: [&str; 8] =
    ["frontend", "cart", "checkout", "payment", "shipping", "currency", "email", "recommendation"];
const OPERATIONS: [&str; 6] =
    ["GET /api/cart", "POST /api/checkout", "GetQuote", "Charge", "SELECT orders", "publish order"];
const ATTR_KEYS: usize = 97;
const ATTR_VALUES: usize = 1000;
const ATTRS_PER_SPAN: usize = 11;

/// What to send and what to time.
#[derive(Debug, Clone)]
pub struct SpanLoad {
    /// OTLP/gRPC endpoint, `http://host:port`.
    pub endpoint: String,
    /// Spans to send in all.
    pub spans: u64,
    /// Spans per export request.
    pub batch: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Spans per trace.
    pub spans_per_trace: usize,
    /// The query API; when set, trace-by-id lookups are timed after sending.
    pub query_url: Option<String>,
    /// Trace-by-id lookups to time.
    pub lookups: usize,
    /// Random seed: runs with the same seed send the same data.
    pub seed: u64,
    /// Build the same data but do not send it: only time lookups of traces an
    /// earlier run with the same seed and span count sent.
    pub lookups_only: bool,
}

/// One step's outcome, in the order the run reaches them.
#[derive(Debug, Clone)]
pub enum SpanReport {
    /// The requests are built (before anything is sent).
    Built(BuildSummary),
    /// Every request is acknowledged.
    Sent(SendReport),
    /// The lookups are timed.
    Lookups(LookupReport),
}

/// The data about to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildSummary {
    /// Export requests.
    pub requests: usize,
    /// Spans in them.
    pub spans: u64,
    /// Their protobuf size in all.
    pub encoded_bytes: usize,
}

impl fmt::Display for BuildSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_span = self.encoded_bytes as f64 / self.spans.max(1) as f64;
        write!(f, "loadgen: {} requests, {} spans, {per_span:.1} B/span encoded", self.requests, self.spans)
    }
}

/// Ingest throughput (fields in the order the JSON line has always printed them).
#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    /// Spans per request.
    pub batch: usize,
    /// Requests resent because the server was busy.
    pub busy_retries: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Wall time of the whole send.
    pub seconds: f64,
    /// Spans acknowledged (sent minus the partial-success rejections).
    pub spans_acked: u64,
    /// Acknowledged spans per second, rounded.
    pub spans_per_sec: f64,
}

/// Trace-by-id latency through the Jaeger API.
#[derive(Debug, Clone, Serialize)]
pub struct LookupReport {
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Lookups timed.
    pub trace_by_id_lookups: usize,
}

/// The export requests of a run and the ids of the traces they carry.
struct Built {
    requests: Vec<ExportTraceServiceRequest>,
    trace_ids: Vec<[u8; 16]>,
}

impl SpanLoad {
    /// Builds, sends and times as the settings say, handing each step's report
    /// to `report` as soon as it is known.
    ///
    /// # Errors
    /// Settings out of range, an unreachable endpoint, an export failure other
    /// than "busy", or a lookup that fails or finds an empty trace.
    pub async fn run(&self, mut report: impl FnMut(SpanReport)) -> Result<(), LoadgenError> {
        if self.batch == 0 || self.concurrency == 0 || self.spans_per_trace == 0 {
            return Err(LoadgenError::Settings("--batch, --concurrency and --spans-per-trace must be positive"));
        }
        let built = self.build();
        let spans = built.requests.iter().map(span_count).sum::<u64>();
        if spans > 0 {
            let encoded_bytes = built.requests.iter().map(prost::Message::encoded_len).sum();
            report(SpanReport::Built(BuildSummary { requests: built.requests.len(), spans, encoded_bytes }));
        }
        if !self.lookups_only {
            report(SpanReport::Sent(self.send(built.requests).await?));
        }
        if let Some(url) = &self.query_url {
            report(SpanReport::Lookups(self.time_lookups(url, &built.trace_ids).await?));
        }
        Ok(())
    }

    /// Builds the requests and the ids of the traces they carry. With
    /// `lookups_only` the requests are generated (the same random sequence,
    /// so the same trace ids) but not kept, so 10M-span runs fit in memory
    /// twice.
    fn build(&self) -> Built {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let base = otlp::now_ns() - 600_000_000_000; // ten minutes ago, inside the default search window
        let mut requests = Vec::new();
        let mut trace_ids = Vec::new();
        let mut sent = 0u64;
        let mut trace_id = [0u8; 16];
        let mut parent = Vec::new();
        let mut in_trace = self.spans_per_trace;
        while sent < self.spans {
            let n = (self.spans - sent).min(self.batch as u64) as usize;
            // One ResourceSpans per service keeps resources shared, as SDKs send them.
            let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
            for _ in 0..n {
                if in_trace == self.spans_per_trace {
                    rng.fill(&mut trace_id);
                    trace_ids.push(trace_id);
                    parent.clear();
                    in_trace = 0;
                }
                let span_id: [u8; 8] = rng.random();
                let start = base + sent * 10_000 + in_trace as u64 * 1_000;
                let duration = rng.random_range(100_000..200_000_000u64);
                let attributes = (0..ATTRS_PER_SPAN).map(|_| attribute(&mut rng)).collect();
                let error = rng.random_ratio(1, 50);
                let svc = if in_trace == 0 { 0 } else { rng.random_range(0..SERVICES.len()) };
                by_service[svc].push(Span {
                    trace_id: trace_id.to_vec(),
                    span_id: span_id.to_vec(),
                    parent_span_id: parent.clone(),
                    name: OPERATIONS[rng.random_range(0..OPERATIONS.len())].to_string(),
                    kind: if in_trace == 0 { span::SpanKind::Server as i32 } else { rng.random_range(1..=3) },
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + duration,
                    attributes,
                    status: error
                        .then(|| Status { code: status::StatusCode::Error as i32, message: "injected failure".into() }),
                    ..Default::default()
                });
                parent = span_id.to_vec();
                in_trace += 1;
                sent += 1;
            }
            if !self.lookups_only {
                requests.push(request(by_service));
            }
        }
        Built { requests, trace_ids }
    }

    async fn send(&self, requests: Vec<ExportTraceServiceRequest>) -> Result<SendReport, LoadgenError> {
        let client = TraceServiceClient::new(otlp::connect(&self.endpoint).await?)
            .max_decoding_message_size(otlp::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(otlp::MAX_MESSAGE_BYTES);
        let queue = Arc::new(Mutex::new(requests));
        let acked = Arc::new(AtomicU64::new(0));
        let retries = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..self.concurrency {
            let (queue, acked, retries, mut client) = (queue.clone(), acked.clone(), retries.clone(), client.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let Some(req) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
                        return Ok::<_, LoadgenError>(());
                    };
                    let n = span_count(&req);
                    loop {
                        match client.export(req.clone()).await {
                            Ok(resp) => {
                                let rejected =
                                    resp.into_inner().partial_success.map(|p| p.rejected_spans as u64).unwrap_or(0);
                                acked.fetch_add(n - rejected, Ordering::Relaxed);
                                break;
                            }
                            Err(s) if otlp::is_busy(&s) => {
                                retries.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(otlp::BUSY_PAUSE).await;
                            }
                            Err(s) => return Err(s.into()),
                        }
                    }
                }
            }));
        }
        for w in workers {
            w.await??;
        }
        let elapsed = started.elapsed();
        let acked = acked.load(Ordering::Relaxed);
        Ok(SendReport {
            batch: self.batch,
            busy_retries: retries.load(Ordering::Relaxed),
            concurrency: self.concurrency,
            seconds: elapsed.as_secs_f64(),
            spans_acked: acked,
            spans_per_sec: (acked as f64 / elapsed.as_secs_f64()).round(),
        })
    }

    async fn time_lookups(&self, url: &str, trace_ids: &[[u8; 16]]) -> Result<LookupReport, LoadgenError> {
        if trace_ids.is_empty() {
            return Err(LoadgenError::Settings("no traces to look up: --spans must be positive"));
        }
        let client = query::client(url)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ 0x5eed);
        let mut latencies = Vec::with_capacity(self.lookups);
        for _ in 0..self.lookups {
            let id = hex_id(&trace_ids[rng.random_range(0..trace_ids.len())]);
            let t = Instant::now();
            let trace = client.trace(&id).await.map_err(LoadgenError::client(format!("looking up trace {id}")))?;
            latencies.push(t.elapsed());
            if trace.spans.is_empty() {
                return Err(LoadgenError::Unexpected(format!("trace {id} has no spans")));
            }
        }
        latencies.sort();
        Ok(LookupReport {
            p50_ms: ms(percentile(&latencies, 0.5)),
            p90_ms: ms(percentile(&latencies, 0.9)),
            p99_ms: ms(percentile(&latencies, 0.99)),
            trace_by_id_lookups: latencies.len(),
        })
    }
}

/// One of a span's attributes: a third of the keys are integers.
fn attribute(rng: &mut impl Rng) -> KeyValue {
    let k = rng.random_range(0..ATTR_KEYS);
    let v = rng.random_range(0..ATTR_VALUES);
    if k % 3 == 0 {
        kv_any(format!("attr.key{k}"), any_value::Value::IntValue(v as i64))
    } else {
        kv(format!("attr.key{k}"), format!("value-{v}"))
    }
}

/// One export request: a resource per service that has spans in it.
fn request(by_service: Vec<Vec<Span>>) -> ExportTraceServiceRequest {
    let resource_spans = by_service
        .into_iter()
        .enumerate()
        .filter(|(_, spans)| !spans.is_empty())
        .map(|(i, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", SERVICES[i]),
                    kv("service.version", "1.4.2"),
                    kv("host.name", format!("node-{}", i % 3)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "seismo-loadgen".into(),
                    version: "1".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn span_count(request: &ExportTraceServiceRequest) -> u64 {
    request.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len() as u64).sum()
}

fn hex_id(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(spans: u64, lookups_only: bool) -> SpanLoad {
        SpanLoad {
            endpoint: "http://127.0.0.1:1".into(),
            spans,
            batch: 7,
            concurrency: 1,
            spans_per_trace: 3,
            query_url: None,
            lookups: 1,
            seed: 42,
            lookups_only,
        }
    }

    #[test]
    fn builds_batches_of_whole_traces_and_the_same_ids_for_the_same_seed() {
        let built = load(20, false).build();
        let sizes: Vec<u64> = built.requests.iter().map(span_count).collect();
        assert_eq!(sizes, [7, 7, 6]);
        // 20 spans in traces of 3: 7 traces, the last one cut short.
        assert_eq!(built.trace_ids.len(), 7);
        let spans: Vec<&Span> =
            built.requests.iter().flat_map(|r| &r.resource_spans).flat_map(|rs| &rs.scope_spans[0].spans).collect();
        assert!(spans.iter().all(|s| s.attributes.len() == ATTRS_PER_SPAN));
        let roots = spans.iter().filter(|s| s.parent_span_id.is_empty()).count();
        assert_eq!(roots, 7, "one root per trace");
        // --lookups-only regenerates the same trace ids without keeping the requests.
        let again = load(20, true).build();
        assert!(again.requests.is_empty());
        assert_eq!(again.trace_ids, built.trace_ids);
    }

    #[test]
    fn the_build_summary_line_is_the_one_benchmarks_quote() {
        let s = BuildSummary { requests: 3, spans: 20, encoded_bytes: 6_796 };
        assert_eq!(s.to_string(), "loadgen: 3 requests, 20 spans, 339.8 B/span encoded");
    }

    #[test]
    fn reports_print_their_fields_in_the_order_earlier_runs_did() {
        let r = SendReport {
            batch: 1000,
            busy_retries: 0,
            concurrency: 8,
            seconds: 1.5,
            spans_acked: 3000,
            spans_per_sec: 2000.0,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"batch":1000,"busy_retries":0,"concurrency":8,"seconds":1.5,"spans_acked":3000,"spans_per_sec":2000.0}"#
        );
    }

    #[tokio::test]
    async fn zero_settings_are_refused_before_anything_is_sent() {
        let mut bad = load(10, false);
        bad.batch = 0;
        let err = bad.run(|_| panic!("nothing is built")).await.unwrap_err();
        assert!(matches!(err, LoadgenError::Settings(_)), "{err}");
    }
}
